use super::*;

fn spec(topics: &[&str]) -> HistorySpec {
    HistorySpec {
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        ..HistorySpec::default()
    }
}

#[test]
fn no_history_renders_nothing() {
    assert_eq!(validate(None, false), Ok(None));
}

#[test]
fn history_needs_nats() {
    let err = validate(Some(&spec(&["news.>"])), false).unwrap_err();
    assert!(err.to_string().contains("spec.nats"), "{err}");
}

#[test]
fn valid_history_becomes_the_gateway_section() {
    let mut h = spec(&["news.>", "scores.*", "a.b"]);
    h.max_age = Some("2h".into());
    h.replay_timeout = Some("3s".into());
    h.storage = Some(HistoryStorage::Memory);
    h.replicas = Some(3);
    h.max_consumers = Some(7);
    let section = validate(Some(&h), true).unwrap().unwrap();
    assert_eq!(section.topics, Some(h.topics.clone()));
    assert_eq!(section.max_age, Some(std::time::Duration::from_secs(7200)));
    assert_eq!(
        section.replay_timeout,
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(section.storage, Some(Storage::Memory));
    assert_eq!(section.replicas, Some(3));
    assert_eq!(section.max_consumers, Some(7));
    assert_eq!(
        section.stream, None,
        "unset keys stay unset: the gateway's defaults apply"
    );
}

#[test]
fn bad_values_name_their_field() {
    let field = |h: HistorySpec| match validate(Some(&h), true) {
        Err(SpecError::BadHistory { field, .. }) => field,
        Err(SpecError::BadDuration { field, .. }) => field,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(field(spec(&[])), "topics");
    for bad in ["", "a..b", "a.>.b", "a*", "$sys", "a b"] {
        assert_eq!(field(spec(&[bad])), "topics", "{bad:?}");
    }
    let mut h = spec(&["a"]);
    h.stream = Some("a.b".into());
    assert_eq!(field(h), "stream");
    let mut h = spec(&["a"]);
    h.max_age = Some("0s".into());
    assert_eq!(field(h), "maxAge");
    let mut h = spec(&["a"]);
    h.max_age = Some("soon".into());
    assert_eq!(field(h), "history.maxAge");
    let mut h = spec(&["a"]);
    h.replay_timeout = Some("0s".into());
    assert_eq!(field(h), "replayTimeout");
    for n in [0, -1] {
        let mut h = spec(&["a"]);
        h.max_consumers = Some(n);
        assert_eq!(field(h), "maxConsumers", "{n}");
        let mut h = spec(&["a"]);
        h.replay_max_messages = Some(n);
        assert_eq!(field(h), "replayMaxMessages", "{n}");
    }
}

#[test]
fn unset_max_consumers_leaves_the_gateway_default() {
    let section = validate(Some(&spec(&["a"])), true).unwrap().unwrap();
    assert_eq!(section.max_consumers, None);
}
