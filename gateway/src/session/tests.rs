//! The protocol rules without a socket: events in, effects and queued frames out.

use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use super::*;
use crate::history::NotRecovered;
use crate::outbox::FRAME_OVERHEAD;

const SECRET: &[u8] = b"session-test-secret";
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn limits() -> Limits {
    Limits {
        max_pending_bytes: 64 * 1024,
        max_subscriptions: 3,
        max_client_messages_per_second: 100,
        ping_interval: Duration::from_secs(2),
        verifier: None,
        history: None,
        confirm: None,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verifier() -> Arc<Verifier> {
    Arc::new(crate::auth::hs256_test_verifier(SECRET))
}

fn token(claims: Value) -> String {
    crate::auth::hs256_test_token(&claims, SECRET)
}

fn identity(user: &str, expires_at: u64) -> Identity {
    Identity {
        user: Some(user.into()),
        expires_at,
        topics: None,
    }
}

/// A session at time 0 of `clock`, opened with `topics` and `identity`; returns the effects of
/// opening it.
fn open_with(
    clock: &Clock,
    limits: &Limits,
    identity: Option<Identity>,
    allowed: &[&str],
    forbidden: &[&str],
) -> (Session, Vec<Effect>) {
    let mut session = Session::new(clock, Duration::from_secs(5));
    let mut out = Vec::new();
    let admission = Admission {
        identity,
        allowed: allowed.iter().map(|s| s.to_string()).collect(),
        forbidden: forbidden.iter().map(|s| s.to_string()).collect(),
        resumed: None,
    };
    session.open(admission, Format::Envelope, clock, limits, &mut out);
    (session, out)
}

fn open(clock: &Clock, limits: &Limits) -> Session {
    open_with(clock, limits, None, &[], &[]).0
}

fn text(session: &mut Session, s: &str, clock: &Clock, limits: &Limits) -> Vec<Effect> {
    let mut out = Vec::new();
    let _ = session.on_frame(ClientEvent::Text(s), clock, limits, &mut out);
    out
}

/// Everything queued, written out and split into (opcode, payload).
fn written(session: &mut Session) -> Vec<(u8, Vec<u8>)> {
    let mut wire = Vec::new();
    session.outbox_mut().write_to(&mut wire).unwrap();
    let mut frames = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let opcode = rest[0] & 0x0f;
        let (header, len) = match rest[1] & 0x7f {
            126 => (4, usize::from(u16::from_be_bytes([rest[2], rest[3]]))),
            127 => (
                10,
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
            ),
            n => (2, usize::from(n)),
        };
        frames.push((opcode, rest[header..header + len].to_vec()));
        rest = &rest[header + len..];
    }
    frames
}

fn replies(session: &mut Session) -> Vec<Value> {
    written(session)
        .into_iter()
        .map(|(opcode, payload)| {
            assert_eq!(opcode, TEXT, "a text reply");
            serde_json::from_slice(&payload).unwrap()
        })
        .collect()
}

/// The close frame queued last: (code, reason).
fn close_frame(session: &mut Session) -> (u16, String) {
    let frames = written(session);
    let (opcode, payload) = frames.last().expect("a frame is queued").clone();
    assert_eq!(opcode, CLOSE);
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8(payload[2..].to_vec()).unwrap())
}

fn subscribe_effects(list: &[&str]) -> Vec<Effect> {
    list.iter()
        .map(|t| Effect::Subscribe((*t).into()))
        .collect()
}

fn clock_at(clock: &Clock, ms: u64) -> Clock {
    clock.at(clock.now() + Duration::from_millis(ms))
}

// ---- opening ----

#[test]
fn opening_subscribes_the_allowed_topics_and_refuses_the_forbidden_ones_in_replies() {
    let clock = Clock::new(Instant::now());
    let (mut session, out) =
        open_with(&clock, &limits(), None, &["news", "sport.*"], &["user.bob"]);
    assert!(session.is_open());
    let mut expected = subscribe_effects(&["news", "sport.*"]);
    expected.push(Effect::Queued);
    assert_eq!(out, expected);
    assert_eq!(session.subscriptions().len(), 2);
    let replies = replies(&mut session);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["op"], "error");
    assert_eq!(replies[0]["code"], "forbidden");
    assert_eq!(replies[0]["topic"], "user.bob");
}

#[test]
fn a_handshaking_session_wants_nothing_and_leaves_nothing() {
    let clock = Clock::new(Instant::now());
    let session = Session::new(&clock, Duration::from_secs(5));
    assert!(!session.wants("news"));
    let mut session = session;
    let mut out = Vec::new();
    session.leave(&mut out);
    assert!(out.is_empty());
}

#[test]
fn wants_follows_the_patterns_held() {
    let clock = Clock::new(Instant::now());
    let (session, _) = open_with(&clock, &limits(), None, &["sport.*"], &[]);
    assert!(session.wants("sport.tennis"));
    assert!(!session.wants("news"));
}

// ---- ops ----

#[test]
fn sub_takes_new_topics_once_and_lists_held_ones_in_the_reply() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let (mut session, _) = open_with(&clock, &limits, None, &["news"], &[]);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["news","sport"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, [Effect::Subscribe("sport".into()), Effect::Queued]);
    let replies = replies(&mut session);
    assert_eq!(
        replies,
        [json!({"op":"subscribed","topics":["news","sport"]})]
    );
}

#[test]
fn sub_refuses_invalid_forbidden_and_over_limit_topics_one_by_one() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let (mut session, _) = open_with(&clock, &limits, None, &["a", "b"], &[]);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["bad..topic","user.alice","c","d"]}"#,
        &clock,
        &limits,
    );
    // Only "c" fits under the limit of 3.
    assert_eq!(
        out.iter()
            .filter(|e| matches!(e, Effect::Subscribe(_)))
            .count(),
        1
    );
    assert!(out.contains(&Effect::Subscribe("c".into())));
    let replies = replies(&mut session);
    let codes: Vec<&str> = replies
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(codes, ["bad_request", "forbidden", "limit", "-"]);
    assert_eq!(replies[1]["topic"], "user.alice");
    assert_eq!(replies[3], json!({"op":"subscribed","topics":["c"]}));
}

