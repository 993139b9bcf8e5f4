use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::parse::{self, ParseError};
use super::{ADMIN_EVERY, Counts, Io, Kind, Reference, Variant};
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

const WRITEV: Variant = Variant {
    io: Io::Writev,
    fold: false,
};
const WRITEV_FOLD: Variant = Variant {
    io: Io::Writev,
    fold: true,
};
const URING: Variant = Variant {
    io: Io::Uring,
    fold: false,
};
const URING_FOLD: Variant = Variant {
    io: Io::Uring,
    fold: true,
};

/// A reference on loopback ports served by a thread until dropped.
struct Running {
    client: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Counts>>,
}

impl Running {
    fn start(variant: Variant) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // The server is single-threaded (its batches are `Rc`): it lives on its own thread.
        let thread = std::thread::spawn(move || {
            let any = "127.0.0.1:0".parse().unwrap();
            let mut server = Reference::bind_with(any, any, variant.io).unwrap();
            server.set_fold(variant.fold);
            // io_uring where the kernel and sandbox allow it (a silent fallback would test
            // writev twice), else the writev fallback.
            let available = super::uring::Ring::new(8).is_ok();
            assert_eq!(server.uses_uring(), variant.io == Io::Uring && available);
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

/// Publishes `(phase, ts)` payloads of `size` bytes one by one, each answered 202.
fn publish(admin: &mut TcpStream, sent: &[(u32, u64)], size: usize) {
    for &(phase, ts) in sent {
        let body = payload::build(phase, ts, size);
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
}

fn admin(server: &Running) -> TcpStream {
    let admin = TcpStream::connect(server.admin).unwrap();
    admin
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    admin
}

fn every_connection_gets_every_message_in_order(variant: Variant) {
    let server = Running::start(variant);
    // More connections than one io_uring submission takes: a pass makes two.
    let mut clients: Vec<TcpStream> = (0..200).map(|_| connect(server.client)).collect();
    let sent: Vec<(u32, u64)> = (0..50).map(|i| (1, 1_000 + i)).collect();
    publish(&mut admin(&server), &sent, 256);
    for c in &mut clients {
        assert_eq!(frames(c, sent.len()), sent);
    }
    let counts = server.stop();
    assert_eq!(counts.published, 50);
    assert!(counts.passes >= 1 && counts.writes >= 200, "{counts:?}");
    // Every frame was queued to each of the 200 connections once, folded or not.
    assert_eq!(counts.frames, 50 * 200, "{counts:?}");
    // Submissions per pass: two (200 connections, 128 per submission); with folding a pass
    // may carry only the folds the first connections missed, so one at least.
    let per_pass = if variant.fold { 1 } else { 2 };
    match variant.io {
        Io::Uring if super::uring::Ring::new(8).is_err() => assert_eq!(counts.enters, 0),
        // Far fewer submissions than writes.
        Io::Uring => assert!(
            counts.enters >= per_pass * counts.passes && counts.enters * 10 < counts.writes,
            "{counts:?}"
        ),
        Io::Writev => assert_eq!(counts.enters, 0),
    }
}

#[test]
fn every_connection_gets_every_message_in_order_writev() {
    every_connection_gets_every_message_in_order(WRITEV);
}

#[test]
fn every_connection_gets_every_message_in_order_uring() {
    every_connection_gets_every_message_in_order(URING);
}

#[test]
fn every_connection_gets_every_message_in_order_with_fold() {
    every_connection_gets_every_message_in_order(WRITEV_FOLD);
}

#[test]
fn every_connection_gets_every_message_in_order_uring_with_fold() {
    every_connection_gets_every_message_in_order(URING_FOLD);
}

/// A client that stops reading fills its socket: the pass's write comes back short or
/// `EAGAIN`, the rest goes out on its writable events, in order, while the others keep
/// getting theirs.
fn a_full_socket_resumes_where_it_stopped(variant: Variant) {
    let server = Running::start(variant);
    let mut stalled = connect(server.client);
    let mut reading = connect(server.client);
    // ~6 MB for each: far more than loopback socket buffers hold, under MAX_QUEUED_BYTES.
    let sent: Vec<(u32, u64)> = (0..200).map(|i| (2, 5_000 + i)).collect();
    let mut admin = admin(&server);
    let size = 30_000;
    let publisher = std::thread::spawn(move || {
        publish(&mut admin, &sent, size);
        sent
    });
    let first = frames(&mut reading, 200);
    let sent = publisher.join().unwrap();
    assert_eq!(first, sent);
    assert_eq!(frames(&mut stalled, 200), sent);
    let counts = server.stop();
    assert_eq!(counts.published, 200);
}

#[test]
fn a_full_socket_resumes_where_it_stopped_writev() {
    a_full_socket_resumes_where_it_stopped(WRITEV);
}

#[test]
fn a_full_socket_resumes_where_it_stopped_uring() {
    a_full_socket_resumes_where_it_stopped(URING);
}

#[test]
fn metrics_count_passes_frames_and_writes() {
    let server = Running::start(URING);
    let mut client = connect(server.client);
    let sent = [(3, 1), (3, 2)];
    publish(&mut admin(&server), &sent, 64);
    assert_eq!(frames(&mut client, 2), sent);
    let mut admin = admin(&server);
    admin.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    admin.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
    let text = String::from_utf8(answer).unwrap();
    let sample = crate::passes::Sample::parse(&text);
    let counts = server.stop();
    assert_eq!(sample.frames, 2, "{text}");
    assert!(
        sample.passes >= 1 && sample.passes <= counts.passes,
        "{text}"
    );
    assert!(sample.writes >= sample.passes, "{text}");
    assert!(
        text.contains("volley_reference_ring_enters_total "),
        "{text}"
    );
}

#[test]
fn anything_but_a_publish_is_refused() {
    let server = Running::start(WRITEV);
    let mut admin = TcpStream::connect(server.admin).unwrap();
    admin
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    admin.write_all(b"GET /stats HTTP/1.1\r\n\r\n").unwrap();
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

/// `POST /v1/publish/bench.all` of the payload `(phase, ts)`.
fn publish_request(phase: u32, ts: u64) -> Vec<u8> {
    let body = payload::build(phase, ts, 64);
    let mut req = format!(
        "POST /v1/publish/bench.all HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// Turns the server's loop once (poll, serve the events, a pass only if one is due).
fn turn(server: &mut Reference) {
    let turns = Cell::new(0);
    server
        .run_until(Duration::from_millis(5), || {
            turns.set(turns.get() + 1);
            turns.get() > 1
        })
        .unwrap();
}

/// Turns the loop until `done` holds, for 20 s at most.
fn turn_until(server: &mut Reference, what: &str, done: impl Fn(&Reference) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(server) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        turn(server);
    }
}

/// Whatever else is waiting on `s` right now, without waiting (loopback normally delivers
/// within the writer's syscall; a late frame could only make this miss an extra, never fail).
fn extras_now(s: &mut TcpStream) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut total = 0;
    let mut chunk = [0; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    total
}

/// The reviewer's scenario (review 13, finding 2): 300 upgraded clients; A is pending when a
/// pass starts and B arrives on the admin socket while the pass runs (the pass serves its
/// publishers at key `ADMIN_EVERY - 1`, or through io_uring between its chunks of
/// `ADMIN_EVERY`). After that one pass the client with the highest key has A and B when
/// folding, only A without; the clients written before B arrived get it in the next pass; each
/// message arrives exactly once and in order, folded or not.
fn mid_pass_publish(variant: Variant) {
    const CLIENTS: usize = 300;
    let fold = variant.fold;
    let any = "127.0.0.1:0".parse().unwrap();
    let mut server = Reference::bind_with(any, any, variant.io).unwrap();
    server.set_fold(fold);
    // No pass is due until the test makes one: `pass()` is called by hand below.
    server.last_pass = Some(Instant::now() + Duration::from_secs(3600));
    let (client_addr, admin_addr) = server.addrs().unwrap();

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        // The server runs on this thread: accept as we go, so the backlog never fills.
        if i % 32 == 31 {
            turn_until(&mut server, "the accepts", |r| r.peers.len() == i);
        }
        let mut s = TcpStream::connect(client_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&wire::upgrade_request(
            &client_addr.to_string(),
            "/ws?topics=bench.all",
        ))
        .unwrap();
        clients.push(s);
    }
    let upgraded = |r: &Reference| {
        r.peers
            .iter()
            .filter(|(_, p)| matches!(p.kind, Kind::Open { .. }))
            .count()
            == CLIENTS
    };
    turn_until(&mut server, "the upgrades", upgraded);
    // Each client reads its 101 (already written: nothing else is queued yet).
    for s in &mut clients {
        let mut buf = Vec::new();
        let mut chunk = [0; 512];
        let head = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((status, head)) = wire::response_head(&buf) {
                assert_eq!(status, 101);
                break head;
            }
        };
        assert_eq!(head, buf.len(), "nothing is sent before a publish");
    }
    // The client sockets by the server's key for them (keys are the pass's order).
    let key_of = |s: &TcpStream| {
        let local = s.local_addr().unwrap();
        server
            .peers
            .iter()
            .find(|(_, p)| p.socket.peer_addr().ok() == Some(local))
            .map(|(key, _)| key)
            .expect("the server has this client")
    };
    let mut by_key: Vec<(usize, TcpStream)> =
        clients.into_iter().map(|s| (key_of(&s), s)).collect();
    by_key.sort_by_key(|(key, _)| *key);
    let fold_key = if server.uses_uring() {
        ADMIN_EVERY
    } else {
        ADMIN_EVERY - 1
    };
    assert!(
        by_key[0].0 < fold_key && by_key[CLIENTS - 1].0 > fold_key,
        "clients on both sides of the mid-pass publish"
    );

    let mut admin = TcpStream::connect(admin_addr).unwrap();
    admin
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (a, b, c) = ((1, 1), (1, 2), (1, 3));
    let mut answer = [0; 128];
    admin.write_all(&publish_request(a.0, a.1)).unwrap();
    turn_until(&mut server, "A to be published", |r| {
        r.counts().published == 1
    });
    let n = admin.read(&mut answer).unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 202 "), "{answer:?}");
    let admin_key = server.admins[0];

    // B is written to the admin socket but not read: the server reads it when the pass
    // serves its publishers. Wait until it is in the server's receive buffer, so the pass
    // finds it there.
    let request_b = publish_request(b.0, b.1);
    admin.write_all(&request_b).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut peek = vec![0; request_b.len()];
    while server.peers[admin_key].socket.peek(&mut peek).unwrap_or(0) < request_b.len() {
        assert!(Instant::now() < deadline, "B never reached the server");
        std::thread::sleep(Duration::from_millis(1));
    }
    server.pass();
    // Only the test makes passes.
    server.last_pass = Some(Instant::now() + Duration::from_secs(3600));
    let n = admin.read(&mut answer).unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 202 "),
        "B answered during the pass"
    );
    assert_eq!(server.counts().published, 2);

    let mut seen: Vec<Vec<(u32, u64)>> = vec![Vec::new(); CLIENTS];
    let last = CLIENTS - 1;
    if fold {
        seen[last] = frames(&mut by_key[last].1, 2);
        assert_eq!(seen[last], [a, b], "key {}: B in its pass", by_key[last].0);
        assert!(server.pending.is_empty(), "B was folded, not held");
    } else {
        seen[last] = frames(&mut by_key[last].1, 1);
        assert_eq!(seen[last], [a], "key {}", by_key[last].0);
        assert!(!server.pending.is_empty(), "B waits for the next pass");
    }
    seen[0] = frames(&mut by_key[0].1, 1);
    assert_eq!(
        seen[0],
        [a],
        "key {}: written before B arrived",
        by_key[0].0
    );

    // The next pass: B for those that have not had it, then C; nothing twice, no gap.
    admin.write_all(&publish_request(c.0, c.1)).unwrap();
    turn_until(&mut server, "C to be published", |r| {
        r.counts().published == 3
    });
    let n = admin.read(&mut answer).unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 202 "));
    server.pass();
    for (i, (key, s)) in by_key.iter_mut().enumerate() {
        let mut got = std::mem::take(&mut seen[i]);
        got.extend(frames(s, 3 - got.len()));
        assert_eq!(got, [a, b, c], "key {key}");
        assert_eq!(extras_now(s), 0, "key {key}: nothing more");
    }
}

#[test]
fn a_publish_during_a_pass_waits_for_the_next_pass_without_fold() {
    mid_pass_publish(WRITEV);
}

#[test]
fn a_publish_during_a_pass_reaches_the_connections_not_yet_written_with_fold() {
    mid_pass_publish(WRITEV_FOLD);
}

#[test]
fn a_publish_during_a_uring_pass_waits_for_the_next_pass_without_fold() {
    mid_pass_publish(URING);
}

#[test]
fn a_publish_during_a_uring_pass_reaches_the_connections_not_yet_written_with_fold() {
    mid_pass_publish(URING_FOLD);
}
