//! Waiting for the PushCluster CRD to be served, shared by both cluster-tier tests.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

use crate::poll::{Timeout, eventually};

/// Waits until `pushclusters.volley.dev` reports `Established=True` (the API server serves it).
pub async fn wait_established(client: &Client, limit: Duration) -> Result<(), Timeout> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually("CRD established", limit, || async {
        let crd = crds.get("pushclusters.volley.dev").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await
}
