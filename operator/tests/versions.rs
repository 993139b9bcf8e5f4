//! One version everywhere: the workspace version (`[workspace.package] version`, which every
//! crate inherits) is the chart's version and appVersion, the tag of the operator's default
//! gateway image, the Dockerfile's VERSION label, and the tag in manifests/install.yaml. The
//! archive names of `cargo xtask images` come from xtask's own CARGO_PKG_VERSION, which the
//! member check below ties to the workspace version. These fail when any of them drifts. Also checks that
//! `--version` names the version and the git revision.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `[workspace.package] version` of the root Cargo.toml, read as text (the one source).
fn workspace_version() -> String {
    let text = read("Cargo.toml");
    let section = text
        .split("[workspace.package]")
        .nth(1)
        .expect("[workspace.package] in Cargo.toml");
    let line = section
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find(|l| l.trim_start().starts_with("version"))
        .expect("workspace version");
    line.split('"').nth(1).expect("quoted version").to_string()
}

/// `key: value` of a flat YAML file, quotes stripped.
fn yaml_scalar(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

#[test]
fn every_member_inherits_the_workspace_version() {
    let v = workspace_version();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let cargo = read("Cargo.toml");
    let members = cargo
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("members");
    for m in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        let manifest = read(&format!("{m}/Cargo.toml"));
        // Internal tooling that never ships (publish = false, e.g. a fuzz crate) may keep its
        // own version; everything else takes the workspace's.
        assert!(
            manifest.contains("version.workspace = true") || manifest.contains("publish = false"),
            "{m}/Cargo.toml sets its own version; use version.workspace = true"
        );
    }
    // The image archives are named by xtask's own package version.
    assert!(read("xtask/Cargo.toml").contains("version.workspace = true"));
}

#[test]
fn chart_versions_are_the_workspace_version() {
    let v = workspace_version();
    let chart = read("charts/volley/Chart.yaml");
    assert_eq!(
        yaml_scalar(&chart, "appVersion").as_deref(),
        Some(v.as_str()),
        "Chart.yaml appVersion"
    );
    assert_eq!(
        yaml_scalar(&chart, "version").as_deref(),
        Some(v.as_str()),
        "Chart.yaml version"
    );
}

#[test]
fn default_gateway_image_is_tagged_with_the_workspace_version() {
    let v = workspace_version();
    assert_eq!(
        volley_operator::build::default_gateway_image(),
        format!("ghcr.io/volley-dev/volley-gateway:{v}")
    );
}

#[test]
fn dockerfile_labels_and_install_bundle_use_the_workspace_version() {
    let v = workspace_version();
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == format!("ARG VERSION={v}")),
        "Dockerfile: ARG VERSION={v} expected"
    );
    for target in ["gateway", "operator"] {
        let stage = dockerfile
            .split(&format!(" AS {target}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("Dockerfile has no {target} stage"));
        let stage = stage.split("\nFROM ").next().unwrap();
        assert!(
            stage.contains("org.opencontainers.image.version=\"${VERSION}\""),
            "{target}"
        );
        assert!(stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/volley-{target}\"]")));
        assert!(stage.contains("USER 65532:65532"), "{target}");
    }
    assert!(
        !root().join("operator/Dockerfile").exists(),
        "one Dockerfile, at the root"
    );
    let install = read("manifests/install.yaml");
    assert!(install.contains(&format!("ghcr.io/volley-dev/volley-operator:{v}")));
    assert!(install.contains(&format!(
        "--gateway-image=ghcr.io/volley-dev/volley-gateway:{v}"
    )));
}

/// The revision the binaries embed (same rule as build/revision.rs).
fn expected_revision() -> String {
    if let Ok(r) = std::env::var("VOLLEY_REVISION")
        && !r.trim().is_empty()
    {
        return r.trim().to_string();
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[test]
fn operator_version_flag_prints_version_and_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_volley-operator"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        line.trim(),
        format!(
            "volley-operator {} ({})",
            workspace_version(),
            expected_revision()
        )
    );
}
