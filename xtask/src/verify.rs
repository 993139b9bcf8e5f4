//! Reads an OCI image archive back and checks it as a registry or runtime would: the layout
//! version, every descriptor's size and sha256 digest, the config's diff_ids against the
//! uncompressed layers, and that the entrypoint is an executable file of the root filesystem
//! run as 65532:65532. Then unpacks the root filesystem for the run checks.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, OciLayout};

use crate::digest::sha256;
use crate::spec::NONROOT;

/// Largest archive member read into memory; an image of one Rust binary is far below it.
const MAX_MEMBER: u64 = 1 << 30;

/// What is wrong with an archive.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is missing from the archive")]
    Missing(String),
    #[error("{what}: {source}")]
    Parse {
        what: String,
        source: oci_spec::OciSpecError,
    },
    #[error("{what}: digest {expected} but content hashes to {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size {expected} but content is {actual} bytes")]
    Size {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("image check failed: {0}")]
    Check(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// An archive that passed every check.
#[derive(Debug)]
pub struct Verified {
    /// `io.containerd.image.name` of the manifest.
    pub reference: Option<String>,
    pub manifest_digest: String,
    pub config: ImageConfiguration,
    /// Uncompressed layer tars, in order.
    pub layers: Vec<Vec<u8>>,
}

/// Every member of the archive tar, by name (directories skipped).
fn members(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, VerifyError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(io(path))? {
        let mut entry = entry.map_err(io(path))?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = entry
            .path()
            .map_err(io(path))?
            .to_string_lossy()
            .into_owned();
        let size = entry.header().size().map_err(io(path))?;
        if size > MAX_MEMBER {
            return Err(VerifyError::Check(format!("{name} is {size} bytes")));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(io(path))?;
        out.insert(name.trim_start_matches("./").to_string(), data);
    }
    Ok(out)
}

/// The blob a descriptor names, checked against its size and digest.
fn blob<'a>(
    members: &'a BTreeMap<String, Vec<u8>>,
    d: &Descriptor,
    what: &str,
) -> Result<&'a [u8], VerifyError> {
    let digest = d.digest().to_string();
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| VerifyError::Check(format!("{what}: not a sha256 digest: {digest}")))?;
    let name = format!("blobs/sha256/{hex}");
    let data = members
        .get(&name)
        .ok_or_else(|| VerifyError::Missing(name.clone()))?;
    if data.len() as u64 != d.size() {
        return Err(VerifyError::Size {
            what: what.into(),
            expected: d.size(),
            actual: data.len() as u64,
        });
    }
    let actual = sha256(data);
    if actual != digest {
        return Err(VerifyError::Digest {
            what: what.into(),
            expected: digest,
            actual,
        });
    }
    Ok(data)
}

fn parse<T>(what: &str, r: oci_spec::Result<T>) -> Result<T, VerifyError> {
    r.map_err(|source| VerifyError::Parse {
        what: what.into(),
        source,
    })
}

/// Checks the archive at `path` (see the module doc).
pub fn verify(path: &Path) -> Result<Verified, VerifyError> {
    let m = members(path)?;
    let get = |name: &str| m.get(name).ok_or_else(|| VerifyError::Missing(name.into()));
    let layout = parse(
        "oci-layout",
        OciLayout::from_reader(&get("oci-layout")?[..]),
    )?;
    if layout.image_layout_version() != "1.0.0" {
        return Err(VerifyError::Check(format!(
            "imageLayoutVersion {}",
            layout.image_layout_version()
        )));
    }
    let index = parse(
        "index.json",
        ImageIndex::from_reader(&get("index.json")?[..]),
    )?;
    let [mdesc] = index.manifests().as_slice() else {
        return Err(VerifyError::Check(format!(
            "index.json holds {} manifests, expected 1",
            index.manifests().len()
        )));
    };
    let manifest_bytes = blob(&m, mdesc, "manifest")?;
    let manifest = parse("manifest", ImageManifest::from_reader(manifest_bytes))?;
    let config_bytes = blob(&m, manifest.config(), "config")?;
    let config = parse("config", ImageConfiguration::from_reader(config_bytes))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(VerifyError::Check(format!(
            "{} layers but {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (i, (d, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let gz = blob(&m, d, &format!("layer {i}"))?;
        let mut raw = Vec::new();
        GzDecoder::new(gz)
            .take(MAX_MEMBER)
            .read_to_end(&mut raw)
            .map_err(io(path))?;
        let actual = sha256(&raw);
        if actual != *diff_id {
            return Err(VerifyError::Digest {
                what: format!("layer {i} diff_id"),
                expected: diff_id.clone(),
                actual,
            });
        }
        layers.push(raw);
    }
    check_config(&config, &layers)?;
    Ok(Verified {
        reference: mdesc
            .annotations()
            .as_ref()
            .and_then(|a| a.get("io.containerd.image.name").cloned()),
        manifest_digest: mdesc.digest().to_string(),
        config,
        layers,
    })
}

/// User 65532:65532, the OCI labels, and an entrypoint that is an executable regular file of
/// the layers.
fn check_config(config: &ImageConfiguration, layers: &[Vec<u8>]) -> Result<(), VerifyError> {
    let c = config
        .config()
        .as_ref()
        .ok_or_else(|| VerifyError::Check("config has no `config`".into()))?;
    let user = format!("{NONROOT}:{NONROOT}");
    if c.user().as_deref() != Some(user.as_str()) {
        return Err(VerifyError::Check(format!(
            "user is {:?}, expected {user}",
            c.user()
        )));
    }
    for label in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
    ] {
        if !c.labels().as_ref().is_some_and(|l| l.contains_key(label)) {
            return Err(VerifyError::Check(format!("label {label} missing")));
        }
    }
    let entry = c
        .entrypoint()
        .as_ref()
        .and_then(|e| e.first())
        .ok_or_else(|| VerifyError::Check("no entrypoint".into()))?;
    let want = entry.trim_start_matches('/');
    for layer in layers {
        let mut a = tar::Archive::new(&layer[..]);
        for e in a.entries().map_err(|e| VerifyError::Check(e.to_string()))? {
            let e = e.map_err(|e| VerifyError::Check(e.to_string()))?;
            let path = e.path().map_err(|e| VerifyError::Check(e.to_string()))?;
            if path.to_string_lossy().trim_start_matches("./") == want {
                let h = e.header();
                let mode = h.mode().map_err(|e| VerifyError::Check(e.to_string()))?;
                if h.entry_type().is_file() && mode & 0o111 != 0 {
                    return Ok(());
                }
                return Err(VerifyError::Check(format!(
                    "entrypoint {entry} is not an executable file (mode {mode:o})"
                )));
            }
        }
    }
    Err(VerifyError::Check(format!(
        "entrypoint {entry} is not in the image"
    )))
}

/// Unpacks the layers into `dir` (emptied first), keeping modes and owners (run as root).
pub fn unpack(v: &Verified, dir: &Path) -> Result<(), VerifyError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for layer in &v.layers {
        let mut a = tar::Archive::new(&layer[..]);
        a.set_preserve_permissions(true);
        a.set_preserve_ownerships(true);
        a.unpack(dir).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
