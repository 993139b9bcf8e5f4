//! Cluster tier, the whole user story (ignored by default; needs a cluster in KUBECONFIG, see
//! docs/operator.md "Cluster tier"):
//!
//! ```sh
//! VOLLEY_E2E_LOAD_IMAGES=kind KUBECONFIG=~/.kube/config \
//!   cargo test -p volley-e2e --test user_story -- --ignored --test-threads=1
//! ```
//!
//! 1. With `VOLLEY_E2E_LOAD_IMAGES=ctr|kind|k3d` it builds the release binaries, writes the OCI
//!    archives (xtask) and loads them into the cluster; without it the images
//!    `ghcr.io/volley-dev/volley-{operator,gateway}:<version>` must already be pullable.
//! 2. Installs manifests/install.yaml (CRD, RBAC, the operator Deployment running the operator
//!    image) and waits for the operator to be available.
//! 3. Applies manifests/examples/nats.yaml and a PushCluster made from
//!    manifests/examples/pushcluster.yaml (2 replicas, autoscaling External so the scale
//!    subresource decides).
//! 4. Waits for `Ready=True` with real, ready gateway pods; connects WebSocket clients to every
//!    gateway pod through kube's port-forward API, subscribes them, publishes once through NATS
//!    (also port-forwarded) and asserts every client received that message exactly once.
//! 5. Scales to 3 through the scale subresource, changes the spec and sees every pod replaced,
//!    deletes the PushCluster and sees its children and pods go; then uninstalls the operator
//!    (the CRD stays, as with `helm uninstall`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use volley_crds::{AutoscalingMode, PushCluster};
use volley_e2e::eventually;
use volley_operator::gateway_config::CLIENT_PORT;

/// Image pulls and rollouts on a small cluster take a while.
const SLOW: Duration = Duration::from_secs(300);
const LIMIT: Duration = Duration::from_secs(120);
const NS: &str = "default";
const NAME: &str = "story";
/// WebSocket clients per gateway pod.
const CLIENTS_PER_POD: usize = 5;
const MANAGER: &str = "volley-e2e";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every non-empty YAML document of `text`.
fn documents(text: &str) -> Vec<DynamicObject> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| {
            let v = serde_json::Value::deserialize(doc).expect("YAML parses");
            (!v.is_null()).then(|| serde_json::from_value(v).expect("a Kubernetes object"))
        })
        .collect()
}

/// The API of `obj`'s kind, found by discovery (install.yaml mixes many kinds).
async fn api_for(client: &Client, obj: &DynamicObject) -> Api<DynamicObject> {
    let types = obj.types.as_ref().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("a valid apiVersion");
    let (ar, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovering {gvk:?}: {e}"));
    match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            obj.metadata.namespace.as_deref().unwrap_or(NS),
            &ar,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    }
}

