//! The gateway under test: started by the tool (optionally pinned with taskset) or given from
//! outside, and the client child processes, all as handles killed on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::BenchError;
use crate::ipc::{self, Event};

/// A gateway process and where it listens.
#[derive(Debug)]
pub struct Server {
    pub pid: u32,
    pub client: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
}

/// `taskset -c CPU` prefix, or nothing.
pub(crate) fn command(program: &Path, cpu: Option<&str>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Server {
    /// Starts `volley-gateway` (or, for a `reference` engine, this tool's limit reference) on
    /// loopback ports with extra flags and environment and waits for its listening line. taskset execs the program, so the pid is the gateway's own.
    pub async fn spawn(
        binary: &Path,
        engine: &str,
        extra: &[String],
        env: &[(&str, String)],
        cpu: Option<&str>,
    ) -> Result<Server, BenchError> {
        // The limit reference is this tool itself, in its hidden `__reference` mode; it takes
        // no gateway flags.
        let variant = crate::reference::variant(engine);
        let reference = variant.is_some();
        let program = if reference {
            std::env::current_exe()?
        } else {
            binary.to_owned()
        };
        let mut command = command(&program, cpu);
        if let Some(variant) = variant {
            command.arg("__reference").args(variant.args());
        }
        command.args(["--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]);
        if !reference {
            command.args(["--engine", engine]).args(extra);
        }
        let mut child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Protocol("gateway exited at once".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Protocol("no gateway stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        let (client, admin) = parse_listening(&line)
            .ok_or_else(|| BenchError::Protocol(format!("unexpected gateway output {line:?}")))?;
        Ok(Server {
            pid,
            client,
            admin,
            child: Some(child),
        })
    }

    /// A gateway someone else started.
    pub fn external(pid: u32, client: SocketAddr, admin: SocketAddr) -> Server {
        Server {
            pid,
            client,
            admin,
            child: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// `volley-gateway listening client=ADDR admin=ADDR`
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| a.parse().ok())
    };
    Some((field("client=")?, field("admin=")?))
}

/// One client child process, spoken to in JSON lines.
#[derive(Debug)]
pub struct ClientProcess {
    pub pid: u32,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientProcess {
    /// Re-executes this binary with the hidden `__child` subcommand.
    pub fn spawn(cpu: Option<&str>) -> Result<ClientProcess, BenchError> {
        let exe = std::env::current_exe()?;
        let mut child = command(&exe, cpu)
            .arg("__child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let missing = || BenchError::Protocol("child pipes missing".into());
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        Ok(ClientProcess {
            pid,
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub async fn send(&mut self, command: &ipc::Command) -> Result<(), BenchError> {
        let mut text = serde_json::to_string(command)?;
        text.push('\n');
        self.stdin.write_all(text.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub async fn recv(&mut self) -> Result<Event, BenchError> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| BenchError::Protocol(format!("client {} exited", self.pid)))?;
        Ok(serde_json::from_str(&line)?)
    }

    pub async fn exit(mut self) {
        let _ = self.send(&ipc::Command::Exit).await;
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), self.child.wait());
        if waited.await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listening_line() {
        let (c, a) = super::parse_listening(
            "volley-gateway listening client=127.0.0.1:4000 admin=127.0.0.1:4001\n",
        )
        .unwrap();
        assert_eq!(c.port(), 4000);
        assert_eq!(a.port(), 4001);
        assert!(super::parse_listening("hello").is_none());
    }
}
