//! Leadership against a mocked Kubernetes API (tower-test) holding one Lease: winning it,
//! releasing it at shutdown, and the wait helper.

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// When the mock received it.
    at: tokio::time::Instant,
}

type Calls = Arc<Mutex<Vec<Call>>>;
/// The Lease as the API server holds it (None before it is created).
type StoredLease = Arc<Mutex<Option<Value>>>;

/// How the mock API server misbehaves.
#[derive(Clone, Default)]
struct Faults {
    /// The release PATCH (holderIdentity null) is never answered.
    hang_release: bool,
    /// While set, every PATCH fails with 500 (an API server that cannot write).
    fail_writes: Arc<AtomicBool>,
    /// The first renewal is answered after this long, and every later renewal is never
    /// answered (an API server that slows down, then hangs).
    slow_then_hang: Option<Duration>,
    /// Every `n`th renewal fails at once with 500, `m` times in all (isolated blips).
    blips: Option<(usize, usize)>,
}

/// A renewal of a held lease: renewTime, and no holderIdentity (kube-lease-manager state.rs
/// `lock`).
fn is_renewal(method: &str, body: &Value) -> bool {
    method == "PATCH"
        && body["spec"].get("holderIdentity").is_none()
        && body["spec"].get("renewTime").is_some()
}

fn internal_error() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "reason": "InternalError", "code": 500, "message": "etcd unavailable", "metadata": {}})
}

/// A tiny API server holding one Lease (tower-test): GET, POST (create) and PATCH (the spec
/// fields merged, `null` removes one, like a strategic merge of these scalar fields).
fn lease_api(faults: Faults) -> (Client, Calls, StoredLease) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let lease = StoredLease::default();
    let (log, stored) = (calls.clone(), lease.clone());
    tokio::spawn(async move {
        // Unanswered requests stay pending (dropping the sender would fail them at once).
        let mut held = Vec::new();
        let mut renewals = 0;
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            log.lock().unwrap().push(Call {
                method: method.clone(),
                body: body.clone(),
                at: tokio::time::Instant::now(),
            });
            let renewal = is_renewal(&method, &body);
            if renewal {
                renewals += 1;
            }
            let mut delay = None;
            if renewal && let Some(slow) = faults.slow_then_hang {
                if renewals > 1 {
                    held.push(send);
                    continue;
                }
                delay = Some(slow);
            }
            if renewal
                && let Some((every, times)) = faults.blips
                && renewals % every == 0
                && renewals / every <= times
            {
                let resp = Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body(Body::from(serde_json::to_vec(&internal_error()).unwrap()))
                    .unwrap();
                send.send_response(resp);
                continue;
            }
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
                ("PATCH", _) if faults.fail_writes.load(Ordering::SeqCst) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, internal_error())
                }
                ("PATCH", Some(l)) => {
                    let releasing = body["spec"].get("holderIdentity") == Some(&Value::Null);
                    if faults.hang_release && releasing {
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
            match delay {
                None => send.send_response(resp),
                Some(delay) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        send.send_response(resp);
                    });
                }
            }
        }
    });
    (Client::new(service, "volley"), calls, lease)
}

fn config() -> LeaseConfig {
    LeaseConfig::standard(
        "volley-operator".into(),
        "volley".into(),
        "operator-0".into(),
    )
}

