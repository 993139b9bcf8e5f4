//! One client connection's protocol as a sans-IO state machine, shared by both engines (in the
//! style of quinn-proto and rustls): phase, subscriptions, identity, rate window, outbox
//! accounting, liveness and the close handshake.
//!
//! A [`Session`] owns no socket, clock or thread. The engine feeds it events (a decoded client
//! frame, a protocol violation, bytes received, a message to queue, a write result, a timer
//! tick), passing the time in as a [`Clock`], and carries out the [`Effect`]s it pushes: topic
//! index add/remove (whose first and last holder the engine turns into NATS interest up/down),
//! the slot given back, frames to flush, a close started, a connection to drop. Replies, pongs,
//! pings and close frames are queued in the session's own [`Outbox`] under `maxPendingBytes`.
//!
//! Resuming from history (issue 12) is an effect ([`Effect::Replay`], a replay request the
//! engine sends to the control plane) and an event ([`Session::on_replay`]); see `resume.rs`.
//! In cluster mode a new pattern waits for the gateway's NATS subscription to be confirmed
//! ([`Effect::Want`], [`Session::on_confirmed`]) before it is live and answered; see
//! `confirm.rs`.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::access::{self, Admission, Sub, SubRefusal};
use crate::auth::{Identity, Verifier};
use crate::frame::{self, ClientEvent, ProtocolError};
use crate::handshake::Format;
use crate::history::ShardHistory;
use crate::outbox::{Flushed, Outbox};
use crate::protocol::{self, ClientOp, ErrorCode};
use crate::rate::{RateLimit, Verdict};
use crate::topic;

mod confirm;
mod resume;
#[cfg(test)]
mod tests;

pub(crate) use confirm::UNAVAILABLE_LABEL;
pub(crate) use resume::ReplayAsk;

/// How long a closing connection may take to finish the close handshake.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Longest wait [`Session::next_tick`] asks for while a token is held; see there.
pub(crate) const MAX_TICK_WAIT: Duration = Duration::from_secs(60);

/// The per-connection limits, shared by every session of an engine (not stored per session).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Bound on a connection's queued bytes (plus [`crate::outbox::FRAME_OVERHEAD`] per
    /// control-path frame); past it the connection is closed as a slow consumer (1008).
    pub max_pending_bytes: usize,
    pub max_subscriptions: usize,
    pub max_client_messages_per_second: u32,
    /// Silence before a liveness ping; twice this and the peer is dropped. Whole seconds.
    pub ping_interval: Duration,
    /// JWT verification when auth is on; connections are anonymous otherwise.
    pub verifier: Option<Arc<Verifier>>,
    /// History (cluster mode with `history` set): which patterns can resume, and the epoch.
    pub history: Option<ShardHistory>,
    /// Cluster mode: a new pattern is live (and answered) only once the engine confirms the
    /// gateway's NATS subscription for it, which the control plane answers within this time;
    /// see `confirm.rs`. `None` (standalone): live at once.
    pub confirm: Option<Duration>,
}

/// The engine's monotonic time as sessions see it: `now` relative to an `epoch`, so a session
/// keeps 4- and 8-byte times instead of 16-byte `Instant`s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
    now: Instant,
}

impl Clock {
    pub(crate) fn new(epoch: Instant) -> Clock {
        Clock { epoch, now: epoch }
    }

