//! Tests for the PushCluster types and the CRD generated from them.

use kube::CustomResourceExt;

use super::*;

#[test]
fn crd_names_scope_and_subresources() {
    let crd = PushCluster::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("pushclusters.volley.dev")
    );
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "PushCluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["pushc".to_string()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, VERSION);
    let sub = v.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let cols: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .expect("printer columns")
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Replicas", "Ready", "Connections", "Age"]);
}

#[test]
fn empty_spec_gets_defaults() {
    let spec: PushClusterSpec = serde_json::from_str("{}").unwrap();
    assert_eq!(spec.autoscaling.mode, AutoscalingMode::Operator);
    assert_eq!(spec.autoscaling.min_replicas, 1);
    assert!(spec.balance.enabled);
    assert_eq!(spec.service.port, 80);
    assert_eq!(spec.service.type_, ServiceType::ClusterIP);
    assert!(spec.nats.is_none());
}

#[test]
fn full_spec_parses_from_yaml() {
    let yaml = r#"
apiVersion: volley.dev/v1alpha1
kind: PushCluster
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  autoscaling: {mode: External, minReplicas: 2, maxReplicas: 20, targetConnectionsPerPod: 5000, scaleDownStabilizationSeconds: 60}
  nats: {url: "nats://nats:4222", credentialsSecret: nats-creds, subjectPrefix: app}
  gateway:
    flushInterval: 5ms
    maxConnectionsPerPod: 50000
    maxPendingBytes: 1048576
    maxSubscriptionsPerConnection: 64
    auth: {jwt: {secretRef: {name: jwt, key: secret}, issuer: me, audience: you}}
    allowedOrigins: ["https://example.com"]
  balance: {enabled: false, tolerance: 0.1, maxShedPerMinute: 100}
  service: {type: LoadBalancer, port: 443, annotations: {a: b}}
  image: example/volley-gateway:dev
  template:
    resources: {limits: {cpu: "2", memory: 1Gi}}
    nodeSelector: {pool: edge}
    tolerations: [{key: edge, operator: Exists}]
    annotations: {x: y}
"#;
    let pc: PushCluster = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(pc.spec.replicas, Some(3));
    assert_eq!(pc.spec.autoscaling.mode, AutoscalingMode::External);
    assert_eq!(
        pc.spec.nats.as_ref().unwrap().subject_prefix.as_deref(),
        Some("app")
    );
    let jwt = pc.spec.gateway.auth.as_ref().unwrap().jwt.as_ref().unwrap();
    assert_eq!(jwt.secret_ref.as_ref().unwrap().key, "secret");
    assert_eq!(pc.spec.service.type_, ServiceType::LoadBalancer);
    assert_eq!(pc.spec.template.tolerations.len(), 1);
    // Round trip through JSON keeps everything.
    let back: PushCluster = serde_json::from_value(serde_json::to_value(&pc).unwrap()).unwrap();
    assert_eq!(back, pc);
}

#[test]
fn spec_replicas_falls_back_to_min() {
    let mut pc = PushCluster::new("web", PushClusterSpec::default());
    assert_eq!(pc.spec_replicas(), 1);
    pc.spec.autoscaling.min_replicas = 3;
    assert_eq!(pc.spec_replicas(), 3);
    pc.spec.replicas = Some(0);
    assert_eq!(pc.spec_replicas(), 0);
}
