//! Client protocol violations over real sockets: each closes with its code, and limits hold.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use tokio_tungstenite::tungstenite::Message as WsMessage;

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames until a close frame; returns its code.
async fn close_code<R: AsyncRead + Unpin>(stream: &mut R) -> u16 {
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection ended without a close frame: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            // Walk complete frames (server frames are unmasked, small here).
            let mut at = 0;
            while at + 2 <= buf.len() {
                let len = (buf[at + 1] & 0x7f) as usize;
                assert!(len < 126, "unexpected large frame");
                if at + 2 + len > buf.len() {
                    break;
                }
                if buf[at] & 0x0f == 0x8 {
                    return u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
                }
                at += 2 + len;
            }
        }
    })
    .await
    .expect("close frame in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_violation_closes_with_its_code() {
    let gw = start(options()).await;
    violations_close_with_their_codes(gw.client_addr(), gw.admin_addr(), false).await;
}

/// docs/bad-input.md: "Both engines behave the same": the baseline closes with the same codes
/// and counts the same metric (it once dropped the socket without a close frame instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_violation_closes_with_its_code_on_the_tokio_engine() {
    let gw = start_tokio(options()).await;
    violations_close_with_their_codes(gw.client_addr(), gw.admin_addr(), true).await;
}

/// `tokio`: the one label that engine cannot tell apart (docs/bad-input.md): invalid UTF-8 in a
/// close reason comes out of tungstenite as invalid text.
async fn violations_close_with_their_codes(client: SocketAddr, admin: SocketAddr, tokio: bool) {
    let unmasked = vec![0x81, 0x02, b'h', b'i'];
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (unmasked, 1002),
        (masked(0x81 | 0x40, b"rsv"), 1002),
        (masked(0x83, b"op"), 1002),
        (masked(0x09, b"fragmented ping"), 1002),
        (masked(0x80, b"continuation"), 1002),
        (masked(0x81, &[0xff, 0xfe]), 1007),
        (masked(0x81, &vec![b'a'; 5000]), 1009),
        // Close codes not allowed on the wire (RFC 6455 §7.4.1: 1005 and 1006 are never sent).
        (masked(0x88, &[0x03, 0xed, b'x']), 1002),
        (masked(0x88, &[0x03, 0xe7]), 1002),
        // A close reason that is not UTF-8.
        (masked(0x88, &[0x03, 0xe8, 0xff, 0xfe]), 1007),
    ];
    for (bytes, code) in cases {
        let mut stream = raw_upgrade(client).await;
        stream.write_all(&bytes).await.unwrap();
        assert_eq!(
            close_code(&mut stream).await,
            code,
            "frame {:02x?}",
            &bytes[..2]
        );
    }
    for (label, n) in [
        ("unmasked", 1.0),
        ("reserved_bits", 1.0),
        ("reserved_opcode", 1.0),
        ("fragmented_control", 1.0),
        ("unexpected_continuation", 1.0),
        ("invalid_utf8_text", if tokio { 2.0 } else { 1.0 }),
        ("invalid_utf8_close_reason", if tokio { 0.0 } else { 1.0 }),
        ("invalid_close_code", 2.0),
        ("message_too_big", 1.0),
    ] {
        let labels = format!("reason=\"{label}\"");
        // Counted as the close goes out; the client may see the close first.
        metric_reaches(admin, "volley_protocol_closes_total", &labels, n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fragmented_message_closes_1009() {
    let gw = start(options()).await;
    let mut stream = raw_upgrade(gw.client_addr()).await;
    stream
        .write_all(&masked(0x01, &[b'a'; 3000]))
        .await
        .unwrap();
    stream
        .write_all(&masked(0x80, &[b'a'; 3000]))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, 1009);
}

/// README: "every client frame counts". A message that never ends, sent as a stream of empty
/// continuation frames, is a flood like any other: it gets the rate limit's close (1008), where
/// it once kept the connection busy and alive for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_frames_count_against_the_message_rate() {
    let mut opts = options();
    opts.max_client_messages_per_second = Some(5);
    let gw = start(opts).await;
    let stream = raw_upgrade(gw.client_addr()).await;
    let (mut read, mut write) = stream.into_split();
    write.write_all(&masked(0x01, b"")).await.unwrap();
    // 50 frames a second, ten times the limit, for at most 20 s (a bound against a hang, on a
    // loaded machine too): the third window over the limit closes it after about 2 s.
    let flood = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if write.write_all(&masked(0x00, b"")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(close_code(&mut read).await, 1008);
    flood.abort();
    metric_reaches(
        gw.admin_addr(),
        "volley_protocol_closes_total",
        "reason=\"rate_limit\"",
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_1008_and_counted() {
    let mut opts = options();
    opts.max_pending_bytes = Some(256 * 1024);
    let gw = start(opts).await;
    // A client that never reads, with a small receive buffer so the server's queue fills.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gw.client_addr()).await.unwrap();
    let (mut client, _) = tokio_tungstenite::client_async(ws_url(&gw, "?topics=firehose"), stream)
        .await
        .unwrap();
    let payload = vec![b'x'; 64 * 1024];
    for _ in 0..200 {
        publish_ok(gw.admin_addr(), "firehose", &payload).await;
        if metric(gw.admin_addr(), "volley_slow_consumer_closes_total", "").await >= 1.0 {
            break;
        }
    }
    assert_eq!(
        metric(gw.admin_addr(), "volley_slow_consumer_closes_total", "").await,
        1.0
    );
    let close = expect_close(&mut client).await;
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "slow consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_gives_503_and_unready() {
    let mut opts = options();
    opts.max_connections = Some(3);
    let gw = start(opts).await;
    let admin = gw.admin_addr();
    assert_eq!(get(admin, "/readyz").await.0, 200);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&ws_url(&gw, "")).await);
    }
    let refused = tokio_tungstenite::connect_async(ws_url(&gw, "")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");

    let mut one = clients.pop().unwrap();
    one.send(WsMessage::Close(None)).await.unwrap();
    let _ = expect_close(&mut one).await;
    let mut ready = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if get(admin, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "ready again after a connection closed");
    clients.push(connect(&ws_url(&gw, "")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_api_checks_key_topic_and_size() {
    let mut opts = options();
    opts.api_key = Some("s3cret".into());
    opts.max_publish_bytes = Some(1024);
    let gw = start(opts).await;
    let admin = gw.admin_addr();
    assert_eq!(publish(admin, "a", b"1").await.0, 401);
    let with_key = |topic: &str, body: &[u8], key: &str| {
        let mut request = format!(
            "POST /v1/publish/{topic} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };
    assert_eq!(http(admin, &with_key("a", b"1", "wrong")).await.0, 401);
    assert_eq!(http(admin, &with_key("a", b"1", "s3cret")).await.0, 202);
    assert_eq!(http(admin, &with_key("_sys", b"1", "s3cret")).await.0, 403);
    assert_eq!(http(admin, &with_key("a.*", b"1", "s3cret")).await.0, 400);
    assert_eq!(
        http(admin, &with_key("a", &[b'x'; 2048], "s3cret")).await.0,
        413
    );
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let (status, body) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("volley_messages_published_total 1"), "{body}");
    assert!(body.ends_with("# EOF\n"));
}
