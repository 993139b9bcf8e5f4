use bytes::Bytes;
use tungstenite::handshake::server::Request;

use super::*;
use crate::handshake::{Format, RejectReason};
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
fn query_topics_and_format_come_from_the_shared_parser() {
    let up = check(
        &request("/ws?topics=a,b.c&format=raw"),
        &HandshakeConfig::default(),
        10,
    )
    .unwrap();
    assert_eq!(up.topics, vec!["a", "b.c"]);
    assert_eq!(up.format, Format::Raw);
    assert!(up.subprotocol);
}

#[test]
fn bad_topic_path_and_limit_are_rejected_like_the_shards() {
    let config = HandshakeConfig::default();
    let e = check(&request("/ws?topics=a..b"), &config, 10).unwrap_err();
    assert_eq!(e.reason().status(), 400);
    let e = check(&request("/other"), &config, 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::NotFound);
    let e = check(&request("/ws?topics=a,b,c"), &config, 2).unwrap_err();
    assert_eq!(e.reason().status(), 400);
    assert_eq!(error_response(&e).status(), 400);
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
