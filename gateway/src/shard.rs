//! A connection shard: one thread, one epoll instance, one listener (SO_REUSEPORT) and a slab of
//! connections. It reads only on readiness, answers client ops, queues references to shared
//! message frames and flushes them in timed batches with one vectored write per connection.

use std::io::{self, Read};
use std::net::Shutdown;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::auth::Verifier;
use crate::conn::{Conn, Phase};
use crate::frame::{self, ClientEvent};
use crate::handshake::{self, HandshakeConfig, Parsed, RejectReason, Rejection, UpgradeRequest};
use crate::history::merge::Live;
use crate::history::{NotRecovered, ReplayDone, ReplayRequest, ShardHistory};
use crate::hub::{Command, Inbox};
use crate::message::Message;
use crate::outbox::Flushed;
use crate::pace::Pace;
use crate::protocol::{self, ClientOp, ErrorCode};
use crate::state::Shared;
use crate::topic_index::TopicIndex;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Size of the shard's read buffer, shared by all its connections.
const SCRATCH_BYTES: usize = 64 * 1024;
/// How long a closing connection may take to finish the close handshake.
const CLOSE_LINGER_MS: u64 = 2_000;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Timer sweep period in normal operation and while draining (drain closes are spread finely).
const SWEEP: Duration = Duration::from_secs(1);
const DRAIN_SWEEP: Duration = Duration::from_millis(10);
/// After the drain window, connections still not closed are dropped after this grace.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// What a shard needs to know, derived once from the gateway config.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub handshake: HandshakeConfig,
    pub handshake_timeout: Duration,
    pub flush_interval: Duration,
    pub max_pending_bytes: usize,
    pub max_message_bytes: usize,
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    /// JWT verification when auth is on; connections are anonymous otherwise.
    pub verifier: Option<Arc<Verifier>>,
    pub max_client_messages_per_second: u32,
    /// History, when configured (cluster mode only).
    pub history: Option<ShardHistory>,
}

/// Counts kept locally and added to the shared metrics once per flush pass (or per loop turn
/// when there were writes outside a pass).
#[derive(Debug, Default)]
struct LocalStats {
    frames: u64,
    bytes: u64,
    /// Vectored write calls: one per connection per pass unless a socket blocks.
    writes: u64,
    slow_closes: u64,
}

pub struct Shard {
    poll: Poll,
    listener: Option<TcpListener>,
    inbox: Inbox,
    shared: Arc<Shared>,
    config: ShardConfig,
    conns: Slab<Conn>,
    index: TopicIndex<usize>,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    actions: Vec<Action>,
    doomed: Vec<usize>,
    seq: u64,
    epoch: Instant,
    now: Instant,
    last_flush: Instant,
    /// How long after `last_flush` the next pass may start: see [`pass_gap`].
    flush_gap: Duration,
    next_sweep: Instant,
    accept_paused_until: Option<Instant>,
    drain: Option<Plan>,
    shed: Option<Plan>,
    interest: Option<InterestSink>,
    id: usize,
    stats: LocalStats,
    next_serial: u64,
}

/// Where a shard reports the first and last local subscriber of a pattern, so the control plane
/// holds a NATS subscription exactly while some connection on some shard wants it.
/// Also carries replay requests, on the same channel so that a connection's interest change
/// reaches the router before its replay request. Unbounded so a shard never blocks on it; what
/// it carries is bounded by the connections' subscriptions (one change per first and last
/// subscriber of a pattern, one replay in flight per resumed pattern per connection).
pub type InterestSink = tokio::sync::mpsc::UnboundedSender<ToRouter>;

