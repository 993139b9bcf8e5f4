//! Delivery accounting: what each client process received per phase, merged over processes,
//! and the loss against what the publisher's accepted messages should have produced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::Histogram;

#[cfg(test)]
mod tests;

/// What one or more client processes saw of one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTally {
    pub received: u64,
    /// Send-to-receive latency, microseconds.
    pub latency: Histogram,
}

/// Phase id → tally; phases are numbered by the parent.
pub type Tallies = BTreeMap<u32, PhaseTally>;

pub fn merge(into: &mut Tallies, from: &Tallies) {
    for (phase, tally) in from {
        let slot = into.entry(*phase).or_default();
        slot.received += tally.received;
        slot.latency.merge(&tally.latency);
    }
}

/// Expected vs received for one phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Loss {
    pub expected: u64,
    pub received: u64,
    /// Expected but never received.
    pub lost: u64,
    /// Received beyond what was expected (duplicates); must be 0.
    pub extra: u64,
    pub loss_ratio: f64,
}

impl Loss {
    pub fn new(expected: u64, received: u64) -> Loss {
        let lost = expected.saturating_sub(received);
        Loss {
            expected,
            received,
            lost,
            extra: received.saturating_sub(expected),
            loss_ratio: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
        }
    }
}

/// Expected deliveries of a publish: the topic's subscribers if the server accepted it.
pub fn expected_for(accepted: bool, subscribers: u64) -> u64 {
    if accepted { subscribers } else { 0 }
}
