//! WebSocket framing (RFC 6455) for the gateway's hot path: allocation-exact server frame
//! encoding and a pure, zero-copy, in-place decoder for client frames.
//!
//! Nothing here does IO. The shard reads into its scratch buffer, calls [`decode`] on it, and
//! keeps the unconsumed tail for the next read; outgoing frames are built once as [`Bytes`] so
//! fan-out can share one encoding across every connection.

use std::ops::ControlFlow;

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// Control frames carry at most 125 payload bytes (RFC 6455 5.5), which is also why a 7-bit
/// length always suffices for them.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest header a server writes: 2 bytes plus a 64-bit extended length (never a mask).
const MAX_SERVER_HEADER: usize = 10;

const FIN: u8 = 0x80;
const RSV_MASK: u8 = 0x70;
const OPCODE_MASK: u8 = 0x0F;
const MASK_BIT: u8 = 0x80;
const LEN_MASK: u8 = 0x7F;
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;

// ---------------------------------------------------------------------------------------------
// Server -> client encoding
// ---------------------------------------------------------------------------------------------

/// Length of an unmasked (server) frame header for a payload of `payload_len` bytes: 2, 4 or 10.
pub fn header_len(payload_len: usize) -> usize {
    if payload_len <= 125 {
        2
    } else if payload_len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

/// Writes a FIN-set, unmasked header into a fixed array and returns it with its used length, so
/// callers can copy exactly those bytes without a fallible `Write`.
fn server_header(opcode: OpCode, payload_len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    header[0] = FIN | u8::from(opcode);
    let len = header_len(payload_len);
    match len {
        2 => {
            // header_len returned 2, so the length fits in 7 bits.
            header[1] = payload_len as u8;
        }
        4 => {
            header[1] = LEN_16;
            header[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            header[1] = LEN_64;
            header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    (header, len)
}

/// Encodes one complete (FIN) unmasked frame. Allocates once, exactly header + payload, so the
/// resulting `Bytes` can be shared by every recipient of a fan-out without copying.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    debug_assert!(
        !matches!(opcode, OpCode::Control(_)) || payload.len() <= MAX_CONTROL_PAYLOAD,
        "control frame payload over 125 bytes"
    );
    let (header, hlen) = server_header(opcode, payload.len());
    let mut out = Vec::with_capacity(hlen + payload.len());
    out.extend_from_slice(&header[..hlen]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Encodes a text frame whose payload is produced by `write`, which must append exactly
/// `payload_len` bytes of UTF-8 to the vector it is given (after the header already in it).
///
/// This lets callers serialize (e.g. JSON) straight into the frame buffer instead of building
/// the payload and copying it behind a header. A wrong length is a caller bug: it trips a
/// `debug_assert`, and in release builds the header is rewritten to match what was actually
/// written, so a client never sees a malformed frame.
pub fn encode_text_with(payload_len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let opcode = OpCode::Data(Data::Text);
    let (header, hlen) = server_header(opcode, payload_len);
    let mut out = Vec::with_capacity(hlen + payload_len);
    out.extend_from_slice(&header[..hlen]);
    write(&mut out);
    let written = out.len().saturating_sub(hlen);
    debug_assert_eq!(
        written, payload_len,
        "encode_text_with: closure wrote the wrong length"
    );
    if written != payload_len {
        // Cold path, only reachable through a caller bug in release builds.
        let (fixed, fixed_len) = server_header(opcode, written);
        out.splice(..hlen, fixed[..fixed_len].iter().copied());
    }
    Bytes::from(out)
}

/// Encodes a Close frame. The reason is cut at a char boundary so the payload (2-byte code plus
/// reason) stays within the 125 bytes allowed for control frames.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let reason = truncate_on_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let len = 2 + reason.len();
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..len].copy_from_slice(reason.as_bytes());
    encode(OpCode::Control(Control::Close), &payload[..len])
}

fn truncate_on_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // A char is at most 4 bytes, so this walks back at most 3 positions; index 0 is always a
    // boundary, so the loop terminates.
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Client -> server decoding
// ---------------------------------------------------------------------------------------------

/// Reassembly state for one connection. It is a single nullable pointer so idle connections
/// (almost all of them) pay 8 bytes for it; the box exists only while a fragmented message is
/// in progress.
#[derive(Debug, Default)]
pub struct Fragments {
    partial: Option<Box<Partial>>,
}

#[derive(Debug)]
struct Partial {
    /// Text or Binary, from the first frame of the message.
    text: bool,
    data: Vec<u8>,
}

impl Fragments {
    /// Whether a fragmented message has started and not yet finished.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes buffered so far for the message in progress (0 if none).
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.len())
    }
}

