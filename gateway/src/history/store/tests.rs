use super::*;

#[test]
fn a_position_past_the_end_is_unknown() {
    assert_eq!(plan(11, 1, 10), Err(NotRecovered::BadPosition));
}

#[test]
fn from_the_beginning_only_while_nothing_was_discarded() {
    assert_eq!(plan(0, 1, 10), Ok(()));
    assert_eq!(plan(0, 0, 0), Ok(()));
    assert_eq!(plan(0, 2, 10), Err(NotRecovered::TooOld));
}

#[test]
fn positions_inside_the_stream_go_on_to_the_fetch() {
    assert_eq!(plan(5, 3, 10), Ok(()));
    assert_eq!(plan(10, 3, 10), Ok(()));
    // Below the first stored message: the fetch finds the client's message gone (too old).
    assert_eq!(plan(1, 3, 10), Ok(()));
}

fn info_created_at(created: &str) -> stream::Info {
    serde_json::from_value(serde_json::json!({
        "config": serde_json::to_value(stream::Config {
            name: "S".into(),
            subjects: vec!["push.a".into()],
            ..Default::default()
        })
        .expect("config"),
        "created": created,
        "state": {"messages": 0, "bytes": 0, "first_seq": 0, "first_ts": "0001-01-01T00:00:00Z",
                  "last_seq": 0, "last_ts": "0001-01-01T00:00:00Z", "consumer_count": 0}
    }))
    .expect("stream info")
}

#[test]
fn epochs_differ_between_streams_created_at_different_times() {
    let a = epoch_of(&info_created_at("2026-01-01T00:00:00.000000001Z"));
    let b = epoch_of(&info_created_at("2026-01-01T00:00:00.000000002Z"));
    assert_ne!(a, b);
    assert_eq!(
        a,
        epoch_of(&info_created_at("2026-01-01T00:00:00.000000001Z"))
    );
}

#[test]
fn a_server_config_with_our_limits_matches_whatever_else_it_fills_in() {
    let want = stream::Config {
        name: "S".into(),
        subjects: vec!["push.a".into(), "push.b.>".into()],
        max_messages_per_subject: 10,
        max_age: Duration::from_secs(60),
        num_replicas: 1,
        ..Default::default()
    };
    let mut have = want.clone();
    have.subjects.reverse();
    have.max_messages = 5;
    assert!(matches_config(&have, &want));
    have.max_messages_per_subject = 11;
    assert!(!matches_config(&have, &want));
}

#[test]
fn a_topic_with_the_limits_worth_above_the_position_may_have_lost_messages() {
    let mut per_topic = PerTopic::new(3);
    assert!(!per_topic.full_after("news.us"));
    assert!(!per_topic.full_after("news.eu"));
    assert!(!per_topic.full_after("news.us"));
    assert!(per_topic.full_after("news.us"));
    assert!(PerTopic::new(1).full_after("a"));
}
