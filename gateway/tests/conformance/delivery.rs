//! Subscribing and delivery: URL and op subscriptions, envelope and raw formats, wildcards,
//! unsubscribe, once-per-connection delivery, ops and their replies, the client's close.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

both_engines!(
    url_subscription_receives_enveloped_messages,
    op_subscription_unsubscribe_and_ping,
    each_format_gets_its_own_frame,
    wildcards_follow_nats_semantics,
    overlapping_patterns_deliver_once_per_connection,
    many_clients_each_get_one_copy,
    ops_get_replies_and_errors,
    subscription_limit_is_enforced,
    client_close_is_answered,
);

async fn url_subscription_receives_enveloped_messages(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut client = connect(&gw.url("?topics=news,stocks.AAPL")).await;
    publish_ok(gw.admin_addr(), "news", br#"{"headline":"hi"}"#).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":{"headline":"hi"}})
    );
    publish_ok(gw.admin_addr(), "stocks.AAPL", b"plain text").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"stocks.AAPL","data":"plain text"})
    );
    // Not subscribed: a leaked `stocks.MSFT` would arrive before the sentinel.
    publish_ok(gw.admin_addr(), "stocks.MSFT", b"1").await;
    publish_ok(gw.admin_addr(), "news", b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"news","data":2})
    );
    assert_eq!(metric(gw.admin_addr(), "volley_connections", "").await, 1.0);
    // news, stocks.AAPL and the sentinel; not `stocks.MSFT`.
    metric_reaches(gw.admin_addr(), "volley_frames_delivered_total", "", 3.0).await;
}

async fn op_subscription_unsubscribe_and_ping(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut client = connect(&gw.url("")).await;
    send_json(&mut client, json!({"op":"sub","topics":["a","b","_x"]})).await;
    assert_eq!(next_json(&mut client).await["code"], "forbidden");
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"subscribed","topics":["a","b"]})
    );
    publish_ok(gw.admin_addr(), "b", b"[1,2]").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic":"b","data":[1,2]})
    );
    send_json(&mut client, json!({"op":"unsub","topics":["b"]})).await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"op":"unsubscribed","topics":["b"]})
    );
    // A leaked `b` would arrive before the `a` sentinel.
    publish_ok(gw.admin_addr(), "b", b"2").await;
    publish_ok(gw.admin_addr(), "a", b"3").await;
    assert_eq!(next_json(&mut client).await, json!({"topic":"a","data":3}));
    send_json(&mut client, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut client).await, json!({"op":"pong"}));
}

async fn each_format_gets_its_own_frame(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut raw = connect(&gw.url("?topics=t&format=raw")).await;
    let mut env = connect(&gw.url("?topics=t")).await;
    publish_ok(gw.admin_addr(), "t", b"hello").await;
    assert_eq!(
        raw.next().await.unwrap().unwrap(),
        WsMessage::Text("hello".into())
    );
    assert_eq!(
        next_json(&mut env).await,
        json!({"topic":"t","data":"hello"})
    );
    publish_ok(gw.admin_addr(), "t", &[0xff, 0x00, 0x01]).await;
    assert_eq!(
        raw.next().await.unwrap().unwrap(),
        WsMessage::Binary(vec![0xff, 0x00, 0x01].into())
    );
    assert_eq!(next_json(&mut env).await, json!({"topic":"t","b64":"/wAB"}));
}

async fn wildcards_follow_nats_semantics(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut star = connect(&gw.url("?topics=stocks.*")).await;
    let mut tail = connect(&gw.url("?topics=stocks.%3E")).await;
    publish_ok(gw.admin_addr(), "stocks.AAPL.trades", b"1").await;
    publish_ok(gw.admin_addr(), "stocks.AAPL", b"2").await;
    assert_eq!(next_json(&mut tail).await["data"], 1);
    assert_eq!(next_json(&mut tail).await["data"], 2);
    assert_eq!(next_json(&mut star).await["data"], 2);
    // `stocks.*` took only the one-token topic: the sentinel comes next, nothing before it.
    publish_ok(gw.admin_addr(), "stocks.MSFT", b"3").await;
    assert_eq!(
        next_json(&mut star).await,
        json!({"topic":"stocks.MSFT","data":3})
    );
}

async fn overlapping_patterns_deliver_once_per_connection(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut client = connect(&gw.url("?topics=a.b,a.*,a.%3E,a.b")).await;
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

/// On the epoll engine the 40 connections land on both shards.
async fn many_clients_each_get_one_copy(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(connect(&gw.url("?topics=room")).await);
    }
    publish_ok(gw.admin_addr(), "room", b"\"hi\"").await;
    for client in &mut clients {
        assert_eq!(next_json(client).await, json!({"topic":"room","data":"hi"}));
    }
    // A second copy would arrive before the sentinel.
    publish_ok(gw.admin_addr(), "room", b"\"again\"").await;
    for client in &mut clients {
        assert_eq!(
            next_json(client).await,
            json!({"topic":"room","data":"again"})
        );
    }
}

async fn ops_get_replies_and_errors(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut client = connect(&gw.url("")).await;
    send_json(&mut client, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut client).await, json!({"op":"pong"}));

    send_json(&mut client, json!({"op":"sub","topics":["_private"]})).await;
    let reply = next_json(&mut client).await;
    assert_eq!(reply["op"], "error");
    assert_eq!(reply["code"], "forbidden");
    assert_eq!(reply["topic"], "_private");

    send_json(&mut client, json!({"op":"sub","topics":["a..b"]})).await;
    assert_eq!(next_json(&mut client).await["code"], "bad_request");

    send_json(&mut client, json!({"op":"dance"})).await;
    assert_eq!(next_json(&mut client).await["code"], "bad_request");

    client
        .send(WsMessage::Text("not json".into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["code"], "bad_request");

    client
        .send(WsMessage::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let reply = next_json(&mut client).await;
    assert_eq!(reply["code"], "bad_request");
    assert!(
        reply["message"].as_str().unwrap().contains("binary"),
        "{reply}"
    );

    // WebSocket pings are answered with pongs carrying the same payload.
    client
        .send(WsMessage::Ping(b"abc".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, WsMessage::Pong(b"abc".to_vec().into()));
}

async fn subscription_limit_is_enforced(engine: Engine) {
    let mut opts = options();
    opts.max_subscriptions_per_connection = Some(2);
    let gw = start_engine(engine, opts).await;
    let mut client = connect(&gw.url("?topics=a")).await;
    send_json(&mut client, json!({"op":"sub","topics":["b","c"]})).await;
    let first = next_json(&mut client).await;
    let second = next_json(&mut client).await;
    let (error, subscribed) = if first["op"] == "error" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(error["code"], "limit");
    assert_eq!(error["topic"], "c");
    assert_eq!(subscribed, json!({"op":"subscribed","topics":["b"]}));
}

async fn client_close_is_answered(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    // A code is echoed.
    let mut client = connect(&gw.url("")).await;
    client
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert_eq!(u16::from(expect_close(&mut client).await.code), 1001);
    // An empty close: the shards answer 1000 (RFC 6455 7.4.1: 1005 is never sent); tungstenite
    // answers a peer's close itself, echoing it empty.
    let mut client = connect(&gw.url("")).await;
    client.close(None).await.unwrap();
    let answer = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("close in time");
        match frame {
            Some(Ok(WsMessage::Close(close))) => break close.map(|c| u16::from(c.code)),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    let expected = match engine {
        Engine::Epoll => Some(1000),
        Engine::Tokio => None,
    };
    assert_eq!(answer, expected);
}
