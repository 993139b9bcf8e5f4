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
    helm_in("volley-system", args)
}

/// [`helm`] with the release in namespace `ns`.
fn helm_in(ns: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .arg(root().join("scripts/helm-chart.py"))
        .args(args)
        .env("VOLLEY_CHART_NAMESPACE", ns)
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
    // Tests run in parallel: every file gets its own name, or one test renders another's values.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("volley-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{n}-{name}"));
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
        "Pod" => p::<k8s_openapi::api::core::v1::Pod>(kind, v),
        // Prometheus Operator kinds have no k8s-openapi type: check the group and a spec.
        "ServiceMonitor" | "PodMonitor" => {
            assert_eq!(v["apiVersion"], "monitoring.coreos.com/v1", "{v:#}");
            assert!(v["spec"]["selector"]["matchLabels"].is_object(), "{v:#}");
        }
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
            "CustomResourceDefinition",
            "Deployment",
            "Pod",
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
    assert!(!grants("", "secrets", "watch"));
    // The event recorder creates Events and patches them when they repeat.
    assert!(grants("events.k8s.io", "events", "create"));
    assert!(grants("events.k8s.io", "events", "patch"));
    // Children are removed by owner references, not by the operator.
    assert!(!grants("apps", "deployments", "delete"));
    assert!(!rules.iter().any(|r| r.verbs.iter().any(|v| v == "*")));
    assert!(!rules.iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|x| x.iter().any(|x| x == "*"))
    }));

    // The CRD is a template, installed by default and kept on uninstall.
    let (_, crd) = objects
        .iter()
        .find(|(k, _)| k == "CustomResourceDefinition")
        .unwrap();
    assert_eq!(crd["metadata"]["name"], "pushclusters.volley.dev");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
}

#[test]
fn crd_template_is_under_templates_behind_crds_install() {
    assert!(
        !root().join("charts/volley/crds").exists(),
        "the CRD lives in templates/ (crds/ cannot be toggled or upgraded by Helm)"
    );
    let off = all_objects(&render(Some(
        &serde_json::json!({"crds": {"install": false}}),
    )));
    assert!(!off.iter().any(|(k, _)| k == "CustomResourceDefinition"));
    assert!(off.iter().any(|(k, _)| k == "Deployment"));
}

#[test]
fn every_rbac_rule_says_why() {
    let text = std::fs::read_to_string(root().join("charts/volley/templates/rbac.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules += 1;
            // The rule itself or the rule just before it (a group of rules under one comment).
            let mut j = i;
            let commented = loop {
                if j == 0 {
                    break false;
                }
                j -= 1;
                let prev = lines[j].trim_start();
                if prev.starts_with('#') {
                    break true;
                }
                if prev.starts_with("rules:") {
                    break false;
                }
                if prev.starts_with("- apiGroups:") {
                    // A rule directly after another rule (no blank comment) needs its own.
                    break false;
                }
            };
            assert!(
                commented,
                "rbac.yaml line {}: rule without a comment",
                i + 1
            );
        }
    }
    assert!(rules >= 8, "{rules} rules");
}

#[test]
fn watch_namespace_narrows_rbac_and_passes_the_flag() {
    let objects = all_objects(&render(Some(
        &serde_json::json!({"watchNamespace": "apps"}),
    )));
    let kinds: Vec<_> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert!(!kinds.contains(&"ClusterRole"), "{kinds:?}");
    assert!(!kinds.contains(&"ClusterRoleBinding"), "{kinds:?}");
    let roles: Vec<_> = objects
        .iter()
        .filter(|(k, _)| k == "Role")
        .map(|(_, v)| serde_json::from_value::<Role>(v.clone()).unwrap())
        .collect();
    assert!(roles.iter().any(|r| {
        r.metadata.namespace.as_deref() == Some("apps")
            && r.rules.as_ref().unwrap().iter().any(|r| {
                r.resources
                    .as_ref()
                    .is_some_and(|x| x.iter().any(|x| x == "pushclusters"))
            })
    }));
    let (_, d) = objects.iter().find(|(k, _)| k == "Deployment").unwrap();
    let d: Deployment = serde_json::from_value(d.clone()).unwrap();
    let args = d.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--namespace=apps".to_string()), "{args:?}");
}

#[test]
fn notes_tell_how_to_create_a_first_pushcluster() {
    let out = helm_ok(&["render"]);
    let files: BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
    let (_, notes) = files
        .iter()
        .find(|(p, _)| p.ends_with("NOTES.txt"))
        .expect("NOTES.txt");
    assert!(notes.contains("kind: PushCluster"), "{notes}");
    assert!(notes.contains("kubectl apply"), "{notes}");
    assert!(notes.contains("kubectl get pushc"), "{notes}");
}

