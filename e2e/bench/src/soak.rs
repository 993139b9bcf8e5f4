//! The soak scenario: a long mix of connection churn (connect, subscribe, receive, drop without
//! a close handshake, half of them with a reset), pings, steady subscribers, publishes and slow
//! consumers against one gateway, sampling its resident memory and open descriptors on a fixed
//! period. It reports the RSS and descriptor trends over the last two thirds of the run and
//! whether descriptors came back to the pre-load baseline once every client had left.
//!
//! Every loop ends at the run's deadline, every socket operation has a timeout, and every
//! client count is fixed up front, so a stuck gateway makes the run report failures, not hang.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};

use crate::BenchError;
use crate::procfs;
use crate::publisher::{HttpPublisher, Publisher};
use crate::trend::{self, Trend};
use crate::wire::{self, OP_CLOSE, OP_PING};
use crate::zipf::Rng;

pub mod cli;

const OP_PONG: u8 = 0xA;
/// Topic every steady, churning and pinging client subscribes to.
const ALL: &str = "soak.all";
/// Churning clients also take one of this many per-group topics.
const GROUPS: usize = 8;
/// Longest wait for a connect, an upgrade answer or one publish.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest upgrade response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Fraction of the run (its end) over which the trends are fitted: the first third is warm-up
/// (allocator pools, buffers and tables growing to their working size).
pub const TREND_TAIL: f64 = 2.0 / 3.0;
/// RSS growth over the trend window that still counts as flat, in percent.
pub const FLAT_PERCENT: f64 = 1.0;

/// What the soak does and for how long.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    /// Load time; sampling continues while the clients leave.
    pub duration: Duration,
    /// Sampling period of RSS and descriptors.
    pub sample_every: Duration,
    /// Wait after the gateway is up before the baseline sample.
    pub settle: Duration,
    /// Concurrent churn loops (each: connect, subscribe, receive a while, drop).
    pub churners: usize,
    /// How long a churning client stays, at most (uniform from a tenth of it).
    pub churn_hold: Duration,
    /// Subscribers connected for the whole run.
    pub steady: usize,
    /// Clients that send a WebSocket ping and a `{"op":"ping"}` every `ping_every`.
    pub pingers: usize,
    pub ping_every: Duration,
    /// Published messages per second (HTTP), to `soak.all` and the group topics in turn.
    pub rate: f64,
    /// Payload bytes of those messages.
    pub size: usize,
    /// A slow consumer (small receive buffer, never reads while its burst is sent) starts this
    /// often.
    pub slow_every: Duration,
    /// Messages published to each slow consumer's own topic, and their size: together they
    /// should exceed the gateway's pending bound plus the socket buffers.
    pub slow_burst: usize,
    pub slow_size: usize,
    /// Longest wait, after the load, for the descriptors to return to the baseline.
    pub fd_wait: Duration,
}

/// One sample of the gateway process.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the baseline sample.
    pub t_s: f64,
    pub rss_bytes: u64,
    pub fds: u64,
    /// Open client connections held by the soak at that moment.
    pub clients: u64,
}

/// Counters the clients and the publisher bump; a snapshot goes into the report.
#[derive(Debug, Default)]
struct Counters {
    churn_connects: AtomicU64,
    churn_failures: AtomicU64,
    churn_resets: AtomicU64,
    messages: AtomicU64,
    steady_messages: AtomicU64,
    steady_reconnects: AtomicU64,
    ws_pings: AtomicU64,
    ws_pongs: AtomicU64,
    op_pings: AtomicU64,
    op_pongs: AtomicU64,
    server_pings: AtomicU64,
    published: AtomicU64,
    publish_refused: AtomicU64,
    publish_failed: AtomicU64,
    slow_started: AtomicU64,
    slow_closed: AtomicU64,
    slow_closed_1008: AtomicU64,
    slow_survived: AtomicU64,
    open: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Client-side totals of a soak run.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub churn_connects: u64,
    pub churn_failures: u64,
    /// Churning clients that left with a TCP reset rather than a FIN.
    pub churn_resets: u64,
    /// Messages received by churning and pinging clients.
    pub messages: u64,
    pub steady_messages: u64,
    /// Steady subscribers the gateway dropped (each reconnected).
    pub steady_reconnects: u64,
    pub ws_pings: u64,
    pub ws_pongs: u64,
    pub op_pings: u64,
    pub op_pongs: u64,
    /// Pings the gateway sent (answered with pongs).
    pub server_pings: u64,
    pub published: u64,
    pub publish_refused: u64,
    pub publish_failed: u64,
    pub slow_started: u64,
    /// Slow consumers the gateway closed (connection ended before the burst was read).
    pub slow_closed: u64,
    /// Of those, closed with a 1008 Close frame.
    pub slow_closed_1008: u64,
    /// Slow consumers still open when their wait ended.
    pub slow_survived: u64,
}

