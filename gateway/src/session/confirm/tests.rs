//! Pending subscriptions without a socket: a new pattern waits for the engine's answer, is
//! answered then (or `unavailable`), and is withdrawn when it stops being wanted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::*;
use crate::access::Admission;
use crate::handshake::Format;

fn cluster_limits() -> Limits {
    Limits {
        max_pending_bytes: 64 * 1024,
        max_subscriptions: 4,
        max_client_messages_per_second: 100,
        ping_interval: Duration::from_secs(30),
        verifier: None,
        history: None,
        confirm: Some(Duration::from_secs(5)),
    }
}

fn opened(clock: &Clock, limits: &Limits, topics: &[&str]) -> (Session, Vec<Effect>) {
    let mut session = Session::new(clock, Duration::from_secs(5));
    let mut out = Vec::new();
    let admission = Admission {
        identity: None,
        allowed: topics.iter().map(|s| s.to_string()).collect(),
        forbidden: Vec::new(),
        resumed: None,
    };
    session.open(admission, Format::Envelope, clock, limits, &mut out);
    (session, out)
}

fn op(session: &mut Session, text: &str, clock: &Clock, limits: &Limits) -> Vec<Effect> {
    let mut out = Vec::new();
    let _ = session.on_frame(ClientEvent::Text(text), clock, limits, &mut out);
    out
}

fn confirmed(
    session: &mut Session,
    pattern: &str,
    live: bool,
    clock: &Clock,
    limits: &Limits,
) -> Vec<Effect> {
    let mut out = Vec::new();
    session.on_confirmed(pattern, live, clock, limits, &mut out);
    out
}

/// The text replies queued so far.
fn replies(session: &mut Session) -> Vec<Value> {
    let mut replies = Vec::new();
    while let Some(frame) = session.outbox_mut().pop() {
        // Replies here are under 64 KiB: a 2- or 4-byte header.
        assert_eq!(frame[0] & 0x0f, 0x1, "a text frame");
        let header = match frame[1] & 0x7f {
            126 => 4,
            127 => panic!("a reply over 64 KiB"),
            _ => 2,
        };
        replies.push(serde_json::from_slice(&frame[header..]).unwrap());
    }
    replies
}

fn want(p: &str) -> Effect {
    Effect::Want(p.into())
}

#[test]
fn a_new_pattern_is_answered_only_once_confirmed_and_live_after_its_reply() {
    let limits = cluster_limits();
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &[]);
    let out = op(
        &mut session,
        r#"{"op":"sub","topics":["a","b"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, vec![want("a"), want("b")]);
    assert!(
        replies(&mut session).is_empty(),
        "no reply before the confirmation"
    );
    assert_eq!(session.pending(), ["a", "b"]);
    assert!(
        !session.wants("a"),
        "nothing is delivered for a pending pattern"
    );

    let out = confirmed(&mut session, "b", true, &clock, &limits);
    // The pattern goes into the index when the engine applies this, after the reply is queued.
    assert_eq!(out, vec![Effect::Subscribe("b".into()), Effect::Queued]);
    assert_eq!(
        replies(&mut session),
        [json!({"op":"subscribed","topics":["b"]})]
    );
    assert!(session.wants("b"));
    assert!(!session.wants("a"));
    assert_eq!(session.pending(), ["a"]);
}

#[test]
fn a_pattern_that_cannot_be_confirmed_is_refused_and_not_kept() {
    let limits = cluster_limits();
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &[]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    let out = confirmed(&mut session, "a", false, &clock, &limits);
    // The engine already dropped it as a waiter: no withdraw, no subscribe.
    assert_eq!(out, vec![Effect::Queued]);
    let reply = &replies(&mut session)[0];
    assert_eq!(reply["op"], "error");
    assert_eq!(reply["code"], "unavailable");
    assert_eq!(reply["topic"], "a");
    assert!(session.subscriptions().is_empty());
    assert!(session.pending().is_empty());
    // The client may retry: it is a new pattern again.
    let out = op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, vec![want("a")]);
}

