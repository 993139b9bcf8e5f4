//! NATS credentials and TLS against a real nats-server, through the real binary and its flags: with
//! the right token, user and password, nkey or CA a gateway connects and delivers; with wrong ones
//! it keeps running and serving its clients, reports NATS as disconnected and says why in its log.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::nats::NatsServer;
use support::*;

const TOKEN: &str = "volley-test-token";
const USER: &str = "volley";
const PASSWORD: &str = "volley-test-password";
const TOPIC: &str = "secure.news";
const SUBJECT: &str = "push.secure.news";
/// What the gateway logs on each failed connect attempt.
const CONNECT_FAILED: &str = "cannot connect to NATS";
/// Deadline for anything that only waits on a slow, shared machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A scratch directory for certificates and config files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("volley-nats-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `file` and returns its path as a string, ready to be a flag value.
    fn write(&self, file: &str, contents: &str) -> String {
        let path = self.0.join(file);
        std::fs::write(&path, contents).unwrap();
        path.to_str().expect("UTF-8 temp path").to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gateway binary in cluster mode on `nats`, with `extra` flags (credentials, TLS).
fn gateway(nats: &NatsServer, extra: &[&str]) -> GatewayProcess {
    let url = nats.url();
    let mut args = vec!["--nats", url.as_str(), "--shards", "1", "--pod-name", "gw"];
    args.extend_from_slice(extra);
    GatewayProcess::spawn_logged(&args)
}

/// A NATS client for the test itself; connect errors surface at once (no retry).
async fn publisher(nats: &NatsServer, options: async_nats::ConnectOptions) -> async_nats::Client {
    tokio::time::timeout(PATIENCE, options.connect(nats.url()))
        .await
        .expect("test NATS client connects in time")
        .expect("test NATS client connects")
}

async fn wait_metric(admin: std::net::SocketAddr, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = metric(admin, name, "").await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {now}, wanted {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway gets into NATS: a message published on NATS by another client reaches its
/// WebSocket client, and so does one published through its own HTTP API (which goes via NATS).
async fn assert_delivers(gw: &GatewayProcess, nats: &NatsServer, publisher: &async_nats::Client) {
    wait_metric(gw.admin, "volley_nats_connected", 1.0).await;
    let (status, body) = get(gw.admin, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("nats: connected"), "{body}");
    let mut client = connect(&gw.ws_url(&format!("?topics={TOPIC}"))).await;
    nats.wait_for_subscriptions(SUBJECT, 1).await;
    publisher
        .publish(SUBJECT, r#"{"n":1}"#.into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic": TOPIC, "data": {"n": 1}})
    );
    publish_ok(gw.admin, TOPIC, b"2").await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"topic": TOPIC, "data": 2})
    );
    let log = gw.log();
    assert!(!log.contains(CONNECT_FAILED), "log:\n{log}");
}

