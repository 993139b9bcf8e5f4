//! Runs a binary from its unpacked image root filesystem as the image would: `chroot` into it as
//! 65532:65532 (needs root), so a missing library, loader or wrong path fails here and not on a
//! cluster. `--version` for every image; the gateway also starts standalone on loopback and
//! must answer `/healthz` before it is stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::spec::{Image, NONROOT};

/// How long a run may take before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A failed run.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("cannot run chroot: {0}")]
    Spawn(std::io::Error),
    #[error("{what} failed ({status}): {output}")]
    Failed {
        what: String,
        status: String,
        output: String,
    },
    #[error("{0} did not finish within {DEADLINE:?}")]
    Timeout(String),
    #[error("{what}: {message}")]
    Unexpected { what: String, message: String },
}

/// The host's chroot (coreutils), found before the environment is replaced with the image's.
fn chroot_program() -> &'static str {
    ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("chroot")
}

/// `chroot --userspec=65532:65532 ROOTFS <path> <args…>`.
pub fn command(rootfs: &Path, path: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(chroot_program());
    cmd.arg(format!("--userspec={NONROOT}:{NONROOT}"))
        .arg(rootfs)
        .arg(path)
        .args(args)
        // The image's environment, not the host's.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("SSL_CERT_FILE", crate::rootfs::CA_BUNDLE);
    cmd
}

fn wait(child: &mut Child, what: &str, deadline: Instant) -> Result<ExitStatus, SmokeError> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SmokeError::Timeout(what.into()));
            }
        }
    }
}

/// Runs `<binary> --version` in the root filesystem; returns its stdout, which must name the
/// version and the revision.
pub fn version(
    rootfs: &Path,
    image: &Image,
    version: &str,
    revision: &str,
) -> Result<String, SmokeError> {
    let what = format!("{} --version", image.binary_path());
    let mut child = command(rootfs, &image.binary_path(), &["--version"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SmokeError::Spawn)?;
    let status = wait(&mut child, &what, Instant::now() + DEADLINE)?;
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(SmokeError::Failed {
            what,
            status: status.to_string(),
            output: format!("{out}{err}"),
        });
    }
    if !(out.contains(version) && out.contains(revision)) {
        return Err(SmokeError::Unexpected {
            what,
            message: format!("{out:?} does not name version {version} and revision {revision}"),
        });
    }
    Ok(out.trim().to_string())
}

/// The admin address from the gateway's "volley-gateway listening client=… admin=…" line.
pub fn admin_addr(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("volley-gateway listening ")?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("admin="))?
        .parse()
        .ok()
}

/// `GET path` over HTTP/1.1; returns the status line. Every socket operation has a deadline.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Starts the gateway standalone on loopback from the root filesystem, checks `/healthz`
/// answers 200, then stops it with SIGTERM and expects a clean exit. Returns the status line.
pub fn gateway_healthz(rootfs: &Path, image: &Image) -> Result<String, SmokeError> {
    let what = format!("{} standalone", image.binary_path());
    let mut child = command(
        rootfs,
        &image.binary_path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--shards",
            "1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(SmokeError::Spawn)?;
    let deadline = Instant::now() + DEADLINE;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // Readers on threads so that waiting for the line has a deadline; stderr is kept for the
    // error message.
    let (tx, rx) = mpsc::sync_channel::<String>(64);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr)
            .take(64 * 1024)
            .read_to_string(&mut s);
        s
    });
    let result = healthy(&rx, deadline, &what);
    // Stop it either way: SIGTERM (the gateway drains and exits 0), SIGKILL at the deadline.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = wait(&mut child, &what, Instant::now() + DEADLINE);
    let log = err_log.join().unwrap_or_default();
    let status = result.map_err(|e| match e {
        SmokeError::Unexpected { what, message } => SmokeError::Unexpected {
            what,
            message: format!("{message}\n--- stderr ---\n{log}"),
        },
        other => other,
    })?;
    let exit = exit?;
    if !exit.success() {
        return Err(SmokeError::Failed {
            what: format!("{what}: exit after SIGTERM"),
            status: exit.to_string(),
            output: log,
        });
    }
    Ok(status)
}

/// Waits for the listening line on `rx`, then expects `GET /healthz` to answer 200.
fn healthy(
    rx: &mpsc::Receiver<String>,
    deadline: Instant,
    what: &str,
) -> Result<String, SmokeError> {
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(a) = admin_addr(&line) {
                    break a;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(SmokeError::Timeout(what.into())),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SmokeError::Unexpected {
                    what: what.into(),
                    message: "exited before it listened".into(),
                });
            }
        }
    };
    let status = http_get(addr, "/healthz").map_err(|e| SmokeError::Unexpected {
        what: format!("{what}: GET /healthz"),
        message: e.to_string(),
    })?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(SmokeError::Unexpected {
            what: format!("{what}: GET /healthz"),
            message: status,
        });
    }
    Ok(status)
}

#[cfg(test)]
mod tests;
