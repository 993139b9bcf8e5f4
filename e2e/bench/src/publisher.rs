//! Publishing at a fixed offered rate. The transport is a trait so the NATS publisher sits
//! beside the HTTP one; the rate loop does not care which it drives.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::zipf::Rng;
use crate::{BenchError, now_ns, payload};

pub mod nats;

pub use nats::NatsPublisher;

#[cfg(test)]
mod tests;

/// Messages a worker hands over between two [`Publisher::confirm`] calls. One NATS round trip
/// per 256 messages costs nothing measurable at the rates the bench offers, and bounds how
/// many messages a failure leaves unaccounted for.
pub const CONFIRM_EVERY: u64 = 256;

/// How the bench hands messages to Volley.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishVia {
    /// `POST /v1/publish/{topic}` on a gateway's admin port.
    Http,
    /// `PUB <prefix>.<topic>` straight to NATS, as any cluster publisher does.
    Nats,
}

impl PublishVia {
    pub fn name(self) -> &'static str {
        match self {
            PublishVia::Http => "http",
            PublishVia::Nats => "nats",
        }
    }
}

/// One way of handing a message to Volley.
pub trait Publisher: Send + 'static {
    /// `Ok(true)` when the system took the message for delivery (for transports that confirm
    /// in batches: handed over, pending the next [`Publisher::confirm`]), `Ok(false)` when it
    /// refused it (for HTTP: any status but 202), `Err` when the transport failed.
    fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<bool, BenchError>> + Send;

    /// Settles every message `publish` took since the last call: `Ok` when the system has them
    /// all, `Err` when that is not known, and then none of them count as accepted. Transports
    /// whose `publish` answer is already final (HTTP's 202) have nothing to settle.
    fn confirm(&mut self) -> impl Future<Output = Result<(), BenchError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// `POST /v1/publish/{topic}` over one kept-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct HttpPublisher {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl HttpPublisher {
    pub fn new(addr: SocketAddr) -> HttpPublisher {
        HttpPublisher {
            addr,
            stream: None,
            buf: Vec::with_capacity(1024),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<u16, BenchError> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(BenchError::Protocol("no connection".into()));
        };
        stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if let Some((status, head, body)) = parse_response(&self.buf)
                && self.buf.len() >= head + body
            {
                return Ok(status);
            }
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(BenchError::Protocol("publish connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Publisher for HttpPublisher {
    async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<bool, BenchError> {
        let mut request = format!(
            "POST /v1/publish/{topic} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        )
        .into_bytes();
        request.extend_from_slice(payload);
        let status = match self.exchange(&request).await {
            Ok(status) => status,
            Err(_) => {
                // The server may close an idle keep-alive connection: reconnect once.
                self.stream = None;
                self.exchange(&request).await?
            }
        };
        Ok(status == 202)
    }
}

/// (status, head length, body length) once the head is complete.
pub fn parse_response(buf: &[u8]) -> Option<(u16, usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some((status, end, body))
}

/// Which topic message `i` of a phase goes to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Topic(String),
    /// Uniformly random among these topics.
    AnyOf(Vec<String>),
}

impl Target {
    pub fn pick(&self, rng: &mut Rng) -> &str {
        match self {
            Target::Topic(t) => t,
            Target::AnyOf(ts) => ts
                .get(rng.below(ts.len() as u64) as usize)
                .map_or("", String::as_str),
        }
    }
}

/// One publishing phase.
#[derive(Debug, Clone)]
pub struct PhasePlan {
    pub phase: u32,
    /// Messages per second offered.
    pub rate: f64,
    pub duration: Duration,
    pub size: usize,
    pub target: Target,
}

impl PhasePlan {
    pub fn messages(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// When message `i` is due, from the phase start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }
}

/// What a phase's publishing achieved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishOutcome {
    pub planned: u64,
    pub accepted: u64,
    pub refused: u64,
    pub errors: u64,
    /// Planned messages never sent because the phase ran out of time (publisher fell behind).
    pub unsent: u64,
    /// Deliveries the accepted messages should produce.
    pub expected: u64,
    pub seconds: f64,
    /// Worst lateness of a send against its schedule, milliseconds.
    pub max_lag_ms: f64,
}

impl PublishOutcome {
    fn merge(&mut self, o: &PublishOutcome) {
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.errors += o.errors;
        self.unsent += o.unsent;
        self.expected += o.expected;
        self.max_lag_ms = self.max_lag_ms.max(o.max_lag_ms);
    }
}

/// Messages taken but not yet confirmed, and the deliveries they would produce.
#[derive(Debug, Default)]
struct Pending {
    messages: u64,
    expected: u64,
}

impl Pending {
    /// Confirms the pending messages: accepted (with their deliveries) or, when the transport
    /// cannot vouch for them, errors that produce no expected deliveries.
    async fn settle<P: Publisher>(&mut self, publisher: &mut P, out: &mut PublishOutcome) {
        if self.messages == 0 {
            return;
        }
        let batch = std::mem::take(self);
        match publisher.confirm().await {
            Ok(()) => {
                out.accepted += batch.messages;
                out.expected += batch.expected;
            }
            Err(_) => out.errors += batch.messages,
        }
    }
}

/// Publishes `plan` through `publishers` (each one worker taking every W-th message) and
/// returns what happened. Stops by itself one second after the planned end at the latest.
pub async fn run_phase<P: Publisher>(
    publishers: Vec<P>,
    plan: &PhasePlan,
    subscribers: Arc<HashMap<String, u64>>,
) -> (PublishOutcome, Vec<P>) {
    let start = Instant::now();
    let deadline = start + plan.duration + Duration::from_secs(1);
    let workers = publishers.len().max(1) as u64;
    let mut set = tokio::task::JoinSet::new();
    for (w, mut publisher) in publishers.into_iter().enumerate() {
        let plan = plan.clone();
        let subscribers = subscribers.clone();
        set.spawn(async move {
            let mut out = PublishOutcome::default();
            let mut pending = Pending::default();
            let mut rng = Rng::new(0x5eed ^ w as u64 ^ (u64::from(plan.phase) << 32));
            let mut i = w as u64;
            while i < plan.messages() {
                let due = start + plan.due(i);
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                if now >= deadline {
                    out.unsent += (plan.messages() - i).div_ceil(workers);
                    break;
                }
                out.max_lag_ms = out.max_lag_ms.max((now - due).as_secs_f64() * 1000.0);
                let topic = plan.target.pick(&mut rng).to_owned();
                let body = payload::build(plan.phase, now_ns(), plan.size);
                match publisher.publish(&topic, &body).await {
                    Ok(true) => {
                        pending.messages += 1;
                        pending.expected += subscribers.get(&topic).copied().unwrap_or(0);
                    }
                    Ok(false) => out.refused += 1,
                    Err(_) => out.errors += 1,
                }
                if pending.messages >= CONFIRM_EVERY {
                    pending.settle(&mut publisher, &mut out).await;
                }
                i += workers;
            }
            pending.settle(&mut publisher, &mut out).await;
            (out, publisher)
        });
    }
    let mut total = PublishOutcome {
        planned: plan.messages(),
        ..PublishOutcome::default()
    };
    let mut back = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((out, publisher)) = joined {
            total.merge(&out);
            back.push(publisher);
        }
    }
    total.seconds = start.elapsed().as_secs_f64();
    (total, back)
}
