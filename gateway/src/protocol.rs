//! The `volley.v1` client protocol: parsing the JSON ops clients send in text frames, and
//! building the JSON replies the server sends back.

use serde::{Deserialize, Serialize};

use crate::topic::TopicError;

#[cfg(test)]
mod tests;

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `{"op":"sub","topics":[..]}`: subscribe to these patterns (not yet validated).
    Sub(Vec<String>),
    /// `{"op":"unsub","topics":[..]}`
    Unsub(Vec<String>),
    /// `{"op":"ping"}`
    Ping,
    /// `{"op":"refresh","token":".."}`: replace the connection's auth token.
    Refresh(String),
    /// `{"op":"sub","topics":[..],"since":{"<pattern>":N},"epoch":".."}`: subscribe and replay
    /// what was stored after position N on each pattern named in `since`.
    Resume(Resume),
}

/// A subscribe that resumes from known positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub topics: Vec<String>,
    /// `(pattern, last sequence seen)`, in the order given.
    pub since: Vec<(String, u64)>,
    /// The epoch of the subscribe reply those positions came with.
    pub epoch: Option<String>,
}

impl Resume {
    /// The position given for `pattern`, if any.
    pub fn since(&self, pattern: &str) -> Option<u64> {
        self.since
            .iter()
            .find(|(p, _)| p == pattern)
            .map(|(_, n)| *n)
    }
}

/// Why a client frame is not a valid op. Messages are short and meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("expected a JSON object")]
    NotObject,
    #[error("missing \"op\"")]
    MissingOp,
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("op \"{op}\" needs \"{field}\"")]
    MissingField {
        op: &'static str,
        field: &'static str,
    },
    /// A field has the wrong type (or appears twice); carries serde's description.
    #[error("bad request: {0}")]
    Invalid(String),
}

/// Every field any op may carry. Fields an op does not use are ignored, as are unknown
/// fields, so that clients can add fields (say a request id) without breaking.
#[derive(Deserialize)]
struct RawOp {
    op: Option<String>,
    topics: Option<Vec<String>>,
    token: Option<String>,
    since: Option<std::collections::BTreeMap<String, u64>>,
    epoch: Option<String>,
}

/// Parses one client text frame.
pub fn parse_op(text: &str) -> Result<ClientOp, OpError> {
    // serde's derived struct visitor would also accept a JSON array, which is not our
    // protocol, so insist on an object first.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => OpError::NotObject,
            Err(e) => OpError::NotJson(e.to_string()),
        });
    }
    let raw: RawOp = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => OpError::Invalid(e.to_string()),
        _ => OpError::NotJson(e.to_string()),
    })?;
    let op = raw.op.ok_or(OpError::MissingOp)?;
    match op.as_str() {
        "sub" => {
            let topics = raw.topics.ok_or(OpError::MissingField {
                op: "sub",
                field: "topics",
            })?;
            Ok(match raw.since {
                Some(since) => ClientOp::Resume(Resume {
                    topics,
                    since: since.into_iter().collect(),
                    epoch: raw.epoch,
                }),
                None => ClientOp::Sub(topics),
            })
        }
        "unsub" => raw
            .topics
            .map(ClientOp::Unsub)
            .ok_or(OpError::MissingField {
                op: "unsub",
                field: "topics",
            }),
        "ping" => Ok(ClientOp::Ping),
        "refresh" => raw
            .token
            .map(ClientOp::Refresh)
            .ok_or(OpError::MissingField {
                op: "refresh",
                field: "token",
            }),
        _ => Err(OpError::UnknownOp(op)),
    }
}

/// The `code` of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is well formed but not allowed (reserved topic, not authorized).
    Forbidden,
    /// The request is malformed.
    BadRequest,
    /// A limit was hit (too many subscriptions, rate, ...).
    Limit,
    /// The gateway could not make the subscription live (cluster mode: NATS down, or it did
    /// not confirm the gateway's subscription in time); nothing is held, the client may retry.
    Unavailable,
}

impl ErrorCode {
    /// The code for rejecting a topic: `forbidden` for reserved topics, else `bad_request`.
    pub fn for_topic_error(e: &TopicError) -> Self {
        if e.is_forbidden() {
            ErrorCode::Forbidden
        } else {
            ErrorCode::BadRequest
        }
    }
}

#[derive(Serialize)]
struct TopicsReply<'a> {
    op: &'static str,
    topics: &'a [&'a str],
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    op: &'static str,
    code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    message: &'a str,
}

/// Serializes a reply. These types only hold strings and enums, which serde_json cannot fail
/// to encode; the fallback exists only so that this cannot panic.
fn to_json<T: Serialize>(reply: &T) -> String {
    serde_json::to_string(reply).unwrap_or_else(|_| {
        r#"{"op":"error","code":"bad_request","message":"internal encoding error"}"#.to_owned()
    })
}

/// `{"op":"subscribed","topics":[..]}`
pub fn subscribed(topics: &[&str]) -> String {
    to_json(&TopicsReply {
        op: "subscribed",
        topics,
    })
}

#[derive(Serialize)]
struct SubscribedReply<'a> {
    op: &'static str,
    topics: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// `{"op":"subscribed","topics":[..],"epoch":".."}`: a subscription to topics with history
/// carries the epoch positions are valid in.
pub(crate) fn subscribed_with_epoch(topics: &[&str], epoch: Option<&str>) -> String {
    to_json(&SubscribedReply {
        op: "subscribed",
        topics,
        epoch,
        recovered: None,
        replayed: None,
        reason: None,
        message: None,
    })
}

/// How a resume ended, for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery<'a> {
    /// Every missed message was replayed (this many).
    Recovered { replayed: usize },
    /// Live only from now on; `reason` is a stable label, `message` says what happened.
    NotRecovered { reason: &'a str, message: &'a str },
}

/// `{"op":"subscribed","topics":[p],"epoch":"..","recovered":true,"replayed":N}` or
/// `{..,"recovered":false,"reason":"..","message":".."}`.
pub(crate) fn resumed(pattern: &str, epoch: Option<&str>, recovery: Recovery<'_>) -> String {
    let (recovered, replayed, reason, message) = match recovery {
        Recovery::Recovered { replayed } => (true, Some(replayed), None, None),
        Recovery::NotRecovered { reason, message } => (false, None, Some(reason), Some(message)),
    };
    to_json(&SubscribedReply {
        op: "subscribed",
        topics: &[pattern],
        epoch,
        recovered: Some(recovered),
        replayed,
        reason,
        message,
    })
}

/// `{"op":"unsubscribed","topics":[..]}`
pub fn unsubscribed(topics: &[&str]) -> String {
    to_json(&TopicsReply {
        op: "unsubscribed",
        topics,
    })
}

/// `{"op":"pong"}`
/// `{"op":"refreshed","exp":N}`: the connection now lives until the new token's `exp`.
pub(crate) fn refreshed(expires_at: u64) -> String {
    serde_json::json!({ "op": "refreshed", "exp": expires_at }).to_string()
}

pub(crate) fn pong() -> String {
    r#"{"op":"pong"}"#.to_owned()
}

/// `{"op":"error","code":"..","topic":"..","message":".."}`, without `topic` when None.
pub fn error(code: ErrorCode, topic: Option<&str>, message: &str) -> String {
    to_json(&ErrorReply {
        op: "error",
        code,
        topic,
        message,
    })
}
