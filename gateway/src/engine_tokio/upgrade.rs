//! Pure helpers between tungstenite's types and the gateway's own handshake and frame code, so
//! the tokio engine applies exactly the same upgrade rules as the shards.

use bytes::Bytes;
use tungstenite::Message as WsMessage;
use tungstenite::Utf8Bytes;
use tungstenite::handshake::server::{ErrorResponse, Request};
use tungstenite::http::{HeaderName, HeaderValue, StatusCode};
use tungstenite::protocol::CloseFrame;

use tungstenite::Error as WsError;
use tungstenite::error::{CapacityError, ProtocolError as WsProtocolError};

use crate::frame::{ClientEvent, ProtocolError};

use crate::handshake::{self, HandshakeConfig, Parsed, Rejection, UpgradeRequest};

#[cfg(test)]
mod tests;

/// Serializes the request tungstenite parsed back into an HTTP/1.1 head, so the gateway's own
/// [`handshake::parse`] decides (query, topics, format, origin) exactly as for the shards.
pub(crate) fn rebuild_head(request: &Request) -> Vec<u8> {
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

/// The request as the shards' parser sees it (path, method, headers, origin, query, token).
/// Topic and token rules come after, from [`crate::access::admit`], as on the shards.
pub(crate) fn parse(
    request: &Request,
    config: &HandshakeConfig,
) -> Result<UpgradeRequest, Rejection> {
    let head = rebuild_head(request);
    match handshake::parse(&head, config)? {
        Parsed::Complete { request, .. } => Ok(request),
        // The head is complete by construction; a partial parse means it was too large.
        Parsed::Partial => Err(Rejection::bad_request("incomplete request head")),
    }
}

/// The HTTP error tungstenite sends for a rejection: the shards' status, headers and body.
pub(crate) fn error_response(rejection: &Rejection) -> ErrorResponse {
    let reason = rejection.reason();
    let status = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = ErrorResponse::new(Some(format!("{}\n", rejection.message())));
    *response.status_mut() = status;
    for (name, value) in handshake::reject_headers(reason) {
        // The table is static and valid; the fallible constructors only keep this panic-free.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Splits a complete, unmasked, single-frame server message (as built by
/// [`crate::message::Message::frame`]) into (is_text, payload), sharing the bytes.
pub(crate) fn payload_of(frame: &Bytes) -> Option<(bool, Bytes)> {
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

/// Turns a complete server frame (a shared message frame, or one the session queued: reply,
/// ping, pong, close) back into a tungstenite message without copying the payload.
pub(crate) fn message_of(frame: &Bytes) -> Option<WsMessage> {
    let opcode = *frame.first()? & 0x0f;
    let (_, payload) = payload_of(frame)?;
    match opcode {
        0x1 => Utf8Bytes::try_from(payload).ok().map(WsMessage::Text),
        0x2 => Some(WsMessage::Binary(payload)),
        0x8 => {
            let Some(code) = payload.get(..2) else {
                return Some(WsMessage::Close(None));
            };
            let code = u16::from_be_bytes([code[0], code[1]]);
            let reason = Utf8Bytes::try_from(payload.slice(2..)).unwrap_or_default();
            Some(WsMessage::Close(Some(CloseFrame {
                code: code.into(),
                reason,
            })))
        }
        0x9 => Some(WsMessage::Ping(payload)),
        0xA => Some(WsMessage::Pong(payload)),
        _ => None,
    }
}

/// A message tungstenite decoded, as the session's frame event (the shards get the same from
/// [`crate::frame::decode`]).
pub(crate) fn event_of(message: &WsMessage) -> Option<ClientEvent<'_>> {
    Some(match message {
        WsMessage::Text(text) => ClientEvent::Text(text.as_str()),
        WsMessage::Binary(data) => ClientEvent::Binary(data),
        WsMessage::Ping(data) => ClientEvent::Ping(data),
        WsMessage::Pong(data) => ClientEvent::Pong(data),
        WsMessage::Close(frame) => ClientEvent::Close {
            code: frame.as_ref().map(|f| u16::from(f.code)),
            reason: frame.as_ref().map_or("", |f| f.reason.as_str()),
        },
        // Raw frames only come out of tungstenite when asked for; nothing to act on.
        WsMessage::Frame(_) => return None,
    })
}

/// The reason tungstenite puts in the Close it substitutes for a peer's Close with a code not
/// allowed on the wire (tungstenite 0.30 `protocol/mod.rs`, `do_close`).
const SUBSTITUTED_CLOSE_REASON: &str = "Protocol violation";

/// The violation hidden in a Close tungstenite already rewrote. A peer's Close with a code not
/// allowed on the wire (under 1000, 1004-1006, 1014-2999, from 5000) is not an error for
/// tungstenite: it answers 1002 itself and hands over `Close(1002, "Protocol violation")` in
/// place of the peer's frame. That is the shards' `invalid_close_code` (same 1002 on the wire),
/// so it is counted as such. The peer's code is gone (reported as 0), and a peer that sends
/// exactly 1002 "Protocol violation" itself is counted the same way (docs/bad-input.md).
pub(crate) fn violation_in(message: &WsMessage) -> Option<ProtocolError> {
    match message {
        WsMessage::Close(Some(frame))
            if u16::from(frame.code) == 1002 && frame.reason == SUBSTITUTED_CLOSE_REASON =>
        {
            Some(ProtocolError::InvalidCloseCode(0))
        }
        _ => None,
    }
}

/// The RFC 6455 violation behind a read error of tungstenite, as the shards' decoder names it
/// (so both engines close with the same code and reason and count the same metric label, as
/// docs/bad-input.md says). tungstenite sends no close frame of its own on these errors (it only
/// answers a peer's Close). `None` for errors that are not the peer breaking the protocol (a
/// reset, IO, reads after a close): the connection is just dropped.
pub(crate) fn violation_of(error: &WsError, max_message: usize) -> Option<ProtocolError> {
    Some(match error {
        WsError::Capacity(e) => ProtocolError::MessageTooBig {
            declared: match e {
                CapacityError::MessageTooLong { size, .. } => *size as u64,
                _ => 0,
            },
            max: max_message,
        },
        // Invalid UTF-8 in a close reason comes as the same `Utf8` error as in a text message
        // (both are `Utf8Bytes::try_from`), so it is labelled as text here: same 1007 on the
        // wire, `invalid_utf8_text` where the shards say `invalid_utf8_close_reason`
        // (docs/bad-input.md).
        WsError::Utf8(_) => ProtocolError::InvalidUtf8Text,
        WsError::Protocol(p) => match p {
            WsProtocolError::NonZeroReservedBits => ProtocolError::ReservedBits,
            WsProtocolError::UnmaskedFrameFromClient => ProtocolError::Unmasked,
            WsProtocolError::FragmentedControlFrame => ProtocolError::FragmentedControl,
            WsProtocolError::ControlFrameTooBig => ProtocolError::ControlTooLong,
            WsProtocolError::UnknownControlFrameType(n)
            | WsProtocolError::UnknownDataFrameType(n)
            | WsProtocolError::InvalidOpcode(n) => ProtocolError::ReservedOpcode(*n),
            WsProtocolError::UnexpectedContinueFrame => ProtocolError::UnexpectedContinuation,
            WsProtocolError::ExpectedFragment(_) => ProtocolError::ExpectedContinuation,
            WsProtocolError::InvalidCloseSequence => ProtocolError::CloseTooShort,
            _ => return None,
        },
        _ => return None,
    })
}
