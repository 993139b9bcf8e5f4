//! Just enough of the WebSocket client side for a load generator: the upgrade request, the
//! 101 check, and a parser for the server's unmasked frames. Hand-written so the clients cost
//! far less CPU than the server they measure.

#[cfg(test)]
mod tests;

/// Any valid key works: the benchmark does not verify `Sec-WebSocket-Accept`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(host: &str, target: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Protocol: volley.v1\r\n\r\n"
    )
    .into_bytes()
}

/// Once the response head is complete: (status code, head length). `None` while partial.
pub fn response_head(buf: &[u8]) -> Option<(u16, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let status = std::str::from_utf8(&buf[..end])
        .ok()
        .and_then(|s| s.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some((status, end))
}

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// One complete frame at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    /// Where the payload sits in the buffer.
    pub payload: std::ops::Range<usize>,
    /// Bytes the whole frame takes.
    pub len: usize,
}

/// Parses one frame from the start of `buf`; `None` until the whole frame is there. A masked
/// payload (servers never send one) is left masked: the benchmark only needs unmasked data.
pub fn parse_frame(buf: &[u8]) -> Option<Frame> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut at): (u64, usize) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    if masked {
        at += 4;
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    if buf.len() < end {
        return None;
    }
    Some(Frame {
        opcode: b0 & 0x0f,
        payload: at..end,
        len: end,
    })
}

/// A masked client control frame (pong or close) with the all-zero mask key, which leaves the
/// payload as is; `payload` must be at most 125 bytes.
pub fn client_control(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(125);
    let mut out = Vec::with_capacity(6 + len);
    out.push(0x80 | opcode);
    out.push(0x80 | len as u8);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&payload[..len]);
    out
}
