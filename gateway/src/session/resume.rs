//! Resuming from history, the session's side: a resumed pattern asks the control plane for what
//! it missed ([`Effect::Replay`]), live messages are held meanwhile (see
//! [`crate::history::merge`]), and the answers ([`Session::on_replay`]) send the replies, then,
//! once no replay is in flight, the replays and the held messages merged in stream order. Held
//! messages and replays only take what the connection's queue can hold once released, so a
//! resume ends `recovered:false` and live rather than in a slow-consumer close.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Clock, Effect, Limits, Session};
use crate::history::NotRecovered;
use crate::history::merge::{Live, Merge, Replayed};
use crate::message::Message;
use crate::protocol::{self, Recovery};
use crate::topic;

/// Grace on top of `replayTimeout` before a session stops waiting for a replay answer (the
/// control plane always answers within the timeout, unless the answer was lost).
const ANSWER_GRACE_S: u32 = 5;

/// Queue room kept free for the reply that ends a resume (`subscribed` with the recovery
/// fields and the epoch), on top of the pattern it repeats.
const REPLY_ROOM: usize = 512;

/// Tickets tell a replay answer for this session from one for an earlier connection that had
/// the same slot: unique for the process's life.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// What [`Effect::Replay`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplayAsk {
    pub pattern: Box<str>,
    pub since: u64,
    pub epoch: Option<String>,
    /// Given back with the answer: [`Session::replay_ticket`] must still match it.
    pub ticket: u64,
}

/// A resumed session's merge state.
#[derive(Debug)]
pub(super) struct Resuming {
    pub(super) merge: Merge<Arc<Message>>,
    ticket: u64,
    /// Clock (s) by which the replays in flight must have answered.
    deadline_s: u32,
}

/// The epoch subscribe replies carry when `patterns` include one with history.
pub(super) fn epoch_for<'a>(
    limits: &Limits,
    patterns: impl IntoIterator<Item = &'a str>,
) -> Option<Arc<str>> {
    let history = limits.history.as_ref()?;
    let mut patterns = patterns.into_iter();
    if patterns.any(|p| history.config.covers_pattern(p)) {
        history.state.epoch()
    } else {
        None
    }
}

impl Session {
    /// The ticket replay answers for this session carry, while it has resumed.
    pub(crate) fn replay_ticket(&self) -> Option<u64> {
        self.extra.as_ref()?.resume.as_ref().map(|r| r.ticket)
    }

    /// The ticket of a replay this session still waits for: only then is there a fetch the
    /// router could stop when the connection goes (a finished resume has nothing in flight).
    pub(crate) fn pending_replay_ticket(&self) -> Option<u64> {
        let resume = self.extra.as_ref()?.resume.as_ref()?;
        resume.merge.is_replaying().then_some(resume.ticket)
    }

    /// Whether live messages must go through [`Session::offer_message`] (a replay in flight or
    /// positions already replayed to filter against).
    pub(crate) fn is_resuming(&self) -> bool {
        self.extra
            .as_ref()
            .and_then(|e| e.resume.as_ref())
            .is_some_and(|r| r.merge.is_active())
    }

    /// URL subscriptions to topics with history get a reply carrying the epoch (other URL
    /// subscriptions get none, as before).
    /// Patterns still pending (cluster mode) are announced one by one once live instead.
    pub(crate) fn announce_epoch(&mut self, clock: &Clock, limits: &Limits, out: &mut Vec<Effect>) {
        let names: Vec<&str> = (self.subs.iter())
            .filter(|s| !self.is_pending(s))
            .map(|s| &**s)
            .collect();
        if names.is_empty() {
            return;
        }
        let Some(epoch) = epoch_for(limits, names.iter().copied()) else {
            return;
        };
        let reply = protocol::subscribed_with_epoch(&names, Some(&epoch));
        self.reply(reply, clock, limits, out);
    }

