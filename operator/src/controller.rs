//! The reconcile loop: the thin IO shell around [`crate::build`] and [`crate::scaling`].
//!
//! Each reconcile validates the spec (a bad one becomes `Ready=False, reason=InvalidSpec`),
//! reads the stats stream, deletes pods stuck draining, decides replicas, runs the safe
//! scale-down protocol of [`crate::scaledown`] (deletion costs and drains first, the lower
//! replica count only once the victims rank first), server-side-applies the children with one
//! field manager, rebalances, and writes the status. Every decision is an Event, a log line and
//! a metric. It requeues itself every [`RESYNC`] because stats change without Kubernetes events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use volley_crds::wire::{self, ControlReply, ControlRequest};
use volley_crds::{AutoscalingMode, PodStatus, PushCluster, PushClusterStatus, condition};

use crate::balancer::{self, Balancer, Command, Timing};
use crate::build::{self, BuildError, BuildOptions, MANAGER};
use crate::conditions::{self, Cond};
use crate::metrics::{DecisionLabel, Metrics, OpLabel, ReasonLabel, ResultLabel};
use crate::scaledown::{self, DrainWatch, PodFacts};
use crate::scaling::{self, CloseRequest, History, PodView, ScaleInput};
use crate::stats::{self, NatsPool, StatsStore};

/// Periodic re-reconcile: the stats stream is not a Kubernetes watch.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Back-off after a failed reconcile.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(30);
pub use crate::scaledown::DELETION_COST;

/// Requeue while a scale-down waits, a pod is paused for balancing or pods are missing: these
/// change within seconds and the next step should follow promptly.
pub const FAST_RESYNC: Duration = Duration::from_secs(2);
/// How long fewer pods than desired may be ready before `Ready` turns False.
pub const READY_GRACE: Duration = Duration::from_secs(20);
/// Added to drainTimeout before a draining pod that was not deleted counts as stuck.
pub const DRAIN_STUCK_MARGIN: Duration = Duration::from_secs(30);
/// Condition and Event reason for a spec the operator refuses.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Shed and drain requests spread their closes over this window.
pub const SPREAD_MS: u64 = 10_000;

/// Reconcile failures (retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes API error.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace/uid yet.
    #[error("PushCluster is not stored yet")]
    NotStored,
    /// The build step rejected a spec the validation accepted (a bug; retried, never a panic).
    #[error("invalid spec: {0}")]
    Spec(#[from] crate::gateway_config::SpecError),
}

impl Error {
    /// Label of `volley_operator_reconcile_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube_api",
            Self::NotStored => "not_stored",
            Self::Spec(_) => "build",
        }
    }
}

/// Per-PushCluster memory that is not in the status.
#[derive(Debug, Default)]
struct ClusterMemory {
    /// Scaling recommendations (stabilization windows).
    history: History,
    /// When pods were first seen draining (stuck-drain net).
    drains: DrainWatch,
    /// When the current scale-down started waiting for its victims.
    scale_down_since: Option<u64>,
    /// Since when fewer pods than desired are ready.
    short_since: Option<u64>,
    /// Recent shed and drain requests (connections in flight).
    closes: Vec<CloseRequest>,
    /// Balancing rounds (created on first use with the context's timing).
    balancer: Option<Balancer>,
    /// The spec.replicas value last reported as overridden.
    overridden: Option<i32>,
    /// spec.replicas as last seen (`None`: never looked).
    spec_replicas_seen: Option<Option<i32>>,
    /// Pods last reported without fresh stats.
    stale: Vec<String>,
    /// Since when each live pod has had no fresh stats.
    missing_since: HashMap<String, u64>,
    /// When each victim was last asked to drain.
    drain_sent: HashMap<String, u64>,
}

/// Everything reconcile needs.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Build settings.
    pub options: BuildOptions,
    /// Latest gateway stats.
    pub stats: StatsStore,
    /// NATS connections.
    pub nats: NatsPool,
    /// Metrics.
    pub metrics: Metrics,
    /// Stats older than this are ignored.
    pub stats_max_age: Duration,
    /// Added to drainTimeout before a draining pod counts as stuck (tests shorten it).
    pub drain_stuck_margin: Duration,
    /// Timing of balancing rounds (tests shorten it).
    pub balance_timing: Timing,
    /// How long fewer pods than desired may be ready before `Ready` turns False.
    pub ready_grace: Duration,
    /// The one Event recorder of this process: long-lived so repeated events become a series
    /// (one Event patched with a count) instead of a new Event each time.
    pub recorder: Recorder,
    memory: Arc<Mutex<HashMap<(String, String), ClusterMemory>>>,
}

