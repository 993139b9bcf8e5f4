//! Cluster mode against a real nats-server: fan-in from NATS to several gateways, interest-based
//! subscriptions, HTTP publish through NATS, and a NATS restart that disconnects no client.

mod support;

use std::time::Duration;

use serde_json::json;
use support::nats::NatsServer;
use support::*;
use volley_gateway::config::Options;
use volley_gateway::gateway::Gateway;

fn cluster_options(nats: &NatsServer, pod: &str) -> Options {
    let mut opts = options();
    opts.nats = Some(nats.url());
    opts.pod_name = Some(pod.to_owned());
    opts.subscription_linger = Some(Duration::from_millis(300));
    opts
}

async fn nats_client(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url())
        .await
        .expect("test NATS client")
}

async fn wait_nats_connected(gw: &Gateway) {
    for _ in 0..200 {
        if metric(gw.admin_addr(), "volley_nats_connected", "").await == 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("gateway never connected to NATS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_message_reaches_subscribers_on_three_gateways_once() {
    let nats = NatsServer::start();
    let mut gateways = Vec::new();
    for pod in ["gw-0", "gw-1", "gw-2"] {
        gateways.push(start(cluster_options(&nats, pod)).await);
    }
    let mut subscribers = Vec::new();
    let mut others = Vec::new();
    for gw in &gateways {
        wait_nats_connected(gw).await;
        subscribers.push(connect(&ws_url(gw, "?topics=news")).await);
        subscribers.push(connect(&ws_url(gw, "?topics=news,news.%3E,*")).await);
        others.push(connect(&ws_url(gw, "?topics=sports")).await);
    }
    nats.wait_for_subscriptions("push.news", 3).await;
    nats.wait_for_subscriptions("push.*", 3).await;
    let publisher = nats_client(&nats).await;
    publisher
        .publish("push.news", r#"{"n":1}"#.into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    for client in &mut subscribers {
        assert_eq!(
            next_json(client).await,
            json!({"topic":"news","data":{"n":1}})
        );
    }
    for client in subscribers.iter_mut().chain(others.iter_mut()) {
        expect_silence(client, Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_interest_with_a_linger() {
    let nats = NatsServer::start();
    let gw = start(cluster_options(&nats, "gw-0")).await;
    wait_nats_connected(&gw).await;
    assert!(
        !nats
            .subscriptions()
            .await
            .iter()
            .any(|s| s.starts_with("push.")),
        "no subscribers, no NATS subscription"
    );
    let mut a = connect(&ws_url(&gw, "?topics=t")).await;
    let mut b = connect(&ws_url(&gw, "?topics=t")).await;
    nats.wait_for_subscriptions("push.t", 1).await;
    send_json(&mut a, json!({"op":"unsub","topics":["t"]})).await;
    assert_eq!(next_json(&mut a).await["op"], "unsubscribed");
    // One subscriber left: still held, exactly once.
    tokio::time::sleep(Duration::from_millis(600)).await;
    nats.wait_for_subscriptions("push.t", 1).await;
    send_json(&mut b, json!({"op":"unsub","topics":["t"]})).await;
    assert_eq!(next_json(&mut b).await["op"], "unsubscribed");
    // Released after the linger.
    nats.wait_for_subscriptions("push.t", 0).await;
    // A quick re-subscribe within the linger keeps the same subscription.
    send_json(&mut a, json!({"op":"sub","topics":["t"]})).await;
    assert_eq!(next_json(&mut a).await["op"], "subscribed");
    nats.wait_for_subscriptions("push.t", 1).await;
    drop(a);
    drop(b);
    nats.wait_for_subscriptions("push.t", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_goes_through_nats_to_other_gateways() {
    let nats = NatsServer::start();
    let gw0 = start(cluster_options(&nats, "gw-0")).await;
    let gw1 = start(cluster_options(&nats, "gw-1")).await;
    wait_nats_connected(&gw0).await;
    wait_nats_connected(&gw1).await;
    let mut on_gw1 = connect(&ws_url(&gw1, "?topics=alerts.*")).await;
    nats.wait_for_subscriptions("push.alerts.*", 1).await;
    publish_ok(gw0.admin_addr(), "alerts.fire", b"\"hot\"").await;
    assert_eq!(
        next_json(&mut on_gw1).await,
        json!({"topic":"alerts.fire","data":"hot"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_disconnects_no_client_and_delivery_resumes() {
    let mut nats = NatsServer::start();
    let gw = start(cluster_options(&nats, "gw-0")).await;
    wait_nats_connected(&gw).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(connect(&ws_url(&gw, "?topics=feed")).await);
    }
    nats.wait_for_subscriptions("push.feed", 1).await;

    nats.stop();
    for _ in 0..200 {
        if metric(gw.admin_addr(), "volley_nats_connected", "").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        metric(gw.admin_addr(), "volley_nats_connected", "").await,
        0.0
    );
    assert!(metric(gw.admin_addr(), "volley_nats_disconnects_total", "").await >= 1.0);
    let (status, body) = get(gw.admin_addr(), "/healthz").await;
    assert_eq!(status, 200, "the gateway stays healthy");
    assert!(body.contains("nats: disconnected"), "{body}");
    let (status, _) = publish(gw.admin_addr(), "feed", b"1").await;
    assert_eq!(
        status, 503,
        "publishing during the outage is refused, not dropped"
    );

    nats.restart();
    wait_nats_connected(&gw).await;
    nats.wait_for_subscriptions("push.feed", 1).await;
    publish_ok(gw.admin_addr(), "feed", b"2").await;
    for client in &mut clients {
        assert_eq!(next_json(client).await, json!({"topic":"feed","data":2}));
    }
    assert_eq!(
        metric(gw.admin_addr(), "volley_connections", "").await,
        10.0
    );
}
