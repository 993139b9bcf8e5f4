use super::*;
use serde_json::{Value, json};

/// Builds the envelope both ways, checks the length promise and that the output is JSON.
fn build(topic: &str, payload: &[u8], seq: Option<u64>) -> Value {
    let mut out = b"prefix".to_vec();
    write_envelope(&mut out, topic, payload, seq);
    let body = &out[6..];
    assert_eq!(
        envelope_len(topic, payload, seq),
        body.len(),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    let env = Envelope::new(topic, payload, seq);
    let mut again = Vec::new();
    env.write_to(&mut again);
    assert_eq!(again, body);
    assert_eq!(env.len(), body.len());
    assert!(std::str::from_utf8(body).is_ok());
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)))
}

#[test]
fn json_payloads_are_inlined() {
    let cases: [(&[u8], Value); 8] = [
        (br#"{"price":1.5,"s":"x"}"#, json!({"price":1.5,"s":"x"})),
        (b"[1,2,3]", json!([1, 2, 3])),
        (b"42", json!(42)),
        (b"-1.5e3", json!(-1500.0)),
        (br#""hi""#, json!("hi")),
        (b"true", json!(true)),
        (b"null", Value::Null),
        (b"\r\n {\"a\" : [ ] }\n\t", json!({"a": []})),
    ];
    for (payload, data) in cases {
        assert_eq!(
            build("stocks.AAPL", payload, None),
            json!({"topic":"stocks.AAPL","data":data})
        );
    }
}

#[test]
fn inlined_json_is_trimmed_but_otherwise_verbatim() {
    let mut out = Vec::new();
    write_envelope(&mut out, "t", b" \n{ \"a\" :1 }\n", None);
    assert_eq!(out, br#"{"topic":"t","data":{ "a" :1 }}"#);
}

#[test]
fn text_payloads_become_strings() {
    let cases: [&str; 9] = [
        "hello",
        "",
        "   ",
        "say \"hi\"\\",
        "line1\nline2\r\n",
        "ctl \u{0} \u{1f} \u{7f} \u{8} \u{c}",
        "{not json",
        "[1,2",
        "héllo ✓ 😀",
    ];
    for text in cases {
        assert_eq!(
            build("t", text.as_bytes(), None),
            json!({"topic":"t","data":text}),
            "{text:?}"
        );
    }
}

#[test]
fn json_that_strict_parsers_refuse_becomes_a_string() {
    // A lone surrogate escape passes IgnoredAny but not serde_json::Value.
    for text in [r#""\ud800""#, r#"{"a":"\udc00"}"#, "1e999", "\u{c}{}"] {
        assert_eq!(
            build("t", text.as_bytes(), None),
            json!({"topic":"t","data":text}),
            "{text}"
        );
    }
    // Deeper than serde_json's recursion limit.
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert_eq!(build("t", deep.as_bytes(), None)["data"], json!(deep));
}

#[test]
fn binary_payloads_become_base64() {
    let cases: [&[u8]; 5] = [
        b"\xff",
        b"\x00\x01\xfe\xff",
        b"ok\xc3",
        b"\xff\xfe\xfd",
        b"\"{\xff}\"",
    ];
    for payload in cases {
        let expected = STANDARD.encode(payload);
        assert_eq!(
            build("t", payload, None),
            json!({"topic":"t","b64":expected})
        );
    }
}

#[test]
fn seq_comes_last() {
    let mut out = Vec::new();
    write_envelope(&mut out, "a.b", b"{}", Some(7));
    assert_eq!(out, br#"{"topic":"a.b","data":{},"seq":7}"#);
    out.clear();
    write_envelope(&mut out, "a.b", b"\xff", Some(0));
    assert_eq!(out, br#"{"topic":"a.b","b64":"/w==","seq":0}"#);
    out.clear();
    write_envelope(&mut out, "a.b", b"x", Some(u64::MAX));
    assert_eq!(
        out,
        br#"{"topic":"a.b","data":"x","seq":18446744073709551615}"#
    );
    for seq in [0, 9, 10, 99, 100, 12345, u64::MAX] {
        assert_eq!(build("t", b"1", Some(seq))["seq"], json!(seq));
    }
}

#[test]
fn topic_is_escaped() {
    for topic in ["a\"b", "a\\b", "a\nb", "é.ü", ""] {
        assert_eq!(
            build(topic, b"1", Some(3)),
            json!({"topic":topic,"data":1,"seq":3})
        );
    }
}

#[test]
fn empty_payload() {
    assert_eq!(build("t", b"", None), json!({"topic":"t","data":""}));
}

#[test]
fn every_byte_alone_and_in_text() {
    for b in 0..=255u8 {
        build("t", &[b], None);
        build("t", &[b'a', b, b'z'], Some(1));
        build("t", &[b'"', b, b'"'], None);
    }
}
