use super::*;

#[test]
fn messages_move_the_positions_of_the_patterns_they_match() {
    let mut p = Positions::new(["news.>".to_owned(), "news.eu".to_owned(), "chat".to_owned()]);
    p.observe(r#"{"op":"subscribed","topics":["news.>","news.eu","chat"],"epoch":"e1"}"#);
    p.observe(r#"{"topic":"news.eu","data":1,"seq":7}"#);
    p.observe(r#"{"topic":"news.us","data":1,"seq":9}"#);
    // Out of order across patterns never moves a position back.
    p.observe(r#"{"topic":"news.eu","data":1,"seq":8}"#);
    p.observe(r#"{"topic":"chat","data":1}"#);
    assert_eq!(p.since("news.>"), Some(9));
    assert_eq!(p.since("news.eu"), Some(8));
    assert_eq!(p.since("chat"), None);
    assert_eq!(
        p.resume_op(),
        json!({"op":"sub","topics":["news.>","news.eu","chat"],
               "since":{"news.>":9,"news.eu":8},"epoch":"e1"})
    );
}

#[test]
fn a_new_epoch_drops_every_position() {
    let mut p = Positions::new(["a".to_owned()]);
    p.observe(r#"{"op":"subscribed","topics":["a"],"epoch":"e1"}"#);
    p.observe(r#"{"topic":"a","data":1,"seq":3}"#);
    p.observe(r#"{"op":"subscribed","topics":["a"],"epoch":"e2","recovered":false,"reason":"epoch_changed"}"#);
    assert_eq!(p.since("a"), None);
    assert_eq!(p.epoch(), Some("e2"));
    assert_eq!(p.resume_op(), json!({"op":"sub","topics":["a"]}));
}

#[test]
fn unsubscribing_forgets_the_position_and_junk_is_ignored() {
    let mut p = Positions::new(["a".to_owned()]);
    p.observe(r#"{"op":"subscribed","topics":["a"],"epoch":"e"}"#);
    p.observe(r#"{"topic":"a","seq":2}"#);
    p.observe("not json");
    p.observe(r#"{"topic":"a","seq":"x"}"#);
    assert_eq!(p.since("a"), Some(2));
    p.add("b".to_owned());
    p.remove("a");
    assert_eq!(p.patterns(), ["b"]);
    assert_eq!(p.since("a"), None);
}
