//! Validates `spec.history` before it goes into the gateway config, so a spec the gateway would
//! refuse at start-up (crash-looping every pod) is an `InvalidSpec` condition instead.

use volley_crds::wire::config::history::{History, Storage};
use volley_crds::{HistorySpec, HistoryStorage};

use super::{SpecError, parse_duration};

fn bad(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError::BadHistory {
        field,
        message: message.into(),
    }
}

/// A topic pattern as the gateway accepts it: dot-separated non-empty tokens without
/// whitespace, `*` and `>` only as whole tokens, `>` only last, not reserved (`_`, `$`).
fn is_pattern(p: &str) -> bool {
    if p.is_empty() || p.len() > 256 || p.starts_with(['_', '$']) {
        return false;
    }
    let tokens: Vec<&str> = p.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.contains(char::is_whitespace)
            && (!t.contains(['*', '>']) || *t == "*" || (*t == ">" && i == tokens.len() - 1))
    })
}

/// Checks `history` (which needs NATS) and returns the gateway config's `history` section.
pub(super) fn validate(
    history: Option<&HistorySpec>,
    has_nats: bool,
) -> Result<Option<History>, SpecError> {
    let Some(h) = history else {
        return Ok(None);
    };
    if !has_nats {
        return Err(bad(
            "topics",
            "history is kept in NATS JetStream: set spec.nats",
        ));
    }
    if h.topics.is_empty() {
        return Err(bad("topics", "name at least one topic pattern"));
    }
    if let Some(t) = h.topics.iter().find(|t| !is_pattern(t)) {
        return Err(bad(
            "topics",
            format!("{t:?} is not a topic pattern (dot-separated tokens, '*' or a last '>')"),
        ));
    }
    if let Some(s) = &h.stream
        && (s.is_empty() || s.contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c)))
    {
        return Err(bad(
            "stream",
            format!("{s:?} is not a JetStream stream name"),
        ));
    }
    let max_age = h
        .max_age
        .as_deref()
        .map(|a| parse_duration("history.maxAge", a))
        .transpose()?;
    if max_age.is_some_and(|d| d.is_zero()) {
        return Err(bad("maxAge", "must be greater than zero"));
    }
    let replay_timeout = h
        .replay_timeout
        .as_deref()
        .map(|t| parse_duration("history.replayTimeout", t))
        .transpose()?;
    if replay_timeout.is_some_and(|d| d.is_zero()) {
        return Err(bad("replayTimeout", "must be greater than zero"));
    }
    let count = |field: &'static str, v: Option<i64>| -> Result<Option<usize>, SpecError> {
        // The schema says `minimum: 1` too, but the gateway refuses 0 at start-up, so a spec that
        // slipped past the API server (an older CRD) must not reach it.
        v.map(|n| {
            usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad(field, "must be at least 1"))
        })
        .transpose()
    };
    Ok(Some(History {
        topics: Some(h.topics.clone()),
        stream: h.stream.clone(),
        max_messages_per_topic: h.max_messages_per_topic,
        max_age,
        storage: h.storage.map(|s| match s {
            HistoryStorage::File => Storage::File,
            HistoryStorage::Memory => Storage::Memory,
        }),
        replicas: count("replicas", h.replicas.map(i64::from))?,
        replay_max_messages: count("replayMaxMessages", h.replay_max_messages)?,
        replay_max_bytes: count("replayMaxBytes", h.replay_max_bytes)?,
        replay_timeout,
        max_consumers: count("maxConsumers", h.max_consumers)?,
    }))
}

#[cfg(test)]
mod tests;
