//! Cluster protocol, gateway side: publishes this gateway's stats on
//! `volley.stats.<namespace>.<cluster>.<pod>` and answers the operator's requests on
//! `volley.control.<namespace>.<cluster>.<pod>` (shed, drain, accepting).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::Client;
use tokio_stream::StreamExt;
use volley_wire::{self as wire, ControlReply, ControlRequest, GatewayStats};

use crate::capacity::Capacity;
use crate::config::PodIdentity;
use crate::hub::Hub;

/// What the stats and control tasks need.
#[derive(Clone)]
pub(crate) struct ClusterNode {
    pub client: Client,
    pub identity: PodIdentity,
    pub hub: Arc<Hub>,
    pub capacity: Arc<Capacity>,
    pub started_at: SystemTime,
}

impl ClusterNode {
    /// Publishes stats every `interval`, forever. A NATS outage only delays them.
    pub(crate) async fn publish_stats(self, interval: Duration) {
        let subject = wire::stats_subject(
            &self.identity.namespace,
            &self.identity.cluster,
            &self.identity.pod,
        );
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let stats = self.stats();
            let body = match serde_json::to_vec(&stats) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode stats");
                    continue;
                }
            };
            if let Err(e) = self.client.publish(subject.clone(), body.into()).await {
                tracing::debug!(error = %e, "stats not published");
            }
        }
    }

    pub(crate) fn stats(&self) -> GatewayStats {
        let capacity = &self.capacity;
        let metrics = &capacity.metrics;
        GatewayStats {
            namespace: self.identity.namespace.clone(),
            cluster: self.identity.cluster.clone(),
            pod: self.identity.pod.clone(),
            connections: capacity.open_connections() as u64,
            connections_per_shard: capacity
                .connections_per_shard()
                .into_iter()
                .map(|c| c as u64)
                .collect(),
            subscriptions: capacity.subscriptions() as u64,
            topics: metrics.nats_subscriptions.get().max(0) as u64,
            accepting: capacity.readiness().is_ok(),
            draining: capacity.is_draining(),
            delivered: metrics.frames_delivered.get(),
            dropped: metrics.dropped.get(),
            slow_consumer_closes: metrics.slow_consumer_closes.get(),
            rss_bytes: rss_bytes().unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: humantime::format_rfc3339_seconds(self.started_at).to_string(),
        }
    }

    /// Answers control requests until the subscription ends.
    pub(crate) async fn serve_control(self) {
        let subject = wire::control_subject(
            &self.identity.namespace,
            &self.identity.cluster,
            &self.identity.pod,
        );
        let mut requests = match self.client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%subject, error = %e, "cannot subscribe to control requests");
                return;
            }
        };
        while let Some(request) = requests.next().await {
            let reply = match serde_json::from_slice::<ControlRequest>(&request.payload) {
                Ok(parsed) => {
                    tracing::info!(request = ?parsed, "control request");
                    self.apply(parsed)
                }
                Err(e) => ControlReply {
                    ok: false,
                    error: Some(format!("malformed control request: {e}")),
                    accepting: self.capacity.readiness().is_ok(),
                    draining: self.capacity.is_draining(),
                    ..ControlReply::default()
                },
            };
            if let Some(inbox) = request.reply {
                match serde_json::to_vec(&reply) {
                    Ok(body) => {
                        if let Err(e) = self.client.publish(inbox, body.into()).await {
                            tracing::warn!(error = %e, "cannot reply to a control request");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot encode control reply"),
                }
            }
        }
    }

    fn apply(&self, request: ControlRequest) -> ControlReply {
        apply(&self.hub, &self.capacity, request)
    }
}

/// Carries out a control request. A shed some shards refused (their inbox full) is still `ok`
/// when others took their part: `closing` says how many will close (the operator counts those
/// as in flight, and would shed the pod again if told nothing was done) and `error` why the rest
/// will not. `ok:false` only when nothing was taken, or a drain a shard could not take.
fn apply(hub: &Hub, capacity: &Capacity, request: ControlRequest) -> ControlReply {
    let (closing, error, partial_ok) = match request {
        ControlRequest::Shed { count, over_ms } => {
            let split = split_shed(count as usize, &capacity.connections_per_shard());
            let total = split.iter().sum::<usize>();
            let refused = hub.shed(&split, Duration::from_millis(over_ms));
            let error = (refused > 0).then(|| {
                format!(
                    "{refused} of the {total} connections to shed will not be: their shard's \
                     inbox is full (overloaded); ask again"
                )
            });
            let closing = (total - refused) as u64;
            (closing, error, closing > 0)
        }
        ControlRequest::Drain { over_ms } => {
            let open = capacity.open_connections() as u64;
            capacity.start_draining();
            let refused = hub.drain(Duration::from_millis(over_ms));
            let error =
                (refused > 0).then(|| format!("{refused} shards have exited and cannot drain"));
            (open, error, false)
        }
        ControlRequest::Accepting { value } => {
            capacity.set_accepting(value);
            (0, None, false)
        }
    };
    ControlReply {
        ok: error.is_none() || partial_ok,
        closing,
        accepting: capacity.readiness().is_ok(),
        draining: capacity.is_draining(),
        error,
    }
}

/// Splits `count` sheds over shards in proportion to their connections (largest remainder
/// first), never asking a shard for more than it has.
pub fn split_shed(count: usize, per_shard: &[usize]) -> Vec<usize> {
    let total: usize = per_shard.iter().sum();
    let count = count.min(total);
    if count == 0 {
        return vec![0; per_shard.len()];
    }
    let mut split: Vec<usize> = per_shard.iter().map(|&n| n * count / total).collect();
    let mut left = count - split.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..per_shard.len()).collect();
    // Largest fractional part first; ties go to the fuller shard.
    order.sort_by_key(|&i| {
        let remainder = per_shard[i] * count % total;
        (
            std::cmp::Reverse(remainder),
            std::cmp::Reverse(per_shard[i]),
        )
    });
    for i in order.into_iter().cycle().take(per_shard.len() * 2) {
        if left == 0 {
            break;
        }
        if split[i] < per_shard[i] {
            split[i] += 1;
            left -= 1;
        }
    }
    split
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests;
