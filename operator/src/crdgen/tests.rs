//! The CRD sync test: the checked-in CRD copies must equal the generated CRD.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::*;

fn repo_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_string() + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn crate_crd_is_up_to_date() {
    assert!(
        repo_file(CRD_PATH) == crd_yaml(),
        "{CRD_PATH} is stale: run scripts/gen-crd.sh"
    );
}

#[test]
fn chart_crd_is_up_to_date() {
    assert!(
        repo_file(CHART_CRD_PATH) == chart_crd_template(),
        "{CHART_CRD_PATH} is stale: run scripts/gen-crd.sh"
    );
}

#[test]
fn chart_crd_is_the_same_crd_behind_crds_install_and_kept() {
    let template = chart_crd_template();
    let body: String = template
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(template.contains("{{- if .Values.crds.install }}"));
    let chart: CustomResourceDefinition = serde_yaml::from_str(&body).unwrap();
    let plain: CustomResourceDefinition = serde_yaml::from_str(&crd_yaml()).unwrap();
    assert_eq!(
        chart.metadata.annotations.as_ref().unwrap()["helm.sh/resource-policy"],
        "keep"
    );
    // Apart from the annotation, the chart installs exactly the generated CRD.
    assert_eq!(chart.spec, plain.spec);
    assert_eq!(chart.metadata.name, plain.metadata.name);
}

#[test]
fn crd_yaml_parses_back() {
    let crd: CustomResourceDefinition = serde_yaml::from_str(&crd_yaml()).unwrap();
    assert_eq!(crd.spec.names.plural, "pushclusters");
}
