//! Reconcile against a mocked Kubernetes API (tower-test): which objects get applied, with which
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
                    serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
                ),
                "GET" => (
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
                ),
                // Status patches return the whole object; child applies echo what was sent.
                "PATCH" if path.ends_with("/status") => (StatusCode::OK, pc_json.clone()),
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
