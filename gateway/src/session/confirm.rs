//! Subscriptions that wait for the cluster (cluster mode, [`Limits::confirm`] set): a pattern new
//! to a connection is *pending* ([`Effect::Want`]) until the engine reports that the gateway's
//! NATS subscription covering it is confirmed by the server ([`Session::on_confirmed`]). Only
//! then is it live (added to the engine's index: [`Effect::Subscribe`]) and answered
//! `subscribed`, so the reply is a promise: every message published to a matching subject after
//! it reaches the connection. A pattern that cannot be confirmed (NATS down, no answer by the
//! deadline) is answered `{"op":"error","code":"unavailable"}` and not kept, so the client may
//! retry. A pattern that came with the connection (URL `?topics=`, the token's `user.<sub>`) has
//! no op to answer and its client typically sends none: rather than leave it connected and deaf,
//! the connection is closed with 1013 "Try Again Later" (RFC 6455 §7.4.1, IANA WebSocket close
//! code registry) and [`UNAVAILABLE_CLOSE_REASON`], so that it reconnects. Standalone (no NATS)
//! patterns are live at once and none of this applies.
//!
//! The reply is queued in the same engine step in which the pattern is added to the index (the
//! engine carries out [`Effect::Subscribe`] after the session returned, so after the reply is in
//! the outbox): a message routed for it afterwards is queued behind the reply, nothing for the
//! pattern reaches the connection before its `subscribed`, and nothing after the confirmation is
//! lost. `Subscribe` is pushed *before* the reply is queued: a reply that does not fit closes the
//! session as a slow consumer, whose `leave` then emits the matching `Unsubscribe` after it, so
//! the index never keeps an entry for a connection that left (a `Subscribe` after `Left` would
//! route that pattern to whichever connection reuses the slab key).

use std::time::Duration;

use super::{Cause, Clock, Effect, Limits, Session};
use crate::protocol::{self, ErrorCode};

/// Time a session gives the control plane past [`Limits::confirm`] before it stops waiting on
/// its own: the control plane answers by the deadline, so this only covers an answer lost (say
/// a shard inbox that refused it).
pub(crate) const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Close code for a connection whose own pattern could not be confirmed: 1013 Try Again Later
/// (IANA WebSocket close code registry; RFC 6455 §7.4.2 leaves 1000-2999 to it).
pub(crate) const UNAVAILABLE_CLOSE_CODE: u16 = 1013;
/// The reason sent with [`UNAVAILABLE_CLOSE_CODE`].
pub(crate) const UNAVAILABLE_CLOSE_REASON: &str = "subscription unavailable; reconnect";
/// `volley_protocol_closes` reason of that close.
pub(crate) const UNAVAILABLE_LABEL: &str = "subscription_unavailable";

/// What a pending pattern is answered once it is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Asked with a `sub` op: `subscribed` (with the epoch when it has history).
    Subscribed,
    /// A URL topic, or the `user.<sub>` a token adds: a reply only when it has history (the
    /// epoch), as those get none otherwise.
    EpochOnly,
    /// Resumed: the answer of its replay is its reply.
    Resumed,
    /// Resumed and answered already (say `recovered:false`, `no_history`, which the session
    /// knows at once): that answer, held until the pattern is live.
    Answered(Box<str>),
}

/// One pattern waiting for its confirmation.
#[derive(Debug)]
pub(crate) struct Pending {
    pattern: Box<str>,
    reply: Reply,
    /// Came with the connection (URL `?topics=`, the token's `user.<sub>`) and not asked for by
    /// any op since: a refusal then closes the connection (1013), as there is no op to answer.
    /// Its own flag, not inferred from `reply`: a URL resume (`?topics=x&since=N`) changes the
    /// reply to the replay's answer but the client still sent no op.
    with_connection: bool,
    /// Clock (ms) past which the session stops waiting.
    deadline_ms: u64,
}

/// The reply to a pattern that could not be made live.
pub(crate) fn unavailable_reply(pattern: &str) -> String {
    protocol::error(
        ErrorCode::Unavailable,
        Some(pattern),
        "the gateway could not confirm its NATS subscription for this pattern (NATS down or \
         slow); not subscribed, retry",
    )
}

impl Session {
    /// Whether `pattern` is held but not live yet.
    pub(crate) fn is_pending(&self, pattern: &str) -> bool {
        self.extra
            .as_ref()
            .is_some_and(|e| e.pending.iter().any(|p| *p.pattern == *pattern))
    }

