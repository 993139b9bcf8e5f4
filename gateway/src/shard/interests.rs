//! Cluster mode: which patterns a shard's connections want from the router, and whether the
//! router has confirmed the gateway's NATS subscription for each. The first connection to want a
//! pattern makes the shard ask the router (one ask, with a ticket); connections arriving while
//! that ask is out wait for the same answer; once confirmed, later ones are live at once, but
//! only while the gateway-wide [`ConfirmEpoch`] has not moved since the ask (NATS disconnected,
//! or a feed was replaced): after that the next one asks the router again. The last connection to
//! leave (live or still waiting) lowers the shard's interest. Pure bookkeeping: the shard sends
//! what this decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Gateway-wide confirmation epoch: bumped when a confirmation given so far may no longer hold
/// (the gateway's NATS connection dropped, or the router replaced a held pattern's
/// feed). A shard answers a connection at once only from a confirmation whose ask was made in the
/// current epoch; the router keeps its own confirmations to the same rule.
///
/// The router tracks its own confirmations per pattern, so it reads only the disconnect count
/// ([`ConfirmEpoch::disconnects`]): a feed replacement ends that one pattern's confirmation in
/// the router (set to none) and moves the shards' epoch ([`ConfirmEpoch::bump_feed`]), with no
/// walk over the other held patterns.
#[derive(Debug, Default)]
pub(crate) struct ConfirmEpoch {
    all: AtomicU64,
    disconnects: AtomicU64,
}

impl ConfirmEpoch {
    /// The shards' epoch: moves on every disconnect and every feed replacement.
    pub(crate) fn current(&self) -> u64 {
        self.all.load(Ordering::Acquire)
    }

    /// The router's: moves on disconnects only.
    pub(crate) fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Acquire)
    }

    /// NATS disconnected: invalidates every confirmation given so far.
    pub(crate) fn bump(&self) {
        self.disconnects.fetch_add(1, Ordering::AcqRel);
        self.all.fetch_add(1, Ordering::AcqRel);
    }

    /// A held pattern's feed was replaced: shards ask the router again (it still vouches for the
    /// patterns whose feeds are untouched).
    pub(crate) fn bump_feed(&self) {
        self.all.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the shard does for a connection that wants a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// First on this shard: ask the router, with this ticket (its answer carries it back).
    Ask(u64),
    /// An ask is out: wait for its answer.
    Wait,
    /// Confirmed already (in the current epoch): live now.
    Ready,
}

/// The answer to an ask, applied.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answered {
    /// Connections that waited (each still waiting: a connection that stopped was withdrawn).
    pub keys: Vec<usize>,
    /// Nobody on the shard wants the pattern any more (the ask failed): lower interest.
    pub last: bool,
}

#[derive(Debug)]
struct Entry {
    /// Connections holding the pattern live, plus those waiting.
    count: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    /// An ask is out, made in `epoch`. Live holders may exist (a re-ask after the epoch moved).
    Asked {
        ticket: u64,
        epoch: u64,
        waiting: Waiters,
    },
    /// Confirmed for an ask made in `epoch`: good for new connections while it is current.
    Confirmed { epoch: u64 },
    /// Held live by connections confirmed earlier, but a re-ask failed: the next want asks.
    Unconfirmed,
}

/// Connections waiting on one ask, in a vector with each key's position beside it, so a
/// connection that stops waiting is taken out in O(1): a mass close while thousands wait on one
/// pattern (NATS slow, a drain) must not cost the shard loop a quadratic scan. A connection
/// waits at most once per pattern (its session wants a pattern once).
#[derive(Debug, Default)]
struct Waiters {
    keys: Vec<usize>,
    at: HashMap<usize, usize>,
}

impl Waiters {
    fn one(key: usize) -> Waiters {
        let mut waiters = Waiters::default();
        waiters.push(key);
        waiters
    }

