//! The client process (`volley-bench __child`): opens its share of connections with bounded
//! in-flight connects and retries, then reads every frame, tallying benchmark payloads per
//! phase with their latency, until the parent says exit.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::ipc::{ChildReport, Command, ConnectOutcome, ConnectSpec, Event};
use crate::plan::{self, ZipfPlan};
use crate::{BenchError, now_ns, payload, token, wire};

/// The per-thread read buffer; grows only if a single frame is larger.
const SCRATCH_BUF: usize = 64 * 1024;

type Stats = Arc<Mutex<ChildReport>>;

#[cfg(test)]
mod tests;

/// Runs the child protocol on stdin/stdout until `exit` or end of input.
pub async fn serve() -> Result<(), BenchError> {
    let stats: Stats = Arc::default();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let event = match serde_json::from_str::<Command>(&line)? {
            Command::Connect(spec) => Event::Connected(connect_all(spec, stats.clone()).await),
            Command::Report => Event::Report(lock(&stats).clone()),
            Command::Exit => return Ok(()),
        };
        let mut text = serde_json::to_string(&event)?;
        text.push('\n');
        out.write_all(text.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}

fn lock(stats: &Stats) -> std::sync::MutexGuard<'_, ChildReport> {
    // A reader task never panics while holding the lock; recover the data if one did.
    stats.lock().unwrap_or_else(|e| e.into_inner())
}

