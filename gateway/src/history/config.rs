//! The `history` block of the gateway config: which topic patterns JetStream keeps, the stream's
//! limits, and the bounds of one replay. Parsed from YAML (`history: {...}`) and the
//! `--history-topics` flag, then resolved into a validated [`HistoryConfig`].

use std::time::Duration;

use crate::topic;

use volley_wire::config::defaults as d;

/// Default JetStream stream name.
pub const DEFAULT_STREAM: &str = d::HISTORY_STREAM;
/// Default messages kept per subject (per concrete topic).
pub const DEFAULT_MAX_MESSAGES_PER_TOPIC: i64 = d::HISTORY_MAX_MESSAGES_PER_TOPIC;
/// Default age after which JetStream discards a message.
pub const DEFAULT_MAX_AGE: Duration = d::HISTORY_MAX_AGE;
/// Default stream replicas (one: a single `nats-server -js` is enough).
pub const DEFAULT_REPLICAS: usize = d::HISTORY_REPLICAS;
/// Default most messages one resume replays; past it the client gets `recovered:false`.
pub const DEFAULT_REPLAY_MAX_MESSAGES: usize = d::HISTORY_REPLAY_MAX_MESSAGES;
/// Default most bytes (payloads) one resume replays.
pub const DEFAULT_REPLAY_MAX_BYTES: usize = d::HISTORY_REPLAY_MAX_BYTES;
/// Default deadline of one replay, from the request to the last stored message.
pub const DEFAULT_REPLAY_TIMEOUT: Duration = d::HISTORY_REPLAY_TIMEOUT;
/// Default most JetStream live consumers per gateway.
pub const DEFAULT_MAX_CONSUMERS: usize = d::HISTORY_MAX_CONSUMERS;

pub use volley_wire::config::history::{History as HistoryFile, Storage};

/// History, resolved: present only when at least one topic pattern is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Topic patterns (without the subject prefix) whose messages are stored.
    pub topics: Vec<String>,
    pub stream: String,
    pub max_messages_per_topic: i64,
    pub max_age: Duration,
    pub storage: Storage,
    pub replicas: usize,
    pub replay_max_messages: usize,
    pub replay_max_bytes: usize,
    pub replay_timeout: Duration,
    /// Most JetStream live consumers (patterns with history) this gateway holds at once: each
    /// is a consumer on the server. Past it a pattern is served live only.
    pub max_consumers: usize,
}

/// A `history` value the gateway refuses; `key` is the camelCase key under `history`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `history.{key}`: {message}")]
pub struct HistoryConfigError {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> HistoryConfigError {
    HistoryConfigError {
        key,
        message: message.into(),
    }
}

impl HistoryConfig {
    /// Resolves the file block and the `--history-topics` flag (which wins for `topics`).
    /// `None` when no topic has history.
    pub fn resolve(
        file: Option<HistoryFile>,
        flag_topics: Option<Vec<String>>,
    ) -> Result<Option<HistoryConfig>, HistoryConfigError> {
        let file = file.unwrap_or_default();
        let topics: Vec<String> = flag_topics
            .or(file.topics)
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Ok(None);
        }
        let config = HistoryConfig {
            topics,
            stream: file.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned()),
            max_messages_per_topic: file
                .max_messages_per_topic
                .unwrap_or(DEFAULT_MAX_MESSAGES_PER_TOPIC),
            max_age: file.max_age.unwrap_or(DEFAULT_MAX_AGE),
            storage: file.storage.unwrap_or_default(),
            replicas: file.replicas.unwrap_or(DEFAULT_REPLICAS),
            replay_max_messages: file
                .replay_max_messages
                .unwrap_or(DEFAULT_REPLAY_MAX_MESSAGES),
            replay_max_bytes: file.replay_max_bytes.unwrap_or(DEFAULT_REPLAY_MAX_BYTES),
            replay_timeout: file.replay_timeout.unwrap_or(DEFAULT_REPLAY_TIMEOUT),
            max_consumers: file.max_consumers.unwrap_or(DEFAULT_MAX_CONSUMERS),
        };
        config.validate()?;
        Ok(Some(config))
    }

    fn validate(&self) -> Result<(), HistoryConfigError> {
        for t in &self.topics {
            topic::validate_pattern(t).map_err(|e| invalid("topics", format!("{t:?}: {e}")))?;
        }
        // JetStream stream names: no whitespace, '.', '*', '>', path separators.
        // https://docs.nats.io/nats-concepts/jetstream/streams (Naming).
        if self.stream.is_empty()
            || self.stream.len() > 255
            || self
                .stream
                .contains(|c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(invalid(
                "stream",
                "a JetStream stream name: non-empty, no spaces, '.', '*', '>', '/' or '\\'",
            ));
        }
        if self.max_messages_per_topic < 1 {
            return Err(invalid("maxMessagesPerTopic", "must be at least 1"));
        }
        if self.max_age.is_zero() {
            return Err(invalid("maxAge", "must be greater than zero"));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid("replicas", "JetStream allows 1 to 5 replicas"));
        }
        if self.replay_max_messages == 0 {
            return Err(invalid("replayMaxMessages", "must be at least 1"));
        }
        if self.replay_max_bytes == 0 {
            return Err(invalid("replayMaxBytes", "must be at least 1"));
        }
        if self.max_consumers == 0 {
            return Err(invalid("maxConsumers", "must be at least 1"));
        }
        if self.replay_timeout.is_zero() {
            return Err(invalid("replayTimeout", "must be greater than zero"));
        }
        Ok(())
    }

    /// Whether messages on `topic` (a concrete subject, no wildcard) are stored.
    pub fn covers_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| topic::matches(p, topic))
    }

    /// Whether every subject `pattern` can match is stored, so a subscription to it can be
    /// consumed through JetStream and resumed. A pattern only partly covered (say `news.>`
    /// when only `news.eu.>` has history) is served live only.
    pub fn covers_pattern(&self, pattern: &str) -> bool {
        self.topics.iter().any(|p| pattern_within(pattern, p))
    }
}

/// Whether every subject matching `inner` also matches `outer` (NATS wildcard rules: `*` one
/// token, `>` one or more trailing tokens).
pub fn pattern_within(inner: &str, outer: &str) -> bool {
    let mut a = inner.split('.');
    let mut b = outer.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(_), Some(">")) => return true,
            (Some(">"), Some(_)) => return false,
            (Some("*"), Some("*")) => {}
            (Some("*"), Some(_)) => return false,
            (Some(x), Some(y)) if y == "*" || x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;
