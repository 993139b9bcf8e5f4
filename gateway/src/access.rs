//! What a client connection may do, as pure functions both engines call: which upgrade is let in
//! and with which subscriptions ([`admit`]), whether one topic of a `sub` op is taken
//! ([`check_sub`]), and what a `refresh` op does ([`refresh`]).
//!
//! The epoll shards and the tokio baseline keep their connections in very different shapes, but
//! the rules live only here, so the two engines cannot drift apart (they once did: the baseline
//! let anonymous clients subscribe to `user.*`).

#[cfg(test)]
mod tests;

use crate::auth::{self, AuthError, Identity, Verifier};
use crate::handshake::Rejection;
use crate::protocol::{self, ErrorCode};
use crate::topic::{self, TopicError};

/// An upgrade that may go ahead (gateway-wide limits and draining are the caller's to check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    /// The verified token; `None` for an anonymous connection (auth off).
    pub identity: Option<Identity>,
    /// The URL's topics plus the user's own `user.<sub>`, sorted and deduplicated: subscribe
    /// these.
    pub allowed: Vec<String>,
    /// URL topics this connection may not have. Each gets a `forbidden` error reply after the
    /// 101 and the connection stays, as for a `sub` op: a client asking for too much in its URL
    /// should still get what it may have.
    pub forbidden: Vec<String>,
}

/// Checks an upgrade's URL topics and token (`?token=` or `Authorization: Bearer`).
///
/// Too many or invalid topics are a 400 and, with a `verifier`, a missing or invalid token a
/// 401, both before the upgrade. Without one the connection is anonymous and any token is
/// ignored.
pub(crate) fn admit(
    topics: Vec<String>,
    token: Option<&str>,
    verifier: Option<&Verifier>,
    max_subscriptions: usize,
) -> Result<Admission, Rejection> {
    if topics.len() > max_subscriptions {
        return Err(Rejection::bad_request(format!(
            "at most {max_subscriptions} topics per connection"
        )));
    }
    for t in &topics {
        topic::validate_pattern(t)
            .map_err(|e| Rejection::bad_request(format!("topic `{t}`: {e}")))?;
    }
    let identity = match verifier {
        Some(verifier) => {
            let token = token.ok_or_else(|| {
                Rejection::unauthorized("a token is required (?token= or Authorization: Bearer)")
            })?;
            let identity = verifier
                .verify(token)
                .map_err(|e| Rejection::unauthorized(e.to_string()))?;
            Some(identity)
        }
        None => None,
    };
    let mut topics = topics;
    // A user's own topic comes with the token, beyond the per-connection limit.
    if let Some(own) = identity.as_ref().and_then(Identity::user_topic) {
        topics.push(own);
    }
    topics.sort_unstable();
    topics.dedup();
    let (allowed, forbidden) = topics
        .into_iter()
        .partition(|t| may_subscribe(identity.as_ref(), t));
    Ok(Admission {
        identity,
        allowed,
        forbidden,
    })
}

/// May this connection subscribe to `pattern`? A verified identity's rules, or the anonymous
/// ones (never the `user.` space).
pub(crate) fn may_subscribe(identity: Option<&Identity>, pattern: &str) -> bool {
    match identity {
        Some(identity) => identity.may_subscribe(pattern),
        None => auth::anonymous_may_subscribe(pattern),
    }
}

/// What to do with one topic of a `sub` op that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// Already subscribed: confirm it, change nothing.
    Held,
    /// Subscribe it now.
    New,
}

/// Why one topic of a `sub` op was refused. The connection stays either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubRefusal {
    #[error(transparent)]
    Invalid(#[from] TopicError),
    #[error("not allowed for this connection")]
    Forbidden,
    #[error("at most {0} subscriptions per connection")]
    Limit(usize),
}

impl SubRefusal {
    /// The `{"op":"error",..}` reply naming `topic`.
    pub fn reply(&self, topic: &str) -> String {
        let code = match self {
            SubRefusal::Invalid(e) => ErrorCode::for_topic_error(e),
            SubRefusal::Forbidden => ErrorCode::Forbidden,
            SubRefusal::Limit(_) => ErrorCode::Limit,
        };
        protocol::error(code, Some(topic), &self.to_string())
    }
}

/// Decides one topic of a `sub` op for a connection that holds `subs` (at most `max`).
pub fn check_sub<S: AsRef<str>>(
    identity: Option<&Identity>,
    topic: &str,
    subs: &[S],
    max: usize,
) -> Result<Sub, SubRefusal> {
    topic::validate_pattern(topic)?;
    // Only allowed patterns are ever held, so a held one needs no second look.
    if subs.iter().any(|s| s.as_ref() == topic) {
        return Ok(Sub::Held);
    }
    if !may_subscribe(identity, topic) {
        return Err(SubRefusal::Forbidden);
    }
    if subs.len() >= max {
        return Err(SubRefusal::Limit(max));
    }
    Ok(Sub::New)
}

/// Why a `refresh` op was refused; the connection keeps its current token (and its `exp`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RefreshError {
    #[error("authentication is not enabled on this gateway")]
    AuthDisabled,
    #[error(transparent)]
    Invalid(#[from] AuthError),
    /// A refresh may extend a connection, never hand it to someone else.
    #[error("the token is for another user")]
    OtherUser,
}

impl RefreshError {
    /// The `{"op":"error",..}` reply.
    pub(crate) fn reply(&self) -> String {
        let code = match self {
            RefreshError::AuthDisabled | RefreshError::Invalid(_) => ErrorCode::BadRequest,
            RefreshError::OtherUser => ErrorCode::Forbidden,
        };
        protocol::error(code, None, &self.to_string())
    }
}

/// `{"op":"refresh","token":..}`: the identity that replaces `current` when `token` is valid
/// and for the same user. Subscriptions are kept as they are: the user is the same.
pub(crate) fn refresh(
    verifier: Option<&Verifier>,
    current: Option<&Identity>,
    token: &str,
) -> Result<Identity, RefreshError> {
    let verifier = verifier.ok_or(RefreshError::AuthDisabled)?;
    let fresh = verifier.verify(token)?;
    if current.map(|i| &i.user) != Some(&fresh.user) {
        return Err(RefreshError::OtherUser);
    }
    Ok(fresh)
}
