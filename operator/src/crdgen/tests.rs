//! Checks the checked-in CRD copies equal the generated CRD.

use super::*;

fn repo_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_string() + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn checked_in_crds_are_up_to_date() {
    let generated = crd_yaml();
    for path in [
        "crds/yaml/pushclusters.volley.dev.yaml",
        "charts/volley/crds/pushclusters.volley.dev.yaml",
    ] {
        assert!(
            repo_file(path) == generated,
            "{path} is stale: run scripts/gen-crd.sh"
        );
    }
}

#[test]
fn crd_yaml_parses_back() {
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(&crd_yaml()).unwrap();
    assert_eq!(crd.spec.names.plural, "pushclusters");
}