/// What a shard tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToRouter {
    Interest(InterestChange),
    Replay(ReplayRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestChange {
    pub shard: usize,
    pub pattern: Box<str>,
    pub wanted: bool,
}

mod closing;
mod resume;
mod session;
#[cfg(test)]
mod tests;

use closing::Plan;
use session::Action;

impl Shard {
    /// A shard over `listener`; `poll` must be the one the inbox's waker was created on.
    pub fn new(
        id: usize,
        poll: Poll,
        mut listener: TcpListener,
        inbox: Inbox,
        shared: Arc<Shared>,
        config: ShardConfig,
        interest: Option<InterestSink>,
    ) -> io::Result<Shard> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        Ok(Shard {
            poll,
            listener: Some(listener),
            inbox,
            shared,
            config,
            conns: Slab::new(),
            index: TopicIndex::new(),
            scratch: vec![0; SCRATCH_BYTES],
            dirty: Vec::new(),
            actions: Vec::new(),
            doomed: Vec::new(),
            seq: 0,
            epoch: now,
            now,
            last_flush: now,
            flush_gap: Duration::ZERO,
            next_sweep: now + SWEEP,
            accept_paused_until: None,
            drain: None,
            shed: None,
            interest,
            id,
            stats: LocalStats::default(),
            next_serial: 1,
        })
    }

    /// Runs until a drain completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "epoll failed; shard stops");
                return;
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let key = t - FIRST_CONN;
                        if event.is_writable() {
                            self.on_writable(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key);
                        }
                    }
                }
            }
            self.drain_inbox();
            if let Some(until) = self.accept_paused_until
                && self.now >= until
            {
                self.accept_paused_until = None;
                self.accept();
            }
            if !self.dirty.is_empty() && self.now.duration_since(self.last_flush) >= self.flush_gap
            {
                self.flush();
            }
            if self.now >= self.next_sweep {
                self.sweep();
                if self.drain.is_some() && self.conns.is_empty() {
                    return;
                }
            }
            if self.stats.writes > 0 {
                // Writes outside a pass (101s, replies, closes) show up now, not a pass later.
                self.publish_stats();
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut deadline = self.next_sweep;
        if !self.dirty.is_empty() {
            deadline = deadline.min(self.last_flush + self.flush_gap);
        }
        if let Some(until) = self.accept_paused_until {
            deadline = deadline.min(until);
        }
        deadline.saturating_duration_since(now)
    }

    fn now_ms(&self) -> u64 {
        self.now.duration_since(self.epoch).as_millis() as u64
    }

    fn now_s(&self) -> u32 {
        self.now.duration_since(self.epoch).as_secs() as u32
    }

    // ---- accepting ----

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let Some(listener) = &self.listener else {
            return;
        };
        let deadline_ms = self.now_ms() + self.config.handshake_timeout.as_millis() as u64;
        let now_s = self.now_s();
        loop {
            match listener.accept() {
                Ok((mut socket, _peer)) => {
                    // We batch writes ourselves; Nagle would only add delay on top.
                    let _ = socket.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key() + FIRST_CONN);
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut socket, token, Interest::READABLE)
                    {
                        tracing::warn!(error = %e, "cannot register connection");
                        continue;
                    }
                    entry.insert(Conn::new(socket, deadline_ms, now_s));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_descriptors(&e) => {
                    // Keep serving the connections we have; the backlog waits for us.
                    self.shared.metrics.accept_pauses.inc();
                    self.accept_paused_until = Some(self.now + ACCEPT_PAUSE);
                    tracing::warn!(error = %e, "out of file descriptors; accepting paused");
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    // ---- reading ----

    fn on_readable(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let n = match conn.socket.read(&mut self.scratch) {
                Ok(0) => {
                    self.peer_gone(key);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.peer_gone(key);
                    return;
                }
            };
            conn.last_seen_s = self.now.duration_since(self.epoch).as_secs() as u32;
            conn.pinged = false;
            let more = match conn.phase {
                Phase::Handshake { .. } => self.on_handshake_bytes(key, n),
                Phase::Open => self.on_frame_bytes(key, n),
                // Waiting for the peer's close; what it sends now is of no interest.
                Phase::Closing { .. } => true,
            };
            // A short read drained the socket; epoll (edge-triggered) reports the next bytes.
            if !more || n < self.scratch.len() {
                return;
            }
        }
    }

    /// The peer closed or reset: nothing more can be said to it.
    fn peer_gone(&mut self, key: usize) {
        if let Some(conn) = self.conns.get(key)
            && matches!(conn.phase, Phase::Handshake { .. })
        {
            self.shared.metrics.handshake("aborted");
        }
        self.remove(key);
    }

    /// Returns whether to keep reading this connection.
    fn on_handshake_bytes(&mut self, key: usize, n: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let parsed = if conn.inbuf.is_empty() {
            handshake::parse(&self.scratch[..n], &self.config.handshake)
        } else {
            conn.inbuf.extend_from_slice(&self.scratch[..n]);
            handshake::parse(&conn.inbuf, &self.config.handshake)
        };
        match parsed {
            Ok(Parsed::Partial) => {
                if conn.inbuf.is_empty() {
                    conn.inbuf.extend_from_slice(&self.scratch[..n]);
                }
                true
            }
            Ok(Parsed::Complete { request, consumed }) => {
                // Frames pipelined right behind the request belong to the WebSocket stream.
                let tail = if conn.inbuf.is_empty() {
                    self.scratch.get(consumed..n).unwrap_or_default().to_vec()
                } else {
                    conn.inbuf.split_off(consumed.min(conn.inbuf.len()))
                };
                conn.inbuf = Vec::new();
                match self.admit(key, request) {
                    Ok(()) => {
                        if !tail.is_empty() {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.inbuf = tail;
                            }
                            self.decode_frames(key, None);
                        }
                        true
                    }
                    Err(rejection) => {
                        self.reject(key, &rejection);
                        false
                    }
                }
            }
            Err(rejection) => {
                self.reject(key, &rejection);
                false
            }
        }
    }

    // ---- fan-out ----

    fn drain_inbox(&mut self) {
        self.inbox.arm();
        while let Some(command) = self.inbox.try_next() {
            match command {
                Command::Deliver(message) => self.deliver(&message),
                Command::Drain { over } => self.start_drain(over),
                Command::Shed { count, over } => self.start_shed(count, over),
                Command::Replayed(done) => self.on_replayed(*done),
            }
        }
    }

    fn deliver(&mut self, message: &Arc<Message>) {
        self.seq += 1;
        let seq = self.seq;
        let mut overflows = Vec::new();
        let Shard {
            index,
            conns,
            dirty,
            doomed,
            stats,
            config,
            ..
        } = self;
        index.for_each_match(message.topic(), |key| {
            let Some(conn) = conns.get_mut(key) else {
                return;
            };
            if conn.stamp == seq {
                return;
            }
            conn.stamp = seq;
            let frame = message.frame(conn.format);
            // A resumed connection: held while its replay runs, dropped when replayed.
            if let Some(merge) = conn.merge.as_deref_mut()
                && merge.is_active()
            {
                match merge.on_live(message.clone(), frame.len()) {
                    Live::Deliver(_) => {}
                    Live::Held | Live::Duplicate => return,
                    Live::Overflow { abandoned, deliver } => {
                        overflows.push((key, abandoned, deliver));
                        return;
                    }
                }
            }
            if conn.outbox.pending_bytes() + frame.len() > config.max_pending_bytes {
                doomed.push(key);
                return;
            }
            conn.outbox.push(frame.clone());
            stats.frames += 1;
            mark_dirty(conn, key, dirty);
        });
        let mut doomed = std::mem::take(&mut self.doomed);
        for key in doomed.drain(..) {
            self.slow_consumer(key);
        }
        self.doomed = doomed;
        for (key, abandoned, deliver) in overflows {
            self.give_up_replays(key, abandoned, deliver, NotRecovered::Overflow);
        }
    }

    // ---- writing ----

    fn flush(&mut self) {
        let started = Instant::now();
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if !conn.write_blocked {
                self.write_conn(key);
            }
        }
        self.dirty = dirty;
        self.now = Instant::now();
        self.last_flush = self.now;
        self.flush_gap = pass_gap(self.config.flush_interval, self.now - started);
        let metrics = &self.shared.metrics;
        metrics
            .flush_duration
            .observe(self.now.duration_since(started).as_secs_f64());
        self.publish_stats();
    }

    /// Adds the locally kept counts to the shared metrics.
    fn publish_stats(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        let metrics = &self.shared.metrics;
        metrics.frames_delivered.inc_by(stats.frames);
        metrics.bytes_delivered.inc_by(stats.bytes);
        metrics.socket_writes.inc_by(stats.writes);
        metrics.slow_consumer_closes.inc_by(stats.slow_closes);
    }

    fn on_writable(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(|c| c.write_blocked) {
            self.write_conn(key);
        }
    }

    /// One vectored write of everything queued (more only if over the iovec cap).
    fn write_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.outbox.write_to(&mut conn.socket) {
            Ok(Flushed::All { bytes, calls }) => {
                self.stats.bytes += bytes as u64;
                self.stats.writes += calls as u64;
                if conn.write_blocked {
                    conn.write_blocked = false;
                    let token = Token(key + FIRST_CONN);
                    let _ = self.poll.registry().reregister(
                        &mut conn.socket,
                        token,
                        Interest::READABLE,
                    );
                }
                if let Phase::Closing {
                    deadline_ms,
                    fin_sent: false,
                } = conn.phase
                {
                    // Our last bytes are out: half-close and wait for the peer to hang up.
                    let _ = conn.socket.shutdown(Shutdown::Write);
                    conn.phase = Phase::Closing {
                        deadline_ms,
                        fin_sent: true,
                    };
                }
            }
            Ok(Flushed::Blocked { bytes, calls }) => {
                self.stats.bytes += bytes as u64;
                self.stats.writes += calls as u64;
                if bytes > 0 || !conn.write_blocked {
                    conn.stalled_since_s = self.now.duration_since(self.epoch).as_secs() as u32;
                }
                if !conn.write_blocked {
                    conn.write_blocked = true;
                    let token = Token(key + FIRST_CONN);
                    let _ = self.poll.registry().reregister(
                        &mut conn.socket,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
            }
            Err(_) => self.remove(key),
        }
    }

    // ---- timers ----

    /// The shard's one timer: handshake deadlines, close lingers, liveness pings, drain pacing.
    fn sweep(&mut self) {
        let now_ms = self.now_ms();
        let now_s = self.now_s();
        let ping_s = self.config.ping_interval.as_secs().max(1) as u32;
        let mut expired = std::mem::take(&mut self.doomed);
        let mut to_ping = Vec::new();
        let mut token_expired = Vec::new();
        let mut stalled = Vec::new();
        let mut overdue = Vec::new();
        let wall_clock = std::time::SystemTime::now();
        for (key, conn) in self.conns.iter_mut() {
            if conn.replay_deadline_s != 0
                && now_s > conn.replay_deadline_s
                && conn.merge.as_ref().is_some_and(|m| m.is_replaying())
            {
                overdue.push(key);
            }
            match conn.phase {
                Phase::Handshake { deadline_ms } if now_ms >= deadline_ms => expired.push(key),
                Phase::Closing { deadline_ms, .. } if now_ms >= deadline_ms => expired.push(key),
                Phase::Open
                    if conn
                        .identity
                        .as_ref()
                        .is_some_and(|i| i.remaining(wall_clock).is_zero()) =>
                {
                    token_expired.push(key);
                }
                Phase::Open
                    if conn.write_blocked
                        && now_s.saturating_sub(conn.stalled_since_s) > 2 * ping_s =>
                {
                    // It keeps talking but has not taken a byte for two ping intervals: what
                    // we send it only piles up. Liveness means reading too.
                    stalled.push(key);
                }
                Phase::Open => {
                    // Whole seconds truncate, so a difference of k+1 is at least k seconds of
                    // real silence: `>` never pings or drops a peer early.
                    let idle = now_s.saturating_sub(conn.last_seen_s);
                    if idle > 2 * ping_s {
                        expired.push(key);
                    } else if idle > ping_s && !conn.pinged {
                        conn.pinged = true;
                        to_ping.push(key);
                    }
                }
                _ => {}
            }
        }
        for key in expired.drain(..) {
            if let Some(conn) = self.conns.get(key)
                && matches!(conn.phase, Phase::Handshake { .. })
            {
                self.shared.metrics.handshake("timeout");
            }
            self.remove(key);
        }
        self.doomed = expired;
        for key in stalled {
            self.slow_consumer(key);
        }
        for key in token_expired {
            self.close(key, 1008, "token expired");
        }
        for key in to_ping {
            self.enqueue(key, frame::encode(OpCode::Control(Control::Ping), b""));
        }
        for key in overdue {
            let Some(merge) = self.conns.get_mut(key).and_then(|c| c.merge.as_deref_mut()) else {
                continue;
            };
            let (abandoned, deliver) = merge.abandon();
            self.give_up_replays(key, abandoned, deliver, NotRecovered::Timeout);
        }
        self.pace_closes();
        let period = if self.drain.is_some() || self.shed.is_some() {
            DRAIN_SWEEP
        } else {
            SWEEP
        };
        self.next_sweep = self.now + period;
    }
}

fn mark_dirty(conn: &mut Conn, key: usize, dirty: &mut Vec<usize>) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The pause between the end of one pass and the start of the next: the flush interval, or a
/// quarter of the pass just made when that is longer. A shard whose passes take many intervals
/// (10,000 connections × ~12 µs per `writev`) would otherwise spend ~95% of its core on
/// back-to-back passes of small batches; this caps writing at 80% of the core, leaving room
/// for reads, handshakes and other shards, and lets the batches grow. Latency moves little: a
/// message waits at most the current pass plus the gap, and the gap is a quarter of a pass.
fn pass_gap(interval: Duration, last_pass: Duration) -> Duration {
    interval.max(last_pass / 4)
}
