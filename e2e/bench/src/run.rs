//! One benchmark run of one scenario against one gateway or a cluster of them: start them,
//! connect the clients from child processes (spread over the gateways), measure idle memory,
//! publish each phase and account for every delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::accounting::{self, Loss, Tallies};
use crate::fleet::Fleet;
pub use crate::fleet::{ExternalNats, Target0};
use crate::interest;
use crate::ipc::{Command, ConnectOutcome, ConnectSpec, Event};
use crate::passes;
use crate::plan::{self, BROADCAST, Shape};
use crate::procfs;
use crate::publisher::{
    self, HttpPublisher, NatsPublisher, PhasePlan, PublishVia, Publisher, Target,
};
use crate::report::{
    ConnectReport, GatewayReport, MemoryReport, Percentiles, PhaseReport, RunReport,
    SubscriptionsReport,
};
use crate::server::ClientProcess;

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scenario: Scenario,
    pub connections: usize,
    pub per_process: usize,
    pub sources: usize,
    pub inflight: usize,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub rates: Vec<f64>,
    pub user_rate: f64,
    pub size: usize,
    pub duration: Duration,
    pub grace: Duration,
    pub settle: Duration,
    pub publishers: usize,
    pub pin: bool,
    pub zipf_topics: usize,
    pub zipf_s: f64,
    pub publish_via: PublishVia,
    /// The gateways' NATS subject prefix (cluster mode).
    pub subject_prefix: String,
    /// The server's cores with `pin` (a taskset list).
    pub server_cpus: String,
    /// The client processes' cores with `pin`.
    pub client_cpus: String,
    /// The gateways' HS256 secret: per-user connections sign their `sub` with it.
    pub jwt_secret: Option<String>,
    /// Clients ask for `format=raw` frames (the payload alone, as the reference sends).
    pub raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Connect, wait, measure memory; no publishing.
    Idle,
    /// Connect as fast as possible; handshakes per second.
    Storm,
    /// Everyone on one topic; one phase per rate.
    Fanout,
    /// `user.<i>` + a broadcast topic: a phase of user messages, then a broadcast per rate.
    PerUser,
    /// Zipf spread over T topics; publish uniformly over the topics, one phase per rate.
    Zipf,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Storm => "storm",
            Scenario::Fanout => "fanout",
            Scenario::PerUser => "per-user",
            Scenario::Zipf => "zipf",
        }
    }
}

pub const SERVER_CPU: &str = "0";
/// Longest wait for the gateways' NATS subscriptions before the first phase. Gateways subscribe
/// within milliseconds of their clients' upgrades; this only bounds a broken setup.
pub const SUBSCRIPTIONS_TIMEOUT: Duration = Duration::from_secs(30);
/// The wait also ends when no missing subscription has appeared for this long: those that are
/// still missing will not come (e.g. topics the gateways refuse). Long enough for a gateway on a
/// loaded 2-core machine still connecting to NATS (3 s once ended the wait before the first
/// subscription, and every delivery then counted as lost).
pub const SUBSCRIPTIONS_STALL: Duration = Duration::from_secs(10);
pub const BENCH_CPU: &str = "1";

fn shape(s: &Settings) -> Shape {
    match s.scenario {
        Scenario::PerUser => Shape::PerUser,
        Scenario::Zipf => Shape::Zipf {
            topics: s.zipf_topics,
            s: s.zipf_s,
            seed: 42,
        },
        _ => Shape::Shared,
    }
}

/// The publishing phases of a scenario, numbered from 1.
pub fn phases(s: &Settings) -> Vec<(String, PhasePlan)> {
    let plan = |phase: u32, rate: f64, target: Target| PhasePlan {
        phase,
        rate,
        duration: s.duration,
        size: s.size,
        target,
    };
    let mut out = Vec::new();
    match s.scenario {
        Scenario::Idle | Scenario::Storm => {}
        Scenario::Fanout => {
            for (i, &r) in s.rates.iter().enumerate() {
                let t = Target::Topic(BROADCAST.into());
                out.push((format!("bcast@{r}"), plan(i as u32 + 1, r, t)));
            }
        }
        Scenario::PerUser => {
            let users = (0..s.connections).map(plan::user_topic).collect();
            out.push((
                format!("user@{}", s.user_rate),
                plan(1, s.user_rate, Target::AnyOf(users)),
            ));
            for (i, &r) in s.rates.iter().enumerate() {
                let t = Target::Topic(BROADCAST.into());
                out.push((format!("bcast@{r}"), plan(i as u32 + 2, r, t)));
            }
        }
        Scenario::Zipf => {
            let topics: Vec<String> = (0..s.zipf_topics).map(|k| format!("zipf.{k}")).collect();
            for (i, &r) in s.rates.iter().enumerate() {
                let t = Target::AnyOf(topics.clone());
                out.push((format!("zipf@{r}"), plan(i as u32 + 1, r, t)));
            }
        }
    }
    out
}

