//! The shard's stream of message frames: each delivered message's frame appended once per wire
//! format, connections queueing positions in it (spans, see [`crate::outbox::Outbox::push_span`])
//! instead of one frame handle per message, as a fan-out server built for the limit queues one
//! shared batch per connection per pass.
//!
//! Each format's stream is one contiguous buffer holding every byte a span can still reach, so a
//! connection's span (every message since its last write, however many passes they came in) is
//! always one slice: a pass writes it straight from the buffer with one `send` (see
//! `Shard::write_lone_span`). Nothing outside the shard holds a handle into the buffer: a span
//! that must outlive the pass is copied out ([`Batch::resolve`]), so releasing what the pass
//! wrote is moving a start index, and the buffer is reused in place.

use bytes::Bytes;

use crate::handshake::Format;

/// Room a fresh buffer starts with: a pass's worth of frames at high rates (~15 frames of ~300
/// bytes) several times over.
const CHUNK: usize = 16 * 1024;

/// A buffer a burst grew past this gives its memory back at the first release that leaves it
/// empty or at most a quarter full, so a shard idles on [`CHUNK`] at most per format.
const KEEP_CAPACITY: usize = 4 * CHUNK;

/// One stream per wire format: a connection reads only its own format's frames, so its spans
/// stay adjacent.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    streams: [Stream; 2],
}

/// The end of each stream at some moment: see [`Batch::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark([u64; 2]);

#[derive(Debug, Default)]
struct Stream {
    /// `buf[head..]` holds the bytes from position `base + head` on; `buf[..head]` is released.
    buf: Vec<u8>,
    head: usize,
    /// The position of `buf[0]`.
    base: u64,
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

    /// A copy of the bytes of `start..end` in `format`'s stream, for a connection that keeps
    /// them past the pass (its queue holds more than the span, or its write blocked). `None`
    /// when the span is not held any more.
    pub(crate) fn resolve(&self, format: Format, start: u64, end: u64) -> Option<Bytes> {
        self.contiguous(format, start, end)
            .map(Bytes::copy_from_slice)
    }

    /// The bytes of `start..end` in `format`'s stream, borrowed. `None` when the span is not
    /// held any more (released) or not yet (past the end).
    pub(crate) fn contiguous(&self, format: Format, start: u64, end: u64) -> Option<&[u8]> {
        self.streams[slot(format)].get(start, end)
    }

    /// The current end of every stream: every span handed out so far lies before it.
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.streams.each_ref().map(Stream::end))
    }

    /// Releases the bytes before `mark`: the caller knows no span into them is left.
    pub(crate) fn release_before(&mut self, mark: Mark) {
        for (stream, at) in self.streams.iter_mut().zip(mark.0) {
            stream.release_before(at);
        }
    }

    /// Bytes held (not yet released), over both streams.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.streams.iter().map(|s| s.buf.len() - s.head).sum()
    }

    /// Buffer capacity, over both streams.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.streams.iter().map(|s| s.buf.capacity()).sum()
    }
}

impl Stream {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn append(&mut self, frame: &[u8]) -> (u64, u64) {
        if self.buf.capacity() - self.buf.len() < frame.len() {
            if self.head > 0 {
                // Move what is held to the front rather than grow past released bytes.
                self.compact();
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(CHUNK.max(frame.len()));
            }
        }
        let start = self.end();
        self.buf.extend_from_slice(frame);
        (start, start + frame.len() as u64)
    }

    fn get(&self, start: u64, end: u64) -> Option<&[u8]> {
        let from = usize::try_from(start.checked_sub(self.base)?).ok()?;
        let to = usize::try_from(end.checked_sub(self.base)?).ok()?;
        if from < self.head {
            return None;
        }
        self.buf.get(from..to)
    }

    fn release_before(&mut self, at: u64) {
        let Ok(at) = usize::try_from(at.saturating_sub(self.base)) else {
            return;
        };
        self.head = self.head.max(at.min(self.buf.len()));
        let held = self.buf.len() - self.head;
        if held == 0 {
            // Nothing held: start over at the front (positions keep counting up).
            self.base += self.buf.len() as u64;
            self.head = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        } else if self.buf.capacity() > KEEP_CAPACITY && held <= self.buf.capacity() / 4 {
            // A burst grew the buffer and steady traffic keeps it from ever emptying (messages
            // taken during a pass lie past its mark): give back what the burst took.
            self.compact();
            self.buf.shrink_to((2 * held).max(CHUNK));
        }
    }

    /// Moves the held bytes to the front of the buffer.
    fn compact(&mut self) {
        self.buf.drain(..self.head);
        self.base += self.head as u64;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests;
