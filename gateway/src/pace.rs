//! Even pacing of deliberate closes (drain, shed): how many of `total` connections should be
//! closed by a given moment so the last goes at the end of the window and clients spread their
//! reconnects instead of stampeding the remaining gateways.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub start: Instant,
    pub over: Duration,
    pub total: usize,
}

impl Pace {
    /// How many closes should have happened by `now` (never more than `total`).
    pub(crate) fn target(&self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= self.over || self.over.is_zero() {
            return self.total;
        }
        let fraction = elapsed.as_secs_f64() / self.over.as_secs_f64();
        ((self.total as f64 * fraction).ceil() as usize).min(self.total)
    }

    /// Whether the window, plus `grace`, is over.
    pub(crate) fn expired(&self, now: Instant, grace: Duration) -> bool {
        now.saturating_duration_since(self.start) >= self.over + grace
    }
}

#[cfg(test)]
mod tests;
