//! The baseline `--engine tokio` speaks the same protocol as the shards: URL and op
//! subscriptions, envelope and raw formats, once-per-connection delivery, the admin API, and
//! the same access rules: JWT auth on the upgrade, user topics, forbidden topics, refresh and
//! expiry, and no `user.*` for anonymous connections.

mod support;

use futures_util::StreamExt;
use serde_json::json;
use support::jwt::*;
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volley_gateway::engine_tokio::TokioGateway;

fn url(gw: &TokioGateway, query: &str) -> String {
    format!("ws://{}/ws{}", gw.client_addr(), query)
}

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
    // Not subscribed: a leaked `other` would arrive before the sentinel.
    publish_ok(gw.admin_addr(), "other", b"1").await;
    publish_ok(gw.admin_addr(), "news", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":2})
    );
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 1.0);
    assert_eq!(
        metric(gw.admin_addr(), "volley_frames_delivered_total", "").await,
        3.0,
        "news, stocks.AAPL and the sentinel; not `other`"
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
    let mut client = connect(&url(&gw, "?topics=a.b,a.*,a.%3E,a.b")).await;
    publish_ok(gw.admin_addr(), "a.b", b"1").await;
    publish_ok(gw.admin_addr(), "a.c", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"a.b","data":1})
    );
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"a.c","data":2})
    );
    // A second copy of either would arrive before the sentinel.
    publish_ok(gw.admin_addr(), "a.d", b"3").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"a.d","data":3})
    );
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
    let no_host = head("/ws").replace("Host: x\r\n", "");
    let (status, body) = http(gw.client_addr(), no_host.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Host"), "{body}");
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
    assert!(close.reason.contains("resume"), "{close:?}");
    drained.await.unwrap();
}

