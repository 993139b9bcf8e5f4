//! The `PushCluster` custom resource (`volley.dev/v1alpha1`, short name `pushc`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Volley resource.
pub const GROUP: &str = "volley.dev";
/// API version of `PushCluster`.
pub const VERSION: &str = "v1alpha1";

/// Condition types the operator maintains on `status.conditions`.
pub mod condition {
    /// All children applied and every desired pod ready.
    pub const READY: &str = "Ready";
    /// A replica change is in progress (desired != ready).
    pub const SCALING: &str = "Scaling";
    /// Connection counts are within `balance.tolerance` of the mean.
    pub const BALANCED: &str = "Balanced";
    /// Stats from the gateways are arriving over NATS.
    pub const NATS_CONNECTED: &str = "NatsConnected";
}

/// A clustered WebSocket push gateway: the operator turns it into a ConfigMap, Deployment,
/// Service and PodDisruptionBudget, scales it on connection counts and keeps pods balanced.
// kube's derive takes one `printcolumn(...)` per column, which clippy sees as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "volley.dev",
    version = "v1alpha1",
    kind = "PushCluster",
    plural = "pushclusters",
    shortname = "pushc",
    category = "volley",
    namespaced,
    // Children are named `<name>`, `<name>-config`; pod names add ~17 characters, and the name
    // is one NATS subject token.
    validation = Rule::new("self.metadata.name.size() <= 52").message("metadata.name must be at most 52 characters (child and pod names are derived from it)"),
    status = "PushClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A clustered WebSocket push gateway managed by the Volley operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// A scale-up on load needs more than `(1 + tolerance) × pods × target` connections, and a pod
// never holds more than `maxConnectionsPerPod`: with `target × (1 + tolerance) >= max` the load
// leaves the tolerance band only once every pod is full and refusing clients (and a target above
// the cap makes full pods look under-loaded, so a saturated cluster would be shrunk). Only mode
// Operator reads the target. `gateway` and `autoscaling` (with `targetConnectionsPerPod` and
// `tolerance`) are defaulted before validation; the `has` guards keep the rule total anyway.
// `double()` accepts an integer or a double, so `tolerance: 0` written as an integer works too.
#[x_kube(validation = Rule::new("!has(self.autoscaling) || self.autoscaling.mode != 'Operator' || !has(self.gateway) || !has(self.gateway.maxConnectionsPerPod) || double(self.autoscaling.targetConnectionsPerPod) * (1.0 + (has(self.autoscaling.tolerance) ? double(self.autoscaling.tolerance) : 0.1)) < double(self.gateway.maxConnectionsPerPod)").message("autoscaling.targetConnectionsPerPod (default 10000) x (1 + autoscaling.tolerance, default 0.1) must be < gateway.maxConnectionsPerPod in mode Operator: pods never hold more than maxConnectionsPerPod, so a higher target scales up only once every pod is full and refusing clients"))]
pub struct PushClusterSpec {
    /// Gateway pod count: written by an HPA (through the scale subresource) when
    /// `autoscaling.mode` is `External`, by hand (e.g. `kubectl scale`) when `Manual`. In mode
    /// `Operator` it is only the starting count: the autoscaler owns the count and a different
    /// value is overridden (Event `ScaleOverridden`). Unset means `autoscaling.minReplicas` (or 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// How the replica count is chosen.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Cluster mode: the NATS server every gateway (and the operator) connects to. Without it the
    /// gateways run standalone (each delivers only what is published to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSpec>,
    /// Gateway settings rendered into its YAML config.
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// Connection balancing across pods.
    #[serde(default)]
    pub balance: BalanceSpec,
    /// The client-facing Service.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Gateway image; defaults to the operator's `--gateway-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pod template settings passed through to the gateway Deployment.
    #[serde(default)]
    pub template: TemplateSpec,
    /// JetStream history and client resume for some topics (requires `nats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<crate::history::HistorySpec>,
}

