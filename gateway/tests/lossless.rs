//! Lossless rebalancing against a real `nats-server -js`: clients moved off a gateway (shed with
//! 1012, or the gateway SIGKILLed) reconnect to another gateway and resume with `since`, and
//! every one of them receives every message of a steady publish stream exactly once, in order.
//! The same holds for clients whose messages a full shard inbox dropped: they are closed to
//! resume, never left with a gap they cannot see.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::nats::NatsServer;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volley_gateway::config::Options;
use volley_gateway::history::positions::Positions;

const TOPIC: &str = "feed";

fn history_options(nats: &NatsServer, pod: &str) -> Options {
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some(pod.to_owned());
    opts.history_topics = Some(vec![TOPIC.to_owned()]);
    opts
}

/// What one resuming client saw.
#[derive(Debug, Default)]
struct Seen {
    seqs: Vec<u64>,
    connections: usize,
    /// Close frames received (code, reason).
    closes: Vec<(u16, String)>,
    /// `subscribed` replies of resumes.
    resumes: Vec<Value>,
}

/// A client like the bundled example: subscribes on `first`, and whenever the connection ends
/// (close frame or lost), reconnects to `then` and resumes from its positions. Returns once it
/// has received sequence `last` (read from `last_seq`, 0 until known).
async fn resuming_client(
    first: String,
    then: String,
    subscribed: Arc<AtomicUsize>,
    receiving: Arc<AtomicUsize>,
    mut last_seq: tokio::sync::watch::Receiver<u64>,
) -> Seen {
    let mut seen = Seen::default();
    let mut positions = Positions::new([TOPIC.to_owned()]);
    let mut target = first;
    loop {
        let mut client = None;
        for _ in 0..100 {
            if let Ok(Ok((c, _))) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async(target.as_str()),
            )
            .await
            {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut client = client.expect("reconnect within the attempts");
        seen.connections += 1;
        let op = if seen.connections == 1 {
            json!({"op":"sub","topics":[TOPIC]})
        } else {
            positions.resume_op()
        };
        client
            .send(WsMessage::Text(op.to_string().into()))
            .await
            .expect("send sub");
        loop {
            let done = |seen: &Seen, last: u64| last > 0 && seen.seqs.last() >= Some(&last);
            let frame = tokio::select! {
                frame = client.next() => frame,
                _ = last_seq.changed() => {
                    if done(&seen, *last_seq.borrow()) {
                        return seen;
                    }
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("client stalled: {seen:?}"),
            };
            match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    positions.observe(&text);
                    let v: Value = serde_json::from_str(&text).expect("JSON");
                    if v["op"] == "subscribed" {
                        if seen.connections == 1 {
                            subscribed.fetch_add(1, Ordering::AcqRel);
                        } else {
                            seen.resumes.push(v);
                        }
                        continue;
                    }
                    let seq = v["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {v}"));
                    if seen.seqs.is_empty() {
                        receiving.fetch_add(1, Ordering::AcqRel);
                    }
                    seen.seqs.push(seq);
                    if done(&seen, *last_seq.borrow()) {
                        return seen;
                    }
                }
                Some(Ok(WsMessage::Close(close))) => {
                    if let Some(c) = close {
                        seen.closes.push((u16::from(c.code), c.reason.to_string()));
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        target = then.clone();
    }
}

async fn wait_count(counter: &AtomicUsize, n: usize, what: &str) {
    for _ in 0..2400 {
        if counter.load(Ordering::Acquire) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: {} of {n}", counter.load(Ordering::Acquire));
}

/// Publishes `count` messages to the topic through core NATS, one every `every`, then
/// returns the stream's last sequence once every one is stored.
async fn publish_stream(nats_url: String, count: u64, every: Duration) -> u64 {
    let core = async_nats::connect(nats_url.as_str()).await.unwrap();
    for n in 0..count {
        core.publish(format!("push.{TOPIC}"), format!("{n}").into())
            .await
            .unwrap();
        tokio::time::sleep(every).await;
    }
    core.flush().await.unwrap();
    let js = async_nats::jetstream::new(core);
    for _ in 0..1200 {
        let mut stream = js.get_stream("VOLLEY_HISTORY").await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        if state.messages >= count {
            return state.last_sequence;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not every message was stored");
}

fn check_exactly_once(all: &[Seen], last: u64) {
    let expected: Vec<u64> = (1..=last).collect();
    for (i, seen) in all.iter().enumerate() {
        assert_eq!(seen.connections, 2, "client {i}: {seen:?}");
        for resume in &seen.resumes {
            assert_eq!(resume["recovered"], true, "client {i}: {resume}");
        }
        assert_eq!(
            seen.seqs, expected,
            "client {i} lost, duplicated or reordered messages"
        );
    }
}

async fn wait_metric(admin: std::net::SocketAddr, name: &str, at_least: f64) {
    for _ in 0..1200 {
        if metric(admin, name, "").await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never reached {at_least}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_during_a_steady_stream_loses_and_duplicates_nothing_for_1000_resuming_clients() {
    const CLIENTS: usize = 1000;
    const MESSAGES: u64 = 150;
    let nats = NatsServer::start_js();
    let a = start(history_options(&nats, "gw-a")).await;
    let b = start(history_options(&nats, "gw-b")).await;
    wait_metric(a.admin_addr(), "volley_history_available", 1.0).await;
    wait_metric(b.admin_addr(), "volley_history_available", 1.0).await;

    let subscribed = Arc::new(AtomicUsize::new(0));
    let receiving = Arc::new(AtomicUsize::new(0));
    let (last_tx, last_rx) = tokio::sync::watch::channel(0u64);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(tokio::spawn(resuming_client(
            ws_url(&a, ""),
            ws_url(&b, ""),
            subscribed.clone(),
            receiving.clone(),
            last_rx.clone(),
        )));
    }
    wait_count(&subscribed, CLIENTS, "subscribed").await;
    wait_metric(a.admin_addr(), "volley_history_consumers", 1.0).await;

    let publisher = tokio::spawn(publish_stream(
        nats.url(),
        MESSAGES,
        Duration::from_millis(10),
    ));
    // Everyone has a position, then the whole of A is shed while the stream goes on.
    wait_count(&receiving, CLIENTS, "receiving").await;
    let operator = async_nats::connect(nats.url()).await.unwrap();
    let reply = operator
        .request(
            "volley.control.default.volley.gw-a",
            json!({"op":"shed","count":CLIENTS,"over_ms":500})
                .to_string()
                .into(),
        )
        .await
        .expect("shed reply");
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");

    let last = publisher.await.unwrap();
    last_tx.send(last).unwrap();
    let mut all = Vec::new();
    for client in clients {
        all.push(
            tokio::time::timeout(Duration::from_secs(120), client)
                .await
                .expect("every client finishes")
                .unwrap(),
        );
    }
    for (i, seen) in all.iter().enumerate() {
        assert_eq!(seen.closes.len(), 1, "client {i}: {seen:?}");
        let (code, reason) = &seen.closes[0];
        assert_eq!(*code, 1012);
        assert!(reason.contains("resume"), "{reason}");
    }
    check_exactly_once(&all, last);
    metric_reaches(
        b.admin_addr(),
        "volley_recoveries_total",
        "recovered",
        CLIENTS as f64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_sigkilled_gateway_resume_on_another_and_lose_nothing() {
    const CLIENTS: usize = 100;
    const MESSAGES: u64 = 150;
    let nats = NatsServer::start_js();
    let url = nats.url();
    let a = GatewayProcess::spawn(&[
        "--nats",
        &url,
        "--pod-name",
        "gw-a",
        "--history-topics",
        TOPIC,
    ]);
    let b = start(history_options(&nats, "gw-b")).await;
    wait_metric(a.admin, "volley_history_available", 1.0).await;
    wait_metric(b.admin_addr(), "volley_history_available", 1.0).await;

    let subscribed = Arc::new(AtomicUsize::new(0));
    let receiving = Arc::new(AtomicUsize::new(0));
    let (last_tx, last_rx) = tokio::sync::watch::channel(0u64);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(tokio::spawn(resuming_client(
            a.ws_url(""),
            ws_url(&b, ""),
            subscribed.clone(),
            receiving.clone(),
            last_rx.clone(),
        )));
    }
    wait_count(&subscribed, CLIENTS, "subscribed").await;
    wait_metric(a.admin, "volley_history_consumers", 1.0).await;
    let publisher = tokio::spawn(publish_stream(
        url.clone(),
        MESSAGES,
        Duration::from_millis(10),
    ));
    wait_count(&receiving, CLIENTS, "receiving").await;
    // No drain, no close frame: the process is gone mid-stream.
    a.signal("KILL");

    let last = publisher.await.unwrap();
    last_tx.send(last).unwrap();
    let mut all = Vec::new();
    for client in clients {
        all.push(
            tokio::time::timeout(Duration::from_secs(120), client)
                .await
                .expect("every client finishes")
                .unwrap(),
        );
    }
    for seen in &all {
        assert!(
            seen.closes.is_empty(),
            "a killed gateway sends no close: {seen:?}"
        );
    }
    check_exactly_once(&all, last);
    drop(a);
}

/// How many messages with this topic the stream holds.
async fn stored(js: &async_nats::jetstream::Context) -> (u64, u64) {
    let mut stream = js.get_stream("VOLLEY_HISTORY").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    (state.messages, state.last_sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_full_shard_inbox_dropped_are_resumed_not_lost() {
    const CLIENTS: usize = 20;
    const BURST: u64 = 200;
    let nats = NatsServer::start_js();
    let url = nats.url();
    // One shard with an inbox of two messages: a burst from NATS overflows it.
    let gw = GatewayProcess::spawn_with_env(
        &[("VOLLEY_TEST_INBOX_CAPACITY", "2")],
        &[
            "--nats",
            &url,
            "--pod-name",
            "gw-a",
            "--history-topics",
            TOPIC,
            "--shards",
            "1",
        ],
    );
    wait_metric(gw.admin, "volley_history_available", 1.0).await;
    let subscribed = Arc::new(AtomicUsize::new(0));
    let receiving = Arc::new(AtomicUsize::new(0));
    let (last_tx, last_rx) = tokio::sync::watch::channel(0u64);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(tokio::spawn(resuming_client(
            gw.ws_url(""),
            gw.ws_url(""),
            subscribed.clone(),
            receiving.clone(),
            last_rx.clone(),
        )));
    }
    wait_count(&subscribed, CLIENTS, "subscribed").await;
    wait_metric(gw.admin, "volley_history_consumers", 1.0).await;
    // Everyone has a position first (one message fits the inbox), so every resume has a `since`.
    let core = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(core.clone());
    core.publish(format!("push.{TOPIC}"), "0".into())
        .await
        .unwrap();
    core.flush().await.unwrap();
    wait_count(&receiving, CLIENTS, "receiving").await;

    // Bursts until the shard's inbox overflowed (bounded: each burst is well within one
    // replay's `replayMaxMessages`).
    let mut published = 1;
    for _ in 0..4 {
        for n in 0..BURST {
            core.publish(format!("push.{TOPIC}"), format!("{n}").into())
                .await
                .unwrap();
        }
        core.flush().await.unwrap();
        published += BURST;
        let mut all_stored = false;
        for _ in 0..1200 {
            if stored(&js).await.0 >= published {
                all_stored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(all_stored, "not every message was stored");
        if metric(gw.admin, "volley_dropped_total", "").await > 0.0 {
            break;
        }
    }
    assert!(
        metric(gw.admin, "volley_dropped_total", "").await > 0.0,
        "no burst overflowed the inbox: the test proves nothing"
    );
    let last = stored(&js).await.1;
    last_tx.send(last).unwrap();
    let mut all = Vec::new();
    for client in clients {
        all.push(
            tokio::time::timeout(Duration::from_secs(120), client)
                .await
                .expect("every client finishes")
                .unwrap(),
        );
    }
    let expected: Vec<u64> = (1..=last).collect();
    let mut moved = 0;
    for (i, seen) in all.iter().enumerate() {
        for (code, reason) in &seen.closes {
            assert_eq!(*code, 1012, "client {i}: {seen:?}");
            assert!(reason.contains("reconnect and resume"), "{reason}");
        }
        for resume in &seen.resumes {
            assert_eq!(resume["recovered"], true, "client {i}: {resume}");
        }
        moved += usize::from(seen.connections > 1);
        assert_eq!(
            seen.seqs, expected,
            "client {i} lost, duplicated or reordered messages"
        );
    }
    assert!(moved > 0, "no client was closed to resume");
}
