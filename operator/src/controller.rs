//! The reconcile loop: the thin IO shell around [`crate::build`] and [`crate::scaling`].
//!
//! Each reconcile validates the spec (a bad one becomes `Ready=False, reason=InvalidSpec`),
//! reads the stats stream, decides replicas, prepares a scale-down (pod deletion cost, drain),
//! server-side-applies the children with one field manager, sheds for balance, and writes the
//! status. It requeues itself every [`RESYNC`] because stats change without Kubernetes events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
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
use volley_crds::wire::{self, ControlRequest};
use volley_crds::{AutoscalingMode, PodStatus, PushCluster, PushClusterStatus, condition};

use crate::build::{self, BuildError, BuildOptions, MANAGER};
use crate::conditions::{self, Cond};
use crate::metrics::{Metrics, OpLabel, ReasonLabel, ResultLabel};
use crate::scaling::{self, History, PodView, ScaleInput, ShedBudget};
use crate::stats::{self, NatsPool, StatsStore};

/// Periodic re-reconcile: the stats stream is not a Kubernetes watch.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Back-off after a failed reconcile.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(30);
/// Annotation the ReplicaSet controller uses to pick pods to delete first.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
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

/// Per-PushCluster memory that is not in the status: scaling history and shed budget.
#[derive(Debug, Default)]
struct ClusterMemory {
    history: History,
    budget: ShedBudget,
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
            memory: Arc::default(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    let now = Time(Timestamp::now());
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
            &now,
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
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = deployments.get_opt(&name).await?;
    let current = existing
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or_else(|| pc.spec_replicas());

    // Only stats of pods that exist and are not terminating count.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&build::selector_string(&name)))
        .await?;
    let live: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let seen = ctx
        .stats
        .snapshot(&ns, &name, ctx.stats_max_age, SystemTime::now());
    let seen: Vec<_> = seen
        .into_iter()
        .filter(|s| {
            live.iter()
                .any(|p| p.metadata.name.as_deref() == Some(&s.stats.pod))
        })
        .collect();
    let views: Vec<PodView> = seen.iter().map(stats::pod_view).collect();
    let connected = matches!(nats, NatsState::Connected(_));
    let stats_complete = connected && !live.is_empty() && views.len() == live.len();

    let key = (ns.clone(), name.clone());
    let desired = match pc.spec.autoscaling.mode {
        AutoscalingMode::Operator if connected => {
            let mut memory = ctx.memory.lock().unwrap_or_else(PoisonError::into_inner);
            let mem = memory.entry(key.clone()).or_default();
            scaling::desired_replicas(
                ScaleInput {
                    spec: &pc.spec.autoscaling,
                    current,
                    pods: &views,
                    stats_complete,
                    now: unix_now(),
                },
                &mut mem.history,
            )
        }
        // Without stats the operator cannot judge load: keep the count, within bounds.
        AutoscalingMode::Operator => {
            let a = &pc.spec.autoscaling;
            current.clamp(a.min_replicas.max(0), a.max_replicas.max(a.min_replicas))
        }
        AutoscalingMode::External | AutoscalingMode::Off => pc.spec_replicas(),
    };

    if desired < current {
        prepare_scale_down(ctx, &ns, &name, &live, &views, current - desired, &nats).await?;
    }

    let children = match build::build(pc, desired, &ctx.options) {
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

    let dstatus = existing.as_ref().and_then(|d| d.status.as_ref());
    let replicas = dstatus.and_then(|s| s.replicas).unwrap_or(0);
    let ready = dstatus.and_then(|s| s.ready_replicas).unwrap_or(0);
    let scaling_now = current != desired || replicas != desired || ready != desired;

    // Balance only a settled cluster: shedding mid-rollout would just bounce clients around.
    let balance = &pc.spec.balance;
    let balanced = scaling::is_balanced(&views, balance.tolerance);
    let mut shedding = 0;
    if let NatsState::Connected(client) = &nats
        && balance.enabled
        && !scaling_now
        && stats_complete
        && !balanced
    {
        let plan = {
            let mut memory = ctx.memory.lock().unwrap_or_else(PoisonError::into_inner);
            let mem = memory.entry(key.clone()).or_default();
            let per_minute = u64::try_from(balance.max_shed_per_minute.max(0)).unwrap_or(0);
            let budget = mem.budget.available(unix_now(), per_minute);
            let plan = scaling::shed_plan(&views, balance.tolerance, budget);
            mem.budget.spend(plan.iter().map(|(_, n)| n).sum());
            plan
        };
        for (pod, count) in plan {
            let req = ControlRequest::Shed {
                count,
                over_ms: SPREAD_MS,
            };
            let ok = send(ctx, client, &ns, &name, &pod, &req, "shed").await;
            if ok {
                shedding += count;
                ctx.metrics.shed_connections.inc_by(count);
            }
        }
    }

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
            last_seen: Some(Time(Timestamp::try_from(s.at).unwrap_or(now.0))),
        })
        .collect();
    for cond in status_conditions(
        &nats,
        desired,
        replicas,
        ready,
        current,
        balanced,
        shedding,
        balance.enabled,
    ) {
        conditions::set(&mut status.conditions, cond, generation, &now);
    }
    patch_status(ctx, pc, &ns, status).await?;
    Ok((Action::requeue(RESYNC), false))
}

