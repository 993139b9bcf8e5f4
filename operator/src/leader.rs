//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so several operator
//! replicas can run with exactly one reconciling.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease object name.
    pub name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Lease duration in seconds.
    pub duration_seconds: u64,
    /// Renew this many seconds before expiry.
    pub grace_seconds: u64,
    /// Stop leading when no renewal was accepted for this long (see [`deadline`]). Shorter than
    /// the lease duration, so the leader stops before a standby can take the expired lease.
    pub renew_deadline: Duration,
    /// Wait after a failed lease request before the next attempt. Fixed, unlike
    /// kube-lease-manager's own `watch()` loop, whose back-off only resets on a leadership change:
    /// there, isolated errors over weeks add up until one retry comes after the deadline.
    pub retry: Duration,
    /// Each lease request fails after this long without an answer, so it is retried.
    pub request_timeout: Duration,
    /// A standby reads the Lease this often to see a release at once (one GET).
    pub standby_poll: Duration,
}

impl LeaseConfig {
    /// The operator's timings, those of client-go's leader election
    /// (<https://pkg.go.dev/k8s.io/client-go/tools/leaderelection#LeaderElectionConfig>: lease
    /// 15 s, renew deadline 10 s, retry period 2 s): renewed every 2 s (duration - grace), a
    /// failed request retried after 1 s and given up after 4 s, so one failure or one slow
    /// answer costs at most 2 + 4 + 1 s and a healthy leader keeps leading; after 10 s without
    /// an accepted renewal the leader steps down, 5 s before a standby may take the lease.
    pub fn standard(name: String, namespace: String, identity: String) -> Self {
        LeaseConfig {
            name,
            namespace,
            identity,
            duration_seconds: 15,
            grace_seconds: 13,
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(1),
            request_timeout: Duration::from_secs(4),
            // client-go's standbys try to acquire every retry period (2 s), a GET each.
            standby_poll: Duration::from_secs(2),
        }
    }
}

/// The lease manager's task; it releases the lease and ends once every receiver is dropped.
pub type LeaseTask = JoinHandle<Result<LeaseManager, LeaseManagerError>>;

/// Starts competing for the lease; the receiver says whether this replica leads (false for good
/// once the renew deadline passes without an accepted renewal). Dropping every
/// receiver makes the returned task release the lease and end: await it with [`stop`] before the
/// runtime goes away, or the release is cut off and the standby waits for the lease to expire.
pub async fn start(
    client: Client,
    cfg: LeaseConfig,
) -> Result<(watch::Receiver<bool>, LeaseTask), LeaseManagerError> {
    let writes = deadline::Writes::default();
    let path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
        cfg.namespace, cfg.name
    );
    let client = deadline::recording(client, path, writes.clone(), cfg.request_timeout);
    let competitor = Competitor { client, cfg };
    let manager = competitor.build().await?;
    let (sender, upstream) = watch::channel(false);
    let renew_deadline = competitor.cfg.renew_deadline;
    let task = tokio::spawn(competitor.compete(manager, sender));
    let (out, rx) = watch::channel(false);
    tokio::spawn(deadline::guard(upstream, out, writes, renew_deadline));
    Ok((rx, task))
}

/// What [`start`] competes with: the (recording) client and the settings.
struct Competitor {
    client: Client,
    cfg: LeaseConfig,
}

impl Competitor {
    /// A fresh manager: it knows nothing of the Lease yet, so its first step reads it.
    async fn build(&self) -> Result<LeaseManager, LeaseManagerError> {
        let params = LeaseParams::new(
            self.cfg.identity.clone(),
            self.cfg.duration_seconds,
            self.cfg.grace_seconds,
        )
        .with_field_manager(format!("{}-lease", crate::build::MANAGER));
        LeaseManager::new(
            self.client.clone(),
            self.cfg.name.clone(),
            self.cfg.namespace.clone(),
            params,
            LeaseCreateMode::AutoCreate,
        )
        .await
    }

    /// Returns once a read of the Lease (one GET every `standby_poll`) finds it without a
    /// holder: the leader released it at shutdown.
    async fn released(&self) {
        let api = Api::<Lease>::namespaced(self.client.clone(), &self.cfg.namespace);
        loop {
            tokio::time::sleep(self.cfg.standby_poll).await;
            match api.get(&self.cfg.name).await {
                Ok(lease)
                    if lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_ref())
                        .is_none() =>
                {
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "standby could not read the Lease"),
            }
        }
    }

    /// kube-lease-manager's `watch()` loop (manager.rs) with two changes. A fixed `retry` after
    /// an error, instead of its back-off that never resets while leadership does not change.
    /// And a standby that finds the Lease released starts over with a fresh manager: the
    /// library's standby sleeps until the expiry it last read (manager.rs `watcher_step`) and
    /// only reads the Lease again after it (state.rs `sync`), so a release at shutdown would
    /// not shorten the handover at all. Publishes every change of leadership, and releases the
    /// lease and ends once every receiver is gone.
    async fn compete(
        self,
        mut manager: LeaseManager,
        sender: watch::Sender<bool>,
    ) -> Result<LeaseManager, LeaseManagerError> {
        let retry = self.cfg.retry;
        loop {
            let leading = *sender.borrow();
            tokio::select! {
                biased;
                () = sender.closed() => break,
                changed = manager.changed() => match changed {
                    Ok(leading) => {
                        sender.send_replace(leading);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?retry, "lease request failed; retrying");
                        tokio::select! {
                            biased;
                            () = sender.closed() => break,
                            () = tokio::time::sleep(retry) => {}
                        }
                    }
                },
                () = self.released(), if !leading => {
                    tracing::info!("the Lease was released; competing for it now");
                    match self.build().await {
                        Ok(fresh) => manager = fresh,
                        Err(e) => tracing::warn!(error = %e, "lease manager not rebuilt"),
                    }
                }
            }
        }
        manager.release().await?;
        Ok(manager)
    }
}

/// Runs `work` (the controller) until `lost` completes, then drops it at once: its in-flight
/// reconciles are aborted (kube-runtime spawns each as a `CancelableJoinHandle`, which aborts
/// its task on drop) instead of running to completion after a standby may have taken over.
/// `None` when leadership was lost first.
pub async fn until_lost<T>(
    work: impl std::future::Future<Output = T>,
    lost: impl std::future::Future<Output = ()>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = lost => None,
        done = work => Some(done),
    }
}

/// Why [`stop`] did not see the lease released.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The release did not finish in time (API server slow or unreachable).
    #[error("lease release did not finish within {0:?}")]
    Timeout(Duration),
    /// The release (or the manager before it) failed.
    #[error("lease manager: {0}")]
    Lease(#[from] LeaseManagerError),
    /// The manager task panicked or was cancelled.
    #[error("lease manager task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Waits at most `timeout` for the lease manager to release the lease and end. Every receiver
/// must be dropped first (that is what makes [`Competitor::compete`] release: it waits on
/// `Sender::closed`). A replica that does not hold the lease only reads it.
pub async fn stop(task: LeaseTask, timeout: Duration) -> Result<(), StopError> {
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(StopError::Timeout(timeout)),
        Ok(joined) => joined?.map(drop).map_err(StopError::from),
    }
}

/// Waits until `rx` says `want` (or the sender is gone, which counts as not leading).
pub async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    loop {
        if *rx.borrow_and_update() == want {
            return true;
        }
        if rx.changed().await.is_err() {
            return !want;
        }
    }
}

mod deadline;

#[cfg(test)]
mod tests;
