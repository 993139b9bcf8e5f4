//! The root filesystem of an image: the binary at its fixed path, exactly the shared libraries
//! it needs (with the dynamic loader), `/etc/passwd` and `/etc/group` with the non-root user,
//! the CA bundle and `nsswitch.conf` — what distroless `cc` gives a Rust binary, and no more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ldd::{self, LddError};
use crate::spec::{Image, NONROOT};

/// Debian's CA bundle (package ca-certificates); the image keeps the same path.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `root` and `nonroot` (65532), as in distroless; no login shells exist in the image.
pub const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";

/// The groups of [`PASSWD`].
pub const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

/// glibc resolves names through NSS; without this file it guesses. Files first, then DNS (the
/// cluster's resolv.conf is mounted by the kubelet). The files/dns modules are built into
/// libc.so.6 since glibc 2.34, so no libnss_* library is needed.
pub const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\n\
hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
}

/// One path in the root filesystem (relative, no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Why a root filesystem could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Ldd(#[from] LddError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not an absolute path")]
    Relative(String),
}

/// The inputs read from the build machine.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The binary's bytes.
    pub binary: Vec<u8>,
    /// Every shared library and the loader: (absolute path as the loader looks it up, bytes).
    pub libraries: Vec<(String, Vec<u8>)>,
    /// The CA bundle.
    pub ca_bundle: Vec<u8>,
}

fn rel(path: &str) -> Result<String, RootfsError> {
    path.strip_prefix('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('/').to_string())
        .ok_or_else(|| RootfsError::Relative(path.into()))
}

/// Every entry of the image's root filesystem, sorted so that parents come before children.
/// Pure: the same parts give the same entries.
pub fn entries(image: &Image, parts: Parts) -> Result<Vec<Entry>, RootfsError> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let mut file = |path: &str, data: Vec<u8>, mode: u32| -> Result<(), RootfsError> {
        let path = rel(path)?;
        out.insert(
            path.clone(),
            Entry {
                path,
                kind: Kind::File(data),
                mode,
                uid: 0,
                gid: 0,
            },
        );
        Ok(())
    };
    file(&image.binary_path(), parts.binary, 0o755)?;
    for (path, data) in parts.libraries {
        file(&path, data, 0o755)?;
    }
    file("/etc/passwd", PASSWD.into(), 0o644)?;
    file("/etc/group", GROUP.into(), 0o644)?;
    file("/etc/nsswitch.conf", NSSWITCH.into(), 0o644)?;
    file(CA_BUNDLE, parts.ca_bundle, 0o644)?;
    let mut dirs: Vec<Entry> = vec![
        Entry {
            path: "tmp".into(),
            kind: Kind::Dir,
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
        Entry {
            path: "home/nonroot".into(),
            kind: Kind::Dir,
            mode: 0o700,
            uid: NONROOT,
            gid: NONROOT,
        },
    ];
    // Every parent directory, root-owned 0755.
    let paths: Vec<String> = out
        .keys()
        .chain(dirs.iter().map(|d| &d.path))
        .cloned()
        .collect();
    for path in paths {
        let mut p = Path::new(&path).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            let d = dir.to_string_lossy().into_owned();
            if !dirs.iter().any(|e| e.path == d) {
                dirs.push(Entry {
                    path: d,
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                });
            }
            p = dir.parent();
        }
    }
    for d in dirs {
        out.insert(d.path.clone(), d);
    }
    Ok(out.into_values().collect())
}

fn read(path: &Path) -> Result<Vec<u8>, RootfsError> {
    std::fs::read(path).map_err(|source| RootfsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads the binary, the libraries ldd lists for it (symlinks followed: the image holds a plain
/// file at the path the loader asks for) and the CA bundle.
pub fn collect(binary: &Path, ca_bundle: &Path) -> Result<Parts, RootfsError> {
    let libs: Vec<PathBuf> = ldd::libraries(binary)?;
    let libraries = libs
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect::<Result<_, RootfsError>>()?;
    Ok(Parts {
        binary: read(binary)?,
        libraries,
        ca_bundle: read(ca_bundle)?,
    })
}

#[cfg(test)]
mod tests;
