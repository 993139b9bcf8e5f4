//! The shard's stream of message frames: each delivered message's frame appended once per wire
//! format, connections queueing positions in it (spans, see [`crate::outbox::Outbox::push_span`])
//! instead of one frame handle per message, as a fan-out server built for the limit queues one
//! shared batch per connection per pass.
//!
//! Bytes are appended to an open buffer and frozen into shared segments when a connection's span
//! is resolved; a segment is released once no connection can still hold a span into it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::handshake::Format;

/// Size of a fresh open buffer: a pass's worth of frames at high rates (~15 frames of ~300
/// bytes) several times over, so freezing rarely starts a new allocation.
const CHUNK: usize = 16 * 1024;

/// One stream per wire format: a connection reads only its own format's frames, so its spans
/// stay adjacent.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    streams: [Stream; 2],
}

/// Positions up to which each stream was frozen: see [`Batch::freeze`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark([u64; 2]);

#[derive(Debug, Default)]
struct Stream {
    /// Appended, not yet frozen; its first byte is at position `open_base`.
    open: BytesMut,
    open_base: u64,
    /// Frozen bytes and the position of their first byte, in order.
    segments: VecDeque<(u64, Bytes)>,
}

/// The index of `format`'s stream (and of per-format slots kept by the shard).
pub(super) fn slot(format: Format) -> usize {
    match format {
        Format::Envelope => 0,
        Format::Raw => 1,
    }
}

impl Batch {
    /// Appends `frame` to `format`'s stream; returns its span.
    pub(crate) fn append(&mut self, format: Format, frame: &[u8]) -> (u64, u64) {
        self.streams[slot(format)].append(frame)
    }

    /// Pushes onto `out` the bytes of `start..end` in `format`'s stream (one slice per segment
    /// the span crosses), freezing the open buffer if the span reaches into it.
    pub(crate) fn resolve(&mut self, format: Format, start: u64, end: u64, out: &mut Vec<Bytes>) {
        self.streams[slot(format)].resolve(start, end, out);
    }

    /// The bytes of `start..end` in `format`'s stream when they lie in one piece (one segment, or
    /// the open buffer), borrowed: nothing is frozen and no handle is taken. `None` when the span
    /// crosses a segment boundary or is not held any more.
    pub(crate) fn contiguous(&self, format: Format, start: u64, end: u64) -> Option<&[u8]> {
        self.streams[slot(format)].contiguous(start, end)
    }

    /// Freezes what is open; every span handed out so far lies before the returned mark.
    pub(crate) fn freeze(&mut self) -> Mark {
        Mark(self.streams.each_mut().map(|s| {
            s.freeze();
            s.open_base
        }))
    }

    /// Drops the segments wholly before `mark`: the caller knows no span into them is left.
    pub(crate) fn release_before(&mut self, mark: Mark) {
        for (stream, at) in self.streams.iter_mut().zip(mark.0) {
            stream.release_before(at);
        }
    }

    /// Segments held, over both streams.
    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.streams.iter().map(|s| s.segments.len()).sum()
    }
}

impl Stream {
    fn append(&mut self, frame: &[u8]) -> (u64, u64) {
        if self.open.capacity() - self.open.len() < frame.len() && self.open.is_empty() {
            // A fresh buffer rather than growing one whose frozen part others still share.
            self.open = BytesMut::with_capacity(CHUNK.max(frame.len()));
        }
        let start = self.open_base + self.open.len() as u64;
        self.open.extend_from_slice(frame);
        (start, start + frame.len() as u64)
    }

    fn freeze(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let frozen = self.open.split().freeze();
        let base = self.open_base;
        self.open_base += frozen.len() as u64;
        self.segments.push_back((base, frozen));
    }

    fn resolve(&mut self, start: u64, end: u64, out: &mut Vec<Bytes>) {
        if end > self.open_base {
            self.freeze();
        }
        for (base, segment) in &self.segments {
            let seg_end = base + segment.len() as u64;
            if seg_end <= start {
                continue;
            }
            if *base >= end {
                break;
            }
            let from = start.max(*base) - base;
            let to = end.min(seg_end) - base;
            // Both bounds are within the segment, whose length is a usize.
            out.push(segment.slice(from as usize..to as usize));
        }
    }

    fn contiguous(&self, start: u64, end: u64) -> Option<&[u8]> {
        let (base, bytes): (u64, &[u8]) = if start >= self.open_base {
            (self.open_base, &self.open)
        } else {
            // Spans of a pass sit in the newest segments: search from the back.
            let (base, segment) = self
                .segments
                .iter()
                .rev()
                .find(|(base, _)| *base <= start)?;
            (*base, segment)
        };
        let from = usize::try_from(start.checked_sub(base)?).ok()?;
        let to = usize::try_from(end.checked_sub(base)?).ok()?;
        bytes.get(from..to)
    }

    fn release_before(&mut self, at: u64) {
        while let Some((base, segment)) = self.segments.front() {
            if base + segment.len() as u64 > at {
                break;
            }
            self.segments.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