/// Server-side applies every document of `text`, like `kubectl apply --server-side`.
async fn apply_all(client: &Client, text: &str) {
    for obj in documents(text) {
        let api = api_for(client, &obj).await;
        api.patch(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {}: {e}", obj.name_any()));
    }
}

/// Deletes every document of `text` except CustomResourceDefinitions (kept, like the chart).
async fn delete_all(client: &Client, text: &str) {
    for obj in documents(text).into_iter().rev() {
        if obj
            .types
            .as_ref()
            .is_some_and(|t| t.kind == "CustomResourceDefinition")
        {
            continue;
        }
        let api = api_for(client, &obj).await;
        let _ = api.delete(&obj.name_any(), &DeleteParams::default()).await;
    }
}

/// Builds and loads the image archives when VOLLEY_E2E_LOAD_IMAGES names a loader.
fn load_images() {
    let Ok(name) = std::env::var("VOLLEY_E2E_LOAD_IMAGES") else {
        println!("VOLLEY_E2E_LOAD_IMAGES unset: using images the cluster can pull");
        return;
    };
    let loader = xtask::load::Loader::parse(
        &name,
        std::env::var("VOLLEY_E2E_CTR").ok().as_deref(),
        std::env::var("VOLLEY_E2E_CLUSTER").ok().as_deref(),
    )
    .unwrap();
    let root = xtask::spec::workspace_root();
    let out = xtask::cargo::images_dir(&root);
    let built = xtask::cargo::build_all(&root, &out, false).expect("building the image archives");
    for b in built {
        loader.load(&b.path).expect("loading an image archive");
        println!("loaded {} ({})", b.reference, b.manifest_digest);
    }
}

async fn deployment_available(api: &Api<Deployment>, name: &str) -> Option<()> {
    let d = api.get_opt(name).await.ok()??;
    let want = d.spec.as_ref()?.replicas.unwrap_or(1);
    let s = d.status?;
    (s.available_replicas.unwrap_or(0) >= want.max(1) && s.updated_replicas.unwrap_or(0) >= want)
        .then_some(())
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Names of the gateway pods of the PushCluster (all phases).
async fn gateway_pods(pods: &Api<Pod>) -> Option<Vec<Pod>> {
    let selector = volley_operator::build::selector_string(NAME);
    Some(
        pods.list(&ListParams::default().labels(&selector))
            .await
            .ok()?
            .items,
    )
}

/// Waits until exactly `n` gateway pods exist, all ready, and the PushCluster reports Ready
/// with `n` ready replicas; returns the pod names.
async fn wait_ready(pcs: &Api<PushCluster>, pods: &Api<Pod>, n: i32) -> Vec<String> {
    eventually(
        &format!("Ready=True with {n} ready gateway pods"),
        SLOW,
        || async {
            let pc = pcs.get(NAME).await.ok()?;
            let s = pc.status?;
            let ready = volley_operator::conditions::is_true(&s.conditions, "Ready")
                && s.ready_replicas == n
                && s.observed_generation == pc.metadata.generation;
            let all = gateway_pods(pods).await?;
            (ready && all.len() == n as usize && all.iter().all(is_ready))
                .then(|| all.iter().map(|p| p.name_any()).collect())
        },
    )
    .await
    .unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>;

/// A WebSocket client on `pod`'s client port through the port-forward API, subscribed to
/// `topic` (the `subscribed` reply is awaited, so a publish after this reaches it).
async fn ws_client(pods: &Api<Pod>, pod: &str, topic: &str) -> (Ws, kube::api::Portforwarder) {
    let port = CLIENT_PORT as u16;
    let mut pf = pods.portforward(pod, &[port]).await.expect("port-forward");
    let stream = pf.take_stream(port).expect("forwarded stream");
    let (mut ws, _) = tokio::time::timeout(
        LIMIT,
        tokio_tungstenite::client_async(format!("ws://{pod}:{port}/ws"), stream),
    )
    .await
    .expect("upgrade in time")
    .expect("WebSocket upgrade through the port-forward");
    ws.send(Message::text(
        serde_json::json!({"op": "sub", "topics": [topic]}).to_string(),
    ))
    .await
    .unwrap();
    let reply = next_text(&mut ws, LIMIT).await.expect("a reply to sub");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["op"], "subscribed", "{reply}");
    (ws, pf)
}

/// The next text frame, skipping control frames; None on timeout or close.
async fn next_text(ws: &mut Ws, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A local TCP port whose connections are port-forwarded to `pod`:4222, for a NATS client.
async fn nats_bridge(pods: Api<Pod>, pod: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // A handful of connections at most (one client, its reconnects); ends with the test.
        for _ in 0..16 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut pf) = pods.portforward(&pod, &[4222]).await else {
                return;
            };
            let Some(mut stream) = pf.take_stream(4222) else {
                return;
            };
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                drop(stream);
                let _ = pf.join().await;
            });
        }
    });
    addr
}