#[test]
fn anonymous_sessions_cannot_take_user_topics_but_a_user_takes_its_own() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut anonymous = open(&clock, &limits);
    let out = text(
        &mut anonymous,
        r#"{"op":"sub","topics":["user.alice"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, [Effect::Queued]);
    assert_eq!(replies(&mut anonymous)[0]["code"], "forbidden");
    assert!(!anonymous.wants("user.alice"));

    let alice = identity("alice", unix_now() + 600);
    let (mut session, _) = open_with(&clock, &limits, Some(alice), &[], &[]);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["user.alice"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(
        out,
        [Effect::Subscribe("user.alice".into()), Effect::Queued]
    );
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["user.bob"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, [Effect::Queued]);
    assert_eq!(replies(&mut session)[1]["code"], "forbidden");
}

#[test]
fn unsub_releases_held_topics_and_replies_with_all_asked() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let (mut session, _) = open_with(&clock, &limits, None, &["a", "b"], &[]);
    let out = text(
        &mut session,
        r#"{"op":"unsub","topics":["a","zzz"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, [Effect::Unsubscribe("a".into()), Effect::Queued]);
    assert_eq!(
        replies(&mut session),
        [json!({"op":"unsubscribed","topics":["a","zzz"]})]
    );
    assert_eq!(session.subscriptions(), [Box::<str>::from("b")]);
}

#[test]
fn ping_op_bad_json_and_binary_get_their_replies() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    text(&mut session, r#"{"op":"ping"}"#, &clock, &limits);
    text(&mut session, "not json", &clock, &limits);
    text(&mut session, r#"{"op":"dance"}"#, &clock, &limits);
    let mut out = Vec::new();
    let _ = session.on_frame(ClientEvent::Binary(b"x"), &clock, &limits, &mut out);
    let replies = replies(&mut session);
    assert_eq!(replies[0], json!({"op":"pong"}));
    assert_eq!(replies[1]["code"], "bad_request");
    assert_eq!(replies[2]["code"], "bad_request");
    assert!(replies[3]["message"].as_str().unwrap().contains("binary"));
    assert!(session.is_open());
}

#[test]
fn websocket_pings_get_pongs_with_the_same_payload() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    let mut out = Vec::new();
    let flow = session.on_frame(ClientEvent::Ping(b"abc"), &clock, &limits, &mut out);
    assert_eq!(flow, ControlFlow::Continue(()));
    let _ = session.on_frame(ClientEvent::Pong(b""), &clock, &limits, &mut out);
    assert_eq!(out, [Effect::Queued]);
    assert_eq!(written(&mut session), [(PONG, b"abc".to_vec())]);
}

// ---- refresh ----

#[test]
fn refresh_needs_auth_and_the_same_user_and_moves_exp() {
    let clock = Clock::new(Instant::now());
    let mut limits = limits();
    let mut session = open(&clock, &limits);
    text(
        &mut session,
        r#"{"op":"refresh","token":"x"}"#,
        &clock,
        &limits,
    );
    assert!(
        replies(&mut session)[0]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled")
    );

    limits.verifier = Some(verifier());
    let first = unix_now() + 60;
    let (mut session, _) = open_with(&clock, &limits, Some(identity("alice", first)), &[], &[]);
    let later = unix_now() + 3_600;
    let fresh = token(json!({"sub":"alice","exp":later}));
    let op = format!(r#"{{"op":"refresh","token":"{fresh}"}}"#);
    text(&mut session, &op, &clock, &limits);
    assert_eq!(
        replies(&mut session),
        [json!({"op":"refreshed","exp":later})]
    );
    assert_eq!(session.identity().unwrap().expires_at, later);

    let bob = token(json!({"sub":"bob","exp":later + 1}));
    let op = format!(r#"{{"op":"refresh","token":"{bob}"}}"#);
    text(&mut session, &op, &clock, &limits);
    assert_eq!(replies(&mut session)[0]["code"], "forbidden");
    assert_eq!(session.identity().unwrap().expires_at, later);

    text(
        &mut session,
        r#"{"op":"refresh","token":"garbage"}"#,
        &clock,
        &limits,
    );
    assert_eq!(replies(&mut session)[0]["code"], "bad_request");
    assert_eq!(session.identity().unwrap().user.as_deref(), Some("alice"));
}

/// Finding 3: a refresh whose token no longer covers a held pattern drops it, with a
/// `forbidden` error naming it before `refreshed`; the user topic and covered patterns stay.
#[test]
fn refresh_drops_what_the_new_token_no_longer_allows() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        verifier: Some(verifier()),
        ..limits()
    };
    let first = Identity {
        topics: Some(vec!["a.>".into(), "b.>".into()]),
        ..identity("alice", unix_now() + 60)
    };
    let (mut session, _) = open_with(
        &clock,
        &limits,
        Some(first),
        &["a.x", "b.x", "user.alice"],
        &[],
    );
    let later = unix_now() + 3_600;
    let narrower = token(json!({"sub":"alice","exp":later,"topics":["b.>"]}));
    let op = format!(r#"{{"op":"refresh","token":"{narrower}"}}"#);
    let out = text(&mut session, &op, &clock, &limits);
    assert_eq!(
        out.iter()
            .filter(|e| !matches!(e, Effect::Queued))
            .collect::<Vec<_>>(),
        [&Effect::Unsubscribe("a.x".into())]
    );
    assert_eq!(
        replies(&mut session),
        [
            json!({"op":"error","code":"forbidden","topic":"a.x",
                   "message":"not allowed by the refreshed token; unsubscribed"}),
            json!({"op":"refreshed","exp":later}),
        ]
    );
    assert!(!session.wants("a.x"));
    assert!(session.wants("b.x") && session.wants("user.alice"));
    let mut held: Vec<&str> = session.subscriptions().iter().map(|s| &**s).collect();
    held.sort_unstable();
    assert_eq!(held, ["b.x", "user.alice"]);
    // A refused refresh drops nothing.
    let bob = token(json!({"sub":"bob","exp":later,"topics":[]}));
    let out = text(
        &mut session,
        &format!(r#"{{"op":"refresh","token":"{bob}"}}"#),
        &clock,
        &limits,
    );
    assert!(!out.iter().any(|e| matches!(e, Effect::Unsubscribe(_))));
    assert_eq!(session.subscriptions().len(), 2);
}

// ---- rate limit ----

#[test]
fn over_the_rate_frames_are_dropped_with_one_error_per_window() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        max_client_messages_per_second: 2,
        ..limits()
    };
    let mut session = open(&clock, &limits);
    for _ in 0..5 {
        text(&mut session, r#"{"op":"ping"}"#, &clock, &limits);
    }
    let replies = replies(&mut session);
    assert_eq!(
        replies.len(),
        3,
        "two pongs and one limit error: {replies:?}"
    );
    assert_eq!(replies[2]["code"], "limit");
    // Pings count too, and over the rate they get no pong.
    let mut out = Vec::new();
    let _ = session.on_frame(ClientEvent::Ping(b""), &clock, &limits, &mut out);
    assert!(out.is_empty());
    // A new window allows again.
    let next = clock_at(&clock, 1_000);
    text(&mut session, r#"{"op":"ping"}"#, &next, &limits);
    assert_eq!(
        written(&mut session),
        [(TEXT, br#"{"op":"pong"}"#.to_vec())]
    );
}

#[test]
fn a_flood_over_three_windows_in_a_row_closes_1008() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        max_client_messages_per_second: 2,
        ..limits()
    };
    let (mut session, _) = open_with(&clock, &limits, None, &["news"], &[]);
    let mut closed = None;
    for ms in (0..4_000u64).step_by(100) {
        let at = clock_at(&clock, ms);
        let mut out = Vec::new();
        let flow = session.on_frame(ClientEvent::Pong(b""), &at, &limits, &mut out);
        if flow.is_break() {
            closed = Some((ms, out));
            break;
        }
    }
    let (ms, out) = closed.expect("the flood is closed");
    assert!((2_000..3_000).contains(&ms), "closed at {ms} ms");
    assert_eq!(
        out,
        [
            Effect::Unsubscribe("news".into()),
            Effect::Left,
            Effect::Closing(Cause::RateLimit)
        ]
    );
    assert_eq!(
        close_frame(&mut session),
        (1008, "message rate limit".into())
    );
}

// ---- close handshake ----

#[test]
fn a_peer_close_is_echoed_then_half_closed_then_dropped_after_the_linger() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let (mut session, _) = open_with(&clock, &limits, None, &["a"], &[]);
    assert!(session.offer(&Bytes::from_static(b"queued message"), &limits));
    let mut out = Vec::new();
    let flow = session.on_frame(
        ClientEvent::Close {
            code: Some(1001),
            reason: "bye",
        },
        &clock,
        &limits,
        &mut out,
    );
    assert!(flow.is_break());
    assert_eq!(
        out,
        [
            Effect::Unsubscribe("a".into()),
            Effect::Left,
            Effect::Closing(Cause::Peer)
        ]
    );
    // The unstarted message is gone; only the echo is sent.
    let frames = written(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, CLOSE);
    assert_eq!(frames[0].1[..2], 1001u16.to_be_bytes());

    // Nothing after the close is acted on.
    let mut out = Vec::new();
    let flow = session.on_frame(
        ClientEvent::Text(r#"{"op":"ping"}"#),
        &clock,
        &limits,
        &mut out,
    );
    assert!(flow.is_break() && out.is_empty());
    session.close(1000, "", Cause::Planned, &clock, &mut out);
    assert!(out.is_empty(), "closing twice does nothing");

    let all = Flushed::All { bytes: 4, calls: 1 };
    assert!(session.on_written(all, &clock).half_close);
    assert!(
        !session.on_written(all, &clock).half_close,
        "half-closed once"
    );
    let mut out = Vec::new();
    session.on_tick(
        &clock_at(&clock, 1_999),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert!(out.is_empty());
    session.on_tick(
        &clock_at(&clock, 2_000),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert_eq!(out, [Effect::Drop(Gone::LingerOver)]);
}

#[test]
fn a_close_without_a_code_is_answered_with_1000() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    let mut out = Vec::new();
    let _ = session.on_frame(
        ClientEvent::Close {
            code: None,
            reason: "",
        },
        &clock,
        &limits,
        &mut out,
    );
    assert_eq!(close_frame(&mut session), (1000, String::new()));
}

#[test]
fn a_close_keeps_the_rest_of_a_frame_already_started() {
    /// Takes `room` bytes, then blocks.
    struct Tight {
        room: usize,
        got: Vec<u8>,
    }
    impl Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    let first = frame::encode(OpCode::Data(Data::Text), b"first message");
    let second = frame::encode(OpCode::Data(Data::Text), b"second message");
    assert!(session.offer(&first, &limits));
    assert!(session.offer(&second, &limits));
    let mut tight = Tight {
        room: 5,
        got: Vec::new(),
    };
    let flushed = session.outbox_mut().write_to(&mut tight).unwrap();
    assert!(matches!(flushed, Flushed::Blocked { bytes: 5, .. }));
    assert!(session.on_written(flushed, &clock).blocked_changed);
    assert!(session.write_blocked());
    let mut out = Vec::new();
    session.slow_consumer(&clock, &mut out);
    let mut rest = Vec::new();
    session.outbox_mut().write_to(&mut rest).unwrap();
    let mut stream = tight.got;
    stream.extend_from_slice(&rest);
    let mut expected = first.to_vec();
    expected.extend_from_slice(&frame::encode_close(1008, "slow consumer"));
    assert_eq!(
        stream, expected,
        "the started frame completes, the unstarted one is gone"
    );
}

#[test]
fn a_violation_closes_with_its_code_and_label() {
    let clock = Clock::new(Instant::now());
    let mut session = open(&clock, &limits());
    let mut out = Vec::new();
    let violation = ProtocolError::MessageTooBig {
        declared: 10_000,
        max: 100,
    };
    session.on_violation(&violation, &clock, &mut out);
    assert_eq!(
        out,
        [
            Effect::Left,
            Effect::Closing(Cause::Violation(violation.label()))
        ]
    );
    assert_eq!(close_frame(&mut session).0, 1009);
}

#[test]
fn a_rejected_upgrade_sends_its_response_and_gives_back_nothing() {
    let clock = Clock::new(Instant::now());
    let mut session = Session::new(&clock, Duration::from_secs(5));
    let mut out = Vec::new();
    session.reject(
        Bytes::from_static(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        &clock,
        &mut out,
    );
    assert_eq!(out, [Effect::Closing(Cause::Rejected)]);
    let mut wire = Vec::new();
    session.outbox_mut().write_to(&mut wire).unwrap();
    assert!(wire.starts_with(b"HTTP/1.1 400"));
    assert!(matches!(
        session.phase(),
        Phase::Closing {
            fin_sent: false,
            ..
        }
    ));
}

// ---- timers ----

#[test]
fn a_handshake_is_dropped_at_its_deadline() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = Session::new(&clock, Duration::from_millis(1_500));
    let mut out = Vec::new();
    session.on_tick(
        &clock_at(&clock, 1_499),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert!(out.is_empty());
    session.on_tick(
        &clock_at(&clock, 1_500),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert_eq!(out, [Effect::Drop(Gone::HandshakeTimeout)]);
}

#[test]
fn a_silent_peer_is_pinged_once_then_dropped_never_early() {
    let clock = Clock::new(Instant::now());
    let limits = limits(); // ping interval 2 s
    let (mut session, _) = open_with(&clock, &limits, None, &["a"], &[]);
    let wall = SystemTime::now();
    let mut out = Vec::new();
    session.on_tick(&clock_at(&clock, 2_999), wall, &limits, &mut out);
    assert!(
        out.is_empty(),
        "2.999 s of silence is not more than 2 s in whole seconds"
    );
    session.on_tick(&clock_at(&clock, 3_000), wall, &limits, &mut out);
    assert_eq!(out, [Effect::Queued]);
    assert_eq!(written(&mut session), [(PING, Vec::new())]);
    out.clear();
    session.on_tick(&clock_at(&clock, 4_000), wall, &limits, &mut out);
    assert!(out.is_empty(), "one ping per silence");
    session.on_tick(&clock_at(&clock, 5_000), wall, &limits, &mut out);
    assert_eq!(out, [Effect::Drop(Gone::Silent)]);
}

#[test]
fn any_bytes_received_reset_liveness() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    let wall = SystemTime::now();
    let mut out = Vec::new();
    session.on_tick(&clock_at(&clock, 3_000), wall, &limits, &mut out);
    assert_eq!(out, [Effect::Queued]);
    session.on_received(&clock_at(&clock, 4_500));
    out.clear();
    session.on_tick(&clock_at(&clock, 6_000), wall, &limits, &mut out);
    assert!(out.is_empty());
    session.on_tick(&clock_at(&clock, 7_000), wall, &limits, &mut out);
    assert_eq!(out, [Effect::Queued], "pinged again after a new silence");
}

#[test]
fn a_peer_that_stops_reading_is_a_slow_consumer_after_two_ping_intervals() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    let blocked = Flushed::Blocked { bytes: 0, calls: 1 };
    session.on_written(blocked, &clock);
    let wall = SystemTime::now();
    let mut out = Vec::new();
    // It keeps talking, so liveness alone would keep it.
    let late = clock_at(&clock, 4_900);
    session.on_received(&late);
    session.on_tick(&late, wall, &limits, &mut out);
    assert!(out.is_empty());
    let later = clock_at(&clock, 5_000);
    session.on_received(&later);
    session.on_tick(&later, wall, &limits, &mut out);
    assert_eq!(out, [Effect::Left, Effect::Closing(Cause::SlowConsumer)]);
    assert_eq!(close_frame(&mut session), (1008, "slow consumer".into()));
}

#[test]
fn write_progress_restarts_the_stall_clock() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let mut session = open(&clock, &limits);
    session.on_written(Flushed::Blocked { bytes: 0, calls: 1 }, &clock);
    let moved = clock_at(&clock, 3_000);
    session.on_written(
        Flushed::Blocked {
            bytes: 10,
            calls: 1,
        },
        &moved,
    );
    let tick = clock_at(&clock, 5_000);
    session.on_received(&tick);
    let mut out = Vec::new();
    session.on_tick(&tick, SystemTime::now(), &limits, &mut out);
    assert!(out.is_empty());
    let all = Flushed::All { bytes: 1, calls: 1 };
    let w = session.on_written(all, &tick);
    assert!(w.blocked_changed && !w.half_close && !session.write_blocked());
}

#[test]
fn an_expired_token_closes_1008_unless_refreshed() {
    let clock = Clock::new(Instant::now());
    let limits = limits();
    let exp = unix_now() + 60;
    let (mut session, _) = open_with(&clock, &limits, Some(identity("alice", exp)), &[], &[]);
    let mut out = Vec::new();
    let before = UNIX_EPOCH + Duration::from_secs(exp - 1);
    session.on_tick(&clock, before, &limits, &mut out);
    assert!(out.is_empty());
    let at = UNIX_EPOCH + Duration::from_secs(exp);
    session.on_tick(&clock, at, &limits, &mut out);
    assert_eq!(out, [Effect::Left, Effect::Closing(Cause::TokenExpired)]);
    assert_eq!(close_frame(&mut session), (1008, "token expired".into()));
}

// ---- maxPendingBytes ----

#[test]
fn messages_fill_the_queue_up_to_the_bound_by_their_bytes() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        max_pending_bytes: 100,
        ..limits()
    };
    let mut session = open(&clock, &limits);
    let frame = Bytes::from(vec![b'x'; 50]);
    assert!(session.offer(&frame, &limits));
    assert!(
        session.offer(&frame, &limits),
        "exactly at the bound is allowed"
    );
    assert!(!session.offer(&Bytes::from_static(b"y"), &limits));
    assert_eq!(session.outbox().pending_bytes(), 100);
    let mut out = Vec::new();
    session.slow_consumer(&clock, &mut out);
    assert_eq!(out, [Effect::Left, Effect::Closing(Cause::SlowConsumer)]);
    assert!(!session.is_open());
}

#[test]
fn replies_are_charged_their_bytes_plus_the_per_frame_overhead() {
    let clock = Clock::new(Instant::now());
    // `{"op":"pong"}` is 13 bytes, 15 framed; two fit in exactly 2 × (15 + 64).
    let pong_cost = 15 + FRAME_OVERHEAD;
    for (bound, fits) in [(2 * pong_cost, 2), (2 * pong_cost - 1, 1)] {
        let limits = Limits {
            max_pending_bytes: bound,
            ..limits()
        };
        let mut session = open(&clock, &limits);
        let mut queued = 0;
        let mut closing = None;
        for _ in 0..3 {
            let out = text(&mut session, r#"{"op":"ping"}"#, &clock, &limits);
            match out.as_slice() {
                [Effect::Queued] => queued += 1,
                other => {
                    closing = Some(other.to_vec());
                    break;
                }
            }
        }
        assert_eq!(queued, fits, "bound {bound}");
        assert_eq!(
            closing.expect("over the bound closes"),
            [Effect::Left, Effect::Closing(Cause::SlowConsumer)]
        );
        assert_eq!(close_frame(&mut session).0, 1008);
    }
}

#[test]
fn leaving_an_open_session_releases_every_pattern_and_its_slot() {
    let clock = Clock::new(Instant::now());
    let (mut session, _) = open_with(&clock, &limits(), None, &["a", "b"], &[]);
    let mut out = Vec::new();
    session.leave(&mut out);
    assert_eq!(
        out,
        [
            Effect::Unsubscribe("a".into()),
            Effect::Unsubscribe("b".into()),
            Effect::Left
        ]
    );
}

#[test]
fn next_tick_is_when_the_timer_has_something_to_do() {
    let clock = Clock::new(Instant::now());
    let limits = limits(); // ping interval 2 s
    let wall = SystemTime::now();
    let handshaking = Session::new(&clock, Duration::from_millis(1_500));
    assert_eq!(
        handshaking.next_tick(&clock, wall, &limits),
        clock.now() + Duration::from_millis(1_500)
    );

    let (mut session, _) = open_with(&clock, &limits, None, &[], &[]);
    // Silent since 0: the ping is due in the first second where idle > 2, i.e. at 3 s.
    let due = session.next_tick(&clock, wall, &limits);
    assert_eq!(due, clock.now() + Duration::from_secs(3));
    let mut out = Vec::new();
    session.on_tick(
        &clock.at(due - Duration::from_millis(1)),
        wall,
        &limits,
        &mut out,
    );
    assert!(out.is_empty(), "nothing to do just before");
    let at = clock.at(due);
    session.on_tick(&at, wall, &limits, &mut out);
    assert_eq!(out, [Effect::Queued], "the ping, at the tick asked for");
    // Pinged: the drop is due at 5 s.
    let due = session.next_tick(&at, wall, &limits);
    assert_eq!(due, clock.now() + Duration::from_secs(5));
    out.clear();
    session.on_tick(&clock.at(due), wall, &limits, &mut out);
    assert_eq!(out, [Effect::Drop(Gone::Silent)]);

    // A token ending in 10 s comes first when the silence is longer; a far one waits at most
    // MAX_TICK_WAIT.
    let limits = Limits {
        ping_interval: Duration::from_secs(60),
        ..limits
    };
    let exp = unix_now() + 10;
    let wall = UNIX_EPOCH + Duration::from_secs(exp - 10);
    let (session, _) = open_with(&clock, &limits, Some(identity("alice", exp)), &[], &[]);
    assert_eq!(
        session.next_tick(&clock, wall, &limits),
        clock.now() + Duration::from_secs(10)
    );
    let (session, _) = open_with(
        &clock,
        &limits,
        Some(identity("bob", exp + 3_600)),
        &[],
        &[],
    );
    assert_eq!(
        session.next_tick(&clock, wall, &limits),
        clock.now() + MAX_TICK_WAIT
    );
    // A token already past its `exp` (accepted within the leeway) is looked at on the next
    // whole second, as the shards' sweep would.
    let (session, _) = open_with(&clock, &limits, Some(identity("carol", exp - 20)), &[], &[]);
    let at = clock_at(&clock, 300);
    assert_eq!(
        session.next_tick(&at, wall, &limits),
        clock.now() + Duration::from_secs(1)
    );
}

// ---- resume (history) ----

fn history_limits(topics: &[&str], epoch: &str) -> Limits {
    let config = crate::history::HistoryConfig::resolve(
        None,
        Some(topics.iter().map(|t| t.to_string()).collect()),
    )
    .unwrap()
    .unwrap();
    let state = crate::history::store::HistoryState::default();
    state.set_available(&Arc::from(epoch));
    Limits {
        history: Some(crate::history::ShardHistory {
            config: Arc::new(config),
            state: Arc::new(state),
        }),
        ..limits()
    }
}

fn stored(topic: &str, seq: u64) -> Arc<crate::message::Message> {
    crate::message::Message::with_seq(topic, Bytes::from(seq.to_string()), Some(seq))
}

fn replay_asks(out: &[Effect]) -> Vec<crate::session::ReplayAsk> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Replay(ask) => Some((**ask).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_resume_asks_for_a_replay_holds_live_messages_then_delivers_replay_then_live() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["news.>"], "e1");
    let mut session = open(&clock, &limits);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["news.>"],"since":{"news.>":4},"epoch":"e1"}"#,
        &clock,
        &limits,
    );
    assert!(out.contains(&Effect::Subscribe("news.>".into())));
    let asks = replay_asks(&out);
    assert_eq!(asks.len(), 1);
    assert_eq!((&*asks[0].pattern, asks[0].since), ("news.>", 4));
    assert_eq!(asks[0].epoch.as_deref(), Some("e1"));
    assert_eq!(session.replay_ticket(), Some(asks[0].ticket));
    assert_eq!(
        session.pending_replay_ticket(),
        Some(asks[0].ticket),
        "a replay is in flight"
    );
    assert!(
        replies(&mut session).is_empty(),
        "the reply waits for the replay"
    );
    // Live messages during the replay are held: 6 is also in the replay, 7 is not.
    let mut out = Vec::new();
    for seq in [6, 7] {
        assert!(session.is_resuming());
        assert!(session.offer_message(&stored("news.a", seq), &clock, &limits, &mut out));
    }
    assert!(written(&mut session).is_empty());
    let replayed = crate::history::merge::Replayed {
        messages: vec![stored("news.a", 5), stored("news.b", 6)],
        through: 6,
    };
    session.on_replay(
        "news.>",
        Some("e1"),
        Ok(replayed),
        &clock,
        &limits,
        &mut out,
    );
    assert!(out.contains(&Effect::Recovery("recovered")));
    assert_eq!(
        session.pending_replay_ticket(),
        None,
        "nothing in flight: a close need not tell the router"
    );
    let got: Vec<Value> = replies(&mut session);
    assert_eq!(
        got[0],
        json!({"op":"subscribed","topics":["news.>"],"epoch":"e1","recovered":true,"replayed":2})
    );
    let seqs: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 6, 7]);
    // A late live copy of a replayed message is dropped; a newer one passes.
    assert!(session.offer_message(&stored("news.b", 6), &clock, &limits, &mut out));
    assert!(session.offer_message(&stored("news.b", 8), &clock, &limits, &mut out));
    let got = replies(&mut session);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["seq"], 8);
}

