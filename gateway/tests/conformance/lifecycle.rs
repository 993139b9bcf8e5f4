//! The edges of a connection's life: upgrades refused with the right status, and a drain that
//! refuses new connections and closes the open ones with 1001.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::support::*;

both_engines!(
    bad_upgrades_get_their_statuses,
    draining_refuses_new_connections_and_closes_old_ones_1001,
    resuming_without_history_is_answered_and_served_live,
);

/// Standalone (no JetStream), a resume is answered `recovered:false`, `no_history`, by URL and by
/// op, and the subscription is served live; `since` with several URL topics is a 400.
async fn resuming_without_history_is_answered_and_served_live(engine: Engine) {
    let gw = start_engine(engine, options()).await;
    let mut by_url = connect(&gw.url("?topics=news&since=7&epoch=e")).await;
    let reply = next_json(&mut by_url).await;
    assert_eq!(reply["topics"], serde_json::json!(["news"]));
    assert_eq!(reply["recovered"], false);
    assert_eq!(reply["reason"], "no_history");
    let mut by_op = connect(&gw.url("")).await;
    send_json(
        &mut by_op,
        serde_json::json!({"op":"sub","topics":["news"],"since":{"news":7},"epoch":"e"}),
    )
    .await;
    let reply = next_json(&mut by_op).await;
    assert_eq!(reply["recovered"], false);
    assert_eq!(reply["reason"], "no_history");
    publish_ok(gw.admin_addr(), "news", b"1").await;
    for client in [&mut by_url, &mut by_op] {
        assert_eq!(
            next_json(client).await,
            serde_json::json!({"topic":"news","data":1})
        );
    }
    let (status, body) = http(
        gw.client_addr(),
        b"GET /ws?topics=a,b&since=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("since"), "{body}");
}

async fn bad_upgrades_get_their_statuses(engine: Engine) {
    let gw = start_engine(engine, options()).await;
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
    metric_reaches(gw.admin_addr(), "volley_handshakes_total", "not_found", 1.0).await;
}

/// Connects to `addr` until the connection is refused; panics if that takes over 3 s.
async fn until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "{addr} still accepts while draining"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn draining_refuses_new_connections_and_closes_old_ones_1001(engine: Engine) {
    let mut opts = options();
    opts.drain_timeout = Some(Duration::from_secs(2));
    let gw = start_engine(engine, opts).await;
    let addr = gw.client_addr();
    let mut client = connect(&gw.url("")).await;
    let draining = tokio::spawn(gw.drain());
    until_refused(addr).await;
    let close = expect_close(&mut client).await;
    assert_eq!(u16::from(close.code), 1001);
    // Both engines tell the client it may come back and resume (docs/history.md).
    assert_eq!(
        close.reason.as_str(),
        "server shutting down; reconnect and resume"
    );
    draining.await.unwrap();
}
