//! Tests for the stats store (the NATS pool is exercised against a real nats-server in
//! `operator/tests/nats.rs`).

use std::time::{Duration, SystemTime};

use super::*;

fn body(ns: &str, cluster: &str, pod: &str, connections: u64) -> Vec<u8> {
    serde_json::to_vec(&GatewayStats {
        namespace: ns.into(),
        cluster: cluster.into(),
        pod: pod.into(),
        connections,
        accepting: true,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn records_and_snapshots_fresh_stats() {
    let store = StatsStore::default();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    assert!(store.record("volley.stats.ns.web.b", &body("ns", "web", "b", 5), t0));
    assert!(store.record("volley.stats.ns.web.a", &body("ns", "web", "a", 7), t0));
    assert!(store.record("volley.stats.ns.other.a", &body("ns", "other", "a", 1), t0));
    let snap = store.snapshot("ns", "web", DEFAULT_MAX_AGE, t0 + Duration::from_secs(5));
    let names: Vec<_> = snap.iter().map(|s| s.stats.pod.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(pod_view(&snap[0]).connections, 7);
    // Later message replaces the earlier one.
    assert!(store.record("volley.stats.ns.web.a", &body("ns", "web", "a", 9), t0));
    let snap = store.snapshot("ns", "web", DEFAULT_MAX_AGE, t0);
    assert_eq!(snap[0].stats.connections, 9);
}

#[test]
fn stale_stats_expire() {
    let store = StatsStore::default();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    store.record("volley.stats.ns.web.a", &body("ns", "web", "a", 1), t0);
    assert!(
        store
            .snapshot("ns", "web", DEFAULT_MAX_AGE, t0 + Duration::from_secs(31))
            .is_empty()
    );
    store.record("volley.stats.ns.web.a", &body("ns", "web", "a", 1), t0);
    store.forget("ns", "web");
    assert!(store.snapshot("ns", "web", DEFAULT_MAX_AGE, t0).is_empty());
}

#[test]
fn malformed_or_spoofed_messages_are_dropped() {
    let store = StatsStore::default();
    let t0 = SystemTime::UNIX_EPOCH;
    assert!(!store.record("volley.stats.ns.web.a", b"not json", t0));
    assert!(!store.record("volley.stats.ns.web", &body("ns", "web", "a", 1), t0));
    // Body claims another pod than the subject.
    assert!(!store.record("volley.stats.ns.web.a", &body("ns", "web", "b", 1), t0));
    assert!(!store.record("volley.stats.ns.web.a", &vec![b' '; 100_000], t0));
    assert!(store.snapshot("ns", "web", DEFAULT_MAX_AGE, t0).is_empty());
}

#[test]
fn old_entries_of_any_cluster_are_pruned_as_messages_arrive() {
    let store = StatsStore::default();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    // Many pods of a cluster this operator never reconciles (so never snapshots).
    for i in 0..10_000 {
        let pod = format!("p{i}");
        let subject = format!("volley.stats.elsewhere.web.{pod}");
        assert!(store.record(&subject, &body("elsewhere", "web", &pod, 1), t0));
    }
    assert_eq!(store.len(), 10_000);
    // Still kept a moment later (inside the retention).
    let t1 = t0 + DEFAULT_RETENTION / 2;
    assert!(store.record("volley.stats.ns.web.a", &body("ns", "web", "a", 1), t1));
    assert_eq!(store.len(), 10_001);
    // One message past the retention prunes every old entry.
    let t2 = t0 + DEFAULT_RETENTION * 2;
    assert!(store.record("volley.stats.ns.web.b", &body("ns", "web", "b", 1), t2));
    assert_eq!(store.len(), 1);
    // A periodic prune empties a store nobody publishes to anymore.
    store.prune(t2 + DEFAULT_RETENTION * 2);
    assert!(store.is_empty());
}

#[test]
fn a_full_store_refuses_new_pods_and_keeps_updating_known_ones() {
    let retention = Duration::from_secs(60);
    let store = StatsStore::with_limits(retention, 3);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    for pod in ["a", "b", "c"] {
        let subject = format!("volley.stats.ns.web.{pod}");
        assert!(store.record(&subject, &body("ns", "web", pod, 1), t0));
    }
    assert!(!store.record("volley.stats.ns.web.d", &body("ns", "web", "d", 1), t0));
    assert!(!store.record("volley.stats.x.y.z", &body("x", "y", "z", 1), t0));
    // A known pod still updates.
    let t1 = t0 + Duration::from_secs(50);
    assert!(store.record("volley.stats.ns.web.a", &body("ns", "web", "a", 7), t1));
    assert_eq!(store.len(), 3);
    // Once b and c age out, there is room again.
    let t2 = t0 + Duration::from_secs(61);
    assert!(store.record("volley.stats.ns.web.d", &body("ns", "web", "d", 1), t2));
    let snap = store.snapshot("ns", "web", retention, t2);
    let names: Vec<_> = snap.iter().map(|s| s.stats.pod.as_str()).collect();
    assert_eq!(names, ["a", "d"]);
    assert_eq!(snap[0].stats.connections, 7);
    // Snapshots and forget keep the count right.
    store.forget("ns", "web");
    assert!(store.is_empty());
}

/// Finding 8 of review 2: stats are kept per source (connection, so NATS account); a cluster
/// reads only its own source's, and one source cannot overwrite another's entry.
#[test]
fn stats_are_kept_and_read_per_source() {
    let store = StatsStore::with_limits(DEFAULT_RETENTION, 3);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let a = Source::new("nats://n:4222", Some("creds-a"));
    let b = Source::new("nats://n:4222", Some("creds-b"));
    assert!(store.record_from(&b, "volley.stats.nb.web.p", &body("nb", "web", "p", 5), t0));
    // Account A publishes for cluster B's pod.
    assert!(store.record_from(&a, "volley.stats.nb.web.p", &body("nb", "web", "p", 0), t0));
    let snap = store.snapshot_from(&b, "nb", "web", DEFAULT_MAX_AGE, t0);
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].stats.connections, 5);
    assert_eq!(
        store.snapshot_from(&a, "nb", "web", DEFAULT_MAX_AGE, t0)[0]
            .stats
            .connections,
        0
    );
    // Unknown source: nothing.
    let c = Source::new("nats://n:4222", None);
    assert!(
        store
            .snapshot_from(&c, "nb", "web", DEFAULT_MAX_AGE, t0)
            .is_empty()
    );
    // The bound counts every source's entries.
    assert_eq!(store.len(), 2);
    assert!(store.record_from(&c, "volley.stats.nb.web.q", &body("nb", "web", "q", 1), t0));
    assert!(!store.record_from(&a, "volley.stats.nb.web.r", &body("nb", "web", "r", 1), t0));
    // A deleted cluster is forgotten from every source.
    store.forget("nb", "web");
    assert!(store.is_empty());
    // Debug never shows the credentials.
    assert!(!format!("{a:?}").contains("creds-a"));
}
