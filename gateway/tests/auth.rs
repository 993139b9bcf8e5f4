//! JWT authentication and client limits over real sockets.

mod support;

use std::time::Duration;

use serde_json::json;
use support::jwt::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_before_the_upgrade() {
    let gw = start(auth_options()).await;
    let good = json!({"sub":"alice","exp":now() + 60,"aud":"volley"});
    assert_eq!(refused_with(&ws_url(&gw, "")).await, 401, "no token");
    let forged = signed(&good, b"another-secret");
    assert_eq!(
        refused_with(&ws_url(&gw, &format!("?token={forged}"))).await,
        401,
        "bad signature"
    );
    let expired = token(json!({"sub":"alice","exp":now() - 3600,"aud":"volley"}));
    assert_eq!(
        refused_with(&ws_url(&gw, &format!("?token={expired}"))).await,
        401,
        "expired"
    );
    let wrong_aud = token(json!({"sub":"alice","exp":now() + 60,"aud":"other"}));
    assert_eq!(
        refused_with(&ws_url(&gw, &format!("?token={wrong_aud}"))).await,
        401,
        "wrong audience"
    );
    assert!(
        metric(
            gw.admin_addr(),
            "volley_handshakes_total",
            "result=\"unauthorized\""
        )
        .await
            >= 4.0
    );
    // The same token in the Authorization header works too.
    assert_eq!(
        upgrade_with_bearer(&ws_url(&gw, ""), gw.client_addr(), &token(good)).await,
        101
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_topics_and_allowed_patterns() {
    let gw = start(auth_options()).await;
    let alice = token(json!({
        "sub":"alice","exp":now() + 60,"aud":"volley","topics":["stocks.>"]
    }));
    let mut client = connect(&ws_url(&gw, &format!("?token={alice}&topics=stocks.AAPL"))).await;
    // Her own topic is subscribed automatically.
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
    let mut errors = Vec::new();
    let mut subscribed = None;
    for _ in 0..3 {
        let reply = next_json(&mut client).await;
        if reply["op"] == "error" {
            assert_eq!(reply["code"], "forbidden");
            errors.push(reply["topic"].as_str().unwrap().to_owned());
        } else {
            subscribed = Some(reply);
        }
    }
    errors.sort();
    assert_eq!(errors, ["news", "user.bob"]);
    assert_eq!(
        subscribed.unwrap(),
        json!({"op":"subscribed","topics":["stocks.*"]})
    );
    // The connection stays and keeps receiving.
    publish_ok(gw.admin_addr(), "stocks.AAPL", b"1").await;
    assert_eq!(next_json(&mut client).await["data"], 1);
    // Refused means not delivered: a leaked `user.bob` would arrive before the sentinel.
    publish_ok(gw.admin_addr(), "user.bob", b"2").await;
    publish_ok(gw.admin_addr(), "stocks.MSFT", b"3").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"stocks.MSFT","data":3})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_closes_1008_unless_refreshed() {
    let gw = start(auth_options()).await;
    // The verifier allows 30 s of clock skew, so an `exp` 29 s ago is still accepted and
    // passes (as far as the connection is concerned) within a second.
    let soon = token(json!({"sub":"carol","exp":now() - 29,"aud":"volley"}));
    let mut expiring = connect(&ws_url(&gw, &format!("?token={soon}"))).await;
    let mut refreshed = connect(&ws_url(&gw, &format!("?token={soon}"))).await;
    let fresh = token(json!({"sub":"carol","exp":now() + 600,"aud":"volley"}));
    send_json(&mut refreshed, json!({"op":"refresh","token":fresh})).await;
    let reply = next_json(&mut refreshed).await;
    assert_eq!(reply["op"], "refreshed", "{reply}");
    let close = expect_close(&mut expiring).await;
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "token expired");
    // Another user's token cannot take over the connection.
    let dave = token(json!({"sub":"dave","exp":now() + 600,"aud":"volley"}));
    send_json(&mut refreshed, json!({"op":"refresh","token":dave})).await;
    assert_eq!(next_json(&mut refreshed).await["code"], "forbidden");
    publish_ok(gw.admin_addr(), "user.carol", b"3").await;
    assert_eq!(next_json(&mut refreshed).await["data"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_cannot_read_user_topics() {
    let gw = start(options()).await;
    let mut client = connect(&ws_url(&gw, "?topics=news")).await;
    send_json(&mut client, json!({"op":"sub","topics":["user.alice"]})).await;
    assert_eq!(next_json(&mut client).await["code"], "forbidden");
    send_json(&mut client, json!({"op":"sub","topics":[">"]})).await;
    assert_eq!(next_json(&mut client).await["code"], "forbidden");
    // Not only refused but not delivered: published in this order, a leaked `user.alice` would
    // arrive before the `news` sentinel.
    publish_ok(gw.admin_addr(), "user.alice", b"1").await;
    publish_ok(gw.admin_addr(), "news", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_limit_errors_then_closes() {
    let mut opts = options();
    opts.max_client_messages_per_second = Some(5);
    let gw = start(opts).await;
    let mut client = connect(&ws_url(&gw, "")).await;
    for _ in 0..6 {
        send_json(&mut client, json!({"op":"ping"})).await;
    }
    for _ in 0..5 {
        assert_eq!(next_json(&mut client).await["op"], "pong");
    }
    assert_eq!(next_json(&mut client).await["code"], "limit");
    // Sustained for several seconds: closed with 1008.
    let flood = async {
        loop {
            send_json(&mut client, json!({"op":"ping"})).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), flood).await;
    let close = expect_close(&mut client).await;
    assert_eq!(u16::from(close.code), 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_limit() {
    let mut opts = options();
    opts.max_connections_per_ip = Some(2);
    let gw = start(opts).await;
    let _a = connect(&ws_url(&gw, "")).await;
    let b = connect(&ws_url(&gw, "")).await;
    assert_eq!(refused_with(&ws_url(&gw, "")).await, 429);
    drop(b);
    let mut admitted = false;
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(ws_url(&gw, ""))
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed slot is given back");
}
