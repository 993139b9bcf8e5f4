use super::*;
use tungstenite::protocol::frame::FrameHeader;

const MAX: usize = 1 << 20;

/// Owned copy of a `ClientEvent`, so events can be collected and compared across calls.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Fragment,
    Close(Option<u16>, String),
}

impl From<ClientEvent<'_>> for Ev {
    fn from(e: ClientEvent<'_>) -> Self {
        match e {
            ClientEvent::Text(t) => Ev::Text(t.to_owned()),
            ClientEvent::Binary(b) => Ev::Binary(b.to_vec()),
            ClientEvent::Ping(b) => Ev::Ping(b.to_vec()),
            ClientEvent::Pong(b) => Ev::Pong(b.to_vec()),
            ClientEvent::Fragment => Ev::Fragment,
            ClientEvent::Close { code, reason } => Ev::Close(code, reason.to_owned()),
        }
    }
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Builds a masked client frame with minimal length encoding.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame_raw(if fin { 0x80 } else { 0 } | opcode, payload, KEY)
}

/// Builds a masked frame with an arbitrary first byte (to set RSV bits etc.).
fn client_frame_raw(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Decodes a whole buffer with fresh state; returns (result, events).
fn decode_all(bytes: &[u8], max: usize) -> (Result<usize, ProtocolError>, Vec<Ev>) {
    let mut buf = bytes.to_vec();
    let mut frags = Fragments::default();
    let mut events = Vec::new();
    let res = decode(&mut buf, &mut frags, max, |e| {
        events.push(Ev::from(e));
        ControlFlow::Continue(())
    });
    (res, events)
}

fn decode_ok(bytes: &[u8]) -> Vec<Ev> {
    let (res, events) = decode_all(bytes, MAX);
    assert_eq!(res, Ok(bytes.len()));
    events
}

fn decode_err(bytes: &[u8]) -> ProtocolError {
    decode_all(bytes, MAX)
        .0
        .expect_err("expected a protocol error")
}

/// Feeds `bytes` in chunks of the given sizes into a growing buffer, the way a shard would
/// (keep the unconsumed tail, append the next read), and collects events.
fn decode_streamed(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, ProtocolError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut frags = Fragments::default();
    let mut events = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
        pending.extend_from_slice(&bytes[start..end]);
        start = end;
        let used = decode(&mut pending, &mut frags, MAX, |e| {
            events.push(Ev::from(e));
            ControlFlow::Continue(())
        })?;
        pending.drain(..used);
    }
    assert!(pending.is_empty(), "leftover bytes: {pending:?}");
    Ok(events)
}

/// Masks a server-encoded frame as a client would, so our own encoder output can be decoded.
fn mask_server_frame(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
    let hlen = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..hlen].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    out.extend(
        frame[hlen..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4]),
    );
    out
}

// ----- basics --------------------------------------------------------------------------------

#[test]
fn fragments_is_one_pointer() {
    assert!(std::mem::size_of::<Fragments>() <= 8);
}

#[test]
fn single_text_and_binary() {
    assert_eq!(
        decode_ok(&client_frame(true, TEXT, b"hello")),
        [Ev::Text("hello".into())]
    );
    assert_eq!(
        decode_ok(&client_frame(true, BINARY, &[0, 1, 2, 255])),
        [Ev::Binary(vec![0, 1, 2, 255])]
    );
}

#[test]
fn single_frame_borrows_the_input_buffer() {
    let mut buf = client_frame(true, BINARY, b"zero copy");
    let range = buf.as_ptr_range();
    let mut frags = Fragments::default();
    decode(&mut buf, &mut frags, MAX, |e| {
        let ClientEvent::Binary(b) = e else {
            panic!("{e:?}")
        };
        assert!(range.contains(&b.as_ptr()));
        assert_eq!(b, b"zero copy");
        ControlFlow::Continue(())
    })
    .unwrap();
}

