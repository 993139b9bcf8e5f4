//! Frame decoder and encoder invariants (RFC 6455 §5).
//!
//! - Raw bytes: no panic; what is consumed never exceeds the buffer; every event respects the
//!   limits (message ≤ max, control payload ≤ 125, close code allowed); the reassembly buffer
//!   stays under the limit; and decoding is independent of how the bytes were split into reads.
//! - Structured: frames built by a reference encoder (any mask, any length form, messages
//!   fragmented at any points with control frames in between, any read splits) decode to
//!   exactly the messages that were encoded.
//! - Server frames (`encode`, `encode_close`) round-trip through the decoder once masked.

use std::ops::ControlFlow;

use volley_gateway::fuzzing::frame::{
    self, ClientEvent, Fragments, MAX_CONTROL_PAYLOAD, ProtocolError,
};

use super::input::Input;

/// Owned copy of a [`ClientEvent`], so sequences can be compared across decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Fragment,
    Close(Option<u16>, String),
}

impl Event {
    fn from_client(e: ClientEvent<'_>) -> Event {
        match e {
            ClientEvent::Text(t) => Event::Text(t.to_owned()),
            ClientEvent::Binary(b) => Event::Binary(b.to_vec()),
            ClientEvent::Ping(b) => Event::Ping(b.to_vec()),
            ClientEvent::Pong(b) => Event::Pong(b.to_vec()),
            ClientEvent::Fragment => Event::Fragment,
            ClientEvent::Close { code, reason } => Event::Close(code, reason.to_owned()),
        }
    }
}

/// What a whole session of reads decoded to: the events, then the error that ended it if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub error: Option<ProtocolError>,
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 | 1 => raw(&mut input),
        2 => structured(&mut input),
        _ => server_frames(&mut input),
    }
}

/// Arbitrary bytes as a client stream.
fn raw(input: &mut Input<'_>) {
    let max = 1 + input.below(300);
    let splits: Vec<usize> = (0..input.below(8)).map(|_| input.below(64)).collect();
    let stream = input.rest();
    let whole = decode_session(stream, &[], max);
    let chunked = decode_session(stream, &splits, max);
    assert_eq!(
        whole, chunked,
        "decoding depends on how the bytes were read"
    );
    if let Some(e) = whole.error {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009), "{e:?}");
        assert!(e.close_frame().len() <= 2 + MAX_CONTROL_PAYLOAD);
    }
}

/// Feeds `stream` to the decoder as the shard does: reads of the given sizes (the rest in one
/// read), keeping the unconsumed tail for the next read, stopping at an error or a Close.
pub fn decode_session(stream: &[u8], reads: &[usize], max: usize) -> Outcome {
    let mut fragments = Fragments::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut offset = 0;
    let mut reads = reads.iter().copied();
    while offset < stream.len() {
        let n = reads
            .next()
            .unwrap_or(stream.len())
            .clamp(1, stream.len() - offset);
        pending.extend_from_slice(&stream[offset..offset + n]);
        offset += n;
        let mut closed = false;
        let result = frame::decode(&mut pending, &mut fragments, max, |e| {
            check_event(&e, max);
            closed |= matches!(e, ClientEvent::Close { .. });
            events.push(Event::from_client(e));
            ControlFlow::Continue(())
        });
        match result {
            Ok(consumed) => {
                assert!(consumed <= pending.len(), "consumed past the buffer");
                pending.drain(..consumed);
                assert!(fragments.buffered() <= max, "reassembly over the limit");
                if closed {
                    break;
                }
            }
            Err(error) => {
                return Outcome {
                    events,
                    error: Some(error),
                };
            }
        }
    }
    Outcome {
        events,
        error: None,
    }
}

fn check_event(e: &ClientEvent<'_>, max: usize) {
    match e {
        ClientEvent::Text(t) => assert!(t.len() <= max),
        ClientEvent::Binary(b) => assert!(b.len() <= max),
        ClientEvent::Ping(b) | ClientEvent::Pong(b) => assert!(b.len() <= MAX_CONTROL_PAYLOAD),
        ClientEvent::Fragment => {}
        ClientEvent::Close { code, reason } => {
            match code {
                Some(c) => assert!(matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)),
                None => assert!(reason.is_empty()),
            }
            assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
        }
    }
}

/// How a reference frame writes its length: the minimal form or a longer one (legal to
/// decode; RFC 6455 only asks senders for the minimal one).
#[derive(Debug, Clone, Copy)]
enum LenForm {
    Minimal,
    Ext16,
    Ext64,
}

