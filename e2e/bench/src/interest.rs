//! Is the cluster ready to publish? A gateway subscribes to NATS asynchronously, when its first
//! client for a topic arrives, so a message published before its subscription reaches the server
//! would be lost on that gateway. This computes how many gateways must hold each subject and
//! polls the server's `/connz?subs=1` until it shows every one of them, within a time bound. A
//! subscription the gateways will never make (a topic they refuse, such as another user's
//! `user.*` for anonymous clients) ends the wait once nothing has moved for a while, and is
//! reported, so the run goes on and its loss is explained rather than the run aborted.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::BenchError;
use crate::plan::{self, Shape};
use crate::publisher::nats::subject;

#[cfg(test)]
mod tests;

/// Subject → how many gateways must hold a subscription on it. `ranges[k]` went to gateway
/// `gateway_of[k]`; connections in `failed` never subscribed anything.
pub fn expected(
    shape: &Shape,
    ranges: &[Range<usize>],
    gateway_of: &[usize],
    failed: &[usize],
    prefix: &str,
) -> HashMap<String, u64> {
    let failed: HashSet<usize> = failed.iter().copied().collect();
    let zipf = plan::zipf_plan(shape);
    // A gateway holds one subscription per subject however many of its clients want it.
    let mut per_gateway: HashMap<usize, HashSet<String>> = HashMap::new();
    for (range, &g) in ranges.iter().zip(gateway_of) {
        let topics = per_gateway.entry(g).or_default();
        for i in range.clone().filter(|i| !failed.contains(i)) {
            topics.extend(plan::connection_topics(shape, zipf.as_ref(), i));
        }
    }
    let mut out: HashMap<String, u64> = HashMap::new();
    for topic in per_gateway.into_values().flatten() {
        *out.entry(subject(prefix, &topic)).or_default() += 1;
    }
    out
}

/// The part of the `/connz?subs=1` answer this needs.
#[derive(Debug, Default, Deserialize)]
pub struct Connz {
    #[serde(default)]
    pub connections: Vec<Connection>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Connection {
    #[serde(default)]
    pub subscriptions_list: Vec<String>,
}

/// Subject → how many connections hold a subscription on it.
pub fn held(connz: &Connz) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for c in &connz.connections {
        let subjects: HashSet<&String> = c.subscriptions_list.iter().collect();
        for s in subjects {
            *out.entry(s.clone()).or_default() += 1;
        }
    }
    out
}

/// The first subject (in name order) held by fewer connections than wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub subject: String,
    pub held: u64,
    pub wanted: u64,
    /// Subjects short in all.
    pub missing: usize,
}

pub fn shortfall(
    expected: &HashMap<String, u64>,
    held: &HashMap<String, u64>,
) -> Option<Shortfall> {
    let mut short: Vec<(&String, u64, u64)> = expected
        .iter()
        .map(|(s, &wanted)| (s, held.get(s).copied().unwrap_or(0), wanted))
        .filter(|&(_, h, w)| h < w)
        .collect();
    let missing = short.len();
    short.sort_unstable();
    short.first().map(|&(s, held, wanted)| Shortfall {
        subject: s.clone(),
        held,
        wanted,
        missing,
    })
}

/// `GET /connz?subs=1` from the monitoring port.
pub async fn connz(monitor: SocketAddr) -> Result<Connz, BenchError> {
    let body = crate::http::get(monitor, "/connz?subs=1&limit=4096").await?;
    Ok(serde_json::from_slice(&body)?)
}

/// How the wait for the gateways' subscriptions ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub waited: Duration,
    /// `None` when every expected subscription was there.
    pub short: Option<Shortfall>,
}

/// Polls `/connz` until every expected subscription is there, or until `timeout`, or until the
/// number of missing subjects has not dropped for `stall`.
pub async fn wait(
    monitor: SocketAddr,
    expected: &HashMap<String, u64>,
    timeout: Duration,
    stall: Duration,
) -> Result<Readiness, BenchError> {
    let started = Instant::now();
    let mut fewest = usize::MAX;
    let mut progress_at = started;
    loop {
        let short = shortfall(expected, &held(&connz(monitor).await?));
        let Some(short) = short else {
            return Ok(Readiness {
                waited: started.elapsed(),
                short: None,
            });
        };
        if short.missing < fewest {
            fewest = short.missing;
            progress_at = Instant::now();
        }
        if started.elapsed() >= timeout || progress_at.elapsed() >= stall {
            return Ok(Readiness {
                waited: started.elapsed(),
                short: Some(short),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