    /// The same clock at `now` (never before its epoch).
    pub(crate) fn at(self, now: Instant) -> Clock {
        Clock { now, ..self }
    }

    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    fn ms(&self) -> u64 {
        self.now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn s(&self) -> u32 {
        self.now.saturating_duration_since(self.epoch).as_secs() as u32
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the HTTP upgrade request; dropped at the deadline (clock ms).
    Handshake { deadline_ms: u64 },
    /// Upgraded: receives messages, sends client ops.
    Open,
    /// A close frame or HTTP error is queued. Once it is written the write side is shut down and
    /// the socket kept until the peer closes too (so the peer reads our last bytes instead of a
    /// reset), or until the deadline.
    Closing { deadline_ms: u64, fin_sent: bool },
}

/// [`Phase`] without its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake,
    Open,
    Closing,
    FinSent,
}

/// Why a session started closing; engines count metrics from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The peer sent a Close frame; ours echoes its code.
    Peer,
    /// The peer broke RFC 6455 or a frame limit; the label names the violation.
    Violation(&'static str),
    /// Over the client message rate for the third window in a row.
    RateLimit,
    /// Its queue went over `maxPendingBytes`, or it stopped reading.
    SlowConsumer,
    /// The token's `exp` passed without a refresh.
    TokenExpired,
    /// A drain (1001) or shed (1012) chose it.
    Planned,
    /// The upgrade was refused; an HTTP error is queued instead of a close frame.
    Rejected,
    /// A pattern that came with the connection (URL topics, the token's `user.<sub>`) could not
    /// be confirmed: closed 1013 so that the client reconnects (see `session/confirm.rs`).
    Unavailable,
}

/// Why a connection is dropped without another byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// No complete upgrade request in the handshake timeout.
    HandshakeTimeout,
    /// The peer did not finish the close handshake within [`CLOSE_LINGER`].
    LingerOver,
    /// Silent for two ping intervals, the liveness ping unanswered.
    Silent,
}

/// What the engine must do for a session. Pushed in the order they must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Deliver messages matching this pattern to the connection (topic index add; standalone,
    /// the first holder on an engine raises NATS interest).
    Subscribe(Box<str>),
    /// Stop delivering this pattern (topic index remove; the last holder lowers interest).
    Unsubscribe(Box<str>),
    /// Cluster mode: the connection waits for this pattern to be live. The engine answers with
    /// [`Session::on_confirmed`] once the gateway's NATS subscription covering it is confirmed
    /// (at once if it already is), or could not be. Counts as interest until then.
    Want(Box<str>),
    /// The connection no longer waits for this pending pattern (unsubscribed, closed, or it gave
    /// up): the engine forgets it as a waiter, and the last one lowers interest.
    Withdraw(Box<str>),
    /// The session left the open phase: give back its connection slot (and per-IP count).
    Left,
    /// Frames were queued in the outbox: flush them.
    Queued,
    /// The close handshake started: what was queued and not yet started is gone, the close
    /// frame (or HTTP error) is queued last. Write it now, then half-close.
    Closing(Cause),
    /// Drop the connection now.
    Drop(Gone),
    /// Ask the control plane for the stored messages a resuming pattern missed; the answer
    /// comes back as [`Session::on_replay`].
    Replay(Box<ReplayAsk>),
    /// A resume ended: `recovered` or the reason it was not (for metrics).
    Recovery(&'static str),
}

/// What a write did to the session, for the engine's readiness registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Written {
    /// `write_blocked` changed: watch (or stop watching) for writability.
    pub blocked_changed: bool,
    /// The last bytes before a close are out: shut down the write side.
    pub half_close: bool,
}

/// One client connection's protocol state; see the module docs. Small on purpose: an idle
/// connection is this plus the engine's socket, and holds no heap memory while anonymous, not
/// subscribed and with nothing queued.
#[derive(Debug)]
pub(crate) struct Session {
    /// The [`Phase`] stored in two fields so its deadline shares no padding with its flags: the
    /// slab slot of an idle connection is a checked number (see `conn/tests.rs`).
    stage: Stage,
    /// The handshake or close deadline (clock ms); unused while open.
    deadline_ms: u64,
    outbox: Outbox,
    /// Patterns held, so closing can clean the topic index and the tokio engine can filter.
    subs: Vec<Box<str>>,
    /// The verified token (auth on) and the resume state (resumed from history), boxed
    /// together so a connection with neither pays one pointer.
    extra: Option<Box<Extra>>,
    /// Client-message rate limit (every frame counts, pings and pongs included).
    rate: RateLimit,
    /// Clock (s) of the last bytes received, for liveness pings.
    last_seen_s: u32,
    /// Clock (s) of the last write progress while blocked: a peer that stops reading is closed
    /// like a slow consumer even when its queue stays under the bound.
    stalled_since_s: u32,
    format: Format,
    /// A liveness ping is out and unanswered.
    pinged: bool,
    /// The socket buffer filled up; waiting for writability.
    write_blocked: bool,
}

