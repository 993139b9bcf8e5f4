use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::parse::{self, ParseError};
use super::{Counts, Reference};
use crate::{payload, wire};

#[test]
fn head_is_read_only_when_complete() {
    let req = wire::upgrade_request("127.0.0.1:1", "/ws?topics=bench.all");
    assert_eq!(parse::head(&req[..req.len() - 1]), Ok(None));
    let head = parse::head(&req).unwrap().unwrap();
    assert_eq!(head.method, "GET");
    assert_eq!(head.len, req.len());
    assert_eq!(head.websocket_key, Some("dGhlIHNhbXBsZSBub25jZQ=="));
    assert!(head.volley_protocol);
}

#[test]
fn bad_heads_are_errors() {
    assert_eq!(
        parse::head(&vec![b'a'; parse::MAX_HEAD + 1]),
        Err(ParseError::HeadTooLong(parse::MAX_HEAD))
    );
    assert_eq!(
        parse::head(b"POST /v1/publish/t HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        Err(ParseError::BadLength)
    );
    assert_eq!(parse::head(b"\r\n\r\n"), Err(ParseError::Malformed));
}

#[test]
fn the_accept_key_is_rfc_6455s_example() {
    // RFC 6455 section 1.3: this key must be answered with this accept value.
    let answer = parse::switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", false);
    let text = String::from_utf8(answer).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 "));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(!text.contains("Sec-WebSocket-Protocol"));
}

#[test]
fn publish_requests_name_their_topic() {
    let head = |raw: &'static [u8]| parse::head(raw).unwrap().unwrap();
    let post = head(b"POST /v1/publish/bench.all HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(parse::publish_topic(&post), Some("bench.all"));
    assert_eq!(post.content_length, 3);
    assert_eq!(
        parse::publish_topic(&head(b"GET /v1/publish/x HTTP/1.1\r\n\r\n")),
        None
    );
    assert_eq!(
        parse::publish_topic(&head(b"POST /v1/publish/ HTTP/1.1\r\n\r\n")),
        None
    );
}

#[test]
fn frames_parse_back_with_the_clients_parser() {
    for len in [0, 125, 126, 65_535, 65_536] {
        let data = vec![b'y'; len];
        let mut out = vec![7];
        parse::push_frame(&mut out, &data);
        let frame = wire::parse_frame(&out[1..]).unwrap();
        assert_eq!(frame.opcode, wire::OP_TEXT, "{len}");
        assert_eq!(frame.len, out.len() - 1, "{len}");
        assert_eq!(&out[1..][frame.payload], &data[..], "{len}");
    }
    let mut out = Vec::new();
    parse::push_frame(&mut out, &[0xff, 0xfe]);
    assert_eq!(wire::parse_frame(&out).unwrap().opcode, wire::OP_BINARY);
}

/// A reference on loopback ports served by a thread until dropped.
struct Running {
    client: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Counts>>,
}

impl Running {
    fn start() -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // The server is single-threaded (its batches are `Rc`): it lives on its own thread.
        let thread = std::thread::spawn(move || {
            let any = "127.0.0.1:0".parse().unwrap();
            let mut server = Reference::bind(any, any).unwrap();
            tx.send(server.addrs().unwrap()).unwrap();
            server
                .run_until(Duration::from_millis(20), || flag.load(Ordering::Relaxed))
                .unwrap();
            server.counts()
        });
        let (client, admin) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        Running {
            client,
            admin,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    // Every socket on a deadline: a broken server fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&wire::upgrade_request(
        &addr.to_string(),
        "/ws?topics=bench.all",
    ))
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0; 512];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((status, head)) = wire::response_head(&buf) {
            assert_eq!(status, 101);
            assert_eq!(head, buf.len(), "nothing is sent before a publish");
            return s;
        }
    }
}

/// Reads frames until `count` arrived; their (phase, timestamp) in order.
fn frames(s: &mut TcpStream, count: usize) -> Vec<(u32, u64)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0; 4096];
    while out.len() < count {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {} frames", out.len());
        buf.extend_from_slice(&chunk[..n]);
        while let Some(frame) = wire::parse_frame(&buf) {
            out.push(payload::read(&buf[frame.payload.clone()]).unwrap());
            buf.drain(..frame.len);
        }
    }
    out
}

#[test]
fn every_connection_gets_every_message_in_order() {
    let server = Running::start();
    let mut clients: Vec<TcpStream> = (0..20).map(|_| connect(server.client)).collect();
    let mut admin = TcpStream::connect(server.admin).unwrap();
    admin
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sent: Vec<(u32, u64)> = (0..50).map(|i| (1, 1_000 + i)).collect();
    for &(phase, ts) in &sent {
        let body = payload::build(phase, ts, 256);
        let mut req = format!(
            "POST /v1/publish/bench.all HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        admin.write_all(&req).unwrap();
        let mut answer = [0; 128];
        let n = admin.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 202 "), "{answer:?}");
    }
    for c in &mut clients {
        assert_eq!(frames(c, sent.len()), sent);
    }
    let counts = server.stop();
    assert_eq!(counts.published, 50);
    assert!(counts.passes >= 1 && counts.writes >= 20, "{counts:?}");
}

#[test]
fn anything_but_a_publish_is_refused() {
    let server = Running::start();
    let mut admin = TcpStream::connect(server.admin).unwrap();
    admin
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    admin.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    admin.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 404 "), "{answer:?}");

    let mut client = TcpStream::connect(server.client).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client.write_all(b"GET /ws HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");
    assert_eq!(server.stop().published, 0);
}
