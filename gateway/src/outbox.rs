//! A connection's queue of frames waiting to be written: references to shared frame bytes, written
//! with one vectored write per flush and resumed exactly where a partial write stopped.
//!
//! Message frames can also be queued as *spans*: positions in the shard's stream of message
//! frames ([`crate::shard`]'s batch), which the engine turns into bytes before writing. Adjacent
//! spans merge, so a connection that gets every message of a pass holds one entry for all of
//! them, not one per message.

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
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// One queued item: bytes to write, or a span of the shard's frame stream not yet resolved.
#[derive(Debug)]
enum Entry {
    Frame(Bytes),
    /// The rest of a frame whose first bytes already went out (a direct write from the shard's
    /// stream that stopped short): written like a frame, but never discarded, since dropping it
    /// would cut the frame on the wire (see [`Outbox::discard_unstarted`]).
    Rest(Bytes),
    /// Positions `start..end` in the shard's stream of message frames of this connection's
    /// format; written straight from the stream when it is the whole queue, else replaced by a
    /// copy of its bytes ([`Outbox::resolve_spans`]) before a write.
    Span {
        start: u64,
        end: u64,
    },
}

impl Entry {
    fn len(&self) -> usize {
        match self {
            Entry::Frame(bytes) | Entry::Rest(bytes) => bytes.len(),
            Entry::Span { start, end } => usize::try_from(end - start).unwrap_or(usize::MAX),
        }
    }
}

/// Pending frames of one connection. Empty, it owns no heap memory until the first frame arrives.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    frames: VecDeque<Entry>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// Bytes queued and not yet written, over all frames.
    pending: usize,
}

/// What a write attempt left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything queued was written, in `calls` vectored writes.
    All { bytes: usize, calls: usize },
    /// The socket buffer is full; the rest waits for writability.
    Blocked { bytes: usize, calls: usize },
}

impl Outbox {
    pub(crate) fn push(&mut self, frame: Bytes) {
        self.pending += frame.len();
        self.frames.push_back(Entry::Frame(frame));
    }

    /// Queues positions `start..end` of the shard's frame stream, merged into the last entry
    /// when that is the span just before it (the common case: one entry per pass).
    pub(crate) fn push_span(&mut self, start: u64, end: u64) {
        self.pending += usize::try_from(end - start).unwrap_or(usize::MAX);
        if let Some(Entry::Span { end: last, .. }) = self.frames.back_mut()
            && *last == start
        {
            *last = end;
            return;
        }
        self.frames.push_back(Entry::Span { start, end });
    }

    /// Whether some entry is a span still to be resolved.
    pub(crate) fn has_spans(&self) -> bool {
        // Spans are queued last; the queue is a few entries long when a pass reaches it.
        self.frames
            .iter()
            .rev()
            .any(|e| matches!(e, Entry::Span { .. }))
    }

    /// Replaces every span with a copy of its bytes, which `resolve(start, end)` returns. A
    /// span `resolve` cannot find is dropped whole, never written short: a cut frame would
    /// corrupt the stream for good, where a dropped one is a lost message (and cannot happen
    /// while the engine resolves every span before releasing what it points into).
    pub(crate) fn resolve_spans(&mut self, mut resolve: impl FnMut(u64, u64) -> Option<Bytes>) {
        let mut i = 0;
        while i < self.frames.len() {
            let Some(&Entry::Span { start, end }) = self.frames.get(i) else {
                i += 1;
                continue;
            };
            match resolve(start, end) {
                Some(bytes) if !bytes.is_empty() => {
                    self.frames[i] = Entry::Frame(bytes);
                    i += 1;
                }
                _ => {
                    // Gone, or an empty span: nothing to write.
                    self.pending -= usize::try_from(end - start).unwrap_or(usize::MAX);
                    self.frames.remove(i);
                }
            }
        }
    }

    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Approximate memory the queue holds: its bytes plus [`FRAME_OVERHEAD`] per frame.
    pub(crate) fn footprint(&self) -> usize {
        self.pending + self.frames.len() * FRAME_OVERHEAD
    }

