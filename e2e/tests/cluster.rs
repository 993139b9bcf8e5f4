//! Cluster tier: runs the operator in-process against the cluster in KUBECONFIG (kind, k3d or a
//! real one) and checks what it creates. Ignored by default; see docs/operator.md:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test -p volley-e2e --test cluster -- --ignored --test-threads=1
//! ```
//!
//! It installs the CRD, runs the operator in-process (watching only its namespace), creates a
//! PushCluster and checks children, observedGeneration, a roll on spec change, the scale
//! subresource, PDB pruning, CEL rejection, the InvalidSpec condition and Event, and that
//! deleting the PushCluster removes its children.
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
    volley_e2e::crd::wait_established(&client, LIMIT)
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
            ..Default::default()
        },
        Metrics::default(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(controller::run(ctx, Some(ns.to_string()), async move {
        let _ = rx.await;
    }));
    tx
}

/// The pod template's config hash: it changes when the rendered gateway config changes.
fn config_hash(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(volley_operator::build::CONFIG_HASH_ANNOTATION)
        .cloned()
}

#[tokio::test]
#[ignore = "needs a kubernetes cluster"]
async fn pushcluster_lifecycle() {
    let ns = "volley-e2e";
    let client = setup(ns).await;
    volley_operator::controller::check_crd(client.clone(), Some(ns))
        .await
        .expect("CRD installed");
    let stop = start_operator(client.clone(), ns);
    let pcs: Api<PushCluster> = Api::namespaced(client.clone(), ns);
    let _ = pcs.delete("e2e", &DeleteParams::default()).await;
    eventually("old PushCluster gone", LIMIT, || async {
        pcs.get_opt("e2e").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();

    // CEL rules in the CRD reject what the schema can say.
    let mut bad = PushClusterSpec::default();
    bad.autoscaling.min_replicas = 5;
    bad.autoscaling.max_replicas = 2;
    let err = pcs
        .create(&PostParams::default(), &PushCluster::new("e2e-bad", bad))
        .await
        .expect_err("minReplicas > maxReplicas is rejected by the API server");
    assert!(err.to_string().contains("minReplicas"), "{err}");
    // Mode Operator at 0 pods would never see load again; an HPA (External) may go to 0.
    let mut bad = PushClusterSpec::default();
    bad.autoscaling.min_replicas = 0;
    let err = pcs
        .create(&PostParams::default(), &PushCluster::new("e2e-bad", bad))
        .await
        .expect_err("minReplicas 0 in mode Operator is rejected by the API server");
    assert!(
        err.to_string().contains("minReplicas must be >= 1"),
        "{err}"
    );
    // A target above what a pod accepts would shrink a saturated cluster.
    let mut bad = PushClusterSpec::default();
    bad.gateway.max_connections_per_pod = Some(5_000);
    let err = pcs
        .create(&PostParams::default(), &PushCluster::new("e2e-bad", bad))
        .await
        .expect_err("targetConnectionsPerPod > maxConnectionsPerPod is rejected");
    assert!(err.to_string().contains("targetConnectionsPerPod"), "{err}");

    let mut spec = PushClusterSpec {
        replicas: Some(2),
        ..Default::default()
    };
    spec.autoscaling.mode = AutoscalingMode::External;
    let pc = PushCluster::new("e2e", spec);
    let created = pcs.create(&PostParams::default(), &pc).await.unwrap();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = eventually("Deployment created", LIMIT, || async {
        deployments.get_opt("e2e").await.ok()?
    })
    .await
    .unwrap();
    assert_eq!(d.owner_references()[0].kind, "PushCluster");
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    let first_hash = config_hash(&d).expect("config hash annotation");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    for (what, ok) in [
        (
            "ConfigMap",
            configmaps.get_opt("e2e-config").await.unwrap().is_some(),
        ),
        ("Service", services.get_opt("e2e").await.unwrap().is_some()),
        (
            "ServiceAccount",
            accounts.get_opt("e2e").await.unwrap().is_some(),
        ),
    ] {
        assert!(ok, "{what} missing");
    }
    eventually("PDB created", LIMIT, || async {
        pdbs.get_opt("e2e").await.ok()?
    })
    .await
    .unwrap();

    let generation = created.metadata.generation;
    let status = eventually("status.observedGeneration", LIMIT, || async {
        let s = pcs.get("e2e").await.ok()?.status?;
        (s.observed_generation == generation && !s.conditions.is_empty()).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(
        status.selector,
        volley_operator::build::selector_string("e2e")
    );

    // A spec change rolls the pods: the config hash on the pod template changes.
    pcs.patch(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"gateway": {"flushInterval": "20ms"}}})),
    )
    .await
    .unwrap();
    eventually("Deployment rolled", LIMIT, || async {
        let d = deployments.get("e2e").await.ok()?;
        (config_hash(&d)? != first_hash).then_some(())
    })
    .await
    .unwrap();

    // The scale subresource (`kubectl scale pushc/e2e --replicas=3`, or an HPA).
    pcs.patch_scale(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually("Deployment scaled to 3", LIMIT, || async {
        let d = deployments.get("e2e").await.ok()?;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await
    .unwrap();
    // Down to one replica: the PDB is no longer part of what the spec yields and is pruned.
    pcs.patch_scale(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("PDB pruned", LIMIT, || async {
        pdbs.get_opt("e2e").await.ok()?.is_none().then_some(())
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

    // A spec the schema cannot reject becomes a condition and a Warning Event, not a crash.
    pcs.patch(
        "e2e",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"nats": {"url": "nats://nats:not-a-port"}}})),
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
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    eventually("InvalidSpec Warning event", LIMIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidSpec")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("e2e")
            })
            .then_some(())
    })
    .await
    .unwrap();

    // Deleting the PushCluster removes everything it owned (owner references, cluster GC).
    pcs.delete("e2e", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("children gone", LIMIT, || async {
        let gone = deployments.get_opt("e2e").await.ok()?.is_none()
            && configmaps.get_opt("e2e-config").await.ok()?.is_none()
            && services.get_opt("e2e").await.ok()?.is_none()
            && accounts.get_opt("e2e").await.ok()?.is_none();
        gone.then_some(())
    })
    .await
    .unwrap();
    let _ = stop.send(());
    println!("cluster e2e passed for {}", pc.name_any());
}
