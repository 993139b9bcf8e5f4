//! Hostile clients against the real binary, both engines: a ping flood and a reply flood from
//! clients that never read are closed, and the gateway's memory (peak RSS, read from
//! /proc/<pid>/status) stays within a few MiB of where it was before the flood.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How much the gateway's peak RSS may grow during a flood. The per-connection bound is 1 MiB of
/// queued bytes; the old behaviour grew by hundreds of MiB within seconds.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;
/// How long a flood may go on before the test gives up on the gateway closing it.
const FLOOD_LIMIT: Duration = Duration::from_secs(30);

/// A `kB` field of /proc/<pid>/status.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// A client frame with a mask, as RFC 6455 requires of clients.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// An upgraded connection that will never read again, with a tiny receive buffer so nothing the
/// gateway sends is absorbed by the test's side.
async fn deaf_client(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    support::upgrade_stream(socket.connect(addr).await.expect("connect")).await
}

/// Writes `batch` over and over (at most `per_second` batches a second) until the gateway drops
/// the connection; panics if it is still open after [`FLOOD_LIMIT`].
async fn flood_until_dropped(stream: &mut TcpStream, batch: &[u8], per_second: u32) {
    let started = Instant::now();
    let gap = Duration::from_secs(1) / per_second;
    let mut next = started;
    loop {
        let left = FLOOD_LIMIT.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "still open after {FLOOD_LIMIT:?} of flooding"
        );
        // A gateway that stopped reading makes this write block; it fails once it drops us.
        match tokio::time::timeout(left, stream.write_all(batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => panic!("still open after {FLOOD_LIMIT:?} of flooding"),
        }
        next += gap;
        tokio::time::sleep_until(next).await;
    }
}

struct Flood {
    engine: &'static str,
    /// Extra gateway flags.
    args: &'static [&'static str],
    /// Connections flooding at once.
    clients: usize,
    batch: Vec<u8>,
    per_second: u32,
    /// The metric (name, label filter) that must count one close per client.
    counted_in: (&'static str, &'static str),
}

/// Runs `flood` against a fresh gateway; asserts every client is dropped, a slow-consumer or
/// rate-limit close is counted, and the peak RSS grew by less than [`RSS_GROWTH_LIMIT_KIB`].
async fn run(flood: Flood) {
    let mut args = vec!["--engine", flood.engine, "--shards", "2"];
    args.extend_from_slice(flood.args);
    let gw = GatewayProcess::spawn(&args);
    let pid = gw.child.id();
    let mut clients = Vec::new();
    for _ in 0..flood.clients {
        clients.push(deaf_client(gw.client).await);
    }
    // Let start-up allocations settle before taking the baseline.
    assert_eq!(get(gw.admin, "/healthz").await.0, 200);
    let before = status_kib(pid, "VmHWM:");
    let mut floods = tokio::task::JoinSet::new();
    for mut client in clients {
        let batch = flood.batch.clone();
        let per_second = flood.per_second;
        floods.spawn(async move { flood_until_dropped(&mut client, &batch, per_second).await });
    }
    while let Some(done) = floods.join_next().await {
        done.expect("flood task");
    }
    let after = status_kib(pid, "VmHWM:");
    eprintln!(
        "{} flood, {} clients: peak RSS {before} KiB before, {after} KiB after",
        flood.engine, flood.clients
    );
    let (name, filter) = flood.counted_in;
    metric_reaches(gw.admin, name, filter, flood.clients as f64).await;
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "{}: peak RSS grew from {before} KiB to {after} KiB",
        flood.engine
    );
    // The gateway still serves new clients.
    let mut fresh = connect(&gw.ws_url("?topics=after")).await;
    publish_ok(gw.admin, "after", b"1").await;
    assert_eq!(next_json(&mut fresh).await["data"], 1);
}

const SLOW: (&str, &str) = ("volley_slow_consumer_closes_total", "");
const RATE: (&str, &str) = ("volley_protocol_closes_total", "rate_limit");

/// 125-byte pings, as fast as the socket takes them.
fn ping_batch() -> Vec<u8> {
    let one = masked(0x89, &[b'p'; 125]);
    one.repeat(64)
}

/// `sub` ops full of reserved topics: each topic earns an error reply.
fn reserved_sub_op() -> Vec<u8> {
    let topics: Vec<String> = (0..400).map(|i| format!("\"_r{i}\"")).collect();
    let op = format!("{{\"op\":\"sub\",\"topics\":[{}]}}", topics.join(","));
    assert!(op.len() < 4096);
    masked(0x81, op.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_is_closed_by_the_rate_limit_epoll() {
    run(Flood {
        engine: "epoll",
        args: &[],
        clients: 2,
        batch: ping_batch(),
        per_second: 1_000,
        counted_in: RATE,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_under_a_high_rate_limit_is_closed_by_the_pending_bound_epoll() {
    run(Flood {
        engine: "epoll",
        args: &["--max-client-messages-per-second", "1000000"],
        clients: 2,
        batch: ping_batch(),
        per_second: 1_000,
        counted_in: SLOW,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_flood_under_the_rate_limit_is_closed_as_slow_consumer_epoll() {
    run(Flood {
        engine: "epoll",
        args: &["--max-client-messages-per-second", "1000"],
        clients: 4,
        batch: reserved_sub_op(),
        per_second: 500,
        counted_in: SLOW,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_is_closed_tokio() {
    run(Flood {
        engine: "tokio",
        args: &[
            "--max-client-messages-per-second",
            "1000000",
            "--ping-interval",
            "1s",
        ],
        clients: 2,
        batch: ping_batch(),
        per_second: 1_000,
        counted_in: SLOW,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_flood_is_closed_tokio() {
    run(Flood {
        engine: "tokio",
        args: &[
            "--max-client-messages-per-second",
            "1000",
            "--ping-interval",
            "1s",
        ],
        clients: 4,
        batch: reserved_sub_op(),
        per_second: 500,
        counted_in: SLOW,
    })
    .await;
}
