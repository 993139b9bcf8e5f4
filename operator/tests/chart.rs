//! Chart checks through helm-python-sdk (`pip install helm-python-sdk`): strict lint, render with
//! default and non-default values, schema rejection of bad values, every rendered object parsed
//! into its k8s-openapi type, and manifests/install.yaml in sync with the chart.
//!
//! These FAIL (not skip) when python3 or helm_python is missing: the chart is a deliverable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs scripts/helm-chart.py; panics with its stderr (and an install hint) on failure.
fn helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .arg(root().join("scripts/helm-chart.py"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("python3 is required for the chart tests");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("No module named 'helm_python'"),
        "helm_python missing: run `pip install helm-python-sdk`\n{stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn helm_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = helm(args);
    assert!(ok, "helm-chart.py {args:?} failed:\n{stderr}");
    stdout
}

fn values_file(name: &str, values: &serde_json::Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(values).unwrap()).unwrap();
    path
}

/// Every YAML document of `text` as (kind, value).
fn documents(text: &str) -> Vec<(String, serde_json::Value)> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| {
            let v = serde_json::Value::deserialize(doc).expect("rendered YAML parses");
            (!v.is_null()).then(|| (v["kind"].as_str().unwrap_or_default().to_string(), v))
        })
        .collect()
}

/// Parses each object into its typed k8s-openapi struct; unknown kinds fail.
fn parse_typed(kind: &str, v: serde_json::Value) {
    fn p<T: serde::de::DeserializeOwned>(kind: &str, v: serde_json::Value) {
        if let Err(e) = serde_json::from_value::<T>(v.clone()) {
            panic!("{kind} does not parse: {e}\n{v:#}");
        }
    }
    match kind {
        "Namespace" => p::<Namespace>(kind, v),
        "ServiceAccount" => p::<ServiceAccount>(kind, v),
        "Service" => p::<Service>(kind, v),
        "Deployment" => p::<Deployment>(kind, v),
        "ClusterRole" => p::<ClusterRole>(kind, v),
        "ClusterRoleBinding" => p::<ClusterRoleBinding>(kind, v),
        "Role" => p::<Role>(kind, v),
        "RoleBinding" => p::<RoleBinding>(kind, v),
        "CustomResourceDefinition" => p::<CustomResourceDefinition>(kind, v),
        other => panic!("unexpected kind {other:?} in chart output"),
    }
}

fn render(
    values: Option<&serde_json::Value>,
) -> BTreeMap<String, Vec<(String, serde_json::Value)>> {
    let out = match values {
        Some(v) => {
            let f = values_file("values.json", v);
            helm_ok(&["render", f.to_str().unwrap()])
        }
        None => helm_ok(&["render"]),
    };
    let files: BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
    files
        .into_iter()
        .filter(|(path, _)| !path.ends_with("NOTES.txt"))
        .map(|(path, text)| (path, documents(&text)))
        .collect()
}

fn all_objects(
    r: &BTreeMap<String, Vec<(String, serde_json::Value)>>,
) -> Vec<(String, serde_json::Value)> {
    r.values().flatten().cloned().collect()
}

#[test]
fn chart_lints_strictly() {
    let report: serde_json::Value = serde_json::from_str(&helm_ok(&["lint"])).unwrap();
    assert_eq!(report["total_charts_linted"], 1, "{report}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    for m in report["messages"].as_array().unwrap() {
        // 2 = warning, 3 = error; info (1) such as "icon is recommended" is fine.
        assert!(m["severity"].as_i64().unwrap() < 2, "lint: {m}");
    }
}

#[test]
fn default_render_parses_and_is_hardened() {
    let objects = all_objects(&render(None));
    let mut kinds: Vec<_> = objects.iter().map(|(k, _)| k.clone()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for (kind, v) in &objects {
        parse_typed(kind, v.clone());
    }
    let (_, d) = objects.iter().find(|(k, _)| k == "Deployment").unwrap();
    let d: Deployment = serde_json::from_value(d.clone()).unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/volley-dev/volley-operator:0.1.0")
    );
    let args = c.args.clone().unwrap();
    assert!(args.contains(&"--gateway-image=ghcr.io/volley-dev/volley-gateway:0.1.0".to_string()));
    assert!(args.contains(&"--leader-elect=true".to_string()));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    // The ClusterRole grants what the controller uses.
    let (_, cr) = objects.iter().find(|(k, _)| k == "ClusterRole").unwrap();
    let cr: ClusterRole = serde_json::from_value(cr.clone()).unwrap();
    let rules = cr.rules.unwrap();
    let grants = |group: &str, res: &str, verb: &str| {
        rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|x| x == group))
                && r.resources
                    .as_ref()
                    .is_some_and(|x| x.iter().any(|x| x == res))
                && r.verbs.iter().any(|x| x == verb)
        })
    };
    assert!(grants("volley.dev", "pushclusters", "watch"));
    assert!(grants("volley.dev", "pushclusters/status", "patch"));
    assert!(grants("apps", "deployments", "patch"));
    assert!(grants("policy", "poddisruptionbudgets", "patch"));
    assert!(grants("", "pods", "patch"));
    assert!(grants("", "configmaps", "patch"));
    assert!(!grants("", "secrets", "list"));
}

