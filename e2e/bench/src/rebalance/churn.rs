//! Clients that stay connected and reconnect when the server closes them, like a real app's
//! WebSocket clients: each counts its server-side closes (by close code) so a run can count the
//! moves a rebalance caused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::wire;

/// Deadline for connecting and for the upgrade answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame buffer a client keeps (server frames here are small).
const MAX_BUFFER: usize = 64 * 1024;

/// Shared counters of a fleet of churning clients.
#[derive(Debug, Default)]
pub struct Counters {
    /// Clients connected (upgraded) right now.
    pub connected: AtomicUsize,
    /// Server-initiated closes, i.e. moves (each followed by a reconnect).
    pub moves: AtomicU64,
    /// Of those, closes with 1012 ("rebalance").
    pub rebalance_closes: AtomicU64,
    /// Of those, closes with 1001 ("going away", a drain).
    pub drain_closes: AtomicU64,
    /// Connection or upgrade attempts that failed (no ready backend, refused, timeout).
    pub failed_attempts: AtomicU64,
    /// Set to stop every client.
    pub stop: AtomicBool,
}

/// Starts `n` clients against `addr`, each retrying every `retry` after a failure and
/// reconnecting `retry` after a close. They run until `counters.stop` is set.
pub fn spawn(
    n: usize,
    addr: SocketAddr,
    retry: Duration,
    counters: &Arc<Counters>,
) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let c = counters.clone();
            tokio::spawn(async move { client(i, addr, retry, &c).await })
        })
        .collect()
}

/// How one connection ended.
enum End {
    /// The server closed it with this code (0 = no code, or EOF).
    Closed(u16),
    /// Asked to stop.
    Stopped,
}

async fn client(i: usize, addr: SocketAddr, retry: Duration, c: &Counters) {
    // Stagger the first connects a little so 600 clients do not arrive in one burst.
    tokio::time::sleep(Duration::from_millis((i % 50) as u64 * 2)).await;
    while !c.stop.load(Ordering::Acquire) {
        let Some(stream) = connect(addr).await else {
            c.failed_attempts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(retry).await;
            continue;
        };
        c.connected.fetch_add(1, Ordering::AcqRel);
        let end = session(stream, c).await;
        c.connected.fetch_sub(1, Ordering::AcqRel);
        match end {
            End::Stopped => return,
            End::Closed(code) => {
                if c.stop.load(Ordering::Acquire) {
                    return;
                }
                c.moves.fetch_add(1, Ordering::Relaxed);
                match code {
                    1012 => c.rebalance_closes.fetch_add(1, Ordering::Relaxed),
                    1001 => c.drain_closes.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }
        tokio::time::sleep(retry).await;
    }
}

async fn connect(addr: SocketAddr) -> Option<(TcpStream, Vec<u8>)> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(&wire::upgrade_request("bench", "/ws?topics=rebalance"))
            .await
            .ok()?;
        let mut buf = Vec::with_capacity(1024);
        loop {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((status, head)) = wire::response_head(&buf) {
                return (status == 101).then(|| (s, buf.split_off(head)));
            }
            if buf.len() > MAX_BUFFER {
                return None;
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

/// Reads frames until the server closes (answering pings), or until asked to stop (checked
/// every 200ms).
async fn session((mut s, mut buf): (TcpStream, Vec<u8>), c: &Counters) -> End {
    loop {
        while let Some(f) = wire::parse_frame(&buf) {
            match f.opcode {
                wire::OP_CLOSE => {
                    let p = &buf[f.payload.clone()];
                    let code = if p.len() >= 2 {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        0
                    };
                    let _ = s.write_all(&wire::client_control(wire::OP_CLOSE, p)).await;
                    return End::Closed(code);
                }
                wire::OP_PING => {
                    let pong = wire::client_control(0xA, &buf[f.payload.clone()]);
                    if s.write_all(&pong).await.is_err() {
                        return End::Closed(0);
                    }
                }
                _ => {}
            }
            buf.drain(..f.len);
        }
        if buf.len() > MAX_BUFFER {
            return End::Closed(0);
        }
        let mut chunk = [0u8; 4096];
        tokio::select! {
            r = s.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return End::Closed(0),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if c.stop.load(Ordering::Acquire) {
                    return End::Stopped;
                }
            }
        }
    }
}
