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
    assert_eq!(crd.spec.names.categories, Some(vec!["volley".to_string()]));
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

/// The CRD's OpenAPI schema as JSON.
fn schema() -> serde_json::Value {
    let crd = PushCluster::crd();
    let v = &crd.spec.versions[0];
    serde_json::to_value(&v.schema.as_ref().unwrap().open_api_v3_schema).unwrap()
}

/// Every `x-kubernetes-validations` rule in the schema, as (path, rule).
fn rules(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(list) = v.get("x-kubernetes-validations").and_then(|r| r.as_array()) {
        for r in list {
            assert!(
                r["message"].as_str().is_some_and(|m| !m.is_empty()),
                "rule at {path} has no message: {r}"
            );
            out.push((path.to_string(), r["rule"].as_str().unwrap().to_string()));
        }
    }
    if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
        for (k, p) in props {
            rules(p, &format!("{path}.{k}"), out);
        }
    }
}

#[test]
fn crd_carries_cel_rules_for_what_the_schema_can_say() {
    let mut found = Vec::new();
    rules(&schema(), "", &mut found);
    let has = |path: &str, rule: &str| found.iter().any(|(p, r)| p == path && r == rule);
    assert!(
        has(".spec.autoscaling", "self.minReplicas <= self.maxReplicas"),
        "{found:?}"
    );
    assert!(
        has(".spec.autoscaling", "self.targetConnectionsPerPod > 0"),
        "{found:?}"
    );
    assert!(
        has(
            ".spec.gateway.auth.jwt",
            "has(self.secretRef) != has(self.publicKeyRef)"
        ),
        "{found:?}"
    );
    assert!(has("", "self.metadata.name.size() <= 52"), "{found:?}");
}

/// Finding 3: `minReplicas: 0` in mode Operator scales to zero for good (no pod, no stats, no
/// load to scale up on), so the API server refuses it; mode External (an HPA) may keep 0.
#[test]
fn crd_refuses_min_replicas_zero_in_operator_mode_only() {
    let mut found = Vec::new();
    rules(&schema(), "", &mut found);
    assert!(
        found.iter().any(|(p, r)| p == ".spec.autoscaling"
            && r == "self.mode != 'Operator' || self.minReplicas >= 1"),
        "{found:?}"
    );
    // The schema minimum stays 0: External (an HPA on the scale subresource) may scale to 0.
    let s = schema();
    let min = &s["properties"]["spec"]["properties"]["autoscaling"]["properties"]["minReplicas"];
    assert_eq!(min["minimum"], 0.0);
}

/// Finding 10: a target above the per-pod cap makes full pods look under-loaded, so the
/// autoscaler would shrink a saturated cluster; finding 1 of review 2: a target above
/// `cap / (1 + tolerance)` scales up only once every pod is full. The API server refuses both in
/// mode Operator.
#[test]
fn crd_refuses_a_target_above_the_pod_connection_cap_over_the_tolerance_in_operator_mode() {
    let mut found = Vec::new();
    rules(&schema(), "", &mut found);
    let rule = found
        .iter()
        .find(|(p, r)| p == ".spec" && r.contains("maxConnectionsPerPod)"))
        .map(|(_, r)| r.as_str());
    assert_eq!(
        rule,
        Some(
            "!has(self.autoscaling) || self.autoscaling.mode != 'Operator' || !has(self.gateway) \
             || !has(self.gateway.maxConnectionsPerPod) || \
             double(self.autoscaling.targetConnectionsPerPod) * (1.0 + \
             (has(self.autoscaling.tolerance) ? double(self.autoscaling.tolerance) : 0.1)) < \
             double(self.gateway.maxConnectionsPerPod)"
        ),
        "{found:?}"
    );
}

/// Walks every property of the Volley-owned part of the schema (embedded Kubernetes types such
/// as `resources` or `affinity` carry upstream descriptions and are not walked into).
fn undocumented(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    const EMBEDDED: [&str; 4] = [
        ".spec.template.resources",
        ".spec.template.tolerations",
        ".spec.template.affinity",
        ".spec.template.topologySpreadConstraints",
    ];
    let Some(props) = v.get("properties").and_then(|p| p.as_object()) else {
        if let Some(items) = v.get("items") {
            undocumented(items, path, out);
        }
        return;
    };
    for (k, p) in props {
        let here = format!("{path}.{k}");
        if path.is_empty() && (k == "apiVersion" || k == "kind" || k == "metadata") {
            continue;
        }
        if p["description"]
            .as_str()
            .is_none_or(|d| d.trim().is_empty())
        {
            out.push(here.clone());
        }
        if !EMBEDDED.contains(&here.as_str()) && !here.starts_with(".status.conditions") {
            undocumented(p, &here, out);
        }
    }
}

#[test]
fn every_field_has_a_description() {
    let mut missing = Vec::new();
    undocumented(&schema(), "", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a doc comment: {missing:?}"
    );
}

#[test]
fn crd_schema_carries_defaults() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    let auto = &spec["autoscaling"]["properties"];
    assert_eq!(auto["mode"]["default"], "Operator");
    assert_eq!(auto["minReplicas"]["default"], 1);
    assert_eq!(auto["maxReplicas"]["default"], 10);
    assert_eq!(auto["targetConnectionsPerPod"]["default"], 10_000);
    assert_eq!(auto["scaleDownStabilizationSeconds"]["default"], 300);
    assert_eq!(auto["scaleUpStabilizationSeconds"]["default"], 15);
    assert_eq!(auto["tolerance"]["default"], 0.1);
    // Only strings no YAML reader turns into booleans (issue 8: `- Off` became `false`).
    assert_eq!(
        auto["mode"]["enum"],
        serde_json::json!(["Operator", "External", "Manual"])
    );
    let balance = &spec["balance"]["properties"];
    assert_eq!(balance["enabled"]["default"], true);
    assert_eq!(balance["tolerance"]["default"], 0.2);
    assert_eq!(spec["service"]["properties"]["port"]["default"], 80);
    assert_eq!(
        spec["service"]["properties"]["type"]["default"],
        "ClusterIP"
    );
}

#[test]
fn manual_mode_also_reads_the_old_spelling_and_yaml_1_1_false() {
    let mode = |json: &str| serde_json::from_str::<AutoscalingMode>(json);
    assert_eq!(mode("\"Manual\"").unwrap(), AutoscalingMode::Manual);
    assert_eq!(mode("\"Off\"").unwrap(), AutoscalingMode::Manual);
    // A YAML 1.1 reader turns an unquoted `Off` into `false`.
    assert_eq!(mode("false").unwrap(), AutoscalingMode::Manual);
    assert_eq!(mode("\"External\"").unwrap(), AutoscalingMode::External);
    let err = mode("true").unwrap_err().to_string();
    assert!(err.contains("Manual"), "{err}");
    let err = mode("\"Auto\"").unwrap_err().to_string();
    assert!(err.contains("Operator") && err.contains("Manual"), "{err}");
    // Written back as the new name.
    assert_eq!(
        serde_json::to_string(&AutoscalingMode::Manual).unwrap(),
        "\"Manual\""
    );
    let spec: PushClusterSpec =
        serde_yaml::from_str("autoscaling: {mode: Off}\nreplicas: 2").unwrap();
    assert_eq!(spec.autoscaling.mode, AutoscalingMode::Manual);
}
