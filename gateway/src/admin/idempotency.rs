//! The `Idempotency-Key` of an HTTP publish to a topic with history: sent to JetStream as
//! `Nats-Msg-Id`, so a publisher retrying after an unanswered attempt (a 503 on an ack timeout,
//! a dropped connection) stores the message once. Given by the publisher or, when absent,
//! generated and returned so the publisher can reuse it.

use axum::http::HeaderMap;

/// The request and response header.
pub(crate) const HEADER: &str = "idempotency-key";

/// Longest key accepted: a NATS header value, kept short enough to stay cheap per message.
pub(crate) const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("Idempotency-Key must be 1 to {MAX_LEN} visible ASCII characters (no spaces)")]
    Invalid,
    #[error("Idempotency-Key given more than once")]
    Repeated,
}

/// The key the request gives, if any.
pub(crate) fn given(headers: &HeaderMap) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    let bytes = value.as_bytes();
    // Visible ASCII only: a NATS header value cannot hold CR or LF, and a key is an opaque token.
    if bytes.is_empty() || bytes.len() > MAX_LEN || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::Invalid);
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The key given, or a new unique one (a NUID: 22 characters, as NATS clients use for ids).
pub(crate) fn given_or_new(headers: &HeaderMap) -> Result<String, KeyError> {
    Ok(given(headers)?.unwrap_or_else(|| nuid::next().to_string()))
}

#[cfg(test)]
mod tests;
