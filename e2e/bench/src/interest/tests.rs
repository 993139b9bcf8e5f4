use super::*;

#[test]
fn expected_counts_gateways_not_connections() {
    // Three gateways with two ranges each (round-robin), everyone on the broadcast topic.
    let ranges = plan::split_over(60, 10, 3);
    let gateway_of: Vec<usize> = (0..ranges.len()).map(|k| plan::group_of(k, 3)).collect();
    let want = expected(&Shape::Shared, &ranges, &gateway_of, &[], "push");
    assert_eq!(want, HashMap::from([("push.bench.all".to_owned(), 3)]));
}

#[test]
fn expected_per_user_topics_sit_on_one_gateway_each() {
    let ranges = vec![0..2, 2..4];
    // Connection 3 failed: its user topic is on no gateway.
    let want = expected(&Shape::PerUser, &ranges, &[0, 1], &[3], "p");
    assert_eq!(want["p.bench.all"], 2);
    assert_eq!(want["p.user.0"], 1);
    assert_eq!(want["p.user.2"], 1);
    assert!(!want.contains_key("p.user.3"));
    assert_eq!(want.len(), 4);
}

#[test]
fn connz_parsing_and_shortfall() {
    let connz: Connz = serde_json::from_str(
        r#"{"server_id":"X","num_connections":3,"connections":[
            {"cid":1,"name":"volley-gateway","subscriptions_list":["push.bench.all","volley.control.a"]},
            {"cid":2,"subscriptions_list":["push.bench.all","push.bench.all"]},
            {"cid":3,"name":"volley-bench publisher","subscriptions_list":["_INBOX.x"]},
            {"cid":4}
        ]}"#,
    )
    .unwrap();
    let held = held(&connz);
    // A duplicate within one connection still counts as one gateway.
    assert_eq!(held["push.bench.all"], 2);
    let mut want = HashMap::from([("push.bench.all".to_owned(), 2)]);
    assert_eq!(shortfall(&want, &held), None);
    want.insert("push.bench.all".into(), 3);
    want.insert("push.user.1".into(), 1);
    assert_eq!(
        shortfall(&want, &held),
        Some(Shortfall {
            subject: "push.bench.all".into(),
            held: 2,
            wanted: 3,
            missing: 2,
        })
    );
}