#[test]
fn non_default_values_render() {
    let values = serde_json::json!({
        "replicaCount": 1,
        "image": {"repository": "registry.example/volley-operator", "tag": "dev", "pullPolicy": "Always"},
        "gatewayImage": {"repository": "registry.example/volley-gateway", "tag": "dev"},
        "leaderElection": {"enabled": false},
        "serviceAccount": {"create": false, "name": "custom-sa"},
        "rbac": {"create": false},
        "metrics": {"port": 9100, "service": {"enabled": false}},
        "otlpEndpoint": "http://otel:4317",
        "podAnnotations": {"a": "b"},
        "nodeSelector": {"pool": "ops"},
        "tolerations": [{"key": "ops", "operator": "Exists"}],
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "regcred"}]
    });
    let objects = all_objects(&render(Some(&values)));
    let kinds: Vec<_> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["Deployment"]);
    let d: Deployment = serde_json::from_value(objects[0].1.clone()).unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("custom-sa"));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/volley-operator:dev")
    );
    let args = c.args.clone().unwrap();
    assert!(args.contains(&"--leader-elect=false".to_string()));
    assert!(args.contains(&"--metrics-addr=0.0.0.0:9100".to_string()));
    assert!(args.contains(&"--gateway-image=registry.example/volley-gateway:dev".to_string()));
    let env = c.env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "OTEL_EXPORTER_OTLP_ENDPOINT"
        && e.value.as_deref() == Some("http://otel:4317")));
    assert_eq!(pod.node_selector.unwrap()["pool"], "ops");
}

#[test]
fn schema_rejects_bad_values() {
    for (name, bad) in [
        ("typo.json", serde_json::json!({"replicaCont": 2})),
        ("type.json", serde_json::json!({"replicaCount": "two"})),
        (
            "pull.json",
            serde_json::json!({"image": {"repository": "x", "pullPolicy": "Sometimes"}}),
        ),
        ("port.json", serde_json::json!({"metrics": {"port": 70000}})),
    ] {
        let f = values_file(name, &bad);
        let (ok, _, stderr) = helm(&["schema-check", f.to_str().unwrap()]);
        assert!(!ok, "schema accepted {bad}");
        assert!(!stderr.is_empty());
    }
    let f = values_file("good.json", &serde_json::json!({"replicaCount": 3}));
    assert!(helm(&["schema-check", f.to_str().unwrap()]).0);
}

#[test]
fn install_bundle_is_in_sync_and_parses() {
    let generated = helm_ok(&["install"]);
    let path = root().join("manifests/install.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        generated == checked_in,
        "manifests/install.yaml is stale: run scripts/render-install.sh"
    );
    let objects = documents(&checked_in);
    assert_eq!(objects[0].0, "Namespace");
    assert!(objects.iter().any(|(k, _)| k == "CustomResourceDefinition"));
    for (kind, v) in objects {
        parse_typed(&kind, v);
    }
}

#[test]
fn examples_parse() {
    let pc = std::fs::read_to_string(root().join("manifests/examples/pushcluster.yaml")).unwrap();
    for (kind, v) in documents(&pc) {
        assert_eq!(kind, "PushCluster");
        let pc: volley_crds::PushCluster = serde_json::from_value(v).unwrap();
        let mut pc = pc;
        pc.metadata.uid = Some("example".into());
        pc.metadata
            .namespace
            .get_or_insert_with(|| "default".into());
        volley_operator::build::build(&pc, 2, &Default::default()).expect("example builds");
    }
    let nats = std::fs::read_to_string(root().join("manifests/examples/nats.yaml")).unwrap();
    for (kind, v) in documents(&nats) {
        match kind.as_str() {
            "Deployment" => drop(serde_json::from_value::<Deployment>(v).unwrap()),
            "Service" => drop(serde_json::from_value::<Service>(v).unwrap()),
            other => panic!("unexpected {other}"),
        }
    }
}
