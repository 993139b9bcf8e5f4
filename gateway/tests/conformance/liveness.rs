//! Liveness: a silent peer is pinged, then dropped; one that answers stays.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::*;

both_engines!(
    silent_peer_is_pinged_then_dropped,
    answering_peer_stays_connected
);

async fn silent_peer_is_pinged_then_dropped(engine: Engine) {
    let mut opts = options();
    opts.ping_interval = Some(Duration::from_secs(1));
    let gw = start_engine(engine, opts).await;
    let mut stream = raw_upgrade(gw.client_addr()).await;
    let started = std::time::Instant::now();
    let mut frame = [0u8; 2];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut frame))
        .await
        .expect("a ping in time")
        .unwrap();
    assert_eq!(frame, [0x89, 0x00], "an empty ping frame");
    // Never answered: the connection goes after two silent intervals.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "closed in time");
    assert!(started.elapsed() >= Duration::from_secs(2));
    metric_reaches(gw.admin_addr(), "volley_connections", "", 0.0).await;
}

async fn answering_peer_stays_connected(engine: Engine) {
    let mut opts = options();
    opts.ping_interval = Some(Duration::from_secs(1));
    let gw = start_engine(engine, opts).await;
    // tungstenite answers pings while it reads.
    let mut client = connect(&gw.url("?topics=t")).await;
    expect_silence(&mut client, Duration::from_millis(3500)).await;
    publish_ok(gw.admin_addr(), "t", b"1").await;
    assert_eq!(next_json(&mut client).await["data"], 1);
}
