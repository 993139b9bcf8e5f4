//! A per-connection budget of replays: each replay is JetStream API load (a stream info, a
//! consumer create and delete), and a client could otherwise resume and unsubscribe in a loop
//! to make its gateway drive thousands of JetStream API requests per second, slowing the resumes
//! of everybody else. Past its budget a connection's resumes are answered at once
//! (`recovered:false`, reason `limit`) without touching JetStream.
//!
//! Keyed by the connection's replay ticket (its serial: unique for the process's life), so it
//! needs nothing from the session. Entries of connections that are gone expire with their
//! window and are swept as the map grows.

use std::collections::HashMap;
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

#[cfg(test)]
mod tests;