/// A complete message or control frame received from a client. Borrowed either from the
/// caller's read buffer (single-frame messages, zero copy) or from the reassembly buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A data frame that starts or extends a fragmented message without ending it (its bytes
    /// are buffered; the whole message comes as `Text`/`Binary` with the final frame). Reported
    /// so that every client frame counts against the message rate: otherwise an endless message
    /// of empty continuations would never be limited.
    Fragment,
    /// `code` is `None` for an empty Close payload, in which case `reason` is empty.
    Close {
        code: Option<u16>,
        reason: &'a str,
    },
}

/// A client violated RFC 6455 (or our limits). Each variant maps to the close code the server
/// should send before dropping the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("client frame is not masked")]
    Unmasked,
    #[error("reserved bits set but no extension was negotiated")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame without FIN")]
    FragmentedControl,
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    #[error("continuation frame with no message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("close frame payload of one byte")]
    CloseTooShort,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    #[error("64-bit payload length with the most significant bit set")]
    LengthOverflow,
    #[error("text message is not valid UTF-8")]
    InvalidUtf8Text,
    #[error("close reason is not valid UTF-8")]
    InvalidUtf8CloseReason,
    #[error("message of at least {declared} bytes exceeds the {max} byte limit")]
    MessageTooBig { declared: u64, max: usize },
}

impl ProtocolError {
    /// Close code to send for this error (RFC 6455 7.4.1).
    pub fn close_code(&self) -> u16 {
        let code = match self {
            Self::InvalidUtf8Text | Self::InvalidUtf8CloseReason => CloseCode::Invalid,
            Self::MessageTooBig { .. } => CloseCode::Size,
            _ => CloseCode::Protocol,
        };
        code.into()
    }

    /// Short, static reason for the Close frame: no client data is echoed back and nothing is
    /// formatted on the error path.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unmasked => "unmasked frame",
            Self::ReservedBits => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::FragmentedControl => "fragmented control frame",
            Self::ControlTooLong => "control frame too long",
            Self::UnexpectedContinuation => "unexpected continuation frame",
            Self::ExpectedContinuation => "expected continuation frame",
            Self::CloseTooShort => "invalid close payload",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::LengthOverflow => "invalid payload length",
            Self::InvalidUtf8Text => "invalid utf-8 in text message",
            Self::InvalidUtf8CloseReason => "invalid utf-8 in close reason",
            Self::MessageTooBig { .. } => "message too big",
        }
    }

    /// Stable, low-cardinality metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unmasked => "unmasked",
            Self::ReservedBits => "reserved_bits",
            Self::ReservedOpcode(_) => "reserved_opcode",
            Self::FragmentedControl => "fragmented_control",
            Self::ControlTooLong => "control_too_long",
            Self::UnexpectedContinuation => "unexpected_continuation",
            Self::ExpectedContinuation => "expected_continuation",
            Self::CloseTooShort => "close_too_short",
            Self::InvalidCloseCode(_) => "invalid_close_code",
            Self::LengthOverflow => "length_overflow",
            Self::InvalidUtf8Text => "invalid_utf8_text",
            Self::InvalidUtf8CloseReason => "invalid_utf8_close_reason",
            Self::MessageTooBig { .. } => "message_too_big",
        }
    }

    /// The Close frame to send for this error.
    pub fn close_frame(&self) -> Bytes {
        encode_close(self.close_code(), self.reason())
    }
}

/// Close codes a peer may send (RFC 6455 7.4): 1004-1006 and 1015 are reserved for local use,
/// 1016-2999 for future RFCs. 1012-1014 are IANA-registered since the RFC and accepted (note
/// tungstenite's `CloseCode::is_allowed` rejects 1014; we deliberately do not).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A parsed client frame header; lengths are already bounds-checked against the limits.
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header bytes including the mask key.
    len: usize,
    payload_len: usize,
}

