//! The epoll shards' per-IP connection limit over real sockets. JWT auth, access rules and the
//! message rate, which both engines share, are in the conformance suite.

mod support;

use std::time::Duration;

use support::jwt::*;
use support::*;

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
    // The gateway frees the slot when it sees the close, which may take a while under load.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
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