#[test]
fn unsub_and_close_while_pending_withdraw_and_a_late_answer_is_ignored() {
    let limits = cluster_limits();
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &[]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["a","b"]}"#,
        &clock,
        &limits,
    );
    let out = op(
        &mut session,
        r#"{"op":"unsub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, vec![Effect::Withdraw("a".into()), Effect::Queued]);
    assert_eq!(
        replies(&mut session),
        [json!({"op":"unsubscribed","topics":["a"]})]
    );
    assert!(confirmed(&mut session, "a", true, &clock, &limits).is_empty());
    assert!(replies(&mut session).is_empty());

    let mut out = Vec::new();
    session.leave(&mut out);
    assert_eq!(out, vec![Effect::Withdraw("b".into()), Effect::Left]);
    // Nothing pending is left behind: the session is as small as one that never waited.
    assert!(session.extra.is_none());
}

#[test]
fn a_pending_pattern_is_given_up_on_at_its_deadline() {
    let limits = cluster_limits();
    let start = Instant::now();
    let clock = Clock::new(start);
    let (mut session, _) = opened(&clock, &limits, &[]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    let due = session.next_tick(&clock, SystemTime::now(), &limits);
    let deadline = start + Duration::from_secs(5) + confirm::ANSWER_GRACE;
    assert_eq!(due, deadline, "the engine wakes for the deadline");

    let mut out = Vec::new();
    let before = clock.at(deadline - Duration::from_millis(1));
    session.on_tick(&before, SystemTime::now(), &limits, &mut out);
    assert!(out.is_empty());
    session.on_tick(&clock.at(deadline), SystemTime::now(), &limits, &mut out);
    assert_eq!(out, vec![Effect::Withdraw("a".into()), Effect::Queued]);
    assert_eq!(replies(&mut session)[0]["code"], "unavailable");
    assert!(session.subscriptions().is_empty());
}

#[test]
fn url_topics_wait_too_and_get_no_reply_without_history() {
    let limits = cluster_limits();
    let clock = Clock::new(Instant::now());
    let (mut session, out) = opened(&clock, &limits, &["a"]);
    assert_eq!(out, vec![want("a")]);
    let mut out = Vec::new();
    session.announce_epoch(&clock, &limits, &mut out);
    assert!(out.is_empty());
    let out = confirmed(&mut session, "a", true, &clock, &limits);
    assert_eq!(out, vec![Effect::Subscribe("a".into())]);
    assert!(replies(&mut session).is_empty());
    // Unless it cannot be confirmed: then the client is told, by a 1013 close (see
    // `a_pattern_that_came_with_the_connection_and_cannot_be_confirmed_closes_1013`).
    let (mut session, _) = opened(&clock, &limits, &["a"]);
    confirmed(&mut session, "a", false, &clock, &limits);
    assert_eq!(last_close(&mut session).0, 1013);
}

#[test]
fn a_sub_of_a_pending_pattern_waits_for_the_same_answer() {
    let limits = cluster_limits();
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &["a"]);
    // Held already (pending): no second want, and the reply waits too.
    let out = op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    assert!(out.is_empty());
    assert!(replies(&mut session).is_empty());
    confirmed(&mut session, "a", true, &clock, &limits);
    assert_eq!(
        replies(&mut session),
        [json!({"op":"subscribed","topics":["a"]})]
    );
    // A pattern live already is answered at once, as before.
    let out = op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, vec![Effect::Queued]);
}

