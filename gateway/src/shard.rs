//! A connection shard: one thread, one epoll instance, one listener (SO_REUSEPORT) and a slab of
//! connections. It reads only on readiness, answers client ops, queues references to shared
//! message frames and flushes them in timed batches with one vectored write per connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::access;
use crate::capacity::Capacity;
use crate::conn::Conn;
use crate::frame::{self, ClientEvent};
use crate::handshake::{self, HandshakeConfig, Parsed, RejectReason, Rejection, UpgradeRequest};
use crate::history::budget::IpReplayBudget;
use crate::history::{NotRecovered, ReplayDone, ReplayRequest};
use crate::hub::{self, Command, Inbox, InterestChange, InterestSink, ToRouter};
use crate::message::Message;
use crate::outbox::Flushed;
use crate::session::{Cause, Clock, Effect, Gone, Limits, Phase};
use crate::topic_index::TopicIndex;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Size of the shard's read buffer, shared by all its connections.
const SCRATCH_BYTES: usize = 64 * 1024;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Timer sweep period in normal operation and while draining (drain closes are spread finely).
const SWEEP: Duration = Duration::from_secs(1);
const DRAIN_SWEEP: Duration = Duration::from_millis(10);
/// After the drain window, connections still not closed are dropped after this grace.
const DRAIN_GRACE: Duration = Duration::from_secs(3);
/// A pass takes messages from the inbox after every this many connections written (~1.5 ms of
/// `writev` at ~12 µs each), so a message published during a long pass still reaches the
/// connections the pass has not written yet, instead of waiting for all of it and the next one.
/// An empty inbox costs one atomic store and one failed `try_recv`.
const INBOX_EVERY: usize = 128;

