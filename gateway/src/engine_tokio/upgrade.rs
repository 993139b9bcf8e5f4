//! Pure helpers between tungstenite's types and the gateway's own handshake and frame code, so
//! the tokio engine applies exactly the same upgrade rules as the shards.

use bytes::Bytes;
use tungstenite::handshake::server::{ErrorResponse, Request};
use tungstenite::http::StatusCode;

use crate::handshake::{self, HandshakeConfig, Parsed, Rejection, UpgradeRequest};
use crate::topic;

#[cfg(test)]
mod tests;

/// Serializes the request tungstenite parsed back into an HTTP/1.1 head, so the gateway's own
/// [`handshake::parse`] decides (query, topics, format, origin) exactly as for the shards.
pub fn rebuild_head(request: &Request) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(request.method().as_str().as_bytes());
    head.push(b' ');
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The shard's admission rules minus the connection count (checked at accept).
pub fn check(
    request: &Request,
    config: &HandshakeConfig,
    max_subscriptions: usize,
) -> Result<UpgradeRequest, Rejection> {
    let head = rebuild_head(request);
    let upgrade = match handshake::parse(&head, config)? {
        Parsed::Complete { request, .. } => request,
        // The head is complete by construction; a partial parse means it was too large.
        Parsed::Partial => return Err(Rejection::bad_request("incomplete request head")),
    };
    if upgrade.topics.len() > max_subscriptions {
        return Err(Rejection::bad_request(format!(
            "at most {max_subscriptions} topics per connection"
        )));
    }
    for t in &upgrade.topics {
        topic::validate_pattern(t)
            .map_err(|e| Rejection::bad_request(format!("topic `{t}`: {e}")))?;
    }
    Ok(upgrade)
}

/// The HTTP error tungstenite sends for a rejection.
pub fn error_response(rejection: &Rejection) -> ErrorResponse {
    let status =
        StatusCode::from_u16(rejection.reason().status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = ErrorResponse::new(Some(format!("{}\n", rejection.message())));
    *response.status_mut() = status;
    response
}

/// Splits a complete, unmasked, single-frame server message (as built by
/// [`crate::message::Message::frame`]) into (is_text, payload), sharing the bytes.
pub fn payload_of(frame: &Bytes) -> Option<(bool, Bytes)> {
    let first = *frame.first()?;
    let len_byte = *frame.get(1)? & 0x7f;
    let header = match len_byte {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    if frame.len() < header {
        return None;
    }
    let text = first & 0x0f == 0x1;
    Some((text, frame.slice(header..)))
}