#[test]
fn a_resume_without_history_is_answered_at_once_and_live_only() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["news.>"], "e1");
    let mut session = open(&clock, &limits);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["chat","news.>"],"since":{"chat":3},"epoch":"e1"}"#,
        &clock,
        &limits,
    );
    assert!(replay_asks(&out).is_empty());
    assert!(out.contains(&Effect::Recovery("no_history")));
    let got = replies(&mut session);
    assert_eq!(
        got[0],
        json!({"op":"subscribed","topics":["news.>"],"epoch":"e1"})
    );
    assert_eq!(got[1]["topics"], json!(["chat"]));
    assert_eq!(got[1]["recovered"], false);
    assert_eq!(got[1]["reason"], "no_history");
    assert!(!session.is_resuming());
}

/// Review finding 6 (second half): in cluster mode a resumed pattern is fetched only once it is
/// live, which may take up to the confirmation deadline; the session waits for the replay that
/// much longer, so a slow confirmation does not end the resume `timeout` while the fetch runs.
#[test]
fn a_replay_waiting_for_its_confirmation_gets_the_confirmation_time_on_top() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        confirm: Some(Duration::from_secs(5)),
        ..history_limits(&["a"], "e1")
    };
    let mut session = open(&clock, &limits);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["a"],"since":{"a":1},"epoch":"e1"}"#,
        &clock,
        &limits,
    );
    assert!(out.contains(&Effect::Want("a".into())), "{out:?}");
    assert_eq!(replay_asks(&out).len(), 1, "{out:?}");
    // Confirmed late (6.9 s, within the 5 s + 2 s the session gives it); the fetch starts then
    // and may take replayTimeout (5 s).
    let mut out = Vec::new();
    let late = clock_at(&clock, 6_900);
    session.on_confirmed("a", true, &late, &limits, &mut out);
    session.on_tick(
        &clock_at(&clock, 11_500),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert!(
        written(&mut session).is_empty(),
        "no timeout while the fetch may run"
    );
    // replayTimeout + grace + the confirmation's 7 s: given up on past 17 s.
    session.on_tick(
        &clock_at(&clock, 17_000),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert!(written(&mut session).is_empty());
    session.on_tick(
        &clock_at(&clock, 18_000),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    let got = replies(&mut session);
    assert_eq!(got[0]["recovered"], false, "{got:?}");
    assert_eq!(got[0]["reason"], "timeout", "{got:?}");
}

#[test]
fn an_unanswered_replay_times_out_and_releases_what_it_held() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["a"], "e1");
    let mut session = open(&clock, &limits);
    text(
        &mut session,
        r#"{"op":"sub","topics":["a"],"since":{"a":1},"epoch":"e1"}"#,
        &clock,
        &limits,
    );
    let mut out = Vec::new();
    session.offer_message(&stored("a", 2), &clock, &limits, &mut out);
    // replayTimeout (5 s) plus the grace: nothing yet at 9 s, given up at 12 s.
    session.on_tick(
        &clock_at(&clock, 9_000),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    assert!(written(&mut session).is_empty());
    session.on_tick(
        &clock_at(&clock, 12_000),
        SystemTime::now(),
        &limits,
        &mut out,
    );
    let got = replies(&mut session);
    assert_eq!(got[0]["recovered"], false);
    assert_eq!(got[0]["reason"], "timeout");
    assert_eq!(got[1]["seq"], 2);
    // The late answer changes nothing.
    session.on_replay(
        "a",
        None,
        Err(NotRecovered::TooOld),
        &clock,
        &limits,
        &mut out,
    );
    assert!(written(&mut session).is_empty());
}

fn big(topic: &str, seq: u64, size: usize) -> Arc<crate::message::Message> {
    crate::message::Message::with_seq(topic, Bytes::from(vec![b'x'; size]), Some(seq))
}

fn message_seqs(got: &[Value]) -> Vec<u64> {
    got.iter().filter_map(|m| m["seq"].as_u64()).collect()
}

fn resumed_a(limits: &Limits, clock: &Clock) -> Session {
    let mut session = open(clock, limits);
    text(
        &mut session,
        r#"{"op":"sub","topics":["a"],"since":{"a":1},"epoch":"e1"}"#,
        clock,
        limits,
    );
    session
}

#[test]
fn an_overflowing_hold_buffer_ends_not_recovered_and_live_never_slow_consumer() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        max_pending_bytes: 8 * 1024,
        ..history_limits(&["a"], "e1")
    };
    let mut session = resumed_a(&limits, &clock);
    let mut out = Vec::new();
    let mut seq = 2;
    while !out.contains(&Effect::Recovery("overflow")) {
        assert!(seq < 100, "the hold buffer is bounded");
        assert!(session.offer_message(&big("a", seq, 500), &clock, &limits, &mut out));
        seq += 1;
    }
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Closing(_))),
        "overflow is recovered:false and live, not a close: {out:?}"
    );
    assert!(session.is_open());
    let got = replies(&mut session);
    assert_eq!(got[0]["recovered"], false);
    assert_eq!(got[0]["reason"], "overflow");
    assert_eq!(message_seqs(&got[1..]), (2..seq).collect::<Vec<_>>());
    // Live from now on.
    assert!(session.offer_message(&big("a", seq, 500), &clock, &limits, &mut out));
    assert_eq!(message_seqs(&replies(&mut session)), [seq]);
}

