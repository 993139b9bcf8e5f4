//! Builds the release binaries with cargo and packs every image: the one-command entry point
//! behind `cargo xtask images` and scripts/images.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive::{self, ArchiveError, Built, Meta};
use crate::rootfs::{self, CA_BUNDLE, RootfsError};
use crate::spec::{IMAGES, Image, revision, version};

/// Why the images could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cargo build failed ({0})")]
    Cargo(String),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds")]
    Epoch(String),
}

/// The target directory cargo writes to (CARGO_TARGET_DIR or `<root>/target`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// `target/images`, where the archives go.
pub fn images_dir(root: &Path) -> PathBuf {
    target_dir(root).join("images")
}

/// `cargo build --release --locked` of every image's binary.
pub fn build_release(root: &Path) -> Result<(), BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--locked"]);
    // Run from `cargo run` or `cargo test`, this process carries the package variables cargo
    // sets for its own crate. Build scripts that watch one of them would see a different value
    // than in a plain `cargo build --release` and rebuild everything above them each time the
    // caller changes, so the nested build gets none of them.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(inherited_package_var) {
            cmd.env_remove(&key);
        }
    }
    for image in IMAGES {
        cmd.args(["-p", image.package, "--bin", image.name]);
    }
    let status = cmd.status().map_err(|e| BuildError::Cargo(e.to_string()))?;
    if !status.success() {
        return Err(BuildError::Cargo(status.to_string()));
    }
    Ok(())
}

/// Variables cargo sets for the crate it runs (not configuration the user chose).
pub fn inherited_package_var(key: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ]
    .iter()
    .any(|p| key.starts_with(p))
        || key == "OUT_DIR"
}

/// SOURCE_DATE_EPOCH (reproducible-builds.org), if set.
fn epoch() -> Result<Option<u64>, BuildError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => {
            s.trim().parse().map(Some).map_err(|_| BuildError::Epoch(s))
        }
        _ => Ok(None),
    }
}

/// Packs `binary` as `image` into `out_dir`.
pub fn pack(
    image: &Image,
    binary: &Path,
    root: &Path,
    out_dir: &Path,
) -> Result<Built, BuildError> {
    let parts = rootfs::collect(binary, Path::new(CA_BUNDLE))?;
    let entries = rootfs::entries(image, parts)?;
    let meta = Meta {
        version: version().to_string(),
        revision: revision(root),
        arch: archive::host_arch()?,
        epoch: epoch()?,
    };
    Ok(archive::write(image, &meta, &entries, out_dir)?)
}

/// Builds the release binaries (unless `skip_build`) and writes one archive per image.
pub fn build_all(root: &Path, out_dir: &Path, skip_build: bool) -> Result<Vec<Built>, BuildError> {
    if !skip_build {
        build_release(root)?;
    }
    let release = target_dir(root).join("release");
    IMAGES
        .iter()
        .map(|image| pack(image, &release.join(image.name), root, out_dir))
        .collect()
}

#[cfg(test)]
mod tests;
