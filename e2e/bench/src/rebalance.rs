//! The `rebalance` scenario: how many clients a scale-up moves. Clients connect through a
//! round-robin proxy that honours `/readyz` (like a Service) while `from` gateways are
//! endpoints; then `to - from` more gateways join (the scale-up) and the operator's own balancer
//! (`volley_operator::balancer`, over real NATS) evens the pods out. Prints the moves (server
//! closes, each followed by a reconnect), the minimum (clients that must change pods for an even
//! spread), their ratio and the time from the scale-up until the pods are within tolerance.

pub mod churn;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use volley_crds::BalanceSpec;
use volley_operator::balancer::{self, Balancer, Timing};
use volley_operator::scaling::{self, PodView};
use volley_operator::stats::{self, NatsPool, StatsStore};

use crate::BenchError;

/// Namespace and cluster the gateways report as.
pub const NAMESPACE: &str = "bench";
/// PushCluster name the gateways report as.
pub const CLUSTER: &str = "rebalance";

/// One gateway as an endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its pod name (`POD_NAME`).
    pub name: String,
    /// Client address.
    pub client: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Clients.
    pub clients: usize,
    /// Endpoints before the scale-up (the first `from` of the gateways).
    pub from: usize,
    /// Balance settings (tolerance, budget).
    pub balance: BalanceSpec,
    /// Balancer rounds.
    pub timing: Timing,
    /// Readiness probe period of the proxy.
    pub probe_every: Duration,
    /// Stats older than this are stale (a few of the gateways' stats intervals).
    pub stats_max_age: Duration,
    /// After balance is reached, keep watching this long for late moves.
    pub quiet: Duration,
    /// Give up after this long (connecting plus balancing).
    pub deadline: Duration,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Clients.
    pub clients: usize,
    /// Pods before and after the scale-up.
    pub from: usize,
    /// Pods after.
    pub to: usize,
    /// Connections per pod at the scale-up.
    pub before: Vec<u64>,
    /// Connections per pod at the end.
    pub after: Vec<u64>,
    /// Server closes after the scale-up (each one a reconnect).
    pub moves: u64,
    /// Of those, with 1012.
    pub rebalance_closes: u64,
    /// Fewest moves for an even spread.
    pub minimum: u64,
    /// moves / minimum.
    pub ratio: f64,
    /// From the scale-up until within tolerance with every client connected; `None` if never.
    pub time_to_balance_ms: Option<u64>,
    /// Clients connected at the end.
    pub connected_at_end: usize,
    /// Connection attempts that failed along the way.
    pub failed_attempts: u64,
    /// Connections asked to shed.
    pub shed_requested: u64,
}

/// Fewest clients that must change pods so `before` (one entry per pod, after the scale-up)
/// ends evenly spread: pods get `total / n` each, the remainder going to the fullest pods.
pub fn minimum_moves(before: &[u64]) -> u64 {
    let n = before.len() as u64;
    if n == 0 {
        return 0;
    }
    let total: u64 = before.iter().sum();
    let (base, extra) = (total / n, total % n);
    let mut sorted = before.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let target = base + u64::from((i as u64) < extra);
            c.saturating_sub(target)
        })
        .sum()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn views(store: &StatsStore, names: &[String], max_age: Duration) -> Vec<PodView> {
    store
        .snapshot(NAMESPACE, CLUSTER, max_age, SystemTime::now())
        .iter()
        .filter(|s| names.contains(&s.stats.pod))
        .map(stats::pod_view)
        .collect()
}

fn counts(views: &[PodView], names: &[String]) -> Vec<u64> {
    names
        .iter()
        .map(|n| {
            views
                .iter()
                .find(|v| &v.name == n)
                .map_or(0, |v| v.connections)
        })
        .collect()
}

