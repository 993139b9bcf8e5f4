//! Who connects where: splitting N connections over K processes, picking each connection's
//! source address, and its subscriptions for each load shape. Pure, so every process computes
//! the same plan from the same parameters.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::zipf::{Rng, Zipf};

#[cfg(test)]
mod tests;

/// The topic every connection of the shared and per-user shapes subscribes to.
pub const BROADCAST: &str = "bench.all";

/// Splits `n` connections into contiguous ranges of at most `max_per_process`, as even as
/// possible (sizes differ by at most one).
pub fn split(n: usize, max_per_process: usize) -> Vec<Range<usize>> {
    split_into(n, n.div_ceil(max_per_process.max(1)))
}

/// Like [`split`], with the number of ranges rounded up to a multiple of `groups`, so that
/// handing range `k` to group [`group_of`]`(k)` gives every group (gateway) the same number of
/// processes, and connections that differ by at most one per process.
pub fn split_over(n: usize, max_per_process: usize, groups: usize) -> Vec<Range<usize>> {
    let groups = groups.max(1);
    let k = n.div_ceil(max_per_process.max(1)).div_ceil(groups) * groups;
    // Never more ranges than connections: an empty process would only cost a spawn.
    split_into(n, k.min(n))
}

/// Which of `groups` groups (gateways) range `k` of [`split_over`] goes to: round-robin.
pub fn group_of(k: usize, groups: usize) -> usize {
    k % groups.max(1)
}

/// `n` connections in `k` contiguous ranges whose sizes differ by at most one.
fn split_into(n: usize, k: usize) -> Vec<Range<usize>> {
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let base = n / k;
    let extra = n % k;
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Source address of connection `i`: 127.0.0.2, 127.0.0.3, ... round-robin over `count`
/// addresses, so each address has its own ephemeral port range towards the server.
pub fn source_addr(i: usize, count: usize) -> Ipv4Addr {
    let k = (i % count.clamp(1, 250)) as u32;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + k)
}

/// How connections subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Shape {
    /// Everyone on [`BROADCAST`].
    Shared,
    /// `user.<i>` plus [`BROADCAST`].
    PerUser,
    /// One of `topics` topics `zipf.<k>`, k drawn Zipf(`s`) per connection.
    Zipf { topics: usize, s: f64, seed: u64 },
}

impl Shape {
    /// The topics connection `i` subscribes to (by URL).
    pub fn topics(&self, i: usize) -> Vec<String> {
        match *self {
            Shape::Shared => vec![BROADCAST.to_owned()],
            Shape::PerUser => vec![user_topic(i), BROADCAST.to_owned()],
            Shape::Zipf { topics, s, seed } => {
                // Rebuilding the table per call is fine for tests; callers that plan many
                // connections use `ZipfPlan`.
                vec![ZipfPlan::new(topics, s, seed).topic(i)]
            }
        }
    }
}

pub fn user_topic(i: usize) -> String {
    format!("user.{i}")
}

/// Zipf topic assignment with the table built once.
#[derive(Debug, Clone)]
pub struct ZipfPlan {
    zipf: Zipf,
    seed: u64,
}

impl ZipfPlan {
    pub fn new(topics: usize, s: f64, seed: u64) -> ZipfPlan {
        ZipfPlan {
            zipf: Zipf::new(topics, s),
            seed,
        }
    }

    pub fn topic(&self, i: usize) -> String {
        let mut rng = Rng::new(self.seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        format!("zipf.{}", self.zipf.sample(&mut rng))
    }
}

/// The topics connection `i` subscribes to, with the Zipf table built once by the caller.
pub fn connection_topics(shape: &Shape, zipf: Option<&ZipfPlan>, i: usize) -> Vec<String> {
    match (shape, zipf) {
        (Shape::Zipf { .. }, Some(plan)) => vec![plan.topic(i)],
        _ => shape.topics(i),
    }
}

/// The Zipf table of a shape, when it has one.
pub fn zipf_plan(shape: &Shape) -> Option<ZipfPlan> {
    match *shape {
        Shape::Zipf { topics, s, seed } => Some(ZipfPlan::new(topics, s, seed)),
        _ => None,
    }
}

/// The `?topics=` query of connection `i` (topics here never need escaping).
pub fn query(shape: &Shape, zipf: Option<&ZipfPlan>, i: usize) -> String {
    format!("?topics={}", connection_topics(shape, zipf, i).join(","))
}

/// Subscribers per topic over the connections that did connect.
pub fn subscribers(shape: &Shape, n: usize, failed: &[usize]) -> HashMap<String, u64> {
    let zipf = zipf_plan(shape);
    let mut failed_sorted = failed.to_vec();
    failed_sorted.sort_unstable();
    let mut map: HashMap<String, u64> = HashMap::new();
    for i in 0..n {
        if failed_sorted.binary_search(&i).is_ok() {
            continue;
        }
        for t in connection_topics(shape, zipf.as_ref(), i) {
            *map.entry(t).or_default() += 1;
        }
    }
    map
}
