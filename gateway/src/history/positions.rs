//! The client side of resume, pure: what a client must remember to resume without loss (its
//! patterns, the epoch, and per pattern the last stream sequence it received) and the `sub` op
//! that resumes them. Used by the bundled example client and the tests; a reference for client
//! authors (docs/history.md).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::topic;

#[cfg(test)]
mod tests;

/// Positions of one client connection, carried over to the next connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    patterns: Vec<String>,
    epoch: Option<String>,
    since: BTreeMap<String, u64>,
}

impl Positions {
    /// Positions for a client subscribed to `patterns`.
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Positions {
        let mut p = Positions::default();
        for pattern in patterns {
            p.add(pattern);
        }
        p
    }

    /// Adds a subscribed pattern (no position until a message on it arrives).
    pub fn add(&mut self, pattern: String) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
        }
    }

    /// Removes an unsubscribed pattern and its position.
    pub fn remove(&mut self, pattern: &str) {
        self.patterns.retain(|p| p != pattern);
        self.since.remove(pattern);
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The last sequence received on `pattern`.
    pub fn since(&self, pattern: &str) -> Option<u64> {
        self.since.get(pattern).copied()
    }

    /// Notes one server text frame: a message with a `seq` moves the position of every
    /// subscribed pattern its topic matches; a reply carrying a different epoch drops every
    /// position (they belonged to a stream that no longer exists).
    pub fn observe(&mut self, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(epoch) = value.get("epoch").and_then(Value::as_str)
            && self.epoch.as_deref() != Some(epoch)
        {
            self.epoch = Some(epoch.to_owned());
            self.since.clear();
        }
        if let (Some(topic), Some(seq)) = (
            value.get("topic").and_then(Value::as_str),
            value.get("seq").and_then(Value::as_u64),
        ) {
            for pattern in &self.patterns {
                if topic::matches(pattern, topic) {
                    let at = self.since.entry(pattern.clone()).or_insert(0);
                    *at = (*at).max(seq);
                }
            }
        }
    }

    /// The op that subscribes every pattern again on a new connection, resuming those with a
    /// position: `{"op":"sub","topics":[..],"since":{..},"epoch":".."}` (a plain `sub` when there
    /// is no position yet).
    pub fn resume_op(&self) -> Value {
        if self.since.is_empty() || self.epoch.is_none() {
            return json!({"op": "sub", "topics": self.patterns});
        }
        json!({
            "op": "sub",
            "topics": self.patterns,
            "since": self.since,
            "epoch": self.epoch,
        })
    }
}