/// Finding 14: a replay hands out no reserved topic (`_…`, `$…`) the resumed wildcard never
/// matches live, and does not count it.
#[test]
fn a_replay_leaves_out_reserved_topics_live_delivery_refuses() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["*"], "e1");
    let mut session = open(&clock, &limits);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["*"],"since":{"*":1},"epoch":"e1"}"#,
        &clock,
        &limits,
    );
    assert_eq!(replay_asks(&out).len(), 1);
    let replayed = crate::history::merge::Replayed {
        messages: vec![stored("_x", 2), stored("ok", 3), stored("$y", 4)],
        through: 4,
    };
    let mut out = Vec::new();
    session.on_replay("*", Some("e1"), Ok(replayed), &clock, &limits, &mut out);
    let got = replies(&mut session);
    assert_eq!(
        got[0],
        json!({"op":"subscribed","topics":["*"],"epoch":"e1","recovered":true,"replayed":1})
    );
    assert_eq!(message_seqs(&got[1..]), [3]);
    // Live copies of what the replay went through are still duplicates.
    assert!(session.offer_message(&stored("ok", 3), &clock, &limits, &mut out));
    assert!(replies(&mut session).is_empty());
}

#[test]
fn a_replay_too_big_for_the_queue_ends_not_recovered_and_live_never_slow_consumer() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        max_pending_bytes: 8 * 1024,
        ..history_limits(&["a"], "e1")
    };
    let mut session = resumed_a(&limits, &clock);
    let mut out = Vec::new();
    assert!(session.offer_message(&big("a", 30, 500), &clock, &limits, &mut out));
    // Within replayMaxBytes (512 KiB), but more than this connection's queue takes.
    let replayed = crate::history::merge::Replayed {
        messages: (2..30).map(|seq| big("a", seq, 500)).collect(),
        through: 29,
    };
    session.on_replay("a", Some("e1"), Ok(replayed), &clock, &limits, &mut out);
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Closing(_))),
        "a replay that cannot fit is refused, not a close: {out:?}"
    );
    assert!(out.contains(&Effect::Recovery("limit")));
    let got = replies(&mut session);
    assert_eq!(got[0]["recovered"], false);
    assert_eq!(got[0]["reason"], "limit");
    assert_eq!(message_seqs(&got[1..]), [30]);
    assert!(session.is_open());
}

