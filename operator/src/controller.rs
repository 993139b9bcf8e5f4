//! The reconcile of one PushCluster, as a pipeline of named steps (in the style of Stackable's
//! operators), each in a module of its own:
//!
//! 1. **validate** ([`build::validate`]), once: a spec the schema cannot reject becomes
//!    `Ready=False, reason=InvalidSpec` and a Warning Event, and nothing else is touched;
//! 2. **observe** ([`observe`]): the only reads before deciding — the NATS connection, the
//!    Deployment, the gateway pods, the stats snapshot;
//! 3. **plan** ([`plan`]), pure: spec + observations + memory ([`memory`]) → pods stuck
//!    draining to delete, the replica count, deletion costs, drains, balancing commands, the
//!    Events that explain them ([`events`]) and the status inputs;
//! 4. **build** ([`build::children`]), pure: one builder per child, from the validated spec and
//!    the planned replica count;
//! 5. **apply** ([`apply`], with [`control`] for the requests to gateways): every write, in a
//!    documented order, children by server-side apply with one field manager and pruned when the
//!    spec no longer yields them;
//! 6. **status** ([`status`]), pure, then one server-side apply of the status subresource.
//!
//! Each step runs in a tracing span of its name; an error names the step that failed. The
//! reconcile requeues itself every [`RESYNC`] because stats change without Kubernetes events.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::Stream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use volley_crds::{PushCluster, PushClusterStatus, condition};

use crate::balancer::Timing;
use crate::build::{self, BuildError, BuildOptions, MANAGER, Valid};
use crate::conditions::{self, Cond};
use crate::metrics::{Metrics, ReasonLabel, ResultLabel};
use crate::stats::{self, NatsPool, StatsStore};

mod apply;
mod control;
mod events;
mod memory;
mod observe;
mod plan;
mod status;
mod step;

use memory::Memory;
use plan::{Now, Settings};
use step::Progress;
pub use step::Step;

/// Periodic re-reconcile: the stats stream is not a Kubernetes watch.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Back-off after a failed reconcile.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(30);
/// The longest a whole reconcile may take. kube-runtime runs one reconcile per object at a
/// time: a trigger for an object whose reconcile is still running is held until it finishes
/// (`hold_unless(|msg| !slots.contains_key(msg))` in kube-runtime's `controller/runner.rs`), and
/// it puts no bound on the reconcile future itself. One API call or NATS request that never
/// answers would so stop every later reconcile of that PushCluster. A pass normally takes
/// milliseconds; its slowest legitimate part is a few NATS requests of up to 10 s each
/// (async-nats' request timeout).
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);
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
/// Condition and Event reason for an object the API server refused (see [`WriteError::rejection`]).
pub const APPLY_FAILED: &str = "ApplyFailed";
/// Shed and drain requests spread their closes over this window.
pub const SPREAD_MS: u64 = 10_000;

/// Reconcile failures (retried with back-off), by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace/uid yet, so children cannot be owned by it.
    #[error("validate: PushCluster is not stored yet")]
    NotStored,
    /// Reading the cluster failed.
    #[error("observe: kubernetes API: {0}")]
    Observe(#[source] kube::Error),
    /// A write of the apply step failed (pod delete or cost, child apply or prune).
    #[error("apply: {0}")]
    Apply(#[source] WriteError),
    /// Writing the status failed.
    #[error("status: kubernetes API: {0}")]
    Status(#[source] kube::Error),
    /// The reconcile did not finish within [`RECONCILE_TIMEOUT`]; `step` was running.
    #[error(
        "{step}: the reconcile did not finish within {after:?} (an API call or NATS request that never answered)"
    )]
    Timeout {
        /// The step that was running when the time ran out.
        step: Step,
        /// The bound that ran out.
        after: Duration,
    },
}

/// A write of the apply step that failed: the object it was for, and the API's answer.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?}: kubernetes API: {source}")]
pub struct WriteError {
    /// The object's kind (`Deployment`, `Service`, `Pod`...).
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// What the API server (or the connection to it) said.
    #[source]
    pub source: kube::Error,
}

impl WriteError {
    fn new(kind: &str, name: &str, source: kube::Error) -> Self {
        Self {
            kind: kind.to_string(),
            name: name.to_string(),
            source,
        }
    }

