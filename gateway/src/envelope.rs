//! The body of a server → client message: `{"topic":..,"data":..}`, built once per message
//! and shared by every connection it fans out to.
//!
//! The payload is inlined verbatim when it is JSON (minus surrounding whitespace), carried
//! as a JSON string when it is other UTF-8 text, and as standard base64 under `b64`
//! otherwise. `"seq":N` follows the payload when a sequence number is given.

use std::fmt;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[cfg(test)]
mod tests;

/// How the payload goes into the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body<'a> {
    /// A JSON document, trimmed of surrounding whitespace.
    Json(&'a str),
    /// UTF-8 text that is not JSON, to be escaped as a JSON string.
    Text(&'a str),
    /// Anything else, to be base64 encoded.
    Binary(&'a [u8]),
}

/// An envelope whose payload has been classified and whose length is known, so the
/// WebSocket frame header can be written before the body without encoding twice.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    topic: &'a str,
    body: Body<'a>,
    seq: Option<u64>,
    len: usize,
}

impl<'a> Envelope<'a> {
    /// Classifies the payload (one validation pass) and computes the output length.
    pub fn new(topic: &'a str, payload: &'a [u8], seq: Option<u64>) -> Self {
        let body = classify(payload);
        let body_len = match body {
            Body::Json(s) => s.len(),
            Body::Text(s) => json_str_len(s),
            // encoded_len is only None when the length overflows usize, impossible for a
            // slice in memory; + 2 for the quotes.
            Body::Binary(b) => base64::encoded_len(b.len(), true).unwrap_or(0) + 2,
        };
        let key_len = match body {
            Body::Json(_) | Body::Text(_) => DATA_KEY.len(),
            Body::Binary(_) => B64_KEY.len(),
        };
        let seq_len = seq.map_or(0, |n| SEQ_KEY.len() + decimal_len(n));
        let len = TOPIC_KEY.len() + json_str_len(topic) + key_len + body_len + seq_len + 1;
        Envelope {
            topic,
            body,
            seq,
            len,
        }
    }

    /// Exact number of bytes `write_to` appends.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: even an empty topic and payload produce some JSON.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the envelope to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        out.extend_from_slice(TOPIC_KEY.as_bytes());
        write_json_str(out, self.topic);
        match self.body {
            Body::Json(s) => {
                out.extend_from_slice(DATA_KEY.as_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Body::Text(s) => {
                out.extend_from_slice(DATA_KEY.as_bytes());
                write_json_str(out, s);
            }
            Body::Binary(b) => {
                out.extend_from_slice(B64_KEY.as_bytes());
                out.push(b'"');
                // Encode straight into the output instead of through a temporary String.
                let start = out.len();
                let n = base64::encoded_len(b.len(), true).unwrap_or(0);
                out.resize(start.saturating_add(n), 0);
                let written = match out.get_mut(start..) {
                    Some(dst) => STANDARD.encode_slice(b, dst).unwrap_or(0),
                    None => 0,
                };
                // Only shortens on an encoding failure, which the sizing above rules out;
                // an empty string keeps the output valid JSON even then.
                out.truncate(start + written);
                out.push(b'"');
            }
        }
        if let Some(n) = self.seq {
            out.extend_from_slice(SEQ_KEY.as_bytes());
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{n}");
        }
        out.push(b'}');
    }
}

const TOPIC_KEY: &str = "{\"topic\":";
const DATA_KEY: &str = ",\"data\":";
const B64_KEY: &str = ",\"b64\":";
const SEQ_KEY: &str = ",\"seq\":";

/// Appends the envelope for `payload` on `topic` to `out`.
pub fn write_envelope(out: &mut Vec<u8>, topic: &str, payload: &[u8], seq: Option<u64>) {
    Envelope::new(topic, payload, seq).write_to(out);
}

/// Exact number of bytes [`write_envelope`] appends for the same arguments. Calling both
/// validates the payload twice; build an [`Envelope`] once to avoid that.
pub fn envelope_len(topic: &str, payload: &[u8], seq: Option<u64>) -> usize {
    Envelope::new(topic, payload, seq).len()
}

fn classify(payload: &[u8]) -> Body<'_> {
    // UTF-8 is checked first: serde_json does not validate UTF-8 inside strings it skips,
    // and a text frame must be UTF-8 anyway.
    let Ok(text) = std::str::from_utf8(payload) else {
        return Body::Binary(payload);
    };
    if is_strict_json(text) {
        // Only JSON whitespace can surround a valid document, so trim_ascii removes exactly
        // that (trailing newlines from publishers are common).
        Body::Json(text.trim_ascii())
    } else {
        Body::Text(text)
    }
}

/// Validates `text` as one JSON document without building it.
///
/// Stricter than `IgnoredAny`: strings are decoded, so lone surrogate escapes such as
/// `"\ud800"` are rejected (serde_json and other strict parsers refuse them, and the output
/// must parse everywhere), and numbers must fit a f64. Such payloads are sent as strings.
fn is_strict_json(text: &str) -> bool {
    serde_json::from_str::<StrictAny>(text).is_ok()
}

/// Accepts any JSON value, making the deserializer decode every string and number.
struct StrictAny;

impl<'de> Deserialize<'de> for StrictAny {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictAny)
    }
}

impl<'de> Visitor<'de> for StrictAny {
    type Value = StrictAny;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<StrictAny>()?.is_some() {}
        Ok(StrictAny)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<StrictAny, StrictAny>()?.is_some() {}
        Ok(StrictAny)
    }
}

/// Appends `s` as a JSON string, escaped by serde_json.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// Length of `s` as serde_json escapes it, measured by letting serde_json write it to a
/// counter, so it cannot drift from `write_json_str`.
fn json_str_len(s: &str) -> usize {
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, s);
    counter.0
}

struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}