impl Counters {
    fn snapshot(&self) -> Activity {
        Activity {
            churn_connects: get(&self.churn_connects),
            churn_failures: get(&self.churn_failures),
            churn_resets: get(&self.churn_resets),
            messages: get(&self.messages),
            steady_messages: get(&self.steady_messages),
            steady_reconnects: get(&self.steady_reconnects),
            ws_pings: get(&self.ws_pings),
            ws_pongs: get(&self.ws_pongs),
            op_pings: get(&self.op_pings),
            op_pongs: get(&self.op_pongs),
            server_pings: get(&self.server_pings),
            published: get(&self.published),
            publish_refused: get(&self.publish_refused),
            publish_failed: get(&self.publish_failed),
            slow_started: get(&self.slow_started),
            slow_closed: get(&self.slow_closed),
            slow_closed_1008: get(&self.slow_closed_1008),
            slow_survived: get(&self.slow_survived),
        }
    }
}

/// The outcome of a soak run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    pub sample_every_s: f64,
    pub samples: Vec<Sample>,
    pub rss_baseline: u64,
    pub rss_peak: u64,
    pub rss_final: u64,
    /// RSS over the last two thirds of the load.
    pub rss_trend: Option<Trend>,
    /// Descriptors over the last two thirds of the load.
    pub fd_trend: Option<Trend>,
    pub fds_baseline: u64,
    pub fds_peak: u64,
    /// Descriptors once every client had left (or when `fd_wait` ran out).
    pub fds_final: u64,
    pub fds_returned: bool,
    /// RSS growth over the trend window under [`FLAT_PERCENT`].
    pub rss_flat: bool,
    pub activity: Activity,
}

/// Where the soak's gateway is.
#[derive(Debug, Clone, Copy)]
pub struct SoakTarget {
    pub pid: u32,
    pub client: SocketAddr,
    pub admin: SocketAddr,
}

