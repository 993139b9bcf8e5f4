//! `volley-gateway`: the binary. Thin: parse the configuration, start the gateway, drain on
//! SIGTERM/SIGINT.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tokio::signal::unix::{SignalKind, signal};
use volley_gateway::config::{Cli, Engine};
use volley_gateway::gateway::TokioGateway;
use volley_gateway::gateway::{Gateway, StartError};

/// `--version`: the crate version and the git revision it was built from (see build/revision.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("VOLLEY_REVISION"),
    ")"
);

fn main() -> ExitCode {
    let matches = Cli::command().version(VERSION).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let check_only = cli.check_config;
    let config = match cli.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("volley-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("volley-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volley-gateway: cannot start the control-plane runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shards = config.shards;
        let cluster = config.nats.is_some();
        let engine = config.engine;
        // Handlers first: a supervisor may send SIGTERM as soon as it sees the listening line
        // below, and without a handler that would kill the process instead of draining it.
        let shutdown = match shutdown_signals() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("volley-gateway: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let gateway = match Running::start(config).await {
            Ok(gateway) => gateway,
            Err(e) => {
                eprintln!("volley-gateway: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            client = %gateway.client_addr(),
            admin = %gateway.admin_addr(),
            shards,
            ?engine,
            mode = if cluster { "cluster" } else { "standalone" },
            "volley-gateway started"
        );
        // One machine-readable line on stdout: scripts and tests wait for it to learn the ports.
        println!(
            "volley-gateway listening client={} admin={}",
            gateway.client_addr(),
            gateway.admin_addr()
        );
        let _ = std::io::stdout().flush();
        shutdown.await;
        tracing::info!("shutdown requested; draining");
        gateway.drain().await;
        tracing::info!("drained; bye");
        ExitCode::SUCCESS
    })
}

/// The data plane chosen with `--engine`.
enum Running {
    Epoll(Gateway),
    Tokio(TokioGateway),
}

impl Running {
    async fn start(config: volley_gateway::config::Config) -> Result<Running, StartError> {
        Ok(match config.engine {
            Engine::Epoll => Running::Epoll(Gateway::start(config).await?),
            Engine::Tokio => Running::Tokio(TokioGateway::start(config).await?),
        })
    }

    fn client_addr(&self) -> std::net::SocketAddr {
        match self {
            Running::Epoll(g) => g.client_addr(),
            Running::Tokio(g) => g.client_addr(),
        }
    }

    fn admin_addr(&self) -> std::net::SocketAddr {
        match self {
            Running::Epoll(g) => g.admin_addr(),
            Running::Tokio(g) => g.admin_addr(),
        }
    }

    async fn drain(self) {
        match self {
            Running::Epoll(g) => g.drain().await,
            Running::Tokio(g) => g.drain().await,
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the returned future completes on either.
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