#[test]
fn after_the_stream_is_recreated_a_resumed_pattern_gets_its_low_sequences_again() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["a"], "e1");
    let mut session = resumed_a(&limits, &clock);
    let mut out = Vec::new();
    let replayed = crate::history::merge::Replayed {
        messages: vec![stored("a", 2)],
        through: 50,
    };
    session.on_replay("a", Some("e1"), Ok(replayed), &clock, &limits, &mut out);
    replies(&mut session);
    assert!(session.offer_message(&stored("a", 3), &clock, &limits, &mut out));
    assert!(
        replies(&mut session).is_empty(),
        "a late copy of the old stream"
    );
    // The stream is deleted and recreated: sequences restart at 1 under a new epoch.
    let history = limits.history.as_ref().unwrap();
    history.state.set_available(&Arc::from("e2"));
    for seq in 1..=3 {
        assert!(session.offer_message(&stored("a", seq), &clock, &limits, &mut out));
    }
    assert_eq!(message_seqs(&replies(&mut session)), [1, 2, 3]);
}

#[test]
fn overlapping_patterns_resumed_together_are_replied_then_merged_without_duplicates() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["news.>"], "e1");
    let mut session = open(&clock, &limits);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["news.>","news.eu"],"since":{"news.>":2,"news.eu":2},"epoch":"e1"}"#,
        &clock,
        &limits,
    );
    assert_eq!(replay_asks(&out).len(), 2);
    let mut out = Vec::new();
    let wide = crate::history::merge::Replayed {
        messages: vec![
            stored("news.eu", 3),
            stored("news.us", 4),
            stored("news.eu", 5),
        ],
        through: 5,
    };
    session.on_replay("news.>", Some("e1"), Ok(wide), &clock, &limits, &mut out);
    assert!(
        written(&mut session).is_empty(),
        "waits for the other replay"
    );
    let narrow = crate::history::merge::Replayed {
        messages: vec![stored("news.eu", 3), stored("news.eu", 5)],
        through: 5,
    };
    session.on_replay("news.eu", Some("e1"), Ok(narrow), &clock, &limits, &mut out);
    let got = replies(&mut session);
    assert_eq!(got[0]["recovered"], true);
    assert_eq!(got[1]["recovered"], true);
    assert_eq!(got[0]["topics"], json!(["news.>"]));
    assert_eq!(got[0]["replayed"], 3);
    assert_eq!(got[1]["replayed"], 2);
    assert_eq!(message_seqs(&got[2..]), [3, 4, 5]);
}