    fn push(&mut self, key: usize) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.at.entry(key) {
            slot.insert(self.keys.len());
            self.keys.push(key);
        }
    }

    /// Whether `key` was waiting.
    fn remove(&mut self, key: usize) -> bool {
        let Some(i) = self.at.remove(&key) else {
            return false;
        };
        self.keys.swap_remove(i);
        if let Some(&moved) = self.keys.get(i) {
            self.at.insert(moved, i);
        }
        true
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// See the module docs. Memory: one entry per pattern some connection of the shard holds or
/// waits for, each waiting connection listed once per pattern (so bounded by connections times
/// `maxSubscriptionsPerConnection`).
#[derive(Debug, Default)]
pub(crate) struct Interests {
    map: HashMap<Box<str>, Entry>,
    /// Tickets are unique for the shard's life, so an answer to an ask that was since withdrawn
    /// and asked again is told apart from the answer to the new ask.
    next_ticket: u64,
    /// Shared with the router (a private one in unit tests).
    epoch: Arc<ConfirmEpoch>,
}

impl Interests {
    pub(crate) fn new(epoch: Arc<ConfirmEpoch>) -> Interests {
        Interests {
            epoch,
            ..Interests::default()
        }
    }

    /// Connection `key` wants `pattern`.
    pub(crate) fn want(&mut self, pattern: &str, key: usize) -> Wanted {
        let now = self.epoch.current();
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let asked = State::Asked {
            ticket,
            epoch: now,
            waiting: Waiters::one(key),
        };
        if let Some(entry) = self.map.get_mut(pattern) {
            entry.count += 1;
            return match &mut entry.state {
                State::Confirmed { epoch } if *epoch == now => Wanted::Ready,
                // Confirmed before NATS dropped or the feed was replaced: the holders stay (they
                // are told by a resume if anything was lost), a new one is not promised anything
                // until the router confirms again.
                State::Confirmed { .. } | State::Unconfirmed => {
                    entry.state = asked;
                    Wanted::Ask(ticket)
                }
                // Asked before NATS dropped or a feed was replaced: its answer may vouch for a
                // subscription that no longer holds, so it must not serve a connection that came
                // after. Ask again; everyone waiting waits for the new answer (the old one is
                // stale by its ticket).
                State::Asked { epoch, waiting, .. } if *epoch != now => {
                    let mut waiting = std::mem::take(waiting);
                    waiting.push(key);
                    entry.state = State::Asked {
                        ticket,
                        epoch: now,
                        waiting,
                    };
                    Wanted::Ask(ticket)
                }
                State::Asked { waiting, .. } => {
                    waiting.push(key);
                    Wanted::Wait
                }
            };
        }
        self.map.insert(
            pattern.into(),
            Entry {
                count: 1,
                state: asked,
            },
        );
        Wanted::Ask(ticket)
    }

    /// Connection `key` no longer waits for `pattern`. True when it was the last one wanting it.
    pub(crate) fn withdraw(&mut self, pattern: &str, key: usize) -> bool {
        let Some(entry) = self.map.get_mut(pattern) else {
            return false;
        };
        if let State::Asked { waiting, .. } = &mut entry.state
            && !waiting.remove(key)
        {
            return false;
        }
        self.drop_one(pattern)
    }

    /// A connection holding `pattern` live let go of it. True when it was the last one.
    pub(crate) fn release(&mut self, pattern: &str) -> bool {
        self.drop_one(pattern)
    }

    fn drop_one(&mut self, pattern: &str) -> bool {
        let Some(entry) = self.map.get_mut(pattern) else {
            return false;
        };
        entry.count = entry.count.saturating_sub(1);
        if entry.count > 0 {
            return false;
        }
        self.map.remove(pattern);
        true
    }

    /// The router's answer to ask `ticket` for `pattern`. A stale answer (the ask was withdrawn,
    /// or answered already) changes nothing. Confirmed: the waiters go live. Not: they are all
    /// dropped; the pattern is gone unless live holders from an earlier confirmation remain
    /// (then the next want asks again).
    pub(crate) fn answer(&mut self, pattern: &str, ticket: u64, live: bool) -> Answered {
        let Some(entry) = self.map.get_mut(pattern) else {
            return Answered::default();
        };
        let epoch = match &entry.state {
            State::Asked {
                ticket: asked,
                epoch,
                ..
            } if *asked == ticket => *epoch,
            _ => return Answered::default(),
        };
        // Recorded at the ask, not now: the epoch may have moved while the answer travelled,
        // and then this confirmation must not serve later connections.
        let state = std::mem::replace(&mut entry.state, State::Confirmed { epoch });
        let State::Asked { waiting, .. } = state else {
            return Answered::default();
        };
        let mut last = false;
        if !live {
            // The failed waiters no longer count; a holder confirmed earlier still does, and
            // the next want asks again.
            entry.state = State::Unconfirmed;
            entry.count = entry.count.saturating_sub(waiting.len());
            if entry.count == 0 {
                self.map.remove(pattern);
                last = true;
            }
        }
        Answered {
            keys: waiting.keys,
            last,
        }
    }

    /// Patterns wanted (live or waiting), for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests;
