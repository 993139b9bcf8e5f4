//! Running out of file descriptors, over real sockets (liveness pings, which both engines
//! share, are in the conformance suite).

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_pauses_accepting_and_keeps_serving() {
    // A gateway process with a tiny descriptor limit: the 40 connections below exhaust it.
    let gw = GatewayProcess::spawn_with_nofile(64, &["--shards", "1"]);
    let mut first = connect(&gw.ws_url("?topics=t")).await;
    // Opened before the descriptors run out: the admin server cannot accept a new one then.
    let mut admin = KeepAlive::open(gw.admin).await;
    assert_eq!(admin.request("GET", "/healthz", b"").await.0, 200);
    let mut extra = Vec::new();
    // Connects until the gateway has paused accepting. A connect that has not completed in a
    // second may be one the gateway no longer accepts (the kernel completes the TCP handshake
    // from the backlog; the upgrade never comes) or only a slow one on a loaded machine: the
    // metric tells (asking it also keeps the admin connection from idling out, 5 s).
    let mut pauses = 0.0;
    for _ in 0..80 {
        match tokio::time::timeout(
            Duration::from_secs(1),
            tokio_tungstenite::connect_async(gw.ws_url("")),
        )
        .await
        {
            Ok(Ok((client, _))) => extra.push(client),
            _ => {
                pauses = accept_pauses(&mut admin).await;
                if pauses >= 1.0 {
                    break;
                }
            }
        }
    }
    assert!(pauses >= 1.0, "accepting never paused");
    // The connections already open are still served.
    assert_eq!(admin.request("POST", "/v1/publish/t", b"42").await.0, 202);
    assert_eq!(next_json(&mut first).await["data"], 42);
    // Freeing descriptors lets accepting resume.
    drop(extra);
    let mut resumed = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(gw.ws_url("")),
        )
        .await
        {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "accepting resumes once descriptors are free");
}

/// `volley_accept_pauses_total`, read over the kept-alive admin connection.
async fn accept_pauses(admin: &mut KeepAlive) -> f64 {
    let (_, metrics) = admin.request("GET", "/metrics", b"").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("volley_accept_pauses_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("accept pauses metric")
}