/// Faster timings for tests that watch renewals: a renewal every second (duration - grace; the
/// library counts whole seconds), 3 s deadline.
fn fast() -> LeaseConfig {
    LeaseConfig {
        duration_seconds: 6,
        grace_seconds: 5,
        renew_deadline: Duration::from_secs(3),
        retry: Duration::from_millis(200),
        request_timeout: Duration::from_millis(2500),
        standby_poll: Duration::from_secs(1),
        ..config()
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
        let (client, calls, lease) = lease_api(Faults::default());
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
    let (client, calls, lease) = lease_api(Faults {
        hang_release: true,
        ..Faults::default()
    });
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

/// How many renewals (PATCHes of an already held lease: renewTime only) the API accepted or
/// refused so far.
fn renewals(calls: &Calls) -> usize {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| is_renewal(&c.method, &c.body))
        .count()
}

async fn wait_renewals(calls: &Calls, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while renewals(calls) < n {
        assert!(tokio::time::Instant::now() < deadline, "no renewal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A leader whose renewals keep failing (not a conflict: kube-lease-manager then keeps saying
/// "leader") steps down by itself after the renew deadline, while the Lease it can no longer
/// renew still names it. While renewals succeed it stays leader.
#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down() {
    let faults = Faults::default();
    let (client, calls, lease) = lease_api(faults.clone());
    let cfg = LeaseConfig {
        // Renewed every second; 4 s without an accepted renewal is the deadline (3 s of slack
        // for a renewal late on a loaded machine; 1 s once stepped a healthy leader down).
        duration_seconds: 6,
        grace_seconds: 5,
        renew_deadline: Duration::from_secs(4),
        ..config()
    };
    let deadline = cfg.renew_deadline;
    let (mut rx, task) = start(client, cfg).await.unwrap();
    assert!(wait_for(&mut rx, true).await);
    // Renewals succeed past the deadline: still leading.
    let start = tokio::time::Instant::now();
    let mut seen = renewals(&calls);
    while start.elapsed() < deadline + Duration::from_secs(2) {
        wait_renewals(&calls, seen + 1).await;
        seen = renewals(&calls);
    }
    assert!(*rx.borrow(), "stepped down while renewing");
    assert!(!rx.has_changed().unwrap());
    // Writes start failing: the leader steps down, and stays down.
    faults.fail_writes.store(true, Ordering::SeqCst);
    // (kube-lease-manager alone never says so: bounded, so that fails instead of hanging.)
    tokio::time::timeout(Duration::from_secs(30), wait_for(&mut rx, false))
        .await
        .expect("still leading long after the renew deadline");
    assert!(
        renewals(&calls) > seen,
        "stepped down without a failed renewal"
    );
    assert_eq!(holder(&lease), "operator-0");
    faults.fail_writes.store(false, Ordering::SeqCst);
    wait_renewals(&calls, renewals(&calls) + 2).await;
    assert!(!*rx.borrow(), "leading again after the deadline passed");
    // Dropping the receiver still releases the lease.
    drop(rx);
    stop(task, Duration::from_secs(30)).await.unwrap();
    assert_eq!(holder(&lease), Value::Null);
}

/// When renewal number `n` (1-based) reached the mock.
fn renewal_at(calls: &Calls, n: usize) -> tokio::time::Instant {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| is_renewal(&c.method, &c.body))
        .nth(n - 1)
        .expect("that renewal was sent")
        .at
}

/// Review 2 finding 2: the deadline counts from when a renewal was sent (the renewTime a
/// standby reads), not from when its answer arrived. A renewal answered after 2 s, then renewals
/// that hang: the leader steps down 4 s (the deadline) after sending the slow one, not 2 + 4 s.
/// A hanging renewal also times out and is tried again.
#[tokio::test]
async fn the_deadline_counts_from_the_send_of_a_slow_renewal() {
    let slow = Duration::from_secs(2);
    let (client, calls, _lease) = lease_api(Faults {
        slow_then_hang: Some(slow),
        ..Faults::default()
    });
    // The slow answer (1 s after the acquire, then 2 s) arrives before the acquire's own
    // deadline, so it is this renewal's deadline that runs out.
    let cfg = LeaseConfig {
        renew_deadline: Duration::from_secs(4),
        ..fast()
    };
    let deadline = cfg.renew_deadline;
    let (mut rx, task) = start(client, cfg).await.unwrap();
    assert!(wait_for(&mut rx, true).await);
    tokio::time::timeout(Duration::from_secs(60), wait_for(&mut rx, false))
        .await
        .expect("still leading long after the renew deadline");
    let down = tokio::time::Instant::now();
    let sent = renewal_at(&calls, 1);
    // Counted from the answer it would be `deadline + slow`; half of `slow` is slack for a
    // loaded machine. Not much earlier either: the acquire's own deadline would end about
    // `deadline - 1 s` after this send. (The mock sees the request just after the recorder.)
    assert!(
        down < sent + deadline + slow / 2 && down + slow / 4 >= sent + deadline,
        "stepped down {:?} after sending the slow renewal (deadline {deadline:?})",
        down - sent
    );
    // The hanging renewal was given up and tried again (a third renewal is sent).
    wait_renewals(&calls, 3).await;
    drop(rx);
    // The release hangs like every write now; `stop` gives up.
    let _ = stop(task, Duration::from_millis(100)).await;
}

/// Review 2 finding 3: isolated failed renewals (a 500 every second renewal, six times) never
/// make a healthy leader step down. kube-lease-manager's own loop backs off further on each
/// error and only resets on a leadership change, so there the third or fourth blip already
/// outlasted the deadline.
#[tokio::test]
async fn spaced_failed_renewals_do_not_step_a_leader_down() {
    let (every, times) = (2, 6);
    let (client, calls, lease) = lease_api(Faults {
        blips: Some((every, times)),
        ..Faults::default()
    });
    let (mut rx, task) = start(client, fast()).await.unwrap();
    assert!(wait_for(&mut rx, true).await);
    // Every blip, plus two renewals after the last one.
    wait_renewals(&calls, every * times + 2).await;
    assert!(
        *rx.borrow(),
        "a leader stepped down on isolated failed renewals"
    );
    assert!(!rx.has_changed().unwrap(), "leadership flapped");
    assert_eq!(holder(&lease), "operator-0");
    drop(rx);
    stop(task, Duration::from_secs(30)).await.unwrap();
    assert_eq!(holder(&lease), Value::Null);
}

/// Review 2 finding 10: a process that restarts under the identity the Lease still names is
/// told "leader" from a GET alone, with no write of its own accepted. When its renewals then
/// fail, the deadline still runs out.
#[tokio::test]
async fn a_leader_without_any_accepted_write_steps_down() {
    let faults = Faults::default();
    faults.fail_writes.store(true, Ordering::SeqCst);
    let (client, calls, lease) = lease_api(faults);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    *lease.lock().unwrap() = Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "volley-operator", "namespace": "volley", "resourceVersion": "7"},
        "spec": {"holderIdentity": "operator-0", "leaseDurationSeconds": 6,
            "acquireTime": now, "renewTime": now},
    }));
    let cfg = fast();
    let deadline = cfg.renew_deadline;
    let (mut rx, task) = start(client, cfg).await.unwrap();
    assert!(wait_for(&mut rx, true).await);
    let led = tokio::time::Instant::now();
    tokio::time::timeout(deadline * 10, wait_for(&mut rx, false))
        .await
        .expect("a leader whose every write fails kept leading");
    assert!(led.elapsed() < deadline * 10);
    assert!(
        renewals(&calls) >= 1,
        "stepped down without trying to renew"
    );
    drop(rx);
    let _ = stop(task, Duration::from_millis(100)).await;
}

