//! Replay-then-live merge for one connection, pure (no IO, no clock): while the stored messages of
//! a resumed pattern are being fetched, live messages for the connection are held back in a
//! bounded buffer; when the replay arrives it goes out first, then the held messages minus those
//! the replay (or the client) already has, and from then on a live message is dropped when the
//! replay covered it. Stream sequences are what make this exact: a message the replay covered has
//! a sequence at most the replay's last one.

use std::collections::VecDeque;

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
    /// The hold buffer is full: every replay in flight is abandoned (the patterns are returned
    /// so the client can be told `recovered:false`), and these messages, the held ones followed
    /// by this one, go out now.
    Overflow {
        abandoned: Vec<Box<str>>,
        deliver: Vec<M>,
    },
}

/// What [`Merge::finish`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finished<M> {
    /// To deliver now, in order.
    pub deliver: Vec<M>,
    /// The replay did not fit in the connection's queue and was not applied.
    pub refused: bool,
}

/// The merge state of one connection. Exists only for connections that resumed.
#[derive(Debug)]
pub(crate) struct Merge<M> {
    /// Patterns whose replay is in flight.
    pending: Vec<Box<str>>,
    held: VecDeque<M>,
    held_bytes: usize,
    max_held_bytes: usize,
    /// `(pattern, through)`: live messages on the pattern at or below `through` are duplicates.
    floors: Vec<(Box<str>, u64)>,
}

impl<M: Positioned> Merge<M> {
    /// A merge whose hold buffer takes at most `max_held_bytes` (as the caller counts them).
    pub(crate) fn new(max_held_bytes: usize) -> Merge<M> {
        Merge {
            pending: Vec::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            max_held_bytes,
            floors: Vec::new(),
        }
    }

    /// A replay for `pattern` starts: live messages are held from now on until it is done.
    /// Returns false when one is already in flight for it (the new request is ignored).
    pub(crate) fn start(&mut self, pattern: &str) -> bool {
        if self.pending.iter().any(|p| **p == *pattern) {
            return false;
        }
        self.forget(pattern);
        self.pending.push(pattern.into());
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

    /// The client unsubscribed `pattern`: drop its floor (a pending replay is left to finish and
    /// be ignored by [`Merge::finish`], which the caller skips for unknown patterns).
    pub(crate) fn forget(&mut self, pattern: &str) {
        self.floors.retain(|(p, _)| **p != *pattern);
    }

    fn is_duplicate(&self, message: &M) -> bool {
        let Some(seq) = message.seq() else {
            return false;
        };
        self.floors
            .iter()
            .any(|(p, through)| seq <= *through && topic::matches(p, message.topic()))
    }

    /// Gives up every replay in flight (its answer is overdue): returns the abandoned patterns
    /// and the held messages, to deliver now in order.
    pub(crate) fn abandon(&mut self) -> (Vec<Box<str>>, Vec<M>) {
        self.held_bytes = 0;
        (
            std::mem::take(&mut self.pending),
            self.held.drain(..).collect(),
        )
    }

    /// A live message for this connection; `cost` is what holding it costs (its frame bytes),
    /// `room` what the connection can hold right now on top of what its queue has, the replays
    /// still to come set aside (the caller knows its queue): the hold buffer never takes more,
    /// so that releasing it on overflow fits the queue instead of closing the connection.
    pub(crate) fn on_live(&mut self, message: M, cost: usize, room: usize) -> Live<M> {
        if self.is_duplicate(&message) {
            return Live::Duplicate;
        }
        if self.pending.is_empty() {
            return Live::Deliver(message);
        }
        if self.held_bytes.saturating_add(cost) > self.max_held_bytes.min(room) {
            let abandoned = std::mem::take(&mut self.pending);
            let mut deliver: Vec<M> = self.held.drain(..).collect();
            deliver.push(message);
            self.held_bytes = 0;
            return Live::Overflow { abandoned, deliver };
        }
        self.held_bytes += cost;
        self.held.push_back(message);
        Live::Held
    }

    /// The replay of `pattern` ended. With `Some(replayed)` (recovered) its messages go out
    /// first and held duplicates are dropped; with `None` (not recovered) the pattern is simply
    /// no longer waited for. A replay that does not fit in `room` (what the connection's queue
    /// takes now) next to the held messages is refused like `None` (`refused` is set): queueing
    /// it would close the connection as a slow consumer, and the client would resume the same
    /// way again. Returns what to deliver now, in order (held messages only once no replay is in
    /// flight), or `None` when no replay of `pattern` was in flight (abandoned or unsubscribed
    /// meanwhile: the caller ignores the result).
    pub(crate) fn finish(
        &mut self,
        pattern: &str,
        replayed: Option<Replayed<M>>,
        cost: impl Fn(&M) -> usize,
        room: usize,
    ) -> Option<Finished<M>> {
        let at = self.pending.iter().position(|p| **p == *pattern)?;
        self.pending.swap_remove(at);
        let mut deliver = Vec::new();
        let replay_bytes = replayed
            .as_ref()
            .map_or(0, |r| r.messages.iter().map(&cost).sum::<usize>());
        let refused = replayed.is_some() && replay_bytes.saturating_add(self.held_bytes) > room;
        if let Some(replayed) = replayed.filter(|_| !refused) {
            deliver.extend(replayed.messages);
            self.floors.push((pattern.into(), replayed.through));
            let floors = &self.floors;
            let before = self.held.len();
            let mut kept_bytes = 0;
            self.held.retain(|m| {
                let dup = m.seq().is_some_and(|seq| {
                    floors
                        .iter()
                        .any(|(p, through)| seq <= *through && topic::matches(p, m.topic()))
                });
                if !dup {
                    kept_bytes += cost(m);
                }
                !dup
            });
            if self.held.len() != before {
                self.held_bytes = kept_bytes;
            }
        }
        if self.pending.is_empty() {
            deliver.extend(self.held.drain(..));
            self.held_bytes = 0;
        }
        Some(Finished { deliver, refused })
    }
}
