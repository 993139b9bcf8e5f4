//! `volley-operator`: runs the PushCluster controller behind leader election, with a metrics and
//! health server.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::FutureExt as _;
use tokio::sync::watch;
use volley_operator::build::{BuildOptions, default_gateway_image};
use volley_operator::controller::{self, Context};
use volley_operator::metrics::{self, Health, Metrics};
use volley_operator::{leader, telemetry};

/// `--version`: the crate version and the git revision it was built from (see build/revision.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("VOLLEY_REVISION"),
    ")"
);

/// How long shutdown waits for the lease release (a GET, a PATCH and a GET; kube-lease-manager
/// manager.rs `release`) before giving up and leaving the lease to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Command line; every flag can also be given as `VOLLEY_OPERATOR_<UPPER_SNAKE>`.
#[derive(Debug, Parser)]
#[command(version = VERSION, about)]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "VOLLEY_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    metrics_addr: SocketAddr,
    /// Reconcile PushClusters in this namespace only; unset watches all namespaces.
    #[arg(long, env = "VOLLEY_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Gateway image for PushClusters that set no `spec.image`.
    #[arg(long, env = "VOLLEY_OPERATOR_GATEWAY_IMAGE", default_value_t = default_gateway_image())]
    gateway_image: String,
    /// imagePullPolicy of gateway containers; unset leaves the Kubernetes default.
    #[arg(
        long,
        env = "VOLLEY_OPERATOR_GATEWAY_IMAGE_PULL_POLICY",
        value_parser = ["Always", "IfNotPresent", "Never"]
    )]
    gateway_image_pull_policy: Option<String>,
    /// Secrets (comma-separated names) gateway pods pull their image with; each must exist in
    /// the PushCluster's namespace.
    #[arg(
        long,
        env = "VOLLEY_OPERATOR_GATEWAY_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    gateway_image_pull_secrets: Vec<String>,
    /// Compete for a Lease and reconcile only while holding it.
    #[arg(long, env = "VOLLEY_OPERATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Lease name.
    #[arg(
        long,
        env = "VOLLEY_OPERATOR_LEASE_NAME",
        default_value = "volley-operator"
    )]
    lease_name: String,
    /// Lease namespace (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (defaults to the pod name).
    #[arg(long, env = "POD_NAME", default_value = "volley-operator")]
    identity: String,
    /// OTLP gRPC endpoint for traces (e.g. http://otel-collector:4317); unset = no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    log: String,
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(&args.log, args.otlp_endpoint.as_deref())?;
    // No read timeout here (kube-client 5's `Config::read_timeout` is off by default): the same
    // client carries the controller's watches, which may stay silent for minutes (kube-runtime
    // guards them with its own idle timeout). Lease requests get a timeout of their own
    // (leader::LeaseConfig::request_timeout), and losing leadership aborts reconciles in flight.
    let client = kube::Client::try_default()
        .await
        .context("building the Kubernetes client (in-cluster or KUBECONFIG)")?;
    // Fail fast and clearly when the CRD is missing, instead of a watch that retries forever.
    if let Err(e) = controller::check_crd(client.clone(), args.namespace.as_deref()).await {
        tracing::error!(error = %e, "cannot start");
        eprintln!("volley-operator: {e}");
        std::process::exit(1);
    }
    match &args.namespace {
        Some(ns) => tracing::info!(namespace = %ns, "watching one namespace"),
        None => tracing::info!("watching all namespaces"),
    }
    let metrics = Metrics::default();
    let health = Health {
        ready: Default::default(),
        metrics: metrics.clone(),
    };
    let server = tokio::spawn(metrics::serve(args.metrics_addr, health.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });

    let (leading, lease_task) = if args.leader_elect {
        let (rx, task) = leader::start(
            client.clone(),
            leader::LeaseConfig::standard(
                args.lease_name.clone(),
                args.lease_namespace.clone(),
                args.identity.clone(),
            ),
        )
        .await
        .context("starting leader election")?;
        (Some(rx), Some(task))
    } else {
        (None, None)
    };
    // A standby replica is healthy and ready: it only waits for the lease.
    health.ready.store(true, Ordering::Relaxed);

    // Owns every lease receiver: they are all dropped when it ends, which makes the lease
    // manager release the lease.
    let result = lead(args, client, leading, shutdown_rx, metrics).await;
    if let Some(task) = lease_task {
        // Wait for the release: returning from main drops the runtime, which would cancel it
        // mid-request and leave the standby waiting for the lease to expire.
        match leader::stop(task, RELEASE_TIMEOUT).await {
            Ok(()) => tracing::info!("lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "lease not released; a standby takes over when it expires")
            }
        }
    }
    server.abort();
    tracing::info!("stopped");
    result
}

/// Waits for leadership (when elected), then runs the controller until leadership is lost or a
/// shutdown signal arrives.
async fn lead(
    args: Args,
    client: kube::Client,
    mut leading: Option<watch::Receiver<bool>>,
    shutdown_rx: watch::Receiver<bool>,
    metrics: Metrics,
) -> anyhow::Result<()> {
    if let Some(rx) = leading.as_mut() {
        tracing::info!(identity = %args.identity, "waiting for leadership");
        let mut stop = shutdown_rx.clone();
        tokio::select! {
            won = leader::wait_for(rx, true) => if !won { anyhow::bail!("lease manager stopped") },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        tracing::info!("leading");
    }
    metrics.leader.set(1);

    let ctx = Context::new(
        client,
        BuildOptions {
            default_image: args.gateway_image,
            pull_policy: args.gateway_image_pull_policy,
            pull_secrets: args.gateway_image_pull_secrets,
        },
        metrics.clone(),
    );
    // Messages prune the stats store and calls prune the NATS pool; this covers both once
    // nobody publishes or asks anymore (every cluster deleted).
    let (stats, pool) = (ctx.stats.clone(), ctx.nats.clone());
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            stats.prune(std::time::SystemTime::now());
            pool.sweep();
        }
    });
    // A shutdown signal lets in-flight reconciles finish (this replica still holds the lease);
    // lost leadership drops the controller at once, since a standby may already be leading.
    let mut stop = shutdown_rx;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let work = controller::run(ctx, args.namespace, stopped);
    match leading.as_mut() {
        Some(rx) => {
            if leader::until_lost(work, leader::wait_for(rx, false).map(drop))
                .await
                .is_none()
            {
                tracing::warn!("lost leadership; stopped reconciling");
            }
        }
        None => work.await,
    }
    metrics.leader.set(0);
    upkeep.abort();
    Ok(())
}
