//! Upgrade-request parser invariants (RFC 6455 §4.2.1).
//!
//! - Raw bytes: no panic; `Partial` only while the buffer is within `max_header_bytes`; a
//!   complete head is within the buffer and the limit, parses the same on its own and with
//!   frame bytes after it; rejections answer a well-formed response with the reason's status.
//! - Structured: a valid upgrade built from the input (topics and token in the query or the
//!   `Authorization` header, optional subprotocol, frame bytes after the head) is accepted with
//!   exactly those values, and every strict prefix of it is `Partial`.

use base64::Engine as _;
use volley_gateway::fuzzing::handshake::{self, Format, HandshakeConfig, Parsed};

use super::input::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let config = HandshakeConfig {
        path: "/ws".to_owned(),
        max_header_bytes: if input.bool() {
            8192
        } else {
            256 + input.below(1024)
        },
        allowed_origins: if input.bool() {
            Vec::new()
        } else {
            vec!["https://app.example".to_owned()]
        },
    };
    if input.u8().is_multiple_of(3) {
        valid_request(&mut input, &config);
    } else {
        raw(input.rest(), &config);
    }
}

fn raw(buf: &[u8], config: &HandshakeConfig) {
    match handshake::parse(buf, config) {
        Ok(Parsed::Partial) => assert!(buf.len() <= config.max_header_bytes),
        Ok(Parsed::Complete { request, consumed }) => {
            assert!(consumed <= buf.len() && consumed <= config.max_header_bytes);
            // The head ends with an empty line (httparse also takes bare LF line ends).
            assert!(buf[..consumed].ends_with(b"\n"));
            let again = handshake::parse(&buf[..consumed], config);
            assert_eq!(
                again,
                Ok(Parsed::Complete {
                    request: request.clone(),
                    consumed
                }),
                "the head alone parses the same"
            );
            check_accept(&request);
        }
        Err(rejection) => {
            let response = handshake::reject_response(&rejection);
            let status = rejection.reason().status();
            assert!(response.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            assert!(matches!(status, 400..=599));
            // The body length announced is the body sent.
            let text = String::from_utf8(response).expect("responses are UTF-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
            let announced = format!("Content-Length: {}", body.len());
            assert!(
                head.contains(&announced),
                "{head:?} vs {} body bytes",
                body.len()
            );
        }
    }
}

fn check_accept(request: &handshake::UpgradeRequest) {
    assert_eq!(request.accept_key.len(), 28, "base64 of a SHA-1");
    let response = handshake::accept_response(request);
    assert!(response.starts_with(b"HTTP/1.1 101 "));
    assert!(response.ends_with(b"\r\n\r\n"));
    let text = String::from_utf8(response).expect("responses are UTF-8");
    assert!(text.contains(&request.accept_key));
    assert_eq!(text.contains(handshake::SUBPROTOCOL), request.subprotocol);
}

/// Characters topics and tokens are drawn from, including ones that must be percent-encoded.
const ALPHABET: &[&str] = &[
    "a", "b", "Z", "0", ".", "*", ">", "-", "_", "~", " ", "+", "%", "&", "=", "?", "#", "é", "😀",
];

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'*') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn valid_request(input: &mut Input<'_>, config: &HandshakeConfig) {
    let topics: Vec<String> = (0..input.below(5))
        .map(|_| input.string_from(ALPHABET, 12))
        .filter(|t| !t.is_empty())
        .collect();
    let token = Some(input.string_from(ALPHABET, 40)).filter(|t| !t.trim().is_empty());
    let in_query = input.bool();
    let format = if input.bool() {
        Format::Raw
    } else {
        Format::Envelope
    };
    let subprotocol = input.bool();
    let key = base64::engine::general_purpose::STANDARD.encode(input.u64().to_le_bytes().repeat(2));

    let mut query = vec![format!("topics={}", encode(&topics.join(",")))];
    if format == Format::Raw {
        query.push("format=raw".to_owned());
    }
    if let (true, Some(t)) = (in_query, &token) {
        query.push(format!("token={}", encode(t)));
    }
    let mut head = format!(
        "GET /ws?{} HTTP/1.1\r\nHost: gw.example\r\nUpgrade: websocket\r\n\
         Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
        query.join("&")
    );
    if subprotocol {
        head.push_str("Sec-WebSocket-Protocol: chat, volley.v1\r\n");
    }
    if let (false, Some(t)) = (in_query, &token) {
        // Header values carry no leading/trailing whitespace (RFC 9110 §5.5).
        head.push_str(&format!("Authorization: Bearer {}\r\n", t.trim()));
    }
    head.push_str("\r\n");
    if head.len() > config.max_header_bytes {
        return;
    }
    let mut buf = head.clone().into_bytes();
    buf.extend_from_slice(input.rest());
    let expected_token = token.map(|t| if in_query { t } else { t.trim().to_owned() });

    match handshake::parse(&buf, config) {
        Ok(Parsed::Complete { request, consumed }) => {
            assert_eq!(consumed, head.len());
            assert_eq!(request.topics, topics);
            assert_eq!(request.token, expected_token);
            assert_eq!(request.format, format);
            assert_eq!(request.subprotocol, subprotocol);
            assert_eq!(request.origin, None);
            check_accept(&request);
        }
        other => panic!("valid upgrade refused: {other:?}\n{head}"),
    }
    for cut in [0, 1, head.len() / 2, head.len() - 2, head.len() - 1] {
        assert_eq!(
            handshake::parse(&buf[..cut], config),
            Ok(Parsed::Partial),
            "prefix of {cut} bytes"
        );
    }
}