/// The gateway does not get into NATS, yet keeps running and serving clients: NATS reported
/// disconnected, HTTP publishes refused with 503 (not dropped), nothing delivered, and the log
/// names the failure (with `reason` when the client library reports one) at every attempt.
async fn assert_refused(
    mut gw: GatewayProcess,
    publisher: &async_nats::Client,
    reason: Option<&str>,
) {
    // Two failed attempts: it retries rather than giving up or exiting.
    gw.wait_for_log(CONNECT_FAILED, 2, PATIENCE).await;
    let log = gw.log();
    if let Some(reason) = reason {
        assert!(
            log.lines()
                .any(|l| l.contains(CONNECT_FAILED) && l.contains(reason)),
            "wanted {reason:?} in the log:\n{log}"
        );
    }
    assert!(gw.is_running(), "the gateway exited; log:\n{log}");
    assert_eq!(metric(gw.admin, "volley_nats_connected", "").await, 0.0);
    let (status, body) = get(gw.admin, "/healthz").await;
    assert_eq!(
        status, 200,
        "NATS trouble must not fail the liveness probe: {body}"
    );
    assert!(body.contains("nats: disconnected"), "{body}");

    let mut client = connect(&gw.ws_url(&format!("?topics={TOPIC}"))).await;
    wait_metric(gw.admin, "volley_connections", 1.0).await;
    let (status, body) = publish(gw.admin, TOPIC, b"1").await;
    assert_eq!(status, 503, "{body}");
    publisher.publish(SUBJECT, "2".into()).await.unwrap();
    publisher.flush().await.unwrap();
    expect_silence(&mut client, Duration::from_millis(500)).await;

    let log = gw.log();
    assert!(gw.is_running(), "the gateway exited; log:\n{log}");
    assert!(!log.contains("panicked"), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token() {
    let nats = NatsServer::start_with(&["--auth", TOKEN]);
    let publisher = publisher(
        &nats,
        async_nats::ConnectOptions::with_token(TOKEN.to_owned()),
    )
    .await;
    let right = gateway(&nats, &["--nats-token", TOKEN]);
    assert_delivers(&right, &nats, &publisher).await;
    let wrong = gateway(&nats, &["--nats-token", "not-the-token"]);
    assert_refused(wrong, &publisher, Some("authorization violation")).await;
    let none = gateway(&nats, &[]);
    assert_refused(none, &publisher, Some("authorization violation")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let nats = NatsServer::start_with(&["--user", USER, "--pass", PASSWORD]);
    let publisher = publisher(
        &nats,
        async_nats::ConnectOptions::with_user_and_password(USER.to_owned(), PASSWORD.to_owned()),
    )
    .await;
    let right = gateway(&nats, &["--nats-user", USER, "--nats-password", PASSWORD]);
    assert_delivers(&right, &nats, &publisher).await;
    let wrong = gateway(&nats, &["--nats-user", USER, "--nats-password", "not-it"]);
    assert_refused(wrong, &publisher, Some("authorization violation")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey() {
    // The server knows the user only by its public key; the gateway signs the server's nonce
    // with the seed.
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let scratch = Scratch::new("nkey");
    let config = scratch.write(
        "nats.conf",
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    );
    let nats = NatsServer::start_with(&["-c", &config]);
    let publisher = publisher(&nats, async_nats::ConnectOptions::with_nkey(seed.clone())).await;
    let right = gateway(&nats, &["--nats-nkey", &seed]);
    assert_delivers(&right, &nats, &publisher).await;
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let wrong = gateway(&nats, &["--nats-nkey", &stranger]);
    assert_refused(wrong, &publisher, Some("authorization violation")).await;
}

/// PEM files of a test CA, a server certificate it signed for 127.0.0.1 and localhost, and a
/// client certificate it signed.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki(scratch: &Scratch) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "volley test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    // The gateway dials 127.0.0.1, so the server certificate must name that address.
    let (server_cert, server_key) = leaf(
        "nats-server",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf("volley-gateway", &[], ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: scratch.write("ca.pem", &ca_pem),
        server_cert: scratch.write("server.pem", &server_cert),
        server_key: scratch.write("server-key.pem", &server_key),
        client_cert: scratch.write("client.pem", &client_cert),
        client_key: scratch.write("client-key.pem", &client_key),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verified_with_the_given_ca() {
    let scratch = Scratch::new("tls");
    let pki = pki(&scratch);
    let nats = NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        &pki.server_cert,
        "--tlskey",
        &pki.server_key,
    ]);
    let publisher = publisher(
        &nats,
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(pki.ca.clone().into()),
    )
    .await;
    // A bare `--nats-tls`, as documented; the server would ask for TLS anyway.
    let right = gateway(&nats, &["--nats-tls", "--nats-tls-ca", &pki.ca]);
    assert_delivers(&right, &nats, &publisher).await;
    // Without the CA the certificate chains to no trusted root. async-nats reports a failed TLS
    // handshake only as "IO error" (the detail is at debug level), so no reason is checked.
    let untrusted = gateway(&nats, &[]);
    assert_refused(untrusted, &publisher, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate() {
    let scratch = Scratch::new("mtls");
    let pki = pki(&scratch);
    // --tlsverify: the server demands a client certificate signed by the CA.
    let nats = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        &pki.server_cert,
        "--tlskey",
        &pki.server_key,
        "--tlscacert",
        &pki.ca,
    ]);
    let publisher = publisher(
        &nats,
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(pki.ca.clone().into())
            .add_client_certificate(
                pki.client_cert.clone().into(),
                pki.client_key.clone().into(),
            ),
    )
    .await;
    let right = gateway(
        &nats,
        &[
            "--nats-tls-ca",
            &pki.ca,
            "--nats-tls-cert",
            &pki.client_cert,
            "--nats-tls-key",
            &pki.client_key,
        ],
    );
    assert_delivers(&right, &nats, &publisher).await;
    let anonymous = gateway(&nats, &["--nats-tls-ca", &pki.ca]);
    assert_refused(anonymous, &publisher, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_tls_refuses_a_server_without_tls() {
    let nats = NatsServer::start();
    let publisher = publisher(&nats, async_nats::ConnectOptions::new()).await;
    // TLS required by the gateway, but this server speaks plain NATS only: no silent downgrade.
    let gw = gateway(&nats, &["--nats-tls", "true"]);
    assert_refused(gw, &publisher, None).await;
}

/// Review 2, finding 4: a least-privilege NATS user that may subscribe to `_INBOX.>` but not
/// publish there (the usual requester setup) has every publish confirmation marker refused. The
/// gateway says so at start (an error line naming the right) and in `/healthz`; `/readyz` fails
/// with a reason naming `_INBOX.>` (review of the subscription confirmation, finding 10: every
/// new subscription would be `unavailable`, so a rolling upgrade must stall on the first pod);
/// its HTTP publishes answer 503 while the message is delivered, and a new subscription, which
/// it cannot confirm either, is answered `unavailable` rather than promised. Second review,
/// finding 12: `/readyz` is never 200 on the way there, not even before the self-test's verdict
/// (a Deployment counts a pod available as soon as it is Ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_inbox_publish_rights_is_reported_at_start() {
    let scratch = Scratch::new("inbox");
    let config = scratch.write(
        "nats.conf",
        &format!(
            "authorization {{ users = [ {{ user: \"{USER}\", password: \"{PASSWORD}\", \
             permissions: {{ publish: {{ allow: [\"push.>\"] }}, \
             subscribe: {{ allow: [\"push.>\", \"_INBOX.>\"] }} }} }} ] }}\n"
        ),
    );
    let nats = NatsServer::start_with(&["-c", &config]);
    let gw = gateway(&nats, &["--nats-user", USER, "--nats-password", PASSWORD]);
    // Polled from the start (the admin port is up once spawned) until the reason shows.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut reasons = Vec::new();
    loop {
        let (status, body) = get(gw.admin, "/readyz").await;
        assert_eq!(
            status, 503,
            "ready with a user lacking _INBOX.> rights: {body}"
        );
        if body.contains("not ready: the NATS user may not publish to _INBOX.>") {
            break;
        }
        if reasons.last() != Some(&body) {
            reasons.push(body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no _INBOX.> reason by the deadline: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It went through the start-up wait for the self-test's verdict (not some other 503).
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("waiting for the publish confirmation self-test")),
        "{reasons:?}"
    );
    gw.wait_for_log("publish confirmation self-test failed", 1, PATIENCE)
        .await;
    gw.wait_for_log("may not publish to _INBOX.>", 1, PATIENCE)
        .await;
    let (status, body) = get(gw.admin, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("nats: connected"), "{body}");
    assert!(
        body.contains(
            "publish confirmation: failing (the NATS user needs publish rights on _INBOX.>)"
        ),
        "{body}"
    );
    let (status, body) = get(gw.admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not ready: the NATS user may not publish to _INBOX.>"),
        "{body}"
    );

    // An explicit `sub` (a URL topic that cannot be confirmed closes the connection with 1013
    // instead: subscribe_confirm.rs).
    let mut client = connect(&gw.ws_url("")).await;
    send_json(&mut client, json!({"op": "sub", "topics": [TOPIC]})).await;
    // The SUB is made, but the marker after it never comes back: not a promise.
    nats.wait_for_subscriptions(SUBJECT, 1).await;
    let (status, body) = publish(gw.admin, TOPIC, b"1").await;
    assert_eq!(status, 503, "{body}");
    let reply = next_json(&mut client).await;
    assert_eq!(reply["op"], "error", "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    assert_eq!(reply["topic"], TOPIC, "{reply}");
    gw.wait_for_log("NATS did not confirm a subscription in time", 1, PATIENCE)
        .await;
}