/// Runs one scenario once against one gateway or one cluster.
pub async fn run_once(
    settings: &Settings,
    target: &Target0,
    run: u32,
) -> Result<RunReport, BenchError> {
    let pin = |cpu| settings.pin.then_some(cpu);
    let fleet = Fleet::start(
        target,
        &settings.subject_prefix,
        pin(settings.server_cpus.as_str()),
    )
    .await?;
    let ticks = procfs::clock_ticks();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = fleet.rss()?;
    let gateway_rss_before = fleet.rss_per_gateway();
    let sock_before = procfs::sockstat()?;

    // ---- connect: client process k talks to gateway gateway_of[k] ----
    let shape = shape(settings);
    let gateways = fleet.gateways.len();
    let ranges = plan::split_over(settings.connections, settings.per_process, gateways);
    let gateway_of: Vec<usize> = (0..ranges.len())
        .map(|k| plan::group_of(k, gateways))
        .collect();
    let mut clients = Vec::with_capacity(ranges.len());
    for _ in &ranges {
        clients.push(ClientProcess::spawn(pin(settings.client_cpus.as_str()))?);
    }
    let cpu0 = fleet.cpu(ticks);
    let started = Instant::now();
    for ((client, range), &g) in clients.iter_mut().zip(&ranges).zip(&gateway_of) {
        let spec = ConnectSpec {
            server: fleet.gateways[g].client,
            first: range.start,
            count: range.len(),
            shape,
            sources: settings.sources,
            inflight: settings.inflight,
            retries: settings.retries,
            timeout_ms: settings.connect_timeout.as_millis() as u64,
            token_secret: match shape {
                Shape::PerUser => settings.jwt_secret.clone(),
                _ => None,
            },
            raw: settings.raw,
        };
        client.send(&Command::Connect(spec)).await?;
    }
    let mut connected = ConnectOutcome::default();
    let mut connected_per_gateway = vec![0u64; gateways];
    for (client, &g) in clients.iter_mut().zip(&gateway_of) {
        match client.recv().await? {
            Event::Connected(o) => {
                connected_per_gateway[g] += o.ok;
                connected.merge(&o);
            }
            other => {
                return Err(BenchError::Protocol(format!(
                    "expected connected: {other:?}"
                )));
            }
        }
    }
    let connect_wall = started.elapsed().as_secs_f64();
    let connect_cpu = fleet.cpu(ticks).since(&cpu0);
    let span = connected
        .last_done_ns
        .saturating_sub(connected.first_start_ns) as f64
        / 1e9;
    let span = if span > 0.0 { span } else { connect_wall };
    let connect = ConnectReport {
        ok: connected.ok,
        failed: connected.failed.len() as u64,
        retries: connected.retries,
        seconds: span,
        handshakes_per_s: connected.ok as f64 / span,
        connect_ms: Percentiles::from_micros(&connected.connect_us),
        server_cpu_s: connect_cpu.total,
        nats_cpu_s: connect_cpu.nats,
    };

    // ---- idle memory ----
    tokio::time::sleep(settings.settle).await;
    let rss_idle = fleet.rss()?;
    let gateway_rss_idle = fleet.rss_per_gateway();
    let sock_idle = procfs::sockstat()?;
    let per = |a: u64, b: u64| {
        if connected.ok == 0 {
            0.0
        } else {
            (a as f64 - b as f64) / connected.ok as f64
        }
    };
    let memory = MemoryReport {
        rss_before,
        rss_idle,
        bytes_per_idle_conn: per(rss_idle, rss_before),
        sockstat_before: sock_before,
        sockstat_idle: sock_idle,
        kernel_tcp_bytes_per_conn: per(sock_idle.tcp_mem_bytes(), sock_before.tcp_mem_bytes()),
    };

    // ---- publishing phases ----
    let phases = phases(settings);
    let subscriptions = match &fleet.nats {
        Some(nats) if !phases.is_empty() => {
            let want = interest::expected(
                &shape,
                &ranges,
                &gateway_of,
                &connected.failed,
                &settings.subject_prefix,
            );
            let ready = interest::wait(
                nats.monitor,
                &want,
                SUBSCRIPTIONS_TIMEOUT,
                SUBSCRIPTIONS_STALL,
            )
            .await?;
            if let Some(short) = &ready.short {
                eprintln!(
                    "volley-bench: warning: publishing with {} subject(s) not held by every gateway that has subscribers for it (e.g. {}: {} of {} gateways); their deliveries will show as lost",
                    short.missing, short.subject, short.held, short.wanted
                );
            }
            Some(SubscriptionsReport {
                subjects: want.len(),
                wanted: want.values().sum(),
                missing_subjects: ready.short.as_ref().map_or(0, |s| s.missing),
                first_missing: ready.short.map(|s| s.subject),
                wait_s: ready.waited.as_secs_f64(),
            })
        }
        _ => None,
    };
    let subscribers = Arc::new(plan::subscribers(
        &shape,
        settings.connections,
        &connected.failed,
    ));
    let workers = settings.publishers.max(1);
    let mut ctx = PhaseContext {
        fleet: &fleet,
        clients: &mut clients,
        subscribers: &subscribers,
        settings,
        ticks,
    };
    let reports = match settings.publish_via {
        PublishVia::Http => {
            // Publishers take turns over the gateways, as a load balancer in front would.
            let publishers = (0..workers)
                .map(|w| HttpPublisher::new(fleet.gateways[w % gateways].admin))
                .collect();
            ctx.run_all(publishers, &phases).await?
        }
        PublishVia::Nats => {
            let url = fleet.nats.as_ref().map(|n| n.url.clone()).ok_or_else(|| {
                BenchError::Nats("publishing via NATS needs gateways in cluster mode".into())
            })?;
            let mut publishers = Vec::with_capacity(workers);
            for _ in 0..workers {
                publishers.push(NatsPublisher::connect(&url, &settings.subject_prefix).await?);
            }
            ctx.run_all(publishers, &phases).await?
        }
    };

    let cpu_total = fleet.cpu(ticks).since(&cpu0);
    let gateway_rss_end = fleet.rss_per_gateway();
    let gateway_reports = fleet
        .gateways
        .iter()
        .enumerate()
        .map(|(g, server)| GatewayReport {
            pid: server.pid,
            client_addr: server.client.to_string(),
            connections: connected_per_gateway[g],
            rss_before: gateway_rss_before[g],
            rss_idle: gateway_rss_idle[g],
            rss_end: gateway_rss_end[g],
            connect_cpu_s: connect_cpu.per_gateway[g],
            cpu_s: cpu_total.per_gateway[g],
        })
        .collect();
    let processes = clients.len();
    for client in clients {
        client.exit().await;
    }
    let clustered = fleet.clustered();
    let engine = fleet.label.clone();
    fleet.stop().await;
    Ok(RunReport {
        scenario: settings.scenario.name().to_owned(),
        engine,
        run,
        connections: settings.connections,
        processes,
        pinning: pinning(
            settings.pin,
            &settings.server_cpus,
            &settings.client_cpus,
            clustered,
        ),
        publish_via: settings.publish_via.name().to_owned(),
        connect,
        memory,
        gateways: gateway_reports,
        subscriptions,
        phases: reports,
    })
}

