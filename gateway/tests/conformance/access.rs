//! Who may connect and read what: JWT auth on the upgrade, user topics, forbidden topics,
//! refresh and expiry, no `user.*` for anonymous connections, and the client message rate.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::jwt::*;
use crate::support::*;

both_engines!(
    bad_tokens_get_401_before_the_upgrade,
    user_topic_comes_with_the_token_and_forbidden_topics_leave_it_open,
    refresh_outlives_the_first_token_and_expiry_closes_1008,
    anonymous_connections_cannot_read_user_topics,
    message_rate_limit_errors_then_closes,
    rate_limit_closes_in_the_third_full_window,
    a_url_resume_with_a_token_answers_for_the_url_topic_not_the_user_topic,
    refresh_drops_the_subscriptions_the_new_token_does_not_cover,
);

async fn bad_tokens_get_401_before_the_upgrade(engine: Engine) {
    let gw = start_engine(engine, auth_options()).await;
    let response = refused(&gw.url("")).await;
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
        let status = refused_with(&gw.url(&format!("?token={bad}"))).await;
        assert_eq!(status, 401, "{what}");
    }
    metric_reaches(
        gw.admin_addr(),
        "volley_handshakes_total",
        "result=\"unauthorized\"",
        5.0,
    )
    .await;
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 0.0);
    // A good token in the Authorization header upgrades.
    assert_eq!(
        upgrade_with_bearer(&gw.url(""), gw.client_addr(), &token(good)).await,
        101
    );
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

async fn user_topic_comes_with_the_token_and_forbidden_topics_leave_it_open(engine: Engine) {
    let gw = start_engine(engine, auth_options()).await;
    let alice = token(json!({
        "sub":"alice","exp":now() + 600,"aud":"volley","topics":["stocks.>"]
    }));
    let query = format!("?token={alice}&topics=stocks.AAPL,news");
    let mut client = connect(&gw.url(&query)).await;
    // `news` is outside her `topics` claim: refused after the 101, the rest stays.
    let reply = next_json(&mut client).await;
    assert_eq!(
        (&reply["code"], &reply["topic"]),
        (&json!("forbidden"), &json!("news"))
    );
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
    let (forbidden, subscribed) = sub_replies(&mut client, 3).await;
    assert_eq!(forbidden, ["news", "user.bob"]);
    assert_eq!(subscribed, json!({"op":"subscribed","topics":["stocks.*"]}));
    // The connection stays and keeps receiving its URL topic.
    publish_ok(gw.admin_addr(), "stocks.AAPL", b"1").await;
    assert_eq!(next_json(&mut client).await["data"], 1);
    // Refused means not delivered: a leaked `user.bob` or `news` would arrive before the
    // sentinel.
    publish_ok(gw.admin_addr(), "user.bob", b"2").await;
    publish_ok(gw.admin_addr(), "news", b"2").await;
    publish_ok(gw.admin_addr(), "stocks.MSFT", b"3").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"stocks.MSFT","data":3})
    );
}

