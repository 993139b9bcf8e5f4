//! Build script of both binaries (`build = "../build/revision.rs"`): embeds the git revision as
//! `VOLLEY_REVISION` for `--version`.
//!
//! Order: the `VOLLEY_REVISION` environment variable (release and Docker builds, where there is
//! no .git), else `git rev-parse HEAD`, else "unknown". Reruns only when that variable or the
//! checked-out commit changes (HEAD, the branch ref it points to, packed-refs), not on every
//! build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then_some(())?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=VOLLEY_REVISION");
    if let Some(r) = std::env::var("VOLLEY_REVISION")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
    {
        println!("cargo:rustc-env=VOLLEY_REVISION={r}");
        return;
    }
    let revision = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Watch only files that exist: a missing rerun-if-changed path makes cargo rerun every time.
    let mut watch: Vec<PathBuf> = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch.push(PathBuf::from(&dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        watch.push(common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=VOLLEY_REVISION={revision}");
}
