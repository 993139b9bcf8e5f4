//! The pure "build" step of reconciliation: a validated PushCluster (+ the replicas the plan
//! chose) → the child objects the operator server-side-applies, one builder per child. No IO
//! here, so every detail is unit-testable.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, LocalObjectReference,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use volley_crds::PushCluster;

use crate::gateway_config::{
    self, ADMIN_PORT, CLIENT_PORT, CONFIG_DIR, CONFIG_KEY, JWT_DIR, NATS_DIR, SpecError, Validated,
};

/// Name of the operator as field manager and in `app.kubernetes.io/managed-by`.
pub const MANAGER: &str = "volley-operator";
/// Label naming the PushCluster a child belongs to.
pub const CLUSTER_LABEL: &str = "volley.dev/cluster";
/// Pod template annotation carrying a hash of the config so config changes roll the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "volley.dev/config-hash";
/// Seconds the preStop hook waits so endpoints drop the pod before SIGTERM starts the drain.
pub const PRESTOP_SECONDS: i64 = 5;
/// Slack on top of drain + preStop before the kubelet sends SIGKILL.
pub const GRACE_MARGIN_SECONDS: i64 = 10;
/// Unprivileged uid/gid the gateway runs as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;

/// Replica count from which a PodDisruptionBudget is built.
pub const PDB_MIN_REPLICAS: i32 = 2;

/// Operator-wide settings the build step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Image used when `spec.image` is unset.
    pub default_image: String,
    /// `imagePullPolicy` of gateway containers; `None` leaves the Kubernetes default.
    pub pull_policy: Option<String>,
    /// `imagePullSecrets` of gateway pods: Secret names in each PushCluster's namespace.
    pub pull_secrets: Vec<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            default_image: default_gateway_image(),
            pull_policy: None,
            pull_secrets: Vec::new(),
        }
    }
}

/// `ghcr.io/volley-dev/volley-gateway:<operator version>`.
pub fn default_gateway_image() -> String {
    format!(
        "ghcr.io/volley-dev/volley-gateway:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Why the build step refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The spec is invalid; reported as a condition.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The object has not been stored yet (no uid), so children cannot be owned by it.
    #[error("PushCluster has no metadata.uid/namespace yet")]
    NotStored,
}

/// The objects one PushCluster owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// Gateway pods' identity (no API access: the token is not mounted).
    pub service_account: ServiceAccount,
    /// `gateway.yaml`.
    pub config_map: ConfigMap,
    /// The gateways.
    pub deployment: Deployment,
    /// Client-facing Service.
    pub service: Service,
    /// At most one gateway pod voluntarily down at a time. `None` below [`PDB_MIN_REPLICAS`]
    /// replicas, where it would protect nothing (maxUnavailable 1 of 1 allows every eviction);
    /// the controller then prunes an existing one.
    pub pdb: Option<PodDisruptionBudget>,
}

/// Labels selecting the gateway pods of `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "volley-gateway".to_string(),
        ),
        (CLUSTER_LABEL.to_string(), name.to_string()),
    ])
}

/// `status.selector`: the selector in string form, for the scale subresource.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(name: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(name);
    l.insert("app.kubernetes.io/instance".into(), name.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l.insert("app.kubernetes.io/component".into(), "gateway".into());
    l
}

/// Name of the ConfigMap of cluster `name`.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-config")
}

/// FNV-1a: a stable hash (std's `DefaultHasher` may change between Rust releases, which would
/// roll every gateway on an operator upgrade).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A PushCluster that passed validation, with what every builder needs from it. Only
/// [`validate`] makes one, so a builder cannot meet an invalid spec: validation runs once.
#[derive(Debug, Clone)]
pub struct Valid<'a> {
    /// The resource.
    pub pc: &'a PushCluster,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The rendered gateway config and what else the spec yields (drain window, JWT key).
    pub rendered: Validated,
    /// The controller owner reference every child carries.
    owner: OwnerReference,
    /// `gateway.yaml` as stored in the ConfigMap (and hashed into the pod template).
    config_yaml: String,
}

/// Validates `pc` (the checks its schema cannot make) and renders its gateway config.
pub fn validate(pc: &PushCluster) -> Result<Valid<'_>, BuildError> {
    let rendered = gateway_config::render(pc)?;
    let (Some(name), Some(namespace), Some(owner)) = (
        pc.metadata.name.clone(),
        pc.metadata.namespace.clone(),
        pc.controller_owner_ref(&()),
    ) else {
        return Err(BuildError::NotStored);
    };
    let config_yaml = gateway_config::to_yaml(&rendered.config);
    Ok(Valid {
        pc,
        name,
        namespace,
        rendered,
        owner,
        config_yaml,
    })
}

/// Validates `pc` and builds every child, with the Deployment at `replicas`.
pub fn build(pc: &PushCluster, replicas: i32, opts: &BuildOptions) -> Result<Children, BuildError> {
    Ok(children(&validate(pc)?, replicas, opts))
}

/// Every child of a validated PushCluster, one builder each, with the Deployment at `replicas`.
pub fn children(v: &Valid<'_>, replicas: i32, opts: &BuildOptions) -> Children {
    Children {
        service_account: service_account(v),
        config_map: config_map(v),
        deployment: deployment(v, replicas, opts),
        service: service(v),
        pdb: pdb(v, replicas),
    }
}

