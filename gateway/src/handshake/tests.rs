use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid request with the RFC 6455 §1.3 sample key, with `target` and `extra` header lines.
fn request(target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\n\
         Host: example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extra}\
         \r\n"
    )
    .into_bytes()
}

fn raw(head: &str) -> Vec<u8> {
    head.replace('\n', "\r\n").into_bytes()
}

fn complete(buf: &[u8], config: &HandshakeConfig) -> (UpgradeRequest, usize) {
    match parse(buf, config) {
        Ok(Parsed::Complete { request, consumed }) => (request, consumed),
        other => panic!("expected a complete request, got {other:?}"),
    }
}

fn ok(buf: &[u8]) -> UpgradeRequest {
    complete(buf, &HandshakeConfig::default()).0
}

fn rejected(buf: &[u8], config: &HandshakeConfig) -> Rejection {
    match parse(buf, config) {
        Err(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn reason(buf: &[u8]) -> RejectReason {
    rejected(buf, &HandshakeConfig::default()).reason()
}

fn with_origins(origins: &[&str]) -> HandshakeConfig {
    HandshakeConfig {
        allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        ..HandshakeConfig::default()
    }
}

#[test]
fn valid_request() {
    let buf = request("/ws", "");
    let (req, consumed) = complete(&buf, &HandshakeConfig::default());
    assert_eq!(consumed, buf.len());
    assert_eq!(
        req,
        UpgradeRequest {
            accept_key: ACCEPT.to_owned(),
            subprotocol: false,
            topics: vec![],
            format: Format::Envelope,
            token: None,
            origin: None,
            since: None,
            epoch: None,
        }
    );
}

#[test]
fn since_and_epoch_come_from_the_query() {
    let buf = request("/ws?topics=news&since=1234&epoch=17%2B1", "");
    let (req, _) = complete(&buf, &HandshakeConfig::default());
    assert_eq!(req.since, Some(1234));
    assert_eq!(req.epoch.as_deref(), Some("17+1"));
    for bad in ["since=x", "since=-1", "since=1&since=2", "epoch=a&epoch=b"] {
        let buf = request(&format!("/ws?topics=news&{bad}"), "");
        let err = parse(&buf, &HandshakeConfig::default()).unwrap_err();
        assert_eq!(err.reason(), RejectReason::Malformed, "{bad}");
    }
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let buf = raw("GET /ws HTTP/1.1\n\
         host: example.com\n\
         UPGRADE: WebSocket\n\
         connection: keep-alive, UPGRADE\n\
         sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \n\
         SEC-WEBSOCKET-VERSION: 13\n\n");
    assert_eq!(ok(&buf).accept_key, ACCEPT);
}

#[test]
fn connection_list_may_span_headers() {
    let buf = raw(&format!(
        "GET /ws HTTP/1.1\n\
         Host: example.com\n\
         Upgrade: websocket\n\
         Connection: keep-alive\n\
         Connection: Upgrade\n\
         Sec-WebSocket-Key: {KEY}\n\
         Sec-WebSocket-Version: 13\n\n"
    ));
    assert_eq!(ok(&buf).accept_key, ACCEPT);
}

#[test]
fn partial_at_every_split_point() {
    let buf = request("/ws?topics=a,b&token=t", "Origin: https://a.example\r\n");
    let config = HandshakeConfig::default();
    for end in 0..buf.len() {
        assert_eq!(
            parse(&buf[..end], &config),
            Ok(Parsed::Partial),
            "prefix of {end} bytes"
        );
    }
    complete(&buf, &config);
}

#[test]
fn bytes_after_head_are_not_consumed() {
    let head = request("/ws", "");
    let mut buf = head.clone();
    // A masked WebSocket frame the client pipelined behind its request.
    buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, b'h', b'e', b'l', b'l', b'o']);
    let (_, consumed) = complete(&buf, &HandshakeConfig::default());
    assert_eq!(consumed, head.len());
    assert_eq!(buf.get(consumed), Some(&0x81));
}

#[test]
fn malformed() {
    assert_eq!(
        reason(b"GET /ws HTTP/1.1\r\nBad Header\r\n\r\n"),
        RejectReason::Malformed
    );
    assert_eq!(reason(b"\x00\x01\x02\r\n\r\n"), RejectReason::Malformed);
    assert_eq!(reason(b"GET /ws HTTP/2.0\r\n\r\n"), RejectReason::Malformed);
    let buf = String::from_utf8(request("/ws", ""))
        .unwrap()
        .replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(reason(buf.as_bytes()), RejectReason::Malformed);
}

#[test]
fn method_not_allowed() {
    let buf = String::from_utf8(request("/ws", ""))
        .unwrap()
        .replacen("GET", "POST", 1);
    assert_eq!(reason(buf.as_bytes()), RejectReason::MethodNotAllowed);
    // Methods are case-sensitive (RFC 9110 §9.1).
    let buf = String::from_utf8(request("/ws", ""))
        .unwrap()
        .replacen("GET", "get", 1);
    assert_eq!(reason(buf.as_bytes()), RejectReason::MethodNotAllowed);
}

#[test]
fn not_found() {
    assert_eq!(reason(&request("/", "")), RejectReason::NotFound);
    assert_eq!(reason(&request("/ws/", "")), RejectReason::NotFound);
    assert_eq!(reason(&request("/wss?x=1", "")), RejectReason::NotFound);
    // The query string is not part of the path.
    ok(&request("/ws?", ""));
    let config = HandshakeConfig {
        path: "/stream".to_owned(),
        ..HandshakeConfig::default()
    };
    assert_eq!(
        rejected(&request("/ws", ""), &config).reason(),
        RejectReason::NotFound
    );
    complete(&request("/stream?format=raw", ""), &config);
}

fn without(header: &str, replacement: &str) -> Vec<u8> {
    let buf = String::from_utf8(request("/ws", "")).unwrap();
    let start = buf.find(header).unwrap();
    let end = start + buf[start..].find("\r\n").unwrap() + 2;
    format!("{}{replacement}{}", &buf[..start], &buf[end..]).into_bytes()
}

#[test]
fn upgrade_required() {
    assert_eq!(
        reason(&without("Upgrade:", "")),
        RejectReason::UpgradeRequired
    );
    assert_eq!(
        reason(&without("Upgrade:", "Upgrade: h2c\r\n")),
        RejectReason::UpgradeRequired
    );
}

#[test]
fn missing_connection_upgrade() {
    assert_eq!(
        reason(&without("Connection:", "")),
        RejectReason::MissingConnectionUpgrade
    );
    assert_eq!(
        reason(&without("Connection:", "Connection: keep-alive\r\n")),
        RejectReason::MissingConnectionUpgrade
    );
    // A token is the whole list item, not a substring.
    assert_eq!(
        reason(&without("Connection:", "Connection: upgrades\r\n")),
        RejectReason::MissingConnectionUpgrade
    );
}

#[test]
fn unsupported_version() {
    for replacement in [
        "",
        "Sec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Version: 13, 8\r\n",
    ] {
        assert_eq!(
            reason(&without("Sec-WebSocket-Version:", replacement)),
            RejectReason::UnsupportedVersion,
            "{replacement:?}"
        );
    }
}

#[test]
fn bad_key() {
    for replacement in [
        "",
        "Sec-WebSocket-Key: \r\n",
        "Sec-WebSocket-Key: not base64 at all!!!!!!\r\n",
        // base64 of 15 and 17 bytes.
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n",
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n",
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA==\r\n",
        // Unpadded.
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
        // Twice.
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ] {
        assert_eq!(
            reason(&without("Sec-WebSocket-Key:", replacement)),
            RejectReason::BadKey,
            "{replacement:?}"
        );
    }
}

#[test]
fn origin_allowlist() {
    let config = with_origins(&["https://app.example.com", "http://localhost:3000"]);
    let (req, _) = complete(
        &request("/ws", "Origin: HTTPS://App.Example.com\r\n"),
        &config,
    );
    assert_eq!(req.origin.as_deref(), Some("HTTPS://App.Example.com"));
    complete(
        &request("/ws", "Origin: http://localhost:3000\r\n"),
        &config,
    );

    for origin in [
        "https://evil.example",
        "http://app.example.com",
        "http://localhost:3001",
        "null",
    ] {
        let rejection = rejected(&request("/ws", &format!("Origin: {origin}\r\n")), &config);
        assert_eq!(
            rejection.reason(),
            RejectReason::ForbiddenOrigin,
            "{origin}"
        );
    }

    // Non-browser clients send no Origin and are allowed.
    let (req, _) = complete(&request("/ws", ""), &config);
    assert_eq!(req.origin, None);

    // An empty allowlist allows any origin, and still reports it.
    let req = ok(&request("/ws", "Origin: https://anywhere.example\r\n"));
    assert_eq!(req.origin.as_deref(), Some("https://anywhere.example"));
}

#[test]
fn query_parameters() {
    let req = ok(&request(
        "/ws?topics=news%2Fsport,,a%20b,&topics=c+d&format=raw&other=1",
        "",
    ));
    assert_eq!(req.topics, ["news/sport", "a b", "c d"]);
    assert_eq!(req.format, Format::Raw);

    assert_eq!(ok(&request("/ws?format=json", "")).format, Format::Envelope);
    // A percent-encoded comma separates topics too: decoding happens first.
    assert_eq!(ok(&request("/ws?topics=a%2Cb", "")).topics, ["a", "b"]);
    assert_eq!(ok(&request("/ws?topics=caf%C3%A9", "")).topics, ["café"]);
}

#[test]
fn bad_query_is_malformed() {
    for target in [
        "/ws?format=xml",
        "/ws?format=",
        "/ws?format=JSON",
        "/ws?format=raw&format=json",
        "/ws?topics=%zz",
        "/ws?topics=a%2",
        "/ws?topics=%FF",
        "/ws?token=a&token=b",
    ] {
        assert_eq!(
            reason(&request(target, "")),
            RejectReason::Malformed,
            "{target}"
        );
    }
}

#[test]
fn bearer_token() {
    let req = ok(&request("/ws", "Authorization: Bearer abc.def\r\n"));
    assert_eq!(req.token.as_deref(), Some("abc.def"));
    let req = ok(&request("/ws", "authorization: bearer   xyz  \r\n"));
    assert_eq!(req.token.as_deref(), Some("xyz"));
    // Other schemes, and an empty token, are no token.
    assert_eq!(
        ok(&request("/ws", "Authorization: Basic dTpw\r\n")).token,
        None
    );
    assert_eq!(
        ok(&request("/ws", "Authorization: Bearer \r\n")).token,
        None
    );
    assert_eq!(
        ok(&request("/ws", "Authorization: Bearerabc\r\n")).token,
        None
    );
}

#[test]
fn query_token_wins() {
    let req = ok(&request(
        "/ws?token=from%20query",
        "Authorization: Bearer header\r\n",
    ));
    assert_eq!(req.token.as_deref(), Some("from query"));
    // An empty query token is absent, so the header still counts.
    let req = ok(&request("/ws?token=", "Authorization: Bearer header\r\n"));
    assert_eq!(req.token.as_deref(), Some("header"));
    assert_eq!(ok(&request("/ws?token=", "")).token, None);
}

#[test]
fn subprotocol_selection() {
    assert!(!ok(&request("/ws", "")).subprotocol);
    assert!(ok(&request("/ws", "Sec-WebSocket-Protocol: volley.v1\r\n")).subprotocol);
    assert!(
        ok(&request(
            "/ws",
            "Sec-WebSocket-Protocol: chat, volley.v1 , other\r\n"
        ))
        .subprotocol
    );
    assert!(
        ok(&request(
            "/ws",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: volley.v1\r\n"
        ))
        .subprotocol
    );
    assert!(
        !ok(&request(
            "/ws",
            "Sec-WebSocket-Protocol: chat, volley.v2\r\n"
        ))
        .subprotocol
    );
}

#[test]
fn headers_too_large() {
    let config = HandshakeConfig {
        max_header_bytes: 256,
        ..HandshakeConfig::default()
    };

    // A head that never ends: Partial up to the limit, 431 past it.
    let mut endless = b"GET /ws HTTP/1.1\r\nX-Filler: ".to_vec();
    endless.resize(256, b'a');
    assert_eq!(parse(&endless, &config), Ok(Parsed::Partial));
    endless.push(b'a');
    assert_eq!(
        rejected(&endless, &config).reason(),
        RejectReason::HeadersTooLarge
    );

    // A complete head over the limit, even if otherwise valid.
    let big = request("/ws", &format!("X-Filler: {}\r\n", "a".repeat(256)));
    assert_eq!(
        rejected(&big, &config).reason(),
        RejectReason::HeadersTooLarge
    );

    // Size is checked before anything else.
    let mut bad_method = b"POST /nope HTTP/1.1\r\nX-Filler: ".to_vec();
    bad_method.resize(300, b'a');
    assert_eq!(
        rejected(&bad_method, &config).reason(),
        RejectReason::HeadersTooLarge
    );

    // A head of exactly the limit is fine.
    let exact = request("/ws", "");
    let config = HandshakeConfig {
        max_header_bytes: exact.len(),
        ..HandshakeConfig::default()
    };
    complete(&exact, &config);

    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        reason(&request("/ws", &many)),
        RejectReason::HeadersTooLarge
    );
}

