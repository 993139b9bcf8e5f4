//! Resumes are JetStream API load: a connection gets at most twice
//! `maxSubscriptionsPerConnection` replays a minute; past that its resumes are answered
//! `recovered:false, limit` at once, without a fetch (real nats-server -js).

mod support;

use std::time::Duration;

use serde_json::json;
use support::nats::NatsServer;
use support::*;
use volley_gateway::config::HistoryFile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_resuming_in_a_loop_is_cut_off_at_its_budget_without_a_fetch() {
    const MAX_SUBSCRIPTIONS: usize = 3;
    let budget = 2 * MAX_SUBSCRIPTIONS;
    let nats = NatsServer::start_js();
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.history_topics = Some(vec!["news.>".to_owned()]);
    opts.history = Some(HistoryFile::default());
    opts.max_subscriptions_per_connection = Some(MAX_SUBSCRIPTIONS);
    opts.max_client_messages_per_second = Some(10_000);
    let gw = start(opts).await;
    for _ in 0..400 {
        if metric(gw.admin_addr(), "volley_history_available", "").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A position and an epoch to resume from: the first of two stored messages.
    let mut keeper = connect(&ws_url(&gw, "")).await;
    send_json(&mut keeper, json!({"op":"sub","topics":["news.>"]})).await;
    let epoch = next_json(&mut keeper).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    for _ in 0..400 {
        if metric(gw.admin_addr(), "volley_history_consumers", "").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    publish_ok(gw.admin_addr(), "news.a", b"1").await;
    publish_ok(gw.admin_addr(), "news.a", b"2").await;
    let since = next_json(&mut keeper).await["seq"].as_u64().expect("seq");
    next_json(&mut keeper).await;

    let mut looping = connect(&ws_url(&gw, "")).await;
    let resume = json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch});
    for n in 0..budget {
        send_json(&mut looping, resume.clone()).await;
        let reply = next_json(&mut looping).await;
        assert_eq!(reply["recovered"], true, "resume {n}: {reply}");
        assert_eq!(next_json(&mut looping).await["data"], 2);
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
    // Another connection has a budget of its own.
    let mut other = connect(&ws_url(&gw, "")).await;
    send_json(&mut other, resume).await;
    assert_eq!(next_json(&mut other).await["recovered"], true);
}