impl Valid<'_> {
    /// Metadata of a child: its name, the cluster's labels, the owner reference.
    fn meta(&self, obj_name: String, annotations: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(obj_name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels(&self.name)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }
}

/// The gateway pods' identity (no API access: the token is not mounted).
pub fn service_account(v: &Valid<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: v.meta(v.name.clone(), BTreeMap::new()),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The ConfigMap holding `gateway.yaml`.
pub fn config_map(v: &Valid<'_>) -> ConfigMap {
    ConfigMap {
        metadata: v.meta(config_map_name(&v.name), BTreeMap::new()),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_string(),
            v.config_yaml.clone(),
        )])),
        ..Default::default()
    }
}

/// The gateways' Deployment at `replicas`.
pub fn deployment(v: &Valid<'_>, replicas: i32, opts: &BuildOptions) -> Deployment {
    let (name, spec, validated) = (&v.name, &v.pc.spec, &v.rendered);
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        EnvVar {
            name: "VOLLEY_CLUSTER".into(),
            value: Some(name.clone()),
            ..Default::default()
        },
    ];
    if let Some(r) = &spec.gateway.api_key_ref {
        env.push(EnvVar {
            name: "VOLLEY_API_KEY".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(name),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![mount("config", CONFIG_DIR)];
    if let Some(key) = &validated.jwt_key {
        let r = key.secret_ref();
        volumes.push(secret_volume("jwt", &r.name, &r.key, key.file_name()));
        mounts.push(mount("jwt", JWT_DIR));
    }
    if let Some(secret) = spec
        .nats
        .as_ref()
        .and_then(|n| n.credentials_secret.as_ref())
    {
        volumes.push(secret_volume("nats-creds", secret, "creds", "creds"));
        mounts.push(mount("nats-creds", NATS_DIR));
    }

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    let container = Container {
        name: "gateway".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| opts.default_image.clone()),
        ),
        image_pull_policy: opts.pull_policy.clone(),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![port("client", CLIENT_PORT), port("admin", ADMIN_PORT)]),
        env: Some(env),
        // Readiness flips quickly: a draining or shedding gateway must leave the endpoints fast.
        readiness_probe: Some(probe("/readyz", 2, 1)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        lifecycle: Some(Lifecycle {
            // The `sleep` handler (k8s 1.30+) needs no shell or sleep binary in the image.
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRESTOP_SECONDS,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: spec.template.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };

    let drain_secs = i64::try_from(validated.drain.as_millis().div_ceil(1000)).unwrap_or(600);
    // Scrape defaults first so `spec.template.annotations` can override them.
    let mut pod_annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), ADMIN_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    pod_annotations.extend(spec.template.annotations.clone());
    pod_annotations.insert(
        CONFIG_HASH_ANNOTATION.into(),
        format!("{:016x}", fnv1a(v.config_yaml.as_bytes())),
    );
    let t = &spec.template;
    let pod_spec = PodSpec {
        service_account_name: Some(name.clone()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(drain_secs + PRESTOP_SECONDS + GRACE_MARGIN_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![container],
        image_pull_secrets: (!opts.pull_secrets.is_empty()).then(|| {
            opts.pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        volumes: Some(volumes),
        node_selector: (!t.node_selector.is_empty()).then(|| t.node_selector.clone()),
        tolerations: (!t.tolerations.is_empty()).then(|| t.tolerations.clone()),
        affinity: t.affinity.clone(),
        topology_spread_constraints: (!t.topology_spread_constraints.is_empty())
            .then(|| t.topology_spread_constraints.clone()),
        ..Default::default()
    };
    Deployment {
        metadata: v.meta(name.clone(), BTreeMap::new()),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector(name),
            // Never below the current capacity during a rollout: clients reconnect to new pods.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The client-facing Service.
pub fn service(v: &Valid<'_>) -> Service {
    let spec = &v.pc.spec;
    Service {
        metadata: v.meta(v.name.clone(), spec.service.annotations.clone()),
        spec: Some(ServiceSpec {
            type_: Some(spec.service.type_.as_str().into()),
            selector: Some(selector_labels(&v.name)),
            ports: Some(vec![ServicePort {
                name: Some("client".into()),
                port: spec.service.port,
                target_port: Some(IntOrString::String("client".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// At most one gateway pod voluntarily down at a time; `None` below [`PDB_MIN_REPLICAS`].
pub fn pdb(v: &Valid<'_>, replicas: i32) -> Option<PodDisruptionBudget> {
    (replicas >= PDB_MIN_REPLICAS).then(|| PodDisruptionBudget {
        metadata: v.meta(v.name.clone(), BTreeMap::new()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(&v.name)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The label selector of the gateway pods of `name`.
fn selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(name)),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn secret_volume(volume: &str, secret: &str, key: &str, file: &str) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: file.into(),
                ..Default::default()
            }]),
            // Readable by the non-root gateway user only via fsGroup.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Owner reference helper for tests and callers that need the same reference.
pub fn owner_ref(pc: &PushCluster) -> Option<OwnerReference> {
    pc.controller_owner_ref(&())
}

#[cfg(test)]
mod tests;