    /// What queueing `frame` adds to [`Outbox::footprint`].
    pub(crate) fn cost_of(frame: &Bytes) -> usize {
        frame.len() + FRAME_OVERHEAD
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops every frame not yet started, keeping the rest of a partly written one: cutting a frame
    /// in the middle would corrupt the stream the close frame that follows must travel on.
    pub(crate) fn discard_unstarted(&mut self) {
        let started = self.offset > 0 || matches!(self.frames.front(), Some(Entry::Rest(_)));
        let keep = usize::from(started);
        while self.frames.len() > keep {
            if let Some(entry) = self.frames.pop_back() {
                self.pending -= entry.len();
            }
        }
    }

    /// Takes the front frame whole, for an engine that hands frames one by one to a WebSocket
    /// library (the tokio engine); `None` when empty or when the front frame is partly written.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        if self.offset > 0 {
            return None;
        }
        match self.frames.front()? {
            Entry::Frame(_) => {}
            Entry::Rest(_) | Entry::Span { .. } => return None,
        }
        let Some(Entry::Frame(frame)) = self.frames.pop_front() else {
            return None;
        };
        self.pending -= frame.len();
        Some(frame)
    }

    /// Writes as much as the writer takes, one vectored write per up to [`MAX_IOVECS`] frames.
    /// Writing stops before an unresolved span (the engine resolves them first: see
    /// [`Outbox::resolve_spans`]).
    pub(crate) fn write_to<W: Write>(&mut self, writer: &mut W) -> io::Result<Flushed> {
        let mut written = 0;
        let mut calls = 0;
        while let Some(Entry::Frame(_) | Entry::Rest(_)) = self.frames.front() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, entry) in self.frames.iter().take(MAX_IOVECS).enumerate() {
                let (Entry::Frame(frame) | Entry::Rest(frame)) = entry else {
                    break;
                };
                let start = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(frame.get(start..).unwrap_or_default());
                count = i + 1;
            }
            calls += 1;
            // One slice (the common case: a pass's spans merge into one) goes out with a plain
            // `send`, which skips the kernel's iovec import and VFS layer of `writev`.
            let result = match &slices[..count] {
                [one] => writer.write(one),
                many => writer.write_vectored(many),
            };
            let n = match result {
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

    /// The queue's only entry when it is one span not yet started: a pass can write it straight
    /// from the shard's stream, with no handle taken and dropped (see `Shard::write_conn`).
    pub(crate) fn lone_span(&self) -> Option<(u64, u64)> {
        match (self.offset, self.frames.len(), self.frames.front()) {
            (0, 1, Some(&Entry::Span { start, end })) => Some((start, end)),
            _ => None,
        }
    }

    /// The lone span went out whole (see [`Outbox::lone_span`]).
    pub(crate) fn lone_span_written(&mut self) {
        if let Some(Entry::Span { start, end }) = self.frames.pop_front() {
            self.pending -= usize::try_from(end - start).unwrap_or(usize::MAX);
        }
        self.release_if_drained();
    }

    /// The lone span's first `sent` bytes went out and its socket took no more: the rest is
    /// queued as `rest`, a copy of its own (the stream it was in is released after the pass),
    /// marked as started when `sent > 0` so a close never drops it half-way through a frame.
    pub(crate) fn lone_span_partly_written(&mut self, sent: usize, rest: Bytes) {
        if let Some(Entry::Span { start, end }) = self.frames.pop_front() {
            let len = usize::try_from(end - start).unwrap_or(usize::MAX);
            debug_assert_eq!(len - sent, rest.len());
            self.pending = self.pending - len + rest.len();
            let entry = if sent > 0 {
                Entry::Rest(rest)
            } else {
                Entry::Frame(rest)
            };
            self.frames.push_front(entry);
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let Some(Entry::Frame(front) | Entry::Rest(front)) = self.frames.front() else {
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
        self.release_if_drained();
    }

    /// An emptied queue that grew past [`KEEP_ENTRIES`] (a burst, a slow spell) gives its buffer
    /// back: a connection idles on a small struct again instead of holding its largest queue
    /// for good. A queue that stays small keeps its buffer, so a steady flow does not allocate
    /// per pass.
    fn release_if_drained(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > KEEP_ENTRIES {
            self.frames = VecDeque::new();
        }
    }
}

/// Queue entries an emptied queue keeps room for (see `Outbox::release_if_drained`).
const KEEP_ENTRIES: usize = 4;

#[cfg(test)]
mod tests;