/// Open descriptors of a process: the entries of `/proc/PID/fd`.
pub fn open_fds(pid: u32) -> Result<u64, BenchError> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Runs the soak against `target` and reports.
pub async fn run(settings: &SoakSettings, target: SoakTarget) -> Result<SoakReport, BenchError> {
    tokio::time::sleep(settings.settle).await;
    let counters = Arc::new(Counters::default());
    let origin = Instant::now();
    let sample = |counters: &Counters| -> Result<Sample, BenchError> {
        Ok(Sample {
            t_s: origin.elapsed().as_secs_f64(),
            rss_bytes: procfs::rss_bytes(target.pid)?,
            fds: open_fds(target.pid)?,
            clients: get(&counters.open),
        })
    };
    let baseline = sample(&counters)?;
    let mut samples = vec![baseline.clone()];
    let deadline = origin + settings.duration;

    let mut tasks = JoinSet::new();
    for i in 0..settings.steady {
        tasks.spawn(steady(target.client, i, deadline, counters.clone()));
    }
    for i in 0..settings.pingers {
        let every = settings.ping_every;
        tasks.spawn(pinger(target.client, i, every, deadline, counters.clone()));
    }
    for i in 0..settings.churners {
        let hold = settings.churn_hold;
        tasks.spawn(churner(target.client, i, hold, deadline, counters.clone()));
    }
    tasks.spawn(publisher(
        settings.clone(),
        target.admin,
        deadline,
        counters.clone(),
    ));
    tasks.spawn(slow_consumers(
        settings.clone(),
        target,
        deadline,
        counters.clone(),
    ));

    let mut tick = tokio::time::interval_at(origin + settings.sample_every, settings.sample_every);
    while Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => samples.push(sample(&counters)?),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    let load_samples = samples.len();
    // Every task watches the deadline with sub-IO_TIMEOUT waits; this only bounds a bug.
    let join_deadline = Instant::now() + IO_TIMEOUT * 4;
    while let Ok(Some(done)) = timeout_at(join_deadline, tasks.join_next()).await {
        if let Err(e) = done {
            return Err(BenchError::Protocol(format!("soak task failed: {e}")));
        }
    }
    tasks.abort_all();

    // Descriptors come back once the gateway has noticed every close; wait for it, bounded.
    let fd_deadline = Instant::now() + settings.fd_wait;
    let mut last = sample(&counters)?;
    while last.fds > baseline.fds && Instant::now() < fd_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = sample(&counters)?;
    }
    samples.push(last.clone());

    let series = |f: fn(&Sample) -> u64| -> Vec<(f64, f64)> {
        samples[..load_samples]
            .iter()
            .map(|s| (s.t_s, f(s) as f64))
            .collect()
    };
    let rss_trend = trend::tail_trend(&series(|s| s.rss_bytes), TREND_TAIL);
    let fd_trend = trend::tail_trend(&series(|s| s.fds), TREND_TAIL);
    Ok(SoakReport {
        duration_s: settings.duration.as_secs_f64(),
        sample_every_s: settings.sample_every.as_secs_f64(),
        rss_baseline: baseline.rss_bytes,
        rss_peak: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        rss_final: last.rss_bytes,
        rss_flat: rss_trend.is_some_and(|t| t.growth_percent < FLAT_PERCENT),
        rss_trend,
        fd_trend,
        fds_baseline: baseline.fds,
        fds_peak: samples.iter().map(|s| s.fds).max().unwrap_or(0),
        fds_final: last.fds,
        fds_returned: last.fds <= baseline.fds,
        activity: counters.snapshot(),
        samples,
    })
}

/// A client connection past its upgrade, with the bytes read beyond the 101 head.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What ended a [`Client::pump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The wait was over; the connection is still open.
    Time,
    /// The server sent a Close frame with this code (0 when it had none).
    Close(u16),
    /// The connection ended without a Close frame (FIN or reset).
    Gone,
}

/// Frames seen by one [`Client::pump`].
#[derive(Debug, Default)]
struct Seen {
    messages: u64,
    ws_pongs: u64,
    op_pongs: u64,
    server_pings: u64,
}

