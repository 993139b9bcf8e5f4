//! The report of a run: serializable for JSON, and printed as a human table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::accounting::Loss;
use crate::hist::Histogram;
use crate::procfs::Sockstat;
use crate::publisher::PublishOutcome;

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub engine: String,
    pub run: u32,
    pub connections: usize,
    pub processes: usize,
    pub pinning: String,
    pub connect: ConnectReport,
    pub memory: MemoryReport,
    pub phases: Vec<PhaseReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub ok: u64,
    pub failed: u64,
    pub retries: u64,
    pub seconds: f64,
    pub handshakes_per_s: f64,
    pub connect_ms: Percentiles,
    pub server_cpu_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub rss_before: u64,
    pub rss_idle: u64,
    /// (rss_idle - rss_before) / connected.
    pub bytes_per_idle_conn: f64,
    pub sockstat_before: Sockstat,
    pub sockstat_idle: Sockstat,
    /// Kernel TCP memory growth per connection (both ends of each loopback connection).
    pub kernel_tcp_bytes_per_conn: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub rate: f64,
    pub subscribers_per_message: f64,
    pub offered_deliveries_per_s: f64,
    pub publish: PublishOutcome,
    pub loss: Loss,
    pub delivered_per_s: f64,
    pub latency_ms: Percentiles,
    pub server_cpu_s: f64,
    pub cpu_s_per_million: f64,
    pub clients_cpu_s: f64,
    pub server_closed_conns: u64,
    pub rss_after: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds, in milliseconds.
    pub fn from_micros(h: &Histogram) -> Percentiles {
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            p50: ms(h.quantile(0.5)),
            p90: ms(h.quantile(0.9)),
            p99: ms(h.quantile(0.99)),
            p999: ms(h.quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The human tables for a set of runs, engines side by side in the same rows.
pub fn table(reports: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<8} {:>3} {:>7} {:>6} {:>9} {:>10} {:>9} {:>9} {:>11} {:>10}",
        "engine",
        "run",
        "conns",
        "failed",
        "conn s",
        "hs/s",
        "rss0 MiB",
        "idle MiB",
        "B/idle conn",
        "kTCP B/c"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<8} {:>3} {:>7} {:>6} {:>9.2} {:>10.0} {:>9.1} {:>9.1} {:>11.0} {:>10.0}",
            r.engine,
            r.run,
            r.connect.ok,
            r.connect.failed,
            r.connect.seconds,
            r.connect.handshakes_per_s,
            mib(r.memory.rss_before),
            mib(r.memory.rss_idle),
            r.memory.bytes_per_idle_conn,
            r.memory.kernel_tcp_bytes_per_conn,
        );
    }
    if reports.iter().all(|r| r.phases.is_empty()) {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:>3} {:<12} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "engine",
        "run",
        "phase",
        "offered/s",
        "deliv/s",
        "lost",
        "loss %",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9",
        "max ms",
        "srv cpu",
        "cpu/M",
        "cli cpu"
    );
    for r in reports {
        for p in &r.phases {
            let _ = writeln!(
                out,
                "{:<8} {:>3} {:<12} {:>10.0} {:>10.0} {:>10} {:>9.4} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>8.2} {:>8.3} {:>7.2}",
                r.engine,
                r.run,
                p.name,
                p.offered_deliveries_per_s,
                p.delivered_per_s,
                p.loss.lost,
                p.loss.loss_ratio * 100.0,
                p.latency_ms.p50,
                p.latency_ms.p90,
                p.latency_ms.p99,
                p.latency_ms.p999,
                p.latency_ms.max,
                p.server_cpu_s,
                p.cpu_s_per_million,
                p.clients_cpu_s,
            );
        }
    }
    out
}