#[test]
fn control_frames() {
    let mut bytes = client_frame(true, PING, b"p");
    bytes.extend(client_frame(true, PONG, b""));
    bytes.extend(client_frame(
        true,
        CLOSE,
        &close_payload(1000, "bye".as_bytes()),
    ));
    assert_eq!(
        decode_ok(&bytes),
        [
            Ev::Ping(b"p".to_vec()),
            Ev::Pong(vec![]),
            Ev::Close(Some(1000), "bye".into())
        ]
    );
    assert_eq!(
        decode_ok(&client_frame(true, CLOSE, b"")),
        [Ev::Close(None, String::new())]
    );
    assert_eq!(
        decode_ok(&client_frame(true, PING, &[7; 125])),
        [Ev::Ping(vec![7; 125])]
    );
}

#[test]
fn boundary_payload_lengths() {
    for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70001] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let frame = client_frame(true, BINARY, &payload);
        let expected_header = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        } + 4;
        assert_eq!(frame.len(), expected_header + len);
        assert_eq!(decode_ok(&frame), [Ev::Binary(payload)], "len {len}");
    }
}

#[test]
fn non_minimal_length_encoding_is_accepted() {
    // 5-byte payload with a 16-bit and a 64-bit length field.
    let masked: Vec<u8> = b"hello"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ KEY[i % 4])
        .collect();
    let mut f16 = vec![0x81, 0x80 | 126, 0, 5];
    f16.extend_from_slice(&KEY);
    f16.extend_from_slice(&masked);
    let mut f64 = vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5];
    f64.extend_from_slice(&KEY);
    f64.extend_from_slice(&masked);
    assert_eq!(decode_ok(&f16), [Ev::Text("hello".into())]);
    assert_eq!(decode_ok(&f64), [Ev::Text("hello".into())]);
}

#[test]
fn several_frames_in_one_buffer_and_incomplete_tail() {
    let mut bytes = client_frame(true, TEXT, b"one");
    bytes.extend(client_frame(true, BINARY, b"two"));
    bytes.extend(client_frame(true, TEXT, &[b'x'; 300]));
    let complete = bytes.len();
    let tail = client_frame(true, TEXT, b"incomplete");
    bytes.extend_from_slice(&tail[..tail.len() - 1]);
    let (res, events) = decode_all(&bytes, MAX);
    assert_eq!(res, Ok(complete));
    assert_eq!(
        events,
        [
            Ev::Text("one".into()),
            Ev::Binary(b"two".to_vec()),
            Ev::Text("x".repeat(300))
        ]
    );
}

#[test]
fn empty_and_short_buffers_consume_nothing() {
    let frame = client_frame(true, TEXT, b"abc");
    for cut in 0..frame.len() {
        assert_eq!(decode_all(&frame[..cut], MAX), (Ok(0), vec![]), "cut {cut}");
    }
}

fn mixed_stream() -> Vec<u8> {
    let mut bytes = client_frame(true, TEXT, b"first");
    bytes.extend(client_frame(false, TEXT, "caf".as_bytes()));
    bytes.extend(client_frame(true, PING, b"mid"));
    bytes.extend(client_frame(false, CONT, &[0xC3])); // first byte of 'é'
    bytes.extend(client_frame(true, CONT, &[0xA9, b'!'])); // rest of 'é'
    bytes.extend(client_frame(true, BINARY, &[9u8; 200]));
    bytes.extend(client_frame(false, BINARY, b"ab"));
    bytes.extend(client_frame(true, CONT, b"cd"));
    bytes.extend(client_frame(true, CLOSE, &close_payload(1001, b"gone")));
    bytes
}

fn mixed_expected() -> Vec<Ev> {
    vec![
        Ev::Text("first".into()),
        // Each frame that does not end its message is reported (the rate limit counts it).
        Ev::Fragment,
        Ev::Ping(b"mid".to_vec()),
        Ev::Fragment,
        Ev::Text("café!".into()),
        Ev::Binary(vec![9; 200]),
        Ev::Fragment,
        Ev::Binary(b"abcd".to_vec()),
        Ev::Close(Some(1001), "gone".into()),
    ]
}

#[test]
fn fragmented_text_with_interleaved_ping_and_straddling_utf8() {
    assert_eq!(decode_ok(&mixed_stream()), mixed_expected());
}