/// One request the controller made, for [`controller_api`].
type Seen = Arc<Mutex<Vec<(tokio::time::Instant, String, String)>>>;

/// The reconcile's requests the mock has not answered: path and responder.
type Held = Arc<
    Mutex<
        Vec<(
            String,
            tower_test::mock::SendResponse<Response<axum::body::Body>>,
        )>,
    >,
>;

/// A mock API server for the controller: the PushCluster `web` in `apps` is listed, children
/// lists are empty, watches stay open without events, and every other request (those of a
/// reconcile) is held unanswered: a reconcile stuck on a slow or partitioned API server. The
/// test answers the held ones with [`answer_held`].
fn controller_api() -> (Client, Seen, Held) {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<Body>, Response<axum::body::Body>>();
    let seen = Seen::default();
    let held = Held::default();
    let (log, hold) = (seen.clone(), held.clone());
    let mut pc = volley_crds::PushCluster::new("web", volley_crds::PushClusterSpec::default());
    pc.metadata.namespace = Some("apps".into());
    pc.metadata.uid = Some("uid-1".into());
    pc.metadata.generation = Some(1);
    pc.metadata.resource_version = Some("1".into());
    let pc = serde_json::to_value(pc).unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (method, path) = (req.method().to_string(), req.uri().path().to_string());
            let watch = req.uri().query().unwrap_or_default().contains("watch=true");
            log.lock()
                .unwrap()
                .push((tokio::time::Instant::now(), method.clone(), path.clone()));
            if watch {
                let (tx, rx) = futures::channel::mpsc::unbounded::<
                    Result<axum::body::Bytes, std::io::Error>,
                >();
                open.push(tx);
                send.send_response(Response::new(axum::body::Body::from_stream(rx)));
                continue;
            }
            let list = |items: Vec<Value>| {
                json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": "1"}, "items": items})
            };
            let reply = if reconciles(&method, &path) {
                hold.lock().unwrap().push((path, send));
                continue;
            } else if path.ends_with("/pushclusters") {
                list(vec![pc.clone()])
            } else {
                list(Vec::new())
            };
            send.send_response(Response::new(axum::body::Body::from(
                serde_json::to_vec(&reply).unwrap(),
            )));
        }
    });
    (Client::new(service, "apps"), seen, held)
}

