//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so several operator
//! replicas can run with exactly one reconciling.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
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
    let client = deadline::recording(client, path, writes.clone());
    let manager = LeaseManagerBuilder::new(client, cfg.name)
        .with_namespace(cfg.namespace)
        .with_identity(cfg.identity)
        .with_duration(cfg.duration_seconds)
        .with_grace(cfg.grace_seconds)
        .with_field_manager(format!("{}-lease", crate::build::MANAGER))
        .build()
        .await?;
    let (upstream, task) = manager.watch().await;
    let (out, rx) = watch::channel(*upstream.borrow());
    tokio::spawn(deadline::guard(upstream, out, writes, cfg.renew_deadline));
    Ok((rx, task))
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
/// must be dropped first (that is what makes kube-lease-manager release: its watch loop waits on
/// `Sender::closed`, manager.rs `watch`). A replica that does not hold the lease only reads it.
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
