//! What the limit reference tells `GET /metrics`: its passes, frames and writes under the
//! gateway's series names, so the bench's passes table (`crate::passes`) shows the reference's
//! writes per pass beside the gateway's.

use std::fmt::Write as _;
use std::time::Duration;

/// Counts a run leaves, for tests, `/metrics` and the exit line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub published: u64,
    pub passes: u64,
    /// Vectored writes to client sockets (`writev` calls, or `IORING_OP_WRITEV` requests).
    pub writes: u64,
    /// Message frames queued to connections (one batch of k frames to n connections: k × n).
    pub frames: u64,
    /// `io_uring_enter` calls of the io_uring variant (0 for writev).
    pub enters: u64,
}

/// Upper bound of the first bucket: the gateway's factor-2 buckets start at 50 µs.
const FIRST_BUCKET: Duration = Duration::from_micros(50);
/// Finite buckets: 50 µs × 2^15 ≈ 1.6 s is the last bound before `+Inf`.
const BUCKETS: usize = 16;

/// Pass durations, as a cumulative-on-render histogram.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassTimes {
    /// Passes per bucket (not cumulative); the last one is `+Inf`.
    counts: [u64; BUCKETS + 1],
    sum: Duration,
}

impl PassTimes {
    pub fn observe(&mut self, took: Duration) {
        self.sum += took;
        let bucket = (0..BUCKETS)
            .find(|&i| took <= FIRST_BUCKET * (1 << i))
            .unwrap_or(BUCKETS);
        self.counts[bucket] += 1;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The OpenMetrics-style text of `/metrics`.
pub fn render(counts: &Counts, times: &PassTimes) -> String {
    let mut out = String::from("# TYPE volley_flush_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (i, n) in times.counts.iter().enumerate() {
        cumulative += n;
        let le = if i < BUCKETS {
            (FIRST_BUCKET * (1 << i)).as_secs_f64().to_string()
        } else {
            "+Inf".to_owned()
        };
        let _ = writeln!(
            out,
            "volley_flush_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "volley_flush_duration_seconds_sum {}\nvolley_flush_duration_seconds_count {}\n\
         # TYPE volley_frames_delivered_total counter\nvolley_frames_delivered_total {}\n\
         # TYPE volley_socket_writes_total counter\nvolley_socket_writes_total {}\n\
         # TYPE volley_reference_ring_enters_total counter\nvolley_reference_ring_enters_total {}\n\
         # TYPE volley_reference_published_total counter\nvolley_reference_published_total {}",
        times.sum.as_secs_f64(),
        cumulative,
        counts.frames,
        counts.writes,
        counts.enters,
        counts.published,
    );
    out
}

#[cfg(test)]
mod tests;