async fn refresh_outlives_the_first_token_and_expiry_closes_1008(engine: Engine) {
    let gw = start_engine(engine, auth_options()).await;
    // The verifier allows 30 s of clock skew, so an `exp` 29 s ago is still accepted and
    // passes (as far as the connection is concerned) within a second.
    let soon = token(json!({"sub":"carol","exp":now() - 29,"aud":"volley"}));
    let mut expiring = connect(&gw.url(&format!("?token={soon}"))).await;
    let mut refreshed = connect(&gw.url(&format!("?token={soon}"))).await;
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

async fn anonymous_connections_cannot_read_user_topics(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    // A forbidden URL topic is an error reply after the 101; the connection keeps the rest.
    let mut client = connect(&gw.url("?topics=news,user.x")).await;
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
    // Not only refused but not delivered: published in this order, a leaked `user.x` or
    // `user.alice` would arrive before the `news` sentinel.
    publish_ok(gw.admin_addr(), "user.x", b"1").await;
    publish_ok(gw.admin_addr(), "user.alice", b"1").await;
    publish_ok(gw.admin_addr(), "news", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":2})
    );
    // Without auth there is nothing to refresh.
    let fresh = token(json!({"sub":"x","exp":now() + 600,"aud":"volley"}));
    send_json(&mut client, json!({"op":"refresh","token":fresh})).await;
    assert_eq!(next_json(&mut client).await["code"], "bad_request");
}

async fn message_rate_limit_errors_then_closes(engine: Engine) {
    let mut opts = options();
    opts.max_client_messages_per_second = Some(5);
    let gw = start_engine(engine, opts).await;
    let mut client = connect(&gw.url("")).await;
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
    metric_reaches(
        gw.admin_addr(),
        "volley_protocol_closes_total",
        "rate_limit",
        1.0,
    )
    .await;
}

/// Floods `ping` ops at 50/s against a limit of 5/s: the 1008 `message rate limit` close comes
/// in the third full window (documented: over the limit in three one-second windows in a row,
/// the first starting at the first message, so never before two full seconds).
async fn rate_limit_closes_in_the_third_full_window(engine: Engine) {
    let mut opts = options();
    opts.max_client_messages_per_second = Some(5);
    let gw = start_engine(engine, opts).await;
    let client = connect(&gw.url("")).await;
    let (mut tx, mut rx) = client.split();
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        for _ in 0..500 {
            if tx
                .send(WsMessage::Text(r#"{"op":"ping"}"#.into()))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = rx.next().await {
            if let WsMessage::Close(frame) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed within 10 s")
    .expect("a close frame");
    let took = started.elapsed();
    flood.abort();
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "message rate limit");
    assert!(took >= Duration::from_secs(2), "closed after {took:?}");
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
}

async fn a_url_resume_with_a_token_answers_for_the_url_topic_not_the_user_topic(engine: Engine) {
    let gw = start_engine(engine, auth_options()).await;
    let alice = token(json!({
        "sub":"alice","exp":now() + 600,"aud":"volley","topics":["weather","stocks.>"]
    }));
    // `weather` sorts after `user.alice`: the resume, and its answer, are still for `weather`
    // (no history here, so not recovered, and live from now on).
    let query = format!("?token={alice}&topics=weather&since=5&epoch=e");
    let mut client = connect(&gw.url(&query)).await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply["op"], "subscribed", "{reply}");
    assert_eq!(reply["topics"], json!(["weather"]), "{reply}");
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reason"], "no_history", "{reply}");
    publish_ok(gw.admin_addr(), "weather", b"1").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"weather","data":1})
    );
    publish_ok(gw.admin_addr(), "user.alice", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"user.alice","data":2})
    );
    // A resumed URL topic she may not have: its `forbidden` reply is the answer, and nothing
    // is resumed (or answered) in its place.
    let query = format!("?token={alice}&topics=news&since=5&epoch=e");
    let mut refused = connect(&gw.url(&query)).await;
    let reply = next_json(&mut refused).await;
    assert_eq!(
        (&reply["code"], &reply["topic"]),
        (&json!("forbidden"), &json!("news")),
        "{reply}"
    );
    expect_silence(&mut refused, Duration::from_millis(300)).await;
}

async fn refresh_drops_the_subscriptions_the_new_token_does_not_cover(engine: Engine) {
    let gw = start_engine(engine, auth_options()).await;
    let first = token(json!({
        "sub":"erin","exp":now() + 600,"aud":"volley","topics":["premium.>","free.>"]
    }));
    let query = format!("?token={first}&topics=premium.news,free.news");
    let mut client = connect(&gw.url(&query)).await;
    send_json(&mut client, json!({"op":"sub","topics":["premium.*"]})).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"subscribed","topics":["premium.*"]})
    );
    // Her entitlement shrank: the next token only covers `free.>`.
    let later = now() + 900;
    let narrower = token(json!({
        "sub":"erin","exp":later,"aud":"volley","topics":["free.>"]
    }));
    send_json(&mut client, json!({"op":"refresh","token":narrower})).await;
    // Each subscription the new token does not cover is dropped with a `forbidden` error
    // naming it, then the refresh is confirmed.
    let mut dropped = Vec::new();
    for _ in 0..2 {
        let reply = next_json(&mut client).await;
        assert_eq!(reply["op"], "error", "{reply}");
        assert_eq!(reply["code"], "forbidden", "{reply}");
        dropped.push(reply["topic"].as_str().unwrap().to_owned());
    }
    dropped.sort();
    assert_eq!(dropped, ["premium.*", "premium.news"]);
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"refreshed","exp":later})
    );
    // Dropped means not delivered: a leaked `premium.news` would arrive before the sentinel.
    publish_ok(gw.admin_addr(), "premium.news", b"1").await;
    publish_ok(gw.admin_addr(), "free.news", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"free.news","data":2})
    );
    publish_ok(gw.admin_addr(), "user.erin", b"3").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"user.erin","data":3})
    );
    // Subscribing again under the new token is refused like any other forbidden topic.
    send_json(&mut client, json!({"op":"sub","topics":["premium.news"]})).await;
    assert_eq!(next_json(&mut client).await["code"], "forbidden");
}
