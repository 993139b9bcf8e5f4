//! Replay-then-live merge for one connection, pure (no IO, no clock): while the stored messages of
//! the resumed patterns are being fetched, live messages for the connection are held back in a
//! bounded buffer; once no replay is in flight the replays and the held messages go out merged in
//! stream order, each message once, minus those the client already has, and from then on a live
//! message is dropped when a replay covered it. Stream sequences are what make this exact: a
//! message a replay covered has a sequence at most the replay's last one, and one sequence is one
//! message whichever pattern it came through.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::topic;

#[cfg(test)]
mod tests;

/// What the merge needs to know of a message.
pub(crate) trait Positioned {
    fn topic(&self) -> &str;
    /// The JetStream stream sequence; `None` for a message that did not come through history.
    fn seq(&self) -> Option<u64>;
}

/// A replay as the control plane delivered it, for one pattern.
#[derive(Debug, Clone)]
pub(crate) struct Replayed<M> {
    /// Stored messages on the pattern with sequence in `(since, through]`, in order.
    pub messages: Vec<M>,
    /// The replay is complete up to this sequence: every stored message on the pattern at or
    /// below it is either in `messages` or was already the client's (at or below `since`).
    pub through: u64,
}

/// What to do with one live message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Live<M> {
    /// Deliver it now.
    Deliver(M),
    /// Held until the replays in flight are done.
    Held,
    /// A replay already delivered it (or the client had it): drop.
    Duplicate,
    /// The hold buffer is full: every replay in flight or waiting to go out is abandoned (the
    /// patterns are returned so the client can be told `recovered:false`), and these messages,
    /// the held ones followed by this one, go out now.
    Overflow {
        abandoned: Vec<Box<str>>,
        deliver: Vec<M>,
    },
}

/// What [`Merge::finish`] decided. Empty while other replays are still in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Release<M> {
    /// Patterns whose replay went out: how many messages on each were replayed, and the epoch
    /// the replay was read in.
    pub recovered: Vec<(Box<str>, usize, Option<Arc<str>>)>,
    /// Patterns whose replays did not fit in the connection's queue next to the held messages
    /// and were not sent (queueing them would close the connection as a slow consumer, and the
    /// client would resume the same way again).
    pub refused: Vec<Box<str>>,
    /// To deliver now, in order.
    pub deliver: Vec<M>,
}

/// A recovered replay's pattern, `since`, `through` and epoch.
type Span = (Box<str>, u64, u64, Option<Arc<str>>);

/// A replay in flight.
#[derive(Debug)]
struct Pending {
    pattern: Box<str>,
    since: u64,
}

/// A replay that arrived while others were still in flight: kept until none is, so all go out
/// merged.
#[derive(Debug)]
struct Done<M> {
    pattern: Box<str>,
    since: u64,
    replayed: Replayed<M>,
    epoch: Option<Arc<str>>,
}

/// Live messages on `pattern` at or below `through` are duplicates, as long as the stream is
/// still the one of `epoch`: a recreated stream restarts its sequences at 1, and a floor of the
/// old one would drop every new message below it.
#[derive(Debug)]
struct Floor {
    pattern: Box<str>,
    through: u64,
    epoch: Option<Arc<str>>,
}

impl Floor {
    fn covers<M: Positioned>(&self, m: &M) -> bool {
        m.seq()
            .is_some_and(|seq| seq <= self.through && topic::matches(&self.pattern, m.topic()))
    }
}

/// The merge state of one connection. Exists only for connections that resumed.
#[derive(Debug)]
pub(crate) struct Merge<M> {
    pending: Vec<Pending>,
    done: Vec<Done<M>>,
    /// What the replays in `done` will take in the queue (as the caller counts them).
    done_bytes: usize,
    held: VecDeque<M>,
    held_bytes: usize,
    max_held_bytes: usize,
    floors: Vec<Floor>,
}

impl<M: Positioned> Merge<M> {
    /// A merge whose hold buffer takes at most `max_held_bytes` (as the caller counts them).
    pub(crate) fn new(max_held_bytes: usize) -> Merge<M> {
        Merge {
            pending: Vec::new(),
            done: Vec::new(),
            done_bytes: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            max_held_bytes,
            floors: Vec::new(),
        }
    }

