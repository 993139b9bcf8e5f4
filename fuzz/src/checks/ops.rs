//! Client op parsing and replies.
//!
//! - Any text: no panic; an error's message stays in proportion to the input (it may quote
//!   part of it, escaped, never amplify it); a parsed op re-encoded canonically parses to the
//!   same op.
//! - Ops built from the input (with unknown extra fields, any order, any whitespace) parse to
//!   what was built.
//! - Every reply the gateway builds from client data (subscribed, error with topic) is JSON
//!   that reads back to the same values.

use serde_json::{Value, json};
use volley_gateway::fuzzing::access;
use volley_gateway::fuzzing::protocol::{self, ClientOp, ErrorCode};

use super::input::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    if input.u8().is_multiple_of(2) {
        let text = String::from_utf8_lossy(input.rest()).into_owned();
        any_text(&text);
    } else {
        built(&mut input);
    }
}

fn encode(op: &ClientOp) -> Value {
    match op {
        ClientOp::Sub(t) => json!({"op": "sub", "topics": t}),
        ClientOp::Unsub(t) => json!({"op": "unsub", "topics": t}),
        ClientOp::Ping => json!({"op": "ping"}),
        ClientOp::Refresh(token) => json!({"op": "refresh", "token": token}),
        ClientOp::Resume(r) => {
            let since: serde_json::Map<String, Value> =
                r.since.iter().map(|(p, n)| (p.clone(), json!(n))).collect();
            json!({"op": "sub", "topics": r.topics, "since": since, "epoch": r.epoch})
        }
    }
}

fn any_text(text: &str) {
    match protocol::parse_op(text) {
        Ok(op) => {
            let again = protocol::parse_op(&encode(&op).to_string());
            assert_eq!(again.as_ref(), Ok(&op), "canonical form parses the same");
            replies(&op);
        }
        Err(e) => {
            let message = e.to_string();
            // serde's messages may quote a string from the input, escaped (at most 6 bytes per
            // input byte, as `\u{7f}`); nothing else grows with the input.
            assert!(
                message.len() <= 200 + 6 * text.len(),
                "error message out of proportion: {message}"
            );
            let reply = protocol::error(ErrorCode::BadRequest, None, &message);
            let v: Value = serde_json::from_str(&reply).expect("error reply is JSON");
            assert_eq!(v["message"], Value::String(message));
        }
    }
}

fn replies(op: &ClientOp) {
    let topics = match op {
        ClientOp::Sub(t) | ClientOp::Unsub(t) => t,
        _ => return,
    };
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let v: Value = serde_json::from_str(&protocol::subscribed(&refs)).expect("JSON");
    assert_eq!(v, json!({"op": "subscribed", "topics": topics}));
    let v: Value = serde_json::from_str(&protocol::unsubscribed(&refs)).expect("JSON");
    assert_eq!(v, json!({"op": "unsubscribed", "topics": topics}));
    let mut held: Vec<&str> = Vec::new();
    for t in topics {
        match access::check_sub(None, t, &held, 3) {
            Ok(access::Sub::New) => {
                assert!(!held.contains(&t.as_str()), "{t:?} is new twice");
                held.push(t);
            }
            Ok(access::Sub::Held) => assert!(held.contains(&t.as_str()), "{t:?} held, not new"),
            Err(refusal) => {
                let v: Value = serde_json::from_str(&refusal.reply(t)).expect("JSON");
                assert_eq!(v["op"], "error");
                assert_eq!(v["topic"], Value::String(t.clone()));
            }
        }
    }
    assert!(held.len() <= 3, "the subscription limit holds");
}

const CHARS: &[&str] = &[
    "a", ".", "*", ">", "\"", "\\", "\u{0}", "é", " ", "_", "😀", "\u{7f}",
];

fn built(input: &mut Input<'_>) {
    let topics: Vec<String> = (0..input.below(4))
        .map(|_| input.string_from(CHARS, 8))
        .collect();
    let op = match input.u8() % 4 {
        0 => ClientOp::Sub(topics),
        1 => ClientOp::Unsub(topics),
        2 => ClientOp::Ping,
        _ => ClientOp::Refresh(input.string_from(CHARS, 16)),
    };
    let mut fields: Vec<(String, Value)> = match encode(&op) {
        Value::Object(map) => map.into_iter().collect(),
        _ => unreachable!("encode builds objects"),
    };
    // Unknown fields are ignored (clients may add a request id).
    if input.bool() {
        fields.push(("id".to_owned(), json!(input.u32())));
    }
    if input.bool() {
        fields.push(("extra".to_owned(), json!({"nested": [1, "two", null]})));
    }
    let rotate = input.below(fields.len());
    fields.rotate_left(rotate);
    let space = *input.pick(&["", " ", "\n\t ", "\r\n"]);
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{space}{}{space}:{space}{v}", Value::String(k.clone())))
        .collect();
    let text = format!("{space}{{{}}}{space}", body.join(","));
    assert_eq!(protocol::parse_op(&text), Ok(op.clone()), "{text}");
    replies(&op);
}
