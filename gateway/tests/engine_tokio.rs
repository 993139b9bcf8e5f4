//! The baseline `--engine tokio` speaks the same protocol as the shards: URL and op
//! subscriptions, envelope and raw formats, once-per-connection delivery, the admin API.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_subscription_gets_envelopes_over_http_publish() {
    let gw = start_tokio(options()).await;
    let url = format!("ws://{}/ws?topics=news,stocks.*", gw.client_addr());
    let mut client = connect(&url).await;
    publish_ok(gw.admin_addr(), "news", br#"{"headline":"hi"}"#).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":{"headline":"hi"}})
    );
    publish_ok(gw.admin_addr(), "stocks.AAPL", b"plain").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"stocks.AAPL","data":"plain"})
    );
    publish_ok(gw.admin_addr(), "other", b"1").await;
    expect_silence(&mut client, Duration::from_millis(200)).await;
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 1.0);
    assert_eq!(
        metric(gw.admin_addr(), "volley_frames_delivered_total", "").await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_subscription_unsubscribe_and_ping() {
    let gw = start_tokio(options()).await;
    let mut client = connect(&format!("ws://{}/ws", gw.client_addr())).await;
    send_json(&mut client, json!({"op":"sub","topics":["a","b","_x"]})).await;
    assert_eq!(next_json(&mut client).await["code"], "forbidden");
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"subscribed","topics":["a","b"]})
    );
    publish_ok(gw.admin_addr(), "b", b"[1]").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"b","data":[1]})
    );
    send_json(&mut client, json!({"op":"unsub","topics":["b"]})).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"unsubscribed","topics":["b"]})
    );
    publish_ok(gw.admin_addr(), "b", b"2").await;
    publish_ok(gw.admin_addr(), "a", b"3").await;
    assert_eq!(next_json(&mut client).await, json!({"topic":"a","data":3}));
    send_json(&mut client, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut client).await, json!({"op":"pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_format_and_binary_payloads() {
    let gw = start_tokio(options()).await;
    let mut raw = connect(&format!("ws://{}/ws?topics=t&format=raw", gw.client_addr())).await;
    let mut env = connect(&format!("ws://{}/ws?topics=t", gw.client_addr())).await;
    publish_ok(gw.admin_addr(), "t", b"hello").await;
    assert_eq!(
        raw.next().await.unwrap().unwrap(),
        WsMessage::Text("hello".into())
    );
    assert_eq!(
        next_json(&mut env).await,
        json!({"topic":"t","data":"hello"})
    );
    publish_ok(gw.admin_addr(), "t", &[0xff, 0x00]).await;
    assert_eq!(
        raw.next().await.unwrap().unwrap(),
        WsMessage::Binary(vec![0xff, 0x00].into())
    );
    assert_eq!(next_json(&mut env).await, json!({"topic":"t","b64":"/wA="}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_patterns_deliver_once_per_connection() {
    let gw = start_tokio(options()).await;
    let url = format!("ws://{}/ws?topics=a.b,a.*,%3E,a.b", gw.client_addr());
    let mut client = connect(&url).await;
    publish_ok(gw.admin_addr(), "a.b", b"1").await;
    publish_ok(gw.admin_addr(), "z", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"a.b","data":1})
    );
    assert_eq!(next_json(&mut client).await, json!({"topic":"z","data":2}));
    expect_silence(&mut client, Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrades_get_the_same_statuses_as_the_shards() {
    let gw = start_tokio(options()).await;
    let head = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let (status, _) = http(gw.client_addr(), head("/ws?topics=a..b").as_bytes()).await;
    assert_eq!(status, 400);
    let (status, _) = http(gw.client_addr(), head("/nope").as_bytes()).await;
    assert_eq!(status, 404);
    assert_eq!(get(gw.admin_addr(), "/readyz").await.0, 200);
    assert_eq!(
        metric(gw.admin_addr(), "volley_handshakes_total", "not_found").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_clients_with_1001() {
    let gw = start_tokio(options()).await;
    let mut client = connect(&format!("ws://{}/ws?topics=a", gw.client_addr())).await;
    let drained = tokio::spawn(gw.drain());
    let close = expect_close(&mut client).await;
    assert_eq!(u16::from(close.code), 1001);
    drained.await.unwrap();
}
