//! `volley-gateway`: the binary. Thin: parse the configuration, start the gateway, drain on
//! SIGTERM/SIGINT.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use volley_gateway::config::Cli;
use volley_gateway::gateway::Gateway;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        let gateway = match Gateway::start(config).await {
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
        if let Err(e) = wait_for_signal().await {
            eprintln!("volley-gateway: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!("shutdown requested; draining");
        gateway.drain().await;
        tracing::info!("drained; bye");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
