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

use crate::auth::{self, Identity, Verifier};
use crate::conn::{Conn, Phase};
use crate::frame::{self, ClientEvent};
use crate::handshake::{self, HandshakeConfig, Parsed, RejectReason, Rejection, UpgradeRequest};
use crate::hub::{Command, Inbox};
use crate::message::Message;
use crate::outbox::Flushed;
use crate::pace::Pace;
use crate::protocol::{self, ClientOp, ErrorCode};
use crate::state::Shared;
use crate::topic;
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
}

/// What one client frame asked for; collected while the read buffer is borrowed, applied after.
#[derive(Debug)]
enum Action {
    Op(Result<ClientOp, String>),
    Binary,
    Ping(Bytes),
    Close(Option<u16>),
}

/// Counts kept locally and added to the shared metrics once per flush pass.
#[derive(Debug, Default)]
struct LocalStats {
    frames: u64,
    bytes: u64,
    slow_closes: u64,
}

/// Closing connections on purpose, paced over a window: a drain (all, 1001, then the shard exits)
/// or a shed (some, 1012, for rebalancing).
struct Plan {
    pace: Pace,
    done: usize,
    code: u16,
    reason: &'static str,
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
    next_sweep: Instant,
    accept_paused_until: Option<Instant>,
    drain: Option<Plan>,
    shed: Option<Plan>,
    interest: Option<InterestSink>,
    id: usize,
    stats: LocalStats,
}

