//! One benchmark run of one scenario against one gateway: start it, connect the clients from
//! child processes, measure idle memory, publish each phase and account for every delivery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::accounting::{self, Loss, Tallies};
use crate::ipc::{Command, ConnectOutcome, ConnectSpec, Event};
use crate::plan::{self, BROADCAST, Shape};
use crate::procfs;
use crate::publisher::{self, HttpPublisher, PhasePlan, Target};
use crate::report::{ConnectReport, MemoryReport, Percentiles, PhaseReport, RunReport};
use crate::server::{ClientProcess, Server};

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

/// Where the gateway comes from.
#[derive(Debug, Clone)]
pub enum Target0 {
    Spawn {
        binary: PathBuf,
        engine: String,
        extra: Vec<String>,
    },
    External {
        pid: u32,
        client: SocketAddr,
        admin: SocketAddr,
        label: String,
    },
}

pub const SERVER_CPU: &str = "0";
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

/// Runs one scenario once against one gateway.
pub async fn run_once(
    settings: &Settings,
    target: &Target0,
    run: u32,
) -> Result<RunReport, BenchError> {
    let pin = |cpu| settings.pin.then_some(cpu);
    let (server, engine) = match target {
        Target0::Spawn {
            binary,
            engine,
            extra,
        } => (
            Server::spawn(binary, engine, extra, pin(SERVER_CPU)).await?,
            engine.clone(),
        ),
        Target0::External {
            pid,
            client,
            admin,
            label,
        } => (Server::external(*pid, *client, *admin), label.clone()),
    };
    let ticks = procfs::clock_ticks();
    let cpu = |pid| procfs::cpu_seconds(pid, ticks).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = procfs::rss_bytes(server.pid)?;
    let sock_before = procfs::sockstat()?;

    // ---- connect ----
    let shape = shape(settings);
    let ranges = plan::split(settings.connections, settings.per_process);
    let mut clients = Vec::with_capacity(ranges.len());
    for _ in &ranges {
        clients.push(ClientProcess::spawn(pin(BENCH_CPU))?);
    }
    let cpu0 = cpu(server.pid);
    let started = Instant::now();
    for (client, range) in clients.iter_mut().zip(&ranges) {
        let spec = ConnectSpec {
            server: server.client,
            first: range.start,
            count: range.len(),
            shape,
            sources: settings.sources,
            inflight: settings.inflight,
            retries: settings.retries,
            timeout_ms: settings.connect_timeout.as_millis() as u64,
        };
        client.send(&Command::Connect(spec)).await?;
    }
    let mut connected = ConnectOutcome::default();
    for client in &mut clients {
        match client.recv().await? {
            Event::Connected(o) => connected.merge(&o),
            other => {
                return Err(BenchError::Protocol(format!(
                    "expected connected: {other:?}"
                )));
            }
        }
    }
    let connect_wall = started.elapsed().as_secs_f64();
    let connect_cpu = cpu(server.pid) - cpu0;
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
        server_cpu_s: connect_cpu,
    };

    // ---- idle memory ----
    tokio::time::sleep(settings.settle).await;
    let rss_idle = procfs::rss_bytes(server.pid)?;
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
    let subscribers = Arc::new(plan::subscribers(
        &shape,
        settings.connections,
        &connected.failed,
    ));
    let mut publishers: Vec<HttpPublisher> = (0..settings.publishers.max(1))
        .map(|_| HttpPublisher::new(server.admin))
        .collect();
    let mut reports = Vec::new();
    for (name, plan) in phases(settings) {
        let (report, back) = run_phase(
            &server,
            &mut clients,
            publishers,
            &name,
            &plan,
            &subscribers,
            settings,
        )
        .await?;
        publishers = back;
        reports.push(report);
    }

    let processes = clients.len();
    for client in clients {
        client.exit().await;
    }
    server.stop().await;
    Ok(RunReport {
        scenario: settings.scenario.name().to_owned(),
        engine,
        run,
        connections: settings.connections,
        processes,
        pinning: pinning(settings.pin),
        connect,
        memory,
        phases: reports,
    })
}

pub fn pinning(pin: bool) -> String {
    if pin {
        format!(
            "server on core {SERVER_CPU}; bench parent, publisher and client processes on core {BENCH_CPU} (taskset)"
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

async fn run_phase(
    server: &Server,
    clients: &mut [ClientProcess],
    publishers: Vec<HttpPublisher>,
    name: &str,
    plan: &PhasePlan,
    subscribers: &Arc<HashMap<String, u64>>,
    settings: &Settings,
) -> Result<(PhaseReport, Vec<HttpPublisher>), BenchError> {
    let ticks = procfs::clock_ticks();
    let cpu = |pid| procfs::cpu_seconds(pid, ticks).unwrap_or(0.0);
    let clients_cpu = |clients: &[ClientProcess]| clients.iter().map(|c| cpu(c.pid)).sum::<f64>();
    let (_, closed_before) = tallies(clients).await?;
    let server_cpu0 = cpu(server.pid);
    let clients_cpu0 = clients_cpu(clients);
    let (published, back) = publisher::run_phase(publishers, plan, subscribers.clone()).await;

    // Wait for stragglers: until everything expected arrived, or nothing moved for a while.
    let give_up = Instant::now() + settings.grace;
    let mut last = u64::MAX;
    let mut still_since = Instant::now();
    let (final_tallies, closed) = loop {
        let (t, closed) = tallies(clients).await?;
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
    let server_cpu = cpu(server.pid) - server_cpu0;
    let clients_cpu_s = clients_cpu(clients) - clients_cpu0;
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
        server_cpu_s: server_cpu,
        cpu_s_per_million: if tally.received == 0 {
            0.0
        } else {
            server_cpu / (tally.received as f64 / 1e6)
        },
        clients_cpu_s,
        server_closed_conns: closed.saturating_sub(closed_before),
        rss_after: procfs::rss_bytes(server.pid).unwrap_or(0),
        publish: published,
        loss,
    };
    Ok((report, back))
}
