//! Cluster mode when NATS or the gateway's own router falls behind, against a real nats-server:
//! messages the NATS client drops are counted, and `/readyz` waits for the first connection (and
//! history check) but not for a later outage. (A pattern subscribed while NATS is down is refused
//! `unavailable`, and subscribed again once it is back: `subscribe_confirm.rs`.)

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::nats::NatsServer;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn wait_metric(admin: std::net::SocketAddr, name: &str, wanted: f64) {
    wait_metric_within(admin, name, wanted, PATIENCE).await;
}

async fn wait_metric_within(
    admin: std::net::SocketAddr,
    name: &str,
    wanted: f64,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if metric(admin, name, "").await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never became {wanted}");
}

/// The next JSON message, or None after `within` of silence.
async fn next_within(client: &mut Client, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, client.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("JSON"));
            }
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_nats_client_drops_are_counted_as_dropped() {
    const BURST: u64 = 2_000;
    let nats = NatsServer::start();
    let url = nats.url();
    // A per-subscription buffer of 4 messages in the NATS client: a burst outruns the router.
    let gw = GatewayProcess::spawn_with_env(
        &[("VOLLEY_TEST_NATS_SUBSCRIPTION_CAPACITY", "4")],
        &["--nats", &url, "--pod-name", "gw-a", "--shards", "1"],
    );
    wait_metric(gw.admin, "volley_nats_connected", 1.0).await;
    let mut subscriber = connect(&gw.ws_url("?topics=burst")).await;
    nats.wait_for_subscriptions("push.burst", 1).await;
    let publisher = async_nats::connect(&url).await.expect("test NATS client");

    let (mut sent, mut received) = (0u64, 0u64);
    let mut lost_some = false;
    for round in 0..10u64 {
        for n in 0..BURST {
            publisher
                .publish("push.burst", n.to_string().into())
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        sent += BURST;
        // A sentinel behind the burst (sent again until one arrives: it may be dropped too):
        // once it is read, every burst message before it was delivered or dropped.
        let mut burst_received = 0;
        'round: for _ in 0..200 {
            publisher
                .publish("push.burst", json!({"end": round}).to_string().into())
                .await
                .unwrap();
            publisher.flush().await.unwrap();
            sent += 1;
            while let Some(message) = next_within(&mut subscriber, Duration::from_millis(200)).await
            {
                received += 1;
                match message["data"]["end"].as_u64() {
                    Some(r) if r == round => break 'round,
                    Some(_) => {}
                    None => burst_received += 1,
                }
            }
        }
        if burst_received < BURST {
            lost_some = true;
            break;
        }
    }
    assert!(lost_some, "no burst outran a 4-message buffer in 10 rounds");
    // Counted (events come in the background), never more than what went missing.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if metric(gw.admin, "volley_nats_dropped_total", "").await > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let nats_dropped = metric(gw.admin, "volley_nats_dropped_total", "").await;
    let dropped = metric(gw.admin, "volley_dropped_total", "").await;
    assert!(nats_dropped > 0.0, "sent {sent}, received {received}");
    assert!(nats_dropped <= (sent - received) as f64, "{nats_dropped}");
    assert!(dropped >= nats_dropped, "{dropped} < {nats_dropped}");
}

