//! The observe step: the only reads before deciding. The NATS connection (and the credentials
//! Secret it needs), the Deployment, the gateway pods and the stats snapshot, gathered into
//! plain data ([`Observed`]) that the pure plan step takes.

use std::time::SystemTime;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;

use super::Context;
use crate::build::{self, Valid};
use crate::gateway_config::redact_nats_url;
use crate::stats::{self, Seen, Source};

/// The NATS connection as far as deciding and the status care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NatsView {
    /// No `spec.nats`: gateways run standalone, no stats.
    Standalone,
    /// Connected.
    Connected,
    /// Could not connect (why).
    Failed(String),
}

impl NatsView {
    /// Whether the gateways' stats and control requests are reachable.
    pub(crate) fn connected(&self) -> bool {
        matches!(self, Self::Connected)
    }
}

/// The Deployment as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeploymentView {
    /// `spec.replicas`.
    pub(crate) wanted: Option<i32>,
    /// `status.replicas`.
    pub(crate) replicas: i32,
    /// `status.readyReplicas`.
    pub(crate) ready: i32,
    /// `status.updatedReplicas`.
    pub(crate) updated: i32,
    /// `status.observedGeneration` has caught up with `metadata.generation`: the counts above
    /// describe the latest spec (true when the listing carries no generation).
    pub(crate) observed: bool,
}

impl DeploymentView {
    pub(crate) fn of(d: &Deployment) -> Self {
        let status = d.status.as_ref();
        Self {
            wanted: d.spec.as_ref().and_then(|s| s.replicas),
            replicas: status.and_then(|s| s.replicas).unwrap_or(0),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
            observed: d
                .metadata
                .generation
                .is_none_or(|g| status.and_then(|s| s.observed_generation).unwrap_or(0) >= g),
        }
    }
}

/// Everything one reconcile knows of the world.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    /// The NATS connection's state.
    pub(crate) nats: NatsView,
    /// The Deployment, if it exists.
    pub(crate) deployment: Option<DeploymentView>,
    /// The gateway pods (by the cluster's selector).
    pub(crate) pods: Vec<Pod>,
    /// Fresh stats of this cluster's gateways.
    pub(crate) stats: Vec<Seen>,
}

/// Reads the world; also returns the NATS client, when connected, for the apply step.
#[tracing::instrument(name = "observe", skip_all, fields(namespace = %v.namespace, cluster = %v.name))]
pub(crate) async fn observe(
    v: &Valid<'_>,
    ctx: &Context,
) -> Result<(Observed, Option<async_nats::Client>), kube::Error> {
    let (ns, name) = (&v.namespace, &v.name);
    let (nats, client, source) = nats(v, ctx).await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let deployment = deployments
        .get_opt(name)
        .await?
        .as_ref()
        .map(DeploymentView::of);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pods = pods
        .list(&ListParams::default().labels(&build::selector_string(name)))
        .await?
        .items;
    // Only what came in on this cluster's own connection (its NATS account): a user of another
    // account can publish on this cluster's stats subjects too (finding 8 of review 2).
    let stats = source.map_or_else(Vec::new, |source| {
        ctx.stats
            .snapshot_from(&source, ns, name, ctx.stats_max_age, SystemTime::now())
    });
    let observed = Observed {
        nats,
        deployment,
        pods,
        stats,
    };
    Ok((observed, client))
}

/// Connects (through the pool) to the cluster's NATS, with the credentials from its Secret.
/// Also returns the stats [`Source`] of that connection, once the credentials are known.
async fn nats(
    v: &Valid<'_>,
    ctx: &Context,
) -> Result<(NatsView, Option<async_nats::Client>, Option<Source>), kube::Error> {
    let Some(nats) = &v.pc.spec.nats else {
        return Ok((NatsView::Standalone, None, None));
    };
    let creds = match &nats.credentials_secret {
        Some(name) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &v.namespace);
            let secret = secrets.get_opt(name).await?;
            let creds = secret
                .and_then(|s| s.data)
                .and_then(|d| d.get("creds").cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            match creds {
                Some(c) => Some(c),
                None => {
                    let why = format!("Secret {name:?} has no key \"creds\"");
                    return Ok((NatsView::Failed(why), None, None));
                }
            }
        }
        None => None,
    };
    let source = Some(Source::new(&nats.url, creds.as_deref()));
    Ok(match ctx.nats.client(&nats.url, creds.as_deref()).await {
        Ok(c) if stats::is_connected(&c) => (NatsView::Connected, Some(c), source),
        Ok(_) => (
            // The status is read more widely than the spec: no credentials in it.
            NatsView::Failed(format!("not connected to {}", redact_nats_url(&nats.url))),
            None,
            source,
        ),
        Err(e) => (NatsView::Failed(e.to_string()), None, source),
    })
}
