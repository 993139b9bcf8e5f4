//! Cluster mode: which patterns a shard's connections want from the router, and whether the
//! router has confirmed the gateway's NATS subscription for each. The first connection to want a
//! pattern makes the shard ask the router (one ask, with a ticket); connections arriving while
//! that ask is out wait for the same answer; once confirmed, later ones are live at once. The last
//! connection to leave (live or still waiting) lowers the shard's interest. Pure bookkeeping: the
//! shard sends what this decides.

use std::collections::HashMap;

/// What the shard does for a connection that wants a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// First on this shard: ask the router, with this ticket (its answer carries it back).
    Ask(u64),
    /// An ask is out: wait for its answer.
    Wait,
    /// Confirmed already: live now.
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
    Asked { ticket: u64, waiting: Vec<usize> },
    Confirmed,
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
}

impl Interests {
    /// Connection `key` wants `pattern`.
    pub(crate) fn want(&mut self, pattern: &str, key: usize) -> Wanted {
        if let Some(entry) = self.map.get_mut(pattern) {
            entry.count += 1;
            return match &mut entry.state {
                State::Confirmed => Wanted::Ready,
                State::Asked { waiting, .. } => {
                    waiting.push(key);
                    Wanted::Wait
                }
            };
        }
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let state = State::Asked {
            ticket,
            waiting: vec![key],
        };
        self.map.insert(pattern.into(), Entry { count: 1, state });
        Wanted::Ask(ticket)
    }

    /// Connection `key` no longer waits for `pattern`. True when it was the last one wanting it.
    pub(crate) fn withdraw(&mut self, pattern: &str, key: usize) -> bool {
        let Some(entry) = self.map.get_mut(pattern) else {
            return false;
        };
        if let State::Asked { waiting, .. } = &mut entry.state {
            let Some(i) = waiting.iter().position(|&k| k == key) else {
                return false;
            };
            waiting.swap_remove(i);
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
    /// dropped (nobody holds the pattern live while an ask is out), so the pattern is gone.
    pub(crate) fn answer(&mut self, pattern: &str, ticket: u64, live: bool) -> Answered {
        let asked = match self.map.get(pattern) {
            Some(Entry {
                state: State::Asked { ticket: asked, .. },
                ..
            }) => *asked,
            _ => return Answered::default(),
        };
        if asked != ticket {
            return Answered::default();
        }
        let (state, last) = if live {
            let entry = self.map.get_mut(pattern);
            let state = entry.map(|e| std::mem::replace(&mut e.state, State::Confirmed));
            (state, false)
        } else {
            (self.map.remove(pattern).map(|e| e.state), true)
        };
        match state {
            Some(State::Asked { waiting, .. }) => Answered {
                keys: waiting,
                last,
            },
            _ => Answered::default(),
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
