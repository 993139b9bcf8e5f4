//! The epoll shards' write batching over real sockets: an idle shard flushes at once, a busy one
//! batches, and a pass writes each connection once. What both engines share (subscriptions,
//! formats, wildcards, once-per-connection delivery, ops) is in the conformance suite.

mod support;

use std::time::Duration;

use support::*;
use volley_gateway::config::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shard_flushes_at_once_busy_shard_batches() {
    // A long interval, so what the test tells apart (at once vs after an interval) stays apart
    // on a loaded machine, where a publish round trip can take a good part of a second.
    const INTERVAL: Duration = Duration::from_secs(3);
    let mut opts = options();
    opts.shards = Some(1);
    opts.flush_interval = Some(INTERVAL);
    let gw = start(opts).await;
    let mut client = connect(&ws_url(&gw, "?topics=t")).await;
    // Let the 101's flush age past the interval: the shard is idle.
    tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
    let sent = std::time::Instant::now();
    publish_ok(gw.admin_addr(), "t", b"1").await;
    assert_eq!(next_json(&mut client).await["data"], 1);
    let first = sent.elapsed();
    // The shard's pass for message 1 started after message 1 was published and before the
    // client saw it, so message 2 (published after that) goes out in the next pass, no earlier
    // than one interval after the first pass started: at least INTERVAL after `sent`, however
    // slow the machine. (Publishing both before reading could let the shard drain them in one
    // pass, which is also correct, so the test orders them through the client.)
    publish_ok(gw.admin_addr(), "t", b"2").await;
    assert_eq!(next_json(&mut client).await["data"], 2);
    let second = sent.elapsed();
    assert!(
        first < INTERVAL / 2,
        "idle: flushed at once ({first:?}), not after the {INTERVAL:?} interval"
    );
    assert!(
        second >= INTERVAL,
        "busy: the next message waits for the next pass, an interval after the first \
         ({second:?} after message 1 was published)"
    );
}

/// Waits until `name` differs from `from` (a pass adds its counts all at once, after its
/// writes, so a client can see its frames a moment before the metric moves).
async fn metric_moved(gw: &volley_gateway::gateway::Gateway, name: &str, from: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let now = metric(gw.admin_addr(), name, "").await;
        if now != from {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} stayed at {from}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_writes_each_connection_once_however_many_frames() {
    let mut opts = options();
    opts.shards = Some(1);
    // Long enough that the reads, the metric polls and the five publishes below all fit in one
    // interval after the first pass on a loaded machine (if they did not, a pass would go out
    // between them and the count below would be off by a pass that is correct).
    const INTERVAL: Duration = Duration::from_secs(5);
    opts.flush_interval = Some(INTERVAL);
    let gw = start(opts).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&ws_url(&gw, "?topics=t")).await);
    }
    // The 101s are written outside a pass; let them age past the interval anyway, so the shard
    // is idle whatever counts as a pass.
    tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
    let writes = "volley_socket_writes_total";
    let w0 = metric(gw.admin_addr(), writes, "").await;
    // An idle shard writes the first message at once: one write per client.
    publish_ok(gw.admin_addr(), "t", b"0").await;
    for c in &mut clients {
        assert_eq!(next_json(c).await["data"], 0);
    }
    let w1 = metric_moved(&gw, writes, w0).await;
    assert_eq!(w1, w0 + 3.0, "one write per client");
    // Five more within the interval of that pass go out together in the next one.
    for i in 1..=5 {
        publish_ok(gw.admin_addr(), "t", i.to_string().as_bytes()).await;
    }
    for c in &mut clients {
        for i in 1..=5 {
            assert_eq!(next_json(c).await["data"], i);
        }
    }
    assert_eq!(
        metric_moved(&gw, writes, w1).await,
        w1 + 3.0,
        "one vectored write per connection for five frames"
    );
}

/// A shard takes messages from its inbox during a pass (every 128 connections written): those
/// connections not yet written get the message in that pass, the others are listed for the next
/// one. Four publishers send back to back to 400 clients on one shard with 1 ms passes, so
/// messages keep arriving mid-pass; every client must still get every message once, each
/// publisher's in order (a connection left off both lists would stall and time out here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_during_a_pass_reach_everyone_in_order() {
    const CLIENTS: usize = 400;
    const PUBLISHERS: u64 = 4;
    const EACH: u64 = 50;
    let gw = start(Options {
        shards: Some(1),
        flush_interval: Some(Duration::from_millis(1)),
        ..options()
    })
    .await;
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let mut client = connect(&ws_url(&gw, "?topics=room")).await;
        readers.spawn(async move {
            let mut next = [0u64; PUBLISHERS as usize];
            for _ in 0..PUBLISHERS * EACH {
                let got = next_json(&mut client).await;
                let (p, i) = (
                    got["data"][0].as_u64().unwrap(),
                    got["data"][1].as_u64().unwrap(),
                );
                assert_eq!(i, next[p as usize], "publisher {p}: {got}");
                next[p as usize] += 1;
            }
            expect_silence(&mut client, Duration::from_millis(200)).await;
        });
    }
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let addr = gw.admin_addr();
        publishers.spawn(async move {
            let mut admin = KeepAlive::open(addr).await;
            for i in 0..EACH {
                let body = format!("[{p},{i}]");
                let (status, text) = admin
                    .request("POST", "/v1/publish/room", body.as_bytes())
                    .await;
                assert_eq!(status, 202, "{text}");
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.expect("every publish accepted");
    }
    while let Some(done) = readers.join_next().await {
        done.expect("every client got every message in order");
    }
}
