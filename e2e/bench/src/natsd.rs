//! The nats-server of a cluster run, started by the tool on free loopback ports (clients and
//! monitoring), pinned like the gateways, and killed with the run.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::time::Instant;

use crate::BenchError;
use crate::server;

/// Longest wait for a started nats-server to listen (a loaded machine starts it slowly; this only
/// bounds a hang).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts tried on fresh ports when the server exits at once (its port was taken meanwhile).
const START_ATTEMPTS: u32 = 5;

/// A free loopback port. Another process (or an outgoing connection: the same range serves both)
/// can take it before the server binds it; the server then exits at once, and
/// [`NatsServer::start_with`] tries again on fresh ports. In the end-to-end tests, which run in
/// parallel and open hundreds of client connections, that race is real.
pub fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running nats-server.
#[derive(Debug)]
pub struct NatsServer {
    /// The server's own pid: taskset and the PyPI package's launcher both exec it.
    pub pid: u32,
    pub port: u16,
    /// The HTTP monitoring address (`/connz`).
    pub monitor: SocketAddr,
    child: Child,
}

impl NatsServer {
    /// Starts `program` (`nats-server` from PATH by default) on 127.0.0.1 and waits until both
    /// its client and monitoring ports accept connections.
    pub async fn start(program: &Path, cpu: Option<&str>) -> Result<NatsServer, BenchError> {
        Self::start_with(program, cpu, &[]).await
    }

    /// [`NatsServer::start`] with extra server arguments (e.g. `-js --store_dir DIR`).
    pub async fn start_with(
        program: &Path,
        cpu: Option<&str>,
        extra: &[String],
    ) -> Result<NatsServer, BenchError> {
        let mut attempt = 1;
        loop {
            match Self::start_once(program, cpu, extra).await {
                Err(BenchError::Start(what, why))
                    if why.starts_with("exited") && attempt < START_ATTEMPTS =>
                {
                    eprintln!("volley-bench: {what} {why}; trying other ports");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One start on freshly picked ports.
    async fn start_once(
        program: &Path,
        cpu: Option<&str>,
        extra: &[String],
    ) -> Result<NatsServer, BenchError> {
        let port = free_port()?;
        let monitor = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let spawn_error = |source| BenchError::Spawn {
            program: PathBuf::from(program),
            source,
        };
        let mut child = server::command(program, cpu)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.port().to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Start("nats-server", "exited at once".into()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let client = TcpStream::connect(("127.0.0.1", port)).await.is_ok();
            if client && TcpStream::connect(monitor).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                return Err(BenchError::Start(
                    "nats-server",
                    format!("exited: {status}"),
                ));
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Start(
                    "nats-server",
                    format!("port {port} not listening after {START_TIMEOUT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(NatsServer {
            pid,
            port,
            monitor,
            child,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