/// Polls `/readyz` until it is 200 (bounded); returns every 503 body seen before.
async fn wait_ready(admin: std::net::SocketAddr) -> Vec<String> {
    let mut refusals = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let (status, body) = get(admin, "/readyz").await;
        if status == 200 {
            return refusals;
        }
        assert_eq!(status, 503, "{body}");
        refusals.push(body);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never ready: {:?}", refusals.last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_before_nats_is_first_connected_then_ready_through_an_outage() {
    let mut nats = NatsServer::start();
    nats.stop();
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    let gw = start(opts).await;
    let (status, body) = get(gw.admin_addr(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("waiting for NATS"), "{body}");

    nats.restart();
    wait_ready(gw.admin_addr()).await;
    assert_eq!(
        metric(gw.admin_addr(), "volley_nats_connected", "").await,
        1.0
    );
    // A later outage does not take the gateway out of the Service (its clients stay served
    // live, and every gateway would go at once).
    nats.stop();
    wait_metric(gw.admin_addr(), "volley_nats_connected", 0.0).await;
    assert_eq!(get(gw.admin_addr(), "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_not_ready_before_the_stream_was_checked() {
    let mut nats = NatsServer::start_js();
    nats.stop();
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.history_topics = Some(vec!["news.>".to_owned()]);
    opts.history = Some(volley_gateway::config::HistoryFile::default());
    let gw = start(opts).await;
    assert_eq!(get(gw.admin_addr(), "/readyz").await.0, 503);

    nats.restart();
    wait_ready(gw.admin_addr()).await;
    // Ready means a resume would be served from history, not answered `unavailable`.
    assert_eq!(
        metric(gw.admin_addr(), "volley_history_available", "").await,
        1.0
    );
}

/// Review 2, finding 1: an outage longer than the switch to live (here 300 ms, a test knob for
/// the 10 s) moves history patterns to core subscriptions while NATS is down. When NATS comes
/// back without JetStream (a cluster still electing its leaders, a server restarted without
/// `-js`), the pattern must be served live, not left on an ordered consumer that retries for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_topic_is_served_live_when_nats_returns_without_jetstream() {
    let mut nats = NatsServer::start_js();
    let url = nats.url();
    let gw = GatewayProcess::spawn_with_env(
        &[("VOLLEY_TEST_SWITCH_TO_LIVE_AFTER_MS", "300")],
        &[
            "--nats",
            &url,
            "--pod-name",
            "gw-0",
            "--shards",
            "1",
            "--history-topics",
            "news",
        ],
    );
    wait_metric(gw.admin, "volley_history_available", 1.0).await;
    let mut subscriber = connect(&gw.ws_url("?topics=news")).await;
    assert_eq!(next_json(&mut subscriber).await["op"], "subscribed");
    // Consumed through JetStream, its consumer open: a message published now (again until one
    // arrives: the consumer delivers only what is stored after it opened) comes with its stream
    // sequence.
    wait_metric(gw.admin, "volley_history_consumers", 1.0).await;
    let publisher = async_nats::connect(&url).await.expect("test NATS client");
    let mut through_jetstream = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        publisher.publish("push.news", "0".into()).await.unwrap();
        publisher.flush().await.unwrap();
        through_jetstream = next_within(&mut subscriber, Duration::from_millis(500)).await;
        if through_jetstream.is_some() {
            break;
        }
    }
    let first = through_jetstream.expect("the history consumer delivers");
    assert!(first["seq"].is_u64(), "{first}");
    drop(publisher);

    nats.stop();
    wait_metric(gw.admin, "volley_nats_connected", 0.0).await;
    // The switch to core subscriptions happened while NATS is down. Each check of the stream
    // meanwhile waits out JetStream request timeouts (5 s each), and the switch comes at the
    // first failed check past the knob: about 25 s here.
    wait_metric_within(
        gw.admin,
        "volley_history_consumers",
        0.0,
        Duration::from_secs(60),
    )
    .await;

    nats.restart_with(&[]);
    wait_metric(gw.admin, "volley_nats_connected", 1.0).await;
    nats.wait_for_subscriptions("push.news", 1).await;
    let publisher = async_nats::connect(&url).await.expect("test NATS client");
    publisher.publish("push.news", "7".into()).await.unwrap();
    publisher.flush().await.unwrap();
    // (A late copy of the first probe may come before it.)
    let message = loop {
        let message = next_within(&mut subscriber, PATIENCE)
            .await
            .expect("the history topic is delivered live once NATS is back");
        if message["data"] != 0 {
            break message;
        }
    };
    assert_eq!(message["topic"], "news", "{message}");
    assert_eq!(message["data"], 7, "{message}");
}

/// Review 2, finding 8: readiness latches on what happened (connected once, the stream checked
/// once), not on what a probe happens to see. A gateway that connected and checked, then lost
/// NATS before any probe came, is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_nats_went_down_after_the_first_check_but_before_any_probe() {
    let mut nats = NatsServer::start_js();
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.history_topics = Some(vec!["news.>".to_owned()]);
    opts.history = Some(volley_gateway::config::HistoryFile::default());
    let gw = start(opts).await;
    // No probe meanwhile: only the metrics are read.
    wait_metric(gw.admin_addr(), "volley_history_available", 1.0).await;
    nats.stop();
    wait_metric(gw.admin_addr(), "volley_nats_connected", 0.0).await;
    let (status, body) = get(gw.admin_addr(), "/readyz").await;
    assert_eq!(status, 200, "{body}");
}

/// A pattern confirmed before an outage is not promised to a new subscriber during it: the
/// confirmation ends with the connection (review finding 2). A (holding `x`, so `x` is confirmed
/// on the shard and in the router) stays; B, on the same shard, subscribes `x` while NATS is
/// down: no `subscribed` until NATS is back and the subscription confirmed again (or
/// `unavailable` at the deadline), and after a `subscribed` a message published through NATS
/// reaches B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_confirmed_before_an_outage_is_not_promised_during_it() {
    let mut nats = NatsServer::start();
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.shards = Some(1);
    let gw = start(opts).await;
    wait_metric(gw.admin_addr(), "volley_nats_connected", 1.0).await;
    let mut a = connect(&ws_url(&gw, "")).await;
    send_json(&mut a, json!({"op":"sub","topics":["x"]})).await;
    assert_eq!(
        next_json(&mut a).await,
        json!({"op":"subscribed","topics":["x"]})
    );
    let mut b = connect(&ws_url(&gw, "")).await;
    nats.stop();
    wait_metric(gw.admin_addr(), "volley_nats_connected", 0.0).await;
    send_json(&mut b, json!({"op":"sub","topics":["x"]})).await;
    // NATS stays down for this long: nothing may promise B anything meanwhile.
    match next_within(&mut b, Duration::from_millis(1_500)).await {
        None => {}
        Some(reply) => {
            assert_eq!(reply["op"], "error", "promised while NATS is down: {reply}");
            assert_eq!(reply["code"], "unavailable", "{reply}");
            return;
        }
    }
    nats.restart();
    let reply = next_json(&mut b).await;
    if reply["op"] == "error" {
        // The reconnect took past the deadline (a loaded machine): an honest answer.
        assert_eq!(reply["code"], "unavailable", "{reply}");
        return;
    }
    assert_eq!(reply, json!({"op":"subscribed","topics":["x"]}));
    let publisher = async_nats::connect(&nats.url()).await.expect("test NATS");
    publisher.publish("push.x", "7".into()).await.unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(next_json(&mut b).await, json!({"topic":"x","data":7}));
    assert_eq!(next_json(&mut a).await, json!({"topic":"x","data":7}));
}
