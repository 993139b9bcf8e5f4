use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;
use crate::handshake::RejectReason;

const SECRET: &[u8] = b"access-test-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    crate::auth::hs256_test_token(&claims, SECRET)
}

fn verifier() -> Verifier {
    crate::auth::hs256_test_verifier(SECRET)
}

fn topics(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn alice() -> Identity {
    Identity {
        user: Some("alice".into()),
        expires_at: now() + 600,
        topics: None,
    }
}

#[test]
fn anonymous_upgrade_splits_url_topics_and_ignores_tokens() {
    let a = admit(
        topics(&["news", "user.x", "news", ">"]),
        false,
        Some("junk"),
        None,
        10,
    )
    .unwrap();
    assert_eq!(a.identity, None);
    assert_eq!(a.allowed, ["news"]);
    assert_eq!(a.forbidden, [">", "user.x"]);
}

#[test]
fn upgrade_topic_count_and_validity_are_400() {
    let e = admit(topics(&["a", "b", "c"]), false, None, None, 2).unwrap_err();
    assert_eq!(e.reason(), RejectReason::BadRequest);
    let e = admit(topics(&["a..b"]), false, None, None, 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::BadRequest);
}

#[test]
fn upgrade_tokens_are_401_when_auth_is_on() {
    let v = verifier();
    let e = admit(Vec::new(), false, None, Some(&v), 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Unauthorized);
    let e = admit(Vec::new(), false, Some("not.a.jwt"), Some(&v), 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Unauthorized);
    let expired = token(json!({"sub":"alice","exp":now() - 3600}));
    let e = admit(Vec::new(), false, Some(&expired), Some(&v), 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Unauthorized);
    assert_eq!(e.message(), "token expired");
}

#[test]
fn authenticated_upgrade_adds_the_own_topic_beyond_the_limit() {
    let v = verifier();
    let t = token(json!({"sub":"alice","exp":now() + 60,"topics":["stocks.>"]}));
    let a = admit(topics(&["stocks.A", "news"]), false, Some(&t), Some(&v), 2).unwrap();
    assert_eq!(a.identity.as_ref().unwrap().user.as_deref(), Some("alice"));
    assert_eq!(a.allowed, ["stocks.A", "user.alice"]);
    assert_eq!(a.forbidden, ["news"]);
    assert_eq!(a.resumed, None);
}

/// Finding 1: the resumed topic is the URL's, not the first allowed one (`user.alice` sorts
/// before every topic starting with `v`..`z`).
#[test]
fn a_url_resume_resumes_the_url_topic_not_the_own_topic() {
    let v = verifier();
    let t = token(json!({"sub":"alice","exp":now() + 60}));
    for url in ["weather", "user.alice.x", "zebra.>", "a"] {
        let a = admit(topics(&[url]), true, Some(&t), Some(&v), 10).unwrap();
        assert_eq!(a.resumed.as_deref(), Some(url));
        assert!(a.allowed.iter().any(|t| t == url) && a.allowed.contains(&"user.alice".into()));
    }
    // Its own topic named in the URL is the one resumed, once.
    let a = admit(topics(&["user.alice"]), true, Some(&t), Some(&v), 10).unwrap();
    assert_eq!(a.resumed.as_deref(), Some("user.alice"));
    assert_eq!(a.allowed, ["user.alice"]);
    // Forbidden: nothing is resumed in its place; its `forbidden` reply is the answer.
    let limited = token(json!({"sub":"alice","exp":now() + 60,"topics":["stocks.>"]}));
    let a = admit(topics(&["weather"]), true, Some(&limited), Some(&v), 10).unwrap();
    assert_eq!(a.resumed, None);
    assert_eq!(a.forbidden, ["weather"]);
    // Anonymous, and without `since`.
    let a = admit(topics(&["news"]), true, None, None, 10).unwrap();
    assert_eq!(a.resumed.as_deref(), Some("news"));
    let a = admit(topics(&["news"]), false, None, None, 10).unwrap();
    assert_eq!(a.resumed, None);
}

#[test]
fn a_url_resume_needs_exactly_one_topic() {
    for list in [&[][..], &["a", "b"][..]] {
        let e = admit(topics(list), true, None, None, 10).unwrap_err();
        assert_eq!(e.reason(), RejectReason::BadRequest, "{list:?}");
    }
}

#[test]
fn sub_checks_in_the_shards_order() {
    let held = ["a".to_string()];
    assert_eq!(check_sub(None, "a", &held, 1), Ok(Sub::Held));
    assert_eq!(check_sub(None, "b", &held, 2), Ok(Sub::New));
    assert_eq!(check_sub(None, "b", &held, 1), Err(SubRefusal::Limit(1)));
    assert_eq!(
        check_sub(None, "user.x", &held, 1),
        Err(SubRefusal::Forbidden)
    );
    assert_eq!(
        check_sub(None, "_x", &held, 1),
        Err(SubRefusal::Invalid(TopicError::Reserved))
    );
    let me = alice();
    assert_eq!(check_sub(Some(&me), "user.alice", &held, 2), Ok(Sub::New));
    assert_eq!(
        check_sub(Some(&me), "user.bob", &held, 2),
        Err(SubRefusal::Forbidden)
    );
}

#[test]
fn refusal_replies_carry_the_protocol_codes() {
    let reply: Value = serde_json::from_str(&SubRefusal::Forbidden.reply("user.x")).unwrap();
    assert_eq!(
        reply,
        json!({"op":"error","code":"forbidden","topic":"user.x","message":"not allowed for this connection"})
    );
    let reply: Value = serde_json::from_str(&SubRefusal::Limit(3).reply("t")).unwrap();
    assert_eq!(reply["code"], "limit");
    let reply: Value =
        serde_json::from_str(&SubRefusal::Invalid(TopicError::EmptyToken).reply("a..b")).unwrap();
    assert_eq!(reply["code"], "bad_request");
    let reply: Value = serde_json::from_str(&RefreshError::OtherUser.reply()).unwrap();
    assert_eq!(reply["code"], "forbidden");
    let reply: Value = serde_json::from_str(&RefreshError::AuthDisabled.reply()).unwrap();
    assert_eq!(reply["code"], "bad_request");
}

#[test]
fn refresh_takes_a_newer_token_for_the_same_user_only() {
    let v = verifier();
    let me = alice();
    let later = now() + 3600;
    let fresh = token(json!({"sub":"alice","exp":later}));
    let none: &[&str] = &[];
    let id = refresh(Some(&v), Some(&me), &fresh, none).unwrap();
    assert_eq!(id.identity.expires_at, later);
    assert!(id.revoked.is_empty());
    let bob = token(json!({"sub":"bob","exp":later}));
    assert_eq!(
        refresh(Some(&v), Some(&me), &bob, none),
        Err(RefreshError::OtherUser)
    );
    assert_eq!(
        refresh(Some(&v), Some(&me), "junk", none),
        Err(RefreshError::Invalid(AuthError::Malformed))
    );
    assert_eq!(
        refresh(None, None, &fresh, none),
        Err(RefreshError::AuthDisabled)
    );
}

/// Finding 3: what the new token no longer allows is named, in the order held; the user's own
/// topic is always still allowed.
#[test]
fn refresh_names_the_held_patterns_the_new_token_no_longer_allows() {
    let v = verifier();
    let me = alice();
    let held = ["premium.a", "user.alice", "free.>", "premium.>", "free.b"];
    let narrower = token(json!({"sub":"alice","exp":now() + 60,"topics":["free.>"]}));
    let r = refresh(Some(&v), Some(&me), &narrower, &held).unwrap();
    assert_eq!(r.revoked, ["premium.a", "premium.>"]);
    // Without a `topics` claim everything outside other users' space is allowed again.
    let open = token(json!({"sub":"alice","exp":now() + 60}));
    let r = refresh(Some(&v), Some(&me), &open, &held).unwrap();
    assert!(r.revoked.is_empty());
}

#[test]
fn remaining_time_until_exp() {
    let at = UNIX_EPOCH + std::time::Duration::from_secs(1_000);
    let mut id = alice();
    id.expires_at = 1_010;
    assert_eq!(id.remaining(at), std::time::Duration::from_secs(10));
    id.expires_at = 1_000;
    assert!(id.remaining(at).is_zero());
    id.expires_at = u64::MAX;
    assert!(id.remaining(at) > std::time::Duration::from_secs(1 << 40));
}
