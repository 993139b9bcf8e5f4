//! One client connection as a shard holds it: the socket, the bytes of a partial read, and the
//! sans-IO [`Session`] with the protocol state. A small struct with no task, timer or buffer of
//! its own while idle: a per-connection byte buffer exists only while a partial handshake or
//! client frame is pending.

use mio::net::TcpStream;

use crate::frame::Fragments;
use crate::session::{Clock, Session};

#[derive(Debug)]
pub(crate) struct Conn {
    pub socket: TcpStream,
    /// Bytes of an incomplete handshake or client frame; empty (no heap) otherwise.
    pub inbuf: Vec<u8>,
    pub fragments: Fragments,
    pub session: Session,
    /// Sequence number of the last message queued here: a message matching several of this
    /// connection's patterns is delivered once.
    pub stamp: u64,
    /// In the shard's list of connections to flush.
    pub dirty: bool,
    /// The client address whose per-IP slot this connection holds (when that limit is on).
    pub counted_ip: Option<std::net::IpAddr>,
    /// Entries the shard's topic index holds for this connection: 0 when it is removed.
    pub indexed: u32,
}

impl Conn {
    pub(crate) fn new(
        socket: TcpStream,
        clock: &Clock,
        handshake_timeout: std::time::Duration,
    ) -> Conn {
        Conn {
            socket,
            inbuf: Vec::new(),
            fragments: Fragments::default(),
            session: Session::new(clock, handshake_timeout),
            stamp: 0,
            dirty: false,
            counted_ip: None,
            indexed: 0,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.session.is_open()
    }

    /// Keeps the unconsumed tail of `buf` for the next read. Frees the buffer once nothing is
    /// pending so an idle connection holds no heap memory.
    pub(crate) fn keep_tail_of_inbuf(&mut self, consumed: usize) {
        if consumed >= self.inbuf.len() {
            self.inbuf = Vec::new();
        } else {
            self.inbuf.drain(..consumed);
        }
    }
}

#[cfg(test)]
mod tests;
