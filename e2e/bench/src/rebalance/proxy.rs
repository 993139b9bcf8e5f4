//! A small round-robin TCP proxy that honours readiness the way a Kubernetes Service does: a
//! backend receives new connections only while its `/readyz` answers 200 (probed every
//! `probe_every`, like the kubelet's readiness probe feeding the endpoints). Established
//! connections are never moved: only new ones are steered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::BenchError;

/// Deadline for connecting to a backend and for one readiness probe.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Most proxied connections at once (each is two sockets).
pub const MAX_CONNECTIONS: usize = 8_000;

/// One endpoint: a gateway's client and admin addresses.
#[derive(Debug)]
pub struct Backend {
    /// Name (the gateway's pod name).
    pub name: String,
    /// Client (WebSocket) address.
    pub client: SocketAddr,
    /// Admin address (`/readyz`).
    pub admin: SocketAddr,
    ready: AtomicBool,
    /// Connections proxied to it over its life.
    pub accepted: AtomicUsize,
}

/// Picks the next ready backend after `cursor`, round-robin; `None` when none is ready.
pub fn pick(ready: &[bool], cursor: usize) -> Option<usize> {
    let n = ready.len();
    (0..n).map(|i| (cursor + i) % n).find(|&i| ready[i])
}

/// The running proxy; stops on drop.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<Arc<Backend>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn probe(admin: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(DIAL_TIMEOUT, crate::http::get(admin, "/readyz")).await,
        Ok(Ok(_))
    )
}

impl Proxy {
    /// Listens on a free loopback port with no backends yet.
    pub async fn start(probe_every: Duration) -> Result<Proxy, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends: Arc<Mutex<Vec<Arc<Backend>>>> = Arc::default();
        let list = backends.clone();
        let prober = tokio::spawn(async move {
            loop {
                let current: Vec<Arc<Backend>> =
                    list.lock().unwrap_or_else(PoisonError::into_inner).clone();
                for b in current {
                    let ok = probe(b.admin).await;
                    b.ready.store(ok, Ordering::Release);
                }
                tokio::time::sleep(probe_every).await;
            }
        });
        let list = backends.clone();
        let acceptor = tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            let mut cursor = 0usize;
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    continue; // over the limit: dropping the socket refuses the client
                };
                let current: Vec<Arc<Backend>> =
                    list.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let ready: Vec<bool> = current
                    .iter()
                    .map(|b| b.ready.load(Ordering::Acquire))
                    .collect();
                // No ready endpoint: the connection is refused (closed), as by a Service.
                let Some(i) = pick(&ready, cursor) else {
                    continue;
                };
                cursor = i + 1;
                let backend = current[i].clone();
                backend.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _permit = permit;
                    let Ok(Ok(mut outbound)) =
                        tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(backend.client))
                            .await
                    else {
                        return;
                    };
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Proxy {
            addr,
            backends,
            tasks: vec![prober, acceptor],
        })
    }

    /// How many endpoints passed their last readiness probe.
    pub fn ready_count(&self) -> usize {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|b| b.ready.load(Ordering::Acquire))
            .count()
    }

    /// Adds an endpoint (a new pod); it gets connections once its first probe passes.
    pub async fn add(&self, name: &str, client: SocketAddr, admin: SocketAddr) -> Arc<Backend> {
        let ready = probe(admin).await;
        let b = Arc::new(Backend {
            name: name.to_string(),
            client,
            admin,
            ready: AtomicBool::new(ready),
            accepted: AtomicUsize::new(0),
        });
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(b.clone());
        b
    }
}
