//! One client connection as a shard holds it: a small struct with no task, timer or buffer of its
//! own while idle. A per-connection byte buffer exists only while a partial handshake or client
//! frame is pending.

use mio::net::TcpStream;

use crate::auth::Identity;
use crate::frame::Fragments;
use crate::handshake::Format;
use crate::history::merge::Merge;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::rate::RateLimit;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the HTTP upgrade request; dropped at the deadline (shard clock, ms).
    Handshake { deadline_ms: u64 },
    /// Upgraded: receives messages, sends client ops.
    Open,
    /// A close frame or HTTP error is queued. Once it is written the write side is shut down and
    /// the socket kept until the peer closes too (so the peer reads our last bytes instead of a
    /// reset), or until the deadline.
    Closing { deadline_ms: u64, fin_sent: bool },
}

#[derive(Debug)]
pub struct Conn {
    pub socket: TcpStream,
    pub phase: Phase,
    /// Bytes of an incomplete handshake or client frame; empty (no heap) otherwise.
    pub inbuf: Vec<u8>,
    pub fragments: Fragments,
    pub outbox: Outbox,
    /// Patterns this connection is subscribed to, so closing it can clean the topic index.
    pub subs: Vec<Box<str>>,
    pub format: Format,
    /// Shard clock (s) of the last bytes received, for liveness pings.
    pub last_seen_s: u32,
    /// Sequence number of the last message queued here: a message matching several of this
    /// connection's patterns is delivered once.
    pub stamp: u64,
    /// In the shard's list of connections to flush.
    pub dirty: bool,
    /// The socket buffer filled up; waiting for a writable event.
    pub write_blocked: bool,
    /// A liveness ping is out and unanswered.
    pub pinged: bool,
    /// The verified token, when auth is on; boxed so anonymous connections pay one pointer.
    pub identity: Option<Box<Identity>>,
    /// The client address whose per-IP slot this connection holds (when that limit is on).
    pub counted_ip: Option<std::net::IpAddr>,
    /// Client-message rate limit (every frame counts, pings and pongs included).
    pub rate: RateLimit,
    /// Shard clock (s) of the last write progress while the socket is blocked: a peer that
    /// stops reading is closed like a slow consumer even when its queue stays under the bound.
    pub stalled_since_s: u32,
    /// Unique per shard for the connection's life (slab keys are reused): replay results are
    /// matched on it.
    pub serial: u64,
    /// Replay-then-live merge, only for a connection that resumed.
    pub merge: Option<Box<Merge<std::sync::Arc<Message>>>>,
    /// Shard clock (s) by which the replays in flight must have answered.
    pub replay_deadline_s: u32,
}

impl Conn {
    pub fn new(socket: TcpStream, handshake_deadline_ms: u64, now_s: u32) -> Conn {
        Conn {
            socket,
            phase: Phase::Handshake {
                deadline_ms: handshake_deadline_ms,
            },
            inbuf: Vec::new(),
            fragments: Fragments::default(),
            outbox: Outbox::default(),
            subs: Vec::new(),
            format: Format::Envelope,
            last_seen_s: now_s,
            stamp: 0,
            dirty: false,
            write_blocked: false,
            pinged: false,
            identity: None,
            counted_ip: None,
            rate: RateLimit::default(),
            stalled_since_s: now_s,
            serial: 0,
            merge: None,
            replay_deadline_s: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Keeps the unconsumed tail of `buf` for the next read. Frees the buffer once nothing is
    /// pending so an idle connection holds no heap memory.
    pub fn keep_tail_of_inbuf(&mut self, consumed: usize) {
        if consumed >= self.inbuf.len() {
            self.inbuf = Vec::new();
        } else {
            self.inbuf.drain(..consumed);
        }
    }
}
