//! A connection's queue of frames waiting to be written: references to shared frame bytes, written
//! with one vectored write per flush and resumed exactly where a partial write stopped.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// How many frames one `writev` carries at most. Well under `IOV_MAX` (1024) and small enough for
/// the stack; a queue longer than this (rare: it means the client fell behind) takes more calls.
const MAX_IOVECS: usize = 64;

/// What one queued frame costs beyond its bytes: its slot in the queue plus the allocator's
/// overhead for a frame of its own. Charged to control-path frames (pongs, replies), which are
/// allocated per connection, so a queue of thousands of tiny ones is bounded by the memory it
/// really holds, not by its wire bytes alone.
pub const FRAME_OVERHEAD: usize = 64;

/// Pending frames of one connection. Empty, it owns no heap memory until the first frame arrives.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// Bytes queued and not yet written, over all frames.
    pending: usize,
}

/// What a write attempt left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written, in `calls` vectored writes.
    All { bytes: usize, calls: usize },
    /// The socket buffer is full; the rest waits for writability.
    Blocked { bytes: usize, calls: usize },
}

impl Outbox {
    pub fn push(&mut self, frame: Bytes) {
        self.pending += frame.len();
        self.frames.push_back(frame);
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Approximate memory the queue holds: its bytes plus [`FRAME_OVERHEAD`] per frame.
    pub fn footprint(&self) -> usize {
        self.pending + self.frames.len() * FRAME_OVERHEAD
    }

    /// What queueing `frame` adds to [`Outbox::footprint`].
    pub fn cost_of(frame: &Bytes) -> usize {
        frame.len() + FRAME_OVERHEAD
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame not yet started, keeping the rest of a partly written one: cutting a frame
    /// in the middle would corrupt the stream the close frame that follows must travel on.
    pub fn discard_unstarted(&mut self) {
        let keep = usize::from(self.offset > 0);
        while self.frames.len() > keep {
            if let Some(frame) = self.frames.pop_back() {
                self.pending -= frame.len();
            }
        }
    }

    /// Takes the front frame whole, for an engine that hands frames one by one to a WebSocket
    /// library (the tokio engine); `None` when empty or when the front frame is partly written.
    pub fn pop(&mut self) -> Option<Bytes> {
        if self.offset > 0 {
            return None;
        }
        let frame = self.frames.pop_front()?;
        self.pending -= frame.len();
        Some(frame)
    }

    /// Writes as much as the writer takes, one vectored write per up to [`MAX_IOVECS`] frames.
    pub fn write_to<W: Write>(&mut self, writer: &mut W) -> io::Result<Flushed> {
        let mut written = 0;
        let mut calls = 0;
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, frame) in self.frames.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(frame.get(start..).unwrap_or_default());
                count = i + 1;
            }
            calls += 1;
            let n = match writer.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed::Blocked {
                        bytes: written,
                        calls,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            written += n;
            self.advance(n);
        }
        Ok(Flushed::All {
            bytes: written,
            calls,
        })
    }

    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