    /// The API server's message when it refused the object itself, or the operator's right to
    /// write it: a 4xx answer other than 401 (unauthenticated: the operator's token is being
    /// rotated), 404 (not found: a pod deleted or evicted between the list and the write, or its
    /// namespace going away), 408 (timeout), 409 (conflict) and 429 (throttled), which are the
    /// operator's own or worth a retry. Invalid (422), bad request (400), forbidden (403: RBAC, a
    /// quota, an admission webhook) are the user's to fix; retrying cannot help, so they go on
    /// the object. None for a server error or a lost connection: retried after
    /// [`ERROR_REQUEUE`].
    pub fn rejection(&self) -> Option<&str> {
        match &self.source {
            kube::Error::Api(s)
                if (400..500).contains(&s.code) && ![401, 404, 408, 409, 429].contains(&s.code) =>
            {
                Some(if s.message.is_empty() {
                    s.reason.as_str()
                } else {
                    s.message.as_str()
                })
            }
            _ => None,
        }
    }
}

impl Error {
    /// Label of `volley_operator_reconcile_failures_total`: the step.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotStored => "not_stored",
            Self::Observe(_) => "observe",
            Self::Apply(_) => "apply",
            Self::Status(_) => "status",
            Self::Timeout { .. } => "timeout",
        }
    }
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
    memory: Memory,
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
            memory: Memory::default(),
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            stats_max_age: self.stats_max_age,
            drain_stuck_margin: self.drain_stuck_margin,
            balance_timing: self.balance_timing,
        }
    }
}

