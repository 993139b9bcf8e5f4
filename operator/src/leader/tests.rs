//! Leadership against a mocked Kubernetes API (tower-test) holding one Lease: winning it,
//! releasing it at shutdown, and the wait helper.

use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn waits_for_leadership_changes() {
    let (tx, mut rx) = watch::channel(false);
    let waiter = tokio::spawn(async move {
        assert!(wait_for(&mut rx, true).await);
        assert!(wait_for(&mut rx, false).await);
        rx
    });
    tx.send(true).unwrap();
    tokio::task::yield_now().await;
    tx.send(false).unwrap();
    let mut rx = waiter.await.unwrap();
    drop(tx);
    // Sender gone: "not leading" is reached, "leading" never is.
    assert!(wait_for(&mut rx, false).await);
    assert!(!wait_for(&mut rx, true).await);
}

/// One request the lease manager made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    body: serde_json::Value,
}

type Calls = Arc<Mutex<Vec<Call>>>;
/// The Lease as the API server holds it (None before it is created).
type StoredLease = Arc<Mutex<Option<Value>>>;

/// A tiny API server holding one Lease (tower-test): GET, POST (create) and PATCH (the spec
/// fields merged, `null` removes one, like a strategic merge of these scalar fields). With
/// `hang_release`, the release PATCH (holderIdentity null) is never answered.
fn lease_api(hang_release: bool) -> (Client, Calls, StoredLease) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let lease = StoredLease::default();
    let (log, stored) = (calls.clone(), lease.clone());
    tokio::spawn(async move {
        // Unanswered requests stay pending (dropping the sender would fail them at once).
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            log.lock().unwrap().push(Call {
                method: method.clone(),
                body: body.clone(),
            });
            let mut lease = stored.lock().unwrap();
            let (code, reply) = match (method.as_str(), lease.as_mut()) {
                ("GET", Some(l)) => (StatusCode::OK, l.clone()),
                ("GET", None) => (
                    StatusCode::NOT_FOUND,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
                ),
                ("POST", _) => {
                    let mut created = body.clone();
                    created["metadata"]["resourceVersion"] = json!("1");
                    *lease = Some(created.clone());
                    (StatusCode::CREATED, created)
                }
                ("PATCH", Some(l)) => {
                    let releasing = body["spec"].get("holderIdentity") == Some(&Value::Null);
                    if hang_release && releasing {
                        held.push(send);
                        continue;
                    }
                    let spec = l["spec"].as_object().cloned().unwrap_or_default();
                    let mut spec = spec;
                    for (k, v) in body["spec"].as_object().cloned().unwrap_or_default() {
                        if v.is_null() {
                            spec.remove(&k);
                        } else {
                            spec.insert(k, v);
                        }
                    }
                    l["spec"] = Value::Object(spec);
                    (StatusCode::OK, l.clone())
                }
                _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
            };
            let resp = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (Client::new(service, "volley"), calls, lease)
}

fn config() -> LeaseConfig {
    LeaseConfig {
        name: "volley-operator".into(),
        namespace: "volley".into(),
        identity: "operator-0".into(),
        duration_seconds: 15,
        grace_seconds: 5,
    }
}

fn holder(lease: &Mutex<Option<Value>>) -> Value {
    lease.lock().unwrap().as_ref().expect("lease created")["spec"]["holderIdentity"].clone()
}

/// The way `main` ends: lead, drop the receivers, wait for the release with [`stop`], return
/// from the runtime. The Lease has no holder afterwards, so a standby takes over at once
/// instead of after the 15 s lease. (Before, the release task was detached and the runtime's
/// shutdown cancelled it.)
#[test]
fn shutdown_releases_the_lease() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (calls, lease) = runtime.block_on(async {
        let (client, calls, lease) = lease_api(false);
        let (mut rx, task) = start(client, config()).await.unwrap();
        assert!(wait_for(&mut rx, true).await);
        assert_eq!(holder(&lease), "operator-0");
        drop(rx);
        stop(task, Duration::from_secs(30)).await.unwrap();
        (calls, lease)
    });
    drop(runtime);
    assert_eq!(holder(&lease), Value::Null, "{:?}", lease.lock().unwrap());
    let calls = calls.lock().unwrap();
    let release = calls
        .iter()
        .rfind(|c| c.method == "PATCH")
        .expect("a release PATCH");
    assert_eq!(release.body["spec"]["holderIdentity"], Value::Null);
    assert!(
        release.body["spec"]
            .as_object()
            .unwrap()
            .contains_key("holderIdentity")
    );
}

/// An API server that never answers the release does not hold the shutdown: `stop` gives up
/// after its timeout.
#[tokio::test]
async fn stop_gives_up_on_a_release_that_hangs() {
    let (client, calls, lease) = lease_api(true);
    let (mut rx, task) = start(client, config()).await.unwrap();
    assert!(wait_for(&mut rx, true).await);
    drop(rx);
    let err = stop(task, Duration::from_millis(500))
        .await
        .expect_err("the release never finishes");
    assert!(matches!(err, StopError::Timeout(_)), "{err}");
    // It got as far as sending the release.
    assert!(
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.method == "PATCH" && c.body["spec"]["holderIdentity"].is_null())
    );
    assert_eq!(holder(&lease), "operator-0");
}