#[test]
fn pending_patterns_count_against_the_subscription_limit() {
    let limits = Limits {
        max_subscriptions: 1,
        ..cluster_limits()
    };
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &[]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    op(
        &mut session,
        r#"{"op":"sub","topics":["b"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(replies(&mut session)[0]["code"], "limit");
}

#[test]
fn standalone_patterns_are_live_and_answered_at_once() {
    let limits = Limits {
        confirm: None,
        ..cluster_limits()
    };
    let clock = Clock::new(Instant::now());
    let (mut session, out) = opened(&clock, &limits, &["u"]);
    assert_eq!(out, vec![Effect::Subscribe("u".into())]);
    let out = op(
        &mut session,
        r#"{"op":"sub","topics":["a"]}"#,
        &clock,
        &limits,
    );
    assert_eq!(out, vec![Effect::Subscribe("a".into()), Effect::Queued]);
    assert_eq!(
        replies(&mut session),
        [json!({"op":"subscribed","topics":["a"]})]
    );
}

#[test]
fn a_resume_answered_at_once_is_held_until_the_pattern_is_live() {
    let limits = cluster_limits();
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &[]);
    // No history here: the session knows the answer (`no_history`) at once...
    let out = op(
        &mut session,
        r#"{"op":"sub","topics":["chat"],"since":{"chat":3}}"#,
        &clock,
        &limits,
    );
    assert!(out.contains(&want("chat")));
    // ...but it is the pattern's reply, so it waits for the pattern to be live.
    assert!(replies(&mut session).is_empty());
    let out = confirmed(&mut session, "chat", true, &clock, &limits);
    assert_eq!(out.first(), Some(&Effect::Subscribe("chat".into())));
    let reply = &replies(&mut session)[0];
    assert_eq!(reply["topics"], json!(["chat"]));
    assert_eq!(reply["recovered"], false);
    assert_eq!(reply["reason"], "no_history");

    // Not live after all: the error alone.
    let (mut session, _) = opened(&clock, &limits, &[]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["chat"],"since":{"chat":3}}"#,
        &clock,
        &limits,
    );
    confirmed(&mut session, "chat", false, &clock, &limits);
    let replies = replies(&mut session);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["code"], "unavailable");
}

/// Review finding 1: a reply that overflows the queue closes the session as a slow consumer; the
/// pattern must not be left in the engine's index after the connection left.
#[test]
fn a_reply_that_closes_the_session_leaves_no_subscribe_behind_its_leave() {
    let limits = Limits {
        max_pending_bytes: 160,
        ..cluster_limits()
    };
    let clock = Clock::new(Instant::now());
    let (mut session, _) = opened(&clock, &limits, &[]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["p"],"since":{"p":1}}"#,
        &clock,
        &limits,
    );
    // No history: the `recovered:false` answer is held, and it is what does not fit.
    assert!(replies(&mut session).is_empty());
    let out = confirmed(&mut session, "p", true, &clock, &limits);
    assert!(!session.is_open(), "closed as a slow consumer: {out:?}");
    let left = out.iter().position(|e| *e == Effect::Left).expect("left");
    assert!(
        !out[left..]
            .iter()
            .any(|e| matches!(e, Effect::Subscribe(_))),
        "no Subscribe after Left: {out:?}"
    );
    // Every Subscribe is undone by an Unsubscribe after it, so the index ends clean.
    let subscribe = out.iter().position(|e| *e == Effect::Subscribe("p".into()));
    let unsubscribe = out
        .iter()
        .position(|e| *e == Effect::Unsubscribe("p".into()));
    match (subscribe, unsubscribe) {
        (Some(s), Some(u)) => assert!(s < u, "{out:?}"),
        (None, None) => {}
        _ => panic!("unbalanced: {out:?}"),
    }
    assert!(
        out.contains(&Effect::Closing(Cause::SlowConsumer)),
        "{out:?}"
    );
}

/// The close frame queued last: (code, reason).
fn last_close(session: &mut Session) -> (u16, String) {
    let mut last = None;
    while let Some(frame) = session.outbox_mut().pop() {
        last = Some(frame);
    }
    let frame = last.expect("a frame");
    assert_eq!(frame[0] & 0x0f, 0x8, "a close frame");
    let payload = &frame[2..];
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8(payload[2..].to_vec()).unwrap())
}