impl Context {
    /// A context with default stats age. Events are reported as `volley-operator`, instance
    /// `$POD_NAME` when set.
    pub fn new(client: Client, options: BuildOptions, metrics: Metrics) -> Self {
        let stats = StatsStore::default();
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            options,
            nats: NatsPool::new(stats.clone()),
            stats,
            metrics,
            stats_max_age: stats::DEFAULT_MAX_AGE,
            drain_stuck_margin: DRAIN_STUCK_MARGIN,
            balance_timing: Timing::default(),
            ready_grace: READY_GRACE,
            memory: Arc::default(),
        }
    }

    /// Runs `f` on this cluster's memory (never across an await).
    fn mem<T>(&self, key: &(String, String), f: impl FnOnce(&mut ClusterMemory) -> T) -> T {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        f(memory.entry(key.clone()).or_default())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await?;
    Ok(())
}

/// Deletes child `name` of kind `K` if it exists and `owner` is its controller: a child the
/// current spec no longer yields. Objects owned by someone else are never touched.
async fn prune<K>(client: &Client, ns: &str, name: &str, owner: &PushCluster) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = owner.metadata.uid.as_deref();
    let owned = existing
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid);
    if owned {
        // Precondition on the uid we looked at, so a re-created object is not deleted.
        let dp = DeleteParams {
            preconditions: existing
                .meta()
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
            ..DeleteParams::background()
        };
        match api.delete(name, &dp).await {
            Ok(_) => tracing::info!(kind = %K::kind(&()), name, "pruned"),
            Err(kube::Error::Api(e)) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// NATS state of one cluster for this reconcile.
enum NatsState {
    /// No `spec.nats`: gateways run standalone, no stats.
    Standalone,
    /// Connected.
    Connected(async_nats::Client),
    /// Could not connect.
    Failed(String),
}

async fn nats_state(pc: &PushCluster, ns: &str, ctx: &Context) -> Result<NatsState, Error> {
    let Some(nats) = &pc.spec.nats else {
        return Ok(NatsState::Standalone);
    };
    let creds = match &nats.credentials_secret {
        Some(name) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            let secret = secrets.get_opt(name).await?;
            let creds = secret
                .and_then(|s| s.data)
                .and_then(|d| d.get("creds").cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            match creds {
                Some(c) => Some(c),
                None => {
                    return Ok(NatsState::Failed(format!(
                        "Secret {name:?} has no key \"creds\""
                    )));
                }
            }
        }
        None => None,
    };
    Ok(match ctx.nats.client(&nats.url, creds.as_deref()).await {
        Ok(c) if stats::is_connected(&c) => NatsState::Connected(c),
        Ok(_) => NatsState::Failed(format!("not connected to {}", nats.url)),
        Err(e) => NatsState::Failed(e.to_string()),
    })
}

/// Reconciles one PushCluster.
pub async fn reconcile(pc: Arc<PushCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&pc, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok((_, true)) => "invalid_spec",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabel { result: label })
        .inc();
    let failure = match &result {
        Ok((_, true)) => Some("invalid_spec"),
        Ok(_) => None,
        Err(e) => Some(e.reason()),
    };
    if let Some(reason) = failure {
        ctx.metrics
            .failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
    result.map(|(a, _)| a)
}

/// Error policy: log and back off.
pub fn error_policy(pc: Arc<PushCluster>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %pc.name_any(), error = %err, "reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

async fn patch_status(
    ctx: &Context,
    pc: &PushCluster,
    ns: &str,
    status: PushClusterStatus,
) -> Result<(), Error> {
    let api: Api<PushCluster> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": PushCluster::api_version(&()),
        "kind": PushCluster::kind(&()),
        "status": status,
    });
    api.patch_status(&pc.name_any(), &apply_params(), &Patch::Apply(&body))
        .await?;
    Ok(())
}

/// Returns the action and whether the spec was invalid (for metrics).
async fn reconcile_inner(pc: &PushCluster, ctx: &Context) -> Result<(Action, bool), Error> {
    let ns = pc.namespace().ok_or(Error::NotStored)?;
    let name = pc.name_any();
    let generation = pc.metadata.generation;
    let now_time = Time(Timestamp::now());
    let mut status = pc.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.selector = build::selector_string(&name);

    // A bad spec is the user's to fix: say so on the object (condition + Warning Event), change
    // nothing else (no child is touched) and wait for a change.
    if let Err(e) = crate::gateway_config::render(pc) {
        let message = e.to_string();
        conditions::set(
            &mut status.conditions,
            Cond {
                type_: condition::READY,
                status: false,
                reason: INVALID_SPEC,
                message: message.clone(),
            },
            generation,
            &now_time,
        );
        patch_status(ctx, pc, &ns, status).await?;
        let event = Event {
            type_: EventType::Warning,
            reason: INVALID_SPEC.into(),
            note: Some(message),
            action: "Validate".into(),
            secondary: None,
        };
        // The condition already says it; a lost Event is logged, not retried.
        if let Err(err) = ctx.recorder.publish(&event, &pc.object_ref(&())).await {
            tracing::warn!(cluster = %name, error = %err, "publishing the InvalidSpec event failed");
        }
        return Ok((Action::await_change(), true));
    }

    let nats = nats_state(pc, &ns, ctx).await?;
    let connected = matches!(nats, NatsState::Connected(_));
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = deployments.get_opt(&name).await?;
    let current = existing
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or_else(|| pc.spec_replicas());
    let dstatus = existing.as_ref().and_then(|d| d.status.as_ref());
    let replicas = dstatus.and_then(|s| s.replicas).unwrap_or(0);
    let ready = dstatus.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = dstatus.and_then(|s| s.updated_replicas).unwrap_or(0);

    // Only stats of pods that exist and are not terminating count.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&build::selector_string(&name)))
        .await?;
    let wall = SystemTime::now();
    let seen = ctx.stats.snapshot(&ns, &name, ctx.stats_max_age, wall);
    let by_pod: HashMap<String, (u64, bool)> = seen
        .iter()
        .map(|s| (s.stats.pod.clone(), (s.stats.connections, s.stats.draining)))
        .collect();
    let mut facts = scaledown::pod_facts(&pods.items, &by_pod);
    let now = unix_now();
    let now_ms = unix_now_ms();
    let drain_secs = crate::gateway_config::render(pc)
        .map_or(crate::gateway_config::DEFAULT_DRAIN, |v| v.drain)
        .as_secs();
    let stuck_limit = drain_secs + ctx.drain_stuck_margin.as_secs();
    let key = (ns.clone(), name.clone());
    let target = pc.spec.autoscaling.target_connections_per_pod;

    // Safety net: a pod that has been draining past drainTimeout + margin without being deleted
    // serves nobody; delete it so the ReplicaSet replaces it (or, mid scale-down, removes it).
    let stuck = if connected {
        ctx.mem(&key, |m| m.drains.observe(&facts, now, stuck_limit))
    } else {
        Vec::new()
    };
    for pod in &stuck {
        delete_pod(&pods_api, &pods.items, pod).await?;
        ctx.mem(&key, |m| m.drains.forget(pod));
        ctx.metrics.stuck_drains.inc();
        let note = format!(
            "pod {pod} has been draining for more than {stuck_limit}s (drainTimeout {drain_secs}s + \
             margin) without being deleted; deleted it so the ReplicaSet replaces or removes it"
        );
        let on = Some(pod_ref(&ns, pod));
        decision(
            ctx,
            pc,
            EventType::Warning,
            "DrainStuck",
            "Delete".into(),
            on,
            note,
        )
        .await;
    }
    facts.retain(|f| !stuck.contains(&f.name));

    let seen: Vec<_> = seen
        .into_iter()
        .filter(|s| facts.iter().any(|f| f.name == s.stats.pod))
        .collect();
    let views: Vec<PodView> = seen.iter().map(stats::pod_view).collect();
    let stats_complete = connected && !facts.is_empty() && views.len() == facts.len();
    // A pod counts as stale once it has been without fresh stats for longer than the stats max
    // age: a pod that just started has not published yet, which is no news.
    let max_age = ctx.stats_max_age.as_secs();
    let (stale, newly_stale) = ctx.mem(&key, |m| {
        let missing: Vec<&str> = facts
            .iter()
            .filter(|f| f.connections.is_none())
            .map(|f| f.name.as_str())
            .collect();
        m.missing_since.retain(|p, _| missing.contains(&p.as_str()));
        let mut stale: Vec<String> = missing
            .iter()
            .filter(|p| {
                let since = *m.missing_since.entry((*p).to_string()).or_insert(now);
                now.saturating_sub(since) >= max_age
            })
            .map(|p| (*p).to_string())
            .collect();
        stale.sort();
        let changed = m.stale != stale;
        m.stale.clone_from(&stale);
        let newly = changed && !stale.is_empty();
        (stale, newly)
    });
    if connected && newly_stale {
        let note = format!(
            "no stats newer than {}s from {}: scale-down and balancing wait for them",
            ctx.stats_max_age.as_secs(),
            stale.join(", ")
        );
        let on = stale.first().map(|p| pod_ref(&ns, p));
        decision(
            ctx,
            pc,
            EventType::Warning,
            "StatsStale",
            "Observe".into(),
            on,
            note,
        )
        .await;
    }

    // Connections closed after their pod's last stats may be counted twice (there and where the
    // client reconnected): count them once.
    let stats_at: HashMap<String, u64> = seen
        .iter()
        .map(|s| {
            let ms =
                s.at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            (s.stats.pod.clone(), ms)
        })
        .collect();
    let in_flight = ctx.mem(&key, |m| {
        let keep = SPREAD_MS + u64::try_from(ctx.stats_max_age.as_millis()).unwrap_or(0);
        m.closes.retain(|c| c.at_ms + keep > now_ms);
        scaling::in_flight(&m.closes, &|p| stats_at.get(p).copied(), now_ms)
    });
    let input = ScaleInput {
        spec: &pc.spec.autoscaling,
        current,
        pods: &views,
        in_flight,
        stats_complete,
        now,
    };
    let total = scaling::effective_total(&input);

    let desired = match pc.spec.autoscaling.mode {
        AutoscalingMode::Operator if connected => {
            ctx.mem(&key, |m| scaling::desired_replicas(input, &mut m.history))
        }
        // Without stats the operator cannot judge load: keep the count, within bounds.
        AutoscalingMode::Operator => {
            let a = &pc.spec.autoscaling;
            current.clamp(a.min_replicas.max(0), a.max_replicas.max(a.min_replicas))
        }
        AutoscalingMode::External | AutoscalingMode::Manual => pc.spec_replicas(),
    };

    // `kubectl scale` writes spec.replicas; in mode Operator the autoscaler owns the count, so
    // the request is overridden: say so (Event) when the value changes to one the autoscaler
    // does not keep, and in the Scaling condition while it differs. The starting count written
    // with the object is not a request, so the first value seen is only remembered.
    let operator_mode = pc.spec.autoscaling.mode == AutoscalingMode::Operator;
    let (overridden, announce) = ctx.mem(&key, |m| {
        let previous = m.spec_replicas_seen.replace(pc.spec.replicas);
        let changed = matches!(previous, Some(p) if p != pc.spec.replicas);
        let differs = pc.spec.replicas.filter(|r| *r != desired);
        if !operator_mode || existing.is_none() || differs.is_none() {
            m.overridden = None;
        } else if changed {
            m.overridden = differs;
            return (differs, true);
        }
        (m.overridden.filter(|_| m.overridden == differs), false)
    });
    if let (Some(r), true) = (overridden, announce) {
        let note = format!(
            "spec.replicas={r} is overridden: autoscaling.mode is Operator, which keeps {desired} \
             replicas for {total} connections at {target} per pod; set autoscaling.mode to \
             Manual or External to choose the count by hand"
        );
        let action = format!("Override{r}");
        decision(
            ctx,
            pc,
            EventType::Normal,
            "ScaleOverridden",
            action,
            None,
            note,
        )
        .await;
    }
    let inputs = format!(
        "{total} connections, target {target} per pod, {} of {} pods reporting",
        views.len(),
        facts.len()
    );

    // Scale-down: the pods drained are exactly the pods that go (see `scaledown`).
    let mut apply_replicas = desired;
    let mut hold = None;
    // The protocol needs the gateways' stats and control (NATS) and live pods. Standalone
    // gateways are never sent a drain, so nothing can be left draining: the count is lowered at
    // once and the ReplicaSet's pick drains through the preStop hook.
    let protocol = desired < current && existing.is_some() && !facts.is_empty() && connected;
    let settled = replicas == current
        && updated == current
        && facts.len() == usize::try_from(current).unwrap_or(0);
    if protocol && !settled {
        // Mid-rollout the Deployment scales several ReplicaSets; drain nothing until it settles.
        apply_replicas = current;
        hold = Some(format!(
            "{current} -> {desired}: waiting for the Deployment to settle ({} live pods, \
             {replicas} replicas, {updated} updated, {current} wanted)",
            facts.len()
        ));
    } else if protocol {
        let count = usize::try_from(current - desired).unwrap_or(0);
        let victims = scaledown::choose_victims(&facts, count);
        for (pod, cost) in scaledown::cost_patches(&facts, &victims) {
            let patch = serde_json::json!({"metadata": {"annotations": {
                scaledown::DELETION_COST: cost.to_string()}}});
            pods_api
                .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let mut drained = Vec::new();
        // A drain already sent is not sent again while the stats (every few seconds) have not
        // caught up: it would count its connections in flight twice.
        let resend_after = ctx.stats_max_age.as_secs();
        let due: Vec<String> = ctx.mem(&key, |m| {
            m.drain_sent
                .retain(|p, at| facts.iter().any(|f| &f.name == p) && now < *at + resend_after);
            facts
                .iter()
                .filter(|f| victims.contains(&f.name) && !f.draining)
                .filter(|f| !m.drain_sent.contains_key(&f.name))
                .map(|f| f.name.clone())
                .collect()
        });
        if let NatsState::Connected(client) = &nats {
            for f in facts.iter().filter(|f| due.contains(&f.name)) {
                let req = ControlRequest::Drain { over_ms: SPREAD_MS };
                if let Some(reply) = send(ctx, client, &ns, &name, &f.name, &req, "drain").await {
                    ctx.mem(&key, |m| {
                        m.closes.push(CloseRequest {
                            pod: f.name.clone(),
                            at_ms: now_ms,
                            count: reply.closing,
                            spread_ms: SPREAD_MS,
                        });
                    });
                    ctx.mem(&key, |m| m.drain_sent.insert(f.name.clone(), now));
                    drained.push(f.name.clone());
                }
            }
        }
        if !drained.is_empty() {
            let note = format!(
                "draining {} before scaling {current} -> {desired} ({inputs})",
                drained.join(", ")
            );
            let action = format!("Drain{current}To{desired}");
            let on = drained.first().map(|p| pod_ref(&ns, p));
            decision(ctx, pc, EventType::Normal, "Draining", action, on, note).await;
        }
        let since = ctx.mem(&key, |m| *m.scale_down_since.get_or_insert(now));
        let waited_out = now.saturating_sub(since) > stuck_limit;
        match scaledown::may_shrink(&facts, &victims, true, waited_out) {
            Ok(()) => {
                ctx.mem(&key, |m| m.scale_down_since = None);
                let note = format!(
                    "scaling down {current} -> {desired}, removing {} ({inputs})",
                    victims.join(", ")
                );
                let action = format!("Scale{current}To{desired}");
                decision(
                    ctx,
                    pc,
                    EventType::Normal,
                    "ScalingDown",
                    action,
                    None,
                    note,
                )
                .await;
            }
            Err(why) => {
                apply_replicas = current;
                hold = Some(format!("{current} -> {desired}: {why}"));
            }
        }
    } else {
        ctx.mem(&key, |m| m.scale_down_since = None);
        if desired != current && existing.is_some() {
            let (reason, verb) = if desired > current {
                ("ScalingUp", "up")
            } else {
                ("ScalingDown", "down")
            };
            let note = format!("scaling {verb} {current} -> {desired} ({inputs})");
            let action = format!("Scale{current}To{desired}");
            decision(ctx, pc, EventType::Normal, reason, action, None, note).await;
        }
    }

    let children = match build::build(pc, apply_replicas, &ctx.options) {
        Ok(c) => c,
        Err(BuildError::NotStored) => return Err(Error::NotStored),
        // render() above already accepted the spec, so this is not expected.
        Err(BuildError::Spec(e)) => return Err(e.into()),
    };
    apply::<ServiceAccount>(&ctx.client, &ns, &children.service_account).await?;
    apply::<ConfigMap>(&ctx.client, &ns, &children.config_map).await?;
    apply::<Deployment>(&ctx.client, &ns, &children.deployment).await?;
    apply::<Service>(&ctx.client, &ns, &children.service).await?;
    match &children.pdb {
        Some(pdb) => apply::<PodDisruptionBudget>(&ctx.client, &ns, pdb).await?,
        // No longer part of what the spec yields: prune the one we own, if any.
        None => prune::<PodDisruptionBudget>(&ctx.client, &ns, &name, pc).await?,
    }

    let scaling_now = current != desired || replicas != desired || ready != desired;
    let balance = &pc.spec.balance;
    let balanced = scaling::is_balanced(&views, balance.tolerance);
    let shedding = match &nats {
        NatsState::Connected(client) => {
            let settled = balance.enabled && !scaling_now && stats_complete;
            rebalance(ctx, pc, client, &views, settled, now_ms).await
        }
        _ => 0,
    };
    let paused = ctx.mem(&key, |m| {
        m.balancer
            .as_ref()
            .map(Balancer::paused)
            .unwrap_or_default()
    });

    status.replicas = replicas;
    status.ready_replicas = ready;
    status.desired_replicas = desired;
    status.connections =
        i64::try_from(views.iter().map(|p| p.connections).sum::<u64>()).unwrap_or(i64::MAX);
    status.pods = seen
        .iter()
        .map(|s| PodStatus {
            name: s.stats.pod.clone(),
            connections: i64::try_from(s.stats.connections).unwrap_or(i64::MAX),
            accepting: s.stats.accepting,
            draining: s.stats.draining,
            last_seen: Some(Time(Timestamp::try_from(s.at).unwrap_or(now_time.0))),
        })
        .collect();

    // Ready goes False once fewer pods than desired have been ready for longer than a grace
    // (a pod starting or a drain finishing is normal for a few seconds), naming the pods.
    let short = ready < desired;
    let short_for = ctx.mem(&key, |m| {
        if short {
            now.saturating_sub(*m.short_since.get_or_insert(now))
        } else {
            m.short_since = None;
            0
        }
    });
    let have_ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::READY);
    let facts_view = Facts {
        nats: &nats,
        desired,
        replicas,
        ready,
        current,
        balanced,
        shedding,
        paused: paused.clone(),
        balance_enabled: balance.enabled,
        not_ready: not_ready_pods(&facts, desired),
        hold: hold.as_deref(),
        overridden,
    };
    for cond in status_conditions(&facts_view) {
        // Within the grace an existing Ready condition keeps its state.
        if cond.type_ == condition::READY
            && !cond.status
            && short_for < ctx.ready_grace.as_secs()
            && have_ready
        {
            continue;
        }
        conditions::set(&mut status.conditions, cond, generation, &now_time);
    }
    patch_status(ctx, pc, &ns, status).await?;
    let requeue = if hold.is_some() || !paused.is_empty() {
        FAST_RESYNC
    } else {
        RESYNC
    };
    Ok((Action::requeue(requeue), false))
}

/// Pods that are not serving, for the Ready message: not ready or draining, plus how many of the
/// desired pods do not exist.
fn not_ready_pods(facts: &[PodFacts], desired: i32) -> Vec<String> {
    let mut out: Vec<String> = facts
        .iter()
        .filter_map(|f| match (f.ready, f.draining) {
            (_, true) => Some(format!("{} (draining)", f.name)),
            (false, _) => Some(format!("{} (not ready)", f.name)),
            _ => None,
        })
        .collect();
    let missing = usize::try_from(desired)
        .unwrap_or(0)
        .saturating_sub(facts.len());
    if missing > 0 {
        out.push(format!("{missing} pod(s) not created yet"));
    }
    out
}

/// Deletes one pod by name with a uid precondition (never a re-created pod of the same name).
async fn delete_pod(api: &Api<Pod>, listed: &[Pod], name: &str) -> Result<(), Error> {
    let uid = listed
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.metadata.uid.clone());
    let dp = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.is_not_found() || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A reference to a gateway pod, as an Event's `related` object.
fn pod_ref(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectReference::default()
    }
}

