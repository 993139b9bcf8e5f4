//! What the images are: names, the fixed binary path, the non-root user, labels and the one
//! version they all take (the workspace's).

use std::collections::BTreeMap;
use std::path::Path;

/// The workspace version: `[workspace.package] version`, which every crate inherits. The chart's
/// appVersion, the operator's default gateway image and the archive names all come from it.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Where every binary sits inside its image (the Dockerfile uses the same path).
pub const BIN_DIR: &str = "/usr/local/bin";

/// The non-root user and group of the images (distroless `nonroot`).
pub const NONROOT: u32 = 65532;

/// Registry path the release workflow pushes to and the chart defaults to.
pub const REGISTRY: &str = "ghcr.io/volley-dev";

/// The source repository, for the `org.opencontainers.image.source` label.
pub const SOURCE: &str = "https://github.com/volley-dev/volley";

/// One image: a binary of the workspace packed alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// The cargo binary name, also the image's repository name.
    pub name: &'static str,
    /// The cargo package that builds it.
    pub package: &'static str,
    /// `org.opencontainers.image.description`.
    pub description: &'static str,
}

/// Every image the project ships.
pub const IMAGES: [Image; 2] = [
    Image {
        name: "volley-gateway",
        package: "volley-gateway",
        description: "Volley gateway: clustered WebSocket push",
    },
    Image {
        name: "volley-operator",
        package: "volley-operator",
        description: "Volley operator: runs PushCluster gateways",
    },
];

impl Image {
    /// The image named `name`, if the project ships one.
    pub fn by_name(name: &str) -> Option<Image> {
        IMAGES.iter().copied().find(|i| i.name == name)
    }

    /// `/usr/local/bin/<name>`.
    pub fn binary_path(&self) -> String {
        format!("{BIN_DIR}/{}", self.name)
    }

    /// `ghcr.io/volley-dev/<name>:<version>`.
    pub fn reference(&self, version: &str) -> String {
        format!("{REGISTRY}/{}:{version}", self.name)
    }

    /// `<name>-<version>.oci.tar`.
    pub fn archive_name(&self, version: &str) -> String {
        format!("{}-{version}.oci.tar", self.name)
    }

    /// The archive's path under `dir`.
    pub fn archive_path(&self, dir: &Path, version: &str) -> std::path::PathBuf {
        dir.join(self.archive_name(version))
    }

    /// OCI annotation keys (image-spec annotations.md) as image config labels; the Dockerfile
    /// sets the same ones.
    pub fn labels(&self, version: &str, revision: &str) -> BTreeMap<String, String> {
        [
            ("org.opencontainers.image.source", SOURCE),
            ("org.opencontainers.image.version", version),
            ("org.opencontainers.image.revision", revision),
            ("org.opencontainers.image.title", self.name),
            ("org.opencontainers.image.description", self.description),
            ("org.opencontainers.image.licenses", "Apache-2.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The git revision the binaries are built from: `VOLLEY_REVISION` when set (release builds
/// from a tarball), else `git rev-parse HEAD` in `root`, else "unknown". The binaries' build
/// scripts follow the same rule, so the label and `--version` agree.
pub fn revision(root: &Path) -> String {
    if let Ok(r) = std::env::var("VOLLEY_REVISION")
        && !r.trim().is_empty()
    {
        return r.trim().to_string();
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The workspace root (xtask sits one level below it).
pub fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

#[cfg(test)]
mod tests;