/// Review finding 9: a URL topic (or the token's `user.<sub>`) that cannot be confirmed closes
/// the connection with 1013, whether the engine says so or the session's own deadline passes;
/// an explicit `sub` keeps the `unavailable` error.
#[test]
fn a_pattern_that_came_with_the_connection_and_cannot_be_confirmed_closes_1013() {
    let limits = cluster_limits();
    let start = Instant::now();
    let clock = Clock::new(start);

    // The engine's answer.
    let (mut session, _) = opened(&clock, &limits, &["u", "v"]);
    let out = confirmed(&mut session, "u", false, &clock, &limits);
    assert!(!session.is_open());
    assert!(
        out.contains(&Effect::Closing(Cause::Unavailable)),
        "{out:?}"
    );
    // The other one is withdrawn by the close; `u` was dropped by the engine already.
    assert!(out.contains(&Effect::Withdraw("v".into())), "{out:?}");
    assert!(!out.iter().any(|e| *e == Effect::Unsubscribe("u".into())));
    assert_eq!(
        last_close(&mut session),
        (1013, "subscription unavailable; reconnect".to_owned())
    );
    // The other one's late answer changes nothing.
    assert!(confirmed(&mut session, "v", false, &clock, &limits).is_empty());

    // The session's own deadline.
    let (mut session, _) = opened(&clock, &limits, &["u"]);
    let deadline = start + Duration::from_secs(5) + confirm::ANSWER_GRACE;
    let mut out = Vec::new();
    session.on_tick(&clock.at(deadline), SystemTime::now(), &limits, &mut out);
    assert_eq!(out[0], Effect::Withdraw("u".into()), "{out:?}");
    assert!(
        out.contains(&Effect::Closing(Cause::Unavailable)),
        "{out:?}"
    );
    assert_eq!(last_close(&mut session).0, 1013);

    // Asked again with an op: the op's answer, an error; the connection stays.
    let (mut session, _) = opened(&clock, &limits, &["u"]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["u"]}"#,
        &clock,
        &limits,
    );
    confirmed(&mut session, "u", false, &clock, &limits);
    assert!(session.is_open());
    assert_eq!(replies(&mut session)[0]["code"], "unavailable");
}

/// Review finding 11: a URL topic resumed from the URL (`?topics=u&since=1`: the engine calls
/// `resume` at the handshake) is still one the client sent no op for, so one that cannot be
/// confirmed closes the connection 1013 too (engine's answer or the session's deadline), not an
/// `unavailable` error that leaves it connected and deaf. The same topic resumed by a `sub` op
/// gets that op's error.
#[test]
fn a_url_topic_resumed_from_the_url_and_not_confirmed_closes_1013() {
    let limits = cluster_limits();
    let start = Instant::now();
    let clock = Clock::new(start);

    // The engine's answer.
    let (mut session, _) = opened(&clock, &limits, &["u"]);
    let mut out = Vec::new();
    session.resume("u", 1, None, &clock, &limits, &mut out);
    let out = confirmed(&mut session, "u", false, &clock, &limits);
    assert!(!session.is_open(), "left connected and deaf: {out:?}");
    assert!(
        out.contains(&Effect::Closing(Cause::Unavailable)),
        "{out:?}"
    );
    assert_eq!(
        last_close(&mut session),
        (1013, "subscription unavailable; reconnect".to_owned())
    );

    // The session's own deadline (the resume's wait is longer, the confirmation's comes first).
    let (mut session, _) = opened(&clock, &limits, &["u"]);
    let mut out = Vec::new();
    session.resume("u", 1, None, &clock, &limits, &mut out);
    let deadline = start + Duration::from_secs(5) + confirm::ANSWER_GRACE;
    let mut out = Vec::new();
    session.on_tick(&clock.at(deadline), SystemTime::now(), &limits, &mut out);
    assert!(
        out.contains(&Effect::Closing(Cause::Unavailable)),
        "{out:?}"
    );
    assert_eq!(last_close(&mut session).0, 1013);

    // Resumed with a `sub` op instead: the op is answered, the connection stays.
    let (mut session, _) = opened(&clock, &limits, &["u"]);
    op(
        &mut session,
        r#"{"op":"sub","topics":["u"],"since":{"u":1}}"#,
        &clock,
        &limits,
    );
    confirmed(&mut session, "u", false, &clock, &limits);
    assert!(session.is_open());
    assert!(
        replies(&mut session)
            .iter()
            .any(|r| r["code"] == "unavailable"),
        "the op's error"
    );
}
