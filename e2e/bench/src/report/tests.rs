use super::*;

fn percentiles() -> Percentiles {
    Percentiles::from_micros(&Histogram::default())
}

fn report(engine: &str, gateways: usize, nats: Option<f64>) -> RunReport {
    RunReport {
        scenario: "fanout".into(),
        engine: engine.into(),
        run: 1,
        connections: 300,
        processes: 3,
        pinning: "not pinned".into(),
        publish_via: "nats".into(),
        connect: ConnectReport {
            ok: 300,
            failed: 0,
            retries: 0,
            seconds: 0.1,
            handshakes_per_s: 3000.0,
            connect_ms: percentiles(),
            server_cpu_s: 0.1,
            nats_cpu_s: nats,
        },
        memory: MemoryReport {
            rss_before: 0,
            rss_idle: 0,
            bytes_per_idle_conn: 0.0,
            sockstat_before: Sockstat::default(),
            sockstat_idle: Sockstat::default(),
            kernel_tcp_bytes_per_conn: 0.0,
        },
        gateways: (0..gateways)
            .map(|i| GatewayReport {
                pid: 100 + i as u32,
                client_addr: "127.0.0.1:1".into(),
                connections: 100,
                rss_before: 0,
                rss_idle: 2 * 1024 * 1024,
                rss_end: 0,
                connect_cpu_s: 0.0,
                cpu_s: 0.5,
            })
            .collect(),
        subscriptions: None,
        phases: vec![PhaseReport {
            name: "bcast@10".into(),
            rate: 10.0,
            subscribers_per_message: 300.0,
            offered_deliveries_per_s: 3000.0,
            publish: PublishOutcome::default(),
            loss: Loss::new(6000, 6000),
            delivered_per_s: 3000.0,
            latency_ms: percentiles(),
            server_cpu_s: 0.2,
            server_user_s: 0.05,
            cpu_s_per_million: 33.0,
            gateway_cpu_s: vec![0.1; gateways],
            nats_cpu_s: nats,
            clients_cpu_s: 0.1,
            server_closed_conns: 0,
            rss_after: 0,
            rss_peak: Some(12 * 1024 * 1024),
            passes: Some(PassReport {
                passes: 50,
                mean_pass_ms: 1.5,
                p50_pass_ms_at_most: Some(1.6),
                p99_pass_ms_at_most: Some(3.2),
                writes: 15000,
                frames: 30000,
                frames_per_write: 2.0,
            }),
        }],
    }
}

#[test]
fn a_cluster_run_shows_each_gateway_and_nats_cpu() {
    let text = table(&[report("epoll x3", 3, Some(0.25))]);
    assert!(
        text.contains("epoll x3 run 1 per gateway: 100 conns 2.0 MiB 0.50 cpu-s | 100 conns"),
        "{text}"
    );
    let header = text.lines().find(|l| l.contains("offered/s")).unwrap();
    assert!(header.ends_with("nats cpu"), "{header}");
    let row = text.lines().find(|l| l.contains("bcast@10")).unwrap();
    assert!(row.ends_with("0.25"), "{row}");
}

#[test]
fn a_standalone_run_keeps_the_original_columns() {
    let text = table(&[report("epoll", 1, None)]);
    assert!(!text.contains("per gateway"));
    assert!(!text.contains("nats cpu"));
    assert!(text.contains("\nepoll      1     300"), "{text}");
}

#[test]
fn the_passes_table_shows_the_servers_share() {
    let text = table(&[report("epoll", 1, None)]);
    let header = text.lines().find(|l| l.contains("frames/write")).unwrap();
    assert!(header.contains("p99 <= ms"), "{header}");
    let row = text
        .lines()
        .filter(|l| l.contains("bcast@10"))
        .nth(1)
        .unwrap();
    assert!(
        row.contains("      50       1.50       1.60       3.20      15000         2.00"),
        "{row}"
    );
}

#[test]
fn each_phase_shows_its_peak_memory() {
    let text = table(&[report("epoll", 1, None)]);
    let header = text.lines().find(|l| l.contains("offered/s")).unwrap();
    assert!(header.ends_with("peak MiB"), "{header}");
    let row = text.lines().find(|l| l.contains("bcast@10")).unwrap();
    assert!(row.ends_with(" 12.0"), "{row}");
}