#[test]
fn values_are_documented() {
    let text = std::fs::read_to_string(root().join("charts/volley/values.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('-') {
            continue;
        }
        let indent = line.len() - t.len();
        // Leaves (key: value) need a comment just above them; parents document themselves
        // through their leaves. Lines inside a default map/list (deeper than a leaf) are data.
        let leaf = !t.ends_with(':');
        let prev = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
        let prev_is_comment = prev.is_some_and(|p| p.trim_start().starts_with('#'));
        let parent_is_data = lines[..i].iter().rev().any(|l| {
            let lt = l.trim_start();
            !lt.is_empty() && !lt.starts_with('#') && l.len() - lt.len() < indent && {
                let key = lt.split(':').next().unwrap_or_default();
                key == "resources" || key == "requests" || key == "limits"
            }
        }) && indent >= 2
            && !t.starts_with("repository")
            && !t.starts_with("tag");
        if leaf && !parent_is_data {
            assert!(
                prev_is_comment,
                "values.yaml line {}: {t:?} is undocumented",
                i + 1
            );
        }
    }
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
        "crds": {"install": false},
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
        ("crds.json", serde_json::json!({"crds": {"install": "yes"}})),
        (
            "ns.json",
            serde_json::json!({"watchNamespace": "Not A Namespace"}),
        ),
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

/// The objects of one kind in a render.
fn of_kind(objects: &[(String, serde_json::Value)], kind: &str) -> Vec<serde_json::Value> {
    objects
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn helm_test_pod_fetches_readyz_through_the_metrics_service() {
    let objects = all_objects(&render(None));
    let [pod] = of_kind(&objects, "Pod").try_into().expect("one test pod");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let cmd = spec.containers[0].command.clone().unwrap();
    assert_eq!(
        cmd.last().unwrap(),
        "http://volley-metrics.volley-system.svc:8080/readyz"
    );
    // The metrics Service selects the operator pods, not the test pod.
    let svc: Service = serde_json::from_value(of_kind(&objects, "Service")[0].clone()).unwrap();
    let selector = svc.spec.unwrap().selector.unwrap();
    let labels = pod.metadata.labels.unwrap();
    assert!(
        !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "{selector:?} selects the test pod {labels:?}"
    );
    assert_eq!(
        svc.metadata.name.as_deref(),
        Some("volley-metrics"),
        "the URL names this Service"
    );
    assert_eq!(spec.security_context.unwrap().run_as_non_root, Some(true));

    let custom = all_objects(&render(Some(&serde_json::json!({
        "metrics": {"port": 9100},
        "imagePullSecrets": [{"name": "regcred"}],
        "tests": {"image": "registry.example/busybox:1"}
    }))));
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(of_kind(&custom, "Pod")[0].clone()).unwrap();
    let spec = pod.spec.unwrap();
    assert!(
        spec.containers[0]
            .command
            .as_ref()
            .unwrap()
            .last()
            .unwrap()
            .ends_with(":9100/readyz")
    );
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("registry.example/busybox:1")
    );
    assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");

    // Not part of the plain install bundle.
    let bundle = std::fs::read_to_string(root().join("manifests/install.yaml")).unwrap();
    assert!(!documents(&bundle).iter().any(|(k, _)| k == "Pod"));
}

#[test]
fn monitors_render_only_when_enabled_and_select_what_exists() {
    let objects = all_objects(&render(None));
    assert!(of_kind(&objects, "ServiceMonitor").is_empty());
    assert!(of_kind(&objects, "PodMonitor").is_empty());

    let objects = all_objects(&render(Some(&serde_json::json!({
        "metrics": {
            "serviceMonitor": {"enabled": true, "interval": "30s", "labels": {"release": "prom"}},
            "podMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prom"}}
        }
    }))));
    for (kind, v) in &objects {
        parse_typed(kind, v.clone());
    }
    let [sm] = of_kind(&objects, "ServiceMonitor")
        .try_into()
        .expect("one ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "30s");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    // It selects the metrics Service by its labels and scrapes a port the Service has.
    let svc: Service = serde_json::from_value(of_kind(&objects, "Service")[0].clone()).unwrap();
    let svc_labels = svc.metadata.labels.unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(svc_labels.get(k).map(String::as_str), v.as_str(), "{k}");
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        svc.spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some(port))
    );

    let [pm] = of_kind(&objects, "PodMonitor")
        .try_into()
        .expect("one PodMonitor");
    assert_eq!(pm["spec"]["namespaceSelector"]["any"], true);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["interval"], "15s");
    // It selects the gateway pods the operator builds, on a port they expose.
    let mut pc = volley_crds::PushCluster::new("demo", Default::default());
    pc.metadata.uid = Some("u".into());
    pc.metadata.namespace = Some("apps".into());
    let built = volley_operator::build::build(&pc, 2, &Default::default()).unwrap();
    let template = built.deployment.spec.unwrap().template;
    let pod_labels = template.metadata.unwrap().labels.unwrap();
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(pod_labels.get(k).map(String::as_str), v.as_str(), "{k}");
    }
    let port = pm["spec"]["podMetricsEndpoints"][0]["port"]
        .as_str()
        .unwrap();
    assert!(
        template.spec.unwrap().containers[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some(port)),
        "gateway pods have no port {port}"
    );

    // Narrowed to the watched namespace, or to an explicit list.
    let scoped = all_objects(&render(Some(&serde_json::json!({
        "watchNamespace": "apps", "metrics": {"podMonitor": {"enabled": true}}
    }))));
    assert_eq!(
        of_kind(&scoped, "PodMonitor")[0]["spec"]["namespaceSelector"],
        serde_json::json!({"matchNames": ["apps"]})
    );
    let listed = all_objects(&render(Some(&serde_json::json!({
        "metrics": {"podMonitor": {"enabled": true, "namespaces": ["a", "b"]}}
    }))));
    assert_eq!(
        of_kind(&listed, "PodMonitor")[0]["spec"]["namespaceSelector"],
        serde_json::json!({"matchNames": ["a", "b"]})
    );
    // A ServiceMonitor needs the Service it scrapes.
    let no_svc = all_objects(&render(Some(&serde_json::json!({
        "metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}
    }))));
    assert!(of_kind(&no_svc, "ServiceMonitor").is_empty());
}