    /// A replay for `pattern` after position `since` starts: live messages are held from now on
    /// until it is done. Returns false when one is already in flight for it (the new request is
    /// ignored).
    pub(crate) fn start(&mut self, pattern: &str, since: u64) -> bool {
        if self.pending.iter().any(|p| *p.pattern == *pattern) {
            return false;
        }
        self.forget(pattern);
        self.pending.push(Pending {
            pattern: pattern.into(),
            since,
        });
        true
    }

    /// Whether any replay is in flight.
    pub(crate) fn is_replaying(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether this merge still affects delivery (a replay in flight, or floors to apply).
    pub(crate) fn is_active(&self) -> bool {
        !self.pending.is_empty() || !self.floors.is_empty()
    }

    /// Messages held right now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// The client unsubscribed `pattern`: drop its floor and a replay of it waiting to go out (a
    /// pending replay is left to finish and be ignored by [`Merge::finish`], which the caller
    /// skips for unknown patterns).
    pub(crate) fn forget(&mut self, pattern: &str) {
        self.floors.retain(|f| *f.pattern != *pattern);
        self.done.retain(|d| *d.pattern != *pattern);
        // Otherwise `done_bytes` stays an upper bound (the caller's measure is not kept).
        if self.done.is_empty() {
            self.done_bytes = 0;
        }
    }

    /// Drops the held messages `keep` refuses (the client no longer holds a pattern matching
    /// them), giving back their `cost` in the hold buffer.
    pub(crate) fn retain_held(&mut self, keep: impl Fn(&M) -> bool, cost: impl Fn(&M) -> usize) {
        let mut freed = 0usize;
        self.held.retain(|m| {
            let kept = keep(m);
            if !kept {
                freed = freed.saturating_add(cost(m));
            }
            kept
        });
        self.held_bytes = self.held_bytes.saturating_sub(freed);
    }

    /// Whether a floor covers `message`; floors of another epoch than the stream's current one
    /// (asked only when a floor would drop the message) are retired first.
    fn is_duplicate(&mut self, message: &M, epoch: impl FnOnce() -> Option<Arc<str>>) -> bool {
        if !self.floors.iter().any(|f| f.covers(message)) {
            return false;
        }
        let now = epoch();
        self.floors.retain(|f| f.epoch == now);
        self.floors.iter().any(|f| f.covers(message))
    }

    /// Gives up every replay in flight (an answer is overdue) and those waiting to go out with
    /// them: returns the abandoned patterns and the held messages, to deliver now in order.
    pub(crate) fn abandon(&mut self) -> (Vec<Box<str>>, Vec<M>) {
        self.held_bytes = 0;
        (self.give_up(), self.held.drain(..).collect())
    }

    fn give_up(&mut self) -> Vec<Box<str>> {
        self.done_bytes = 0;
        let mut abandoned: Vec<Box<str>> = self.pending.drain(..).map(|p| p.pattern).collect();
        abandoned.extend(self.done.drain(..).map(|d| d.pattern));
        abandoned
    }

    /// A live message for this connection; `cost` is what holding it costs (its frame bytes),
    /// `room` what the connection can take right now on top of what its queue has, the replays
    /// still to come set aside (the caller knows its queue): held messages and the replays
    /// waiting to go out never take more, so that releasing them fits the queue instead of
    /// closing the connection. `epoch` is the stream's current epoch (see [`Floor`]).
    pub(crate) fn on_live(
        &mut self,
        message: M,
        cost: usize,
        room: usize,
        epoch: impl FnOnce() -> Option<Arc<str>>,
    ) -> Live<M> {
        if self.is_duplicate(&message, epoch) {
            return Live::Duplicate;
        }
        if self.pending.is_empty() {
            return Live::Deliver(message);
        }
        let held = self.held_bytes.saturating_add(cost);
        if held > self.max_held_bytes || held.saturating_add(self.done_bytes) > room {
            let abandoned = self.give_up();
            let mut deliver: Vec<M> = self.held.drain(..).collect();
            deliver.push(message);
            self.held_bytes = 0;
            return Live::Overflow { abandoned, deliver };
        }
        self.held_bytes = held;
        self.held.push_back(message);
        Live::Held
    }

    /// The replay of `pattern` ended: `Some(replayed)` read in `epoch` (recovered), or `None`
    /// (not recovered: the pattern is simply no longer waited for). While other replays are in
    /// flight a recovered one is kept. Once none is, the replays kept and the held messages go
    /// out (see [`Release`]), if they fit in `room` (what the connection's queue takes now):
    /// replayed and held messages with a position merged in stream order, each once, without
    /// those at or below a resumed pattern's `since` (the client has them) or a floor; then
    /// held messages without a position, in arrival order. Returns `None` when no replay of
    /// `pattern` was in flight (abandoned or unsubscribed meanwhile: the caller ignores it).
    pub(crate) fn finish(
        &mut self,
        pattern: &str,
        replayed: Option<Replayed<M>>,
        epoch: Option<Arc<str>>,
        cost: impl Fn(&M) -> usize,
        room: usize,
    ) -> Option<Release<M>> {
        let at = self.pending.iter().position(|p| *p.pattern == *pattern)?;
        let Pending { pattern, since } = self.pending.swap_remove(at);
        if let Some(replayed) = replayed {
            self.done_bytes = self
                .done_bytes
                .saturating_add(replayed.messages.iter().map(&cost).sum::<usize>());
            self.done.push(Done {
                pattern,
                since,
                replayed,
                epoch,
            });
        }
        let mut release = Release {
            recovered: Vec::new(),
            refused: Vec::new(),
            deliver: Vec::new(),
        };
        if !self.pending.is_empty() {
            return Some(release);
        }
        let done = std::mem::take(&mut self.done);
        let done_bytes = std::mem::take(&mut self.done_bytes);
        let held_bytes = std::mem::take(&mut self.held_bytes);
        let held: Vec<M> = self.held.drain(..).collect();
        if done_bytes.saturating_add(held_bytes) > room {
            release.refused = done.into_iter().map(|d| d.pattern).collect();
            release.deliver = held;
            return Some(release);
        }
        // Floors of another stream than the one these replays were read in are void.
        if let Some(current) = done.last().map(|d| d.epoch.clone()) {
            self.floors.retain(|f| f.epoch == current);
        }
        for d in &done {
            self.floors.push(Floor {
                pattern: d.pattern.clone(),
                through: d.replayed.through,
                epoch: d.epoch.clone(),
            });
        }
        let mut counted: Vec<Span> = done
            .iter()
            .map(|d| {
                (
                    d.pattern.clone(),
                    d.since,
                    d.replayed.through,
                    d.epoch.clone(),
                )
            })
            .collect();
        // A message the client has by the position of any pattern it resumed (its `since`).
        let known = |m: &M| {
            let seq = m.seq().unwrap_or(0);
            counted
                .iter()
                .any(|(p, since, _, _)| seq <= *since && topic::matches(p, m.topic()))
        };
        let mut ordered: Vec<M> = Vec::new();
        let mut unordered: Vec<M> = Vec::new();
        for d in done {
            ordered.extend(d.replayed.messages.into_iter().filter(|m| !known(m)));
        }
        for m in held {
            if m.seq().is_none() {
                unordered.push(m);
            } else if !self.floors.iter().any(|f| f.covers(&m)) {
                ordered.push(m);
            }
        }
        // Stable: copies of one sequence are one message; the first is kept.
        ordered.sort_by_key(|m| m.seq());
        ordered.dedup_by_key(|m| m.seq());
        release.recovered = counted
            .drain(..)
            .map(|(pattern, since, through, epoch)| {
                let n = ordered
                    .iter()
                    .filter(|m| {
                        m.seq().is_some_and(|s| s > since && s <= through)
                            && topic::matches(&pattern, m.topic())
                    })
                    .count();
                (pattern, n, epoch)
            })
            .collect();
        release.deliver = ordered;
        release.deliver.extend(unordered);
        Some(release)
    }
}