/// Reads `n` replies to one `sub` op: the `forbidden` topics (sorted) and the `subscribed` reply.
async fn sub_replies(client: &mut Client, n: usize) -> (Vec<String>, serde_json::Value) {
    let mut forbidden = Vec::new();
    let mut subscribed = serde_json::Value::Null;
    for _ in 0..n {
        let reply = next_json(client).await;
        if reply["op"] == "error" {
            assert_eq!(reply["code"], "forbidden", "{reply}");
            forbidden.push(reply["topic"].as_str().unwrap().to_owned());
        } else {
            subscribed = reply;
        }
    }
    forbidden.sort();
    (forbidden, subscribed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_cannot_read_user_topics() {
    let gw = start_tokio(options()).await;
    // A forbidden URL topic is an error reply after the 101; the connection keeps the rest.
    let mut client = connect(&url(&gw, "?topics=news,user.x")).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"error","code":"forbidden","topic":"user.x",
               "message":"not allowed for this connection"})
    );
    send_json(
        &mut client,
        json!({"op":"sub","topics":["user.alice",">","*.x","stocks.>"]}),
    )
    .await;
    let (forbidden, subscribed) = sub_replies(&mut client, 4).await;
    assert_eq!(forbidden, ["*.x", ">", "user.alice"]);
    assert_eq!(subscribed, json!({"op":"subscribed","topics":["stocks.>"]}));
    // Published in this order, so a leaked `user.x` would arrive before `news`.
    publish_ok(gw.admin_addr(), "user.x", b"1").await;
    publish_ok(gw.admin_addr(), "news", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":2})
    );
    let fresh = token(json!({"sub":"x","exp":now() + 600,"aud":"volley"}));
    send_json(&mut client, json!({"op":"refresh","token":fresh})).await;
    assert_eq!(next_json(&mut client).await["code"], "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_before_the_upgrade() {
    let gw = start_tokio(auth_options()).await;
    let response = refused(&url(&gw, "")).await;
    assert_eq!(response.status(), 401, "no token");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let good = json!({"sub":"alice","exp":now() + 60,"aud":"volley"});
    let forged = signed(&good, b"another-secret");
    let expired = token(json!({"sub":"alice","exp":now() - 3600,"aud":"volley"}));
    let wrong_aud = token(json!({"sub":"alice","exp":now() + 60,"aud":"other"}));
    for (bad, what) in [
        (forged, "bad signature"),
        (expired, "expired"),
        (wrong_aud, "wrong audience"),
        ("not-a-jwt".to_owned(), "malformed"),
    ] {
        let status = refused_with(&url(&gw, &format!("?token={bad}"))).await;
        assert_eq!(status, 401, "{what}");
    }
    assert_eq!(
        metric(
            gw.admin_addr(),
            "volley_handshakes_total",
            "result=\"unauthorized\""
        )
        .await,
        5.0
    );
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 0.0);
    // A good token in the Authorization header upgrades.
    assert_eq!(
        upgrade_with_bearer(&url(&gw, ""), gw.client_addr(), &token(good)).await,
        101
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_topic_comes_with_the_token_and_forbidden_topics_leave_it_open() {
    let gw = start_tokio(auth_options()).await;
    let alice = token(json!({
        "sub":"alice","exp":now() + 600,"aud":"volley","topics":["stocks.>"]
    }));
    let query = format!("?token={alice}&topics=stocks.AAPL,news");
    let mut client = connect(&url(&gw, &query)).await;
    // `news` is outside her `topics` claim: refused after the 101, the rest stays.
    let reply = next_json(&mut client).await;
    assert_eq!(
        (&reply["code"], &reply["topic"]),
        (&json!("forbidden"), &json!("news"))
    );
    publish_ok(gw.admin_addr(), "user.alice", b"\"for alice\"").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"user.alice","data":"for alice"})
    );
    send_json(
        &mut client,
        json!({"op":"sub","topics":["user.bob","news","stocks.*"]}),
    )
    .await;
    let (forbidden, subscribed) = sub_replies(&mut client, 3).await;
    assert_eq!(forbidden, ["news", "user.bob"]);
    assert_eq!(subscribed, json!({"op":"subscribed","topics":["stocks.*"]}));
    // Still open; published in this order, so a leaked `user.bob` would come first.
    publish_ok(gw.admin_addr(), "user.bob", b"1").await;
    publish_ok(gw.admin_addr(), "stocks.MSFT", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"stocks.MSFT","data":2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_outlives_the_first_token_and_expiry_closes_1008() {
    let gw = start_tokio(auth_options()).await;
    // Both connections start on a token ending a few seconds from now: time enough to connect
    // and refresh on a slow machine, short enough to wait for its end.
    let soon = token(json!({"sub":"carol","exp":now() + 4,"aud":"volley"}));
    let mut expiring = connect(&url(&gw, &format!("?token={soon}"))).await;
    let mut refreshed = connect(&url(&gw, &format!("?token={soon}"))).await;
    let later = now() + 600;
    let fresh = token(json!({"sub":"carol","exp":later,"aud":"volley"}));
    send_json(&mut refreshed, json!({"op":"refresh","token":fresh})).await;
    assert_eq!(
        next_json(&mut refreshed).await,
        json!({"op":"refreshed","exp":later})
    );
    let close = expect_close(&mut expiring).await;
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "token expired");
    // The first token has now ended, and the refreshed connection is still served. Neither
    // another user's token nor a bad one can replace its token.
    let dave = token(json!({"sub":"dave","exp":now() + 600,"aud":"volley"}));
    send_json(&mut refreshed, json!({"op":"refresh","token":dave})).await;
    assert_eq!(next_json(&mut refreshed).await["code"], "forbidden");
    send_json(&mut refreshed, json!({"op":"refresh","token":"junk"})).await;
    assert_eq!(next_json(&mut refreshed).await["code"], "bad_request");
    publish_ok(gw.admin_addr(), "user.carol", b"3").await;
    assert_eq!(
        next_json(&mut refreshed).await,
        json!({"topic":"user.carol","data":3})
    );
}