async fn connect_all(spec: ConnectSpec, stats: Stats) -> ConnectOutcome {
    let spec = Arc::new(spec);
    let zipf = match spec.shape {
        plan::Shape::Zipf { topics, s, seed } => Some(Arc::new(ZipfPlan::new(topics, s, seed))),
        _ => None,
    };
    let gate = Arc::new(Semaphore::new(spec.inflight.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut outcome = ConnectOutcome {
        first_start_ns: now_ns(),
        ..ConnectOutcome::default()
    };
    for i in spec.first..spec.first + spec.count {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let (spec, zipf, tx, stats) = (spec.clone(), zipf.clone(), tx.clone(), stats.clone());
        tokio::spawn(async move {
            let target = upgrade_target(&spec, zipf.as_deref(), i);
            let result = connect_one(&spec, i, &target).await;
            drop(permit);
            match result {
                Ok((stream, leftover, micros, retries)) => {
                    let _ = tx.send((i, Some(micros), retries));
                    drop(tx);
                    read_loop(stream, leftover, stats).await;
                }
                Err(retries) => {
                    let _ = tx.send((i, None, retries));
                }
            }
        });
    }
    drop(tx);
    // Tasks keep their sender while they read, so count answers instead of waiting for close.
    for _ in 0..spec.count {
        let Some((i, micros, retries)) = rx.recv().await else {
            break;
        };
        outcome.retries += u64::from(retries);
        match micros {
            Some(us) => {
                outcome.ok += 1;
                outcome.connect_us.record(us);
            }
            None => outcome.failed.push(i),
        }
    }
    outcome.last_done_ns = now_ns();
    outcome
}

/// The request target of connection `i`: its topics, the wire format it asks for and, for
/// per-user connections, its signed token.
pub fn upgrade_target(spec: &ConnectSpec, zipf: Option<&ZipfPlan>, i: usize) -> String {
    let mut target = format!("/ws{}", plan::query(&spec.shape, zipf, i));
    if spec.raw {
        target.push_str("&format=raw");
    }
    if let Some(secret) = &spec.token_secret {
        match token::user_token(secret.as_bytes(), i) {
            Ok(t) => {
                target.push_str("&token=");
                target.push_str(&t);
            }
            Err(e) => eprintln!("volley-bench: cannot sign the token of user {i}: {e}"),
        }
    }
    target
}

/// Connects and upgrades connection `i`; on success (stream, bytes read past the 101,
/// microseconds from first attempt, retries used), else the retries used.
async fn connect_one(
    spec: &ConnectSpec,
    i: usize,
    target: &str,
) -> Result<(TcpStream, Vec<u8>, u64, u32), u32> {
    let started = Instant::now();
    let source = plan::source_addr(i, spec.sources);
    let request = wire::upgrade_request(&spec.server.to_string(), target);
    for attempt in 0..=spec.retries {
        if attempt > 0 {
            // Back off a little so a refused burst does not retry in lockstep.
            tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
        }
        let try_once = async {
            let socket = TcpSocket::new_v4()?;
            // Earlier runs leave tens of thousands of our ports in TIME_WAIT for a minute;
            // without this, bind's search for a free ephemeral port wades through them and
            // the connect rate measures that search instead of the server.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
            // No TCP_NODELAY: a client writes its request once and then only answers pings,
            // so Nagle never holds anything back, and the storm saves a syscall per connect.
            let mut stream = socket.connect(spec.server).await?;
            // Reset rather than FIN when the run ends, so the next run's binds do not find
            // 19,000 ports of this one still in TIME_WAIT.
            stream.set_zero_linger()?;
            stream.write_all(&request).await?;
            let mut buf = Vec::with_capacity(512);
            loop {
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("closed during upgrade"));
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some((status, head)) = wire::response_head(&buf) {
                    if status != 101 {
                        return Err(std::io::Error::other(format!("status {status}")));
                    }
                    return Ok((stream, buf.split_off(head)));
                }
            }
        };
        let timeout = Duration::from_millis(spec.timeout_ms);
        if let Ok(Ok((stream, leftover))) = tokio::time::timeout(timeout, try_once).await {
            return Ok((
                stream,
                leftover,
                started.elapsed().as_micros() as u64,
                attempt,
            ));
        }
    }
    Err(spec.retries)
}

async fn read_loop(mut stream: TcpStream, leftover: Vec<u8>, stats: Stats) {
    // Only a partial frame is kept per connection; reads go through the thread's scratch
    // buffer (the runtime is single-threaded), so 10,000 idle clients do not hold 80 MB of
    // read buffers and the client core stays cache-friendly while it measures.
    let mut partial = leftover;
    loop {
        if stream.readable().await.is_err() {
            lock(&stats).closed += 1;
            return;
        }
        let step =
            SCRATCH.with_borrow_mut(|scratch| read_step(&stream, &mut partial, scratch, &stats));
        let (pong, closed) = match step {
            Step::WouldBlock => continue,
            Step::Ended => {
                lock(&stats).closed += 1;
                return;
            }
            Step::Read { pong, closed } => (pong, closed),
        };
        if let Some(pong) = pong {
            let _ = stream.write_all(&pong).await;
        }
        if closed {
            lock(&stats).closed += 1;
            let _ = stream
                .write_all(&wire::client_control(wire::OP_CLOSE, &[]))
                .await;
            return;
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; SCRATCH_BUF]);
}

enum Step {
    WouldBlock,
    Ended,
    Read { pong: Option<Vec<u8>>, closed: bool },
}

/// One non-blocking read: the kept partial frame and the new bytes are tallied from the
/// scratch buffer; what remains of an unfinished frame goes back into `partial`.
fn read_step(
    stream: &TcpStream,
    partial: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    stats: &Stats,
) -> Step {
    let kept = partial.len();
    if scratch.len() < kept * 2 {
        scratch.resize(kept * 2, 0);
    }
    scratch[..kept].copy_from_slice(partial);
    let n = match stream.try_read(&mut scratch[kept..]) {
        Ok(0) => return Step::Ended,
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Step::WouldBlock,
        Err(_) => return Step::Ended,
    };
    let filled = kept + n;
    // One clock read per read call: every frame in it arrived at the same time.
    let now = now_ns();
    let (consumed, pong, closed) = tally(&scratch[..filled], now, stats);
    partial.clear();
    partial.extend_from_slice(&scratch[consumed..filled]);
    if partial.is_empty() {
        // Give the allocation back: most reads end on a frame boundary.
        *partial = Vec::new();
    }
    Step::Read { pong, closed }
}

/// Tallies every complete frame in `buf`; returns (bytes consumed, a pong to send, closed).
fn tally(buf: &[u8], now: u64, stats: &Stats) -> (usize, Option<Vec<u8>>, bool) {
    let mut at = 0;
    let mut pong = None;
    let mut s = lock(stats);
    while let Some(frame) = wire::parse_frame(&buf[at..]) {
        let data = &buf[at + frame.payload.start..at + frame.payload.end];
        at += frame.len;
        match frame.opcode {
            wire::OP_TEXT | wire::OP_BINARY => match payload::read(data) {
                Some((phase, ts)) => {
                    let t = s.tallies.entry(phase).or_default();
                    t.received += 1;
                    t.latency.record(now.saturating_sub(ts) / 1000);
                }
                None => s.unparsed += 1,
            },
            wire::OP_PING => pong = Some(wire::client_control(0xA, data)),
            wire::OP_CLOSE => return (at, pong, true),
            _ => {}
        }
    }
    (at, pong, false)
}
