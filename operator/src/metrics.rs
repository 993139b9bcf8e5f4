//! Operator metrics (Prometheus text format) and the small HTTP server for `/metrics`,
//! `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of reconcile outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, `error` or `invalid_spec`.
    pub result: &'static str,
}

/// Label set of reconcile failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `invalid_spec`, or the failed step: `not_stored`, `observe`, `apply` or `status`.
    pub reason: &'static str,
}

/// Label set of control requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// `shed`, `drain` or `accepting`.
    pub op: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Label set of decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// The Event reason: `ScalingUp`, `ScalingDown`, `Draining`, `Shedding`, ...
    pub reason: &'static str,
}

/// All operator metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Reconciles by outcome.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconciles that did not converge, by reason (an invalid spec counts: nothing was applied).
    pub failures: Family<ReasonLabel, Counter>,
    /// Reconcile duration in seconds.
    pub reconcile_seconds: Histogram,
    /// Control requests sent to gateways.
    pub control_requests: Family<OpLabel, Counter>,
    /// Connections asked to be shed for balancing.
    pub shed_connections: Counter,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Decisions taken (each also an Event), by reason.
    pub decisions: Family<DecisionLabel, Counter>,
    /// Pods deleted because they drained for longer than drainTimeout + margin.
    pub stuck_drains: Counter,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("volley_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let control_requests = Family::<OpLabel, Counter>::default();
        let shed_connections = Counter::default();
        let leader = Gauge::default();
        let decisions = Family::<DecisionLabel, Counter>::default();
        let stuck_drains = Counter::default();
        registry.register(
            "decisions",
            "Scaling and balancing decisions (each also an Event), by reason",
            decisions.clone(),
        );
        registry.register(
            "stuck_drains",
            "Pods deleted because they drained past drainTimeout plus a margin without going away",
            stuck_drains.clone(),
        );
        registry.register(
            "reconciles",
            "PushCluster reconciles by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "PushCluster reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_seconds.clone(),
        );
        registry.register(
            "control_requests",
            "Control requests sent to gateways",
            control_requests.clone(),
        );
        registry.register(
            "shed_connections",
            "Connections gateways were asked to shed for balancing",
            shed_connections.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Self {
            reconciles,
            failures,
            reconcile_seconds,
            control_requests,
            shed_connections,
            leader,
            decisions,
            stuck_drains,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Shared state of the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Set once the operator is set up (client built, watches started or standing by).
    pub ready: Arc<AtomicBool>,
    /// Metrics to expose.
    pub metrics: Metrics,
}

/// The router: `/metrics`, `/healthz` (process alive), `/readyz` (set up; a standby replica
/// waiting for the lease is ready too, so rollouts of the operator are not blocked).
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves [`router`] on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, health: Health) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(health)).await
}

#[cfg(test)]
mod tests;
