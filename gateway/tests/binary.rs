//! The real `volley-gateway` binary: configuration precedence, a broadcast to thousands of
//! connections over several shards, and the graceful drain on SIGTERM.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::*;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[test]
fn config_precedence_is_flag_then_env_then_file() {
    let dir = std::env::temp_dir().join(format!("volley-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "flushInterval: 25ms\nshards: 3\nmaxPendingBytes: 100\nmaxConnections: 7\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_volley-gateway"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .args(["--max-pending-bytes", "300"])
        .env("VOLLEY_SHARDS", "5")
        .env("VOLLEY_MAX_PENDING_BYTES", "200")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("flush_interval: 25ms"), "{text}");
    assert!(text.contains("shards: 5,"), "{text}");
    assert!(text.contains("max_pending_bytes: 300,"), "{text}");
    assert!(text.contains("max_connections: 7,"), "{text}");

    std::fs::write(&file, "flushInterval: 10ms\nmaxConections: 7\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_volley-gateway"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.contains("maxConections"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_5000_connections_exactly_once() {
    const CLIENTS: usize = 5_000;
    let gw = GatewayProcess::spawn(&["--shards", "4"]);
    let url = gw.ws_url("?topics=broadcast");
    let connecting = std::sync::Arc::new(Semaphore::new(200));
    let mut tasks = Vec::with_capacity(CLIENTS);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    for _ in 0..CLIENTS {
        let url = url.clone();
        let connecting = connecting.clone();
        let ready_tx = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire().await.unwrap();
            let mut client = connect(&url).await;
            drop(permit);
            ready_tx.send(()).await.unwrap();
            let mut seen = Vec::new();
            loop {
                let frame = tokio::time::timeout(Duration::from_secs(60), client.next())
                    .await
                    .expect("frames in time")
                    .expect("open")
                    .expect("frame ok");
                if let WsMessage::Text(text) = frame {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if value["data"] == "end" {
                        return seen;
                    }
                    seen.push(value["data"].as_i64().unwrap());
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..CLIENTS {
        ready_rx.recv().await.expect("every client connects");
    }
    // The gauge moves once the shard's loop publishes its counts, a moment after the 101s.
    metric_reaches(gw.admin, "volley_connections", "", CLIENTS as f64).await;
    for i in 1..=3 {
        publish_ok(gw.admin, "broadcast", i.to_string().as_bytes()).await;
    }
    publish_ok(gw.admin, "broadcast", b"\"end\"").await;
    for task in tasks {
        assert_eq!(task.await.unwrap(), vec![1, 2, 3]);
    }
    // Counted after the pass's writes, which the clients may have read before.
    metric_reaches(
        gw.admin,
        "volley_frames_delivered_total",
        "",
        (CLIENTS * 4) as f64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_1001_spread_over_the_window() {
    const CLIENTS: usize = 40;
    // A window long enough that its spread stands out of a loaded machine's delays (which
    // only ever make a close come later than planned).
    const WINDOW: Duration = Duration::from_secs(4);
    let gw = GatewayProcess::spawn(&["--shards", "2", "--drain-timeout", "4s"]);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(&gw.ws_url("")).await);
    }
    let started = Instant::now();
    gw.signal("TERM");
    let mut waits = Vec::new();
    for mut client in clients {
        waits.push(tokio::spawn(async move {
            let close = expect_close(&mut client).await;
            (u16::from(close.code), started.elapsed())
        }));
    }
    // Readiness turns off at once, while connections are still being closed (well inside the
    // window: the admin server goes when the drain is over).
    let mut unready = false;
    while started.elapsed() < WINDOW / 2 {
        if get(gw.admin, "/readyz").await.0 == 503 {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(unready, "/readyz turns 503 during the drain");
    let mut times = Vec::new();
    for wait in waits {
        let (code, at) = wait.await.unwrap();
        assert_eq!(code, 1001);
        times.push(at);
    }
    times.sort();
    let first = times[0];
    let median = times[CLIENTS / 2];
    let last = times[CLIENTS - 1];
    // Planned: the first at once, the median half way, the last at the end of the window.
    // Lower bounds are exact (nothing closes early); upper bounds allow a second of delay.
    let slack = Duration::from_secs(1);
    assert!(first < WINDOW / 4 + slack, "first close at {first:?}");
    assert!(
        median > WINDOW / 4 && median < WINDOW / 2 + slack,
        "median close at {median:?}"
    );
    assert!(
        last > WINDOW * 3 / 4 && last < WINDOW + 2 * slack,
        "last close at {last:?}"
    );
    let mut gw = gw;
    let status = tokio::task::spawn_blocking(move || {
        let status = gw.child.wait().unwrap();
        drop(gw);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "exits 0 after draining: {status:?}");
}

#[test]
fn check_config_shows_no_secret() {
    let secrets = [
        "k3y-value",
        "t0ken-value",
        "pa55-value",
        "SUAKSEEDVALUE",
        "urlpa55",
    ];
    let output = Command::new(env!("CARGO_BIN_EXE_volley-gateway"))
        .args(["--check-config", "--api-key", secrets[0]])
        .args([
            "--nats",
            "nats://bob:urlpa55@127.0.0.1:4222,nats://127.0.0.1:4223",
        ])
        .args(["--nats-token", secrets[1]])
        .args(["--nats-user", "bob", "--nats-password", secrets[2]])
        .args(["--nats-nkey", secrets[3]])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    // The rest is still there to check.
    assert!(
        text.contains("nats://<redacted>@127.0.0.1:4222,nats://127.0.0.1:4223"),
        "{text}"
    );
    assert!(text.contains("\"bob\""), "{text}");
    assert!(text.matches("<redacted>").count() >= 5, "{text}");
}

#[test]
fn a_second_gateway_on_the_same_client_port_is_refused() {
    let first = GatewayProcess::spawn(&["--shards", "2"]);
    let output = Command::new(env!("CARGO_BIN_EXE_volley-gateway"))
        .args(["--listen", &first.client.to_string()])
        .args(["--admin-addr", "127.0.0.1:0", "--shards", "2"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("already in use"), "{err}");
    assert!(err.contains(&first.client.to_string()), "{err}");
    // The first one still has all its clients' port to itself and keeps serving.
    let mut first = first;
    assert!(first.is_running());
}