/// Parses the header at the start of `buf`. `Ok(None)` means more bytes are needed. Every check
/// is made as soon as the bytes it needs are present, so an oversized message is rejected from
/// its length field before any payload (or even the mask key) arrives.
fn parse_header(
    buf: &[u8],
    buffered: Option<usize>,
    max_message: usize,
) -> Result<Option<Header>, ProtocolError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & RSV_MASK != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let fin = b0 & FIN != 0;
    // Masked to 4 bits, so OpCode::from (which panics above 15) cannot panic.
    let opcode = OpCode::from(b0 & OPCODE_MASK);
    let len7 = b1 & LEN_MASK;
    match opcode {
        OpCode::Data(Data::Reserved(n)) | OpCode::Control(Control::Reserved(n)) => {
            return Err(ProtocolError::ReservedOpcode(n));
        }
        _ => {}
    }
    if b1 & MASK_BIT == 0 {
        return Err(ProtocolError::Unmasked);
    }
    match opcode {
        OpCode::Control(_) => {
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlTooLong);
            }
        }
        OpCode::Data(Data::Continue) if buffered.is_none() => {
            return Err(ProtocolError::UnexpectedContinuation);
        }
        OpCode::Data(Data::Text | Data::Binary) if buffered.is_some() => {
            return Err(ProtocolError::ExpectedContinuation);
        }
        OpCode::Data(_) => {}
    }

    let rest = buf.get(2..).unwrap_or(&[]);
    let (declared, ext_len): (u64, usize) = match len7 {
        LEN_16 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
            _ => return Ok(None),
        },
        LEN_64 => match rest.first_chunk::<8>() {
            Some(bytes) => (u64::from_be_bytes(*bytes), 8),
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if declared >> 63 != 0 {
        return Err(ProtocolError::LengthOverflow);
    }
    // Control frames are already capped at 125; data frames count towards the whole message.
    if let OpCode::Data(_) = opcode {
        let total = declared.saturating_add(buffered.unwrap_or(0) as u64);
        if total > max_message as u64 {
            return Err(ProtocolError::MessageTooBig {
                declared: total,
                max: max_message,
            });
        }
    }
    // declared <= max_message (data) or <= 125 (control), so it fits in usize.
    let too_big = || ProtocolError::MessageTooBig {
        declared,
        max: max_message,
    };
    let payload_len = usize::try_from(declared).map_err(|_| too_big())?;

    let mask = match rest.get(ext_len..).and_then(|r| r.first_chunk::<4>()) {
        Some(mask) => *mask,
        None => return Ok(None),
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: 2 + ext_len + 4,
        payload_len,
    }))
}

/// XORs `payload` with the 4-byte mask, 8 bytes per step. Each frame's mask starts at offset 0
/// and 8 is a multiple of 4, so the tail also starts at mask offset 0.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
        }
    }
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// Grows the reassembly buffer geometrically, but never past `max_message`, so a client cannot
/// make the allocation exceed the limit through capacity doubling.
fn reserve_bounded(data: &mut Vec<u8>, additional: usize, max_message: usize) {
    let needed = data.len().saturating_add(additional);
    if needed <= data.capacity() {
        return;
    }
    let target = needed
        .max(data.capacity().saturating_mul(2))
        .min(max_message)
        .max(needed);
    data.reserve_exact(target - data.len());
}

