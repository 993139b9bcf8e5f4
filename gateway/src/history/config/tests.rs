use super::*;

fn file(yaml: &str) -> HistoryFile {
    serde_yaml::from_str(yaml).expect("valid history YAML")
}

#[test]
fn no_topics_means_no_history() {
    assert_eq!(HistoryConfig::resolve(None, None), Ok(None));
    assert_eq!(
        HistoryConfig::resolve(Some(file("stream: X")), Some(vec![" ".into()])),
        Ok(None)
    );
}

#[test]
fn defaults_are_documented_values() {
    let c = HistoryConfig::resolve(None, Some(vec!["news.>".into(), "scores.*".into()]))
        .unwrap()
        .unwrap();
    assert_eq!(c.topics, ["news.>", "scores.*"]);
    assert_eq!(c.stream, DEFAULT_STREAM);
    assert_eq!(c.max_messages_per_topic, DEFAULT_MAX_MESSAGES_PER_TOPIC);
    assert_eq!(c.max_age, DEFAULT_MAX_AGE);
    assert_eq!(c.storage, Storage::File);
    assert_eq!(c.replicas, 1);
    assert_eq!(c.replay_max_messages, DEFAULT_REPLAY_MAX_MESSAGES);
    assert_eq!(c.replay_max_bytes, DEFAULT_REPLAY_MAX_BYTES);
    assert_eq!(c.replay_timeout, DEFAULT_REPLAY_TIMEOUT);
    assert_eq!(c.max_consumers, DEFAULT_MAX_CONSUMERS);
}

#[test]
fn yaml_block_is_read_and_the_flag_wins_for_topics() {
    let f = file(
        "topics: [a.>]\nstream: S1\nmaxMessagesPerTopic: 5\nmaxAge: 1h\nstorage: memory\n\
         replicas: 3\nreplayMaxMessages: 7\nreplayMaxBytes: 99\nreplayTimeout: 250ms\n\
         maxConsumers: 2\n",
    );
    let c = HistoryConfig::resolve(Some(f.clone()), None)
        .unwrap()
        .unwrap();
    assert_eq!(c.topics, ["a.>"]);
    assert_eq!(c.stream, "S1");
    assert_eq!(c.max_messages_per_topic, 5);
    assert_eq!(c.max_age, Duration::from_secs(3600));
    assert_eq!(c.storage, Storage::Memory);
    assert_eq!(c.replicas, 3);
    assert_eq!(c.replay_max_messages, 7);
    assert_eq!(c.replay_max_bytes, 99);
    assert_eq!(c.replay_timeout, Duration::from_millis(250));
    assert_eq!(c.max_consumers, 2);
    let c = HistoryConfig::resolve(Some(f), Some(vec!["b".into()]))
        .unwrap()
        .unwrap();
    assert_eq!(c.topics, ["b"]);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_the_key() {
    assert!(serde_yaml::from_str::<HistoryFile>("topic: [a]").is_err());
    assert!(serde_yaml::from_str::<HistoryFile>("storage: disk").is_err());
    let bad = |yaml: &str| {
        HistoryConfig::resolve(Some(file(yaml)), Some(vec!["a".into()]))
            .unwrap_err()
            .key
    };
    assert_eq!(bad("stream: a.b"), "stream");
    assert_eq!(bad("stream: ''"), "stream");
    assert_eq!(bad("maxMessagesPerTopic: 0"), "maxMessagesPerTopic");
    assert_eq!(bad("maxAge: 0s"), "maxAge");
    assert_eq!(bad("replicas: 6"), "replicas");
    assert_eq!(bad("replayMaxMessages: 0"), "replayMaxMessages");
    assert_eq!(bad("replayMaxBytes: 0"), "replayMaxBytes");
    assert_eq!(bad("replayTimeout: 0s"), "replayTimeout");
    assert_eq!(bad("maxConsumers: 0"), "maxConsumers");
    let err = HistoryConfig::resolve(None, Some(vec!["a.>.b".into()])).unwrap_err();
    assert_eq!(err.key, "topics");
}

#[test]
fn coverage_of_topics_and_patterns() {
    let c = HistoryConfig::resolve(None, Some(vec!["news.>".into(), "scores.*".into()]))
        .unwrap()
        .unwrap();
    assert!(c.covers_topic("news.eu"));
    assert!(c.covers_topic("scores.x"));
    assert!(!c.covers_topic("scores.x.y"));
    assert!(!c.covers_topic("chat"));
    assert!(c.covers_pattern("news.>"));
    assert!(c.covers_pattern("news.eu.*"));
    assert!(c.covers_pattern("scores.*"));
    assert!(c.covers_pattern("scores.a"));
    assert!(!c.covers_pattern("scores.>"));
    assert!(!c.covers_pattern(">"));
    assert!(!c.covers_pattern("news"));
}

#[test]
fn pattern_within_follows_nats_wildcards() {
    assert!(pattern_within("a.b", "a.b"));
    assert!(pattern_within("a.b", "a.*"));
    assert!(pattern_within("a.*", "a.*"));
    assert!(!pattern_within("a.*", "a.b"));
    assert!(pattern_within("a.b.c", "a.>"));
    assert!(pattern_within("a.>", "a.>"));
    assert!(!pattern_within("a.>", "a.*"));
    assert!(!pattern_within("a", "a.>"));
    assert!(!pattern_within("a.b", "a.b.c"));
}