#[tokio::test]
#[ignore = "needs a kubernetes cluster (KUBECONFIG) and the Volley images"]
async fn user_story() {
    tokio::task::spawn_blocking(load_images).await.unwrap();
    let client = Client::try_default()
        .await
        .expect("a cluster in KUBECONFIG (this test is --ignored by default)");

    // The operator, as a user installs it.
    let install = read("manifests/install.yaml");
    apply_all(&client, &install).await;
    volley_e2e::crd::wait_established(&client, LIMIT)
        .await
        .unwrap();
    let operator_deployments: Api<Deployment> = Api::namespaced(client.clone(), "volley-system");
    eventually("operator Deployment available", SLOW, || {
        deployment_available(&operator_deployments, "volley")
    })
    .await
    .unwrap();

    // NATS, from the example.
    let nats_yaml = read("manifests/examples/nats.yaml");
    apply_all(&client, &nats_yaml).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    eventually("NATS available", SLOW, || {
        deployment_available(&deployments, "nats")
    })
    .await
    .unwrap();

    // A PushCluster from the example, scaled by hand (the scale subresource) for this test.
    let pcs: Api<PushCluster> = Api::namespaced(client.clone(), NS);
    let _ = pcs.delete(NAME, &DeleteParams::foreground()).await;
    eventually("old PushCluster gone", LIMIT, || async {
        pcs.get_opt(NAME).await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    let example: PushCluster = serde_yaml::from_str(&read("manifests/examples/pushcluster.yaml"))
        .expect("the example PushCluster parses");
    let mut pc = PushCluster::new(NAME, example.spec);
    pc.metadata.namespace = Some(NS.into());
    pc.spec.autoscaling.mode = AutoscalingMode::External;
    pc.spec.replicas = Some(2);
    for c in &mut pc.spec.template.topology_spread_constraints {
        if let Some(l) = c
            .label_selector
            .as_mut()
            .and_then(|s| s.match_labels.as_mut())
        {
            l.insert(volley_operator::build::CLUSTER_LABEL.into(), NAME.into());
        }
    }
    pcs.create(&PostParams::default(), &pc).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let first = wait_ready(&pcs, &pods, 2).await;

    // WebSocket clients on every gateway pod, then one publish through NATS.
    let topic = format!("story.t{}", std::process::id());
    let mut clients = Vec::new();
    for pod in &first {
        for _ in 0..CLIENTS_PER_POD {
            clients.push(ws_client(&pods, pod, &topic).await);
        }
    }
    let nats_pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=nats"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(is_ready)
        .expect("a ready NATS pod")
        .name_any();
    let addr = nats_bridge(pods.clone(), nats_pod).await;
    let nats = async_nats::connect(format!("nats://{addr}"))
        .await
        .expect("NATS through the port-forward");
    let nonce = format!("n{}", std::process::id());
    nats.publish(
        format!("push.{topic}"),
        serde_json::json!({"nonce": nonce}).to_string().into(),
    )
    .await
    .unwrap();
    nats.flush().await.unwrap();
    let expected = serde_json::json!({"topic": topic, "data": {"nonce": nonce}});
    let results = futures_util::future::join_all(clients.iter_mut().map(|(ws, _)| {
        let expected = expected.clone();
        async move {
            let mut got = 0;
            // The message, then a quiet second to catch a duplicate.
            let mut limit = LIMIT;
            while let Some(text) = next_text(ws, limit).await {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v, expected, "unexpected frame {text}");
                got += 1;
                limit = Duration::from_secs(2);
            }
            got
        }
    }))
    .await;
    assert_eq!(
        results,
        vec![1; first.len() * CLIENTS_PER_POD],
        "every client gets the message exactly once"
    );
    for (mut ws, pf) in clients {
        let _ = ws.close(None).await;
        pf.abort();
    }

    // Scale through the scale subresource (`kubectl scale pushc/story --replicas=3`).
    pcs.patch_scale(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    let scaled = wait_ready(&pcs, &pods, 3).await;
    assert!(
        first.iter().all(|p| scaled.contains(p)),
        "scaling up keeps the pods"
    );

    // A spec change rolls every pod.
    pcs.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"gateway": {"flushInterval": "20ms"}}})),
    )
    .await
    .unwrap();
    let old: BTreeSet<String> = scaled.into_iter().collect();
    eventually("every pod replaced after the spec change", SLOW, || async {
        let all = gateway_pods(&pods).await?;
        let fresh = all.iter().filter(|p| !old.contains(&p.name_any())).count();
        (all.len() == 3 && fresh == 3 && all.iter().all(is_ready)).then_some(())
    })
    .await
    .unwrap();

    // Deleting the PushCluster removes everything it owned.
    pcs.delete(NAME, &DeleteParams::foreground()).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    eventually("PushCluster, children and pods gone", SLOW, || async {
        let gone = pcs.get_opt(NAME).await.ok()?.is_none()
            && deployments.get_opt(NAME).await.ok()?.is_none()
            && configmaps
                .get_opt(&volley_operator::build::config_map_name(NAME))
                .await
                .ok()?
                .is_none()
            && services.get_opt(NAME).await.ok()?.is_none()
            && accounts.get_opt(NAME).await.ok()?.is_none()
            && gateway_pods(&pods).await?.is_empty();
        gone.then_some(())
    })
    .await
    .unwrap();

    delete_all(&client, &nats_yaml).await;
    delete_all(&client, &install).await;
    println!("user story passed");
}
