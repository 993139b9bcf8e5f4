//! Loads image archives into a cluster's container runtime, one way per cluster kind:
//! `ctr -n k8s.io images import` (containerd on this node: kubeadm, k3s with
//! `VOLLEY_E2E_CTR="k3s ctr"`), `kind load image-archive`, `k3d image import`.

use std::path::Path;
use std::process::Command;

/// How archives reach the cluster's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// containerd on this machine; the program may be a wrapper such as `k3s ctr`.
    Ctr { program: Vec<String> },
    /// A kind cluster (`--name`, default "kind").
    Kind { cluster: Option<String> },
    /// A k3d cluster (`-c`, default "k3s-default").
    K3d { cluster: Option<String> },
}

/// Names a loader the tool does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown image loader {0:?}: use ctr, kind or k3d")]
pub struct UnknownLoader(pub String);

impl Loader {
    /// `ctr`, `kind` or `k3d`; `ctr_program` replaces `ctr` (split on whitespace), `cluster` is
    /// the kind/k3d cluster name.
    pub fn parse(
        name: &str,
        ctr_program: Option<&str>,
        cluster: Option<&str>,
    ) -> Result<Loader, UnknownLoader> {
        let cluster = cluster.filter(|c| !c.is_empty()).map(str::to_string);
        match name {
            "ctr" => Ok(Loader::Ctr {
                program: ctr_program
                    .filter(|p| !p.trim().is_empty())
                    .unwrap_or("ctr")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
            }),
            "kind" => Ok(Loader::Kind { cluster }),
            "k3d" => Ok(Loader::K3d { cluster }),
            other => Err(UnknownLoader(other.into())),
        }
    }

    /// The program and arguments that load `archive`.
    pub fn argv(&self, archive: &Path) -> Vec<String> {
        let archive = archive.display().to_string();
        match self {
            // The kubelet's images live in containerd's "k8s.io" namespace.
            Loader::Ctr { program } => {
                let mut v = program.clone();
                v.extend(["-n", "k8s.io", "images", "import", &archive].map(String::from));
                v
            }
            Loader::Kind { cluster } => {
                let mut v: Vec<String> = ["kind", "load", "image-archive", &archive]
                    .map(String::from)
                    .into();
                if let Some(c) = cluster {
                    v.extend(["--name".into(), c.clone()]);
                }
                v
            }
            Loader::K3d { cluster } => {
                let mut v: Vec<String> = ["k3d", "image", "import", &archive]
                    .map(String::from)
                    .into();
                if let Some(c) = cluster {
                    v.extend(["-c".into(), c.clone()]);
                }
                v
            }
        }
    }

    /// Runs the load; the error carries the tool's output.
    pub fn load(&self, archive: &Path) -> Result<(), String> {
        let argv = self.argv(archive);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("{}: {e}", argv.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed ({}): {}{}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

#[cfg(test)]
mod tests;