#[test]
fn split_at_every_byte_boundary_yields_same_events() {
    let bytes = mixed_stream();
    for cut in 0..=bytes.len() {
        assert_eq!(
            decode_streamed(&bytes, &[cut]).unwrap(),
            mixed_expected(),
            "cut {cut}"
        );
    }
    // And one byte at a time.
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    assert_eq!(decode_streamed(&bytes, &cuts).unwrap(), mixed_expected());
}

#[test]
fn fragments_state_is_empty_between_messages() {
    let mut frags = Fragments::default();
    let mut buf = client_frame(false, TEXT, b"ab");
    let mut first = None;
    decode(&mut buf, &mut frags, MAX, |e| {
        first = Some(Ev::from(e));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(first, Some(Ev::Fragment));
    assert!(frags.in_progress());
    assert_eq!(frags.buffered(), 2);
    let mut buf = client_frame(true, CONT, b"cd");
    let mut got = None;
    decode(&mut buf, &mut frags, MAX, |e| {
        got = Some(Ev::from(e));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got, Some(Ev::Text("abcd".into())));
    assert!(!frags.in_progress());
}

#[test]
fn break_stops_early_with_consumed_count() {
    let a = client_frame(true, TEXT, b"a");
    let b = client_frame(true, TEXT, b"b");
    let c = client_frame(true, TEXT, b"c");
    let mut buf = [a.clone(), b.clone(), c.clone()].concat();
    let mut frags = Fragments::default();
    let mut seen = Vec::new();
    let used = decode(&mut buf, &mut frags, MAX, |e| {
        seen.push(Ev::from(e));
        if seen.len() == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(used, a.len() + b.len());
    assert_eq!(seen, [Ev::Text("a".into()), Ev::Text("b".into())]);
    // The remainder is still intact (not unmasked) and decodes on the next call.
    assert_eq!(&buf[used..], &c[..]);
    assert_eq!(decode_ok(&buf[used..]), [Ev::Text("c".into())]);
}

#[test]
fn decoding_stops_after_close() {
    let close = client_frame(true, CLOSE, &close_payload(1000, b""));
    let bytes = [close.clone(), client_frame(true, TEXT, b"after")].concat();
    let (res, events) = decode_all(&bytes, MAX);
    assert_eq!(res, Ok(close.len()));
    assert_eq!(events, [Ev::Close(Some(1000), String::new())]);
}

// ----- protocol errors ---------------------------------------------------------------------

#[test]
fn unmasked_frame() {
    let e = decode_err(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(e, ProtocolError::Unmasked);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn reserved_bits() {
    for rsv in [0x40, 0x20, 0x10] {
        let e = decode_err(&client_frame_raw(0x80 | rsv | TEXT, b"x", KEY));
        assert_eq!(e, ProtocolError::ReservedBits);
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn reserved_opcodes() {
    for op in (3..=7).chain(11..=15) {
        let e = decode_err(&client_frame(true, op, b""));
        assert_eq!(e, ProtocolError::ReservedOpcode(op));
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn fragmented_control_frame() {
    for op in [CLOSE, PING, PONG] {
        let e = decode_err(&client_frame(false, op, b""));
        assert_eq!(e, ProtocolError::FragmentedControl);
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn control_frame_too_long() {
    for op in [CLOSE, PING, PONG] {
        let e = decode_err(&client_frame(true, op, &[0; 126]));
        assert_eq!(e, ProtocolError::ControlTooLong);
        assert_eq!(e.close_code(), 1002);
    }
    // Detected from the first two bytes alone.
    assert_eq!(
        decode_all(&[0x89, 0x80 | 126], MAX).0,
        Err(ProtocolError::ControlTooLong)
    );
}

#[test]
fn continuation_without_message() {
    let e = decode_err(&client_frame(true, CONT, b"x"));
    assert_eq!(e, ProtocolError::UnexpectedContinuation);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn new_data_frame_during_fragmented_message() {
    for op in [TEXT, BINARY] {
        let bytes = [
            client_frame(false, TEXT, b"a"),
            client_frame(true, op, b"b"),
        ]
        .concat();
        let e = decode_err(&bytes);
        assert_eq!(e, ProtocolError::ExpectedContinuation);
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn close_payload_of_one_byte() {
    let e = decode_err(&client_frame(true, CLOSE, &[3]));
    assert_eq!(e, ProtocolError::CloseTooShort);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn close_codes() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        assert_eq!(
            decode_ok(&client_frame(true, CLOSE, &close_payload(code, b"r"))),
            [Ev::Close(Some(code), "r".into())],
            "{code}"
        );
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let e = decode_err(&client_frame(true, CLOSE, &close_payload(code, b"")));
        assert_eq!(e, ProtocolError::InvalidCloseCode(code));
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn close_code_rules_match_tungstenite_except_1014() {
    for code in 0..=u16::MAX {
        let ours = is_valid_close_code(code);
        let theirs = CloseCode::from(code).is_allowed();
        if code == 1014 {
            assert!(ours);
        } else {
            assert_eq!(ours, theirs, "{code}");
        }
    }
}

#[test]
fn length_with_msb_set() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    // Detected before the mask key arrives.
    let e = decode_all(&bytes, usize::MAX).0.unwrap_err();
    assert_eq!(e, ProtocolError::LengthOverflow);
    assert_eq!(e.close_code(), 1002);
}

#[test]
fn invalid_utf8_text() {
    let e = decode_err(&client_frame(true, TEXT, &[b'a', 0xFF]));
    assert_eq!(e, ProtocolError::InvalidUtf8Text);
    assert_eq!(e.close_code(), 1007);
    // Truncated sequence at the end of a fragmented message.
    let bytes = [
        client_frame(false, TEXT, b"ok"),
        client_frame(true, CONT, &[0xE2, 0x82]),
    ]
    .concat();
    assert_eq!(decode_err(&bytes), ProtocolError::InvalidUtf8Text);
    // Binary messages are not validated.
    assert_eq!(
        decode_ok(&client_frame(true, BINARY, &[0xFF])),
        [Ev::Binary(vec![0xFF])]
    );
}

#[test]
fn invalid_utf8_close_reason() {
    let e = decode_err(&client_frame(true, CLOSE, &close_payload(1000, &[0xC3])));
    assert_eq!(e, ProtocolError::InvalidUtf8CloseReason);
    assert_eq!(e.close_code(), 1007);
}

#[test]
fn message_too_big_from_header_alone() {
    let max = 1000;
    // 16-bit length, buffer holds only the 4 header bytes (no mask key, no payload).
    let mut header = vec![0x82, 0x80 | 126];
    header.extend_from_slice(&1001u16.to_be_bytes());
    let e = decode_all(&header, max).0.unwrap_err();
    assert_eq!(
        e,
        ProtocolError::MessageTooBig {
            declared: 1001,
            max
        }
    );
    assert_eq!(e.close_code(), 1009);
    // 64-bit length, full header with mask key but no payload.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(10u64 << 40).to_be_bytes());
    header.extend_from_slice(&KEY);
    assert_eq!(decode_all(&header, max).0.unwrap_err().close_code(), 1009);
    // Exactly max is fine.
    let frame = client_frame(true, BINARY, &vec![1; max]);
    assert_eq!(decode_all(&frame, max).0, Ok(frame.len()));
}

#[test]
fn message_too_big_across_fragments() {
    let max = 10;
    let mut first = client_frame(false, TEXT, b"123456");
    // Second fragment's header alone pushes the total over the limit.
    let second = client_frame(true, CONT, b"78901");
    first.extend_from_slice(&second[..2]);
    let (res, events) = decode_all(&first, max);
    assert_eq!(res, Err(ProtocolError::MessageTooBig { declared: 11, max }));
    assert_eq!(
        events,
        [Ev::Fragment],
        "only the first frame, which ended nothing"
    );
    // Control frames in between do not count towards the message.
    let ok = [
        client_frame(false, TEXT, b"123456"),
        client_frame(true, PING, b"0123456789abc"),
        client_frame(true, CONT, b"7890"),
    ]
    .concat();
    assert_eq!(
        decode_all(&ok, max).1,
        [
            Ev::Fragment,
            Ev::Ping(b"0123456789abc".to_vec()),
            Ev::Text("1234567890".into())
        ]
    );
}

#[test]
fn error_metadata_is_short_and_distinct() {
    let all = [
        ProtocolError::Unmasked,
        ProtocolError::ReservedBits,
        ProtocolError::ReservedOpcode(3),
        ProtocolError::FragmentedControl,
        ProtocolError::ControlTooLong,
        ProtocolError::UnexpectedContinuation,
        ProtocolError::ExpectedContinuation,
        ProtocolError::CloseTooShort,
        ProtocolError::InvalidCloseCode(5),
        ProtocolError::LengthOverflow,
        ProtocolError::InvalidUtf8Text,
        ProtocolError::InvalidUtf8CloseReason,
        ProtocolError::MessageTooBig {
            declared: 2,
            max: 1,
        },
    ];
    let mut labels = std::collections::HashSet::new();
    for e in all {
        assert!(e.reason().len() <= 123, "{e:?}");
        assert!(labels.insert(e.label()), "duplicate label {}", e.label());
        let frame = e.close_frame();
        assert_eq!(&frame[2..4], &e.close_code().to_be_bytes());
        assert_eq!(&frame[4..], e.reason().as_bytes());
    }
}

// ----- encoding ----------------------------------------------------------------------------

#[test]
fn header_len_boundaries() {
    assert_eq!(header_len(0), 2);
    assert_eq!(header_len(125), 2);
    assert_eq!(header_len(126), 4);
    assert_eq!(header_len(65535), 4);
    assert_eq!(header_len(65536), 10);
    assert_eq!(header_len(usize::MAX), 10);
}

#[test]
fn encode_matches_tungstenite_header_and_is_exact() {
    for len in [0usize, 1, 125, 126, 65535, 65536, 100_000] {
        let payload = vec![b'z'; len];
        let frame = encode(OpCode::Data(Data::Binary), &payload);
        let mut expected = Vec::new();
        FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            ..FrameHeader::default()
        }
        .format(len as u64, &mut expected)
        .unwrap();
        assert_eq!(&frame[..expected.len()], &expected[..], "len {len}");
        assert_eq!(frame.len(), header_len(len) + len);
        assert_eq!(&frame[header_len(len)..], &payload[..]);
    }
}

#[test]
fn encode_round_trips() {
    let cases: Vec<(OpCode, Vec<u8>, Ev)> = vec![
        (
            OpCode::Data(Data::Text),
            b"hi".to_vec(),
            Ev::Text("hi".into()),
        ),
        (
            OpCode::Data(Data::Text),
            "é".repeat(40_000).into_bytes(),
            Ev::Text("é".repeat(40_000)),
        ),
        (
            OpCode::Data(Data::Binary),
            vec![3; 126],
            Ev::Binary(vec![3; 126]),
        ),
        (
            OpCode::Data(Data::Binary),
            vec![4; 65536],
            Ev::Binary(vec![4; 65536]),
        ),
        (
            OpCode::Control(Control::Ping),
            b"x".to_vec(),
            Ev::Ping(b"x".to_vec()),
        ),
        (OpCode::Control(Control::Pong), vec![], Ev::Pong(vec![])),
    ];
    for (op, payload, expected) in cases {
        let masked = mask_server_frame(&encode(op, &payload), [1, 2, 3, 4]);
        assert_eq!(decode_ok(&masked), [expected]);
    }
    let close = mask_server_frame(&encode_close(4001, "done"), [9, 8, 7, 6]);
    assert_eq!(decode_ok(&close), [Ev::Close(Some(4001), "done".into())]);
}

#[test]
fn encode_text_with_writes_in_place() {
    for len in [5usize, 200, 70_000] {
        let body = "j".repeat(len);
        let frame = encode_text_with(len, |out| out.extend_from_slice(body.as_bytes()));
        assert_eq!(frame, encode(OpCode::Data(Data::Text), body.as_bytes()));
        let masked = mask_server_frame(&frame, KEY);
        assert_eq!(decode_ok(&masked), [Ev::Text(body)]);
    }
}

/// A wrong length is a caller bug: debug builds catch it; release builds still emit a valid frame.
#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "closure wrote the wrong length")
)]
fn encode_text_with_wrong_length() {
    let frame = encode_text_with(10, |out| out.extend_from_slice(&[b'a'; 300]));
    assert_eq!(frame, encode(OpCode::Data(Data::Text), &[b'a'; 300]));
}

#[test]
fn encode_close_truncates_on_char_boundary() {
    // 'é' is 2 bytes: 62 of them = 124 bytes; 123 allowed -> 61 chars (122 bytes).
    let reason = "é".repeat(62);
    let frame = encode_close(1000, &reason);
    let payload = &frame[2..];
    assert_eq!(frame[1] as usize, payload.len());
    assert_eq!(payload.len(), 2 + 122);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes());
    assert_eq!(std::str::from_utf8(&payload[2..]).unwrap(), "é".repeat(61));
    // Exactly 123 bytes of ASCII fits untouched; 4-byte chars also cut cleanly.
    let ascii = "a".repeat(123);
    assert_eq!(&encode_close(1001, &ascii)[4..], ascii.as_bytes());
    let emoji = "😀".repeat(40);
    let frame = encode_close(1001, &emoji);
    assert_eq!(std::str::from_utf8(&frame[4..]).unwrap(), "😀".repeat(30));
    assert!(frame.len() - 2 <= 125);
    // Empty reason: payload is just the code.
    assert_eq!(&encode_close(1000, "")[..], &[0x88, 2, 0x03, 0xE8]);
}

#[test]
fn unmask_matches_bytewise_xor() {
    for len in 0..40 {
        let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut data = original.clone();
        unmask(&mut data, KEY);
        let expected: Vec<u8> = original
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i % 4])
            .collect();
        assert_eq!(data, expected, "len {len}");
    }
}

// ----- robustness ----------------------------------------------------------------------------

/// xorshift64: deterministic, no extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn no_panic_on_mutated_or_truncated_input() {
    let seed = mixed_stream();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..20_000 {
        let mut bytes = seed.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[i] ^= 1 << rng.below(8),
                1 => bytes[i] = rng.next() as u8,
                2 => bytes.truncate(i),
                _ => bytes.insert(i, rng.next() as u8),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let max = [0, 10, 200, MAX][round % 4];
        let mut frags = Fragments::default();
        let mut buf = bytes.clone();
        let mut events = 0usize;
        if let Ok(used) = decode(&mut buf, &mut frags, max, |_| {
            events += 1;
            ControlFlow::Continue(())
        }) {
            assert!(used <= bytes.len());
        }
        // Streaming the same bytes must also never panic.
        let cut = rng.below(bytes.len() + 1);
        let _ = decode_streamed_lenient(&bytes, cut, max);
    }
}

/// Like `decode_streamed` but tolerates leftovers and errors (for the fuzz loop).
fn decode_streamed_lenient(bytes: &[u8], cut: usize, max: usize) -> Result<(), ProtocolError> {
    let mut pending = bytes[..cut].to_vec();
    let mut frags = Fragments::default();
    let used = decode(&mut pending, &mut frags, max, |_| ControlFlow::Continue(()))?;
    pending.drain(..used);
    pending.extend_from_slice(&bytes[cut..]);
    decode(&mut pending, &mut frags, max, |_| ControlFlow::Continue(()))?;
    Ok(())
}

/// Finding 16: a message that never ends, as empty continuation frames, is one event per
/// frame, and a `Break` (the rate limit closing) stops the decoder at that frame.
#[test]
fn every_fragment_is_an_event_and_can_stop_the_decoder() {
    let mut bytes = client_frame(false, TEXT, b"");
    for _ in 0..1_000 {
        bytes.extend(client_frame(false, CONT, b""));
    }
    let (res, events) = decode_all(&bytes, MAX);
    assert_eq!(res, Ok(bytes.len()));
    assert_eq!(events, vec![Ev::Fragment; 1_001]);

    let mut buf = bytes.clone();
    let mut frags = Fragments::default();
    let mut seen = 0;
    let used = decode(&mut buf, &mut frags, MAX, |_| {
        seen += 1;
        if seen == 21 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(seen, 21);
    assert_eq!(used, 21 * 6, "empty masked frames are 6 bytes each");
}
