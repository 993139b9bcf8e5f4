//! Envelope invariants: the announced length is the written length, the output is one JSON
//! object that any strict parser reads back to the same topic, payload and sequence number
//! (inlined JSON, a JSON string for other UTF-8, base64 for the rest).

use base64::Engine as _;
use serde_json::Value;
use volley_gateway::fuzzing::envelope::{self, Envelope};

use super::input::Input;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let topic = input.string(64);
    let seq = input.bool().then(|| input.u64());
    let payload = input.rest();

    let announced = envelope::envelope_len(&topic, payload, seq);
    let mut out = b"prefix".to_vec();
    envelope::write_envelope(&mut out, &topic, payload, seq);
    assert_eq!(&out[..6], b"prefix", "appends, never overwrites");
    let body = &out[6..];
    assert_eq!(body.len(), announced, "envelope_len is the written length");
    let e = Envelope::new(&topic, payload, seq);
    assert_eq!(e.len(), announced);
    assert_eq!(e.is_empty(), announced == 0);

    let value: Value = serde_json::from_slice(body).expect("the envelope is JSON");
    let object = value.as_object().expect("the envelope is an object");
    assert_eq!(object.get("topic"), Some(&Value::String(topic.clone())));
    assert_eq!(object.get("seq").and_then(Value::as_u64), seq);
    let keys = 2 + usize::from(seq.is_some());
    assert_eq!(object.len(), keys, "only topic, data|b64 and seq");

    match (
        std::str::from_utf8(payload),
        object.get("data"),
        object.get("b64"),
    ) {
        (Ok(text), Some(data), None) => match serde_json::from_str::<Value>(text) {
            // Inlined: the same document (strict parsers may still refuse some, e.g. lone
            // surrogates, which then travel as a string: accept either reading).
            Ok(doc) if *data == doc => {}
            _ => assert_eq!(data, &Value::String(text.to_owned()), "text payload"),
        },
        (Err(_), None, Some(Value::String(b64))) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("valid base64");
            assert_eq!(decoded, payload, "binary payload round-trips");
        }
        other => panic!("wrong payload encoding: {other:?}"),
    }
}
