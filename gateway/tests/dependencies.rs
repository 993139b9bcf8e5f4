//! The gateway does not build Kubernetes: no path in the workspace lock file leads from
//! `volley-gateway` to `kube`, `k8s-openapi` or `schemars`.
//!
//! Cargo.lock lists every package with the dependencies of all its targets and features, so its
//! graph is a superset of what `cargo tree -p volley-gateway` shows: if a crate cannot be reached
//! here, no build of the gateway compiles it.

use std::collections::{HashMap, HashSet};

const FORBIDDEN: [&str; 4] = ["kube", "kube-core", "k8s-openapi", "schemars"];

/// `name → dependency names` from the lock file's `[[package]]` entries. A package locked at two
/// versions gets the union of both dependency lists (the check only needs to over-approximate).
fn lock_graph(lock: &str) -> HashMap<String, Vec<String>> {
    let mut graph: HashMap<String, Vec<String>> = HashMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let mut name = None;
        let mut deps = Vec::new();
        let mut in_deps = false;
        for line in block.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("name = ") {
                name = Some(v.trim_matches('"').to_owned());
            } else if line.starts_with("dependencies = [") {
                in_deps = true;
            } else if in_deps && line == "]" {
                in_deps = false;
            } else if in_deps {
                // `"serde"`, or `"serde 1.0.0"` when several versions are locked.
                let entry = line.trim_end_matches(',').trim_matches('"');
                let dep = entry.split(' ').next().unwrap_or(entry);
                deps.push(dep.to_owned());
            }
        }
        let name = name.expect("every [[package]] has a name");
        graph.entry(name).or_default().extend(deps);
    }
    graph
}

/// Every package reachable from `root`.
fn reachable(graph: &HashMap<String, Vec<String>>, root: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone())
            && let Some(deps) = graph.get(&name)
        {
            todo.extend(deps.iter().cloned());
        }
    }
    seen
}

fn workspace_lock() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    std::fs::read_to_string(path).expect("the workspace Cargo.lock")
}

#[test]
fn the_gateway_reaches_no_kubernetes_crate() {
    let graph = lock_graph(&workspace_lock());
    let reached = reachable(&graph, "volley-gateway");
    assert!(
        reached.contains("volley-wire"),
        "the gateway uses the wire crate"
    );
    for name in FORBIDDEN {
        assert!(
            !reached.contains(name),
            "volley-gateway depends on {name} (through the lock file's graph)"
        );
    }
}

/// The check itself can fail: the operator does reach Kubernetes through the same graph.
#[test]
fn the_operator_does_reach_kubernetes() {
    let graph = lock_graph(&workspace_lock());
    let reached = reachable(&graph, "volley-operator");
    for name in ["kube", "k8s-openapi", "volley-crds", "volley-wire"] {
        assert!(
            reached.contains(name),
            "volley-operator should reach {name}"
        );
    }
}