#[test]
fn check_order() {
    // No Host comes first (400 for any request, RFC 9112 §3.2).
    assert_eq!(reason(b"POST /x HTTP/1.1\r\n\r\n"), RejectReason::Malformed);
    // Wrong method, path, and missing upgrade headers: the method is reported.
    assert_eq!(
        reason(b"POST /x HTTP/1.1\r\nHost: t\r\n\r\n"),
        RejectReason::MethodNotAllowed
    );
    assert_eq!(
        reason(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"),
        RejectReason::NotFound
    );
    assert_eq!(
        reason(b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n"),
        RejectReason::UpgradeRequired
    );
    assert_eq!(
        reason(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n"),
        RejectReason::MissingConnectionUpgrade
    );
    assert_eq!(
        reason(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        RejectReason::UnsupportedVersion
    );
    let no_key = b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n";
    assert_eq!(
        rejected(no_key, &with_origins(&["https://ok.example"])).reason(),
        RejectReason::BadKey
    );
    let bad_origin_and_query = request("/ws?format=xml", "Origin: https://evil.example\r\n");
    assert_eq!(
        rejected(
            &bad_origin_and_query,
            &with_origins(&["https://ok.example"])
        )
        .reason(),
        RejectReason::ForbiddenOrigin
    );
}

#[test]
fn statuses_and_labels() {
    let expected = [
        (RejectReason::Malformed, 400, "malformed"),
        (
            RejectReason::MissingConnectionUpgrade,
            400,
            "bad_connection_header",
        ),
        (RejectReason::BadKey, 400, "bad_key"),
        (RejectReason::BadRequest, 400, "bad_request"),
        (RejectReason::Unauthorized, 401, "unauthorized"),
        (RejectReason::ForbiddenOrigin, 403, "forbidden_origin"),
        (RejectReason::NotFound, 404, "not_found"),
        (RejectReason::MethodNotAllowed, 405, "method_not_allowed"),
        (RejectReason::UpgradeRequired, 426, "upgrade_required"),
        (RejectReason::UnsupportedVersion, 426, "unsupported_version"),
        (RejectReason::HeadersTooLarge, 431, "headers_too_large"),
        (RejectReason::Unavailable, 503, "unavailable"),
        (
            RejectReason::TooManyConnections,
            429,
            "too_many_connections",
        ),
    ];
    assert_eq!(RejectReason::ALL.len(), expected.len());
    for (reason, status, label) in expected {
        assert!(RejectReason::ALL.contains(&reason));
        assert_eq!(reason.status(), status, "{reason:?}");
        assert_eq!(reason.label(), label, "{reason:?}");
    }

    assert_eq!(
        Rejection::bad_request("x").reason(),
        RejectReason::BadRequest
    );
    assert_eq!(
        Rejection::unauthorized("x").reason(),
        RejectReason::Unauthorized
    );
    assert_eq!(
        Rejection::unavailable("x").reason(),
        RejectReason::Unavailable
    );
    assert_eq!(
        Rejection::bad_request(format!("invalid topic {:?}", "a b")).to_string(),
        "400 bad_request: invalid topic \"a b\""
    );
}

#[test]
fn accept_response_bytes() {
    let mut req = ok(&request("/ws", ""));
    assert_eq!(
        accept_response(&req),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        )
        .into_bytes()
    );
    req.subprotocol = true;
    assert_eq!(
        accept_response(&req),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\
             Sec-WebSocket-Protocol: volley.v1\r\n\r\n"
        )
        .into_bytes()
    );
}

/// Parses a response with httparse and checks the framing: status, headers, Content-Length.
fn check_reject(rejection: &Rejection, status: u16, extra: &[(&str, &str)]) {
    let bytes = reject_response(rejection);
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = res.parse(&bytes) else {
        panic!(
            "unparseable response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    };
    assert_eq!(res.version, Some(1));
    assert_eq!(res.code, Some(status));
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap())
    };
    let body = &bytes[head..];
    assert_eq!(body, format!("{}\n", rejection.message()).as_bytes());
    assert_eq!(
        header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(header("connection"), Some("close"));
    assert!(header("content-type").unwrap().starts_with("text/plain"));
    for (name, value) in extra {
        assert_eq!(header(name), Some(*value), "{name} for {status}");
    }
}

#[test]
fn reject_response_bytes() {
    let bad = Rejection::bad_request("invalid topic");
    assert_eq!(
        reject_response(&bad),
        b"HTTP/1.1 400 Bad Request\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 14\r\n\
          Connection: close\r\n\
          \r\n\
          invalid topic\n"
    );

    check_reject(&bad, 400, &[]);
    check_reject(
        &Rejection::unauthorized("bad token"),
        401,
        &[("www-authenticate", "Bearer")],
    );
    check_reject(
        &Rejection::unavailable("draining"),
        503,
        &[("retry-after", "1")],
    );
    // Byte length, not char length, goes in Content-Length.
    check_reject(&Rejection::bad_request("thé topic"), 400, &[]);

    let cfg = HandshakeConfig::default();
    let post = String::from_utf8(request("/ws", ""))
        .unwrap()
        .replacen("GET", "PUT", 1);
    check_reject(&rejected(post.as_bytes(), &cfg), 405, &[("allow", "GET")]);
    for buf in [
        without("Upgrade:", ""),
        without("Sec-WebSocket-Version:", ""),
    ] {
        check_reject(
            &rejected(&buf, &cfg),
            426,
            &[("upgrade", "websocket"), ("sec-websocket-version", "13")],
        );
    }
    check_reject(&rejected(&request("/nope", ""), &cfg), 404, &[]);
    check_reject(
        &rejected(
            &request("/ws", "Origin: https://x\r\n"),
            &with_origins(&["https://y"]),
        ),
        403,
        &[],
    );
}

/// Feeds truncations and single-byte mutations of valid requests; any outcome but a panic is
/// fine, and whatever is accepted must report a head length inside the buffer.
#[test]
fn no_panic_on_mutated_input() {
    let seeds = [
        request(
            "/ws?topics=a%2Cb,c&format=raw&token=t%20k",
            "Origin: https://a.example\r\n\
             Authorization: Bearer tok\r\n\
             Sec-WebSocket-Protocol: chat, volley.v1\r\n",
        ),
        request("/ws", ""),
    ];
    let configs = [
        HandshakeConfig::default(),
        HandshakeConfig {
            max_header_bytes: 64,
            allowed_origins: vec!["https://a.example".to_owned()],
            ..HandshakeConfig::default()
        },
        HandshakeConfig {
            max_header_bytes: 0,
            ..HandshakeConfig::default()
        },
    ];
    let replacements = [
        0u8, b'\r', b'\n', b' ', b'%', b',', b'=', b'&', b'?', b':', 0x7f, 0xff,
    ];
    // A small xorshift keeps the extra mutations deterministic without pulling in a crate.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };

    let check = |buf: &[u8]| {
        for config in &configs {
            if let Ok(Parsed::Complete { consumed, .. }) = parse(buf, config) {
                assert!(consumed <= buf.len());
            }
            if let Err(rejection) = parse(buf, config) {
                let _ = reject_response(&rejection);
            }
        }
    };

    for seed in &seeds {
        for end in 0..=seed.len() {
            check(&seed[..end]);
        }
        for i in 0..seed.len() {
            for &b in &replacements {
                let mut buf = seed.clone();
                buf[i] = b;
                check(&buf);
            }
            let mut deleted = seed.clone();
            deleted.remove(i);
            check(&deleted);
        }
        for _ in 0..2000 {
            let mut buf = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() % buf.len() as u64) as usize;
                buf[i] = next() as u8;
            }
            let cut = (next() % (buf.len() as u64 + 1)) as usize;
            check(&buf[..cut]);
            check(&buf);
        }
    }
}

#[test]
fn host_is_required_once() {
    let without = raw("GET /ws HTTP/1.1\n\
         Upgrade: websocket\n\
         Connection: Upgrade\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\
         Sec-WebSocket-Version: 13\n\n");
    let rejection = rejected(&without, &HandshakeConfig::default());
    assert_eq!(rejection.reason(), RejectReason::Malformed);
    assert_eq!(rejection.reason().status(), 400);
    assert!(
        rejection.message().contains("Host"),
        "{}",
        rejection.message()
    );
    let twice = request("/ws", "Host: other.example\r\n");
    assert_eq!(reason(&twice), RejectReason::Malformed);
    // An empty Host is what a client sends when the target has no authority: allowed.
    ok(&raw("GET /ws HTTP/1.1\n\
         Host:\n\
         Upgrade: websocket\n\
         Connection: Upgrade\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\
         Sec-WebSocket-Version: 13\n\n"));
}
