//! Every YAML file the project ships reads the same to a YAML 1.1 reader (PyYAML here; the API
//! server and kubectl read YAML 1.1 through sigs.k8s.io/yaml) as to a YAML 1.2 reader, and every
//! `enum` and `default` in the CRD schemas has the type its schema says.
//!
//! Issue 8: `crds/pushcluster.yaml` had `- Off` unquoted; YAML 1.1 reads it as `false`, so the
//! stored CRD's enum was `["Operator","External",false]` and `mode: "Off"` was refused.
//!
//! FAILS (not skips) when python3 or PyYAML is missing (`pip install PyYAML`, done by
//! scripts/test.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files users and the API server read: the CRD copies, the install bundle, the examples and
/// the chart's values.
const FILES: &[&str] = &[
    "crds/pushcluster.yaml",
    "charts/volley/templates/crd.yaml",
    "charts/volley/values.yaml",
    "charts/volley/Chart.yaml",
    "manifests/install.yaml",
    "manifests/examples/nats.yaml",
    "manifests/examples/pushcluster.yaml",
];

/// What PyYAML (YAML 1.1) makes of each file.
fn yaml11(files: &[&str]) -> serde_json::Map<String, Value> {
    let out = Command::new("python3")
        .arg(root().join("operator/tests/yaml11.py"))
        .args(files)
        .current_dir(root())
        .output()
        .expect("python3 is required for the YAML 1.1 checks");
    assert!(
        out.status.success(),
        "operator/tests/yaml11.py failed (pip install PyYAML): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a YAML 1.2 reader makes of the same text (template lines dropped the same way).
fn yaml12(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Paths where the two readers disagree.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => differences(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}: only in YAML 1.1")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!(
                    "{at}.{k}: only in YAML 1.2 (a YAML 1.1 key like on/off/yes?)"
                ));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, &format!("{at}[{i}]"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(format!("{at}: YAML 1.1 reads {a}, YAML 1.2 reads {b}")),
    }
}

#[test]
fn yaml_1_1_and_1_2_readers_agree_on_every_shipped_file() {
    let old = yaml11(FILES);
    let mut diffs = Vec::new();
    for path in FILES {
        let a = Value::Array(old[*path].as_array().unwrap().clone());
        let b = Value::Array(yaml12(path));
        differences(&a, &b, path, &mut diffs);
    }
    assert!(diffs.is_empty(), "YAML 1.1 traps: {diffs:#?}");
}

/// Checks `enum` and `default` against `type` in one OpenAPI schema, recursively.
fn check_schema(s: &Value, at: &str, out: &mut Vec<String>) {
    let Some(obj) = s.as_object() else { return };
    let ty = obj.get("type").and_then(Value::as_str);
    let fits = |v: &Value| match ty {
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        _ => true,
    };
    if let Some(values) = obj.get("enum").and_then(Value::as_array) {
        for v in values {
            if !fits(v) || (ty.is_none() && !v.is_string()) {
                out.push(format!(
                    "{at}.enum: {v} is not a {}",
                    ty.unwrap_or("string")
                ));
            }
        }
    }
    if let Some(d) = obj.get("default")
        && !fits(d)
    {
        out.push(format!("{at}.default: {d} is not a {}", ty.unwrap_or("?")));
    }
    for (k, v) in obj {
        match v {
            Value::Object(_) => check_schema(v, &format!("{at}.{k}"), out),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item, &format!("{at}.{k}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn crd_enums_and_defaults_have_their_schema_type_under_yaml_1_1() {
    let crd_files = [
        "crds/pushcluster.yaml",
        "charts/volley/templates/crd.yaml",
        "manifests/install.yaml",
    ];
    let docs = yaml11(&crd_files);
    let mut problems = Vec::new();
    let mut crds = 0;
    for path in crd_files {
        for doc in docs[path].as_array().unwrap() {
            if doc["kind"] != "CustomResourceDefinition" {
                continue;
            }
            crds += 1;
            for v in doc["spec"]["versions"].as_array().unwrap() {
                let schema = &v["schema"]["openAPIV3Schema"];
                check_schema(schema, path, &mut problems);
                let mode = &schema["properties"]["spec"]["properties"]["autoscaling"]["properties"]
                    ["mode"];
                assert_eq!(
                    mode["enum"],
                    serde_json::json!(["Operator", "External", "Manual"]),
                    "{path}"
                );
            }
        }
    }
    assert_eq!(crds, 3, "one CRD in each file");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checks_catch_the_issue_8_crd() {
    // The check itself must fail on what shipped before: an unquoted Off in an enum.
    let dir = std::env::temp_dir().join(format!("volley-yaml11-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "type: object\nproperties:\n  mode:\n    type: string\n    default: Operator\n    enum:\n    - Operator\n    - Off\n",
    )
    .unwrap();
    let path = bad.to_str().unwrap();
    let old = yaml11(&[path]);
    let schema = &old[path][0];
    let mut problems = Vec::new();
    check_schema(schema, "bad", &mut problems);
    assert_eq!(
        problems,
        ["bad.properties.mode.enum: false is not a string"]
    );
    let mut diffs = Vec::new();
    differences(schema, &yaml12(path)[0], "bad", &mut diffs);
    assert_eq!(
        diffs,
        ["bad.properties.mode.enum[1]: YAML 1.1 reads false, YAML 1.2 reads \"Off\""]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