/// Publishes one decision: an Event on the PushCluster through the long-lived recorder, an
/// info (or warn) log line with the same text, and `volley_operator_decisions_total{reason}`.
///
/// The recorder folds Events with the same (type, reason, action, regarding, related) into one
/// series and keeps the FIRST note (kube-runtime `Recorder::publish`, `EventKey`), so the
/// `action` names the transition (`Scale2To4`, `Drain4To2`, `Override5`) and `related` the pod:
/// a new decision is a new Event with its own note, the same one repeated is a series.
async fn decision(
    ctx: &Context,
    pc: &PushCluster,
    type_: EventType,
    reason: &'static str,
    action: String,
    related: Option<ObjectReference>,
    note: String,
) {
    let cluster = pc.name_any();
    let ns = pc.namespace().unwrap_or_default();
    match type_ {
        EventType::Warning => tracing::warn!(namespace = %ns, cluster = %cluster, reason, "{note}"),
        EventType::Normal => tracing::info!(namespace = %ns, cluster = %cluster, reason, "{note}"),
    }
    ctx.metrics
        .decisions
        .get_or_create(&DecisionLabel { reason })
        .inc();
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action,
        secondary: related,
    };
    // The decision is already taken and logged; a lost Event is logged, not retried.
    if let Err(err) = ctx.recorder.publish(&event, &pc.object_ref(&())).await {
        tracing::warn!(cluster = %cluster, reason, error = %err, "publishing an event failed");
    }
}

