//! What a client connection may do, as pure functions both engines call: which upgrade is let in
//! and with which subscriptions ([`admit`]), whether one topic of a `sub` op is taken
//! ([`check_sub`]), and what a `refresh` op does ([`refresh`]: a newer token for the same user,
//! and the subscriptions it no longer allows are dropped).
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
    /// The URL topic a `?since=` position resumes, when it was allowed: the one the client
    /// named, never the `user.<sub>` that came with the token (whatever their order in
    /// `allowed`). `None` without `since`, or when that topic is forbidden (its `forbidden`
    /// reply is then its answer).
    pub resumed: Option<String>,
}

/// Checks an upgrade's URL topics and token (`?token=` or `Authorization: Bearer`).
///
/// Too many or invalid topics are a 400 and, with a `verifier`, a missing or invalid token a
/// 401, both before the upgrade. Without one the connection is anonymous and any token is
/// ignored. `resuming` (the URL has `?since=`) needs exactly one URL topic, a 400 otherwise:
/// a position names one topic's place in history, with several it is ambiguous.
pub(crate) fn admit(
    topics: Vec<String>,
    resuming: bool,
    token: Option<&str>,
    verifier: Option<&Verifier>,
    max_subscriptions: usize,
) -> Result<Admission, Rejection> {
    if resuming && topics.len() != 1 {
        return Err(Rejection::bad_request(
            "since needs exactly one topic in the URL (resume several with the sub op)",
        ));
    }
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
    // Taken before the own topic is added and the list sorted: `allowed.first()` would be
    // `user.<sub>` for every URL topic that sorts after it.
    let url_topic = topics.first().filter(|_| resuming).cloned();
    let mut topics = topics;
    // A user's own topic comes with the token, beyond the per-connection limit.
    if let Some(own) = identity.as_ref().and_then(Identity::user_topic) {
        topics.push(own);
    }
    topics.sort_unstable();
    topics.dedup();
    let (allowed, forbidden): (Vec<String>, Vec<String>) = topics
        .into_iter()
        .partition(|t| may_subscribe(identity.as_ref(), t));
    let resumed = url_topic.filter(|t| allowed.contains(t));
    Ok(Admission {
        identity,
        allowed,
        forbidden,
        resumed,
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

/// What an accepted `refresh` op does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refreshed {
    /// Replaces the connection's identity (and so its `exp`).
    pub identity: Identity,
    /// Held patterns the new token no longer allows, in the order held: the connection drops
    /// them, each with a [`revoked_reply`]. Same user, but its `topics` claim may have shrunk
    /// (an entitlement revoked); keeping them would let a client keep reading, refresh after
    /// refresh, what a reconnect with the same token is refused.
    pub revoked: Vec<String>,
}

/// `{"op":"refresh","token":..}` for a connection holding `held`: the identity that replaces
/// `current` when `token` is valid and for the same user, and the held patterns it no longer
/// allows.
pub(crate) fn refresh<S: AsRef<str>>(
    verifier: Option<&Verifier>,
    current: Option<&Identity>,
    token: &str,
    held: &[S],
) -> Result<Refreshed, RefreshError> {
    let verifier = verifier.ok_or(RefreshError::AuthDisabled)?;
    let fresh = verifier.verify(token)?;
    if current.map(|i| &i.user) != Some(&fresh.user) {
        return Err(RefreshError::OtherUser);
    }
    let revoked = held
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !fresh.may_subscribe(p))
        .map(str::to_owned)
        .collect();
    Ok(Refreshed {
        identity: fresh,
        revoked,
    })
}

/// The `{"op":"error","code":"forbidden",..}` naming a subscription a `refresh` dropped: the
/// reply a `sub` of it would now get, with a message that says it was held and is gone.
pub(crate) fn revoked_reply(pattern: &str) -> String {
    protocol::error(
        ErrorCode::Forbidden,
        Some(pattern),
        "not allowed by the refreshed token; unsubscribed",
    )
}
