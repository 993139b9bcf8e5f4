use super::*;

use prometheus_client::registry::Registry;

/// A router over a client that never reaches a server (a loopback port nobody listens on) and
/// whose command channel is full, as during a long NATS outage; plus the polls that keep the
/// hub's wakers valid.
async fn stuck_router(connected: bool) -> (Router, Vec<mio::Poll>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .client_capacity(4)
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .expect("connects in the background");
    // Nobody drains the commands while the client is not connected: fill the channel until a
    // publish cannot even be queued.
    let mut filled = false;
    for _ in 0..64 {
        let queued =
            tokio::time::timeout(Duration::from_millis(50), client.publish("x", "".into())).await;
        if queued.is_err() {
            filled = true;
            break;
        }
    }
    assert!(filled, "the client's command channel never filled");
    let state = Arc::new(NatsState::default());
    state.connected.store(connected, Ordering::Release);
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

fn wanted(pattern: &str) -> InterestChange {
    InterestChange {
        shard: 0,
        pattern: pattern.into(),
        wanted: true,
    }
}

#[tokio::test]
async fn a_new_pattern_while_nats_is_down_never_blocks_the_router() {
    let (mut router, _polls) = stuck_router(false).await;
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
    // Connected as far as the gateway knows (a frozen server is, until pings time out).
    let (mut router, _polls) = stuck_router(true).await;
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
