//! Test support: gateways in-process or as the real binary, real WebSocket clients, raw HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use volley_gateway::config::{Config, Options};
use volley_gateway::gateway::Gateway;

pub mod jwt;
pub mod nats;

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for something that must happen (a frame, a close, a metric, a
/// subscription): only a bound on a hang, so generous enough for a loaded 2-core CI machine
/// running other test binaries' servers at the same time. Never a bound on the behaviour.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Options for a test gateway on ephemeral loopback ports with a short flush interval.
pub fn options() -> Options {
    Options {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        shards: Some(2),
        drain_timeout: Some(Duration::from_secs(1)),
        ..Options::default()
    }
}

pub async fn start(options: Options) -> Gateway {
    let config = Config::from_options(options).expect("valid test config");
    Gateway::start(config).await.expect("gateway starts")
}

pub fn ws_url(gateway: &Gateway, query: &str) -> String {
    format!("ws://{}/ws{}", gateway.client_addr(), query)
}

/// Upgrades with the token in `Authorization: Bearer` instead of the query string; the
/// response status of a successful upgrade.
pub async fn upgrade_with_bearer(url: &str, host: SocketAddr, token: &str) -> u16 {
    let request = tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(url)
        .header("Host", host.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .header("Authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (_client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    response.status().as_u16()
}

pub async fn connect(url: &str) -> Client {
    let (client, response) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("upgrade succeeds");
    assert_eq!(response.status(), 101);
    client
}

/// The next text frame, parsed as JSON; panics on timeout, close or anything else.
pub async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame ok");
        match frame {
            WsMessage::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Asserts no data frame arrives within `wait` (pings and pongs are ignored).
pub async fn expect_silence<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
            Ok(frame) => panic!("expected nothing, got {frame:?}"),
        }
    }
}

/// Reads until the server's close frame and returns it.
pub async fn expect_close<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
) -> CloseFrame {
    loop {
        let frame = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("close in time");
        match frame {
            Some(Ok(WsMessage::Close(Some(close)))) => return close,
            Some(Ok(WsMessage::Close(None))) => panic!("close frame without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

pub async fn send_json<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocketStream<S>,
    value: serde_json::Value,
) {
    client
        .send(WsMessage::Text(value.to_string().into()))
        .await
        .expect("send");
}

/// A raw socket that has completed the upgrade (the 101 head is read), for sending crafted frames.
pub async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    upgrade_stream(TcpStream::connect(addr).await.expect("connect")).await
}

/// Completes the upgrade on an already connected socket (one the caller has tuned) and reads the
/// 101 head.
pub async fn upgrade_stream(mut stream: TcpStream) -> TcpStream {
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("write upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("read 101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    stream
}

/// A raw HTTP/1.1 exchange; returns (status, body).
pub async fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

pub async fn publish(admin: SocketAddr, topic: &str, body: &[u8]) -> (u16, String) {
    let mut request = format!(
        "POST /v1/publish/{topic} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    http(admin, &request).await
}

pub async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    http(admin, request.as_bytes()).await
}

/// Publishes and asserts 202.
pub async fn publish_ok(admin: SocketAddr, topic: &str, body: &[u8]) {
    let (status, text) = publish(admin, topic, body).await;
    assert_eq!(status, 202, "publish to {topic}: {text}");
}

/// Reads a counter or gauge value from /metrics (sum over label sets matching `filter`).
pub async fn metric(admin: SocketAddr, name: &str, filter: &str) -> f64 {
    let (_, body) = get(admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter(|l| l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One kept-alive HTTP/1.1 connection, for talking to a server that cannot accept new ones.
pub struct KeepAlive(TcpStream);

impl KeepAlive {
    pub async fn open(addr: SocketAddr) -> KeepAlive {
        KeepAlive(TcpStream::connect(addr).await.expect("connect"))
    }

    /// Sends one request and reads one response (Content-Length framed); returns (status, body).
    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.0.write_all(head.as_bytes()).await.expect("write");
        self.0.write_all(body).await.expect("write");
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = self.0.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = self.0.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
        }
        (
            status,
            String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
        )
    }
}

impl KeepAlive {
    /// Waits for the server to close the connection; panics if it is still open after `within`.
    pub async fn wait_closed(&mut self, within: Duration) {
        let mut chunk = [0u8; 1024];
        let closed = tokio::time::timeout(within, async {
            loop {
                match self.0.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "kept-alive connection still open after {within:?}"
        );
    }
}

/// The real `volley-gateway` binary, killed on drop.
pub struct GatewayProcess {
    pub child: Child,
    pub client: SocketAddr,
    pub admin: SocketAddr,
    /// Its stderr so far, when spawned with [`GatewayProcess::spawn_logged`].
    log: Option<Arc<Mutex<String>>>,
}

impl GatewayProcess {
    pub fn spawn(args: &[&str]) -> GatewayProcess {
        Self::spawn_command(
            Command::new(env!("CARGO_BIN_EXE_volley-gateway")),
            args,
            false,
        )
    }

    /// Like [`GatewayProcess::spawn`], but collects the log (stderr at `RUST_LOG=warn`, what an
    /// operator sees) for [`GatewayProcess::wait_for_log`] instead of passing it through.
    pub fn spawn_logged(args: &[&str]) -> GatewayProcess {
        Self::spawn_command(
            Command::new(env!("CARGO_BIN_EXE_volley-gateway")),
            args,
            true,
        )
    }

    /// Like [`GatewayProcess::spawn`], with extra environment variables (hidden test knobs).
    pub fn spawn_with_env(env: &[(&str, &str)], args: &[&str]) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_volley-gateway"));
        command.envs(env.iter().copied());
        Self::spawn_command(command, args, false)
    }

    /// Runs the binary under a lowered open-file limit (`ulimit -n`), to exercise EMFILE.
    pub fn spawn_with_nofile(limit: u32, args: &[&str]) -> GatewayProcess {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_volley-gateway"),
        ]);
        Self::spawn_command(command, args, false)
    }

    fn spawn_command(mut command: Command, args: &[&str], capture_log: bool) -> GatewayProcess {
        if capture_log {
            // Plain text, so a test can look for a phrase without colour codes inside it.
            command.env("NO_COLOR", "1");
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(if capture_log {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn volley-gateway");
        // A thread drains stderr as it comes, so a chatty gateway never blocks on a full pipe.
        let log = child.stderr.take().map(|stderr| {
            let log = Arc::new(Mutex::new(String::new()));
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
            log
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        GatewayProcess {
            client: field("client="),
            admin: field("admin="),
            child,
            log,
        }
    }

    /// The log so far (only for [`GatewayProcess::spawn_logged`]).
    pub fn log(&self) -> String {
        let log = self.log.as_ref().expect("spawned with spawn_logged");
        log.lock().unwrap().clone()
    }

    /// Waits until at least `count` log lines contain `needle`; panics with the log after `within`.
    pub async fn wait_for_log(&self, needle: &str, count: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wanted {count} log lines with {needle:?}, log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running (it has neither exited nor panicked out).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{}", self.client, query)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the baseline `--engine tokio` gateway in-process on the current runtime.
pub async fn start_tokio(mut options: Options) -> volley_gateway::gateway::TokioGateway {
    options.engine = Some(volley_gateway::config::Engine::Tokio);
    let config = Config::from_options(options).expect("valid test config");
    volley_gateway::gateway::TokioGateway::start(config)
        .await
        .expect("tokio engine starts")
}

/// Which engine a conformance case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Epoll,
    Tokio,
}

/// A running in-process gateway of either engine.
pub enum AnyGateway {
    Epoll(Gateway),
    Tokio(volley_gateway::gateway::TokioGateway),
}

/// Starts `engine` in-process on the current runtime.
pub async fn start_engine(engine: Engine, options: Options) -> AnyGateway {
    match engine {
        Engine::Epoll => AnyGateway::Epoll(start(options).await),
        Engine::Tokio => AnyGateway::Tokio(start_tokio(options).await),
    }
}

impl AnyGateway {
    pub fn client_addr(&self) -> SocketAddr {
        match self {
            AnyGateway::Epoll(gw) => gw.client_addr(),
            AnyGateway::Tokio(gw) => gw.client_addr(),
        }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        match self {
            AnyGateway::Epoll(gw) => gw.admin_addr(),
            AnyGateway::Tokio(gw) => gw.admin_addr(),
        }
    }

    /// The client URL with `query` (`""` or `"?…"`).
    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/ws{}", self.client_addr(), query)
    }

    pub async fn drain(self) {
        match self {
            AnyGateway::Epoll(gw) => gw.drain().await,
            AnyGateway::Tokio(gw) => gw.drain().await,
        }
    }
}

/// Waits (up to [`PATIENCE`]) for metric `name` to read `expected`, then asserts it does:
/// engines add their counts after their writes, so a client can see a frame a moment before the
/// metric.
pub async fn metric_reaches(admin: SocketAddr, name: &str, filter: &str, expected: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut value = metric(admin, name, filter).await;
    while value != expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        value = metric(admin, name, filter).await;
    }
    assert_eq!(value, expected, "{name}{{{filter}}}");
}
