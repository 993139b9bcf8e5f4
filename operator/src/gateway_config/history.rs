//! Validates `spec.history` before it goes into the gateway config, so a spec the gateway would
//! refuse at start-up (crash-looping every pod) is an `InvalidSpec` condition instead.

use volley_crds::HistorySpec;

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

/// Checks `history` (which needs NATS) and returns what to render.
pub(super) fn validate(
    history: Option<&HistorySpec>,
    has_nats: bool,
) -> Result<Option<HistorySpec>, SpecError> {
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
    if let Some(age) = &h.max_age
        && parse_duration("history.maxAge", age)?.is_zero()
    {
        return Err(bad("maxAge", "must be greater than zero"));
    }
    if let Some(t) = &h.replay_timeout
        && parse_duration("history.replayTimeout", t)?.is_zero()
    {
        return Err(bad("replayTimeout", "must be greater than zero"));
    }
    Ok(Some(h.clone()))
}

#[cfg(test)]
mod tests;