/// What only some connections have; see [`Session::extra`](Session).
#[derive(Debug, Default)]
struct Extra {
    identity: Option<Identity>,
    /// Replay-then-live merge state, only for a connection that resumed.
    resume: Option<resume::Resuming>,
    /// Patterns held but waiting for their confirmation (cluster mode); see `confirm.rs`.
    pending: Vec<confirm::Pending>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.identity.is_none() && self.resume.is_none() && self.pending.is_empty()
    }
}

impl Session {
    /// A connection just accepted, waiting for its upgrade request until `handshake_timeout`.
    pub(crate) fn new(clock: &Clock, handshake_timeout: Duration) -> Session {
        Session {
            stage: Stage::Handshake,
            deadline_ms: clock.ms() + handshake_timeout.as_millis() as u64,
            outbox: Outbox::default(),
            subs: Vec::new(),
            extra: None,
            rate: RateLimit::default(),
            last_seen_s: clock.s(),
            stalled_since_s: clock.s(),
            format: Format::Envelope,
            pinged: false,
            write_blocked: false,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        let deadline_ms = self.deadline_ms;
        match self.stage {
            Stage::Handshake => Phase::Handshake { deadline_ms },
            Stage::Open => Phase::Open,
            Stage::Closing => Phase::Closing {
                deadline_ms,
                fin_sent: false,
            },
            Stage::FinSent => Phase::Closing {
                deadline_ms,
                fin_sent: true,
            },
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.stage == Stage::Open
    }

    fn set_phase(&mut self, phase: Phase) {
        (self.stage, self.deadline_ms) = match phase {
            Phase::Handshake { deadline_ms } => (Stage::Handshake, deadline_ms),
            Phase::Open => (Stage::Open, 0),
            Phase::Closing {
                deadline_ms,
                fin_sent,
            } => (
                if fin_sent {
                    Stage::FinSent
                } else {
                    Stage::Closing
                },
                deadline_ms,
            ),
        };
    }

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    #[cfg(test)]
    pub(crate) fn subscriptions(&self) -> &[Box<str>] {
        &self.subs
    }

    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.extra.as_ref()?.identity.as_ref()
    }

    /// Drops [`Extra`] once it holds nothing, so a connection that had a pattern pending is as
    /// small afterwards as one that never had.
    fn tidy_extra(&mut self) {
        if self.extra.as_deref().is_some_and(Extra::is_empty) {
            self.extra = None;
        }
    }

    fn set_identity(&mut self, identity: Option<Identity>) {
        match (identity, self.extra.as_deref_mut()) {
            (None, None) => {}
            (None, Some(extra)) => extra.identity = None,
            (Some(identity), _) => {
                self.extra.get_or_insert_with(Default::default).identity = Some(identity);
            }
        }
    }

    pub(crate) fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// For the engine's writes; queueing goes through the session so the bound holds.
    pub(crate) fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Does an open session hold a pattern matching `topic`? (The shards ask their topic index
    /// instead; the tokio engine filters every message through this.)
    pub(crate) fn wants(&self, topic: &str) -> bool {
        self.is_open()
            && self
                .subs
                .iter()
                .any(|p| topic::matches(p, topic) && !self.is_pending(p))
    }

    // ---- events ----

    /// The upgrade was admitted: the session opens with the admission's identity and topics.
    /// An engine that writes its own 101 queues it before calling this, so it goes out first.
    pub(crate) fn open(
        &mut self,
        admission: Admission,
        format: Format,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let Admission {
            identity,
            allowed,
            forbidden,
            resumed: _,
        } = admission;
        self.set_phase(Phase::Open);
        self.format = format;
        self.set_identity(identity);
        self.subs = allowed.iter().map(|t| t.as_str().into()).collect();
        for t in &allowed {
            self.want(t, confirm::Reply::EpochOnly, clock, limits, out);
        }
        for t in &forbidden {
            self.reply(SubRefusal::Forbidden.reply(t), clock, limits, out);
        }
    }

    /// The upgrade was refused: `response` (an HTTP error) is the last thing sent.
    pub(crate) fn reject(&mut self, response: Bytes, clock: &Clock, out: &mut Vec<Effect>) {
        self.start_closing(response, Cause::Rejected, clock, out);
    }

    /// Bytes arrived: the peer is alive.
    pub(crate) fn on_received(&mut self, clock: &Clock) {
        self.last_seen_s = clock.s();
        self.pinged = false;
    }

    /// One complete client frame. `Break` when nothing more from this peer should be read
    /// (the session is no longer open).
    pub(crate) fn on_frame(
        &mut self,
        event: ClientEvent<'_>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) -> ControlFlow<()> {
        if !self.is_open() {
            return ControlFlow::Break(());
        }
        // Every client frame counts, pings, pongs and fragments too: each ping asks for a pong,
        // and a pong or continuation flood costs reads like any other frame.
        if !matches!(event, ClientEvent::Close { .. }) {
            let limit = limits.max_client_messages_per_second;
            match self.rate.check(clock.ms(), limit) {
                Verdict::Allow => {}
                Verdict::Deny { first } => {
                    if first {
                        let message = format!("over {limit} messages per second; slow down");
                        let reply = protocol::error(ErrorCode::Limit, None, &message);
                        self.reply(reply, clock, limits, out);
                    }
                    return self.flow();
                }
                Verdict::Close => {
                    self.close(1008, "message rate limit", Cause::RateLimit, clock, out);
                    return ControlFlow::Break(());
                }
            }
        }
        match event {
            ClientEvent::Text(text) => self.on_op(text, clock, limits, out),
            ClientEvent::Binary(_) => {
                let reply = protocol::error(
                    ErrorCode::BadRequest,
                    None,
                    "binary messages are not part of volley.v1",
                );
                self.reply(reply, clock, limits, out);
            }
            ClientEvent::Ping(payload) => {
                let pong = frame::encode(OpCode::Control(Control::Pong), payload);
                self.queue(pong, clock, limits, out);
            }
            // Liveness is already noted (any bytes count); only the rate limit cares.
            ClientEvent::Pong(_) | ClientEvent::Fragment => {}
            ClientEvent::Close { code, .. } => {
                // Echo the peer's code as RFC 6455 asks; 1005 (no code) is answered with 1000.
                self.close(code.unwrap_or(1000), "", Cause::Peer, clock, out);
            }
        }
        self.flow()
    }

    /// The peer broke the framing rules: close with the violation's code.
    pub(crate) fn on_violation(
        &mut self,
        violation: &ProtocolError,
        clock: &Clock,
        out: &mut Vec<Effect>,
    ) {
        self.close(
            violation.close_code(),
            violation.reason(),
            Cause::Violation(violation.label()),
            clock,
            out,
        );
    }

    /// A published message's frame for this connection: queued, or `false` when it would take
    /// the queue over `maxPendingBytes` (the engine then calls [`Session::slow_consumer`] once
    /// it is done walking its index). Message frames are shared by every recipient, so only
    /// their bytes count, not the per-frame charge of control-path frames.
    /// A session no longer open refuses (nothing may follow its close frame, RFC 6455 §5.5.1);
    /// the engine's `slow_consumer` call is then a no-op.
    pub(crate) fn offer(&mut self, frame: &Bytes, limits: &Limits) -> bool {
        if !self.is_open() || self.outbox.pending_bytes() + frame.len() > limits.max_pending_bytes {
            return false;
        }
        self.outbox.push(frame.clone());
        true
    }

    /// [`Session::offer`] for a frame the engine appended to its shared frame stream: queues
    /// the span `start..end` of it (merged with the previous one when adjacent), under the same
    /// `maxPendingBytes` rule.
    pub(crate) fn offer_span(&mut self, start: u64, end: u64, limits: &Limits) -> bool {
        let len = usize::try_from(end - start).unwrap_or(usize::MAX);
        if !self.is_open()
            || self.outbox.pending_bytes().saturating_add(len) > limits.max_pending_bytes
        {
            return false;
        }
        self.outbox.push_span(start, end);
        true
    }

    /// Closes an open session that does not keep up with what is queued for it (1008).
    pub(crate) fn slow_consumer(&mut self, clock: &Clock, out: &mut Vec<Effect>) {
        if self.is_open() {
            self.close(1008, "slow consumer", Cause::SlowConsumer, clock, out);
        }
    }

    /// The engine wrote from the outbox.
    pub(crate) fn on_written(&mut self, flushed: Flushed, clock: &Clock) -> Written {
        let mut written = Written::default();
        match flushed {
            Flushed::All { .. } => {
                if self.write_blocked {
                    self.write_blocked = false;
                    written.blocked_changed = true;
                }
                if let Phase::Closing {
                    deadline_ms,
                    fin_sent: false,
                } = self.phase()
                {
                    // Our last bytes are out: half-close and wait for the peer to hang up.
                    self.set_phase(Phase::Closing {
                        deadline_ms,
                        fin_sent: true,
                    });
                    written.half_close = true;
                }
            }
            Flushed::Blocked { bytes, .. } => {
                if bytes > 0 || !self.write_blocked {
                    self.stalled_since_s = clock.s();
                }
                if !self.write_blocked {
                    self.write_blocked = true;
                    written.blocked_changed = true;
                }
            }
        }
        written
    }

    /// The engine's timer (about once a second): handshake deadline, close linger, token expiry,
    /// a peer that stopped reading, liveness pings. `wall` is for the token's `exp`.
    pub(crate) fn on_tick(
        &mut self,
        clock: &Clock,
        wall: SystemTime,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let now_ms = clock.ms();
        let now_s = clock.s();
        let ping_s = limits.ping_interval.as_secs().max(1) as u32;
        self.replays_overdue(clock, limits, out);
        if self.is_open() {
            self.confirms_overdue(clock, limits, out);
        }
        match self.phase() {
            Phase::Handshake { deadline_ms } if now_ms >= deadline_ms => {
                out.push(Effect::Drop(Gone::HandshakeTimeout));
            }
            Phase::Closing { deadline_ms, .. } if now_ms >= deadline_ms => {
                out.push(Effect::Drop(Gone::LingerOver));
            }
            Phase::Open if self.identity().is_some_and(|i| i.remaining(wall).is_zero()) => {
                self.close(1008, "token expired", Cause::TokenExpired, clock, out);
            }
            Phase::Open
                if self.write_blocked
                    && now_s.saturating_sub(self.stalled_since_s) > 2 * ping_s =>
            {
                // It keeps talking but has not taken a byte for two ping intervals: what we
                // send it only piles up. Liveness means reading too.
                self.slow_consumer(clock, out);
            }
            Phase::Open => {
                // Whole seconds truncate, so a difference of k+1 is at least k seconds of real
                // silence: `>` never pings or drops a peer early.
                let idle = now_s.saturating_sub(self.last_seen_s);
                if idle > 2 * ping_s {
                    out.push(Effect::Drop(Gone::Silent));
                } else if idle > ping_s && !self.pinged {
                    self.pinged = true;
                    let ping = frame::encode(OpCode::Control(Control::Ping), b"");
                    self.queue(ping, clock, limits, out);
                }
            }
            _ => {}
        }
    }

    /// When [`Session::on_tick`] next has something to do, for an engine that sleeps per
    /// connection instead of sweeping all of them every second: the handshake or close deadline,
    /// or the second at which the silence (or a stalled write) crosses its limit, or the token's
    /// `exp`. Waits on `exp` are cut at [`MAX_TICK_WAIT`]: it is wall-clock time and the wait runs
    /// on the monotonic clock.
    pub(crate) fn next_tick(&self, clock: &Clock, wall: SystemTime, limits: &Limits) -> Instant {
        let at_s = |s: u32| clock.epoch + Duration::from_secs(u64::from(s));
        let ping_s = limits.ping_interval.as_secs().max(1) as u32;
        match self.phase() {
            Phase::Handshake { deadline_ms } | Phase::Closing { deadline_ms, .. } => {
                clock.epoch + Duration::from_millis(deadline_ms)
            }
            Phase::Open => {
                // `on_tick` compares whole seconds with `>`: the first second that counts is the
                // limit plus one.
                let silence = if self.pinged { 2 * ping_s } else { ping_s };
                let mut next = at_s(self.last_seen_s.saturating_add(silence + 1));
                if self.write_blocked {
                    next = next.min(at_s(self.stalled_since_s.saturating_add(2 * ping_s + 1)));
                }
                let token = self.identity().map_or(MAX_TICK_WAIT, |i| i.remaining(wall));
                // Like the shards' sweep, expiry is looked at on the session's whole seconds:
                // never sooner than the next one (a token accepted within the verifier's leeway
                // has already passed its `exp`, and still gets that second to be refreshed).
                let token_due = (clock.now + token.min(MAX_TICK_WAIT)).max(at_s(clock.s() + 1));
                let next = next.min(token_due);
                // A replay in flight is given up on after its deadline second, a pending
                // pattern at its deadline.
                let next = self.replay_due_s().map_or(next, |s| next.min(at_s(s)));
                let at_ms = |ms: u64| clock.epoch + Duration::from_millis(ms);
                self.confirm_due_ms().map_or(next, |ms| next.min(at_ms(ms)))
            }
        }
    }

    /// Starts the close handshake with `code` (no-op once closing).
    pub(crate) fn close(
        &mut self,
        code: u16,
        reason: &str,
        cause: Cause,
        clock: &Clock,
        out: &mut Vec<Effect>,
    ) {
        if matches!(self.phase(), Phase::Closing { .. }) {
            return;
        }
        self.start_closing(frame::encode_close(code, reason), cause, clock, out);
    }

    /// Unsubscribes an open session and gives back its slot; the engine calls it before it
    /// drops the connection (and [`Session::close`] does on the way to closing).
    pub(crate) fn leave(&mut self, out: &mut Vec<Effect>) {
        if !self.is_open() {
            return;
        }
        for pattern in std::mem::take(&mut self.subs) {
            if self.forget_pending(&pattern) {
                out.push(Effect::Withdraw(pattern));
            } else {
                out.push(Effect::Unsubscribe(pattern));
            }
        }
        out.push(Effect::Left);
    }

    // ---- inside ----

    fn flow(&self) -> ControlFlow<()> {
        if self.is_open() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    /// Pending messages not yet started are dropped, `last` goes out next.
    fn start_closing(&mut self, last: Bytes, cause: Cause, clock: &Clock, out: &mut Vec<Effect>) {
        self.leave(out);
        if matches!(self.phase(), Phase::Closing { .. }) {
            return;
        }
        self.set_phase(Phase::Closing {
            deadline_ms: clock.ms() + CLOSE_LINGER.as_millis() as u64,
            fin_sent: false,
        });
        self.outbox.discard_unstarted();
        self.outbox.push(last);
        out.push(Effect::Closing(cause));
    }

    fn on_op(&mut self, text: &str, clock: &Clock, limits: &Limits, out: &mut Vec<Effect>) {
        match protocol::parse_op(text) {
            Ok(ClientOp::Sub(topics)) => self.subscribe(topics, None, clock, limits, out),
            Ok(ClientOp::Resume(resume)) => {
                let topics = resume.topics.clone();
                self.subscribe(topics, Some(resume), clock, limits, out);
            }
            Ok(ClientOp::Unsub(topics)) => self.unsubscribe(topics, clock, limits, out),
            Ok(ClientOp::Ping) => self.reply(protocol::pong(), clock, limits, out),
            Ok(ClientOp::Refresh(token)) => self.refresh(&token, clock, limits, out),
            Err(e) => {
                let reply = protocol::error(ErrorCode::BadRequest, None, &e.to_string());
                self.reply(reply, clock, limits, out);
            }
        }
    }

    /// Subscribes `topics`; those with a position in `resume` are then resumed (their reply
    /// comes with the replay), the others answered at once (with the epoch when they have
    /// history).
    fn subscribe(
        &mut self,
        topics: Vec<String>,
        resume: Option<protocol::Resume>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let mut accepted: Vec<String> = Vec::new();
        for t in topics {
            let identity = self.extra.as_ref().and_then(|e| e.identity.as_ref());
            match access::check_sub(identity, &t, &self.subs, limits.max_subscriptions) {
                Ok(Sub::Held) => {}
                Ok(Sub::New) => {
                    self.subs.push(t.as_str().into());
                    let resumed = resume.as_ref().is_some_and(|r| r.since(&t).is_some());
                    let reply = if resumed {
                        confirm::Reply::Resumed
                    } else {
                        confirm::Reply::Subscribed
                    };
                    self.want(&t, reply, clock, limits, out);
                }
                Err(refusal) => {
                    self.reply(refusal.reply(&t), clock, limits, out);
                    continue;
                }
            }
            // Asked by this op (even if it came with the connection): a refusal answers it.
            self.asked_by_op(&t);
            accepted.push(t);
        }
        let mut resumed = Vec::new();
        if let Some(resume) = &resume {
            accepted.retain(|t| match resume.since(t) {
                Some(since) => {
                    resumed.push((t.clone(), since));
                    false
                }
                None => true,
            });
        }
        // Patterns not live yet are answered once they are (see `confirm.rs`).
        accepted.retain(|t| !self.awaits(t, false));
        if !accepted.is_empty() {
            let names: Vec<&str> = accepted.iter().map(String::as_str).collect();
            let epoch = resume::epoch_for(limits, names.iter().copied());
            let reply = protocol::subscribed_with_epoch(&names, epoch.as_deref());
            self.reply(reply, clock, limits, out);
        }
        let epoch = resume.and_then(|r| r.epoch);
        for (pattern, since) in resumed {
            self.resume(&pattern, since, epoch.clone(), clock, limits, out);
        }
    }

    fn unsubscribe(
        &mut self,
        topics: Vec<String>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        for t in &topics {
            self.drop_sub(t, out);
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.reply(protocol::unsubscribed(&names), clock, limits, out);
    }

    /// `{"op":"refresh","token":..}`: a newer token for the same user extends the connection.
    /// Subscriptions it no longer allows are dropped first, each with a `forbidden` error
    /// naming it, so that `refreshed` comes once the connection holds only what the new token
    /// allows.
    fn refresh(&mut self, token: &str, clock: &Clock, limits: &Limits, out: &mut Vec<Effect>) {
        let verifier = limits.verifier.as_deref();
        let reply = match access::refresh(verifier, self.identity(), token, &self.subs) {
            Ok(refreshed) => {
                for pattern in &refreshed.revoked {
                    self.drop_sub(pattern, out);
                    self.reply(access::revoked_reply(pattern), clock, limits, out);
                }
                let expires_at = refreshed.identity.expires_at;
                self.set_identity(Some(refreshed.identity));
                protocol::refreshed(expires_at)
            }
            Err(e) => e.reply(),
        };
        self.reply(reply, clock, limits, out);
    }

    /// Stops holding `pattern` (if held), and forgets a resume of it. Live messages held
    /// behind a replay that no remaining pattern matches are dropped too: once the client is
    /// told the pattern is gone, none of its messages may follow (review 2, finding 7).
    fn drop_sub(&mut self, pattern: &str, out: &mut Vec<Effect>) {
        if let Some(held) = self.remove_sub(pattern) {
            if self.forget_pending(&held) {
                out.push(Effect::Withdraw(held));
            } else {
                out.push(Effect::Unsubscribe(held));
            }
        }
    }

    /// Removes `pattern` from what is held (returning it, if held) and forgets a resume of it;
    /// see [`Session::drop_sub`].
    fn remove_sub(&mut self, pattern: &str) -> Option<Box<str>> {
        let held =
            (self.subs.iter().position(|s| **s == *pattern)).map(|i| self.subs.swap_remove(i));
        if let Some(r) = self.extra.as_deref_mut().and_then(|e| e.resume.as_mut()) {
            r.merge.forget(pattern);
            let (subs, format) = (&self.subs, self.format);
            r.merge.retain_held(
                |m| subs.iter().any(|p| topic::matches(p, m.topic())),
                |m| m.frame(format).len(),
            );
        }
        held
    }

    fn reply(&mut self, text: String, clock: &Clock, limits: &Limits, out: &mut Vec<Effect>) {
        let frame = frame::encode(OpCode::Data(Data::Text), text.as_bytes());
        self.queue(frame, clock, limits, out);
    }

    /// Queues a control-path frame (reply, pong, ping) under the same bound as messages: each of
    /// these is a heap allocation of its own, so a client that asks for replies and never reads
    /// them would otherwise grow the gateway without limit. Past the bound it is closed as a
    /// slow consumer (1008).
    fn queue(&mut self, frame: Bytes, clock: &Clock, limits: &Limits, out: &mut Vec<Effect>) {
        if !self.is_open() {
            return;
        }
        if self.outbox.footprint() + Outbox::cost_of(&frame) > limits.max_pending_bytes {
            self.slow_consumer(clock, out);
            return;
        }
        self.outbox.push(frame);
        out.push(Effect::Queued);
    }
}
