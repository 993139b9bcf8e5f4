//! History and recovery against a real `nats-server -js`: positions on delivered messages,
//! resuming with `since` (sub op and URL), replay then live with no gap and no duplicate, and
//! every reason a resume is not recovered (epoch changed, too old, no history, JetStream down).

mod support;

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use support::nats::NatsServer;
use support::*;
use volley_gateway::config::{HistoryFile, Options};
use volley_gateway::gateway::Gateway;

const STREAM: &str = "VOLLEY_HISTORY";

fn js_server() -> NatsServer {
    NatsServer::start_js()
}

fn history_options(nats: &NatsServer, topics: &str, file: HistoryFile) -> Options {
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.subscription_linger = Some(Duration::from_millis(300));
    opts.history_topics = Some(topics.split(',').map(str::to_owned).collect());
    opts.history = Some(file);
    opts
}

async fn wait_metric(gw: &Gateway, name: &str, at_least: f64) {
    for _ in 0..1200 {
        if metric(gw.admin_addr(), name, "").await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never reached {at_least}");
}

async fn start_history(nats: &NatsServer, topics: &str, file: HistoryFile) -> Gateway {
    let gw = start(history_options(nats, topics, file)).await;
    wait_metric(&gw, "volley_history_available", 1.0).await;
    gw
}

async fn js(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(
        async_nats::connect(nats.url())
            .await
            .expect("test NATS client"),
    )
}

async fn last_seq(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream(STREAM).await.expect("history stream");
    stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence
}

/// Waits until the stream holds messages up to `seq` (core NATS publishes are stored
/// asynchronously).
async fn wait_stored(js: &jetstream::Context, seq: u64) {
    for _ in 0..1200 {
        if last_seq(js).await >= seq {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stream never reached sequence {seq}");
}

/// Waits until the history stream has at least `n` consumers on the server.
async fn wait_server_consumers(js: &jetstream::Context, n: usize) {
    for _ in 0..1200 {
        let mut stream = js.get_stream(STREAM).await.expect("history stream");
        if stream
            .info()
            .await
            .expect("stream info")
            .state
            .consumer_count
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the stream never had {n} consumers");
}

/// Subscribes with the op and returns the reply (which must be `subscribed`).
async fn subscribe(client: &mut Client, topics: &[&str]) -> Value {
    send_json(client, json!({"op":"sub","topics":topics})).await;
    let reply = next_json(client).await;
    assert_eq!(reply["op"], "subscribed", "{reply}");
    reply
}

fn seq_of(message: &Value) -> u64 {
    message["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {message}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_what_was_missed_in_order_then_goes_live() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let js = js(&nats).await;
    let core = async_nats::connect(nats.url()).await.unwrap();

    let mut first = connect(&ws_url(&gw, "")).await;
    let reply = subscribe(&mut first, &["news.>"]).await;
    let epoch = reply["epoch"].as_str().expect("epoch in reply").to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    publish_ok(gw.admin_addr(), "news.eu", br#"{"n":0}"#).await;
    let got = next_json(&mut first).await;
    assert_eq!(got["topic"], "news.eu");
    assert_eq!(got["data"], json!({"n":0}));
    let since = seq_of(&got);
    first.close(None).await.unwrap();

    // Missed while away: through NATS (any publisher) and through HTTP (202 = stored), on
    // several subjects under the pattern.
    let mut missed = Vec::new();
    for n in 1..=6 {
        let topic = if n % 2 == 0 { "news.eu" } else { "news.us" };
        let body = format!(r#"{{"n":{n}}}"#);
        if n <= 3 {
            core.publish(format!("push.{topic}"), body.into_bytes().into())
                .await
                .unwrap();
            core.flush().await.unwrap();
            wait_stored(&js, since + n).await;
        } else {
            publish_ok(gw.admin_addr(), topic, body.as_bytes()).await;
        }
        missed.push((topic, n));
    }
    assert_eq!(last_seq(&js).await, since + 6);

    let mut back = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut back,
        json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch}),
    )
    .await;
    let reply = next_json(&mut back).await;
    assert_eq!(
        reply,
        json!({"op":"subscribed","topics":["news.>"],"epoch":epoch,"recovered":true,"replayed":6})
    );
    for (i, (topic, n)) in missed.iter().enumerate() {
        let got = next_json(&mut back).await;
        assert_eq!(got["topic"], *topic);
        assert_eq!(got["data"], json!({"n":n}));
        assert_eq!(seq_of(&got), since + 1 + i as u64);
    }
    // Then live, right after the replay, and nothing twice.
    publish_ok(gw.admin_addr(), "news.eu", br#"{"n":7}"#).await;
    let got = next_json(&mut back).await;
    assert_eq!(got["data"], json!({"n":7}));
    assert_eq!(seq_of(&got), since + 7);
    expect_silence(&mut back, Duration::from_millis(300)).await;
    metric_reaches(gw.admin_addr(), "volley_recoveries_total", "recovered", 1.0).await;
    assert!(metric(gw.admin_addr(), "volley_replayed_messages_total", "").await >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_resume_over_a_wildcard_replays_every_subject_in_order() {
    let nats = js_server();
    let gw = start_history(&nats, "scores.*", HistoryFile::default()).await;
    let js = js(&nats).await;

    let mut first = connect(&ws_url(&gw, "?topics=scores.*")).await;
    // URL subscriptions to topics with history get a reply carrying the epoch.
    let reply = next_json(&mut first).await;
    assert_eq!(reply["op"], "subscribed");
    let epoch = reply["epoch"].as_str().expect("epoch").to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    publish_ok(gw.admin_addr(), "scores.a", b"0").await;
    let since = seq_of(&next_json(&mut first).await);
    drop(first);

    let topics = ["scores.a", "scores.b", "scores.c", "scores.b", "scores.a"];
    for (i, topic) in topics.iter().enumerate() {
        publish_ok(gw.admin_addr(), topic, format!("{}", i + 1).as_bytes()).await;
    }
    // Not under the pattern: stored elsewhere or not at all, never replayed.
    publish_ok(gw.admin_addr(), "chat", b"\"x\"").await;
    wait_stored(&js, since + 5).await;

    let url = ws_url(
        &gw,
        &format!("?topics=scores.*&since={since}&epoch={epoch}"),
    );
    let mut back = connect(&url).await;
    let reply = next_json(&mut back).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["replayed"], 5);
    for (i, topic) in topics.iter().enumerate() {
        let got = next_json(&mut back).await;
        assert_eq!(got["topic"], *topic);
        assert_eq!(got["data"], json!(i + 1));
        assert_eq!(seq_of(&got), since + 1 + i as u64);
    }
    publish_ok(gw.admin_addr(), "scores.z", b"9").await;
    let got = next_json(&mut back).await;
    assert_eq!(got["data"], json!(9));
    expect_silence(&mut back, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_changes_the_epoch_and_resume_is_not_recovered() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let js = js(&nats).await;

    let mut first = connect(&ws_url(&gw, "")).await;
    let old_epoch = subscribe(&mut first, &["news.>"]).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    publish_ok(gw.admin_addr(), "news.a", b"1").await;
    let since = seq_of(&next_json(&mut first).await);
    drop(first);

    js.delete_stream(STREAM).await.expect("delete stream");
    // The gateway puts the stream back by itself (a new stream: a new epoch).
    let mut recreated = false;
    for _ in 0..1200 {
        if js.get_stream(STREAM).await.is_ok() {
            recreated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(recreated, "the gateway recreates a deleted history stream");

    let mut back = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut back,
        json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":old_epoch}),
    )
    .await;
    let reply = next_json(&mut back).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "epoch_changed");
    let new_epoch = reply["epoch"].as_str().expect("the new epoch");
    assert_ne!(new_epoch, old_epoch);
    assert!(reply["message"].as_str().unwrap().contains("live"));
    // Counted with the reply, whose write the client may see first.
    metric_reaches(
        gw.admin_addr(),
        "volley_recoveries_total",
        "epoch_changed",
        1.0,
    )
    .await;
    // Still served live, through a consumer on the new stream: once the gateway has opened it
    // (a consumer starting with new messages; not one left over from the old stream's feed),
    // the first message published reaches the client, once.
    let mut opened = false;
    for _ in 0..1200 {
        let stream = js.get_stream(STREAM).await.expect("history stream");
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = futures_util::StreamExt::next(&mut consumers).await {
            if info.config.deliver_policy == jetstream::consumer::DeliverPolicy::New {
                opened = true;
            }
        }
        if opened {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        opened,
        "the gateway opens a live consumer on the new stream"
    );
    publish_ok(gw.admin_addr(), "news.a", b"7").await;
    let live = next_json(&mut back).await;
    assert_eq!(live["data"], json!(7), "{live}");
    assert_eq!(seq_of(&live), last_seq(&js).await);
    expect_silence(&mut back, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_older_than_the_history_is_not_recovered_and_says_why() {
    let nats = js_server();
    let file = HistoryFile {
        max_messages_per_topic: Some(3),
        ..HistoryFile::default()
    };
    let gw = start_history(&nats, "news.>", file).await;

    let mut first = connect(&ws_url(&gw, "")).await;
    let epoch = subscribe(&mut first, &["news.>"]).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    publish_ok(gw.admin_addr(), "news.a", b"0").await;
    let since = seq_of(&next_json(&mut first).await);
    drop(first);
    // Five more on the same topic: only the last three are kept, the client's own is gone.
    for n in 1..=5 {
        publish_ok(gw.admin_addr(), "news.a", format!("{n}").as_bytes()).await;
    }

    let mut back = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut back,
        json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch}),
    )
    .await;
    let reply = next_json(&mut back).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "too_old");
    assert_eq!(reply["epoch"], epoch.as_str());
    // Nothing replayed; live from now on.
    publish_ok(gw.admin_addr(), "news.a", b"6").await;
    assert_eq!(next_json(&mut back).await["data"], json!(6));
}

/// Resumes `news.>` after `since` on a fresh connection and returns it with the reply.
async fn resume_news(gw: &Gateway, since: u64, epoch: &str) -> (Client, Value) {
    let mut back = connect(&ws_url(gw, "")).await;
    send_json(
        &mut back,
        json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch}),
    )
    .await;
    let reply = next_json(&mut back).await;
    (back, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_resume_is_not_recovered_when_a_busy_topic_lost_messages_to_its_limit() {
    let nats = js_server();
    let file = HistoryFile {
        max_messages_per_topic: Some(3),
        ..HistoryFile::default()
    };
    let gw = start_history(&nats, "news.>", file).await;
    let js = js(&nats).await;

    let mut first = connect(&ws_url(&gw, "")).await;
    let epoch = subscribe(&mut first, &["news.>"]).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    // news.us is busy and at its limit, with messages at or below the client's position.
    for n in 0..3 {
        publish_ok(gw.admin_addr(), "news.us", format!("{n}").as_bytes()).await;
        next_json(&mut first).await;
    }
    // The client's last message is on the quiet news.eu.
    publish_ok(gw.admin_addr(), "news.eu", b"10").await;
    let since = seq_of(&next_json(&mut first).await);
    drop(first);

    // Two more on news.us: they push out two of its old ones, at or below the position: nothing
    // after it is lost, the resume is recovered.
    for n in 11..=12 {
        publish_ok(gw.admin_addr(), "news.us", format!("{n}").as_bytes()).await;
    }
    wait_stored(&js, since + 2).await;
    let (mut back, reply) = resume_news(&gw, since, &epoch).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["replayed"], 2);
    for n in 11..=12 {
        assert_eq!(next_json(&mut back).await["data"], json!(n));
    }
    drop(back);

    // Three more: news.us now keeps only messages after the position, and 11 is gone although
    // the client's own message on news.eu is still stored.
    for n in 13..=15 {
        publish_ok(gw.admin_addr(), "news.us", format!("{n}").as_bytes()).await;
    }
    wait_stored(&js, since + 5).await;
    let (mut back, reply) = resume_news(&gw, since, &epoch).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "too_old");
    // Nothing replayed; live from now on.
    expect_silence(&mut back, Duration::from_millis(200)).await;
    publish_ok(gw.admin_addr(), "news.eu", b"16").await;
    assert_eq!(next_json(&mut back).await["data"], json!(16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_topic_without_history_says_so_and_subscribes_live() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let mut client = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut client,
        json!({"op":"sub","topics":["chat","news.>"],"since":{"chat":3},"epoch":"x"}),
    )
    .await;
    // Each pattern is answered once it is live (the JetStream consumer of `news.>` may take
    // longer than the core subscription of `chat`): the one without a position with the epoch.
    let mut replies = [next_json(&mut client).await, next_json(&mut client).await];
    replies.sort_by_key(|r| r["topics"][0].as_str().map(str::to_owned));
    let [reply, plain] = replies;
    assert_eq!(plain["topics"], json!(["news.>"]));
    assert!(plain["epoch"].is_string());
    assert!(plain.get("recovered").is_none(), "{plain}");
    assert_eq!(reply["topics"], json!(["chat"]));
    assert_eq!(reply["recovered"], false);
    assert_eq!(reply["reason"], "no_history");
    // The reply is a promise: `chat` is live already, no waiting for its NATS subscription.
    publish_ok(gw.admin_addr(), "chat", b"1").await;
    let got = next_json(&mut client).await;
    assert_eq!(
        got,
        json!({"topic":"chat","data":1}),
        "no seq without history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_history_topics_are_live_only_and_health_says_why() {
    // A NATS server without -js.
    let nats = NatsServer::start();
    let gw = start(history_options(&nats, "news.>", HistoryFile::default())).await;
    let mut healthz = String::new();
    for _ in 0..1200 {
        healthz = get(gw.admin_addr(), "/healthz").await.1;
        if healthz.contains("history: unavailable (") && !healthz.contains("not checked yet") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(healthz.contains("history: unavailable"), "{healthz}");
    assert!(healthz.contains("live only"), "{healthz}");
    assert_eq!(
        metric(gw.admin_addr(), "volley_history_available", "").await,
        0.0
    );

    let mut client = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut client,
        json!({"op":"sub","topics":["news.>"],"since":{"news.>":5},"epoch":"e"}),
    )
    .await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "unavailable");
    // Live delivery from any NATS publisher goes on (core subscription).
    nats.wait_for_subscriptions("push.news.>", 1).await;
    let core = async_nats::connect(nats.url()).await.unwrap();
    core.publish("push.news.x", "1".into()).await.unwrap();
    core.flush().await.unwrap();
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news.x","data":1})
    );
    // An HTTP publish to a history topic cannot be stored: 503, not a silent 202.
    let (status, _) = publish(gw.admin_addr(), "news.x", b"2").await;
    assert_eq!(status, 503);
    // Topics without history still publish.
    publish_ok(gw.admin_addr(), "chat", b"3").await;
}

/// Publishes through JetStream and returns the stored sequence, retrying while a restarted
/// server is not ready yet (bounded).
async fn js_publish(js: &jetstream::Context, subject: &str, body: String) -> u64 {
    for _ in 0..100 {
        if let Ok(ack) = js.publish(subject.to_owned(), body.clone().into()).await
            && let Ok(Ok(ack)) = tokio::time::timeout(Duration::from_secs(2), ack).await
        {
            return ack.sequence;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("JetStream never stored {subject}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_keeps_the_feed_sequenced_without_gap_or_duplicate() {
    let mut nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let mut client = connect(&ws_url(&gw, "")).await;
    subscribe(&mut client, &["news.>"]).await;
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    publish_ok(gw.admin_addr(), "news.a", b"0").await;
    let first = seq_of(&next_json(&mut client).await);

    // NATS goes away long enough for the gateway's stream check to fail, and comes back with
    // its store (same stream, same epoch).
    nats.stop();
    // Up to a check interval plus a JetStream request timeout.
    let mut failed = false;
    for _ in 0..800 {
        if metric(gw.admin_addr(), "volley_history_available", "").await == 0.0 {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(failed, "the stream check never failed while NATS was down");
    nats.restart();
    let js = js(&nats).await;
    let mut stored = Vec::new();
    for n in 1..=20 {
        let topic = if n % 2 == 0 {
            "push.news.a"
        } else {
            "push.news.b"
        };
        stored.push(js_publish(&js, topic, format!("{n}")).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everything stored since arrives once, in order, each with its position: the feed was not
    // moved to a core subscription (no seq) and back (a gap) for one failed check.
    let mut got = Vec::new();
    while got.len() < stored.len() {
        let frame = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::StreamExt::next(&mut client),
        )
        .await;
        let Ok(Some(Ok(frame))) = frame else {
            panic!("got {got:?} of {stored:?}: {frame:?}");
        };
        if let Ok(text) = frame.to_text()
            && !text.is_empty()
        {
            let message: Value = serde_json::from_str(text).expect("JSON frame");
            got.push(seq_of(&message));
        }
    }
    assert!(stored[0] > first, "{stored:?} after {first}");
    assert_eq!(got, stored);
    expect_silence(&mut client, Duration::from_millis(300)).await;
}

/// Reads `count` messages (skipping nothing else: every frame must be one) within a bound.
async fn read_seqs(client: &mut Client, count: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < count {
        got.push(seq_of(&next_json(client).await));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_history_is_delivered_from_jetstream_despite_an_older_core_pattern() {
    let nats = js_server();
    // History covers news.eu.> only; news.> is a core subscription, and the older one.
    let gw = start_history(&nats, "news.eu.>", HistoryFile::default()).await;
    let mut wide = connect(&ws_url(&gw, "")).await;
    subscribe(&mut wide, &["news.>"]).await;
    nats.wait_for_subscriptions("push.news.>", 1).await;
    let mut narrow = connect(&ws_url(&gw, "")).await;
    subscribe(&mut narrow, &["news.eu.x"]).await;
    wait_metric(&gw, "volley_history_consumers", 1.0).await;

    let js = js(&nats).await;
    let mut stored = Vec::new();
    for n in 0..5 {
        stored.push(js_publish(&js, "push.news.eu.x", format!("{n}")).await);
    }
    // Each client gets every message once, with its position (the JetStream copy, not the
    // core one that came through the older news.> subscription).
    assert_eq!(read_seqs(&mut narrow, 5).await, stored);
    assert_eq!(read_seqs(&mut wide, 5).await, stored);
    // A subject without history still reaches the wide pattern, live (no position).
    publish_ok(gw.admin_addr(), "news.us", b"9").await;
    assert_eq!(
        next_json(&mut wide).await,
        json!({"topic":"news.us","data":9})
    );
    expect_silence(&mut narrow, Duration::from_millis(300)).await;
    expect_silence(&mut wide, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_an_older_overlapping_feed_mid_stream_loses_and_duplicates_nothing() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let mut wide = connect(&ws_url(&gw, "")).await;
    subscribe(&mut wide, &["news.>"]).await;
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    let mut narrow = connect(&ws_url(&gw, "")).await;
    subscribe(&mut narrow, &["news.eu"]).await;
    wait_metric(&gw, "volley_history_consumers", 2.0).await;

    // A steady stream on news.eu while the older feed (news.>) goes away: its client leaves
    // and the feed is released after the linger.
    let core = async_nats::connect(nats.url()).await.unwrap();
    let total = 400;
    let publisher = tokio::spawn(async move {
        for n in 0..total {
            core.publish("push.news.eu", format!("{n}").into())
                .await
                .unwrap();
            if n % 20 == 0 {
                core.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        core.flush().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    wide.close(None).await.unwrap();
    drop(wide);
    publisher.await.unwrap();
    let js = js(&nats).await;
    wait_stored(&js, total).await;
    let got = read_seqs(&mut narrow, total as usize).await;
    assert_eq!(got, (1..=total).collect::<Vec<_>>());
    expect_silence(&mut narrow, Duration::from_millis(300)).await;
}

/// An HTTP publish with an `Idempotency-Key` header; returns (status, raw response).
async fn publish_keyed(gw: &Gateway, topic: &str, key: Option<&str>, body: &[u8]) -> (u16, String) {
    let header = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
    let mut request = format!(
        "POST /v1/publish/{topic} HTTP/1.1\r\nHost: test\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    http(gw.admin_addr(), &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_http_publish_with_the_same_idempotency_key_is_stored_once() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let js = js(&nats).await;
    let mut client = connect(&ws_url(&gw, "")).await;
    subscribe(&mut client, &["news.>"]).await;
    wait_metric(&gw, "volley_history_consumers", 1.0).await;

    // The publisher's retry after an unanswered attempt carries the same key.
    let (status, body) = publish_keyed(&gw, "news.eu", Some("order-42"), b"1").await;
    assert_eq!(status, 202, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["idempotencyKey"], "order-42");
    assert_eq!(first["duplicate"], false);
    let (status, body) = publish_keyed(&gw, "news.eu", Some("order-42"), b"1").await;
    assert_eq!(status, 202, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    let stored = last_seq(&js).await;
    assert_eq!(seq_of(&next_json(&mut client).await), stored);

    // Without a key one is made and returned (in the body and the header) for reuse.
    let (status, body) = publish_keyed(&gw, "news.eu", None, b"2").await;
    assert_eq!(status, 202, "{body}");
    let made: Value = serde_json::from_str(&body).unwrap();
    let key = made["idempotencyKey"]
        .as_str()
        .expect("a generated key")
        .to_owned();
    assert!(!key.is_empty());
    let raw = {
        let request = format!(
            "POST /v1/publish/news.eu HTTP/1.1\r\nHost: test\r\nIdempotency-Key: {key}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n2"
        );
        let mut stream = tokio::net::TcpStream::connect(gw.admin_addr())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut response = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response)
            .await
            .unwrap();
        String::from_utf8_lossy(&response).to_lowercase()
    };
    assert!(
        raw.contains(&format!("idempotency-key: {}", key.to_lowercase())),
        "{raw}"
    );
    assert!(raw.contains(r#""duplicate":true"#), "{raw}");
    assert_eq!(last_seq(&js).await, stored + 1);
    assert_eq!(seq_of(&next_json(&mut client).await), stored + 1);
    expect_silence(&mut client, Duration::from_millis(300)).await;

    // A malformed key is refused before anything is published.
    let (status, body) = publish_keyed(&gw, "news.eu", Some(&"k".repeat(129)), b"3").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Idempotency-Key"), "{body}");
    assert_eq!(last_seq(&js).await, stored + 1);
    // Topics without history ignore the header (core NATS has no deduplication).
    let (status, body) = publish_keyed(&gw, "chat", Some("x"), b"4").await;
    assert_eq!(status, 202, "{body}");
    assert!(!body.contains("idempotencyKey"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_consumers_a_pattern_is_served_live_only_and_resume_says_unavailable() {
    let nats = js_server();
    let file = HistoryFile {
        max_consumers: Some(1),
        ..HistoryFile::default()
    };
    let gw = start_history(&nats, "news.>", file).await;
    let mut first = connect(&ws_url(&gw, "")).await;
    let epoch = subscribe(&mut first, &["news.a"]).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;

    // A second pattern with history finds the cap reached: live through core NATS.
    let mut second = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut second,
        json!({"op":"sub","topics":["news.b"],"since":{"news.b":1},"epoch":epoch}),
    )
    .await;
    let reply = next_json(&mut second).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "unavailable", "{reply}");
    nats.wait_for_subscriptions("push.news.b", 1).await;
    assert_eq!(
        metric(gw.admin_addr(), "volley_history_consumers", "").await,
        1.0
    );
    publish_ok(gw.admin_addr(), "news.b", b"1").await;
    assert_eq!(
        next_json(&mut second).await,
        json!({"topic":"news.b","data":1})
    );
    publish_ok(gw.admin_addr(), "news.a", b"2").await;
    let a = next_json(&mut first).await;
    assert_eq!(a["data"], 2);
    seq_of(&a);
}

/// A JetStream server whose gateway user may not create consumers: such a request gets no
/// answer at all (the server drops a publish the user may not make), like a JetStream too busy
/// to answer. The test user may do anything.
fn js_server_refusing_consumers() -> (NatsServer, std::path::PathBuf) {
    // One directory per server: tests in this process run in parallel.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("volley-js-slow-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        r#"authorization {
  users = [
    { user: gw, password: gw, permissions: { publish: { allow: ">", deny: ["$JS.API.CONSUMER.CREATE.>"] } } }
    { user: test, password: test }
  ]
}
"#,
    )
    .unwrap();
    let store = dir.join("store");
    let nats = NatsServer::start_with(&[
        "-js",
        "--store_dir",
        store.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ]);
    (nats, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_takes_long_to_open_holds_up_no_other_topic() {
    let (nats, dir) = js_server_refusing_consumers();
    let mut opts = history_options(&nats, "news.>", HistoryFile::default());
    opts.nats_user = Some("gw".to_owned());
    opts.nats_password = Some("gw".to_owned());
    let gw = start(opts).await;
    wait_metric(&gw, "volley_history_available", 1.0).await;
    let publisher =
        async_nats::ConnectOptions::with_user_and_password("test".into(), "test".into())
            .connect(nats.url())
            .await
            .unwrap();

    let mut chat = connect(&ws_url(&gw, "")).await;
    subscribe(&mut chat, &["chat"]).await;
    nats.wait_for_subscriptions("push.chat", 1).await;
    // A pattern with history, resumed: its consumer is asked for and the answer does not come;
    // the replay waits for it.
    let mut news = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut news,
        json!({"op":"sub","topics":["news.a"],"since":{"news.a":1},"epoch":"e"}),
    )
    .await;
    // Meanwhile other topics flow: messages arrive while that open is still pending (the
    // pattern has neither its consumer nor the core subscription it falls back to). The open
    // gives up after a bounded wait; on a loaded machine that may come after only a few of the
    // ten round trips, so the test counts those that arrived before it, and wants at least one
    // (a router held up by the open delivers none before it gives up).
    let mut while_pending = 0;
    for n in 0..10 {
        publisher
            .publish("push.chat", format!("{n}").into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        assert_eq!(next_json(&mut chat).await["data"], json!(n));
        let subs = nats.subscriptions().await;
        if subs.iter().any(|s| s == "push.news.a") {
            break;
        }
        while_pending += 1;
    }
    assert!(
        while_pending >= 1,
        "the first message was held up until the open gave up"
    );
    // The open gives up (bounded): the pattern is served live through core NATS, and the
    // resume is answered.
    nats.wait_for_subscriptions("push.news.a", 1).await;
    let reply = next_json(&mut news).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "unavailable", "{reply}");
    assert_eq!(
        metric(gw.admin_addr(), "volley_history_consumers", "").await,
        0.0
    );
    publisher.publish("push.news.a", "1".into()).await.unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(
        next_json(&mut news).await,
        json!({"topic":"news.a","data":1})
    );
    drop(nats);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_overlapping_feed_mid_stream_loses_and_duplicates_nothing() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let mut wide = connect(&ws_url(&gw, "")).await;
    subscribe(&mut wide, &["news.>"]).await;
    wait_metric(&gw, "volley_history_consumers", 1.0).await;

    // A steady stream on news.eu while a second feed (news.eu) is opened, in the background,
    // for a new subscriber: both feeds then carry the subject.
    let core = async_nats::connect(nats.url()).await.unwrap();
    let total = 400;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        let mut started = Some(started_tx);
        for n in 0..total {
            core.publish("push.news.eu", format!("{n}").into())
                .await
                .unwrap();
            if n % 20 == 0 {
                core.flush().await.unwrap();
                if n >= 100
                    && let Some(tx) = started.take()
                {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        core.flush().await.unwrap();
    });
    started_rx.await.unwrap();
    let mut narrow = connect(&ws_url(&gw, "")).await;
    subscribe(&mut narrow, &["news.eu"]).await;
    publisher.await.unwrap();
    let js = js(&nats).await;
    wait_stored(&js, total).await;
    assert_eq!(
        metric(gw.admin_addr(), "volley_history_consumers", "").await,
        2.0
    );
    // The older subscriber: every message once, in order.
    assert_eq!(
        read_seqs(&mut wide, total as usize).await,
        (1..=total).collect::<Vec<_>>()
    );
    // The new one: from its first message on, every one once, in order, through the last.
    let first = seq_of(&next_json(&mut narrow).await);
    assert!(first > 1 && first <= total, "{first}");
    let rest = read_seqs(&mut narrow, (total - first) as usize).await;
    assert_eq!(rest, (first + 1..=total).collect::<Vec<_>>());
    expect_silence(&mut narrow, Duration::from_millis(300)).await;
    expect_silence(&mut wide, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_stops_when_every_connection_waiting_for_it_is_gone() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let js = js(&nats).await;
    // This client keeps the pattern's live consumer open; its first message is the position
    // the others resume from.
    let mut keeper = connect(&ws_url(&gw, "")).await;
    let epoch = subscribe(&mut keeper, &["news.>"]).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_metric(&gw, "volley_history_consumers", 1.0).await;
    publish_ok(gw.admin_addr(), "news.a", b"0").await;
    let since = seq_of(&next_json(&mut keeper).await);
    for n in 1..=20 {
        publish_ok(gw.admin_addr(), "news.a", format!("{n}").as_bytes()).await;
    }
    wait_stored(&js, since + 20).await;

    // JetStream stalls: both replays below are started and wait on it.
    nats.freeze();
    let resume =
        |since: u64| json!({"op":"sub","topics":["news.>"],"since":{"news.>":since},"epoch":epoch});
    let mut gone = connect(&ws_url(&gw, "")).await;
    send_json(&mut gone, resume(since)).await;
    // Another position: a fetch of its own, not joined to the first.
    let mut stays = connect(&ws_url(&gw, "")).await;
    send_json(&mut stays, resume(since + 1)).await;
    // The first client leaves before its replay could be read.
    gone.close(None).await.unwrap();
    drop(gone);
    for _ in 0..1200 {
        if metric(gw.admin_addr(), "volley_connections", "").await == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 2.0);
    nats.thaw();

    let reply = next_json(&mut stays).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["replayed"], 19);
    // Every replay asked for has ended, read or stopped: only the one somebody still waited for
    // was read.
    let ended = async || {
        metric(gw.admin_addr(), "volley_replay_duration_seconds_count", "").await
            + metric(gw.admin_addr(), "volley_replays_cancelled_total", "").await
    };
    for _ in 0..1200 {
        if ended().await >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ended().await, 2.0);
    metric_reaches(gw.admin_addr(), "volley_replayed_messages_total", "", 19.0).await;
    metric_reaches(gw.admin_addr(), "volley_replays_cancelled_total", "", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_resume_with_a_token_resumes_the_url_topic_not_the_user_topic() {
    let nats = js_server();
    let mut opts = history_options(&nats, "weather", HistoryFile::default());
    opts.auth = support::jwt::auth_options().auth;
    let gw = start(opts).await;
    wait_metric(&gw, "volley_history_available", 1.0).await;
    let alice = support::jwt::token(json!({
        "sub":"alice","exp":support::jwt::now() + 600,"aud":"volley"
    }));

    // `weather` sorts after the `user.alice` that comes with the token.
    let mut first = connect(&ws_url(&gw, &format!("?token={alice}&topics=weather"))).await;
    let reply = next_json(&mut first).await;
    assert_eq!(reply["op"], "subscribed", "{reply}");
    let epoch = reply["epoch"].as_str().expect("epoch").to_owned();
    // The gauge counts a consumer while it is being opened; the server knowing it is what makes
    // the next publish reach it.
    wait_server_consumers(&js(&nats).await, 1).await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        publish_ok(gw.admin_addr(), "weather", format!("{n}").as_bytes()).await;
        let got = next_json(&mut first).await;
        assert_eq!(got["data"], json!(n));
        seqs.push(seq_of(&got));
    }

    let url = ws_url(
        &gw,
        &format!(
            "?token={alice}&topics=weather&since={}&epoch={epoch}",
            seqs[0]
        ),
    );
    let mut back = connect(&url).await;
    assert_eq!(
        next_json(&mut back).await,
        json!({"op":"subscribed","topics":["weather"],"epoch":epoch,"recovered":true,"replayed":2})
    );
    for (n, seq) in [(2, seqs[1]), (3, seqs[2])] {
        let got = next_json(&mut back).await;
        assert_eq!((got["data"].clone(), seq_of(&got)), (json!(n), seq));
    }
    // Then live, and her own topic is still hers.
    publish_ok(gw.admin_addr(), "weather", b"4").await;
    assert_eq!(next_json(&mut back).await["data"], 4);
    publish_ok(gw.admin_addr(), "user.alice", b"5").await;
    assert_eq!(
        next_json(&mut back).await,
        json!({"topic":"user.alice","data":5})
    );
    expect_silence(&mut back, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_leaves_out_reserved_topics_as_live_delivery_does() {
    let nats = js_server();
    // `*` stores every one-token subject, reserved ones (`_…`, `$…`) included.
    let gw = start_history(&nats, "*", HistoryFile::default()).await;
    let js = js(&nats).await;
    let core = async_nats::connect(nats.url()).await.unwrap();

    let mut live = connect(&ws_url(&gw, "")).await;
    let epoch = subscribe(&mut live, &["*"]).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    wait_server_consumers(&js, 1).await;
    publish_ok(gw.admin_addr(), "ok", b"0").await;
    let since = seq_of(&next_json(&mut live).await);
    // Any NATS client can publish where the HTTP API refuses to.
    for (subject, body) in [
        ("push._internal", "1"),
        ("push.$sys", "2"),
        ("push.ok", "3"),
    ] {
        core.publish(subject, body.into()).await.unwrap();
    }
    core.flush().await.unwrap();
    wait_stored(&js, since + 3).await;
    // Live, `*` never matches a reserved topic.
    let got = next_json(&mut live).await;
    assert_eq!(
        (got["topic"].clone(), got["data"].clone()),
        (json!("ok"), json!(3))
    );

    // Nor does the replay of it.
    let mut back = connect(&ws_url(&gw, "")).await;
    send_json(
        &mut back,
        json!({"op":"sub","topics":["*"],"since":{"*":since},"epoch":epoch}),
    )
    .await;
    assert_eq!(
        next_json(&mut back).await,
        json!({"op":"subscribed","topics":["*"],"epoch":epoch,"recovered":true,"replayed":1})
    );
    let got = next_json(&mut back).await;
    assert_eq!(
        (got["topic"].clone(), seq_of(&got)),
        (json!("ok"), since + 3)
    );
    expect_silence(&mut back, Duration::from_millis(300)).await;
}

/// `subscribed` on a topic with history is a promise too: it comes once the pattern's JetStream
/// consumer is open, so a message stored right after it is delivered. A fresh pattern each round,
/// so each needs a consumer of its own. (Before, the reply went out while the consumer was being
/// opened, and a message stored meanwhile could be missed; a local open is usually quicker than
/// the client's reaction, so `subscribed_waits_for_a_slow_consumer_open_and_its_fallback` is the
/// one that shows the window every time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_right_after_subscribed_on_a_history_topic_arrives() {
    let nats = js_server();
    let gw = start_history(&nats, "news.>", HistoryFile::default()).await;
    let mut client = connect(&ws_url(&gw, "")).await;
    // Straight to NATS (the stream stores it), the quickest a backend can follow the reply.
    let publisher = async_nats::connect(nats.url())
        .await
        .expect("test NATS client");
    for round in 0..20 {
        let topic = format!("news.r{round}");
        send_json(&mut client, json!({"op":"sub","topics":[topic]})).await;
        let reply = next_json(&mut client).await;
        assert_eq!(reply["op"], "subscribed", "{reply}");
        assert!(reply["epoch"].is_string(), "{reply}");
        let subject = format!("push.{topic}");
        publisher
            .publish(subject, round.to_string().into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let got = next_json(&mut client).await;
        assert_eq!(got["topic"], json!(topic), "round {round}: {got}");
        assert_eq!(got["data"], json!(round), "round {round}: {got}");
        assert!(got["seq"].is_u64(), "{got}");
    }
}

/// A consumer that cannot be opened (the server never answers the create): the pattern falls back
/// to a core subscription, and only once that is confirmed is `subscribed` sent; a message
/// published right after it is delivered. (Before, the reply went out at once and anything
/// published during the bounded open, about 2 s, was lost to the new subscriber.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_waits_for_a_slow_consumer_open_and_its_fallback() {
    let (nats, dir) = js_server_refusing_consumers();
    let mut opts = history_options(&nats, "news.>", HistoryFile::default());
    opts.nats_user = Some("gw".to_owned());
    opts.nats_password = Some("gw".to_owned());
    let gw = start(opts).await;
    wait_metric(&gw, "volley_history_available", 1.0).await;
    let publisher =
        async_nats::ConnectOptions::with_user_and_password("test".into(), "test".into())
            .connect(nats.url())
            .await
            .unwrap();
    let mut client = connect(&ws_url(&gw, "")).await;
    send_json(&mut client, json!({"op":"sub","topics":["news.b"]})).await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply["op"], "subscribed", "{reply}");
    publisher.publish("push.news.b", "1".into()).await.unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news.b","data":1})
    );
    drop(nats);
    let _ = std::fs::remove_dir_all(dir);
}
