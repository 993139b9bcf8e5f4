//! The shared libraries a binary needs, with the dynamic loader: `ldd` resolves them exactly as
//! the loader will (DT_NEEDED, transitively, through the system's search path), and its output
//! is parsed here.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the libraries of a binary could not be listed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LddError {
    /// A library the binary needs is not installed on the build machine.
    #[error("{binary}: needs {library}, which ldd cannot find")]
    NotFound { binary: String, library: String },
    /// A line that fits none of ldd's formats.
    #[error("{binary}: unexpected ldd line {line:?}")]
    Unparsed { binary: String, line: String },
    /// ldd itself failed.
    #[error("{binary}: ldd failed: {message}")]
    Failed { binary: String, message: String },
}

/// Parses `ldd` output into the absolute paths of every library and the loader, in ldd's order.
/// Virtual objects with no file (linux-vdso, linux-gate) are skipped. A statically linked binary
/// ("not a dynamic executable" / "statically linked") needs nothing.
pub fn parse(binary: &str, output: &str) -> Result<Vec<PathBuf>, LddError> {
    let mut libs = Vec::new();
    for raw in output.lines() {
        let line = raw.trim();
        if line.is_empty() || line.contains("statically linked") || line.contains("not a dynamic") {
            continue;
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"
        // "linux-vdso.so.1 (0x...)"
        // "libfoo.so.1 => not found"
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(LddError::NotFound {
                        binary: binary.into(),
                        library: name.trim().into(),
                    });
                }
                rest.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            let path = PathBuf::from(path);
            if !libs.contains(&path) {
                libs.push(path);
            }
        } else if !(path.starts_with("linux-vdso") || path.starts_with("linux-gate")) {
            return Err(LddError::Unparsed {
                binary: binary.into(),
                line: line.into(),
            });
        }
    }
    Ok(libs)
}

/// Runs `ldd binary` and parses it.
pub fn libraries(binary: &Path) -> Result<Vec<PathBuf>, LddError> {
    let name = binary.display().to_string();
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| LddError::Failed {
            binary: name.clone(),
            message: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // ldd exits 1 for a static binary ("not a dynamic executable" on stderr): that needs nothing.
    if !out.status.success() && !stderr.contains("not a dynamic executable") {
        return Err(LddError::Failed {
            binary: name,
            message: format!("{}{}", stdout.trim(), stderr.trim()),
        });
    }
    parse(&name, &stdout)
}

#[cfg(test)]
mod tests;