fn now() -> Now {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Now {
        secs: since.as_secs(),
        ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Reconciles one PushCluster.
pub async fn reconcile(pc: Arc<PushCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let progress = Progress::default();
    // Dropping the pipeline's future at the bound cancels whatever it awaited. What a cancelled
    // pass leaves behind is taken up by the next one: children and status are applied whole
    // each pass; a balancing round's state is put back in memory however the pass ends (see
    // `control::balance`), and a pod paused by a round that is lost anyway is resumed by
    // `Balancer::orphans` from its stats (accepting=false, not draining, not full).
    let result = match tokio::time::timeout(
        RECONCILE_TIMEOUT,
        reconcile_inner(&pc, &ctx, &progress),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => {
            let step = progress.step();
            tracing::warn!(cluster = %pc.name_any(), step = step.name(), after = ?RECONCILE_TIMEOUT,
                "reconcile timed out; retried after the error back-off");
            Err(Error::Timeout {
                step,
                after: RECONCILE_TIMEOUT,
            })
        }
    };
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

/// The pipeline. Returns the action and whether the spec was invalid (for metrics).
#[tracing::instrument(name = "reconcile", skip_all, fields(namespace, cluster = %pc.name_any()))]
async fn reconcile_inner(
    pc: &PushCluster,
    ctx: &Context,
    progress: &Progress,
) -> Result<(Action, bool), Error> {
    progress.enter(Step::Validate);
    let ns = pc.namespace().ok_or(Error::NotStored)?;
    tracing::Span::current().record("namespace", ns.as_str());
    let now_time = Time(Timestamp::now());
    let valid = match build::validate(pc) {
        Ok(valid) => valid,
        Err(BuildError::NotStored) => return Err(Error::NotStored),
        Err(BuildError::Spec(e)) => {
            refuse(ctx, pc, &ns, e.to_string(), &now_time).await?;
            return Ok((Action::await_change(), true));
        }
    };
    progress.enter(Step::Observe);
    let (observed, nats) = observe::observe(&valid, ctx)
        .await
        .map_err(Error::Observe)?;
    let now = now();
    let key = (valid.namespace.clone(), valid.name.clone());
    progress.enter(Step::Plan);
    let plan = ctx.memory.with(&key, |m| {
        plan::plan(&valid, &observed, &ctx.settings(), now, m)
    });
    progress.enter(Step::Build);
    let children = build_children(&valid, plan.replicas, &ctx.options);
    progress.enter(Step::Apply);
    let outcome = apply::apply(
        ctx,
        &valid,
        &observed.pods,
        &plan,
        &children,
        nats.as_ref(),
        now,
    )
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(message) = e.rejection() {
                // This pass's status (the observations are still true), Ready=False on top.
                let status = status::status(
                    pc,
                    &observed.nats,
                    &plan.status,
                    &status::Outcome::default(),
                    ctx.ready_grace,
                    &now_time,
                );
                report_rejection(ctx, pc, &ns, &e, message, status, &now_time).await;
            }
            return Err(Error::Apply(e));
        }
    };
    let status = status::status(
        pc,
        &observed.nats,
        &plan.status,
        &outcome,
        ctx.ready_grace,
        &now_time,
    );
    progress.enter(Step::Status);
    apply::patch_status(ctx, pc, &ns, status)
        .await
        .map_err(Error::Status)?;
    let requeue = if plan.status.hold.is_some() || !outcome.paused.is_empty() {
        FAST_RESYNC
    } else {
        RESYNC
    };
    Ok((Action::requeue(requeue), false))
}

/// The build step (pure): the children for the planned replica count.
#[tracing::instrument(name = "build", skip_all, fields(replicas = replicas))]
fn build_children(valid: &Valid<'_>, replicas: i32, options: &BuildOptions) -> build::Children {
    build::children(valid, replicas, options)
}

/// A bad spec is the user's to fix: say so on the object (condition + Warning Event), change
/// nothing else (no child is touched) and wait for a change.
async fn refuse(
    ctx: &Context,
    pc: &PushCluster,
    ns: &str,
    message: String,
    now: &Time,
) -> Result<(), Error> {
    let status = status::invalid(pc, message.clone(), now);
    apply::patch_status(ctx, pc, ns, status)
        .await
        .map_err(Error::Status)?;
    events::publish_invalid_spec(ctx, pc, message).await;
    Ok(())
}

/// The API server refused a write of the apply step (a child, or a pod): the user sees it as
/// `Ready=False, reason=ApplyFailed` naming the object and quoting the API server, and as a
/// Warning Event. The reconcile still fails: retried after [`ERROR_REQUEUE`], or at once when the
/// spec changes. A failed status write is logged: the error returned is the apply's.
async fn report_rejection(
    ctx: &Context,
    pc: &PushCluster,
    ns: &str,
    e: &WriteError,
    message: &str,
    mut status: PushClusterStatus,
    now: &Time,
) {
    let note = format!("the API server rejected {} {:?}: {message}", e.kind, e.name);
    let ready = Cond {
        type_: condition::READY,
        status: false,
        reason: APPLY_FAILED,
        message: note.clone(),
    };
    conditions::set(&mut status.conditions, ready, pc.metadata.generation, now);
    if let Err(err) = apply::patch_status(ctx, pc, ns, status).await {
        tracing::warn!(cluster = %pc.name_any(), error = %err, "writing the ApplyFailed status failed");
    }
    events::publish_apply_failed(ctx, pc, &e.kind, note).await;
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

/// The PushCluster watch as reconcile triggers: a new `metadata.generation` (the object listed
/// for the first time, or its spec changed), never a change of the status alone.
///
/// The status this operator writes changes on nearly every pass (connections, `pods[].lastSeen`),
/// and every write is a watch event. Without this filter each status write would start the next
/// reconcile at once: a loop as fast as the API server answers, instead of one pass per
/// [`RESYNC`]. With the status subresource enabled (the PushCluster CRD has it), "the
/// .metadata.generation value is incremented for all changes, except for changes to .metadata or
/// .status" (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource>);
/// nothing the operator builds reads the PushCluster's labels or annotations. Stats-driven
/// passes come from the requeue ([`RESYNC`], [`FAST_RESYNC`]) and children's changes from
/// `owns`, neither of which this filters.
///
/// The reflector sits before the filter, so the store (what reconcile reads) still sees every
/// change, the status included. This is `Controller::new`'s own stream (kube-runtime 5.0.0
/// `controller/mod.rs` `new_with`: `reflector(writer, watcher(api, wc)).applied_objects()`)
/// plus `predicate_filter(predicates::generation)`, as in the `Controller::for_stream` doc
/// example (`utils/predicate.rs`, feature `unstable-runtime-stream-control`). Deletions are not
/// triggers either way (`applied_objects`): a deleted cluster is forgotten when its next requeue
/// finds it gone (`ObjectNotFound` in [`run`]).
///
/// Not a `controller::Config::debounce`: it delays every reconcile, requeues included, and
/// "keeps delaying" one whose object keeps changing (kube-runtime `Config::debounce` docs), which
/// would hide the Deployment's progress the scale-down waits for.
fn triggers(
    api: Api<PushCluster>,
    writer: Writer<PushCluster>,
) -> impl Stream<Item = Result<PushCluster, watcher::Error>> + Send + 'static {
    reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default())
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
    let (reader, writer) = reflector::store();
    Controller::for_stream(triggers(pcs, writer), reader)
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
                        memory.forget(&(ns.clone(), obj.name.clone()));
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
