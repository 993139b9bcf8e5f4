//! Resumes are JetStream API load: a connection gets at most twice
//! `maxSubscriptionsPerConnection` replays a minute, and a client address four times that on
//! each shard (a connect-resume-close loop gets a new connection every time); past that its
//! resumes are answered `recovered:false, limit` at once, without a fetch (real nats-server
//! -js).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use support::nats::NatsServer;
use support::*;
use volley_gateway::config::HistoryFile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_resuming_in_a_loop_is_cut_off_at_its_budget_without_a_fetch() {
    const MAX_SUBSCRIPTIONS: usize = 3;
    let budget = 2 * MAX_SUBSCRIPTIONS;
    let (_nats, gw) = history_gateway(None, MAX_SUBSCRIPTIONS).await;
    // A position and an epoch to resume from, then one more stored message.
    let mut keeper = connect(&ws_url(&gw, "")).await;
    let (epoch, since) = stored_position(&gw, &mut keeper).await;
    publish_ok(gw.admin_addr(), "news.a", b"2").await;

    let mut looping = connect(&ws_url(&gw, "")).await;
    let resume = json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch});
    for n in 0..budget {
        send_json(&mut looping, resume.clone()).await;
        let reply = next_json(&mut looping).await;
        assert_eq!(reply["recovered"], true, "resume {n}: {reply}");
        // What was stored after `since`: any "1" published while waiting above, then the "2".
        let mut replayed = Vec::new();
        while replayed.last() != Some(&json!(2)) {
            assert!(replayed.len() < 25, "resume {n} replayed {replayed:?}");
            replayed.push(next_json(&mut looping).await["data"].clone());
        }
        send_json(&mut looping, json!({"op":"unsub","topics":["news.>"]})).await;
        assert_eq!(next_json(&mut looping).await["op"], "unsubscribed");
    }
    let fetched = metric(gw.admin_addr(), "volley_replay_duration_seconds_count", "").await;
    send_json(&mut looping, resume.clone()).await;
    let reply = next_json(&mut looping).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "limit", "{reply}");
    assert_eq!(
        metric(gw.admin_addr(), "volley_replay_duration_seconds_count", "").await,
        fetched,
        "no fetch for a resume over the budget"
    );
    // Another connection has a budget of its own (from another address: this one may have
    // spent its address's budget on the shard the new connection lands on).
    let mut other = connect_from([127, 0, 0, 2].into(), &gw).await;
    send_json(&mut other, resume).await;
    assert_eq!(next_json(&mut other).await["recovered"], true);
}

/// A WebSocket client whose socket is bound to `ip` (any 127.0.0.0/8 address reaches loopback).
async fn connect_from(ip: IpAddr, gw: &volley_gateway::gateway::Gateway) -> support::Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip, 0)).unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(gw.client_addr()))
        .await
        .expect("connect in time")
        .unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (client, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(ws_url(gw, ""), stream),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade succeeds");
    client
}

/// Review 2 finding 5: a client that connects, resumes and closes in a loop gets a new
/// per-connection budget every time, but its address's budget (four connections', per shard)
/// bounds its replays; another address still resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_resume_close_loop_from_one_address_is_cut_off_at_the_address_budget() {
    const MAX_SUBSCRIPTIONS: usize = 3;
    const SHARDS: usize = 2;
    const CYCLES: usize = 100;
    let per_address = SHARDS * 4 * 2 * MAX_SUBSCRIPTIONS;
    let (_nats, gw) = history_gateway(Some(SHARDS), MAX_SUBSCRIPTIONS).await;
    let mut keeper = connect_from([127, 0, 0, 3].into(), &gw).await;
    let (epoch, since) = stored_position(&gw, &mut keeper).await;
    let resume = json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch});

    let fetched = metric(gw.admin_addr(), "volley_replay_duration_seconds_count", "").await;
    let (mut recovered, mut limited) = (0, 0);
    for n in 0..CYCLES {
        let mut client = connect_from([127, 0, 0, 1].into(), &gw).await;
        send_json(&mut client, resume.clone()).await;
        let reply = next_json(&mut client).await;
        match (&reply["recovered"], &reply["reason"]) {
            (serde_json::Value::Bool(true), _) => recovered += 1,
            (serde_json::Value::Bool(false), r) if r == "limit" => limited += 1,
            _ => panic!("cycle {n}: {reply}"),
        }
        let _ = client.close(None).await;
    }
    assert!(
        recovered <= per_address,
        "{recovered} of {CYCLES} recovered; the address's budget is {per_address}"
    );
    assert_eq!(recovered + limited, CYCLES);
    let fetches = metric(gw.admin_addr(), "volley_replay_duration_seconds_count", "").await;
    assert!(
        fetches - fetched <= per_address as f64,
        "{} fetches for one address",
        fetches - fetched
    );
    // Another address is not held to it.
    let mut other = connect_from([127, 0, 0, 2].into(), &gw).await;
    send_json(&mut other, resume).await;
    assert_eq!(next_json(&mut other).await["recovered"], true);
}

/// A gateway with history on `news.>` over a real nats-server -js, once history is available.
async fn history_gateway(
    shards: Option<usize>,
    max_subscriptions: usize,
) -> (NatsServer, volley_gateway::gateway::Gateway) {
    let nats = NatsServer::start_js();
    let mut opts = options();
    opts.shards = shards;
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.history_topics = Some(vec!["news.>".to_owned()]);
    opts.history = Some(HistoryFile::default());
    opts.max_subscriptions_per_connection = Some(max_subscriptions);
    opts.max_client_messages_per_second = Some(10_000);
    let gw = start(opts).await;
    for _ in 0..1200 {
        if metric(gw.admin_addr(), "volley_history_available", "").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (nats, gw)
}

/// Subscribes `keeper` to `news.>` and publishes until its live consumer delivers a stored
/// message (a message published while the consumer still opens may not reach it live): the
/// epoch and that message's sequence, a position to resume from.
async fn stored_position(
    gw: &volley_gateway::gateway::Gateway,
    keeper: &mut support::Client,
) -> (String, u64) {
    send_json(keeper, json!({"op":"sub","topics":["news.>"]})).await;
    let epoch = next_json(keeper).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    for _ in 0..1200 {
        if metric(gw.admin_addr(), "volley_history_consumers", "").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..20 {
        publish_ok(gw.admin_addr(), "news.a", b"1").await;
        if let Ok(m) = tokio::time::timeout(Duration::from_secs(1), next_json(keeper)).await {
            return (epoch, m["seq"].as_u64().expect("seq"));
        }
    }
    panic!("no stored message delivered live");
}