/// Answers every held request as for a cluster with no children yet (the pod list empty, any
/// other object not found), which lets a live reconcile go on to its next request.
fn answer_held(held: &Held) {
    for (path, send) in held.lock().unwrap().drain(..) {
        let (code, reply) = if path.ends_with("/pods") {
            let empty = json!({"apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": "1"}, "items": []});
            (StatusCode::OK, empty)
        } else {
            let missing = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}});
            (StatusCode::NOT_FOUND, missing)
        };
        let resp = Response::builder()
            .status(code)
            .body(axum::body::Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap();
        send.send_response(resp);
    }
}

/// A reconcile's request, not one of the controller's lists of PushClusters and children (a
/// collection in `apps`, pods aside, which only reconciles list).
fn reconciles(method: &str, path: &str) -> bool {
    method != "GET" || path.ends_with("/pods") || path.rsplit('/').nth(1) != Some("apps")
}

/// The reconcile's requests seen so far.
fn reconcile_requests(seen: &Seen) -> Vec<(tokio::time::Instant, String, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, method, path)| reconciles(method, path))
        .cloned()
        .collect()
}

/// Review 2 finding 2: on lost leadership the controller stops at once, in-flight reconciles
/// included, instead of waiting for them (a graceful shutdown waits for a reconcile stuck on
/// the API server, or on 10 s NATS requests, while a standby already leads).
#[tokio::test]
async fn lost_leadership_drops_a_reconcile_in_flight() {
    use crate::build::BuildOptions;
    use crate::controller::{self, Context};

    let (client, seen, held) = controller_api();
    let ctx = Context::new(
        client,
        BuildOptions {
            default_image: "example/gw:1".into(),
            ..Default::default()
        },
        crate::metrics::Metrics::default(),
    );
    let (lose, lost) = tokio::sync::oneshot::channel::<()>();
    // As in main: the graceful shutdown waits for a signal that never comes here.
    let work = controller::run(ctx, Some("apps".into()), std::future::pending());
    let running = tokio::spawn(until_lost(work, async move {
        let _ = lost.await;
    }));
    let started = tokio::time::Instant::now();
    while reconcile_requests(&seen).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no reconcile");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lose.send(()).unwrap();
    // At once; a graceful shutdown would wait for the held request forever.
    let stopped = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the controller waited for its reconcile after leadership was lost")
        .unwrap();
    assert!(stopped.is_none(), "the controller ended by itself");
    // Aborted, not detached: answering its request now leads to no further request.
    let at_loss = seen.lock().unwrap().len();
    answer_held(&held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = seen.lock().unwrap()[at_loss..].to_vec();
    assert!(after.is_empty(), "requests after the loss: {after:?}");
}

fn gets(calls: &Calls) -> usize {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.method == "GET")
        .count()
}

/// Review 2 finding 4: a leader that releases the Lease at shutdown hands over at once. The
/// standby has read the held Lease (so kube-lease-manager alone would sleep until its expiry,
/// 13 to 15 s later); it sees the release within its 2 s poll and takes the lease.
#[tokio::test]
async fn a_standby_takes_a_released_lease_at_once() {
    let (client, calls, lease) = lease_api(Faults::default());
    let (mut leader, leader_task) = start(client.clone(), config()).await.unwrap();
    assert!(wait_for(&mut leader, true).await);
    let read = gets(&calls);
    let standby_cfg = LeaseConfig {
        identity: "operator-1".into(),
        ..config()
    };
    let poll = standby_cfg.standby_poll;
    let (mut standby, standby_task) = start(client, standby_cfg).await.unwrap();
    // The standby has read the Lease held by operator-0 (its construction and its first step).
    let started = tokio::time::Instant::now();
    while gets(&calls) < read + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "standby never read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!*standby.borrow());

    drop(leader);
    stop(leader_task, Duration::from_secs(30)).await.unwrap();
    let released = tokio::time::Instant::now();
    // A poll, the rebuild's reads and the acquire; twice the poll leaves room for a slow
    // machine and is still far below the 13 s the expiry would take.
    tokio::time::timeout(
        poll * 2 + Duration::from_secs(1),
        wait_for(&mut standby, true),
    )
    .await
    .expect("the standby waited for the expiry of a released lease");
    assert!(released.elapsed() < Duration::from_secs(13));
    assert_eq!(holder(&lease), "operator-1");
    drop(standby);
    stop(standby_task, Duration::from_secs(30)).await.unwrap();
    assert_eq!(holder(&lease), Value::Null);
}
