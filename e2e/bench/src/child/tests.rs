use super::upgrade_target;
use crate::ipc::ConnectSpec;
use crate::plan::{BROADCAST, Shape};

fn spec(raw: bool) -> ConnectSpec {
    ConnectSpec {
        server: "127.0.0.1:1".parse().unwrap(),
        first: 0,
        count: 1,
        shape: Shape::Shared,
        sources: 1,
        inflight: 1,
        retries: 0,
        timeout_ms: 1000,
        token_secret: None,
        raw,
    }
}

#[test]
fn envelope_is_the_default_and_raw_is_asked_for() {
    assert_eq!(
        upgrade_target(&spec(false), None, 7),
        format!("/ws?topics={BROADCAST}")
    );
    assert_eq!(
        upgrade_target(&spec(true), None, 7),
        format!("/ws?topics={BROADCAST}&format=raw")
    );
}

#[test]
fn an_older_parent_without_the_field_means_envelope() {
    let mut value = serde_json::to_value(spec(true)).unwrap();
    value.as_object_mut().unwrap().remove("raw");
    let spec: ConnectSpec = serde_json::from_value(value).unwrap();
    assert!(!spec.raw);
}