/// Nothing follows the close frame: a resume whose reply tips the queue over the bound closes
/// the session (1008), and the held messages are not queued behind the close.
#[test]
fn no_message_frame_follows_the_close_frame() {
    let clock = Clock::new(Instant::now());
    let limits = history_limits(&["news.>"], "e1");
    let mut session = open(&clock, &limits);
    let _ = text(
        &mut session,
        r#"{"op":"sub","topics":["news.>"]}"#,
        &clock,
        &limits,
    );
    let _ = written(&mut session);
    // The client stops reading and pings: pongs fill the queue to within 66 bytes of the bound.
    let payload = [b'x'; 125];
    let mut out = Vec::new();
    let mut ms = 0;
    while session.outbox().footprint() + 2 + FRAME_OVERHEAD <= limits.max_pending_bytes {
        let gap = limits.max_pending_bytes - session.outbox().footprint() - 2 - FRAME_OVERHEAD;
        ms += 20;
        let at = clock_at(&clock, ms);
        let _ = session.on_frame(
            ClientEvent::Ping(&payload[..gap.min(125)]),
            &at,
            &limits,
            &mut out,
        );
    }
    assert!(session.is_open(), "still open, queue just under the bound");
    let at = clock_at(&clock, ms + 20);
    let _ = text(
        &mut session,
        r#"{"op":"sub","topics":["news.>"],"since":{"news.>":4},"epoch":"e1"}"#,
        &at,
        &limits,
    );
    assert!(session.is_resuming());
    let mut out = Vec::new();
    let _ = session.offer_message(&stored("news.a", 7), &at, &limits, &mut out);
    assert!(!session.is_open(), "the resume reply did not fit: 1008");
    let frames = written(&mut session);
    let close = frames
        .iter()
        .position(|(op, _)| *op == CLOSE)
        .expect("a close frame");
    assert_eq!(
        close,
        frames.len() - 1,
        "frames after the close: {:?}",
        frames[close + 1..]
            .iter()
            .map(|(op, p)| (op, String::from_utf8_lossy(p).into_owned()))
            .collect::<Vec<_>>()
    );
}

