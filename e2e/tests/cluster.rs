//! Cluster tier: runs the operator in-process against the cluster in KUBECONFIG (kind, k3d or a
//! real one) and checks what it creates. Ignored by default; see docs/operator.md:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test -p volley-e2e --test cluster -- --ignored --test-threads=1
//! ```
//!
//! The gateway image does not need to be pullable for these checks (they look at the objects
//! the operator writes); set `VOLLEY_E2E_GATEWAY_IMAGE` to an image the cluster can run to also
//! wait for `Ready=True`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use volley_crds::{AutoscalingMode, PushCluster, PushClusterSpec};
use volley_e2e::eventually;
use volley_operator::build::BuildOptions;
use volley_operator::controller::{self, Context};
use volley_operator::metrics::Metrics;

const LIMIT: Duration = Duration::from_secs(90);

async fn setup(ns: &str) -> Client {
    let client = Client::try_default()
        .await
        .expect("a cluster in KUBECONFIG (this test is --ignored by default)");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "pushclusters.volley.dev",
        &PatchParams::apply("volley-e2e").force(),
        &Patch::Apply(PushCluster::crd()),
    )
    .await
    .unwrap();
    eventually("CRD established", LIMIT, || async {
        let crd = crds.get("pushclusters.volley.dev").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await
    .unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.into());
    let _ = nss.create(&PostParams::default(), &n).await;
    client
}

fn start_operator(client: Client, ns: &str) -> tokio::sync::oneshot::Sender<()> {
    let image = std::env::var("VOLLEY_E2E_GATEWAY_IMAGE")
        .unwrap_or_else(|_| volley_operator::build::default_gateway_image());
    let ctx = Context::new(
        client,
        BuildOptions {
            default_image: image,
        },
        Metrics::default(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(controller::run(ctx, Some(ns.to_string()), async move {
        let _ = rx.await;
    }));
    tx
}

#[tokio::test]
#[ignore = "needs a kubernetes cluster"]
async fn pushcluster_gets_children_status_and_scale_subresource() {
    let ns = "volley-e2e";
    let client = setup(ns).await;
    let stop = start_operator(client.clone());
    let pcs: Api<PushCluster> = Api::namespaced(client.clone(), ns);
    let mut spec = PushClusterSpec {
        replicas: Some(1),
        ..Default::default()
    };
    spec.autoscaling.mode = AutoscalingMode::External;
    let pc = PushCluster::new("e2e", spec);
    let _ = pcs.delete("e2e", &DeleteParams::default()).await;
    eventually("old PushCluster gone", LIMIT, || async {
        pcs.get_opt("e2e").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    pcs.create(&PostParams::default(), &pc).await.unwrap();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = eventually("Deployment created", LIMIT, || async {
        deployments.get_opt("e2e").await.ok()?
    })
    .await
    .unwrap();
    assert_eq!(d.owner_references()[0].kind, "PushCluster");
    assert_eq!(d.spec.unwrap().replicas, Some(1));
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get("e2e-config")
            .await
            .is_ok()
    );
    assert!(
        Api::<Service>::namespaced(client.clone(), ns)
            .get("e2e")
            .await
            .is_ok()
    );
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get("e2e")
            .await
            .is_ok()
    );
    assert!(
        Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .get("e2e")
            .await
            .is_ok()
    );

    let status = eventually("status written", LIMIT, || async {
        let s = pcs.get("e2e").await.ok()?.status?;
        (!s.selector.is_empty() && !s.conditions.is_empty()).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(
        status.selector,
        volley_operator::build::selector_string("e2e")
    );

    // The scale subresource (what an HPA uses in External mode) drives the Deployment.
    pcs.patch_scale(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    eventually("Deployment scaled to 2", LIMIT, || async {
        let d = deployments.get("e2e").await.ok()?;
        (d.spec?.replicas == Some(2)).then_some(())
    })
    .await
    .unwrap();

    if std::env::var("VOLLEY_E2E_GATEWAY_IMAGE").is_ok() {
        eventually("Ready=True", Duration::from_secs(300), || async {
            let s = pcs.get("e2e").await.ok()?.status?;
            volley_operator::conditions::is_true(&s.conditions, "Ready").then_some(())
        })
        .await
        .unwrap();
    }

    // A bad spec becomes a condition, not a crash.
    pcs.patch(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"gateway": {"flushInterval": "soon"}}})),
    )
    .await
    .unwrap();
    eventually("InvalidSpec condition", LIMIT, || async {
        let s = pcs.get("e2e").await.ok()?.status?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "InvalidSpec")
            .then_some(())
    })
    .await
    .unwrap();

    pcs.delete("e2e", &DeleteParams::default()).await.unwrap();
    let _ = stop.send(());
    println!("cluster e2e passed for {}", pc.name_any());
}