/// Reference client-frame encoder: FIN/opcode byte, MASK bit, length, key, masked payload.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], form: u8) -> Vec<u8> {
    let form = match form % 3 {
        0 => LenForm::Minimal,
        1 if payload.len() <= usize::from(u16::MAX) => LenForm::Ext16,
        1 => LenForm::Minimal,
        _ => LenForm::Ext64,
    };
    let form = match form {
        LenForm::Minimal if payload.len() <= 125 => LenForm::Minimal,
        LenForm::Minimal if payload.len() <= usize::from(u16::MAX) => LenForm::Ext16,
        LenForm::Minimal => LenForm::Ext64,
        other => other,
    };
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match form {
        LenForm::Minimal => out.push(0x80 | payload.len() as u8),
        LenForm::Ext16 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        LenForm::Ext64 => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

fn mask(input: &mut Input<'_>) -> [u8; 4] {
    [input.u8(), input.u8(), input.u8(), input.u8()]
}

/// Control frames only ever take the minimal form: they are at most 125 bytes, and the
/// decoder rightly refuses a control frame whose 7-bit length says otherwise.
fn control(input: &mut Input<'_>, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.extend(client_frame(true, opcode, payload, mask(input), 0));
}

/// A session of well-formed frames, decoded whole and in arbitrary reads.
fn structured(input: &mut Input<'_>) {
    let max = 64 + input.below(512);
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut error = None;
    for _ in 0..input.below(12) {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 | 1 => {
                let text = input.bool();
                let payload = if text {
                    // Lossy decoding can grow the text; keep it within the limit.
                    truncate(input.string(max), max).into_bytes()
                } else {
                    input.bytes(max).to_vec()
                };
                let pieces = 1 + input.below(4);
                let mut at = 0;
                for i in 0..pieces {
                    let last = i + 1 == pieces;
                    let end = if last {
                        payload.len()
                    } else {
                        (at + input.below(payload.len() - at + 1)).min(payload.len())
                    };
                    let opcode = match (i, text) {
                        (0, true) => OP_TEXT,
                        (0, false) => OP_BINARY,
                        _ => OP_CONT,
                    };
                    let form = input.u8();
                    stream.extend(client_frame(
                        last,
                        opcode,
                        &payload[at..end],
                        mask(input),
                        form,
                    ));
                    at = end;
                    // Every frame that does not end the message is reported as it comes.
                    if !last {
                        expected.push(Event::Fragment);
                    }
                    // Control frames may be interleaved with the fragments of a message.
                    if !last && input.u8().is_multiple_of(4) {
                        let ping = input.bytes(MAX_CONTROL_PAYLOAD).to_vec();
                        control(input, OP_PING, &ping, &mut stream);
                        expected.push(Event::Ping(ping));
                    }
                }
                expected.push(match String::from_utf8(payload) {
                    Ok(t) if text => Event::Text(t),
                    Ok(t) => Event::Binary(t.into_bytes()),
                    Err(e) => Event::Binary(e.into_bytes()),
                });
            }
            2 => {
                let ping = input.bytes(MAX_CONTROL_PAYLOAD).to_vec();
                control(input, OP_PING, &ping, &mut stream);
                expected.push(Event::Ping(ping));
            }
            3 => {
                let pong = input.bytes(MAX_CONTROL_PAYLOAD).to_vec();
                control(input, OP_PONG, &pong, &mut stream);
                expected.push(Event::Pong(pong));
            }
            _ => {
                let code = match input.u8() % 3 {
                    0 => None,
                    1 => Some(
                        *input.pick(&[1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]),
                    ),
                    _ => Some(input.u16()),
                };
                let reason = match code {
                    Some(_) => truncate(
                        input.string(MAX_CONTROL_PAYLOAD - 2),
                        MAX_CONTROL_PAYLOAD - 2,
                    ),
                    None => String::new(),
                };
                let mut payload = Vec::new();
                if let Some(c) = code {
                    payload.extend_from_slice(&c.to_be_bytes());
                    payload.extend_from_slice(reason.as_bytes());
                }
                control(input, OP_CLOSE, &payload, &mut stream);
                match code {
                    Some(c) if !matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999) => {
                        error = Some(ProtocolError::InvalidCloseCode(c));
                    }
                    _ => expected.push(Event::Close(code, reason)),
                }
                // Nothing after a Close is decoded.
                break;
            }
        }
    }
    let splits: Vec<usize> = (0..input.below(16)).map(|_| input.below(40)).collect();
    let want = Outcome {
        events: expected,
        error,
    };
    assert_eq!(decode_session(&stream, &[], max), want, "whole stream");
    assert_eq!(decode_session(&stream, &splits, max), want, "split stream");
}

/// The longest prefix of `s` within `max` bytes that ends on a char boundary.
fn truncate(mut s: String, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// Masks a server frame (unmasked, FIN) as a client would send it.
fn mask_server_frame(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
    let len7 = frame[1] & 0x7F;
    let header = match len7 {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..header].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    out.extend(
        frame[header..]
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, m)| b ^ m),
    );
    out
}

/// `encode` and `encode_close` produce frames the decoder reads back exactly.
fn server_frames(input: &mut Input<'_>) {
    let code = input.u16();
    let reason = input.string(400);
    let key = mask(input);
    let close = frame::encode_close(code, &reason);
    assert_eq!(close[0], 0x88, "FIN + Close");
    let len = usize::from(close[1]);
    assert!(len <= MAX_CONTROL_PAYLOAD && close.len() == 2 + len);
    assert_eq!(&close[2..4], &code.to_be_bytes());
    let sent = std::str::from_utf8(&close[4..]).expect("close reason is UTF-8");
    assert!(
        reason.starts_with(sent),
        "close reason is a prefix of the reason"
    );
    assert!(
        sent.len() + 3 >= reason.len().min(MAX_CONTROL_PAYLOAD - 2),
        "cut too much"
    );
    let decoded = decode_session(&mask_server_frame(&close, key), &[], 1024);
    if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        assert_eq!(
            decoded.events,
            vec![Event::Close(Some(code), sent.to_owned())]
        );
    } else {
        assert_eq!(decoded.error, Some(ProtocolError::InvalidCloseCode(code)));
    }

    let payload = input.string(70_000);
    let text = frame::encode(
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Text,
        ),
        payload.as_bytes(),
    );
    assert_eq!(text.len(), frame::header_len(payload.len()) + payload.len());
    let written = frame::encode_text_with(payload.len(), |out| {
        out.extend_from_slice(payload.as_bytes())
    });
    assert_eq!(text, written, "encode and encode_text_with agree");
    let decoded = decode_session(&mask_server_frame(&text, key), &[], payload.len().max(1));
    assert_eq!(decoded.events, vec![Event::Text(payload)]);
    assert_eq!(decoded.error, None);
}