/// Who decides the replica count.
///
/// Serialized as `Operator`, `External` or `Manual`: names no YAML reader mistakes for
/// something else. The former fixed mode was called `Off`, which a YAML 1.1 reader (the API
/// server's, kubectl's, PyYAML) reads as the boolean `false` when unquoted, so it could never be
/// stored. Reading is lenient where old spellings can still arrive through this type (files,
/// tests, other tools): `"Off"` and the boolean `false` both mean `Manual`. The CRD schema lists
/// only the three strings, so the API server rejects `Off` with a message naming them.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AutoscalingMode {
    /// The operator scales from the gateway stats stream.
    #[default]
    Operator,
    /// Something else (e.g. an HPA on the scale subresource) writes `spec.replicas`.
    External,
    /// Fixed at `spec.replicas`, changed by hand (e.g. `kubectl scale`).
    Manual,
}

impl AutoscalingMode {
    /// The spelling in the CRD.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "Operator",
            Self::External => "External",
            Self::Manual => "Manual",
        }
    }
}

impl<'de> Deserialize<'de> for AutoscalingMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AutoscalingMode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one of \"Operator\", \"External\", \"Manual\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "Operator" => Ok(AutoscalingMode::Operator),
                    "External" => Ok(AutoscalingMode::External),
                    // The old name of Manual.
                    "Manual" | "Off" => Ok(AutoscalingMode::Manual),
                    _ => Err(E::unknown_variant(v, &["Operator", "External", "Manual"])),
                }
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                // What a YAML 1.1 reader makes of an unquoted `Off` (or `no`, `false`).
                if v {
                    Err(E::invalid_value(serde::de::Unexpected::Bool(v), &self))
                } else {
                    Ok(AutoscalingMode::Manual)
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Operator autoscaling settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must be <= autoscaling.maxReplicas"),
    validation = Rule::new("self.targetConnectionsPerPod > 0").message("autoscaling.targetConnectionsPerPod must be > 0"),
    // With no pod there are no stats and no connections, so an autoscaler at 0 would never see
    // load again: the operator scales to at least 1. An HPA (External) may scale to 0.
    validation = Rule::new("self.mode != 'Operator' || self.minReplicas >= 1").message("autoscaling.minReplicas must be >= 1 in mode Operator (with no pod there is no load to scale up on); use mode External to scale to zero")
)]
pub struct AutoscalingSpec {
    /// Who decides the replica count.
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Lower bound for the operator's decision; at least 1 in mode `Operator` (0 is allowed
    /// only for an external autoscaler).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Upper bound for the operator's decision.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Connections one pod should hold on average; at most `gateway.maxConnectionsPerPod` in
    /// mode `Operator`.
    #[serde(default = "default_target_connections")]
    #[schemars(range(min = 1))]
    pub target_connections_per_pod: i64,
    /// A scale-down only happens when every recommendation in this window allowed it.
    #[serde(default = "default_scale_down_stabilization")]
    #[schemars(range(min = 0))]
    pub scale_down_stabilization_seconds: i64,
    /// A scale-up only happens when every recommendation in this window asked for more pods, so
    /// a transient (clients counted on two pods while they reconnect) shorter than a few stats
    /// intervals never adds a pod. 0 scales up on the first look.
    #[serde(default = "default_scale_up_stabilization")]
    #[schemars(range(min = 0))]
    pub scale_up_stabilization_seconds: i64,
    /// No change while total connections are within this fraction of
    /// `replicas × targetConnectionsPerPod` (like the HorizontalPodAutoscaler's tolerance),
    /// e.g. `0.1` = ±10%.
    #[serde(default = "default_autoscaling_tolerance")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: f64,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_target_connections() -> i64 {
    10_000
}
fn default_scale_down_stabilization() -> i64 {
    300
}
fn default_scale_up_stabilization() -> i64 {
    15
}
fn default_autoscaling_tolerance() -> f64 {
    0.1
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::default(),
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_connections_per_pod: default_target_connections(),
            scale_down_stabilization_seconds: default_scale_down_stabilization(),
            scale_up_stabilization_seconds: default_scale_up_stabilization(),
            tolerance: default_autoscaling_tolerance(),
        }
    }
}

