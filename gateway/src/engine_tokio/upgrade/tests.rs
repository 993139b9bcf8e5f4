use bytes::Bytes;
use tungstenite::handshake::server::Request;

use super::*;
use crate::handshake::{Format, RejectReason, Rejection};
use crate::message::Message;

fn request(uri: &str) -> Request {
    Request::builder()
        .method("GET")
        .uri(uri)
        .header("Host", "x")
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Protocol", "volley.v1")
        .body(())
        .unwrap()
}

#[test]
fn query_topics_format_and_token_come_from_the_shared_parser() {
    let up = parse(
        &request("/ws?topics=a,b.c&format=raw&token=t0k"),
        &HandshakeConfig::default(),
    )
    .unwrap();
    assert_eq!(up.topics, vec!["a", "b.c"]);
    assert_eq!(up.format, Format::Raw);
    assert_eq!(up.token.as_deref(), Some("t0k"));
    assert!(up.subprotocol);
}

#[test]
fn bad_path_is_rejected_like_the_shards() {
    let e = parse(&request("/other"), &HandshakeConfig::default()).unwrap_err();
    assert_eq!(e.reason(), RejectReason::NotFound);
    assert_eq!(error_response(&e).status(), 404);
}

#[test]
fn error_responses_carry_the_shards_headers() {
    let e = Rejection::unauthorized("missing token");
    let response = error_response(&e);
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(response.body().as_deref(), Some("missing token\n"));
    let e = Rejection::unavailable("full");
    assert_eq!(error_response(&e).headers()["retry-after"], "1");
}

#[test]
fn payload_is_sliced_out_of_the_encoded_frame() {
    let m = Message::new("t", Bytes::from_static(b"hello"));
    let (text, payload) = payload_of(m.frame(Format::Raw)).unwrap();
    assert!(text);
    assert_eq!(&payload[..], b"hello");
    let big = Message::new("t", Bytes::from(vec![0xffu8; 300]));
    let (text, payload) = payload_of(big.frame(Format::Raw)).unwrap();
    assert!(!text);
    assert_eq!(payload.len(), 300);
    let env = m.frame(Format::Envelope);
    let (text, payload) = payload_of(env).unwrap();
    assert!(text);
    assert_eq!(&payload[..], br#"{"topic":"t","data":"hello"}"#);
}

/// Finding 12: tungstenite's read errors for a peer breaking RFC 6455 become the shards' own
/// violations (same close code, reason and metric label); other errors stay a plain drop.
#[test]
fn tungstenite_violations_map_to_the_shards_close_codes() {
    use tungstenite::protocol::frame::coding::Data;
    let cases = [
        (
            WsError::Protocol(WsProtocolError::UnmaskedFrameFromClient),
            1002,
            "unmasked",
        ),
        (
            WsError::Protocol(WsProtocolError::NonZeroReservedBits),
            1002,
            "reserved_bits",
        ),
        (
            WsError::Protocol(WsProtocolError::UnknownDataFrameType(3)),
            1002,
            "reserved_opcode",
        ),
        (
            WsError::Protocol(WsProtocolError::UnknownControlFrameType(11)),
            1002,
            "reserved_opcode",
        ),
        (
            WsError::Protocol(WsProtocolError::FragmentedControlFrame),
            1002,
            "fragmented_control",
        ),
        (
            WsError::Protocol(WsProtocolError::ControlFrameTooBig),
            1002,
            "control_too_long",
        ),
        (
            WsError::Protocol(WsProtocolError::UnexpectedContinueFrame),
            1002,
            "unexpected_continuation",
        ),
        (
            WsError::Protocol(WsProtocolError::ExpectedFragment(Data::Text)),
            1002,
            "expected_continuation",
        ),
        (WsError::Utf8("bad".into()), 1007, "invalid_utf8_text"),
        (
            WsError::Capacity(CapacityError::MessageTooLong {
                size: 5000,
                max_size: 4096,
            }),
            1009,
            "message_too_big",
        ),
    ];
    for (error, code, label) in cases {
        let v = violation_of(&error, 4096).unwrap_or_else(|| panic!("{error:?}"));
        assert_eq!((v.close_code(), v.label()), (code, label), "{error:?}");
    }
    for other in [
        WsError::ConnectionClosed,
        WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake),
        WsError::Io(std::io::ErrorKind::BrokenPipe.into()),
    ] {
        assert_eq!(violation_of(&other, 4096), None, "{other:?}");
    }
}

/// Review 2 finding 9: a Close tungstenite rewrote (the peer's code was not allowed) is the
/// shards' `invalid_close_code`; a peer's own valid Close is not a violation.
#[test]
fn a_close_tungstenite_rewrote_is_an_invalid_close_code() {
    let rewritten = WsMessage::Close(Some(CloseFrame {
        code: 1002.into(),
        reason: "Protocol violation".into(),
    }));
    let violation = violation_in(&rewritten).expect("a violation");
    assert_eq!(violation.label(), "invalid_close_code");
    assert_eq!(violation.close_code(), 1002);
    for own in [
        WsMessage::Close(Some(CloseFrame {
            code: 1002.into(),
            reason: "bad frame".into(),
        })),
        WsMessage::Close(Some(CloseFrame {
            code: 1000.into(),
            reason: "Protocol violation".into(),
        })),
        WsMessage::Close(None),
        WsMessage::Text("Protocol violation".into()),
    ] {
        assert_eq!(violation_in(&own), None, "{own:?}");
    }
}
