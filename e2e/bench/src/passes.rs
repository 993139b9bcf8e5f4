//! Where the gateway's time goes during a phase, from its own `/metrics`: how many flush passes
//! the shards made, how long they took (`volley_flush_duration_seconds`), and how many frames
//! each vectored write carried (`volley_frames_delivered_total / volley_socket_writes_total`).
//! End-to-end latency includes the clients' own core; these figures are the server's part.

use std::net::SocketAddr;

use serde::Serialize;

use crate::BenchError;

#[cfg(test)]
mod tests;

const FLUSH: &str = "volley_flush_duration_seconds";
const FRAMES: &str = "volley_frames_delivered_total";
const WRITES: &str = "volley_socket_writes_total";

/// The counters this reads, as scraped at one moment (or summed over gateways, or a difference).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub passes: u64,
    pub pass_seconds: f64,
    /// (upper bound in seconds, cumulative count), in the exposition's order.
    pub buckets: Vec<(f64, u64)>,
    pub frames: u64,
    pub writes: u64,
}

impl Sample {
    /// Parses the OpenMetrics text of one gateway. Missing series count as zero (the tokio
    /// engine makes no passes).
    pub fn parse(text: &str) -> Sample {
        let mut s = Sample::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if let Some(rest) = series.strip_prefix(FLUSH) {
                match rest {
                    "_count" => s.passes = v as u64,
                    "_sum" => s.pass_seconds = v,
                    _ => {
                        if let Some(le) = rest
                            .strip_prefix("_bucket{le=\"")
                            .and_then(|r| r.strip_suffix("\"}"))
                        {
                            let bound = if le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().unwrap_or(f64::INFINITY)
                            };
                            s.buckets.push((bound, v as u64));
                        }
                    }
                }
            } else if series == FRAMES {
                s.frames = v as u64;
            } else if series == WRITES {
                s.writes = v as u64;
            }
        }
        s
    }

    /// Adds another gateway's sample (same bucket layout: same binary).
    pub fn add(&mut self, other: &Sample) {
        self.passes += other.passes;
        self.pass_seconds += other.pass_seconds;
        self.frames += other.frames;
        self.writes += other.writes;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
    }

    /// What happened between `earlier` and this sample.
    pub fn since(&self, earlier: &Sample) -> Sample {
        Sample {
            passes: self.passes.saturating_sub(earlier.passes),
            pass_seconds: (self.pass_seconds - earlier.pass_seconds).max(0.0),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, &(le, n))| {
                    let before = earlier.buckets.get(i).map_or(0, |b| b.1);
                    (le, n.saturating_sub(before))
                })
                .collect(),
            frames: self.frames.saturating_sub(earlier.frames),
            writes: self.writes.saturating_sub(earlier.writes),
        }
    }

    /// The smallest bucket bound holding quantile `q` of the passes (a histogram only knows
    /// "at most this"); `None` without passes.
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.passes == 0 {
            return None;
        }
        let rank = (q * self.passes as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|&&(_, cumulative)| cumulative >= rank)
            .map(|&(le, _)| le)
    }

    pub fn report(&self) -> Option<PassReport> {
        if self.passes == 0 {
            return None;
        }
        let ms = |s: f64| s * 1000.0;
        Some(PassReport {
            passes: self.passes,
            mean_pass_ms: ms(self.pass_seconds / self.passes as f64),
            p50_pass_ms_at_most: self.quantile_bound(0.5).map(ms),
            p99_pass_ms_at_most: self.quantile_bound(0.99).map(ms),
            writes: self.writes,
            frames: self.frames,
            frames_per_write: if self.writes == 0 {
                0.0
            } else {
                self.frames as f64 / self.writes as f64
            },
        })
    }
}

/// The server's side of a phase's latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassReport {
    /// Flush passes over all shards of all gateways.
    pub passes: u64,
    pub mean_pass_ms: f64,
    /// Histogram bucket bounds (factor-2 buckets from 50 µs): the pass time is at most this.
    /// `None` when the quantile falls in the open-ended last bucket.
    pub p50_pass_ms_at_most: Option<f64>,
    pub p99_pass_ms_at_most: Option<f64>,
    /// Vectored writes to client sockets.
    pub writes: u64,
    pub frames: u64,
    /// Frames carried per write: above 1 means several messages went out in one syscall.
    pub frames_per_write: f64,
}

/// `GET /metrics` from a gateway's admin address.
pub async fn scrape(admin: SocketAddr) -> Result<Sample, BenchError> {
    let body = crate::http::get(admin, "/metrics").await?;
    Ok(Sample::parse(&String::from_utf8_lossy(&body)))
}

/// Summed over the gateways.
pub async fn scrape_all(admins: &[SocketAddr]) -> Result<Sample, BenchError> {
    let mut total = Sample::default();
    for &admin in admins {
        total.add(&scrape(admin).await?);
    }
    Ok(total)
}
