use super::*;
use serde_json::{Value, json};

#[test]
fn parses_each_op() {
    assert_eq!(
        parse_op(r#"{"op":"sub","topics":["a.b","c.*"]}"#),
        Ok(ClientOp::Sub(vec!["a.b".into(), "c.*".into()]))
    );
    assert_eq!(
        parse_op(r#" {"topics":["a"], "op":"unsub"} "#),
        Ok(ClientOp::Unsub(vec!["a".into()]))
    );
    assert_eq!(parse_op(r#"{"op":"ping"}"#), Ok(ClientOp::Ping));
    assert_eq!(
        parse_op(r#"{"op":"refresh","token":"t0k"}"#),
        Ok(ClientOp::Refresh("t0k".into()))
    );
    assert_eq!(
        parse_op(r#"{"op":"sub","topics":[]}"#),
        Ok(ClientOp::Sub(vec![]))
    );
}

#[test]
fn ignores_unused_and_unknown_fields() {
    assert_eq!(
        parse_op(r#"{"op":"ping","id":7,"topics":["a"]}"#),
        Ok(ClientOp::Ping)
    );
}

#[test]
fn unknown_or_missing_op() {
    assert_eq!(
        parse_op(r#"{"op":"pub"}"#),
        Err(OpError::UnknownOp("pub".into()))
    );
    assert_eq!(
        parse_op(r#"{"op":"SUB","topics":[]}"#),
        Err(OpError::UnknownOp("SUB".into()))
    );
    assert_eq!(parse_op(r#"{"topics":["a"]}"#), Err(OpError::MissingOp));
    assert_eq!(parse_op(r#"{"op":null}"#), Err(OpError::MissingOp));
}

#[test]
fn missing_fields() {
    assert_eq!(
        parse_op(r#"{"op":"sub"}"#),
        Err(OpError::MissingField {
            op: "sub",
            field: "topics"
        })
    );
    assert_eq!(
        parse_op(r#"{"op":"unsub","topics":null}"#),
        Err(OpError::MissingField {
            op: "unsub",
            field: "topics"
        })
    );
    let e = parse_op(r#"{"op":"refresh"}"#).unwrap_err();
    assert_eq!(e.to_string(), r#"op "refresh" needs "token""#);
}

#[test]
fn bad_json() {
    for text in [
        "",
        "{",
        "{\"op\":",
        "not json",
        "{'op':'ping'}",
        "{\"op\":\"ping\"} x",
    ] {
        assert!(
            matches!(parse_op(text), Err(OpError::NotJson(_))),
            "{text:?}"
        );
    }
    for text in ["[]", r#"["sub",["a"]]"#, "\"ping\"", "42", "null"] {
        assert_eq!(parse_op(text), Err(OpError::NotObject), "{text:?}");
    }
}

#[test]
fn wrong_types() {
    for text in [
        r#"{"op":5}"#,
        r#"{"op":"sub","topics":"a.b"}"#,
        r#"{"op":"sub","topics":[1]}"#,
        r#"{"op":"refresh","token":{}}"#,
        r#"{"op":"ping","op":"ping"}"#,
    ] {
        let e = parse_op(text).unwrap_err();
        assert!(matches!(e, OpError::Invalid(_)), "{text}: {e:?}");
        assert!(!e.to_string().is_empty());
    }
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn reply_shapes() {
    assert_eq!(
        parse(&subscribed(&["a.b", "c.\"q\""])),
        json!({"op":"subscribed","topics":["a.b","c.\"q\""]})
    );
    assert_eq!(
        parse(&unsubscribed(&[])),
        json!({"op":"unsubscribed","topics":[]})
    );
    assert_eq!(parse(&pong()), json!({"op":"pong"}));
    assert_eq!(
        parse(&error(ErrorCode::Forbidden, Some("$SYS.x"), "reserved")),
        json!({"op":"error","code":"forbidden","topic":"$SYS.x","message":"reserved"})
    );
    assert_eq!(
        parse(&error(ErrorCode::BadRequest, None, "line\nbreak")),
        json!({"op":"error","code":"bad_request","message":"line\nbreak"})
    );
    assert_eq!(
        parse(&error(ErrorCode::Limit, None, "too many")),
        json!({"op":"error","code":"limit","message":"too many"})
    );
}

#[test]
fn topic_error_codes() {
    assert_eq!(
        ErrorCode::for_topic_error(&TopicError::Reserved),
        ErrorCode::Forbidden
    );
    assert_eq!(
        ErrorCode::for_topic_error(&TopicError::EmptyToken),
        ErrorCode::BadRequest
    );
}

#[test]
fn sub_with_since_is_a_resume() {
    let op =
        parse_op(r#"{"op":"sub","topics":["news.>","chat"],"since":{"news.>":12},"epoch":"e1"}"#)
            .unwrap();
    let ClientOp::Resume(resume) = op else {
        panic!("expected a resume, got {op:?}");
    };
    assert_eq!(resume.topics, ["news.>", "chat"]);
    assert_eq!(resume.since("news.>"), Some(12));
    assert_eq!(resume.since("chat"), None);
    assert_eq!(resume.epoch.as_deref(), Some("e1"));
    // Without since it stays a plain sub, epoch or not.
    assert_eq!(
        parse_op(r#"{"op":"sub","topics":["a"],"epoch":"e"}"#),
        Ok(ClientOp::Sub(vec!["a".into()]))
    );
    for bad in [
        r#"{"op":"sub","topics":["a"],"since":{"a":-1}}"#,
        r#"{"op":"sub","topics":["a"],"since":{"a":"1"}}"#,
        r#"{"op":"sub","topics":["a"],"since":[1]}"#,
    ] {
        assert!(matches!(parse_op(bad), Err(OpError::Invalid(_))), "{bad}");
    }
}

#[test]
fn resume_replies_say_whether_it_recovered() {
    let v: serde_json::Value = serde_json::from_str(&resumed(
        "news.>",
        Some("e"),
        Recovery::Recovered { replayed: 3 },
    ))
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"op":"subscribed","topics":["news.>"],"epoch":"e","recovered":true,"replayed":3})
    );
    let v: serde_json::Value = serde_json::from_str(&resumed(
        "a",
        None,
        Recovery::NotRecovered {
            reason: "too_old",
            message: "m",
        },
    ))
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"op":"subscribed","topics":["a"],"recovered":false,"reason":"too_old","message":"m"})
    );
    assert_eq!(
        subscribed_with_epoch(&["a"], None),
        subscribed(&["a"]),
        "no epoch, the plain reply"
    );
}
