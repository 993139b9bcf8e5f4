//! `volley-gateway --version` names the crate version and the git revision it was built from
//! (build/revision.rs: VOLLEY_REVISION, else `git rev-parse HEAD`, else "unknown").

use std::process::Command;

#[test]
fn version_flag_prints_version_and_revision() {
    let revision = std::env::var("VOLLEY_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let out = Command::new(env!("CARGO_BIN_EXE_volley-gateway"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("volley-gateway {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
}
