//! Starting and stopping a whole gateway: binds the shard listeners (SO_REUSEPORT) and the admin
//! server, spawns the shard threads, and drains them on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Poll, Token};
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin::{self, AdminState, Publisher};
use crate::auth::{AuthConfigError, Verifier};
use crate::capacity::Capacity;
use crate::config::Config;
use crate::control::ClusterNode;
use crate::engine_tokio::{TokioConfig, TokioEngine};
use crate::handshake::HandshakeConfig;
use crate::history::ShardHistory;
use crate::history::store::{HistoryState, Store};
use crate::hub::{self, Hub};
use crate::metrics::Metrics;
use crate::nats::{self, ClusterError, Router};
use crate::session::Limits;
use crate::shard::{Shard, ShardConfig};

/// Kernel accept queue per listener: a connect storm queues here rather than being refused.
const BACKLOG: i32 = 4096;
/// After the drain window, how long to wait for shards to finish closing.
const DRAIN_JOIN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for clients on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "client port {addr} is already in use (another gateway on this port?); refusing to share \
         it, which would split the clients between the two"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen for admin HTTP on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("cannot set up shard {shard}: {source}")]
    Shard {
        shard: usize,
        source: std::io::Error,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    client_addr: SocketAddr,
    admin_addr: SocketAddr,
    hub: Arc<Hub>,
    capacity: Arc<Capacity>,
    shards: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
    admin_task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Binds every socket and starts the shards and the admin server (on the current tokio
    /// runtime). Port 0 is resolved once, so all shards share the same client port.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for reason in crate::handshake::RejectReason::ALL {
            // Pre-register so every label shows up as 0 before it first happens.
            let _ = metrics
                .handshakes
                .get_or_create(&crate::metrics::ResultLabel {
                    result: reason.label(),
                });
        }
        let capacity = Arc::new(
            Capacity::new(metrics.clone(), config.max_connections, config.shards)
                .with_ip_limit(config.max_connections_per_ip),
        );
        // History: its state is shared by the sessions (epoch for replies), the router (live
        // consumers, replays) and the admin server (publish with ack, /healthz).
        let history = config.history.clone().map(|h| ShardHistory {
            config: Arc::new(h),
            state: Arc::new(HistoryState::default()),
        });
        // Cluster mode: bumped by the NATS client's events and the router when the router's
        // confirmations stop holding; read by the shards before answering `subscribed` at once.
        let confirm_epoch = Arc::new(crate::shard::interests::ConfirmEpoch::default());
        let shard_config = ShardConfig {
            handshake: handshake_config(&config),
            handshake_timeout: config.handshake_timeout,
            flush_interval: config.flush_interval,
            max_message_bytes: config.max_message_bytes,
            limits: session_limits(&config, history.clone())?,
            confirm_epoch: confirm_epoch.clone(),
        };

        // Cluster mode: shards report which patterns they want; the router holds NATS
        // subscriptions for exactly those.
        let (interest_tx, interest_rx) = match config.nats {
            Some(_) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let mut client_addr = config.listen;
        probe_port_is_free(client_addr)?;
        let mut shards = Vec::with_capacity(config.shards);
        let mut senders = Vec::with_capacity(config.shards);
        for id in 0..config.shards {
            let listener = bind_reuseport(client_addr).map_err(|source| StartError::Listen {
                addr: client_addr,
                source,
            })?;
            client_addr = listener
                .local_addr()
                .map_err(|source| StartError::Shard { shard: id, source })?;
            let poll = Poll::new().map_err(|source| StartError::Shard { shard: id, source })?;
            let waker = mio::Waker::new(poll.registry(), Token(1))
                .map_err(|source| StartError::Shard { shard: id, source })?;
            let (sender, inbox) = hub::inbox(Arc::new(waker));
            senders.push(sender);
            let shard = Shard::new(
                id,
                poll,
                listener,
                inbox,
                capacity.clone(),
                shard_config.clone(),
                interest_tx.clone(),
            )
            .map_err(|source| StartError::Shard { shard: id, source })?;
            shards.push(shard);
        }
        // Only the shards hold interest senders, so the router ends when they do.
        drop(interest_tx);
        let hub = Arc::new(Hub::new(senders, metrics.clone()));
        let publisher = match (&config.nats, interest_rx) {
            (Some(nats), Some(interest_rx)) => {
                let (client, state) =
                    nats::connect(nats, metrics.clone(), confirm_epoch.clone()).await?;
                let acks = nats::Acks::start(&client)
                    .await
                    .map_err(|e| ClusterError::Connect {
                        urls: crate::secret::redact_urls(&nats.urls),
                        message: format!(
                            "cannot subscribe to the publish confirmation subject: {e}"
                        ),
                    })?;
                tokio::spawn(nats::check_publish_confirmation(
                    client.clone(),
                    state.clone(),
                    acks.clone(),
                ));
                tokio::spawn(nats::warn_if_over_max_payload(
                    client.clone(),
                    state.clone(),
                    config.max_publish_bytes,
                ));
                let mut router = Router::new(
                    client.clone(),
                    state.clone(),
                    nats.subject_prefix.clone(),
                    nats.linger,
                    hub.clone(),
                    metrics.clone(),
                    config.max_pending_bytes,
                )
                .with_acks(acks.clone())
                .with_confirm_epoch(confirm_epoch.clone());
                let store = history.map(|h| {
                    Store::new(
                        client.clone(),
                        h.config,
                        Arc::from(nats.subject_prefix.as_str()),
                        h.state,
                        metrics.clone(),
                    )
                    // A connection resumes each of its patterns once; a few times over is
                    // still legitimate, a loop is not.
                    .with_replay_budget(2 * config.max_subscriptions_per_connection)
                });
                if let Some(store) = &store {
                    let (generation_tx, generation_rx) = tokio::sync::watch::channel(0u64);
                    tokio::spawn(store.clone().maintain(generation_tx));
                    router = router.with_history(store.clone(), generation_rx);
                }
                tokio::spawn(router.run(interest_rx));
                let node = ClusterNode {
                    client: client.clone(),
                    identity: config.identity.clone(),
                    hub: hub.clone(),
                    capacity: capacity.clone(),
                    started_at: std::time::SystemTime::now(),
                };
                tokio::spawn(node.clone().publish_stats(config.stats_interval));
                tokio::spawn(node.serve_control());
                Publisher::Nats {
                    client,
                    state,
                    acks,
                    prefix: Arc::from(nats.subject_prefix.as_str()),
                    history: store.map(Box::new),
                }
            }
            _ => Publisher::Local(hub.clone()),
        };

        let (admin_addr, admin_task) =
            serve_admin(&config, publisher, capacity.clone(), registry).await?;

        let threads = shards
            .into_iter()
            .enumerate()
            .map(|(id, shard)| {
                std::thread::Builder::new()
                    .name(format!("volley-shard-{id}"))
                    .spawn(move || shard.run())
                    .map_err(|source| StartError::Shard { shard: id, source })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Gateway {
            client_addr,
            admin_addr,
            hub,
            capacity,
            shards: threads,
            drain_timeout: config.drain_timeout,
            admin_task,
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Graceful shutdown: readiness off, stop accepting, close every connection with 1001 spread
    /// over the drain window, then wait for the shards to finish.
    pub async fn drain(self) {
        self.capacity.start_draining();
        self.hub.drain(self.drain_timeout);
        let deadline = self.drain_timeout + DRAIN_JOIN_GRACE;
        let shards = self.shards;
        let joined = tokio::task::spawn_blocking(move || {
            for shard in shards {
                let _ = shard.join();
            }
        });
        if tokio::time::timeout(deadline, joined).await.is_err() {
            tracing::warn!("shards did not finish draining in time");
        }
        self.admin_task.abort();
    }
}

/// Refuses to start on a client port another process already listens on. The shards bind with
/// SO_REUSEPORT, which would otherwise let a second gateway (same user) join the first one's
/// port and silently take half of its new clients. The probe binds *without* SO_REUSEPORT, which
/// Linux refuses with EADDRINUSE while another socket is bound there: SO_REUSEPORT "must be set
/// on each socket (including the first socket) prior to calling bind(2)" (socket(7),
/// https://man7.org/linux/man-pages/man7/socket.7.html). SO_REUSEADDR stays on
/// so connections in TIME_WAIT from a previous run do not block a restart. Port 0 needs no probe.
fn probe_port_is_free(addr: SocketAddr) -> Result<(), StartError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = || -> std::io::Result<()> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())
    };
    probe().map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            StartError::PortInUse { addr }
        } else {
            StartError::Listen { addr, source }
        }
    })
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Each shard has its own listener on the same port; the kernel spreads accepts across them.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A running tokio-engine gateway (`--engine tokio`): the baseline engine, standalone only (no
/// NATS), with the same admin API.
#[derive(Debug)]
pub struct TokioGateway {
    admin_addr: SocketAddr,
    capacity: Arc<Capacity>,
    engine: TokioEngine,
    drain_timeout: Duration,
    admin_task: tokio::task::JoinHandle<()>,
}

impl TokioGateway {
    /// Binds the client and admin listeners and starts accepting on the current runtime.
    pub async fn start(config: Config) -> Result<TokioGateway, StartError> {
        // Before binding anything: a bad key file is a configuration error, not a half start.
        let engine_config = TokioConfig {
            handshake: handshake_config(&config),
            handshake_timeout: config.handshake_timeout,
            max_message_bytes: config.max_message_bytes,
            // The baseline is standalone only: no history.
            limits: session_limits(&config, None)?,
        };
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let capacity = Arc::new(Capacity::new(metrics, config.max_connections, 1));
        let (engine, publisher) =
            TokioEngine::start(config.listen, engine_config, capacity.clone()).map_err(
                |source| StartError::Listen {
                    addr: config.listen,
                    source,
                },
            )?;
        let (admin_addr, admin_task) = serve_admin(
            &config,
            Publisher::Local(publisher),
            capacity.clone(),
            registry,
        )
        .await?;
        Ok(TokioGateway {
            admin_addr,
            capacity,
            engine,
            drain_timeout: config.drain_timeout,
            admin_task,
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.engine.client_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Readiness off, stop accepting, close every connection with 1001, and wait (bounded by
    /// the drain timeout) for the connections to finish.
    pub async fn drain(self) {
        self.capacity.start_draining();
        self.engine.drain();
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while self.capacity.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.admin_task.abort();
    }
}

/// The upgrade rules both engines apply, from the config.
fn handshake_config(config: &Config) -> HandshakeConfig {
    HandshakeConfig {
        path: "/ws".to_owned(),
        max_header_bytes: config.max_header_bytes,
        allowed_origins: config.allowed_origins.clone(),
    }
}

/// What every session is held to on both engines, from the config (reads the JWT key file).
fn session_limits(config: &Config, history: Option<ShardHistory>) -> Result<Limits, StartError> {
    Ok(Limits {
        max_pending_bytes: config.max_pending_bytes,
        max_subscriptions: config.max_subscriptions_per_connection,
        max_client_messages_per_second: config.max_client_messages_per_second,
        ping_interval: config.ping_interval,
        verifier: match &config.jwt {
            Some(jwt) => Some(Arc::new(Verifier::from_config(jwt)?)),
            None => None,
        },
        history,
        // Cluster mode: a new pattern is answered once the gateway's NATS subscription is.
        confirm: config.nats.is_some().then_some(nats::CONFIRM_TIMEOUT),
    })
}

/// Starts the admin API (both engines): publishing, health, readiness and metrics.
pub(crate) async fn serve_admin(
    config: &Config,
    publisher: Publisher,
    capacity: Arc<Capacity>,
    registry: Registry,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    admin::serve(
        config.admin_addr,
        AdminState {
            publisher,
            capacity,
            registry: Arc::new(registry),
            api_key: config.api_key.as_ref().map(|k| Arc::from(k.expose())),
            max_frame_bytes: config.max_pending_bytes,
            max_publish_bytes: config.max_publish_bytes,
        },
        config.max_publish_bytes,
    )
    .await
    .map_err(|source| StartError::Admin {
        addr: config.admin_addr,
        source,
    })
}