impl Client {
    /// Connects (with a small receive buffer when given) and upgrades to `target`.
    async fn open(
        addr: SocketAddr,
        target: &str,
        recv_buffer: Option<u32>,
    ) -> Result<Client, BenchError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let mut stream = timeout(IO_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| BenchError::Protocol("connect timed out".into()))??;
        stream
            .write_all(&wire::upgrade_request("soak", target))
            .await?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = Vec::new();
        loop {
            if let Some((status, head)) = wire::response_head(&buf) {
                if status != 101 {
                    return Err(BenchError::Protocol(format!("upgrade answered {status}")));
                }
                buf.drain(..head);
                return Ok(Client { stream, buf });
            }
            if buf.len() > MAX_HEAD {
                return Err(BenchError::Protocol("upgrade answer too large".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = timeout_at(deadline, stream.read(&mut chunk))
                .await
                .map_err(|_| BenchError::Protocol("upgrade timed out".into()))??;
            if n == 0 {
                return Err(BenchError::Protocol("closed during the upgrade".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads and handles frames until `until`: answers server pings, counts messages and pongs.
    async fn pump(&mut self, until: Instant, seen: &mut Seen) -> Ended {
        loop {
            while let Some(frame) = wire::parse_frame(&self.buf) {
                let payload = &self.buf[frame.payload.clone()];
                match frame.opcode {
                    OP_CLOSE => {
                        let code = match payload {
                            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                            _ => 0,
                        };
                        return Ended::Close(code);
                    }
                    OP_PING => {
                        seen.server_pings += 1;
                        let pong = wire::client_control(OP_PONG, payload);
                        if self.stream.write_all(&pong).await.is_err() {
                            return Ended::Gone;
                        }
                    }
                    OP_PONG => seen.ws_pongs += 1,
                    _ if payload.starts_with(br#"{"op":"pong"#) => seen.op_pongs += 1,
                    _ if payload.starts_with(br#"{"op":"#) => {}
                    _ => seen.messages += 1,
                }
                self.buf.drain(..frame.len);
            }
            let mut chunk = [0u8; 16 * 1024];
            match timeout_at(until, self.stream.read(&mut chunk)).await {
                Err(_) => return Ended::Time,
                Ok(Ok(0)) | Ok(Err(_)) => return Ended::Gone,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A masked text frame (zero mask key, so the payload goes as is).
    async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        let mut frame = vec![0x81];
        let len = text.len();
        if len <= 125 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        self.stream.write_all(&frame).await
    }
}

/// Adds what one pump saw to the totals; `steady` clients count their messages apart.
fn tally(c: &Counters, seen: &Seen, steady: bool) {
    let messages = if steady {
        &c.steady_messages
    } else {
        &c.messages
    };
    messages.fetch_add(seen.messages, Ordering::Relaxed);
    c.ws_pongs.fetch_add(seen.ws_pongs, Ordering::Relaxed);
    c.op_pongs.fetch_add(seen.op_pongs, Ordering::Relaxed);
    c.server_pings
        .fetch_add(seen.server_pings, Ordering::Relaxed);
}

/// Pump in slices so the deadline is seen promptly even on a quiet connection.
const SLICE: Duration = Duration::from_millis(500);

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<Counters>);

impl OpenGuard {
    fn new(c: &Arc<Counters>) -> OpenGuard {
        bump(&c.open);
        OpenGuard(c.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stays subscribed to `soak.all` for the whole run; reconnects if dropped.
async fn steady(addr: SocketAddr, i: usize, deadline: Instant, c: Arc<Counters>) {
    let target = format!("/ws?topics={ALL},soak.steady.{i}");
    while Instant::now() < deadline {
        let Ok(mut client) = Client::open(addr, &target, None).await else {
            bump(&c.steady_reconnects);
            tokio::time::sleep(SLICE).await;
            continue;
        };
        let _open = OpenGuard::new(&c);
        loop {
            let mut seen = Seen::default();
            let until = (Instant::now() + SLICE).min(deadline);
            let ended = client.pump(until, &mut seen).await;
            tally(&c, &seen, true);
            if ended != Ended::Time {
                bump(&c.steady_reconnects);
                break;
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }
}

/// Sends a WebSocket ping and a `{"op":"ping"}` every `every`, reading the pongs.
async fn pinger(addr: SocketAddr, i: usize, every: Duration, deadline: Instant, c: Arc<Counters>) {
    let target = format!("/ws?topics=soak.pinger.{i}");
    while Instant::now() < deadline {
        let Ok(mut client) = Client::open(addr, &target, None).await else {
            tokio::time::sleep(SLICE).await;
            continue;
        };
        let _open = OpenGuard::new(&c);
        let mut n = 0u64;
        while Instant::now() < deadline {
            n += 1;
            let ping = wire::client_control(OP_PING, &n.to_be_bytes());
            if client.stream.write_all(&ping).await.is_err() {
                break;
            }
            bump(&c.ws_pings);
            if client.send_text(r#"{"op":"ping"}"#).await.is_err() {
                break;
            }
            bump(&c.op_pings);
            let mut seen = Seen::default();
            let ended = client
                .pump((Instant::now() + every).min(deadline), &mut seen)
                .await;
            tally(&c, &seen, false);
            if ended != Ended::Time {
                break;
            }
        }
    }
}

/// Connect, subscribe, receive for a while, then leave without a close handshake: every other
/// time with a reset (zero linger) instead of a FIN.
async fn churner(addr: SocketAddr, i: usize, hold: Duration, deadline: Instant, c: Arc<Counters>) {
    let mut rng = Rng::new(0x50a4 + i as u64);
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let group = (i + round as usize) % GROUPS;
        let target = format!("/ws?topics={ALL},soak.group.{group}");
        let mut client = match Client::open(addr, &target, None).await {
            Ok(client) => client,
            Err(_) => {
                bump(&c.churn_failures);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        bump(&c.churn_connects);
        let _open = OpenGuard::new(&c);
        if rng.below(3) == 0 {
            let _ = client.send_text(r#"{"op":"ping"}"#).await;
            bump(&c.op_pings);
        }
        let tenth = hold.as_millis() as u64 / 10;
        let stay = Duration::from_millis(tenth + rng.below(tenth * 9 + 1));
        let mut seen = Seen::default();
        client
            .pump((Instant::now() + stay).min(deadline), &mut seen)
            .await;
        tally(&c, &seen, false);
        if round.is_multiple_of(2) && client.stream.set_zero_linger().is_ok() {
            bump(&c.churn_resets);
        }
        // Dropped here: no Close frame.
    }
}

/// Publishes at the configured rate over HTTP, alternating `soak.all` and the group topics.
async fn publisher(s: SoakSettings, admin: SocketAddr, deadline: Instant, c: Arc<Counters>) {
    if s.rate <= 0.0 {
        return;
    }
    let mut http = HttpPublisher::new(admin);
    let payload = vec![b'x'; s.size];
    let period = Duration::from_secs_f64(1.0 / s.rate);
    let start = Instant::now();
    let mut i: u64 = 0;
    loop {
        let due = start + period.mul_f64(i as f64);
        if due >= deadline {
            return;
        }
        tokio::time::sleep_until(due).await;
        let topic = if i.is_multiple_of(2) {
            ALL.to_owned()
        } else {
            format!("soak.group.{}", (i / 2) as usize % GROUPS)
        };
        match timeout(IO_TIMEOUT, http.publish(&topic, &payload)).await {
            Ok(Ok(true)) => bump(&c.published),
            Ok(Ok(false)) => bump(&c.publish_refused),
            _ => {
                bump(&c.publish_failed);
                http = HttpPublisher::new(admin);
            }
        }
        i += 1;
    }
}

/// Starts a slow consumer every `slow_every`, one at a time: it subscribes to its own topic with
/// a small receive buffer, does not read while a burst is published to it, then reads what the
/// gateway left it until the connection ends or the wait runs out.
async fn slow_consumers(s: SoakSettings, target: SoakTarget, deadline: Instant, c: Arc<Counters>) {
    if s.slow_burst == 0 {
        return;
    }
    let payload = vec![b's'; s.slow_size];
    let mut http = HttpPublisher::new(target.admin);
    let mut n = 0u64;
    loop {
        let next = Instant::now() + s.slow_every;
        if next >= deadline {
            return;
        }
        tokio::time::sleep_until(next).await;
        n += 1;
        let topic = format!("soak.slow.{n}");
        let Ok(mut client) =
            Client::open(target.client, &format!("/ws?topics={topic}"), Some(4096)).await
        else {
            continue;
        };
        let _open = OpenGuard::new(&c);
        bump(&c.slow_started);
        for _ in 0..s.slow_burst {
            match timeout(IO_TIMEOUT, http.publish(&topic, &payload)).await {
                Ok(Ok(true)) => bump(&c.published),
                Ok(Ok(false)) => bump(&c.publish_refused),
                _ => {
                    bump(&c.publish_failed);
                    http = HttpPublisher::new(target.admin);
                }
            }
        }
        let mut seen = Seen::default();
        let wait = (Instant::now() + s.slow_every).min(deadline + IO_TIMEOUT);
        match client.pump(wait, &mut seen).await {
            Ended::Time => bump(&c.slow_survived),
            Ended::Close(code) => {
                bump(&c.slow_closed);
                if code == 1008 {
                    bump(&c.slow_closed_1008);
                }
            }
            Ended::Gone => bump(&c.slow_closed),
        }
    }
}
