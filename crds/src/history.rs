//! `spec.history` of a PushCluster: which topics NATS JetStream keeps so clients can resume
//! after a reconnect (shed, drain, rollout, a lost pod) without losing messages. The operator
//! renders it into the gateway config's `history` block; defaults are the gateway's
//! (docs/history.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// JetStream history for some topics (requires `spec.nats` and a NATS server with JetStream).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Topic patterns whose messages are stored, e.g. `news.>`, `scores.*`.
    #[schemars(length(min = 1))]
    pub topics: Vec<String>,
    /// JetStream stream name [gateway default: `VOLLEY_HISTORY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Messages kept per topic (per concrete subject) [gateway default: 1000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages_per_topic: Option<i64>,
    /// How long a message is kept, e.g. `24h` [gateway default: 24h].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Where JetStream keeps the messages [gateway default: file].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<HistoryStorage>,
    /// Stream replicas (1 to 5; more than 1 needs a clustered JetStream) [gateway default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i32>,
    /// Most messages one resume replays; past it the client is told `recovered:false`
    /// [gateway default: 1000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replay_max_messages: Option<i64>,
    /// Most payload bytes one resume replays (at most `gateway.maxPendingBytes`)
    /// [gateway default: 524288].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replay_max_bytes: Option<i64>,
    /// Deadline of one replay, e.g. `5s` [gateway default: 5s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_timeout: Option<String>,
    /// Most JetStream live consumers (one per subscribed pattern with history) one gateway pod
    /// holds; past it a pattern is served live only and a resume on it answers `unavailable`
    /// [gateway default: 1000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_consumers: Option<i64>,
}

/// JetStream storage type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryStorage {
    /// On disk (survives a NATS restart).
    File,
    /// In memory.
    Memory,
}
