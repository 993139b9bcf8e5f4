//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so several operator
//! replicas can run with exactly one reconciling.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

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
}

/// Starts competing for the lease; the receiver says whether this replica leads. Dropping every
/// receiver releases the lease.
pub async fn start(
    client: Client,
    cfg: LeaseConfig,
) -> Result<watch::Receiver<bool>, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, cfg.name)
        .with_namespace(cfg.namespace)
        .with_identity(cfg.identity)
        .with_duration(cfg.duration_seconds)
        .with_grace(cfg.grace_seconds)
        .with_field_manager(format!("{}-lease", crate::build::MANAGER))
        .build()
        .await?;
    let (rx, task) = manager.watch().await;
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => tracing::info!("lease manager stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "lease manager failed"),
            Err(e) => tracing::error!(error = %e, "lease manager task panicked"),
        }
    });
    Ok(rx)
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

#[cfg(test)]
mod tests;