#[allow(clippy::too_many_arguments)] // one flat list of facts reads better than a struct here
fn status_conditions(
    nats: &NatsState,
    desired: i32,
    replicas: i32,
    ready: i32,
    current: i32,
    balanced: bool,
    shedding: u64,
    balance_enabled: bool,
) -> Vec<Cond<'static>> {
    let ready_cond = if ready >= desired && replicas == desired {
        Cond {
            type_: condition::READY,
            status: true,
            reason: "AllReplicasReady",
            message: format!("{ready}/{desired} gateway pods ready"),
        }
    } else {
        Cond {
            type_: condition::READY,
            status: false,
            reason: "ReplicasNotReady",
            message: format!("{ready}/{desired} gateway pods ready"),
        }
    };
    let scaling = if current != desired || replicas != desired {
        Cond {
            type_: condition::SCALING,
            status: true,
            reason: if desired > current.min(replicas) {
                "ScalingUp"
            } else {
                "ScalingDown"
            },
            message: format!("{replicas} -> {desired} replicas"),
        }
    } else {
        Cond {
            type_: condition::SCALING,
            status: false,
            reason: "Stable",
            message: format!("{desired} replicas"),
        }
    };
    let balanced_cond = match (balanced, shedding, balance_enabled) {
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
    let nats_cond = match nats {
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

async fn send(
    ctx: &Context,
    client: &async_nats::Client,
    ns: &str,
    cluster: &str,
    pod: &str,
    req: &ControlRequest,
    op: &'static str,
) -> bool {
    let subject = wire::control_subject(ns, cluster, pod);
    let result = stats::control(client, subject, req).await;
    let ok = matches!(&result, Ok(r) if r.ok);
    if let Err(e) = &result {
        tracing::warn!(pod, op, error = %e, "control request failed");
    }
    let label = OpLabel {
        op,
        result: if ok { "ok" } else { "error" },
    };
    ctx.metrics.control_requests.get_or_create(&label).inc();
    ok
}

/// Before a scale-down: cost every pod by its connections so the ReplicaSet deletes the
/// emptiest, and ask the pods that will go to drain (spread) now rather than on SIGTERM.
async fn prepare_scale_down(
    ctx: &Context,
    ns: &str,
    cluster: &str,
    live: &[&Pod],
    views: &[PodView],
    count: i32,
    nats: &NatsState,
) -> Result<(), Error> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for pod in live {
        let Some(name) = pod.metadata.name.as_deref() else {
            continue;
        };
        // Pods without stats are unknown load; cost 0 lets them go first only if they are new.
        let connections = views
            .iter()
            .find(|v| v.name == name)
            .map_or(0, |v| v.connections);
        let cost = scaling::deletion_cost(connections).to_string();
        let have = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DELETION_COST));
        if have == Some(&cost) {
            continue;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {DELETION_COST: cost}}});
        pods_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if let NatsState::Connected(client) = nats {
        let victims = scaling::scale_down_victims(views, usize::try_from(count).unwrap_or(0));
        for pod in victims {
            let req = ControlRequest::Drain { over_ms: SPREAD_MS };
            send(ctx, client, ns, cluster, &pod, &req, "drain").await;
        }
    }
    Ok(())
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