    /// Resumes `pattern` (already subscribed) after stream position `since`.
    pub(crate) fn resume(
        &mut self,
        pattern: &str,
        since: u64,
        epoch: Option<String>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        // Still pending (cluster mode): its reply is the replay's answer, not `subscribed`.
        self.awaits(pattern, true);
        let Some(history) = limits
            .history
            .as_ref()
            .filter(|h| h.config.covers_pattern(pattern))
        else {
            self.answer(
                pattern,
                None,
                Err(NotRecovered::NoHistory),
                clock,
                limits,
                out,
            );
            return;
        };
        let timeout_s = u32::try_from(history.config.replay_timeout.as_secs()).unwrap_or(u32::MAX);
        // Cluster mode, pattern still pending: the control plane holds the request until the
        // pattern's subscription is confirmed (up to the confirmation deadline) and only then
        // starts the fetch, so the wait for its answer is that much longer.
        let confirm_s = match limits.confirm {
            Some(wait) if self.is_pending(pattern) => {
                let wait = wait + super::confirm::ANSWER_GRACE;
                u32::try_from(wait.as_secs()).unwrap_or(u32::MAX)
            }
            _ => 0,
        };
        let resume = self
            .extra
            .get_or_insert_with(Default::default)
            .resume
            .get_or_insert_with(|| Resuming {
                merge: Merge::new(limits.max_pending_bytes),
                ticket: NEXT_TICKET.fetch_add(1, Ordering::Relaxed),
                deadline_s: 0,
            });
        if !resume.merge.start(pattern, since) {
            // A replay of it is in flight already; its answer is the reply.
            return;
        }
        resume.deadline_s = clock
            .s()
            .saturating_add(timeout_s)
            .saturating_add(confirm_s)
            .saturating_add(ANSWER_GRACE_S);
        out.push(Effect::Replay(Box::new(ReplayAsk {
            pattern: pattern.into(),
            since,
            epoch,
            ticket: resume.ticket,
        })));
    }

    /// What this connection's queue takes now, minus room for the reply to `pattern` (which
    /// repeats the pattern and the epoch, a decimal number of nanoseconds).
    fn queue_room(&self, limits: &Limits, pattern_len: usize) -> usize {
        limits
            .max_pending_bytes
            .saturating_sub(self.outbox.footprint())
            .saturating_sub(REPLY_ROOM + 2 * pattern_len)
    }

    /// Room set aside for a replay still to come while live messages are held: what one replay
    /// may carry (`replayMaxBytes`, counted in frame bytes by the store), but at most half the
    /// queue so a replay of that size cannot starve the hold buffer entirely.
    fn replay_reserve(limits: &Limits) -> usize {
        limits.history.as_ref().map_or(0, |h| {
            h.config.replay_max_bytes.min(limits.max_pending_bytes / 2)
        })
    }

    /// A published message for a resuming session (see [`Session::is_resuming`]): held during
    /// a replay, dropped when a replay covered it, else queued. `false` when queueing it would
    /// take the queue over `maxPendingBytes` (the engine then calls
    /// [`Session::slow_consumer`]).
    pub(crate) fn offer_message(
        &mut self,
        message: &Arc<Message>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) -> bool {
        let frame = message.frame(self.format);
        // Held messages are released into the queue later (after the replay, or at once on
        // overflow): holding only what fits there then is what keeps a resume from ending in a
        // slow-consumer close (1008) that the client would answer by resuming the same way.
        let room = self
            .queue_room(limits, message.topic().len().max(256))
            .saturating_sub(Self::replay_reserve(limits));
        let Some(resume) = self.extra.as_deref_mut().and_then(|e| e.resume.as_mut()) else {
            return self.offer(frame, limits);
        };
        let epoch = || limits.history.as_ref().and_then(|h| h.state.epoch());
        match resume
            .merge
            .on_live(message.clone(), frame.len(), room, epoch)
        {
            Live::Deliver(_) => self.offer(frame, limits),
            Live::Held | Live::Duplicate => true,
            Live::Overflow { abandoned, deliver } => self.give_up(
                abandoned,
                deliver,
                NotRecovered::Overflow,
                clock,
                limits,
                out,
            ),
        }
    }