/// Runs the scenario against `gateways` (all started, in cluster mode on `nats_url`, reporting
/// as [`NAMESPACE`]/[`CLUSTER`]); the first `plan.from` are endpoints from the start.
pub async fn run(
    plan: &Plan,
    gateways: &[Endpoint],
    nats_url: &str,
) -> Result<Outcome, BenchError> {
    let started = Instant::now();
    let left = || plan.deadline.saturating_sub(started.elapsed());
    let store = StatsStore::default();
    let pool = NatsPool::new(store.clone());
    let client = pool
        .client(nats_url, None)
        .await
        .map_err(|e| BenchError::Nats(e.to_string()))?;
    let proxy = proxy::Proxy::start(plan.probe_every).await?;
    for g in &gateways[..plan.from] {
        proxy.add(&g.name, g.client, g.admin).await;
    }
    // Every first endpoint ready before the clients come: a gateway is ready only once it has
    // reached NATS, so clients started earlier all land on the first one ready and the "before"
    // split (which the minimum moves are computed from) depends on start-up timing.
    while proxy.ready_count() < plan.from {
        if left().is_zero() {
            return Err(BenchError::Protocol(format!(
                "only {} of {} gateways ready before the deadline",
                proxy.ready_count(),
                plan.from
            )));
        }
        tokio::time::sleep(plan.probe_every).await;
    }
    let counters = Arc::new(churn::Counters::default());
    let tasks = churn::spawn(
        plan.clients,
        proxy.addr,
        Duration::from_millis(50),
        &counters,
    );
    let names: Vec<String> = gateways.iter().map(|g| g.name.clone()).collect();
    let first: Vec<String> = names[..plan.from].to_vec();
    let tick = plan.probe_every.min(Duration::from_millis(250));

    // Everyone connected, and the stats agree.
    let clients = plan.clients as u64;
    loop {
        let v = views(&store, &first, plan.stats_max_age);
        let connected = counters.connected.load(Ordering::Acquire);
        if connected == plan.clients
            && v.len() == first.len()
            && counts(&v, &first).iter().sum::<u64>() == clients
        {
            break;
        }
        if left().is_zero() {
            counters.stop.store(true, Ordering::Release);
            return Err(BenchError::Protocol(format!(
                "only {connected} of {} clients connected before the deadline",
                plan.clients
            )));
        }
        tokio::time::sleep(tick).await;
    }

    // The scale-up: new pods become endpoints.
    let before = counts(&views(&store, &names, plan.stats_max_age), &names);
    let moves_at_start = counters.moves.load(Ordering::Acquire);
    let rebalance_at_start = counters.rebalance_closes.load(Ordering::Acquire);
    let scaled = Instant::now();
    for g in &gateways[plan.from..] {
        proxy.add(&g.name, g.client, g.admin).await;
    }

    let mut b = Balancer::new(plan.timing);
    let mut balanced_at: Option<Duration> = None;
    let mut shed_requested = 0;
    loop {
        let v = views(&store, &names, plan.stats_max_age);
        let settled = v.len() == names.len();
        let cmds = b.step(&v, settled, &plan.balance, now_ms());
        for (cmd, reply) in balancer::execute(&mut b, &client, NAMESPACE, CLUSTER, cmds).await {
            if let (balancer::Command::Shed { count, .. }, Some(_)) = (&cmd, reply) {
                shed_requested += count;
            }
        }
        let all_in = counters.connected.load(Ordering::Acquire) == plan.clients
            && counts(&v, &names).iter().sum::<u64>() == clients;
        let even =
            settled && all_in && !b.busy() && scaling::is_balanced(&v, plan.balance.tolerance);
        match (even, balanced_at) {
            (true, None) => balanced_at = Some(scaled.elapsed()),
            (false, Some(_)) if b.busy() => balanced_at = None,
            _ => {}
        }
        if let Some(at) = balanced_at
            && scaled.elapsed() >= at + plan.quiet
        {
            break;
        }
        if left().is_zero() {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    let after = counts(&views(&store, &names, plan.stats_max_age), &names);
    let outcome_moves = counters.moves.load(Ordering::Acquire) - moves_at_start;
    let connected_at_end = counters.connected.load(Ordering::Acquire);
    counters.stop.store(true, Ordering::Release);
    for t in tasks {
        // Each client notices the stop within 200ms; a stuck one is abandoned at the deadline.
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let minimum = minimum_moves(&before);
    #[allow(clippy::cast_precision_loss)]
    let ratio = if minimum == 0 {
        0.0
    } else {
        outcome_moves as f64 / minimum as f64
    };
    Ok(Outcome {
        clients: plan.clients,
        from: plan.from,
        to: names.len(),
        before,
        after,
        moves: outcome_moves,
        rebalance_closes: counters.rebalance_closes.load(Ordering::Acquire) - rebalance_at_start,
        minimum,
        ratio,
        time_to_balance_ms: balanced_at.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        connected_at_end,
        failed_attempts: counters.failed_attempts.load(Ordering::Acquire),
        shed_requested,
    })
}

/// `volley-bench rebalance` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Path to the volley-gateway binary (default: next to volley-bench).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// nats-server program.
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Clients (each reconnects when closed).
    #[arg(long, default_value_t = 600)]
    pub clients: usize,
    /// Gateways before the scale-up.
    #[arg(long, default_value_t = 2)]
    pub from: usize,
    /// Gateways after the scale-up.
    #[arg(long, default_value_t = 4)]
    pub to: usize,
    /// balance.tolerance.
    #[arg(long, default_value_t = 0.2)]
    pub tolerance: f64,
    /// Shed spread (the operator uses 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub spread: Duration,
    /// Pause-to-shed lead (the operator uses 4s for the readiness probe and endpoints).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub lead: Duration,
    /// The proxy's readiness probe period (the operator's pods: 2s).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub probe_every: Duration,
    /// The gateways' stats interval (their default: 5s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub stats_interval: Duration,
    /// Give up after this long.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Do not pause the shedding pods (to measure what pausing saves).
    #[arg(long)]
    pub no_pause: bool,
    /// Also write the outcome as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Args {
    /// The plan these flags describe.
    pub fn plan(&self) -> Plan {
        let settle = self.stats_interval * 2;
        Plan {
            clients: self.clients,
            from: self.from,
            balance: BalanceSpec {
                enabled: true,
                tolerance: self.tolerance,
                max_shed_per_minute: i64::try_from(self.clients).unwrap_or(i64::MAX),
            },
            timing: Timing {
                lead: self.lead,
                spread: self.spread,
                settle,
                pause: !self.no_pause,
            },
            probe_every: self.probe_every,
            stats_max_age: self.stats_interval * 4,
            quiet: self.lead + self.spread + settle,
            deadline: self.deadline,
        }
    }
}

/// Starts nats-server and `args.to` gateway processes, runs, prints a table (and JSON).
pub async fn main(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.from >= 1 && args.to > args.from,
        "need 1 <= --from < --to"
    );
    let gateway = match &args.gateway {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("volley-gateway"))
            .ok_or_else(|| anyhow::anyhow!("no directory for volley-gateway; pass --gateway"))?,
    };
    let nats = crate::natsd::NatsServer::start(&args.nats_server, None).await?;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for i in 0..args.to {
        let name = format!("gw-{i}");
        let extra = vec![
            "--nats".to_string(),
            url.clone(),
            "--stats-interval".to_string(),
            humantime::format_duration(args.stats_interval).to_string(),
        ];
        let env = [
            ("POD_NAME", name.clone()),
            ("POD_NAMESPACE", NAMESPACE.to_string()),
            ("VOLLEY_CLUSTER", CLUSTER.to_string()),
        ];
        let s = crate::server::Server::spawn(&gateway, "epoll", &extra, &env, None).await?;
        endpoints.push(Endpoint {
            name,
            client: s.client,
            admin: s.admin,
        });
        servers.push(s);
    }
    let plan = args.plan();
    let o = run(&plan, &endpoints, &url).await?;
    println!(
        "rebalance {} clients {} -> {} pods: moves {} (1012: {}), minimum {}, ratio {:.2}, time to balance {}, connected at end {}/{}",
        o.clients,
        o.from,
        o.to,
        o.moves,
        o.rebalance_closes,
        o.minimum,
        o.ratio,
        o.time_to_balance_ms.map_or_else(
            || "never".to_string(),
            |ms| format!("{:.1}s", ms as f64 / 1000.0)
        ),
        o.connected_at_end,
        o.clients
    );
    println!("per pod before {:?} after {:?}", o.before, o.after);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&o)?)?;
    }
    drop(servers);
    drop(nats);
    Ok(())
}

#[cfg(test)]
mod tests;
