//! The benchmark payload: a JSON object carrying the phase and the send time, padded to the
//! requested size, and the client-side reader that finds both again in a delivered frame.

#[cfg(test)]
mod tests;

/// `{"ph":P,"ts":NANOS,"pad":"xxx…"}`, exactly `size` bytes when `size` is large enough for
/// the fields (otherwise just the fields). JSON, so the envelope inlines it unchanged.
pub fn build(phase: u32, ts_nanos: u64, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"ph":{phase},"ts":{ts_nanos},"pad":""#);
    let fixed = head.len() + 2; // closing `"}`
    let pad = size.saturating_sub(fixed);
    let mut out = Vec::with_capacity(fixed + pad);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    out
}

/// (phase, send time in nanoseconds) from a delivered frame payload (envelope or raw).
pub fn read(frame: &[u8]) -> Option<(u32, u64)> {
    let ph = number_after(frame, b"\"ph\":")?;
    let ts = number_after(frame, b"\"ts\":")?;
    Some((u32::try_from(ph).ok()?, ts))
}

fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    // The fields sit near the start (after the envelope's topic), so a forward scan is short.
    let at = hay.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = hay[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    std::str::from_utf8(&hay[at..at + digits])
        .ok()?
        .parse()
        .ok()
}
