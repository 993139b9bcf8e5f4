//! Cluster mode against a real nats-server: fan-in from NATS to several gateways, interest-based
//! subscriptions, HTTP publish through NATS, and a NATS restart that disconnects no client.

mod support;

use std::time::Duration;

use serde_json::json;
use support::nats::NatsServer;
use support::*;
use volley_gateway::config::Options;
use volley_gateway::gateway::Gateway;

fn cluster_options(nats: &NatsServer, pod: &str) -> Options {
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some(pod.to_owned());
    opts.subscription_linger = Some(Duration::from_millis(300));
    opts
}

async fn nats_client(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url())
        .await
        .expect("test NATS client")
}

async fn wait_nats_connected(gw: &Gateway) {
    wait_metric(gw, "volley_nats_connected", 1.0).await;
}

/// Waits (bounded by [`PATIENCE`], which only bounds a hang) until metric `name` reads `wanted`.
async fn wait_metric(gw: &Gateway, name: &str, wanted: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if metric(gw.admin_addr(), name, "").await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never became {wanted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_message_reaches_subscribers_on_three_gateways_once() {
    let nats = NatsServer::start();
    let mut gateways = Vec::new();
    for pod in ["gw-0", "gw-1", "gw-2"] {
        gateways.push(start(cluster_options(&nats, pod)).await);
    }
    let mut subscribers = Vec::new();
    let mut others = Vec::new();
    for gw in &gateways {
        wait_nats_connected(gw).await;
        subscribers.push(connect(&ws_url(gw, "?topics=news")).await);
        subscribers.push(connect(&ws_url(gw, "?topics=news,news.%3E,*")).await);
        others.push(connect(&ws_url(gw, "?topics=sports")).await);
    }
    nats.wait_for_subscriptions("push.news", 3).await;
    nats.wait_for_subscriptions("push.*", 3).await;
    let publisher = nats_client(&nats).await;
    publisher
        .publish("push.news", r#"{"n":1}"#.into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    for client in &mut subscribers {
        assert_eq!(
            next_json(client).await,
            json!({"topic":"news","data":{"n":1}})
        );
    }
    // Sentinels, one at a time (messages that come through different NATS subscriptions of the
    // gateway are not ordered among themselves): a second copy of `news` 1 would reach a
    // subscriber before `news` 2, and a leaked `news` would reach an `others` client before its
    // `sports`.
    publisher
        .publish("push.news", r#"{"n":2}"#.into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    for client in &mut subscribers {
        assert_eq!(
            next_json(client).await,
            json!({"topic":"news","data":{"n":2}})
        );
    }
    publisher.publish("push.sports", "3".into()).await.unwrap();
    publisher.flush().await.unwrap();
    for client in &mut others {
        assert_eq!(next_json(client).await, json!({"topic":"sports","data":3}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_interest_with_a_linger() {
    let nats = NatsServer::start();
    // Long enough that the few WebSocket round trips below (an unsub and a sub that must come
    // within it) fit in it on a loaded machine.
    let linger = Duration::from_secs(3);
    let mut opts = cluster_options(&nats, "gw-0");
    opts.subscription_linger = Some(linger);
    let gw = start(opts).await;
    wait_nats_connected(&gw).await;
    assert!(
        !nats
            .subscriptions()
            .await
            .iter()
            .any(|s| s.starts_with("push.")),
        "no subscribers, no NATS subscription"
    );
    let mut a = connect(&ws_url(&gw, "?topics=t")).await;
    let mut b = connect(&ws_url(&gw, "?topics=t")).await;
    nats.wait_for_subscriptions("push.t", 1).await;
    let first = nats.subscription_ids("push.t").await;
    assert_eq!(first.len(), 1, "one NATS subscription for two subscribers");
    send_json(&mut a, json!({"op":"unsub","topics":["t"]})).await;
    assert_eq!(next_json(&mut a).await["op"], "unsubscribed");
    // One subscriber left: the same subscription is still held past a linger.
    tokio::time::sleep(linger + Duration::from_millis(500)).await;
    assert_eq!(nats.subscription_ids("push.t").await, first);
    // The last subscriber leaves: released, but not before the linger. The clock starts before
    // the unsub is sent, so the bound holds however slow the machine is.
    let last_unsub = tokio::time::Instant::now();
    send_json(&mut b, json!({"op":"unsub","topics":["t"]})).await;
    assert_eq!(next_json(&mut b).await["op"], "unsubscribed");
    nats.wait_for_subscriptions("push.t", 0).await;
    let held_for = last_unsub.elapsed();
    assert!(
        held_for >= linger,
        "released {held_for:?} after the last unsub, before the {linger:?} linger"
    );
    // Interest that comes back within the linger keeps the subscription it had.
    send_json(&mut a, json!({"op":"sub","topics":["t"]})).await;
    assert_eq!(next_json(&mut a).await["op"], "subscribed");
    nats.wait_for_subscriptions("push.t", 1).await;
    let second = nats.subscription_ids("push.t").await;
    assert_ne!(second, first, "a new subscription after the release");
    send_json(&mut a, json!({"op":"unsub","topics":["t"]})).await;
    assert_eq!(next_json(&mut a).await["op"], "unsubscribed");
    send_json(&mut a, json!({"op":"sub","topics":["t"]})).await;
    assert_eq!(next_json(&mut a).await["op"], "subscribed");
    tokio::time::sleep(linger + Duration::from_millis(500)).await;
    assert_eq!(
        nats.subscription_ids("push.t").await,
        second,
        "a re-subscribe within the linger keeps the same NATS subscription"
    );
    drop(a);
    drop(b);
    nats.wait_for_subscriptions("push.t", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_goes_through_nats_to_other_gateways() {
    let nats = NatsServer::start();
    let gw0 = start(cluster_options(&nats, "gw-0")).await;
    let gw1 = start(cluster_options(&nats, "gw-1")).await;
    wait_nats_connected(&gw0).await;
    wait_nats_connected(&gw1).await;
    let mut on_gw1 = connect(&ws_url(&gw1, "?topics=alerts.*")).await;
    nats.wait_for_subscriptions("push.alerts.*", 1).await;
    publish_ok(gw0.admin_addr(), "alerts.fire", b"\"hot\"").await;
    assert_eq!(
        next_json(&mut on_gw1).await,
        json!({"topic":"alerts.fire","data":"hot"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_disconnects_no_client_and_delivery_resumes() {
    let mut nats = NatsServer::start();
    let gw = start(cluster_options(&nats, "gw-0")).await;
    wait_nats_connected(&gw).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(connect(&ws_url(&gw, "?topics=feed")).await);
    }
    nats.wait_for_subscriptions("push.feed", 1).await;

    nats.stop();
    wait_metric(&gw, "volley_nats_connected", 0.0).await;
    assert!(metric(gw.admin_addr(), "volley_nats_disconnects_total", "").await >= 1.0);
    let (status, body) = get(gw.admin_addr(), "/healthz").await;
    assert_eq!(status, 200, "the gateway stays healthy");
    assert!(body.contains("nats: disconnected"), "{body}");
    let (status, _) = publish(gw.admin_addr(), "feed", b"1").await;
    assert_eq!(
        status, 503,
        "publishing during the outage is refused, not dropped"
    );

    nats.restart();
    wait_nats_connected(&gw).await;
    nats.wait_for_subscriptions("push.feed", 1).await;
    publish_ok(gw.admin_addr(), "feed", b"2").await;
    for client in &mut clients {
        assert_eq!(next_json(client).await, json!({"topic":"feed","data":2}));
    }
    assert_eq!(
        metric(gw.admin_addr(), "volley_connections", "").await,
        10.0
    );
}

async fn control(
    nats: &async_nats::Client,
    pod: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let subject = format!("volley.control.default.volley.{pod}");
    let reply = tokio::time::timeout(PATIENCE, nats.request(subject, body.to_string().into()))
        .await
        .expect("reply in time")
        .expect("control reply");
    serde_json::from_slice(&reply.payload).expect("JSON reply")
}

async fn control_ready(nats: &async_nats::Client, pod: &str) {
    // The control subscription is set up right after NATS connects; retry until it answers (a
    // request before it exists gets "no responders" at once).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let subject = format!("volley.control.default.volley.{pod}");
        let request = nats.request(subject, r#"{"op":"accepting","value":true}"#.into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), request).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("control subject never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_published_and_parse() {
    let nats = NatsServer::start();
    let watcher = nats_client(&nats).await;
    let mut stats = watcher.subscribe("volley.stats.>").await.unwrap();
    watcher.flush().await.unwrap();
    let mut opts = cluster_options(&nats, "gw-stats");
    opts.stats_interval = Some(Duration::from_millis(200));
    let gw = start(opts).await;
    // URL topics asked before NATS is connected cannot be confirmed (the connection is
    // closed 1013): wait for it.
    wait_nats_connected(&gw).await;
    let _a = connect(&ws_url(&gw, "?topics=x,y")).await;
    let _b = connect(&ws_url(&gw, "?topics=x")).await;
    use futures_util::StreamExt as _;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, stats.next())
            .await
            .expect("stats in time")
            .unwrap();
        assert_eq!(
            message.subject.as_str(),
            "volley.stats.default.volley.gw-stats"
        );
        let parsed: volley_wire::GatewayStats =
            serde_json::from_slice(&message.payload).expect("stats parse");
        assert_eq!(parsed.pod, "gw-stats");
        assert_eq!(parsed.connections_per_shard.len(), 2);
        assert!(parsed.rss_bytes > 0);
        assert!(!parsed.started_at.is_empty());
        if parsed.connections == 2 && parsed.subscriptions == 3 {
            assert_eq!(parsed.connections_per_shard.iter().sum::<u64>(), 2);
            assert!(parsed.accepting);
            assert!(!parsed.draining);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_closes_n_connections_with_1012_spread_out() {
    let nats = NatsServer::start();
    let gw = start(cluster_options(&nats, "gw-shed")).await;
    let operator = nats_client(&nats).await;
    control_ready(&operator, "gw-shed").await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(connect(&ws_url(&gw, "")).await);
    }
    // A window long enough that the spread it makes stands out of a loaded machine's delays:
    // each shard's first close is due at once and its last at least half the window later.
    const OVER: Duration = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let reply = control(
        &operator,
        "gw-shed",
        json!({"op":"shed","count":4,"over_ms":OVER.as_millis() as u64}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["closing"], 4, "{reply}");
    // Every client reads until its close; the four closes must come (bounded only against a
    // hang), and then the six others must still be open.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::channel(clients.len());
    let mut readers = tokio::task::JoinSet::new();
    for mut client in clients {
        let closed_tx = closed_tx.clone();
        readers.spawn(async move {
            use futures_util::StreamExt as _;
            match client.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(close)))) => {
                    let close = (
                        u16::from(close.code),
                        close.reason.to_string(),
                        started.elapsed(),
                    );
                    closed_tx.send(close).await.expect("the test is waiting");
                }
                other => panic!("unexpected {other:?}"),
            }
        });
    }
    drop(closed_tx);
    let mut closes = Vec::new();
    while closes.len() < 4 {
        let close = tokio::time::timeout(PATIENCE, closed_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of 4 closes: {closes:?}", closes.len()))
            .expect("readers still running");
        closes.push(close);
    }
    for (code, reason, _) in &closes {
        assert_eq!(
            (*code, reason.as_str()),
            (1012, "rebalance; reconnect and resume")
        );
    }
    let mut times: Vec<Duration> = closes.iter().map(|c| c.2).collect();
    times.sort();
    assert!(
        times[3] - times[0] >= OVER / 4,
        "spread over the {OVER:?} window: {times:?}"
    );
    // Exactly the requested count: past the window (and a sweep), nobody else was closed.
    tokio::time::sleep(OVER.saturating_sub(started.elapsed()) + Duration::from_millis(500)).await;
    assert!(
        closed_rx.try_recv().is_err(),
        "more than the 4 requested closes"
    );
    let mut finished = 0;
    while let Some(reader) = readers.try_join_next() {
        reader.expect("a closed client read only its close");
        finished += 1;
    }
    assert_eq!(finished, 4, "six clients still open");
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 6.0);
    readers.abort_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_accepting_requests() {
    let nats = NatsServer::start();
    let gw = start(cluster_options(&nats, "gw-drain")).await;
    let operator = nats_client(&nats).await;
    control_ready(&operator, "gw-drain").await;
    let admin = gw.admin_addr();
    // Ready first: the start-up wait ends with the publish confirmation self-test's verdict,
    // which may come after the control subject answers.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(admin, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let reply = control(
        &operator,
        "gw-drain",
        json!({"op":"accepting","value":false}),
    )
    .await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["accepting"], false);
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let reply = control(
        &operator,
        "gw-drain",
        json!({"op":"accepting","value":true}),
    )
    .await;
    assert_eq!(reply["accepting"], true);
    assert_eq!(get(admin, "/readyz").await.0, 200);

    let reply = control(&operator, "gw-drain", json!({"op":"explode"})).await;
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"].as_str().unwrap().contains("malformed"),
        "{reply}"
    );
    assert_eq!(
        get(admin, "/readyz").await.0,
        200,
        "a bad request changes nothing"
    );

    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(connect(&ws_url(&gw, "")).await);
    }
    let reply = control(&operator, "gw-drain", json!({"op":"drain","over_ms":300})).await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["closing"], 6);
    assert_eq!(reply["draining"], true);
    for client in &mut clients {
        assert_eq!(u16::from(expect_close(client).await.code), 1001);
    }
    assert_eq!(get(admin, "/readyz").await.0, 503);
}
