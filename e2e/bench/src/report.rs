//! The report of a run: serializable for JSON, and printed as a human table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::accounting::Loss;
use crate::hist::Histogram;
use crate::passes::PassReport;
use crate::procfs::Sockstat;
use crate::publisher::PublishOutcome;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    /// The engine, with the gateway count in cluster mode (`epoll x3`).
    pub engine: String,
    pub run: u32,
    pub connections: usize,
    pub processes: usize,
    pub pinning: String,
    /// `http` (a gateway's publish API) or `nats` (straight to NATS).
    pub publish_via: String,
    pub connect: ConnectReport,
    /// Summed over the gateway processes.
    pub memory: MemoryReport,
    /// Each gateway on its own (one entry for a standalone gateway).
    pub gateways: Vec<GatewayReport>,
    /// Cluster mode: the gateways' NATS subscriptions before the first phase.
    pub subscriptions: Option<SubscriptionsReport>,
    pub phases: Vec<PhaseReport>,
}

/// What the NATS server showed of the gateways' subscriptions before publishing.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionsReport {
    /// Distinct subjects the gateways should subscribe to.
    pub subjects: usize,
    /// Subscriptions over all gateways (a subject counts once per gateway wanting it).
    pub wanted: u64,
    /// Subjects still short when the wait ended: 0 means every gateway was ready.
    pub missing_subjects: usize,
    /// The first of them, by name.
    pub first_missing: Option<String>,
    pub wait_s: f64,
}

/// One gateway of a run. Gateways sharing a process (in-process tests) show that process.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    pub pid: u32,
    pub client_addr: String,
    /// Connections that upgraded on this gateway.
    pub connections: u64,
    pub rss_before: u64,
    pub rss_idle: u64,
    pub rss_end: u64,
    pub connect_cpu_s: f64,
    /// From just before connecting to the end of the last phase.
    pub cpu_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub ok: u64,
    pub failed: u64,
    pub retries: u64,
    pub seconds: f64,
    pub handshakes_per_s: f64,
    pub connect_ms: Percentiles,
    /// Summed over the gateway processes.
    pub server_cpu_s: f64,
    /// nats-server's CPU while clients connected (cluster mode, when its pid is known).
    pub nats_cpu_s: Option<f64>,
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
    /// Summed over the gateway processes.
    pub server_cpu_s: f64,
    /// The part of `server_cpu_s` spent in user mode (the rest is the kernel's).
    pub server_user_s: f64,
    /// Gateway CPU per million deliveries.
    pub cpu_s_per_million: f64,
    /// Each gateway's CPU in this phase.
    pub gateway_cpu_s: Vec<f64>,
    /// nats-server's CPU in this phase: part of the system's cost, kept apart from the
    /// gateways' (cluster mode, when its pid is known).
    pub nats_cpu_s: Option<f64>,
    pub clients_cpu_s: f64,
    pub server_closed_conns: u64,
    /// Summed over the gateway processes.
    pub rss_after: u64,
    /// Peak resident memory during the phase (publishing and the delivery wait), summed over
    /// the gateway processes; `None` when the peak could not be reset before the phase.
    pub rss_peak: Option<u64>,
    /// The gateways' flush passes in this phase (epoll engine).
    pub passes: Option<PassReport>,
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
    // Wide enough for `external x3`; 8 as before otherwise.
    let w = reports.iter().map(|r| r.engine.len()).fold(8, usize::max);
    let _ = writeln!(
        out,
        "\n{:<w$} {:>3} {:>7} {:>6} {:>9} {:>10} {:>9} {:>9} {:>11} {:>10}",
        "engine",
        "run",
        "conns",
        "failed",
        "conn s",
        "hs/s",
        "rss0 MiB",
        "idle MiB",
        "B/idle conn",
        "kTCP B/c",
        w = w,
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<w$} {:>3} {:>7} {:>6} {:>9.2} {:>10.0} {:>9.1} {:>9.1} {:>11.0} {:>10.0}",
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
            w = w,
        );
    }
    for r in reports.iter().filter(|r| r.gateways.len() > 1) {
        let _ = writeln!(out, "{}", gateway_line(r));
    }
    if reports.iter().all(|r| r.phases.is_empty()) {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<w$} {:>3} {:<12} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
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
        "usr cpu",
        "cpu/M",
        "cli cpu",
        w = w,
    );
    // The peak RSS column goes at the end of the header line just written.
    out.pop();
    let _ = writeln!(out, " {:>9}", "peak MiB");
    let with_nats = reports
        .iter()
        .flat_map(|r| &r.phases)
        .any(|p| p.nats_cpu_s.is_some());
    if with_nats {
        // One more column at the end of the header line just written.
        out.pop();
        let _ = writeln!(out, " {:>8}", "nats cpu");
    }
    for r in reports {
        for p in &r.phases {
            let _ = writeln!(
                out,
                "{:<w$} {:>3} {:<12} {:>10.0} {:>10.0} {:>10} {:>9.4} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>8.2} {:>8.2} {:>8.3} {:>7.2}",
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
                p.server_user_s,
                p.cpu_s_per_million,
                p.clients_cpu_s,
                w = w,
            );
            out.pop();
            let peak = p
                .rss_peak
                .map_or("-".to_owned(), |b| format!("{:.1}", mib(b)));
            let _ = writeln!(out, " {peak:>9}");
            if with_nats {
                out.pop();
                let nats = p.nats_cpu_s.map_or("-".to_owned(), |c| format!("{c:.2}"));
                let _ = writeln!(out, " {nats:>8}");
            }
        }
    }
    out.push_str(&passes_table(reports, w));
    out
}

/// The server's side of latency: the shards' flush passes per phase (epoll engine only).
fn passes_table(reports: &[RunReport], w: usize) -> String {
    let mut out = String::new();
    let rows: Vec<(&RunReport, &PhaseReport, &PassReport)> = reports
        .iter()
        .flat_map(|r| r.phases.iter().map(move |p| (r, p)))
        .filter_map(|(r, p)| p.passes.as_ref().map(|x| (r, p, x)))
        .collect();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<w$} {:>3} {:<12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "engine",
        "run",
        "phase",
        "passes",
        "mean ms",
        "p50 <= ms",
        "p99 <= ms",
        "writes",
        "frames/write",
        w = w,
    );
    let bound = |b: Option<f64>| b.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for (r, p, x) in rows {
        let _ = writeln!(
            out,
            "{:<w$} {:>3} {:<12} {:>8} {:>10.2} {:>10} {:>10} {:>10} {:>12.2}",
            r.engine,
            r.run,
            p.name,
            x.passes,
            x.mean_pass_ms,
            bound(x.p50_pass_ms_at_most),
            bound(x.p99_pass_ms_at_most),
            x.writes,
            x.frames_per_write,
            w = w,
        );
    }
    out
}

/// `epoll x3 run 1 per gateway: 100 conns 14.2 MiB 0.31 cpu-s | ...`
fn gateway_line(r: &RunReport) -> String {
    let each: Vec<String> = r
        .gateways
        .iter()
        .map(|g| {
            format!(
                "{} conns {:.1} MiB {:.2} cpu-s",
                g.connections,
                mib(g.rss_idle),
                g.cpu_s
            )
        })
        .collect();
    format!(
        "{} run {} per gateway: {}",
        r.engine,
        r.run,
        each.join(" | ")
    )
}