/// Decodes every complete frame at the start of `buf` (unmasking in place — that is why it is
/// `&mut`), calling `on_event` for each complete message or control frame, in order. Returns how
/// many bytes were consumed; the caller keeps `buf[consumed..]` (an incomplete frame) for the
/// next read.
///
/// Stops early (returning the bytes consumed so far, including the frame that produced the
/// event) when `on_event` returns `ControlFlow::Break(())`, and likewise after delivering a
/// Close event, since nothing a client sends after Close is meaningful (RFC 6455 5.5.1).
///
/// `max_message` bounds a data message (single frame or the sum of its fragments); it is
/// enforced from the frame header, before the payload is waited for. On `Err` the connection
/// must be closed with [`ProtocolError::close_code`]; `fragments` is then unspecified.
pub fn decode(
    buf: &mut [u8],
    fragments: &mut Fragments,
    max_message: usize,
    mut on_event: impl FnMut(ClientEvent<'_>) -> ControlFlow<()>,
) -> Result<usize, ProtocolError> {
    let mut pos = 0;
    loop {
        let Some(rest) = buf.get_mut(pos..) else {
            return Ok(pos);
        };
        let buffered = fragments.partial.as_ref().map(|p| p.data.len());
        let Some(header) = parse_header(rest, buffered, max_message)? else {
            return Ok(pos);
        };
        let frame_len = header.len.saturating_add(header.payload_len);
        let Some(payload) = rest.get_mut(header.len..frame_len) else {
            return Ok(pos);
        };
        unmask(payload, header.mask);
        let payload: &[u8] = payload;
        pos += frame_len;

        let flow = match header.opcode {
            OpCode::Data(data) => deliver_data(
                data,
                header.fin,
                payload,
                fragments,
                max_message,
                &mut on_event,
            )?,
            OpCode::Control(Control::Ping) => on_event(ClientEvent::Ping(payload)),
            OpCode::Control(Control::Pong) => on_event(ClientEvent::Pong(payload)),
            OpCode::Control(Control::Close) => {
                let event = parse_close(payload)?;
                let _ = on_event(event);
                ControlFlow::Break(())
            }
            // Rejected by parse_header; kept as an error rather than unreachable!() so no input
            // can ever panic here.
            OpCode::Control(Control::Reserved(n)) => return Err(ProtocolError::ReservedOpcode(n)),
        };
        if flow.is_break() {
            return Ok(pos);
        }
    }
}

/// Handles a data frame: the callback's verdict on the message it completes, or on
/// [`ClientEvent::Fragment`] when it only started or extended one.
fn deliver_data(
    data: Data,
    fin: bool,
    payload: &[u8],
    fragments: &mut Fragments,
    max_message: usize,
    on_event: &mut impl FnMut(ClientEvent<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, ProtocolError> {
    match data {
        Data::Text | Data::Binary => {
            let text = data == Data::Text;
            if fin {
                // Unfragmented: deliver straight out of the read buffer.
                return deliver_message(text, payload, on_event);
            }
            let mut bytes = Vec::new();
            reserve_bounded(&mut bytes, payload.len(), max_message);
            bytes.extend_from_slice(payload);
            fragments.partial = Some(Box::new(Partial { text, data: bytes }));
            Ok(on_event(ClientEvent::Fragment))
        }
        Data::Continue => {
            let Some(partial) = fragments.partial.as_mut() else {
                return Err(ProtocolError::UnexpectedContinuation);
            };
            reserve_bounded(&mut partial.data, payload.len(), max_message);
            partial.data.extend_from_slice(payload);
            if !fin {
                return Ok(on_event(ClientEvent::Fragment));
            }
            // Taking the box leaves `fragments` empty (None) again, as for an idle connection.
            match fragments.partial.take() {
                Some(done) => deliver_message(done.text, &done.data, on_event),
                None => Err(ProtocolError::UnexpectedContinuation),
            }
        }
        Data::Reserved(n) => Err(ProtocolError::ReservedOpcode(n)),
    }
}

/// Validates a complete message (UTF-8 is checked on the whole message, since a sequence may
/// straddle fragments) and hands it to the callback.
fn deliver_message(
    text: bool,
    bytes: &[u8],
    on_event: &mut impl FnMut(ClientEvent<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, ProtocolError> {
    if text {
        let text = std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8Text)?;
        Ok(on_event(ClientEvent::Text(text)))
    } else {
        Ok(on_event(ClientEvent::Binary(bytes)))
    }
}

fn parse_close(payload: &[u8]) -> Result<ClientEvent<'_>, ProtocolError> {
    match payload {
        [] => Ok(ClientEvent::Close {
            code: None,
            reason: "",
        }),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8CloseReason)?;
            Ok(ClientEvent::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests;
