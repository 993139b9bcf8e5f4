//! `volley-bench`: runs a scenario against one or both gateway engines and prints a table (and
//! optionally JSON). `__child` is the hidden client-process mode it re-executes itself in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use volley_bench::report::{self, RunReport};
use volley_bench::run::{self, Scenario, Settings, Target0};

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
    /// Engines to compare, in this order.
    #[arg(long, value_delimiter = ',', default_value = "epoll,tokio")]
    engines: Vec<String>,
    /// Extra gateway flags, e.g. `--gateway-arg=--shards=1`.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// Use a gateway that is already running (client address; needs --admin and --server-pid).
    #[arg(long, requires_all = ["admin", "server_pid"])]
    connect: Option<SocketAddr>,
    #[arg(long)]
    admin: Option<SocketAddr>,
    #[arg(long)]
    server_pid: Option<u32>,
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
    /// Keep-alive HTTP publishing connections.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Server on core 0, everything else on core 1 (taskset).
    #[arg(long)]
    pin: bool,
    #[arg(long, default_value_t = 1000)]
    zipf_topics: usize,
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
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
        Cmd::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_all(*args))
        }
    }
}

async fn run_all(a: RunArgs) -> anyhow::Result<()> {
    if a.pin {
        // The parent (and the publisher in it) shares the clients' core.
        let status = std::process::Command::new("taskset")
            .args(["-p", "-c", run::BENCH_CPU, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("taskset")?;
        anyhow::ensure!(status.success(), "taskset failed");
    }
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
    };
    let targets: Vec<Target0> = match (a.connect, &a.gateway) {
        (Some(client), _) => vec![Target0::External {
            pid: a.server_pid.context("--server-pid")?,
            client,
            admin: a.admin.context("--admin")?,
            label: "external".into(),
        }],
        (None, Some(binary)) => a
            .engines
            .iter()
            .map(|e| Target0::Spawn {
                binary: binary.clone(),
                engine: e.clone(),
                extra: a.gateway_args.clone(),
            })
            .collect(),
        (None, None) => anyhow::bail!("give --gateway PATH or --connect ADDR"),
    };
    println!(
        "volley-bench: scenario {} · {} connections · {} · runs {}",
        settings.scenario.name(),
        settings.connections,
        run::pinning(settings.pin),
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