/// What a shard needs to know, derived once from the gateway config.
#[derive(Debug, Clone)]
pub(crate) struct ShardConfig {
    pub handshake: HandshakeConfig,
    pub handshake_timeout: Duration,
    pub flush_interval: Duration,
    pub max_message_bytes: usize,
    /// What every session on the shard is held to.
    pub limits: Limits,
    /// Cluster mode: when the router's confirmations stop holding (see `interests.rs`).
    pub confirm_epoch: Arc<interests::ConfirmEpoch>,
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

/// The IO loop around the sessions: the slab, epoll, the topic index, the timer and the flush.
/// The protocol itself lives in [`crate::session::Session`].
pub(crate) struct Shard {
    poll: Poll,
    listener: Option<TcpListener>,
    inbox: Inbox,
    capacity: Arc<Capacity>,
    config: ShardConfig,
    conns: Slab<Conn>,
    index: TopicIndex<usize>,
    scratch: Vec<u8>,
    /// Message frames delivered since the last pass, queued by connections as spans of it.
    batch: Batch,
    dirty: Vec<usize>,
    /// What the session just handled asked for; reused, applied by [`Shard::apply`].
    effects: Vec<Effect>,
    /// Inside [`Shard::apply`] (at any depth): answers to sessions wait in `inline`.
    applying: bool,
    /// Answers the shard gives a session itself while applying that session's effects (a
    /// pattern confirmed already, a replay refused here). Given once the outermost `apply` has
    /// carried out every effect: an answer given nested could close the session in the middle of
    /// its list, and the rest of the list (a `Want` after it) would then be applied for a
    /// connection that left and never withdraw (review finding 1b). Bounded by the effects of
    /// one session event.
    inline: VecDeque<Inline>,
    /// Effects of one timer sweep, applied once the sweep no longer borrows the slab.
    ticked: Vec<(usize, Effect)>,
    doomed: Vec<usize>,
    seq: u64,
    clock: Clock,
    /// When the last flush pass started: see [`next_pass`].
    last_pass: Instant,
    next_sweep: Instant,
    accept_paused_until: Option<Instant>,
    drain: Option<Plan>,
    shed: Option<Plan>,
    interest: Option<InterestSink>,
    /// Cluster mode: the patterns wanted from the router and whether each is confirmed.
    interests: Interests,
    id: usize,
    stats: LocalStats,
    /// Replays per client address (a connect-resume-close loop gets a new per-connection
    /// budget every time); see [`replays_per_ip`].
    ip_replays: IpReplayBudget,
}

/// Connections' worth of replay budget one client address gets on a shard; see
/// [`replays_per_ip`].
const ADDRESS_BUDGET_CONNECTIONS: usize = 4;

/// Replays one client address may ask a shard for per minute: four connections' budgets (each
/// twice `maxSubscriptionsPerConnection`, see `Store::with_replay_budget`), so 800 with the
/// defaults. A connect-resume-close loop from one address then gets no more than four
/// connections resuming in a loop would, while a shed that moves many clients behind one NAT
/// address (each resuming a pattern or two) still recovers: 800 single-pattern resumes per
/// shard, and `SO_REUSEPORT` spreads the address's connections over the shards.
fn replays_per_ip(config: &ShardConfig) -> usize {
    config
        .limits
        .max_subscriptions
        .saturating_mul(2 * ADDRESS_BUDGET_CONNECTIONS)
}

/// An answer the shard gives a session itself; see [`Shard::inline`].
#[derive(Debug)]
enum Inline {
    Confirm {
        key: usize,
        pattern: Box<str>,
        live: bool,
    },
    Replay {
        key: usize,
        pattern: Box<str>,
        why: NotRecovered,
    },
}

mod batch;
pub(crate) mod interests;
mod plan;
#[cfg(test)]
mod tests;

use batch::Batch;
use interests::{Interests, Wanted};

use plan::{DRAIN_REASON, Plan, SHED_REASON};

impl Shard {
    /// A shard over `listener`; `poll` must be the one the inbox's waker was created on.
    pub(crate) fn new(
        id: usize,
        poll: Poll,
        mut listener: TcpListener,
        inbox: Inbox,
        capacity: Arc<Capacity>,
        config: ShardConfig,
        interest: Option<InterestSink>,
    ) -> io::Result<Shard> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        let first_gap = config.flush_interval;
        Ok(Shard {
            poll,
            listener: Some(listener),
            inbox,
            capacity,
            conns: Slab::new(),
            index: TopicIndex::new(),
            scratch: vec![0; SCRATCH_BYTES],
            batch: Batch::default(),
            dirty: Vec::new(),
            effects: Vec::new(),
            applying: false,
            inline: VecDeque::new(),
            ticked: Vec::new(),
            doomed: Vec::new(),
            seq: 0,
            clock: Clock::new(now),
            // An idle shard writes the first message at once.
            last_pass: now.checked_sub(first_gap).unwrap_or(now),
            next_sweep: now + SWEEP,
            accept_paused_until: None,
            drain: None,
            shed: None,
            interest,
            interests: Interests::new(config.confirm_epoch.clone()),
            id,
            stats: LocalStats::default(),
            ip_replays: IpReplayBudget::new(replays_per_ip(&config)),
            config,
        })
    }