fn operator_args(objects: &[(String, serde_json::Value)]) -> Vec<String> {
    let d: Deployment = serde_json::from_value(of_kind(objects, "Deployment")[0].clone()).unwrap();
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
}

#[test]
fn gateway_pull_policy_and_secrets_are_passed_to_the_operator() {
    let default = operator_args(&all_objects(&render(None)));
    assert!(
        !default
            .iter()
            .any(|a| a.starts_with("--gateway-image-pull")),
        "{default:?}"
    );
    let objects = all_objects(&render(Some(&serde_json::json!({
        "image": {"repository": "r/op", "pullPolicy": "Never"},
        "gatewayImage": {"repository": "r/gw", "pullPolicy": "Always", "pullSecrets": ["regcred", "other"]}
    }))));
    let args = operator_args(&objects);
    assert!(
        args.contains(&"--gateway-image-pull-policy=Always".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--gateway-image-pull-secrets=regcred,other".to_string()),
        "{args:?}"
    );
    let d: Deployment = serde_json::from_value(of_kind(&objects, "Deployment")[0].clone()).unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image_pull_policy
            .as_deref(),
        Some("Never")
    );

    // The real binary accepts exactly these arguments: it gets past flag parsing and stops at
    // the missing cluster (exit 1), where a rejected flag would exit 2 with a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_volley-operator"))
        .args(&args)
        .env("KUBECONFIG", "/nonexistent/volley-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(!stderr.contains("invalid value"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

#[test]
fn schema_rejects_bad_new_values() {
    for (name, bad) in [
        (
            "gw-pull.json",
            serde_json::json!({"gatewayImage": {"repository": "x", "pullPolicy": "Sometimes"}}),
        ),
        (
            "gw-secret.json",
            serde_json::json!({"gatewayImage": {"repository": "x", "pullSecrets": ["Bad_Name"]}}),
        ),
        (
            "secret-extra.json",
            serde_json::json!({"imagePullSecrets": [{"name": "a", "namespace": "b"}]}),
        ),
        (
            "sm-interval.json",
            serde_json::json!({"metrics": {"serviceMonitor": {"interval": "soon"}}}),
        ),
        (
            "pm-typo.json",
            serde_json::json!({"metrics": {"podMonitor": {"enable": true}}}),
        ),
        (
            "tests-image.json",
            serde_json::json!({"tests": {"image": ""}}),
        ),
    ] {
        let f = values_file(name, &bad);
        let (ok, _, stderr) = helm(&["schema-check", f.to_str().unwrap()]);
        assert!(!ok, "schema accepted {bad}");
        assert!(!stderr.is_empty());
    }
}

/// Finding 8: without leader election every replica reconciles, so the chart refuses more than
/// one (the default replicaCount is 2).
#[test]
fn leader_election_off_refuses_several_replicas() {
    let f = values_file(
        "no-le.json",
        &serde_json::json!({"leaderElection": {"enabled": false}}),
    );
    let (ok, _, stderr) = helm(&["render", f.to_str().unwrap()]);
    assert!(!ok, "rendered two operators without leader election");
    assert!(
        stderr.contains("replicaCount 2 with leaderElection.enabled=false"),
        "{stderr}"
    );
    for (replicas, elect) in [(1, false), (0, false), (3, true)] {
        let values = serde_json::json!({
            "replicaCount": replicas,
            "leaderElection": {"enabled": elect},
        });
        let objects = all_objects(&render(Some(&values)));
        let [d] = of_kind(&objects, "Deployment")
            .try_into()
            .expect("one Deployment");
        assert_eq!(d["spec"]["replicas"], replicas);
    }
}

/// Review 2 finding 6: without leader election a rollout must not start the new operator while
/// the old one still reconciles (RollingUpdate's surge pod would), so the Deployment recreates;
/// with leader election the standby waits for the lease and rolling updates stay.
#[test]
fn leader_election_off_recreates_instead_of_rolling() {
    let deployment = |values: serde_json::Value| {
        let objects = all_objects(&render(Some(&values)));
        let [d] = of_kind(&objects, "Deployment")
            .try_into()
            .expect("one Deployment");
        d
    };
    let off = deployment(serde_json::json!({
        "replicaCount": 1,
        "leaderElection": {"enabled": false},
    }));
    assert_eq!(off["spec"]["strategy"]["type"], "Recreate", "{off:#}");
    // An explicit null, so an upgrade from a release with leader election on drops the
    // defaulted rollingUpdate instead of being rejected.
    let strategy = off["spec"]["strategy"].as_object().unwrap();
    assert_eq!(
        strategy.get("rollingUpdate"),
        Some(&serde_json::Value::Null)
    );
    let on = deployment(serde_json::json!({"leaderElection": {"enabled": true}}));
    assert!(on["spec"].get("strategy").is_none(), "{on:#}");
}

/// Finding 16: namespace and priority class names that a YAML 1.1 reader (the API server's
/// sigs.k8s.io/yaml, PyYAML here) would read as a bool or a number stay strings in every
/// rendered object.
#[test]
fn names_stay_strings_to_a_yaml_1_1_reader() {
    let dir = std::env::temp_dir().join(format!("volley-chart-y11-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["on", "no", "y", "off", "2024", "0x1f"] {
        for monitor_namespaces in [serde_json::json!([]), serde_json::json!([name])] {
            let values = serde_json::json!({
                "watchNamespace": name,
                "priorityClassName": name,
                "metrics": {
                    "podMonitor": {"enabled": true, "namespaces": monitor_namespaces},
                    "serviceMonitor": {"enabled": true},
                },
            });
            let f = values_file("y11.json", &values);
            let (ok, out, stderr) = helm_in(name, &["render", f.to_str().unwrap()]);
            assert!(ok, "render for {name:?} failed:\n{stderr}");
            let files: BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
            let mut paths = Vec::new();
            for (i, (path, text)) in files.iter().enumerate() {
                if path.ends_with(".yaml") {
                    let p = dir.join(format!("{name}-{i}.yaml"));
                    std::fs::write(&p, text).unwrap();
                    paths.push(p.to_str().unwrap().to_string());
                }
            }
            let out = Command::new("python3")
                .arg(root().join("operator/tests/yaml11.py"))
                .args(&paths)
                .output()
                .expect("python3 is required for the YAML 1.1 checks");
            assert!(
                out.status.success(),
                "yaml11.py failed (pip install PyYAML): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let read: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap();
            let mut checked = 0;
            for docs in read.values() {
                for doc in docs.as_array().unwrap() {
                    checked += names_are(doc, name);
                }
            }
            // Deployment, Service, ServiceAccount, Role/RoleBinding pairs, monitors, test pod.
            assert!(checked >= 10, "only {checked} names checked for {name:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks that every `namespace`, `matchNames` entry and `priorityClassName` under `v` is the
/// string `name`; returns how many it checked.
fn names_are(v: &serde_json::Value, name: &str) -> usize {
    let mut checked = 0;
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "namespace" | "priorityClassName" => {
                        assert_eq!(child, &serde_json::json!(name), "{k} in {v:#}");
                        checked += 1;
                    }
                    "matchNames" => {
                        for n in child.as_array().unwrap() {
                            assert_eq!(n, &serde_json::json!(name), "{k} in {v:#}");
                            checked += 1;
                        }
                    }
                    _ => checked += names_are(child, name),
                }
            }
        }
        serde_json::Value::Array(items) => {
            checked += items.iter().map(|i| names_are(i, name)).sum::<usize>();
        }
        _ => {}
    }
    checked
}