    /// Patterns held but not live yet, in the order asked.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> Vec<&str> {
        self.extra
            .as_ref()
            .map(|e| e.pending.iter().map(|p| &*p.pattern).collect())
            .unwrap_or_default()
    }

    /// Holds `pattern` (already in `subs`) until it is confirmed, or makes it live now when the
    /// gateway needs no confirmation.
    pub(super) fn want(
        &mut self,
        pattern: &str,
        reply: Reply,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let Some(wait) = limits.confirm else {
            out.push(Effect::Subscribe(pattern.into()));
            return;
        };
        let deadline_ms = clock.ms() + (wait + ANSWER_GRACE).as_millis() as u64;
        let with_connection = reply == Reply::EpochOnly;
        self.extra
            .get_or_insert_with(Default::default)
            .pending
            .push(Pending {
                pattern: pattern.into(),
                reply,
                with_connection,
                deadline_ms,
            });
        out.push(Effect::Want(pattern.into()));
    }

    /// A `sub` op names `pattern`: should it be pending, it is no longer one that only came with
    /// the connection, so a refusal answers that op instead of closing the connection.
    pub(super) fn asked_by_op(&mut self, pattern: &str) {
        if let Some(p) = self
            .extra
            .as_deref_mut()
            .and_then(|e| e.pending.iter_mut().find(|p| *p.pattern == *pattern))
        {
            p.with_connection = false;
        }
    }

    /// A `sub` (`resumed`: with a position; the URL's `since` too) names a pattern already
    /// pending: its reply becomes that of the op (or of the replay). Returns whether it is
    /// pending (then its reply waits).
    pub(super) fn awaits(&mut self, pattern: &str, resumed: bool) -> bool {
        let Some(p) = self
            .extra
            .as_deref_mut()
            .and_then(|e| e.pending.iter_mut().find(|p| *p.pattern == *pattern))
        else {
            return false;
        };
        if resumed {
            if !matches!(p.reply, Reply::Answered(_)) {
                p.reply = Reply::Resumed;
            }
        } else if p.reply == Reply::EpochOnly {
            p.reply = Reply::Subscribed;
        }
        true
    }

    /// A resume answer for `pattern`: held back while the pattern is pending (it goes out once
    /// the pattern is live, or gives way to `unavailable`), else returned to be sent now.
    pub(super) fn hold_answer(&mut self, pattern: &str, reply: String) -> Option<String> {
        let pending = self
            .extra
            .as_deref_mut()
            .and_then(|e| e.pending.iter_mut().find(|p| *p.pattern == *pattern));
        match pending {
            Some(p) => {
                p.reply = Reply::Answered(reply.into());
                None
            }
            None => Some(reply),
        }
    }

    /// Forgets `pattern`'s pending entry; whether there was one.
    pub(super) fn forget_pending(&mut self, pattern: &str) -> bool {
        let Some(extra) = self.extra.as_deref_mut() else {
            return false;
        };
        let Some(i) = extra.pending.iter().position(|p| *p.pattern == *pattern) else {
            return false;
        };
        extra.pending.swap_remove(i);
        self.tidy_extra();
        true
    }

    /// The engine's answer for a pending `pattern`: `live` (the gateway's NATS subscription
    /// covering it is confirmed) makes it live, after its reply; otherwise it is dropped with an
    /// `unavailable` error. A pattern no longer pending (unsubscribed meanwhile) is ignored.
    pub(crate) fn on_confirmed(
        &mut self,
        pattern: &str,
        live: bool,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let Some(Pending {
            reply,
            with_connection,
            ..
        }) = self.take_pending(pattern)
        else {
            return;
        };
        if !self.is_open() {
            return;
        }
        if !live {
            self.remove_sub(pattern);
            self.refuse(pattern, with_connection, clock, limits, out);
            return;
        }
        // Before the reply (see the module docs): should the reply close the session, its
        // `leave` undoes this in the same list of effects.
        out.push(Effect::Subscribe(pattern.into()));
        let epoch = super::resume::epoch_for(limits, [pattern]);
        match reply {
            Reply::Subscribed => {
                let reply = protocol::subscribed_with_epoch(&[pattern], epoch.as_deref());
                self.reply(reply, clock, limits, out);
            }
            Reply::EpochOnly => {
                if let Some(epoch) = epoch {
                    let reply = protocol::subscribed_with_epoch(&[pattern], Some(&epoch));
                    self.reply(reply, clock, limits, out);
                }
            }
            Reply::Resumed => {}
            Reply::Answered(reply) => self.reply(reply.into(), clock, limits, out),
        }
    }

    /// Tells the client that `pattern` (already dropped) could not be made live: an error for
    /// an op, a 1013 close for a pattern that came with the connection.
    fn refuse(
        &mut self,
        pattern: &str,
        with_connection: bool,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        if with_connection {
            self.close(
                UNAVAILABLE_CLOSE_CODE,
                UNAVAILABLE_CLOSE_REASON,
                Cause::Unavailable,
                clock,
                out,
            );
        } else {
            self.reply(unavailable_reply(pattern), clock, limits, out);
        }
    }

    fn take_pending(&mut self, pattern: &str) -> Option<Pending> {
        let extra = self.extra.as_deref_mut()?;
        let i = extra.pending.iter().position(|p| *p.pattern == *pattern)?;
        let pending = extra.pending.swap_remove(i);
        self.tidy_extra();
        Some(pending)
    }

    /// The clock (ms) of the first pending deadline, if any: [`Session::next_tick`] wakes for it.
    pub(super) fn confirm_due_ms(&self) -> Option<u64> {
        let extra = self.extra.as_ref()?;
        extra.pending.iter().map(|p| p.deadline_ms).min()
    }

    /// Pending patterns whose answer did not come in time are given up on (checked on every
    /// tick): withdrawn and answered `unavailable`.
    pub(super) fn confirms_overdue(
        &mut self,
        clock: &Clock,
        limits: &Limits,
        out: &mut Vec<Effect>,
    ) {
        let now = clock.ms();
        let overdue: Vec<Box<str>> = match self.extra.as_deref() {
            Some(extra) => extra
                .pending
                .iter()
                .filter(|p| now >= p.deadline_ms)
                .map(|p| p.pattern.clone())
                .collect(),
            None => return,
        };
        for pattern in overdue {
            if !self.is_open() {
                // Closed by an earlier one: `leave` withdrew the rest.
                return;
            }
            let Some(pending) = self.take_pending(&pattern) else {
                continue;
            };
            self.remove_sub(&pattern);
            out.push(Effect::Withdraw(pattern.clone()));
            self.refuse(&pattern, pending.with_connection, clock, limits, out);
        }
    }
}

#[cfg(test)]
mod tests;
