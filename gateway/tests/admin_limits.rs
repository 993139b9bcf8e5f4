//! The admin HTTP server cannot be starved or held: thousands of idle connections leave
//! `/healthz` and WebSocket upgrades working and the gateway's descriptor count bounded, and slow
//! heads, lying bodies and idle keep-alive connections are closed within their deadlines.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use volley_gateway::admin::server::{HEAD_TIMEOUT, REQUEST_TIMEOUT, connection_cap};

/// Slack on top of a deadline for a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .count()
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
/// Panics if it is still open after `within`.
async fn until_closed(
    stream: &mut TcpStream,
    started: Instant,
    within: Duration,
) -> (String, Duration) {
    let mut got = Vec::new();
    loop {
        let left = within.saturating_sub(started.elapsed());
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    started.elapsed(),
                );
            }
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_admin_connections_starve_nothing() {
    const IDLE: usize = 3_000;
    // Fewer descriptors than idle connections: without the cap the admin port takes them all.
    const NOFILE: u32 = 2_048;
    let cap = connection_cap(Some(u64::from(NOFILE)));
    let gw = GatewayProcess::spawn_with_nofile(NOFILE, &["--shards", "2"]);
    let pid = gw.child.id();
    let admin: SocketAddr = gw.admin;
    let connecting = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IDLE {
        let connecting = connecting.clone();
        tasks.spawn(async move {
            let _permit = connecting.acquire().await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), TcpStream::connect(admin))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut idle = Vec::with_capacity(IDLE);
    while let Some(done) = tasks.join_next().await {
        idle.extend(done.unwrap());
    }
    assert!(
        idle.len() > NOFILE as usize,
        "only {} connected",
        idle.len()
    );

    // The probe and a WebSocket client are served at once, with every idle one still held open
    // on the test's side.
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), get(admin, "/healthz"))
        .await
        .expect("/healthz answers promptly");
    assert_eq!(status, 200, "{body}");
    let mut client = tokio::time::timeout(Duration::from_secs(5), connect(&gw.ws_url("?topics=t")))
        .await
        .expect("the upgrade is answered promptly");
    publish_ok(admin, "t", b"1").await;
    let message = client.next().await.expect("message").expect("frame");
    assert!(
        message.to_text().unwrap().contains("\"data\":1"),
        "{message:?}"
    );

    // The admin server holds at most its cap, whatever the clients do.
    let fds = open_fds(pid);
    assert!(
        fds < cap + 100,
        "gateway holds {fds} descriptors (admin cap {cap})"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_lying_bodies_and_idle_keep_alives_are_closed_in_time() {
    let gw = start(options()).await;
    let admin = gw.admin_addr();

    // A head trickled a byte at a time never completes.
    let slowloris = async {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        let started = Instant::now();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(HEAD_TIMEOUT + SLACK, trickle).await;
        let (_, took) = until_closed(&mut stream, started, HEAD_TIMEOUT + SLACK).await;
        took
    };

    // A body that never comes: Content-Length promises more than is sent.
    let lying_body = async {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        let started = Instant::now();
        stream
            .write_all(
                b"POST /v1/publish/t HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789",
            )
            .await
            .unwrap();
        until_closed(&mut stream, started, REQUEST_TIMEOUT + SLACK).await
    };

    // A Content-Length beyond any limit is refused at once and the connection is not kept.
    let huge_body = async {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        let started = Instant::now();
        stream
            .write_all(
                b"POST /v1/publish/t HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\nabc",
            )
            .await
            .unwrap();
        until_closed(&mut stream, started, SLACK).await
    };

    // One request, then silence on a kept-alive connection.
    let idle_keep_alive = async {
        let mut conn = KeepAlive::open(admin).await;
        assert_eq!(conn.request("GET", "/healthz", b"").await.0, 200);
        let started = Instant::now();
        conn.wait_closed(HEAD_TIMEOUT + SLACK).await;
        started.elapsed()
    };

    // A connection that never says anything.
    let silent = async {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        let started = Instant::now();
        until_closed(&mut stream, started, HEAD_TIMEOUT + SLACK)
            .await
            .1
    };

    let (slow_took, (lying, lying_took), (huge, _), idle_took, silent_took) =
        tokio::join!(slowloris, lying_body, huge_body, idle_keep_alive, silent);
    assert!(
        slow_took >= HEAD_TIMEOUT - Duration::from_secs(1),
        "{slow_took:?}"
    );
    assert!(lying.starts_with("HTTP/1.1 408"), "{lying}");
    assert!(
        lying_took >= REQUEST_TIMEOUT - Duration::from_secs(1),
        "{lying_took:?}"
    );
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(
        idle_took >= HEAD_TIMEOUT - Duration::from_secs(1),
        "{idle_took:?}"
    );
    assert!(
        silent_took >= HEAD_TIMEOUT - Duration::from_secs(1),
        "{silent_took:?}"
    );
    assert_eq!(get(admin, "/healthz").await.0, 200);
}
