//! `POST /v1/publish` in cluster mode against a real nats-server: 202 only after a server round
//! trip, a 503 that says whether the message may still be delivered, and 413 for a message NATS
//! can never take (over its `max_payload`).

mod support;

use std::time::Duration;

use serde_json::json;
use support::nats::NatsServer;
use support::*;
use volley_gateway::config::{HistoryFile, Options};
use volley_gateway::gateway::Gateway;

fn cluster_options(nats: &NatsServer) -> Options {
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some("gw-0".to_owned());
    opts.subscription_linger = Some(Duration::from_millis(300));
    opts
}

async fn wait_nats_connected(gw: &Gateway) {
    for _ in 0..1200 {
        if metric(gw.admin_addr(), "volley_nats_connected", "").await == 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("gateway never connected to NATS");
}

/// Resumes a frozen server however the test ends, so a failed assertion does not leave a
/// stopped nats-server behind (its `Drop` kills it, which a stopped process also obeys, but the
/// gateway would see no RST until then).
struct Thaw<'a>(&'a NatsServer);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.thaw();
    }
}

/// A nats-server whose `max_payload` is `bytes` (a config file: there is no flag for it).
fn server_with_max_payload(bytes: usize, js: bool) -> (NatsServer, std::path::PathBuf) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "volley-maxpayload-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("nats.conf");
    std::fs::write(&file, format!("max_payload: {bytes}\n")).unwrap();
    let store = dir.join("js");
    let mut args = vec!["-c", file.to_str().unwrap()];
    if js {
        args.extend(["-js", "--store_dir", store.to_str().unwrap()]);
    }
    (NatsServer::start_with(&args), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_a_frozen_server_is_not_202_and_says_it_may_be_delivered() {
    let nats = NatsServer::start();
    let gw = start(cluster_options(&nats)).await;
    wait_nats_connected(&gw).await;
    let mut subscriber = connect(&ws_url(&gw, "?topics=feed")).await;
    nats.wait_for_subscriptions("push.feed", 1).await;
    publish_ok(gw.admin_addr(), "feed", b"1").await;
    assert_eq!(
        next_json(&mut subscriber).await,
        json!({"topic":"feed","data":1})
    );

    // The server stops answering but its socket stays open (a stalled server, a dead path
    // without RST): bytes still go into the kernel buffers, nothing is processed.
    let thaw = Thaw(&nats);
    nats.freeze();
    let (status, text) = tokio::time::timeout(
        Duration::from_secs(15),
        publish(gw.admin_addr(), "feed", b"2"),
    )
    .await
    .expect("the publish is answered in bounded time while NATS is frozen");
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("outcome is unknown") && text.contains("may"),
        "the 503 must not claim the message was not published: {text}"
    );
    drop(thaw);

    // Why the wording matters: the unconfirmed message was in the socket, and the server
    // processes it once it runs again. A publisher told "not published" would send it twice.
    assert_eq!(
        next_json(&mut subscriber).await,
        json!({"topic":"feed","data":2})
    );
    publish_ok(gw.admin_addr(), "feed", b"3").await;
    assert_eq!(
        next_json(&mut subscriber).await,
        json!({"topic":"feed","data":3})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_over_the_nats_max_payload_is_413_not_503() {
    let (nats, dir) = server_with_max_payload(1024, false);
    let mut opts = cluster_options(&nats);
    opts.max_publish_bytes = Some(4096);
    let gw = start(opts).await;
    wait_nats_connected(&gw).await;
    // Wait until the server's INFO (with its max_payload) was read: a small publish succeeds.
    publish_ok(gw.admin_addr(), "big", b"0").await;

    let body = format!("\"{}\"", "x".repeat(1998));
    let (status, text) = publish(gw.admin_addr(), "big", body.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_payload (1024"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_publish_over_the_nats_max_payload_is_413_not_503() {
    let (nats, dir) = server_with_max_payload(1024, true);
    let mut opts = cluster_options(&nats);
    opts.max_publish_bytes = Some(4096);
    opts.history_topics = Some(vec!["news.>".to_owned()]);
    opts.history = Some(HistoryFile::default());
    let gw = start(opts).await;
    for _ in 0..1200 {
        if metric(gw.admin_addr(), "volley_history_available", "").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    publish_ok(gw.admin_addr(), "news.a", b"0").await;

    // Under the limit on its own; the `Nats-Msg-Id` header tips it over.
    let body = format!("\"{}\"", "x".repeat(1000));
    let (status, text) = publish(gw.admin_addr(), "news.a", body.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_payload (1024"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_publish_bytes_over_the_nats_max_payload_is_warned_at_start_up() {
    let (nats, dir) = server_with_max_payload(1024, false);
    let url = nats.url();
    let gw = GatewayProcess::spawn_logged(&[
        "--nats",
        &url,
        "--pod-name",
        "gw-a",
        "--max-publish-bytes",
        "4096",
    ]);
    gw.wait_for_log(
        "over the NATS server's max_payload",
        1,
        Duration::from_secs(20),
    )
    .await;
    assert!(gw.log().contains("max_payload=1024"), "{}", gw.log());
    let _ = std::fs::remove_dir_all(dir);
}
