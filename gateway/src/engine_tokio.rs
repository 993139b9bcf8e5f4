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
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{broadcast, watch};

use crate::auth::Verifier;
use crate::config::Config;
use crate::gateway::StartError;
use crate::handshake::HandshakeConfig;
use crate::hub::{Publish, PublishError};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::session::Limits;
use crate::state::Shared;

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
    shared: Arc<Shared>,
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
pub struct Broadcaster {
    messages: broadcast::Sender<Arc<Message>>,
    shared: Arc<Shared>,
}

impl Publish for Broadcaster {
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        if self.shared.is_draining() {
            return Err(PublishError::Closed);
        }
        // An error only means no connection is listening right now, which is not a failure.
        let _ = self.messages.send(Message::new(topic, payload));
        self.shared.metrics.messages_published.inc();
        Ok(())
    }
}

/// A running tokio-engine gateway.
#[derive(Debug)]
pub struct TokioGateway {
    client_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    drain: watch::Sender<bool>,
    drain_timeout: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TokioGateway {
    /// Binds the client and admin listeners and starts accepting on the current runtime.
    pub async fn start(config: Config) -> Result<TokioGateway, StartError> {
        // Before binding anything: a bad key file is a configuration error, not a half start.
        let verifier = match &config.jwt {
            Some(jwt) => Some(Arc::new(Verifier::from_config(jwt)?)),
            None => None,
        };
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let shared = Arc::new(Shared::new(metrics, config.max_connections, 1));
        let (messages, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (drain_tx, drain_rx) = watch::channel(false);

        let listener = bind(config.listen).map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let client_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;

        let publisher = Arc::new(Broadcaster {
            messages: messages.clone(),
            shared: shared.clone(),
        });
        let (admin_addr, admin_task) = crate::gateway::serve_admin(
            &config,
            crate::admin::Publisher::Local(publisher),
            shared.clone(),
            registry,
        )
        .await?;

        let context = Arc::new(Context {
            shared: shared.clone(),
            handshake: HandshakeConfig {
                path: "/ws".to_owned(),
                max_header_bytes: config.max_header_bytes,
                allowed_origins: config.allowed_origins.clone(),
            },
            handshake_timeout: config.handshake_timeout,
            max_message_bytes: config.max_message_bytes,
            limits: Limits {
                max_pending_bytes: config.max_pending_bytes,
                max_subscriptions: config.max_subscriptions_per_connection,
                max_client_messages_per_second: config.max_client_messages_per_second,
                ping_interval: config.ping_interval,
                verifier,
                // The baseline is standalone only: no history.
                history: None,
            },
            messages,
            drain: drain_rx,
        });
        let accept_task = tokio::spawn(accept_loop(listener, context));
        Ok(TokioGateway {
            client_addr,
            admin_addr,
            shared,
            drain: drain_tx,
            drain_timeout: config.drain_timeout,
            tasks: vec![accept_task, admin_task],
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Readiness off, stop accepting, close every connection with 1001, and wait (bounded by
    /// the drain timeout) for the tasks to finish.
    pub async fn drain(self) {
        self.shared.start_draining();
        let _ = self.drain.send(true);
        if let Some(accept) = self.tasks.first() {
            accept.abort();
        }
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while self.shared.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in self.tasks {
            task.abort();
        }
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
                context.shared.metrics.accept_pauses.inc();
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
