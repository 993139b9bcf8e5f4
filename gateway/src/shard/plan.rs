//! Closing connections on purpose, paced over a window: a drain (all, 1001, then the shard exits)
//! or a shed (some, 1012, for rebalancing). Pure bookkeeping; the shard does the closing.

use std::time::{Duration, Instant};

use crate::pace::Pace;

/// Close reason of a shed (1012): the client should reconnect (the Service steers it to a less
/// loaded pod) and resume with `since`, losing nothing (docs/history.md).
pub(super) const SHED_REASON: &str = "rebalance; reconnect and resume";
/// Close reason of a drain (1001, SIGTERM or the operator's drain before a scale-down).
pub(super) const DRAIN_REASON: &str = "server shutting down; reconnect and resume";

pub(super) struct Plan {
    pace: Pace,
    done: usize,
    code: u16,
    reason: &'static str,
}

impl Plan {
    pub(super) fn new(
        start: Instant,
        over: Duration,
        total: usize,
        code: u16,
        reason: &'static str,
    ) -> Plan {
        Plan {
            pace: Pace { start, over, total },
            done: 0,
            code,
            reason,
        }
    }

    /// Whether the window, plus `grace`, is over.
    pub(super) fn expired(&self, now: Instant, grace: Duration) -> bool {
        self.pace.expired(now, grace)
    }

    pub(super) fn is_done(&self) -> bool {
        self.done >= self.pace.total
    }
}

/// How many closes a plan has due now; counts them as done.
pub(super) fn take_due(
    plan: &mut Option<Plan>,
    now: Instant,
) -> Option<(usize, u16, &'static str)> {
    let p = plan.as_mut()?;
    let due = p.pace.target(now).saturating_sub(p.done);
    p.done += due;
    (due > 0).then_some((due, p.code, p.reason))
}
