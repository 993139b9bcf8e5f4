//! Tests for the cluster wire messages and subject helpers.

use super::*;

#[test]
fn subjects_follow_the_design() {
    assert_eq!(stats_subject("ns", "c", "p-1"), "volley.stats.ns.c.p-1");
    assert_eq!(control_subject("ns", "c", "p-1"), "volley.control.ns.c.p-1");
    assert_eq!(cluster_stats_wildcard("ns", "c"), "volley.stats.ns.c.*");
    assert_eq!(all_stats_wildcard(), "volley.stats.>");
}

#[test]
fn stats_subject_parses_back() {
    let s = stats_subject("ns", "c", "p-1");
    assert_eq!(parse_stats_subject(&s), Some(("ns", "c", "p-1")));
    assert_eq!(parse_stats_subject("volley.stats.ns.c"), None);
    assert_eq!(parse_stats_subject("volley.stats.ns.c.p.extra"), None);
    assert_eq!(parse_stats_subject("volley.control.ns.c.p"), None);
    assert_eq!(parse_stats_subject("volley.statsx.ns.c.p"), None);
}

#[test]
fn subject_tokens() {
    assert!(is_subject_token("web-7d9f-abc"));
    for bad in ["", "a.b", "*", ">", "a b"] {
        assert!(!is_subject_token(bad), "{bad:?}");
    }
}

#[test]
fn control_requests_use_op_tag() {
    let shed = ControlRequest::Shed {
        count: 5,
        over_ms: 1000,
    };
    assert_eq!(
        serde_json::to_string(&shed).unwrap(),
        r#"{"op":"shed","count":5,"over_ms":1000}"#
    );
    let drain: ControlRequest = serde_json::from_str(r#"{"op":"drain","over_ms":250}"#).unwrap();
    assert_eq!(drain, ControlRequest::Drain { over_ms: 250 });
    let acc: ControlRequest = serde_json::from_str(r#"{"op":"accepting","value":false}"#).unwrap();
    assert_eq!(acc, ControlRequest::Accepting { value: false });
    assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"explode"}"#).is_err());
}

#[test]
fn stats_round_trip_and_defaults() {
    let stats = GatewayStats {
        namespace: "ns".into(),
        cluster: "c".into(),
        pod: "p".into(),
        connections: 10,
        connections_per_shard: vec![4, 6],
        accepting: true,
        version: "0.1.0".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains(r#""connections_per_shard":[4,6]"#));
    assert_eq!(serde_json::from_str::<GatewayStats>(&json).unwrap(), stats);
    // Older or minimal gateways may omit counters; those default to zero.
    let minimal: GatewayStats = serde_json::from_str(
        r#"{"namespace":"ns","cluster":"c","pod":"p","connections":3,"accepting":true}"#,
    )
    .unwrap();
    assert_eq!(minimal.connections, 3);
    assert_eq!(minimal.delivered, 0);
}

#[test]
fn reply_round_trip() {
    let reply = ControlReply {
        ok: true,
        closing: 3,
        accepting: true,
        ..Default::default()
    };
    let json = serde_json::to_string(&reply).unwrap();
    assert!(!json.contains("error"));
    assert_eq!(serde_json::from_str::<ControlReply>(&json).unwrap(), reply);
}