pub fn pinning(pin: bool, server_cpus: &str, client_cpus: &str, clustered: bool) -> String {
    let server = if clustered {
        "gateways and nats-server"
    } else {
        "server"
    };
    if pin {
        format!(
            "{server} on core(s) {server_cpus}; bench parent and publisher on core {BENCH_CPU}, client processes on core(s) {client_cpus} (taskset)"
        )
    } else {
        "not pinned".to_owned()
    }
}

async fn tallies(clients: &mut [ClientProcess]) -> Result<(Tallies, u64), BenchError> {
    for c in clients.iter_mut() {
        c.send(&Command::Report).await?;
    }
    let mut all = Tallies::new();
    let mut closed = 0;
    for c in clients.iter_mut() {
        match c.recv().await? {
            Event::Report(r) => {
                accounting::merge(&mut all, &r.tallies);
                closed += r.closed;
            }
            other => return Err(BenchError::Protocol(format!("expected report: {other:?}"))),
        }
    }
    Ok((all, closed))
}

/// What every phase of a run shares.
struct PhaseContext<'a> {
    fleet: &'a Fleet,
    clients: &'a mut [ClientProcess],
    subscribers: &'a Arc<HashMap<String, u64>>,
    settings: &'a Settings,
    ticks: u64,
}

impl PhaseContext<'_> {
    /// Runs every phase in order with the same publishers.
    async fn run_all<P: Publisher>(
        &mut self,
        mut publishers: Vec<P>,
        phases: &[(String, PhasePlan)],
    ) -> Result<Vec<PhaseReport>, BenchError> {
        let mut reports = Vec::with_capacity(phases.len());
        for (name, plan) in phases {
            let (report, back) = self.run_phase(publishers, name, plan).await?;
            publishers = back;
            reports.push(report);
        }
        Ok(reports)
    }

    async fn run_phase<P: Publisher>(
        &mut self,
        publishers: Vec<P>,
        name: &str,
        plan: &PhasePlan,
    ) -> Result<(PhaseReport, Vec<P>), BenchError> {
        let ticks = self.ticks;
        let cpu = |pid| procfs::cpu_seconds(pid, ticks).unwrap_or(0.0);
        let clients_cpu =
            |clients: &[ClientProcess]| clients.iter().map(|c| cpu(c.pid)).sum::<f64>();
        let (_, closed_before) = tallies(self.clients).await?;
        // Scraped outside the CPU window: answering /metrics is not the phase's work.
        let admins: Vec<_> = self.fleet.gateways.iter().map(|g| g.admin).collect();
        let passes0 = passes::scrape_all(&admins).await.ok();
        // Peak memory of this phase alone; None where /proc/PID/clear_refs cannot be written.
        let peak_window = self.fleet.reset_peak_rss().is_ok();
        let server_cpu0 = self.fleet.cpu(ticks);
        let clients_cpu0 = clients_cpu(self.clients);
        let (published, back) =
            publisher::run_phase(publishers, plan, self.subscribers.clone()).await;

        // Wait for stragglers: until everything expected arrived, or nothing moved for a while.
        let give_up = Instant::now() + self.settings.grace;
        let mut last = u64::MAX;
        let mut still_since = Instant::now();
        let (final_tallies, closed) = loop {
            let (t, closed) = tallies(self.clients).await?;
            let got = t.get(&plan.phase).map_or(0, |p| p.received);
            if got >= published.expected || Instant::now() >= give_up {
                break (t, closed);
            }
            if got != last {
                last = got;
                still_since = Instant::now();
            } else if still_since.elapsed() > Duration::from_secs(2) {
                break (t, closed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let server_cpu = self.fleet.cpu(ticks).since(&server_cpu0);
        let rss_peak = peak_window.then(|| self.fleet.peak_rss().ok()).flatten();
        let clients_cpu_s = clients_cpu(self.clients) - clients_cpu0;
        let passes = match (passes0, passes::scrape_all(&admins).await.ok()) {
            (Some(before), Some(after)) => after.since(&before).report(),
            _ => None,
        };
        let tally = final_tallies.get(&plan.phase).cloned().unwrap_or_default();
        let loss = Loss::new(published.expected, tally.received);
        let subs_per_msg = if published.accepted == 0 {
            0.0
        } else {
            published.expected as f64 / published.accepted as f64
        };
        let report = PhaseReport {
            name: name.to_owned(),
            rate: plan.rate,
            subscribers_per_message: subs_per_msg,
            offered_deliveries_per_s: plan.rate * subs_per_msg,
            delivered_per_s: tally.received as f64 / plan.duration.as_secs_f64().max(1e-9),
            latency_ms: Percentiles::from_micros(&tally.latency),
            server_cpu_s: server_cpu.total,
            server_user_s: server_cpu.user,
            cpu_s_per_million: if tally.received == 0 {
                0.0
            } else {
                server_cpu.total / (tally.received as f64 / 1e6)
            },
            gateway_cpu_s: server_cpu.per_gateway,
            nats_cpu_s: server_cpu.nats,
            clients_cpu_s,
            server_closed_conns: closed.saturating_sub(closed_before),
            rss_after: self.fleet.rss().unwrap_or(0),
            rss_peak,
            publish: published,
            loss,
            passes,
        };
        Ok((report, back))
    }
}