/// A session holding `premium.>` (live) and `free.>` (resuming, its replay in flight), with a
/// live `premium.x` and a live `free.a` held behind that replay. Auth is on so a refresh can
/// revoke `premium.>`.
fn resuming_free_holding_premium(clock: &Clock, limits: &Limits) -> Session {
    let first = Identity {
        topics: Some(vec!["premium.>".into(), "free.>".into()]),
        ..identity("alice", unix_now() + 60)
    };
    let (mut session, _) = open_with(clock, limits, Some(first), &["premium.>"], &[]);
    let out = text(
        &mut session,
        r#"{"op":"sub","topics":["free.>"],"since":{"free.>":4},"epoch":"e1"}"#,
        clock,
        limits,
    );
    assert_eq!(replay_asks(&out).len(), 1);
    let mut out = Vec::new();
    assert!(session.offer_message(&stored("premium.x", 7), clock, limits, &mut out));
    assert!(session.offer_message(&stored("free.a", 6), clock, limits, &mut out));
    assert!(written(&mut session).is_empty(), "both held");
    session
}

/// The `free.>` replay answers: the resume's reply and the messages released after it.
fn finish_free_replay(session: &mut Session, clock: &Clock, limits: &Limits) -> Vec<Value> {
    let mut out = Vec::new();
    let replayed = crate::history::merge::Replayed {
        messages: vec![stored("free.a", 5)],
        through: 5,
    };
    session.on_replay("free.>", Some("e1"), Ok(replayed), clock, limits, &mut out);
    replies(session)
}

