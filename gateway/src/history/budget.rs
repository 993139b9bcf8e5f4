//! A per-connection budget of replays: each replay is JetStream API load (a stream info, a
//! consumer create and delete), and a client could otherwise resume and unsubscribe in a loop
//! to make its gateway drive thousands of JetStream API requests per second, slowing the resumes
//! of everybody else. Past its budget a connection's resumes are answered at once
//! (`recovered:false`, reason `limit`) without touching JetStream.
//!
//! Keyed by the connection's replay ticket (its serial: unique for the process's life), so it
//! needs nothing from the session. Entries of connections that are gone expire with their
//! window and are swept as the map grows.
//!
//! A new connection has a budget of its own, so a client looping connect-resume-close would get
//! around it: [`IpReplayBudget`] also bounds the replays of one client address (review 2,
//! finding 5), per shard, in a fixed number of slots.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window a budget is counted over.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before the first sweep of expired ones.
const FIRST_SWEEP_AT: usize = 1024;

#[derive(Debug)]
pub(crate) struct ReplayBudget {
    per_window: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Per ticket: when its window started and the replays taken in it.
    used: HashMap<u64, (Instant, usize)>,
    /// Sweep expired entries when the map reaches this size (doubling, so sweeps are amortised).
    sweep_at: usize,
}

impl ReplayBudget {
    /// At most `per_window` replays per connection per [`WINDOW`].
    pub(crate) fn new(per_window: usize) -> ReplayBudget {
        ReplayBudget {
            per_window,
            inner: Mutex::new(Inner {
                used: HashMap::new(),
                sweep_at: FIRST_SWEEP_AT,
            }),
        }
    }

    /// Takes one replay from `ticket`'s budget; false when it is spent for this window.
    pub(crate) fn take(&self, ticket: u64, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.used.len() >= inner.sweep_at {
            inner
                .used
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
            inner.sweep_at = (inner.used.len() * 2).max(FIRST_SWEEP_AT);
        }
        let entry = inner.used.entry(ticket).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// The connection is gone: its entry goes now rather than at the next sweep.
    pub(crate) fn forget(&self, ticket: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.used.remove(&ticket);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.inner.lock().unwrap().used.len()
    }
}

/// Slots of an [`IpReplayBudget`]: its memory is fixed (24 bytes a slot) whatever the number
/// of client addresses. Addresses that share a slot share its budget; with the shard's random
/// hash keys a client cannot pick whose slot it lands in, and with 1024 slots an address shares
/// its slot with a given other one about once in a thousand.
pub(crate) const IP_SLOTS: usize = 1024;

/// Replays per client address per [`WINDOW`], counted in hashed slots (see [`IP_SLOTS`]). A
/// shard's own (its connections of that address, which `SO_REUSEPORT` spreads over the shards),
/// so it needs no lock. IPv6 addresses count per /64, the block one host usually holds.
#[derive(Debug)]
pub(crate) struct IpReplayBudget {
    per_window: u32,
    hasher: std::collections::hash_map::RandomState,
    /// Per slot: when its window started and the replays taken in it. Allocated at the first
    /// replay, so a shard without history keeps none.
    slots: Vec<(Instant, u32)>,
}

impl IpReplayBudget {
    /// At most `per_window` replays per client address per [`WINDOW`].
    pub(crate) fn new(per_window: usize) -> IpReplayBudget {
        IpReplayBudget {
            per_window: u32::try_from(per_window).unwrap_or(u32::MAX),
            hasher: Default::default(),
            slots: Vec::new(),
        }
    }

    /// Takes one replay from `ip`'s budget; false when it is spent for this window.
    pub(crate) fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.slots.is_empty() {
            self.slots = vec![(now, 0); IP_SLOTS];
        }
        let at = (self.hasher.hash_one(client_key(ip)) % IP_SLOTS as u64) as usize;
        let slot = &mut self.slots[at];
        if now.saturating_duration_since(slot.0) >= WINDOW {
            *slot = (now, 0);
        }
        if slot.1 >= self.per_window {
            return false;
        }
        slot.1 += 1;
        true
    }
}

/// The address a budget is kept for: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            // The /64 prefix, tagged so it cannot equal an IPv4 key.
            None => (u128::from(v6) & !u128::from(u64::MAX)) | 1,
        },
    }
}

#[cfg(test)]
mod tests;
