//! The `history` section of the gateway config: which topics NATS JetStream keeps so clients can
//! resume, the stream's limits and the bounds of one replay. Every key is optional here; the
//! gateway resolves the defaults (docs/history.md) and needs `topics` to turn history on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where JetStream keeps the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    File,
    Memory,
}

/// `history: {topics, stream, maxMessagesPerTopic, maxAge, storage, replicas,
/// replayMaxMessages, replayMaxBytes, replayTimeout, maxConsumers}`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages_per_topic: Option<i64>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_max_messages: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_max_bytes: Option<usize>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub replay_timeout: Option<Duration>,
    /// Most JetStream live consumers (one per pattern with history) this gateway holds; past
    /// it a pattern is served live only (resume answers `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consumers: Option<usize>,
}
