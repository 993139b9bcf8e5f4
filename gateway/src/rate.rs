//! The per-connection client message rate limit, as pure window arithmetic shared by both engines.
//!
//! Every client frame counts: ops, binary frames, pings and pongs, and each frame of a fragmented
//! message. Windows are one second long.
//! The first window starts at the connection's first message (not at a clock tick, so it is never
//! a fraction of a second), and while messages keep coming each next window starts exactly where
//! the previous one ended. A window with more than `limit` messages is *over*: the messages past
//! the limit are dropped (the first of them gets an error reply). When a third window in a row goes
//! over, the connection is closed: never sooner than two full seconds after the flood began.

/// Windows in a row that must already have gone over before an over-limit message closes the
/// connection (the current window being the next one).
const STRIKES_TO_CLOSE: u8 = 2;
const WINDOW_MS: u32 = 1_000;

/// Rate state of one connection: 12 bytes, no heap.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RateLimit {
    /// Start of the current window on the caller's millisecond clock (wrapping; only
    /// differences are used, and a connection is never silent for 49 days and still open).
    start_ms: u32,
    /// Messages in the current window; 0 means no window is open yet. As wide as the `u32`
    /// limit: a `u16` saturated at 65,535 and then let everything through under a limit of
    /// 65,535 or more.
    count: u32,
    /// Windows in a row, right before the current one, that went over the limit.
    strikes: u8,
}

/// What the limit says about one client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Over the limit in this window: drop it; `first` is true for the first one dropped, which
    /// gets an error reply.
    Deny {
        first: bool,
    },
    /// Over the limit for the third window in a row: close the connection (1008).
    Close,
}

impl RateLimit {
    /// Counts one message arriving at `now_ms` against `limit` messages per second.
    pub(crate) fn check(&mut self, now_ms: u64, limit: u32) -> Verdict {
        let now = now_ms as u32;
        if self.count == 0 {
            self.start_ms = now;
        } else {
            let elapsed = now.wrapping_sub(self.start_ms);
            if elapsed >= WINDOW_MS {
                let went_over = self.count > limit;
                if went_over && elapsed < 2 * WINDOW_MS {
                    // The next window follows on without a gap: the flood goes on.
                    self.strikes = self.strikes.saturating_add(1);
                    self.start_ms = self.start_ms.wrapping_add(WINDOW_MS);
                } else {
                    self.strikes = 0;
                    self.start_ms = now;
                }
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        let count = self.count;
        if count <= limit {
            Verdict::Allow
        } else if self.strikes >= STRIKES_TO_CLOSE {
            Verdict::Close
        } else {
            Verdict::Deny {
                first: count - 1 == limit,
            }
        }
    }
}

#[cfg(test)]
mod tests;