    /// The control plane's answer to a replay request of this session.
    pub(crate) fn on_replay(
        &mut self,
        pattern: &str,
        epoch: Option<&str>,
        outcome: Result<Replayed<Arc<Message>>, NotRecovered>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        if !self.is_open() {
            return;
        }
        let format = self.format;
        let still_wanted = self.subs.iter().any(|s| **s == *pattern);
        let room = self.queue_room(limits, pattern.len());
        let Some(resume) = self.extra.as_deref_mut().and_then(|e| e.resume.as_mut()) else {
            return;
        };
        let (replayed, failed) = match outcome {
            Ok(mut r) if still_wanted => {
                // JetStream's filter (`push.*` for `*`) also returns reserved subjects
                // (`_…`, `$…`) that live delivery never matches to a wildcard in the first
                // token (`topic::matches`): a replay must not hand out what live refuses.
                // `through` stays: the stream was read that far all the same.
                r.messages.retain(|m| topic::matches(pattern, m.topic()));
                (Some(r), None)
            }
            Ok(_) => (None, Some(NotRecovered::NoHistory)),
            Err(why) => (None, Some(why)),
        };
        let epoch: Option<Arc<str>> = epoch.map(Arc::from);
        let Some(release) = resume.merge.finish(
            pattern,
            replayed,
            epoch.clone(),
            |m| m.frame(format).len(),
            room,
        ) else {
            return;
        };
        if let Some(why) = failed.filter(|_| still_wanted) {
            self.answer(pattern, epoch.as_deref(), Err(why), clock, limits, out);
        }
        // Replies go before the messages; a recovered replay waits for the others in flight so
        // that all go out merged in stream order (see `Merge::finish`).
        for (pattern, replayed, epoch) in release.recovered {
            self.answer(&pattern, epoch.as_deref(), Ok(replayed), clock, limits, out);
        }
        for pattern in release.refused {
            let epoch = epoch_for(limits, [&*pattern]);
            let why = Err(NotRecovered::Limit);
            self.answer(&pattern, epoch.as_deref(), why, clock, limits, out);
        }
        self.queue_messages(&release.deliver, clock, limits, out);
    }

    /// The clock second after which [`Session::replays_overdue`] gives up on the replays in
    /// flight, if any: [`Session::next_tick`] wakes for it.
    pub(super) fn replay_due_s(&self) -> Option<u32> {
        let resume = self.extra.as_ref()?.resume.as_ref()?;
        resume
            .merge
            .is_replaying()
            .then(|| resume.deadline_s.saturating_add(1))
    }

    /// Replays that did not answer in time are given up on (checked on every tick).
    pub(super) fn replays_overdue(
        &mut self,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let Some(resume) = self.extra.as_deref_mut().and_then(|e| e.resume.as_mut()) else {
            return;
        };
        if !resume.merge.is_replaying() || clock.s() <= resume.deadline_s {
            return;
        }
        let (abandoned, deliver) = resume.merge.abandon();
        self.give_up(
            abandoned,
            deliver,
            NotRecovered::Timeout,
            clock,
            limits,
            out,
        );
    }

    /// Each abandoned pattern is told it is live only, then the held messages go out.
    fn give_up(
        &mut self,
        abandoned: Vec<Box<str>>,
        deliver: Vec<Arc<Message>>,
        why: NotRecovered,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) -> bool {
        for pattern in &abandoned {
            let epoch = epoch_for(limits, [&**pattern]);
            self.answer(pattern, epoch.as_deref(), Err(why), clock, limits, out);
        }
        self.queue_messages(&deliver, clock, limits, out)
    }

    fn answer(
        &mut self,
        pattern: &str,
        epoch: Option<&str>,
        result: Result<usize, NotRecovered>,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let epoch = match epoch {
            Some(e) => Some(Arc::<str>::from(e)),
            None => epoch_for(limits, [pattern]),
        };
        let recovery = match result {
            Ok(replayed) => Recovery::Recovered { replayed },
            Err(why) => Recovery::NotRecovered {
                reason: why.label(),
                message: why.message(),
            },
        };
        out.push(Effect::Recovery(match result {
            Ok(_) => "recovered",
            Err(why) => why.label(),
        }));
        let reply = protocol::resumed(pattern, epoch.as_deref(), recovery);
        // A pattern not live yet (cluster mode) is answered once it is: the reply is a promise.
        if let Some(reply) = self.hold_answer(pattern, reply) {
            self.reply(reply, clock, limits, out);
        }
    }

    /// Queues message frames in order; stops (closing the session as a slow consumer) when one
    /// would take the queue over the bound. Returns whether all were queued.
    fn queue_messages(
        &mut self,
        messages: &[Arc<Message>],
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) -> bool {
        if messages.is_empty() {
            return true;
        }
        for message in messages {
            let frame = message.frame(self.format);
            if !self.offer(frame, limits) {
                self.slow_consumer(clock, out);
                return false;
            }
        }
        out.push(Effect::Queued);
        true
    }
}