/// Review 2 finding 7: a refresh that revokes a pattern while a resume holds live messages
/// drops the held messages of that pattern: none follows the `forbidden … unsubscribed` reply.
#[test]
fn a_refresh_revoking_a_pattern_during_a_resume_drops_its_held_messages() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        verifier: Some(verifier()),
        ..history_limits(&["premium.>", "free.>"], "e1")
    };
    let mut session = resuming_free_holding_premium(&clock, &limits);
    let later = unix_now() + 3_600;
    let narrower = token(json!({"sub":"alice","exp":later,"topics":["free.>"]}));
    let op = format!(r#"{{"op":"refresh","token":"{narrower}"}}"#);
    let out = text(&mut session, &op, &clock, &limits);
    assert!(out.contains(&Effect::Unsubscribe("premium.>".into())));
    let mut got = replies(&mut session);
    assert_eq!(got[0]["code"], "forbidden");
    assert_eq!(got[0]["topic"], "premium.>");
    assert_eq!(got[1]["op"], "refreshed");
    got = finish_free_replay(&mut session, &clock, &limits);
    assert_eq!(got[0]["recovered"], true);
    let topics: Vec<&str> = got[1..]
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        ["free.a", "free.a"],
        "no premium.x after its revocation"
    );
    assert_eq!(message_seqs(&got[1..]), [5, 6]);
}

/// The same for `unsub`: held messages of the pattern dropped are not delivered after the
/// `unsubscribed` reply; those another held pattern still matches are.
#[test]
fn an_unsub_during_a_resume_drops_the_held_messages_no_other_pattern_wants() {
    let clock = Clock::new(Instant::now());
    let limits = Limits {
        verifier: Some(verifier()),
        ..history_limits(&["premium.>", "free.>"], "e1")
    };
    let mut session = resuming_free_holding_premium(&clock, &limits);
    let _ = text(
        &mut session,
        r#"{"op":"unsub","topics":["premium.>"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(replies(&mut session)[0]["op"], "unsubscribed");
    let got = finish_free_replay(&mut session, &clock, &limits);
    assert_eq!(got[0]["recovered"], true);
    assert_eq!(message_seqs(&got[1..]), [5, 6], "no premium.x: {got:?}");

    // A held message another pattern still matches stays.
    let mut session = resuming_free_holding_premium(&clock, &limits);
    let _ = text(
        &mut session,
        r#"{"op":"sub","topics":["premium.x"]}"#,
        &clock,
        &limits,
    );
    let _ = text(
        &mut session,
        r#"{"op":"unsub","topics":["premium.>"]}"#,
        &clock,
        &limits,
    );
    let _ = replies(&mut session);
    let got = finish_free_replay(&mut session, &clock, &limits);
    let topics: Vec<&str> = got[1..]
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["free.a", "free.a", "premium.x"]);
    assert_eq!(message_seqs(&got[1..]), [5, 6, 7]);
}
