//! `volley-bench soak`: flags, starting (or finding) the gateway, printing the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::{FLAT_PERCENT, SoakReport, SoakSettings, SoakTarget};
use crate::server::Server;

/// Flags of `volley-bench soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Path to the volley-gateway binary to start (epoll engine, loopback ports).
    #[arg(long, required_unless_present = "connect")]
    gateway: Option<PathBuf>,
    /// Extra gateway flags, e.g. `--gateway-arg=--max-pending-bytes=65536`.
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// Use a gateway that is already running: its client address (needs --admin, --server-pid).
    #[arg(long, requires_all = ["admin", "server_pid"], conflicts_with = "gateway")]
    connect: Option<std::net::SocketAddr>,
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Load time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    duration: Duration,
    /// RSS and descriptor sampling period.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    sample_every: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    settle: Duration,
    /// Concurrent connect/subscribe/receive/drop loops.
    #[arg(long, default_value_t = 50)]
    churners: usize,
    /// Longest stay of a churning client.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    churn_hold: Duration,
    /// Subscribers that stay for the whole run.
    #[arg(long, default_value_t = 200)]
    steady: usize,
    /// Clients sending a WebSocket ping and a ping op every --ping-every.
    #[arg(long, default_value_t = 10)]
    pingers: usize,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    ping_every: Duration,
    /// Published messages per second (HTTP).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Payload bytes.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// A new slow consumer this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    slow_every: Duration,
    /// Messages published to each slow consumer (0: none) ...
    #[arg(long, default_value_t = 160)]
    slow_burst: usize,
    /// ... of this size. The default burst (5 MiB) exceeds the default 1 MiB pending bound
    /// plus loopback socket buffers.
    #[arg(long, default_value_t = 32 * 1024)]
    slow_size: usize,
    /// Longest wait after the load for descriptors to return to the baseline.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    fd_wait: Duration,
    /// Exit non-zero unless RSS is flat and descriptors returned to the baseline.
    #[arg(long)]
    check: bool,
    /// Write the report (with every sample) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `volley-bench soak`.
pub async fn main(a: SoakArgs) -> anyhow::Result<()> {
    let settings = SoakSettings {
        duration: a.duration,
        sample_every: a.sample_every,
        settle: a.settle,
        churners: a.churners,
        churn_hold: a.churn_hold,
        steady: a.steady,
        pingers: a.pingers,
        ping_every: a.ping_every,
        rate: a.rate,
        size: a.size,
        slow_every: a.slow_every,
        slow_burst: a.slow_burst,
        slow_size: a.slow_size,
        fd_wait: a.fd_wait,
    };
    let (target, server) = match (a.connect, a.admin, a.server_pid, &a.gateway) {
        (Some(client), Some(admin), Some(pid), _) => (SoakTarget { pid, client, admin }, None),
        (_, _, _, Some(binary)) => {
            let server = Server::spawn(binary, "epoll", &a.gateway_args, &[], None)
                .await
                .context("start the gateway")?;
            let target = SoakTarget {
                pid: server.pid,
                client: server.client,
                admin: server.admin,
            };
            (target, Some(server))
        }
        _ => anyhow::bail!("give --gateway PATH or --connect ADDR --admin ADDR --server-pid PID"),
    };
    println!(
        "volley-bench soak: {} · {} steady, {} churning, {} pinging clients · {} msg/s of {} B · \
         a slow consumer every {} · sampling every {}",
        humantime::format_duration(settings.duration),
        settings.steady,
        settings.churners,
        settings.pingers,
        settings.rate,
        settings.size,
        humantime::format_duration(settings.slow_every),
        humantime::format_duration(settings.sample_every),
    );
    let report = super::run(&settings, target).await;
    if let Some(server) = server {
        server.stop().await;
    }
    let report = report?;
    print!("{}", table(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    if a.check {
        anyhow::ensure!(report.rss_flat, "RSS grew {FLAT_PERCENT}% or more");
        anyhow::ensure!(
            report.fds_returned,
            "descriptors did not return to the baseline"
        );
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The human-readable summary.
pub fn table(r: &SoakReport) -> String {
    let mut out = String::new();
    out.push_str("   t(s)    RSS(MiB)   fds  clients\n");
    for s in &r.samples {
        out.push_str(&format!(
            "{:7.0} {:11.2} {:5} {:8}\n",
            s.t_s,
            mib(s.rss_bytes),
            s.fds,
            s.clients
        ));
    }
    let trend = |t: &Option<crate::trend::Trend>, unit: f64, name: &str| match t {
        Some(t) => format!(
            "{name}: {:+.4} per minute over t={:.0}..{:.0}s ({} samples), growth {:+.3}%\n",
            t.per_minute / unit,
            t.from_s,
            t.to_s,
            t.samples,
            t.growth_percent
        ),
        None => format!("{name}: too few samples for a trend\n"),
    };
    out.push_str(&trend(&r.rss_trend, 1024.0 * 1024.0, "RSS (MiB)"));
    out.push_str(&trend(&r.fd_trend, 1.0, "descriptors"));
    out.push_str(&format!(
        "RSS baseline {:.2} MiB, peak {:.2} MiB, final {:.2} MiB · flat (< {FLAT_PERCENT}%): {}\n",
        mib(r.rss_baseline),
        mib(r.rss_peak),
        mib(r.rss_final),
        r.rss_flat
    ));
    out.push_str(&format!(
        "descriptors baseline {}, peak {}, final {} · back to baseline: {}\n",
        r.fds_baseline, r.fds_peak, r.fds_final, r.fds_returned
    ));
    let a = &r.activity;
    out.push_str(&format!(
        "churn: {} connects ({} failed, {} left with a reset) · messages: {} churn/ping + {} steady \
         ({} steady reconnects)\n",
        a.churn_connects,
        a.churn_failures,
        a.churn_resets,
        a.messages,
        a.steady_messages,
        a.steady_reconnects
    ));
    out.push_str(&format!(
        "pings: {} ws → {} pongs, {} ops → {} pong replies, {} server pings answered\n",
        a.ws_pings, a.ws_pongs, a.op_pings, a.op_pongs, a.server_pings
    ));
    out.push_str(&format!(
        "published: {} accepted, {} refused, {} failed · slow consumers: {} started, {} closed \
         by the gateway ({} with 1008), {} survived\n",
        a.published,
        a.publish_refused,
        a.publish_failed,
        a.slow_started,
        a.slow_closed,
        a.slow_closed_1008,
        a.slow_survived
    ));
    out
}