/// Balancing (see [`crate::balancer`]): one step of this cluster's balancer, its commands sent
/// over NATS, each counted, each shed an Event and a close in flight. Returns connections asked
/// to shed now.
async fn rebalance(
    ctx: &Context,
    pc: &PushCluster,
    client: &async_nats::Client,
    views: &[PodView],
    settled: bool,
    now_ms: u64,
) -> u64 {
    let ns = pc.namespace().unwrap_or_default();
    let name = pc.name_any();
    let key = (ns.clone(), name.clone());
    let balance = &pc.spec.balance;
    // Taken out for the awaits (reconciles of one object never overlap), put back after.
    let mut b = ctx.mem(&key, |m| {
        m.balancer
            .take()
            .unwrap_or_else(|| Balancer::new(ctx.balance_timing))
    });
    let cmds = b.step(views, settled, balance, now_ms);
    let results = balancer::execute(&mut b, client, &ns, &name, cmds).await;
    ctx.mem(&key, |m| m.balancer = Some(b));
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
        ctx.mem(&key, |m| {
            m.closes.push(CloseRequest {
                pod: pod.clone(),
                at_ms: now_ms,
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
        let on = Some(pod_ref(&ns, pod));
        decision(
            ctx,
            pc,
            EventType::Normal,
            "Shedding",
            "Shed".into(),
            on,
            note,
        )
        .await;
    }
    shedding
}

/// What the status conditions are computed from.
struct Facts<'a> {
    nats: &'a NatsState,
    desired: i32,
    replicas: i32,
    ready: i32,
    current: i32,
    balanced: bool,
    shedding: u64,
    /// Pods paused by a balancing round in progress.
    paused: Vec<String>,
    balance_enabled: bool,
    /// Pods not serving (for the Ready message).
    not_ready: Vec<String>,
    /// Why a scale-down waits, if it does.
    hold: Option<&'a str>,
    /// spec.replicas overridden by the autoscaler.
    overridden: Option<i32>,
}

fn status_conditions(f: &Facts<'_>) -> Vec<Cond<'static>> {
    let (desired, replicas, ready, current) = (f.desired, f.replicas, f.ready, f.current);
    let ready_cond = if ready >= desired {
        Cond {
            type_: condition::READY,
            status: true,
            reason: "AllReplicasReady",
            message: format!("{ready}/{desired} gateway pods ready"),
        }
    } else {
        let names = if f.not_ready.is_empty() {
            String::new()
        } else {
            format!("; not serving: {}", f.not_ready.join(", "))
        };
        Cond {
            type_: condition::READY,
            status: false,
            reason: "ReplicasNotReady",
            message: format!("{ready}/{desired} gateway pods ready{names}"),
        }
    };
    let note = f.overridden.map_or(String::new(), |r| {
        format!("; spec.replicas={r} is overridden by the autoscaler (mode Operator)")
    });
    let scaling = if let Some(hold) = f.hold {
        Cond {
            type_: condition::SCALING,
            status: true,
            reason: "ScalingDown",
            message: format!("{hold}{note}"),
        }
    } else if current != desired || replicas != desired {
        Cond {
            type_: condition::SCALING,
            status: true,
            reason: if desired > current.min(replicas) {
                "ScalingUp"
            } else {
                "ScalingDown"
            },
            message: format!("{replicas} -> {desired} replicas{note}"),
        }
    } else {
        Cond {
            type_: condition::SCALING,
            status: false,
            reason: "Stable",
            message: format!("{desired} replicas{note}"),
        }
    };
    let balanced_cond = match (f.balanced, f.shedding, f.balance_enabled) {
        (true, _, _) => Cond {
            type_: condition::BALANCED,
            status: true,
            reason: "WithinTolerance",
            message: "connection counts are within tolerance".into(),
        },
        (false, n, _) if n > 0 => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "Shedding",
            message: format!("shedding {n} connections from the fullest pods"),
        },
        (false, _, _) if !f.paused.is_empty() => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "Shedding",
            message: format!(
                "balancing round in progress: {} not accepting new connections while shedding \
                 towards the mean",
                f.paused.join(", ")
            ),
        },
        (false, _, false) => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "BalancingDisabled",
            message: "connection counts are out of tolerance; balance.enabled is false".into(),
        },
        (false, _, true) => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "Imbalanced",
            message: "connection counts are out of tolerance".into(),
        },
    };
    let nats_cond = match f.nats {
        NatsState::Standalone => Cond {
            type_: condition::NATS_CONNECTED,
            status: false,
            reason: "Standalone",
            message: "spec.nats is not set; gateways run standalone and report no stats".into(),
        },
        NatsState::Connected(_) => Cond {
            type_: condition::NATS_CONNECTED,
            status: true,
            reason: "Connected",
            message: "receiving gateway stats".into(),
        },
        NatsState::Failed(msg) => Cond {
            type_: condition::NATS_CONNECTED,
            status: false,
            reason: "ConnectFailed",
            message: msg.clone(),
        },
    };
    vec![ready_cond, scaling, balanced_cond, nats_cond]
}