/// Where a shard reports the first and last local subscriber of a pattern, so the control plane
/// holds a NATS subscription exactly while some connection on some shard wants it.
pub type InterestSink = tokio::sync::mpsc::UnboundedSender<InterestChange>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterestChange {
    pub shard: usize,
    pub pattern: Box<str>,
    pub wanted: bool,
}

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
            next_sweep: now + SWEEP,
            accept_paused_until: None,
            drain: None,
            shed: None,
            interest,
            id,
            stats: LocalStats::default(),
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
            if !self.dirty.is_empty()
                && self.now.duration_since(self.last_flush) >= self.config.flush_interval
            {
                self.flush();
            }
            if self.now >= self.next_sweep {
                self.sweep();
                if self.drain.is_some() && self.conns.is_empty() {
                    return;
                }
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut deadline = self.next_sweep;
        if !self.dirty.is_empty() {
            deadline = deadline.min(self.last_flush + self.config.flush_interval);
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

    /// Checks an upgrade request against the gateway's state and limits and, if it passes,
    /// answers 101 and subscribes the URL's topics.
    fn admit(&mut self, key: usize, request: UpgradeRequest) -> Result<(), Rejection> {
        if request.topics.len() > self.config.max_subscriptions {
            return Err(Rejection::bad_request(format!(
                "at most {} topics per connection",
                self.config.max_subscriptions
            )));
        }
        for t in &request.topics {
            topic::validate_pattern(t)
                .map_err(|e| Rejection::bad_request(format!("topic `{t}`: {e}")))?;
        }
        let identity = match &self.config.verifier {
            Some(verifier) => {
                let token = request.token.as_deref().ok_or_else(|| {
                    Rejection::unauthorized(
                        "a token is required (?token= or Authorization: Bearer)",
                    )
                })?;
                let identity = verifier
                    .verify(token)
                    .map_err(|e| Rejection::unauthorized(e.to_string()))?;
                Some(Box::new(identity))
            }
            None => None,
        };
        if self.shared.is_draining() {
            return Err(Rejection::unavailable("the gateway is shutting down"));
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if self.shared.ip_limited() {
            let ip = conn
                .socket
                .peer_addr()
                .map_err(|_| Rejection::bad_request("peer address unknown"))?
                .ip();
            if !self.shared.try_admit_ip(ip) {
                return Err(Rejection::new(
                    RejectReason::TooManyConnections,
                    "too many connections from this address",
                ));
            }
            conn.counted_ip = Some(ip);
        }
        if !self.shared.try_admit(self.id) {
            if let Some(ip) = conn.counted_ip.take() {
                self.shared.release_ip(ip);
            }
            return Err(Rejection::unavailable(
                "the gateway is at its connection limit",
            ));
        }
        self.shared.metrics.handshake("ok");
        conn.phase = Phase::Open;
        conn.format = request.format;
        conn.outbox
            .push(Bytes::from(handshake::accept_response(&request)));
        let mut topics = request.topics;
        // A user's own topic comes with the token, beyond the per-connection limit.
        if let Some(own) = identity.as_ref().and_then(|i| i.user_topic()) {
            topics.push(own);
        }
        topics.sort_unstable();
        topics.dedup();
        let (allowed, forbidden): (Vec<String>, Vec<String>) = topics
            .into_iter()
            .partition(|t| may_subscribe(identity.as_deref(), t));
        conn.identity = identity;
        conn.subs = allowed.iter().map(|t| t.as_str().into()).collect();
        for t in &allowed {
            self.index_insert(t, key);
        }
        for t in &forbidden {
            let reply = protocol::error(
                ErrorCode::Forbidden,
                Some(t),
                "not allowed for this connection",
            );
            self.reply(key, reply);
        }
        // The 101 goes out now: the client waits for it before anything else happens.
        self.write_conn(key);
        Ok(())
    }

    fn reject(&mut self, key: usize, rejection: &Rejection) {
        self.shared.metrics.handshake(rejection.reason().label());
        let response = Bytes::from(handshake::reject_response(rejection));
        self.start_closing(key, response);
    }

    /// Returns whether to keep reading this connection.
    fn on_frame_bytes(&mut self, key: usize, n: usize) -> bool {
        self.decode_frames(key, Some(n))
    }

    /// Decodes client frames from the scratch buffer (`Some(n)`: the last read) or from the
    /// connection's pending bytes, then applies what they asked for.
    fn decode_frames(&mut self, key: usize, fresh: Option<usize>) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let actions = &mut self.actions;
        let on_event = |event: ClientEvent<'_>| {
            let action = match event {
                ClientEvent::Text(text) => {
                    Action::Op(protocol::parse_op(text).map_err(|e| e.to_string()))
                }
                ClientEvent::Binary(_) => Action::Binary,
                ClientEvent::Ping(payload) => Action::Ping(Bytes::copy_from_slice(payload)),
                ClientEvent::Pong(_) => return ControlFlow::Continue(()),
                ClientEvent::Close { code, .. } => {
                    actions.push(Action::Close(code));
                    return ControlFlow::Break(());
                }
            };
            actions.push(action);
            ControlFlow::Continue(())
        };
        let max = self.config.max_message_bytes;
        let result = match fresh {
            Some(n) if conn.inbuf.is_empty() => {
                let buf = &mut self.scratch[..n];
                let result = frame::decode(buf, &mut conn.fragments, max, on_event);
                if let Ok(consumed) = result
                    && consumed < n
                {
                    conn.inbuf = buf[consumed..].to_vec();
                }
                result.map(|_| ())
            }
            _ => {
                if let Some(n) = fresh {
                    conn.inbuf.extend_from_slice(&self.scratch[..n]);
                }
                let result = frame::decode(&mut conn.inbuf, &mut conn.fragments, max, on_event);
                if let Ok(consumed) = result {
                    conn.keep_tail_of_inbuf(consumed);
                }
                result.map(|_| ())
            }
        };
        self.apply_actions(key);
        match result {
            Ok(()) => self.conns.get(key).is_some_and(Conn::is_open),
            Err(violation) => {
                self.shared
                    .metrics
                    .protocol_closes
                    .get_or_create(&crate::metrics::ReasonLabel {
                        reason: violation.label(),
                    })
                    .inc();
                self.close(key, violation.close_code(), violation.reason());
                false
            }
        }
    }

    fn apply_actions(&mut self, key: usize) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            if !self.conns.get(key).is_some_and(Conn::is_open) {
                break;
            }
            if matches!(action, Action::Op(_) | Action::Binary) {
                match self.rate(key) {
                    Rate::Allow => {}
                    Rate::Deny { first } => {
                        if first {
                            let limit = self.config.max_client_messages_per_second;
                            let message = format!("over {limit} messages per second; slow down");
                            self.reply(key, protocol::error(ErrorCode::Limit, None, &message));
                        }
                        continue;
                    }
                    Rate::Close => {
                        self.close(key, 1008, "message rate limit");
                        break;
                    }
                }
            }
            match action {
                Action::Op(Ok(ClientOp::Sub(topics))) => self.subscribe(key, topics),
                Action::Op(Ok(ClientOp::Unsub(topics))) => self.unsubscribe(key, topics),
                Action::Op(Ok(ClientOp::Ping)) => self.reply(key, protocol::pong()),
                Action::Op(Ok(ClientOp::Refresh(token))) => self.refresh(key, &token),
                Action::Op(Err(message)) => {
                    self.reply(key, protocol::error(ErrorCode::BadRequest, None, &message))
                }
                Action::Binary => self.reply(
                    key,
                    protocol::error(
                        ErrorCode::BadRequest,
                        None,
                        "binary messages are not part of volley.v1",
                    ),
                ),
                Action::Ping(payload) => {
                    self.enqueue(key, frame::encode(OpCode::Control(Control::Pong), &payload));
                }
                Action::Close(code) => {
                    // Echo the peer's code as RFC 6455 asks; 1005 (no code) is answered with 1000.
                    self.close(key, code.unwrap_or(1000), "");
                }
            }
        }
        self.actions = actions;
    }

    /// Counts one client message against the per-connection rate limit.
    fn rate(&mut self, key: usize) -> Rate {
        let now_s = self.now_s();
        let limit = self.config.max_client_messages_per_second;
        let Some(conn) = self.conns.get_mut(key) else {
            return Rate::Allow;
        };
        if conn.rate_window_s != now_s {
            let went_over = u32::from(conn.rate_count) > limit;
            let adjacent = now_s == conn.rate_window_s.wrapping_add(1);
            conn.rate_strikes = if went_over && adjacent {
                conn.rate_strikes.saturating_add(1)
            } else {
                0
            };
            conn.rate_window_s = now_s;
            conn.rate_count = 0;
        }
        conn.rate_count = conn.rate_count.saturating_add(1);
        let count = u32::from(conn.rate_count);
        if count <= limit {
            Rate::Allow
        } else if conn.rate_strikes >= SUSTAINED_RATE_WINDOWS {
            Rate::Close
        } else {
            Rate::Deny {
                first: count == limit + 1,
            }
        }
    }

    /// `{"op":"refresh","token":..}`: a newer token for the same user extends the connection.
    fn refresh(&mut self, key: usize, token: &str) {
        let Some(verifier) = self.config.verifier.clone() else {
            let reply = protocol::error(
                ErrorCode::BadRequest,
                None,
                "authentication is not enabled on this gateway",
            );
            return self.reply(key, reply);
        };
        let reply = match (verifier.verify(token), self.conns.get_mut(key)) {
            (Ok(fresh), Some(conn)) => {
                let same_user = conn.identity.as_ref().map(|i| &i.user) == Some(&fresh.user);
                if same_user {
                    let expires_at = fresh.expires_at;
                    conn.identity = Some(Box::new(fresh));
                    protocol::refreshed(expires_at)
                } else {
                    protocol::error(ErrorCode::Forbidden, None, "the token is for another user")
                }
            }
            (Err(e), _) => protocol::error(ErrorCode::BadRequest, None, &e.to_string()),
            (Ok(_), None) => return,
        };
        self.reply(key, reply);
    }

    fn subscribe(&mut self, key: usize, topics: Vec<String>) {
        let mut accepted: Vec<String> = Vec::new();
        for t in topics {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Err(e) = topic::validate_pattern(&t) {
                let reply =
                    protocol::error(ErrorCode::for_topic_error(&e), Some(&t), &e.to_string());
                self.reply(key, reply);
                continue;
            }
            if conn.subs.iter().any(|s| **s == *t) {
                accepted.push(t);
                continue;
            }
            if !may_subscribe(conn.identity.as_deref(), &t) {
                let reply = protocol::error(
                    ErrorCode::Forbidden,
                    Some(&t),
                    "not allowed for this connection",
                );
                self.reply(key, reply);
                continue;
            }
            if conn.subs.len() >= self.config.max_subscriptions {
                let message = format!(
                    "at most {} subscriptions per connection",
                    self.config.max_subscriptions
                );
                self.reply(key, protocol::error(ErrorCode::Limit, Some(&t), &message));
                continue;
            }
            conn.subs.push(t.as_str().into());
            self.index_insert(&t, key);
            accepted.push(t);
        }
        if !accepted.is_empty() {
            let names: Vec<&str> = accepted.iter().map(String::as_str).collect();
            self.reply(key, protocol::subscribed(&names));
        }
    }

    fn unsubscribe(&mut self, key: usize, topics: Vec<String>) {
        for t in &topics {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Some(i) = conn.subs.iter().position(|s| **s == **t) {
                conn.subs.swap_remove(i);
                self.index_remove(t, key);
            }
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.reply(key, protocol::unsubscribed(&names));
    }

    fn index_insert(&mut self, pattern: &str, key: usize) {
        self.shared.count_subscriptions(1);
        if self.index.insert(pattern, key) {
            self.report_interest(pattern, true);
        }
    }

    fn index_remove(&mut self, pattern: &str, key: usize) {
        self.shared.count_subscriptions(-1);
        if self.index.remove(pattern, key) {
            self.report_interest(pattern, false);
        }
    }

    fn report_interest(&self, pattern: &str, wanted: bool) {
        if let Some(sink) = &self.interest {
            // The receiver is gone only when the gateway is shutting down.
            let _ = sink.send(InterestChange {
                shard: self.id,
                pattern: pattern.into(),
                wanted,
            });
        }
    }

    fn reply(&mut self, key: usize, text: String) {
        self.enqueue(
            key,
            frame::encode(OpCode::Data(Data::Text), text.as_bytes()),
        );
    }

    /// Queues a control-path frame (reply, pong, ping). These are small and rare, so they are not
    /// held to the slow-consumer bound: a client that does not read gets caught by its messages.
    fn enqueue(&mut self, key: usize, frame: Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outbox.push(frame);
        mark_dirty(conn, key, &mut self.dirty);
    }

    // ---- fan-out ----

    fn drain_inbox(&mut self) {
        self.inbox.arm();
        while let Some(command) = self.inbox.try_next() {
            match command {
                Command::Deliver(message) => self.deliver(&message),
                Command::Drain { over } => self.start_drain(over),
                Command::Shed { count, over } => self.start_shed(count, over),
            }
        }
    }

    fn deliver(&mut self, message: &Message) {
        self.seq += 1;
        let seq = self.seq;
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
            if self.conns.get(key).is_some_and(Conn::is_open) {
                self.stats.slow_closes += 1;
                self.close(key, 1008, "slow consumer");
            }
        }
        self.doomed = doomed;
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
        let metrics = &self.shared.metrics;
        metrics
            .flush_duration
            .observe(self.now.duration_since(started).as_secs_f64());
        let stats = std::mem::take(&mut self.stats);
        metrics.frames_delivered.inc_by(stats.frames);
        metrics.bytes_delivered.inc_by(stats.bytes);
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
            Ok(Flushed::All { bytes }) => {
                self.stats.bytes += bytes as u64;
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
            Ok(Flushed::Blocked { bytes }) => {
                self.stats.bytes += bytes as u64;
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

    // ---- closing ----

    /// Starts the close handshake: pending messages not yet started are dropped, the close frame
    /// goes out next.
    fn close(&mut self, key: usize, code: u16, reason: &str) {
        self.start_closing(key, frame::encode_close(code, reason));
    }

    fn start_closing(&mut self, key: usize, last: Bytes) {
        self.leave_open(key);
        let deadline_ms = self.now_ms() + CLOSE_LINGER_MS;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(conn.phase, Phase::Closing { .. }) {
            return;
        }
        conn.phase = Phase::Closing {
            deadline_ms,
            fin_sent: false,
        };
        conn.inbuf = Vec::new();
        conn.outbox.discard_unstarted();
        conn.outbox.push(last);
        if !conn.write_blocked {
            self.write_conn(key);
        }
    }

    /// Unsubscribes an open connection and gives back its slot; no-op otherwise.
    fn leave_open(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.is_open() {
            return;
        }
        if let Some(ip) = conn.counted_ip.take() {
            self.shared.release_ip(ip);
        }
        for pattern in std::mem::take(&mut conn.subs) {
            self.index_remove(&pattern, key);
        }
        self.shared.release(self.id);
    }

    /// Drops a connection at once.
    fn remove(&mut self, key: usize) {
        self.leave_open(key);
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.socket);
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
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (key, conn) in self.conns.iter_mut() {
            match conn.phase {
                Phase::Handshake { deadline_ms } if now_ms >= deadline_ms => expired.push(key),
                Phase::Closing { deadline_ms, .. } if now_ms >= deadline_ms => expired.push(key),
                Phase::Open
                    if conn
                        .identity
                        .as_ref()
                        .is_some_and(|i| i.expires_at <= now_unix) =>
                {
                    token_expired.push(key);
                }
                Phase::Open => {
                    let idle = now_s.saturating_sub(conn.last_seen_s);
                    if idle >= 2 * ping_s {
                        expired.push(key);
                    } else if idle >= ping_s && !conn.pinged {
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
        for key in token_expired {
            self.close(key, 1008, "token expired");
        }
        for key in to_ping {
            self.enqueue(key, frame::encode(OpCode::Control(Control::Ping), b""));
        }
        self.pace_closes();
        let period = if self.drain.is_some() || self.shed.is_some() {
            DRAIN_SWEEP
        } else {
            SWEEP
        };
        self.next_sweep = self.now + period;
    }

    fn start_drain(&mut self, over: Duration) {
        if self.drain.is_some() {
            return;
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        self.shed = None;
        self.drain = Some(self.plan(usize::MAX, over, 1001, "server shutting down"));
        // Handshakes in flight will not complete into a draining gateway.
        let pending: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Handshake { .. }))
            .map(|(k, _)| k)
            .collect();
        for key in pending {
            self.remove(key);
        }
        self.next_sweep = self.now;
    }

    fn start_shed(&mut self, count: usize, over: Duration) {
        if self.drain.is_some() || count == 0 {
            return;
        }
        self.shed = Some(self.plan(count, over, 1012, "rebalance"));
        self.next_sweep = self.now;
    }

    /// A plan over at most `count` of the open connections.
    fn plan(&self, count: usize, over: Duration, code: u16, reason: &'static str) -> Plan {
        let open = self.conns.iter().filter(|(_, c)| c.is_open()).count();
        Plan {
            pace: Pace {
                start: self.now,
                over,
                total: count.min(open),
            },
            done: 0,
            code,
            reason,
        }
    }

    /// Closes what the drain and shed plans have due by now.
    fn pace_closes(&mut self) {
        if let Some(drain) = &self.drain
            && drain.pace.expired(self.now, DRAIN_GRACE)
        {
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.remove(key);
            }
            return;
        }
        if let Some((due, code, reason)) = take_due(&mut self.drain, self.now) {
            self.close_some(due, code, reason);
        }
        if let Some((due, code, reason)) = take_due(&mut self.shed, self.now) {
            self.close_some(due, code, reason);
        }
        if self.shed.as_ref().is_some_and(|p| p.done >= p.pace.total) {
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
            self.close(key, code, reason);
        }
    }
}

/// How many closes a plan has due now; counts them as done.
fn take_due(plan: &mut Option<Plan>, now: Instant) -> Option<(usize, u16, &'static str)> {
    let p = plan.as_mut()?;
    let due = p.pace.target(now).saturating_sub(p.done);
    p.done += due;
    (due > 0).then_some((due, p.code, p.reason))
}

/// What the rate limit says about one client message.
enum Rate {
    Allow,
    /// Over the limit this second: dropped, with an error reply for the first one.
    Deny {
        first: bool,
    },
    /// Over the limit for several seconds in a row.
    Close,
}

/// Seconds in a row over the message rate after which a connection is closed.
const SUSTAINED_RATE_WINDOWS: u8 = 2;

fn may_subscribe(identity: Option<&Identity>, pattern: &str) -> bool {
    match identity {
        Some(identity) => identity.may_subscribe(pattern),
        None => auth::anonymous_may_subscribe(pattern),
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
