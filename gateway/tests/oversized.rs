//! A message framed larger than `maxPendingBytes` never closes healthy subscribers: over HTTP it
//! is refused with 413 before it is accepted, and from NATS it is counted, logged and dropped.

mod support;

use serde_json::json;
use support::nats::NatsServer;
use support::*;

/// A JSON string payload of exactly `len` bytes.
fn json_string(len: usize) -> Vec<u8> {
    let mut body = vec![b'x'; len];
    body[0] = b'"';
    body[len - 1] = b'"';
    body
}

/// Subscribers are still open and keeping up: each answers a ping op.
async fn still_served(clients: &mut [Client]) {
    for client in clients {
        send_json(client, json!({"op":"ping"})).await;
        assert_eq!(next_json(client).await["op"], "pong");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_framed_over_the_pending_bound_is_413_and_closes_nobody() {
    // The defaults: maxPublishBytes = maxPendingBytes = 1 MiB.
    let gw = start(options()).await;
    let mut clients = vec![
        connect(&ws_url(&gw, "?topics=big")).await,
        connect(&ws_url(&gw, "?topics=big")).await,
    ];
    // Just under maxPublishBytes, so the body limit lets it through; the envelope makes the frame
    // larger than the pending bound.
    let body = json_string((1 << 20) - 16);
    let (status, text) = publish(gw.admin_addr(), "big", &body).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("maxPendingBytes"), "{text}");
    assert_eq!(
        metric(gw.admin_addr(), "volley_slow_consumer_closes_total", "").await,
        0.0
    );
    assert_eq!(
        metric(gw.admin_addr(), "volley_messages_published_total", "").await,
        0.0
    );
    still_served(&mut clients).await;

    // One that fits reaches every subscriber.
    let body = json_string(512 * 1024);
    publish_ok(gw.admin_addr(), "big", &body).await;
    for client in &mut clients {
        let message = next_json(client).await;
        assert_eq!(message["topic"], "big");
        assert_eq!(message["data"].as_str().unwrap().len(), 512 * 1024 - 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_engine_refuses_the_same_publish() {
    let gw = start_tokio(options()).await;
    let mut client = connect(&format!("ws://{}/ws?topics=big", gw.client_addr())).await;
    let (status, text) = publish(gw.admin_addr(), "big", &json_string((1 << 20) - 16)).await;
    assert_eq!(status, 413, "{text}");
    send_json(&mut client, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut client).await["op"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_message_over_the_pending_bound_is_counted_and_dropped() {
    let nats = NatsServer::start();
    let gw = GatewayProcess::spawn_logged(&[
        "--nats",
        &nats.url(),
        "--max-pending-bytes",
        "65536",
        "--shards",
        "2",
    ]);
    let mut clients = vec![
        connect(&gw.ws_url("?topics=feed")).await,
        connect(&gw.ws_url("?topics=feed")).await,
    ];
    nats.wait_for_subscriptions("push.feed", 1).await;
    let publisher = async_nats::connect(nats.url()).await.unwrap();
    publisher
        .publish("push.feed", json_string(100_000).into())
        .await
        .unwrap();
    publisher
        .publish("push.feed", r#"{"after":1}"#.into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    // The small one after it arrives; the large one never does, and nobody was closed.
    for client in &mut clients {
        assert_eq!(
            next_json(client).await,
            json!({"topic":"feed","data":{"after":1}})
        );
    }
    assert_eq!(
        metric(gw.admin, "volley_oversized_messages_total", "").await,
        1.0
    );
    assert_eq!(
        metric(gw.admin, "volley_slow_consumer_closes_total", "").await,
        0.0
    );
    gw.wait_for_log("too large for any client queue", 1, PATIENCE)
        .await;
    still_served(&mut clients).await;
}