/// NATS connection for cluster mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsSpec {
    /// NATS server URL, e.g. `nats://nats.default.svc:4222`.
    pub url: String,
    /// Name of a Secret in the same namespace whose `creds` key is a NATS credentials file. It is
    /// mounted into the gateway at `/etc/volley/nats/creds` and used by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Subject prefix publishers use (`<prefix>.<topic>`); the gateway default is `push`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
}

/// Gateway settings (durations are humantime strings such as `10ms`, `5s`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// How often shards flush pending frames, e.g. `5ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
    /// Hard cap on connections one pod accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections_per_pod: Option<i64>,
    /// Pending bytes per connection before the slow-consumer policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_pending_bytes: Option<i64>,
    /// Topics one connection may subscribe to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_subscriptions_per_connection: Option<i64>,
    /// How long a draining pod spreads its closes over (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
    /// Client authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Browser origins allowed to connect; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Secret key holding the API key required by the HTTP publish API (`VOLLEY_API_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_ref: Option<SecretKeyRef>,
}

/// Client authentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// JWT bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

/// JWT validation: exactly one of `secretRef` (HMAC) or `publicKeyRef` (RSA/EC PEM).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.publicKeyRef)").message("gateway.auth.jwt: set exactly one of secretRef or publicKeyRef"))]
pub struct JwtSpec {
    /// Secret key holding the HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the PEM public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_ref: Option<SecretKeyRef>,
    /// Required `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// A key in a Secret in the PushCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// Connection balancing across pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceSpec {
    /// Shed connections from the fullest pods after a scale-up.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Allowed relative deviation from the mean, e.g. `0.2` = ±20%.
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub tolerance: f64,
    /// Upper bound on connections shed per minute across the cluster.
    #[serde(default = "default_max_shed")]
    #[schemars(range(min = 0))]
    pub max_shed_per_minute: i64,
}

fn default_true() -> bool {
    true
}
fn default_tolerance() -> f64 {
    0.2
}
fn default_max_shed() -> i64 {
    1_000
}

impl Default for BalanceSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            tolerance: default_tolerance(),
            max_shed_per_minute: default_max_shed(),
        }
    }
}

/// Service type for the client-facing Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Cluster-internal.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The client-facing Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port clients connect to (the pods listen on 8080).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Extra Service annotations (e.g. load-balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn default_port() -> i32 {
    80
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Pod template settings passed through to the gateway pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    /// Gateway container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pod node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod topology spread constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushClusterStatus {
    /// Pods of the gateway Deployment.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the gateway pods, in string form (for the scale subresource / HPA).
    #[serde(default)]
    pub selector: String,
    /// Sum of connections over pods with fresh stats.
    #[serde(default)]
    pub connections: i64,
    /// Replica count the operator wants (equals spec unless mode is `Operator`).
    #[serde(default)]
    pub desired_replicas: i32,
    /// Per-pod view from the stats stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodStatus>,
    /// Ready, Scaling, Balanced, NatsConnected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One gateway pod as seen in its stats.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pod name.
    pub name: String,
    /// Open client connections.
    pub connections: i64,
    /// Whether the pod takes new connections.
    pub accepting: bool,
    /// Whether the pod is draining.
    pub draining: bool,
    /// When its last stats message arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
}

impl PushCluster {
    /// Replica count the spec asks for when nobody has decided one yet.
    pub fn spec_replicas(&self) -> i32 {
        self.spec
            .replicas
            .unwrap_or(self.spec.autoscaling.min_replicas.max(1))
    }
}

#[cfg(test)]
mod tests;