/// Sends one control request; the reply when the gateway carried it out.
async fn send(
    ctx: &Context,
    client: &async_nats::Client,
    ns: &str,
    cluster: &str,
    pod: &str,
    req: &ControlRequest,
    op: &'static str,
) -> Option<ControlReply> {
    let subject = wire::control_subject(ns, cluster, pod);
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

/// The start-up check failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    /// The API server does not know `pushclusters.volley.dev`.
    #[error(
        "the PushCluster CRD (pushclusters.volley.dev) is not installed in this cluster; install it \
         with `kubectl apply -f crds/pushcluster.yaml` or the Helm chart (crds.install=true), then \
         start the operator again"
    )]
    NotInstalled,
    /// Any other API error (unreachable server, RBAC).
    #[error("checking for the PushCluster CRD: {0}")]
    Kube(#[from] kube::Error),
}

/// The PushCluster API the operator watches: one namespace or all.
pub fn pushclusters(client: Client, namespace: Option<&str>) -> Api<PushCluster> {
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Checks at start that the CRD is installed: a list of at most one PushCluster in the watched
/// scope (the same permission the controller needs anyway) is a 404 without it.
pub async fn check_crd(client: Client, namespace: Option<&str>) -> Result<(), CrdCheckError> {
    match pushclusters(client, namespace)
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.is_not_found() => Err(CrdCheckError::NotInstalled),
        Err(e) => Err(e.into()),
    }
}

/// Runs the controller until shutdown: watches PushClusters (in `namespace`, or all namespaces)
/// and everything they own.
pub async fn run(
    ctx: Context,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let pcs = pushclusters(client.clone(), ns);
    fn children<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    // Children carry the managed-by label; watching only those keeps the operator from caching
    // every ConfigMap and Service in the cluster.
    let cfg = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let stats = ctx.stats.clone();
    let memory = ctx.memory.clone();
    Controller::new(pcs, watcher::Config::default())
        .owns(children::<Deployment>(&client, ns), cfg.clone())
        .owns(children::<ConfigMap>(&client, ns), cfg.clone())
        .owns(children::<Service>(&client, ns), cfg.clone())
        .owns(children::<PodDisruptionBudget>(&client, ns), cfg.clone())
        .owns(children::<ServiceAccount>(&client, ns), cfg)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| {
            match res {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, "reconciled"),
                Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                    // Deleted: children go by owner references; drop its stats.
                    if let Some(ns) = &obj.namespace {
                        stats.forget(ns, &obj.name);
                        memory
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&(ns.clone(), obj.name.clone()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
            futures::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests;
