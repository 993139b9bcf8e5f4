//! The apply step's requests to the gateways over NATS: the drains of a scale-down and the
//! balancer's commands. Each request is counted in `volley_operator_control_requests_total`; each
//! carried out is remembered as connections in flight, which the next plans count once.

use volley_crds::wire::{self, ControlReply, ControlRequest};

use super::events::{self, Decision};
use super::memory::Key;
use super::plan::Now;
use super::{Context, SPREAD_MS};
use crate::balancer::{self, Command};
use crate::build::Valid;
use crate::metrics::OpLabel;
use crate::scaling::{CloseRequest, PodView};
use crate::stats;

/// Asks each of `pods` to drain over [`SPREAD_MS`]; returns those that did.
pub(crate) async fn drain(
    ctx: &Context,
    v: &Valid<'_>,
    client: &async_nats::Client,
    pods: &[String],
    now: Now,
) -> Vec<String> {
    let key: Key = (v.namespace.clone(), v.name.clone());
    let mut drained = Vec::new();
    for pod in pods {
        let req = ControlRequest::Drain { over_ms: SPREAD_MS };
        let Some(reply) = send(ctx, client, v, pod, &req, "drain").await else {
            continue;
        };
        ctx.memory.with(&key, |m| {
            m.closes.push(CloseRequest {
                pod: pod.clone(),
                at_ms: now.ms,
                count: reply.closing,
                spread_ms: SPREAD_MS,
            });
            m.drain_sent.insert(pod.clone(), now.secs);
        });
        drained.push(pod.clone());
    }
    drained
}

/// Sends one control request; the reply when the gateway carried it out.
async fn send(
    ctx: &Context,
    client: &async_nats::Client,
    v: &Valid<'_>,
    pod: &str,
    req: &ControlRequest,
    op: &'static str,
) -> Option<ControlReply> {
    let subject = wire::control_subject(&v.namespace, &v.name, pod);
    let result = stats::control(client, subject, req).await;
    if let Err(e) = &result {
        tracing::warn!(pod, op, error = %e, "control request failed");
    }
    let reply = result.ok().filter(|r| r.ok);
    let label = OpLabel {
        op,
        result: if reply.is_some() { "ok" } else { "error" },
    };
    ctx.metrics.control_requests.get_or_create(&label).inc();
    reply
}

/// Sends the balancer's commands ([`balancer::execute`] tells the balancer which failed); each
/// shed carried out is counted, remembered in flight and published as a Shedding Event. Returns
/// the connections asked to shed.
pub(crate) async fn balance(
    ctx: &Context,
    v: &Valid<'_>,
    client: &async_nats::Client,
    cmds: Vec<Command>,
    views: &[PodView],
    now: Now,
) -> u64 {
    let key: Key = (v.namespace.clone(), v.name.clone());
    let (ns, name) = (&v.namespace, &v.name);
    // Taken out for the awaits (reconciles of one object never overlap), put back after, also
    // when the reconcile is cancelled at its timeout mid-way: the rounds it holds then go on in
    // the next pass (their pods resumed on schedule) instead of being lost.
    let Some(b) = ctx.memory.with(&key, |m| m.balancer.take()) else {
        return 0;
    };
    let mut b = PutBack {
        ctx,
        key: key.clone(),
        balancer: Some(b),
    };
    let results = match b.balancer.as_mut() {
        Some(balancer) => balancer::execute(balancer, client, ns, name, cmds).await,
        None => Vec::new(),
    };
    drop(b);
    let balance = &v.pc.spec.balance;
    let mut shedding = 0;
    for (cmd, reply) in results {
        let label = OpLabel {
            op: cmd.op(),
            result: if reply.is_some() { "ok" } else { "error" },
        };
        ctx.metrics.control_requests.get_or_create(&label).inc();
        let (
            Command::Shed {
                pod,
                count,
                over_ms,
            },
            Some(reply),
        ) = (&cmd, reply)
        else {
            continue;
        };
        shedding += count;
        ctx.metrics.shed_connections.inc_by(*count);
        ctx.memory.with(&key, |m| {
            m.closes.push(CloseRequest {
                pod: pod.clone(),
                at_ms: now.ms,
                count: reply.closing,
                spread_ms: *over_ms,
            });
        });
        let from = views
            .iter()
            .find(|v| &v.name == pod)
            .map_or(0, |v| v.connections);
        let note = format!(
            "{pod}: shedding {count} of {from} connections over {}s with new connections \
             paused, towards the mean of {} pods (tolerance {})",
            over_ms / 1000,
            views.iter().filter(|v| !v.draining).count(),
            balance.tolerance
        );
        events::publish(
            ctx,
            v.pc,
            Decision::normal("Shedding", "Shed".into(), note).on(Some(pod)),
        )
        .await;
    }
    shedding
}

/// Puts a balancer taken out of memory back when dropped, whether the awaits in between finished
/// or were cancelled.
struct PutBack<'a> {
    ctx: &'a Context,
    key: Key,
    balancer: Option<balancer::Balancer>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.balancer.take() {
            self.ctx.memory.with(&self.key, |m| m.balancer = Some(b));
        }
    }
}
