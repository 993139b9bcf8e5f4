//! History and recovery over NATS JetStream: topics matching the configured patterns are stored
//! in one stream, delivered with their stream sequence, and a client that reconnects with the
//! last sequence it saw gets what it missed replayed before it goes live again.
//!
//! [`config`] is the `history` block, [`merge`] the pure replay-then-live merge of one
//! connection, [`store`] the JetStream side (stream, publish, live consumers, replays). This
//! module holds the types the shards and the control plane exchange.

use std::sync::Arc;

use crate::message::Message;

pub(crate) mod budget;
pub mod config;
pub(crate) mod merge;
pub mod positions;
pub(crate) mod store;

pub use config::{HistoryConfig, HistoryFile, Storage};

/// Why a resume was not recovered. Each has a stable label, sent to the client as `reason` and
/// used in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRecovered {
    /// The stream was recreated since the client's position was taken (or no epoch was given).
    EpochChanged,
    /// The stream no longer holds the client's position: what followed may be lost.
    TooOld,
    /// The position is past the end of the stream: not one this stream gave out.
    BadPosition,
    /// The pattern is not (entirely) covered by history.
    NoHistory,
    /// JetStream is unavailable right now: the subscription is served live only.
    Unavailable,
    /// More was missed than one replay may carry (`replayMaxMessages` / `replayMaxBytes`).
    Limit,
    /// The replay did not finish within `replayTimeout`.
    Timeout,
    /// Live traffic for the connection overflowed the hold buffer during the replay.
    Overflow,
}

impl NotRecovered {
    pub(crate) fn label(self) -> &'static str {
        match self {
            NotRecovered::EpochChanged => "epoch_changed",
            NotRecovered::TooOld => "too_old",
            NotRecovered::BadPosition => "bad_position",
            NotRecovered::NoHistory => "no_history",
            NotRecovered::Unavailable => "unavailable",
            NotRecovered::Limit => "limit",
            NotRecovered::Timeout => "timeout",
            NotRecovered::Overflow => "overflow",
        }
    }

    /// What the client is told: what happened and what it gets instead.
    pub(crate) fn message(self) -> &'static str {
        match self {
            NotRecovered::EpochChanged => {
                "the history was reset (epoch changed); live messages only, reset your state"
            }
            NotRecovered::TooOld => {
                "history no longer reaches back to that position; live messages only"
            }
            NotRecovered::BadPosition => "position unknown to this history; live messages only",
            NotRecovered::NoHistory => "this topic has no history; live messages only",
            NotRecovered::Unavailable => "history (JetStream) is unavailable; live messages only",
            NotRecovered::Limit => {
                "more was missed than one replay carries (or this connection resumed too often); \
                 live messages only"
            }
            NotRecovered::Timeout => "the replay timed out; live messages only",
            NotRecovered::Overflow => "too much live traffic during the replay; live messages only",
        }
    }
}

impl merge::Positioned for Arc<Message> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }
    fn seq(&self) -> Option<u64> {
        Message::seq(self)
    }
}

/// What a shard knows of history: the config (which patterns are covered) and the live state
/// (the epoch for subscribe replies).
#[derive(Debug, Clone)]
pub(crate) struct ShardHistory {
    pub(crate) config: Arc<HistoryConfig>,
    pub(crate) state: Arc<store::HistoryState>,
}

/// A shard asks the control plane for the stored messages a resuming connection missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplayRequest {
    pub(crate) shard: usize,
    /// The connection's slab key and serial (keys are reused; the serial is not).
    pub(crate) key: usize,
    pub(crate) serial: u64,
    pub(crate) pattern: Box<str>,
    pub(crate) since: u64,
    pub(crate) epoch: Option<String>,
}

/// The control plane's answer, handed back to the shard through its inbox.
#[derive(Debug)]
pub(crate) struct ReplayDone {
    pub(crate) key: usize,
    pub(crate) serial: u64,
    pub(crate) pattern: Box<str>,
    /// The stream's current epoch, when known.
    pub(crate) epoch: Option<Arc<str>>,
    pub(crate) outcome: Result<merge::Replayed<Arc<Message>>, NotRecovered>,
}