    /// Runs until a drain completes.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "epoll failed; shard stops");
                return;
            }
            self.clock = self.clock.at(Instant::now());
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
            let now = self.clock.now();
            if let Some(until) = self.accept_paused_until
                && now >= until
            {
                self.accept_paused_until = None;
                self.accept();
            }
            if !self.dirty.is_empty()
                && now >= next_pass(self.last_pass, self.config.flush_interval)
            {
                self.flush();
            }
            if self.clock.now() >= self.next_sweep {
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
            deadline = deadline.min(next_pass(self.last_pass, self.config.flush_interval));
        }
        if let Some(until) = self.accept_paused_until {
            deadline = deadline.min(until);
        }
        deadline.saturating_duration_since(now)
    }

    // ---- accepting ----

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let Some(listener) = &self.listener else {
            return;
        };
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
                    entry.insert(Conn::new(
                        socket,
                        &self.clock,
                        self.config.handshake_timeout,
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_out_of_descriptors(&e) => {
                    // Keep serving the connections we have; the backlog waits for us.
                    self.capacity.metrics.accept_pauses.inc();
                    self.accept_paused_until = Some(self.clock.now() + ACCEPT_PAUSE);
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
            conn.session.on_received(&self.clock);
            let more = match conn.session.phase() {
                Phase::Handshake { .. } => self.on_handshake_bytes(key, n),
                Phase::Open => self.decode_frames(key, Some(n)),
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
            && matches!(conn.session.phase(), Phase::Handshake { .. })
        {
            self.capacity.metrics.handshake("aborted");
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

    /// Checks an upgrade request against the gateway's state and limits and, if it passes,
    /// answers 101 and opens the session (which subscribes the URL's topics).
    fn admit(&mut self, key: usize, mut request: UpgradeRequest) -> Result<(), Rejection> {
        let limits = &self.config.limits;
        let admission = access::admit(
            std::mem::take(&mut request.topics),
            request.since.is_some(),
            request.token.as_deref(),
            limits.verifier.as_deref(),
            limits.max_subscriptions,
        )?;
        if self.capacity.is_draining() {
            return Err(Rejection::unavailable("the gateway is shutting down"));
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if self.capacity.ip_limited() {
            let ip = conn
                .socket
                .peer_addr()
                .map_err(|_| Rejection::bad_request("peer address unknown"))?
                .ip();
            if !self.capacity.try_admit_ip(ip) {
                return Err(Rejection::new(
                    RejectReason::TooManyConnections,
                    "too many connections from this address",
                ));
            }
            conn.counted_ip = Some(ip);
        }
        if !self.capacity.try_admit(self.id) {
            if let Some(ip) = conn.counted_ip.take() {
                self.capacity.release_ip(ip);
            }
            return Err(Rejection::unavailable(
                "the gateway is at its connection limit",
            ));
        }
        self.capacity.metrics.handshake("ok");
        let accept = Bytes::from(handshake::accept_response(&request));
        conn.session.outbox_mut().push(accept);
        let url_topic = admission.resumed.clone();
        conn.session.open(
            admission,
            request.format,
            &self.clock,
            limits,
            &mut self.effects,
        );
        match (request.since, url_topic) {
            (Some(since), Some(topic)) => conn.session.resume(
                &topic,
                since,
                request.epoch.take(),
                &self.clock,
                limits,
                &mut self.effects,
            ),
            _ => conn
                .session
                .announce_epoch(&self.clock, limits, &mut self.effects),
        }
        self.apply(key);
        // The 101 goes out now: the client waits for it before anything else happens.
        self.write_conn(key);
        Ok(())
    }

    fn reject(&mut self, key: usize, rejection: &Rejection) {
        self.capacity.metrics.handshake(rejection.reason().label());
        let response = Bytes::from(handshake::reject_response(rejection));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.session
                .reject(response, &self.clock, &mut self.effects);
        }
        self.apply(key);
    }

    /// Decodes client frames from the scratch buffer (`Some(n)`: the last read) or from the
    /// connection's pending bytes, handing each to the session as it comes. Returns whether to
    /// keep reading this connection.
    fn decode_frames(&mut self, key: usize, fresh: Option<usize>) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let Conn {
            inbuf,
            fragments,
            session,
            ..
        } = conn;
        let clock = &self.clock;
        let limits = &self.config.limits;
        let effects = &mut self.effects;
        let on_event = |event: ClientEvent<'_>| session.on_frame(event, clock, limits, effects);
        let max = self.config.max_message_bytes;
        let result = match fresh {
            Some(n) if inbuf.is_empty() => {
                let buf = &mut self.scratch[..n];
                let result = frame::decode(buf, fragments, max, on_event);
                if let Ok(consumed) = result
                    && consumed < n
                {
                    *inbuf = buf[consumed..].to_vec();
                }
                result
            }
            _ => {
                if let Some(n) = fresh {
                    inbuf.extend_from_slice(&self.scratch[..n]);
                }
                let result = frame::decode(inbuf, fragments, max, on_event);
                if let Ok(consumed) = result {
                    conn.keep_tail_of_inbuf(consumed);
                }
                result
            }
        };
        if let Err(violation) = result
            && let Some(conn) = self.conns.get_mut(key)
        {
            conn.session
                .on_violation(&violation, &self.clock, &mut self.effects);
        }
        self.apply(key);
        self.conns.get(key).is_some_and(Conn::is_open)
    }

    // ---- effects ----

    /// Carries out what the session of `key` asked for (in `self.effects`).
    fn apply(&mut self, key: usize) {
        let outermost = !std::mem::replace(&mut self.applying, true);
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                // Cluster mode: interest was raised by `Want` (see `interests.rs`); the index
                // only says who is live.
                Effect::Subscribe(pattern) => {
                    // Never for a connection that is gone or closing: nothing would remove the
                    // entry, and the next connection given its slab key would get the pattern's
                    // messages (review finding 1). The session does not ask for this; this is
                    // the shard's own guard.
                    let Some(conn) = self.conns.get_mut(key).filter(|c| c.is_open()) else {
                        continue;
                    };
                    conn.indexed += 1;
                    self.capacity.count_subscriptions(1);
                    self.index.insert(&pattern, key);
                }
                Effect::Unsubscribe(pattern) => {
                    // Counted down only for what was indexed (a `Subscribe` skipped above).
                    if let Some(conn) = self.conns.get_mut(key)
                        && conn.indexed > 0
                    {
                        conn.indexed -= 1;
                        self.capacity.count_subscriptions(-1);
                    }
                    self.index.remove(&pattern, key);
                    // Every live holder counts (see `interests.rs`), not only the index's last.
                    if self.interest.is_some() && self.interests.release(&pattern) {
                        self.report_interest(pattern, false, 0);
                    }
                }
                Effect::Want(pattern) => self.want(key, pattern),
                Effect::Withdraw(pattern) => {
                    if self.interests.withdraw(&pattern, key) {
                        self.report_interest(pattern, false, 0);
                    }
                }
                Effect::Left => {
                    if let Some(ip) = self.conns.get_mut(key).and_then(|c| c.counted_ip.take()) {
                        self.capacity.release_ip(ip);
                    }
                    self.capacity.release(self.id);
                }
                Effect::Queued => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        mark_dirty(conn, key, &mut self.dirty);
                    }
                }
                Effect::Closing(cause) => {
                    match cause {
                        Cause::SlowConsumer => self.stats.slow_closes += 1,
                        other => self.capacity.metrics.session_closed(other),
                    }
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.inbuf = Vec::new();
                        if !conn.session.write_blocked() {
                            self.write_conn(key);
                        }
                    }
                }
                Effect::Drop(gone) => {
                    if gone == Gone::HandshakeTimeout {
                        self.capacity.metrics.handshake("timeout");
                    }
                    self.remove(key);
                }
                Effect::Replay(ask) => self.request_replay(key, *ask),
                Effect::Recovery(result) => self.capacity.metrics.recovery(result),
            }
        }
        // Keep the larger buffer: a nested apply (a failed write removing the connection) may
        // have put its own back in the meantime.
        if effects.capacity() > self.effects.capacity() {
            self.effects = effects;
        }
        if outermost {
            // Each answer applies its session's effects (nested: `applying` stays set, so what
            // those give inline is queued here too and answered in turn).
            while let Some(answer) = self.inline.pop_front() {
                match answer {
                    Inline::Confirm { key, pattern, live } => {
                        self.confirm_conn_now(key, &pattern, live);
                    }
                    Inline::Replay { key, pattern, why } => {
                        self.answer_replay_now(key, &pattern, why);
                    }
                }
            }
            self.applying = false;
        }
    }

    /// Tells the router; false when it cannot be told (standalone, or the router is gone as
    /// the gateway shuts down).
    fn report_interest(&self, pattern: Box<str>, wanted: bool, ticket: u64) -> bool {
        self.interest.as_ref().is_some_and(|sink| {
            sink.send(ToRouter::Interest(InterestChange {
                shard: self.id,
                pattern,
                wanted,
                ticket,
            }))
            .is_ok()
        })
    }

    /// Connection `key` waits for `pattern` to be live: the first on the shard asks the router,
    /// later ones share that ask, and once confirmed a connection is answered at once. Runs
    /// inside [`Shard::apply`]: an answer given here waits in [`Shard::inline`] until the rest
    /// of the session's effects are applied.
    fn want(&mut self, key: usize, pattern: Box<str>) {
        match self.interests.want(&pattern, key) {
            Wanted::Wait => {}
            Wanted::Ready => self.confirm_conn(key, &pattern, true),
            Wanted::Ask(ticket) => {
                if !self.report_interest(pattern.clone(), true, ticket) {
                    self.on_confirmed(&pattern, ticket, false);
                }
            }
        }
    }

    /// The router answered the shard's ask `ticket` for `pattern`.
    fn on_confirmed(&mut self, pattern: &str, ticket: u64, live: bool) {
        let answered = self.interests.answer(pattern, ticket, live);
        for key in answered.keys {
            self.confirm_conn(key, pattern, live);
        }
        if answered.last {
            self.report_interest(pattern.into(), false, 0);
        }
    }

    /// Tells the session of `key` whether `pattern` is live, and applies what it asks; inside
    /// `apply`, once that is done (see [`Shard::inline`]).
    fn confirm_conn(&mut self, key: usize, pattern: &str, live: bool) {
        if self.applying {
            let pattern = pattern.into();
            self.inline
                .push_back(Inline::Confirm { key, pattern, live });
        } else {
            self.confirm_conn_now(key, pattern, live);
        }
    }

    fn confirm_conn_now(&mut self, key: usize, pattern: &str, live: bool) {
        if let Some(conn) = self.conns.get_mut(key) {
            let mut effects = Vec::new();
            let limits = &self.config.limits;
            conn.session
                .on_confirmed(pattern, live, &self.clock, limits, &mut effects);
            self.effects.extend(effects);
            self.apply(key);
        }
    }

    /// Sends a session's replay request to the control plane. It follows the session's
    /// interest change on the same channel, so the live consumer exists before the fetch. A
    /// request that cannot be sent (no cluster, or the router is gone at shutdown) is answered
    /// here: unavailable.
    fn request_replay(&mut self, key: usize, ask: crate::session::ReplayAsk) {
        let ip = self.conns.get(key).and_then(|c| {
            c.counted_ip
                .or_else(|| c.socket.peer_addr().ok().map(|a| a.ip()))
        });
        if let Some(ip) = ip
            && !self.ip_replays.take(ip, self.clock.now())
        {
            // Answered here, without a request: this address's budget is spent.
            self.answer_replay_here(key, &ask.pattern, NotRecovered::Limit);
            return;
        }
        let request = ReplayRequest {
            shard: self.id,
            key,
            serial: ask.ticket,
            pattern: ask.pattern,
            since: ask.since,
            epoch: ask.epoch,
        };
        let pattern = request.pattern.clone();
        let sent = (self.interest.as_ref())
            .is_some_and(|sink| sink.send(ToRouter::Replay(request)).is_ok());
        if !sent {
            self.answer_replay_here(key, &pattern, NotRecovered::Unavailable);
        }
    }

    /// A replay the shard does not ask for ends `recovered:false` with `why` (once the effects
    /// being applied are carried out: see [`Shard::inline`]).
    fn answer_replay_here(&mut self, key: usize, pattern: &str, why: NotRecovered) {
        if self.applying {
            let pattern = pattern.into();
            self.inline.push_back(Inline::Replay { key, pattern, why });
        } else {
            self.answer_replay_now(key, pattern, why);
        }
    }

    fn answer_replay_now(&mut self, key: usize, pattern: &str, why: NotRecovered) {
        if let Some(conn) = self.conns.get_mut(key) {
            let mut effects = Vec::new();
            conn.session.on_replay(
                pattern,
                None,
                Err(why),
                &self.clock,
                &self.config.limits,
                &mut effects,
            );
            // `self.effects` may belong to an `apply` further up: hand over only these.
            self.effects.extend(effects);
            self.apply(key);
        }
    }

    /// The control plane answered a replay request.
    fn on_replayed(&mut self, done: ReplayDone) {
        let ReplayDone {
            key,
            serial,
            pattern,
            epoch,
            outcome,
        } = done;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.session.replay_ticket() != Some(serial) {
            return;
        }
        conn.session.on_replay(
            &pattern,
            epoch.as_deref(),
            outcome,
            &self.clock,
            &self.config.limits,
            &mut self.effects,
        );
        self.apply(key);
    }

    /// Drops a connection at once (after its session gave back what it held).
    fn remove(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let (Some(ticket), Some(sink)) = (conn.session.pending_replay_ticket(), &self.interest) {
            // A replay still fetched for it can stop. (Only then: each of these costs the
            // router a walk of what it holds, and a drain removes every connection at once.)
            let _ = sink.send(ToRouter::ReplayGone(ticket));
        }
        conn.session.leave(&mut self.effects);
        self.apply(key);
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.socket);
            if conn.indexed != 0 {
                // Cannot happen (`leave` unsubscribes all that was indexed); should it, the
                // slab reuses `key` for the next connection, which must not inherit entries.
                debug_assert_eq!(
                    conn.indexed, 0,
                    "index entries left for a removed connection"
                );
                self.unindex(key, conn.indexed);
            }
        }
    }

    /// Removes every index entry of `key` (a walk of all patterns: only on a broken invariant).
    fn unindex(&mut self, key: usize, indexed: u32) {
        tracing::error!(
            key,
            indexed,
            "index entries left for a removed connection; removed"
        );
        let patterns: Vec<Box<str>> = self.index.patterns().map(Into::into).collect();
        for pattern in patterns {
            self.index.remove(&pattern, key);
        }
        self.capacity.count_subscriptions(-(indexed as isize));
    }

    /// Starts the close handshake of `key`'s session.
    fn close(&mut self, key: usize, code: u16, reason: &str, cause: Cause) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.session
                .close(code, reason, cause, &self.clock, &mut self.effects);
            self.apply(key);
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
                Command::Confirmed {
                    pattern,
                    ticket,
                    live,
                } => self.on_confirmed(&pattern, ticket, live),
                Command::Lost => self.on_lost(),
            }
        }
    }

    /// The hub dropped messages with a stream sequence for this shard (see [`hub::Lost`]).
    fn on_lost(&mut self) {
        let lost = self.inbox.take_lost();
        let open = self.conns.iter().filter(|(_, c)| c.is_open());
        for key in lost.affected(&self.index, open.map(|(k, _)| k)) {
            self.close(key, hub::LOST_CODE, hub::LOST_REASON, Cause::Planned);
        }
    }

    fn deliver(&mut self, message: &Arc<Message>) {
        self.seq += 1;
        let seq = self.seq;
        let mut resuming = Vec::new();
        let Shard {
            index,
            conns,
            dirty,
            doomed,
            stats,
            config,
            batch,
            ..
        } = self;
        let mut spans: [Option<(u64, u64)>; 2] = [None, None];
        index.for_each_match(message.topic(), |key| {
            let Some(conn) = conns.get_mut(key) else {
                return;
            };
            if conn.stamp == seq {
                return;
            }
            conn.stamp = seq;
            if conn.session.is_resuming() {
                // Held, filtered or queued by its merge, once the walk is done.
                resuming.push(key);
                return;
            }
            let format = conn.session.format();
            let queued = if conn.session.write_blocked() {
                // A connection that cannot write now holds the message's own frame (shared by
                // every such recipient), never a slice that keeps a whole stream segment alive:
                // what it holds stays what `maxPendingBytes` charges it.
                conn.session.offer(message.frame(format), &config.limits)
            } else {
                // Each format's frame is appended once to the shard's stream, at the first
                // recipient that reads it.
                let (start, end) = *spans[batch::slot(format)]
                    .get_or_insert_with(|| batch.append(format, message.frame(format)));
                conn.session.offer_span(start, end, &config.limits)
            };
            if !queued {
                doomed.push(key);
                return;
            }
            stats.frames += 1;
            mark_dirty(conn, key, dirty);
        });
        for key in resuming {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let limits = &self.config.limits;
            if conn
                .session
                .offer_message(message, &self.clock, limits, &mut self.effects)
            {
                mark_dirty(conn, key, &mut self.dirty);
            } else {
                self.doomed.push(key);
            }
            self.apply(key);
        }
        let mut doomed = std::mem::take(&mut self.doomed);
        for key in doomed.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.session.slow_consumer(&self.clock, &mut self.effects);
                self.apply(key);
            }
        }
        self.doomed = doomed;
    }

    // ---- writing ----

    fn flush(&mut self) {
        let started = Instant::now();
        self.last_pass = started;
        // Every span handed out so far belongs to a connection listed here, and the pass
        // writes or copies out each listed connection's spans: after it, no span reaches before
        // this mark. (Connections listed anew during the pass get spans after it.)
        let mark = self.batch.mark();
        let mut dirty = std::mem::take(&mut self.dirty);
        for (i, key) in dirty.drain(..).enumerate() {
            if i % INBOX_EVERY == INBOX_EVERY - 1 {
                // Connections still listed here (dirty) get a message delivered now in this
                // pass; those already written are listed anew for the next one.
                self.drain_inbox();
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            // A write-blocked connection holds no span (it is given frames: see `deliver`); it
            // is written when its socket has room.
            if !conn.session.write_blocked() {
                self.write_conn(key);
            }
        }
        self.batch.release_before(mark);
        // Reuse the emptied list's allocation, unless messages taken during the pass already
        // listed connections for the next one (their `dirty` flag is set: losing the list would
        // leave them unwritten for good).
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        let now = Instant::now();
        self.clock = self.clock.at(now);
        let metrics = &self.capacity.metrics;
        metrics
            .flush_duration
            .observe(now.duration_since(started).as_secs_f64());
        self.publish_stats();
    }

    /// Adds the locally kept counts to the shared metrics.
    fn publish_stats(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        let metrics = &self.capacity.metrics;
        metrics.frames_delivered.inc_by(stats.frames);
        metrics.bytes_delivered.inc_by(stats.bytes);
        metrics.socket_writes.inc_by(stats.writes);
        metrics.slow_consumer_closes.inc_by(stats.slow_closes);
    }

    fn on_writable(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.session.write_blocked())
        {
            self.write_conn(key);
        }
    }

    /// Turns a connection's queued spans into copies of their bytes it holds itself.
    fn resolve_spans(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.session.outbox().has_spans() {
            return;
        }
        let format = conn.session.format();
        let batch = &self.batch;
        conn.session
            .outbox_mut()
            .resolve_spans(|start, end| batch.resolve(format, start, end));
    }

    /// One write of everything queued (more only if over the iovec cap).
    fn write_conn(&mut self, key: usize) {
        let Some(was_blocked) = self.conns.get(key).map(|c| c.session.write_blocked()) else {
            return;
        };
        let flushed = match self.write_lone_span(key) {
            Ok(Some(flushed)) => flushed,
            Ok(None) => {
                // Only a connection that was not blocked can hold spans (see `deliver`): a
                // blocked one's queue may be long, and is not scanned for them.
                if !was_blocked {
                    self.resolve_spans(key);
                }
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                match conn.session.outbox_mut().write_to(&mut conn.socket) {
                    Ok(flushed) => flushed,
                    Err(_) => {
                        self.remove(key);
                        return;
                    }
                }
            }
            Err(_) => {
                self.remove(key);
                return;
            }
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (Flushed::All { bytes, calls } | Flushed::Blocked { bytes, calls }) = flushed;
        self.stats.bytes += bytes as u64;
        self.stats.writes += calls as u64;
        let written = conn.session.on_written(flushed, &self.clock);
        if written.blocked_changed {
            let interest = if conn.session.write_blocked() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(key + FIRST_CONN);
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.socket, token, interest);
        }
        if written.half_close {
            let _ = conn.socket.shutdown(Shutdown::Write);
        }
    }

    /// Writes a connection whose whole queue is one span (what a pass usually finds: every
    /// message since its last write, merged) straight from the shard's stream with one `send`:
    /// no copy, no handle, no queue entry replaced. `Ok(None)`: the queue is anything else; the
    /// caller writes it the general way. What a short write leaves is copied into bytes the
    /// connection holds, so the stream may be released after the pass.
    fn write_lone_span(&mut self, key: usize) -> io::Result<Option<Flushed>> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(None);
        };
        let Some((start, end)) = conn.session.outbox().lone_span() else {
            return Ok(None);
        };
        let format = conn.session.format();
        let Some(bytes) = self.batch.contiguous(format, start, end) else {
            return Ok(None);
        };
        let wanted = bytes.len();
        let sent = loop {
            match conn.socket.write(bytes) {
                Ok(0) if wanted > 0 => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if sent == wanted {
            conn.session.outbox_mut().lone_span_written();
            return Ok(Some(Flushed::All {
                bytes: sent,
                calls: 1,
            }));
        }
        // The socket buffer is full: the connection keeps a copy of what did not go out.
        let rest = Bytes::copy_from_slice(bytes.get(sent..).unwrap_or_default());
        conn.session
            .outbox_mut()
            .lone_span_partly_written(sent, rest);
        Ok(Some(Flushed::Blocked {
            bytes: sent,
            calls: 1,
        }))
    }

    // ---- timers ----

    /// The shard's one timer: every session's tick (handshake deadlines, close lingers, token
    /// expiry, liveness pings), then drain pacing.
    fn sweep(&mut self) {
        let wall = SystemTime::now();
        let mut ticked = std::mem::take(&mut self.ticked);
        for (key, conn) in self.conns.iter_mut() {
            conn.session
                .on_tick(&self.clock, wall, &self.config.limits, &mut self.effects);
            ticked.extend(self.effects.drain(..).map(|e| (key, e)));
        }
        for (key, effect) in ticked.drain(..) {
            self.effects.push(effect);
            self.apply(key);
        }
        self.ticked = ticked;
        self.pace_closes();
        let period = if self.drain.is_some() || self.shed.is_some() {
            DRAIN_SWEEP
        } else {
            SWEEP
        };
        self.next_sweep = self.clock.now() + period;
    }

    // ---- drain and shed ----

    fn start_drain(&mut self, over: Duration) {
        if self.drain.is_some() {
            return;
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        self.shed = None;
        self.drain = Some(self.plan(usize::MAX, over, 1001, DRAIN_REASON));
        // Handshakes in flight will not complete into a draining gateway.
        let pending: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.session.phase(), Phase::Handshake { .. }))
            .map(|(k, _)| k)
            .collect();
        for key in pending {
            self.remove(key);
        }
        self.next_sweep = self.clock.now();
    }

    fn start_shed(&mut self, count: usize, over: Duration) {
        if self.drain.is_some() || count == 0 {
            return;
        }
        self.shed = Some(self.plan(count, over, 1012, SHED_REASON));
        self.next_sweep = self.clock.now();
    }

    /// A plan over at most `count` of the open connections.
    fn plan(&self, count: usize, over: Duration, code: u16, reason: &'static str) -> Plan {
        let open = self.conns.iter().filter(|(_, c)| c.is_open()).count();
        Plan::new(self.clock.now(), over, count.min(open), code, reason)
    }

    /// Closes what the drain and shed plans have due by now.
    fn pace_closes(&mut self) {
        let now = self.clock.now();
        if let Some(drain) = &self.drain
            && drain.expired(now, DRAIN_GRACE)
        {
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.remove(key);
            }
            return;
        }
        if let Some((due, code, reason)) = plan::take_due(&mut self.drain, now) {
            self.close_some(due, code, reason);
        }
        if let Some((due, code, reason)) = plan::take_due(&mut self.shed, now) {
            self.close_some(due, code, reason);
        }
        if self.shed.as_ref().is_some_and(Plan::is_done) {
            self.shed = None;
        }
    }

    fn close_some(&mut self, count: usize, code: u16, reason: &'static str) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(k, _)| k)
            .take(count)
            .collect();
        for key in keys {
            self.close(key, code, reason, Cause::Planned);
        }
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

/// When the pass after one that started at `last` may start: one flush interval after that
/// start, so a pass longer than the interval is followed by the next as soon as the loop has
/// read what came in meanwhile (sockets, inbox). An earlier rule paused a quarter of a long pass
/// after it ended, to let batches grow; measured against the limit reference (BENCHMARKS.md,
/// "Latency at the limit") that pause was where Volley's extra tail latency came from. It saved
/// some CPU at mid rates (fewer, larger batches), which the reference, on this same rule, spends
/// too; latency is not traded back for it. A message now waits at most the rest of the current
/// pass plus its own, never a pause on top.
fn next_pass(last: Instant, interval: Duration) -> Instant {
    last + interval
}
