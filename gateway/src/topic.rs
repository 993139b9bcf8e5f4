//! Topic names and subscription patterns: validation and NATS-style wildcard matching.
//!
//! A topic is a dot-separated list of tokens (`stocks.AAPL`). A pattern may use `*` as a
//! whole token (exactly one token) and `>` as the whole last token (one or more tokens).
//! Topics whose first character is `_` or `$` are reserved for the server.

#[cfg(test)]
mod tests;

/// Longest accepted topic or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a topic or pattern was rejected. The messages are meant to be sent to clients as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than 256 bytes")]
    TooLong,
    #[error("topic has an empty token (leading, trailing or doubled '.')")]
    EmptyToken,
    #[error("topic contains whitespace")]
    Whitespace,
    #[error("'*' and '>' must be whole tokens, and '>' only the last one")]
    BadWildcard,
    #[error("topics starting with '_' or '$' are reserved")]
    Reserved,
    #[error("wildcards are not allowed when publishing")]
    WildcardInPublish,
}

impl TopicError {
    /// True when the topic is well formed but the client may not use it (reply `forbidden`
    /// rather than `bad_request`).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, TopicError::Reserved)
    }
}

/// Validates a subscription pattern (wildcards allowed).
pub fn validate_pattern(s: &str) -> Result<(), TopicError> {
    validate(s, true)
}

/// Validates a concrete subject to publish to (no wildcards).
pub fn validate_subject(s: &str) -> Result<(), TopicError> {
    validate(s, false)
}

/// True when the pattern has a `*` or `>` token, i.e. can match more than one subject.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.split('.').any(|t| t == "*" || t == ">")
}

/// True when the first character marks a server-reserved topic.
pub(crate) fn is_reserved(s: &str) -> bool {
    s.starts_with(['_', '$'])
}

/// True when `subject` matches `pattern` with NATS semantics, plus one rule of our own: a
/// wildcard in the first token never matches a reserved subject, so that `>` or `*.x` cannot
/// be used to listen to `$`/`_` topics that clients may not subscribe to by name (the same
/// rule MQTT applies to `$` topics).
///
/// Both arguments are expected to be validated; on malformed input this returns some answer
/// without panicking (a `>` that is not the last token matches nothing). Does not allocate.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    let mut first = true;
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*" | ">"), Some(_)) if first && is_reserved(subject) => return false,
            // `>` swallows this token and all the rest, but only as the last pattern token.
            (Some(">"), Some(_)) => return p.next().is_none(),
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            _ => return false,
        }
        first = false;
    }
}

fn validate(s: &str, wildcards: bool) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let mut tokens = s.split('.').peekable();
    while let Some(tok) = tokens.next() {
        let last = tokens.peek().is_none();
        if tok.is_empty() {
            return Err(TopicError::EmptyToken);
        }
        if tok.chars().any(char::is_whitespace) {
            return Err(TopicError::Whitespace);
        }
        match tok {
            "*" | ">" if !wildcards => return Err(TopicError::WildcardInPublish),
            "*" => {}
            ">" if last => {}
            ">" => return Err(TopicError::BadWildcard),
            _ if tok.contains(['*', '>']) => return Err(TopicError::BadWildcard),
            _ => {}
        }
    }
    // Checked last so that a malformed reserved topic is reported as malformed, and only a
    // well-formed one as forbidden.
    if is_reserved(s) {
        return Err(TopicError::Reserved);
    }
    Ok(())
}
