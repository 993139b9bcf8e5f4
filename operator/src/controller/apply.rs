//! The apply step: every write of a reconcile, in one documented order.
//!
//! 1. delete the pods stuck draining (uid precondition), each with its DrainStuck Event;
//! 2. publish the plan's notices (StatsStale, ScaleOverridden);
//! 3. write the deletion costs of a scale-down (merge patch on the pods);
//! 4. send the drains ([`super::control`]) and publish Draining for those carried out;
//! 5. publish the scaling decision;
//! 6. server-side apply the children — ServiceAccount, ConfigMap, Deployment, Service,
//!    PodDisruptionBudget — each one the spec no longer yields pruned instead (only when the
//!    PushCluster is its controller);
//! 7. send the balancing commands ([`super::control`]).
//!
//! Costs and drains come before the Deployment so the ReplicaSet removes exactly the pods the
//! operator drained (see [`crate::scaledown`]); the ConfigMap comes before the Deployment so new
//! pods mount the config their template's hash names. The status is written last, by the
//! pipeline, with what this step reports back.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use volley_crds::{PushCluster, PushClusterStatus};

use super::events;
use super::memory::Key;
use super::plan::{Now, Plan};
use super::status::Outcome;
use super::{Context, WriteError, control};
use crate::build::{self, Children, MANAGER, Valid};
use crate::scaledown;

/// The one field manager, forced: the operator owns these fields.
fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Carries out `plan` (with the children built for its replica count) in the order above.
#[tracing::instrument(name = "apply", skip_all, fields(namespace = %v.namespace, cluster = %v.name))]
pub(crate) async fn apply(
    ctx: &Context,
    v: &Valid<'_>,
    pods: &[Pod],
    plan: &Plan,
    children: &Children,
    nats: Option<&async_nats::Client>,
    now: Now,
) -> Result<Outcome, WriteError> {
    let key: Key = (v.namespace.clone(), v.name.clone());
    let written = scale(ctx, v, pods, plan, children, nats, now).await;
    if let Err(e) = written {
        // The balancer planned these commands; none was sent. Tell it, as for a failed request,
        // so it does not wait on a pause or a shed that never happened.
        ctx.memory.with(&key, |m| {
            if let Some(b) = m.balancer.as_mut() {
                plan.balance.iter().for_each(|c| b.failed(c));
            }
        });
        return Err(e);
    }
    let shedding = match nats {
        Some(client) => {
            control::balance(
                ctx,
                v,
                client,
                plan.balance.clone(),
                &plan.status.views,
                now,
            )
            .await
        }
        None => 0,
    };
    let paused = ctx.memory.with(&key, |m| {
        m.balancer
            .as_ref()
            .map(crate::balancer::Balancer::paused)
            .unwrap_or_default()
    });
    Ok(Outcome { shedding, paused })
}

/// Steps 1 to 6.
async fn scale(
    ctx: &Context,
    v: &Valid<'_>,
    pods: &[Pod],
    plan: &Plan,
    children: &Children,
    nats: Option<&async_nats::Client>,
    now: Now,
) -> Result<(), WriteError> {
    let (ns, pc) = (&v.namespace, v.pc);
    let key: Key = (ns.clone(), v.name.clone());
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for (pod, decision) in &plan.stuck {
        delete_pod(&pods_api, pods, pod)
            .await
            .map_err(|e| WriteError::new("Pod", pod, e))?;
        ctx.memory.with(&key, |m| m.drains.forget(pod));
        ctx.metrics.stuck_drains.inc();
        events::publish(ctx, pc, decision.clone()).await;
    }
    for decision in &plan.notices {
        events::publish(ctx, pc, decision.clone()).await;
    }
    for (pod, cost) in &plan.costs {
        let patch = serde_json::json!({"metadata": {"annotations": {
            scaledown::DELETION_COST: cost.to_string()}}});
        match pods_api
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // Deleted or evicted since the list: nothing left to rank; the next pass plans
            // from the pods that exist (finding 9 of review 2).
            Err(kube::Error::Api(e)) if e.is_not_found() => {
                tracing::debug!(pod, "pod gone before its deletion cost was written");
            }
            Err(e) => return Err(WriteError::new("Pod", pod, e)),
            Ok(_) => {}
        }
    }
    if let Some(client) = nats {
        let drained = control::drain(ctx, v, client, &plan.drains, now).await;
        if let Some(d) = plan.drain_note.as_ref().and_then(|n| n.decision(&drained)) {
            events::publish(ctx, pc, d).await;
        }
    }
    if let Some(d) = &plan.scaling {
        events::publish(ctx, pc, d.clone()).await;
    }
    apply_children(&ctx.client, v, children).await
}

/// Step 6: each child applied, or pruned when the spec no longer yields it.
async fn apply_children(client: &Client, v: &Valid<'_>, c: &Children) -> Result<(), WriteError> {
    let (ns, name, pc) = (&v.namespace, &v.name, v.pc);
    apply_or_prune(client, ns, name, Some(&c.service_account), pc).await?;
    let config_map = build::config_map_name(name);
    apply_or_prune(client, ns, &config_map, Some(&c.config_map), pc).await?;
    apply_or_prune(client, ns, name, Some(&c.deployment), pc).await?;
    apply_or_prune(client, ns, name, Some(&c.service), pc).await?;
    apply_or_prune(client, ns, name, c.pdb.as_ref(), pc).await
}

/// Server-side applies `child`, or, when the spec yields none, deletes the existing object of
/// kind `K` named `name` (the name the child has when built) if `owner` is its controller.
/// Objects owned by someone else are never touched. A failure names the child's kind and name.
async fn apply_or_prune<K>(
    client: &Client,
    ns: &str,
    name: &str,
    child: Option<&K>,
    owner: &PushCluster,
) -> Result<(), WriteError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let fail = |name: &str, e| WriteError::new(&K::kind(&()), name, e);
    if let Some(obj) = child {
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(&name, &apply_params(), &Patch::Apply(obj))
            .await
            .map_err(|e| fail(&name, e))?;
        return Ok(());
    }
    let Some(existing) = api.get_opt(name).await.map_err(|e| fail(name, e))? else {
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
            Err(e) => return Err(fail(name, e)),
        }
    }
    Ok(())
}

/// Deletes one pod by name with a uid precondition (never a re-created pod of the same name).
async fn delete_pod(api: &Api<Pod>, listed: &[Pod], name: &str) -> Result<(), kube::Error> {
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
        Err(e) => Err(e),
    }
}

/// The status step's one write: server-side apply of the status subresource.
#[tracing::instrument(name = "status", skip_all, fields(namespace = %ns, cluster = %pc.name_any()))]
pub(crate) async fn patch_status(
    ctx: &Context,
    pc: &PushCluster,
    ns: &str,
    status: PushClusterStatus,
) -> Result<(), kube::Error> {
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
