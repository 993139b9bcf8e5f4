//! The baseline engine (`--engine tokio`): the design a typical Rust user writes, kept to be
//! measured against the epoll shards.
//!
//! tokio-tungstenite with its default buffers, one task per connection, and one
//! `tokio::sync::broadcast` of every published message that each task filters against its own
//! subscriptions and writes as it comes (send + flush per message). Each task drives the same
//! sans-IO [`crate::session::Session`] as the shards (ops, subscribe checks, refresh, rate limit,
//! liveness, the close) and reuses the same pure modules (handshake parsing, access rules and
//! JWT auth, envelope, the encode-once frames), so a benchmark of the two compares I/O designs
//! only.
//!
//! Standalone only (no NATS), and without the per-IP connection limit of the shards. The client
//! message rate limit, `maxPendingBytes` (as tungstenite's write-buffer cap) and the slow-consumer
//! close apply as on the shards; a write that does not complete within the ping interval counts
//! as a slow consumer too.

mod session;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{broadcast, watch};

use crate::capacity::Capacity;
use crate::handshake::HandshakeConfig;
use crate::hub::{Publish, PublishError};
use crate::message::Message;
use crate::session::Limits;

/// Messages the broadcast channel keeps for a lagging task; a task that falls further behind
/// has lost messages and is closed as a slow consumer (1008), like the shards do past their
/// pending-bytes bound. Same depth as a shard inbox.
const BROADCAST_CAPACITY: usize = 16 * 1024;
/// Kernel accept queue, as for the shards, so connect storms compare fairly.
const BACKLOG: i32 = 4096;
/// Pause after an accept error (out of file descriptors) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What every connection task shares.
#[derive(Debug)]
struct Context {
    capacity: Arc<Capacity>,
    handshake: HandshakeConfig,
    handshake_timeout: Duration,
    max_message_bytes: usize,
    /// What every session is held to, as on the shards.
    limits: Limits,
    messages: broadcast::Sender<Arc<Message>>,
    drain: watch::Receiver<bool>,
}

/// The publishing side: one broadcast send per message; tasks do the filtering.
#[derive(Debug)]
pub(crate) struct Broadcaster {
    messages: broadcast::Sender<Arc<Message>>,
    capacity: Arc<Capacity>,
}

impl Publish for Broadcaster {
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        if self.capacity.is_draining() {
            return Err(PublishError::Closed);
        }
        // An error only means no connection is listening right now, which is not a failure.
        let _ = self.messages.send(Message::new(topic, payload));
        self.capacity.metrics.messages_published.inc();
        Ok(())
    }
}

/// What the tokio engine needs to know, derived once from the gateway config.
#[derive(Debug, Clone)]
pub(crate) struct TokioConfig {
    pub(crate) handshake: HandshakeConfig,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    /// What every session is held to, as on the shards.
    pub(crate) limits: Limits,
}

/// The running engine: its listener's accept task and the signal that drains its connections.
/// The admin server and the configuration are the caller's (`gateway.rs`): the data plane does
/// not reach into the control plane.
#[derive(Debug)]
pub(crate) struct TokioEngine {
    client_addr: SocketAddr,
    drain: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl TokioEngine {
    /// Binds `listen` and starts accepting on the current runtime; the [`Broadcaster`] is how
    /// messages come in.
    pub(crate) fn start(
        listen: SocketAddr,
        config: TokioConfig,
        capacity: Arc<Capacity>,
    ) -> std::io::Result<(TokioEngine, Arc<Broadcaster>)> {
        let listener = bind(listen)?;
        let client_addr = listener.local_addr()?;
        let (messages, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (drain_tx, drain_rx) = watch::channel(false);
        let publisher = Arc::new(Broadcaster {
            messages: messages.clone(),
            capacity: capacity.clone(),
        });
        let context = Arc::new(Context {
            capacity,
            handshake: config.handshake,
            handshake_timeout: config.handshake_timeout,
            max_message_bytes: config.max_message_bytes,
            limits: config.limits,
            messages,
            drain: drain_rx,
        });
        let accept = tokio::spawn(accept_loop(listener, context));
        let engine = TokioEngine {
            client_addr,
            drain: drain_tx,
            accept,
        };
        Ok((engine, publisher))
    }

    pub(crate) fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Stops accepting and has every connection close with 1001.
    pub(crate) fn drain(&self) {
        self.accept.abort();
        let _ = self.drain.send(true);
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, context: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(session::run(stream, context.clone()));
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on a full descriptor table.
                tracing::warn!(error = %e, "accept failed; pausing");
                context.capacity.metrics.accept_pauses.inc();
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    tokio::net::TcpListener::from_std(socket.into())
}
