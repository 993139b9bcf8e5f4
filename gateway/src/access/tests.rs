use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
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
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
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
    let e = admit(topics(&["a", "b", "c"]), None, None, 2).unwrap_err();
    assert_eq!(e.reason(), RejectReason::BadRequest);
    let e = admit(topics(&["a..b"]), None, None, 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::BadRequest);
}

#[test]
fn upgrade_tokens_are_401_when_auth_is_on() {
    let v = verifier();
    let e = admit(Vec::new(), None, Some(&v), 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Unauthorized);
    let e = admit(Vec::new(), Some("not.a.jwt"), Some(&v), 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Unauthorized);
    let expired = token(json!({"sub":"alice","exp":now() - 3600}));
    let e = admit(Vec::new(), Some(&expired), Some(&v), 10).unwrap_err();
    assert_eq!(e.reason(), RejectReason::Unauthorized);
    assert_eq!(e.message(), "token expired");
}

#[test]
fn authenticated_upgrade_adds_the_own_topic_beyond_the_limit() {
    let v = verifier();
    let t = token(json!({"sub":"alice","exp":now() + 60,"topics":["stocks.>"]}));
    let a = admit(topics(&["stocks.A", "news"]), Some(&t), Some(&v), 2).unwrap();
    assert_eq!(a.identity.as_ref().unwrap().user.as_deref(), Some("alice"));
    assert_eq!(a.allowed, ["stocks.A", "user.alice"]);
    assert_eq!(a.forbidden, ["news"]);
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
    let id = refresh(Some(&v), Some(&me), &fresh).unwrap();
    assert_eq!(id.expires_at, later);
    let bob = token(json!({"sub":"bob","exp":later}));
    assert_eq!(
        refresh(Some(&v), Some(&me), &bob),
        Err(RefreshError::OtherUser)
    );
    assert_eq!(
        refresh(Some(&v), Some(&me), "junk"),
        Err(RefreshError::Invalid(AuthError::Malformed))
    );
    assert_eq!(refresh(None, None, &fresh), Err(RefreshError::AuthDisabled));
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
