use super::*;

#[test]
fn valid_patterns_and_subjects() {
    for p in [
        "a",
        "stocks.AAPL",
        "a.*",
        "*.b",
        "*",
        ">",
        "a.>",
        "a.*.>",
        "é.ü",
        "a-b_c.1",
    ] {
        assert_eq!(validate_pattern(p), Ok(()), "{p}");
    }
    for s in ["a", "stocks.AAPL", "a.b.c", "x_.y$"] {
        assert_eq!(validate_subject(s), Ok(()), "{s}");
    }
}

#[test]
fn structural_errors() {
    assert_eq!(validate_pattern(""), Err(TopicError::Empty));
    assert_eq!(validate_subject(""), Err(TopicError::Empty));
    let long = "a".repeat(MAX_TOPIC_LEN + 1);
    assert_eq!(validate_pattern(&long), Err(TopicError::TooLong));
    assert_eq!(validate_pattern(&long[..MAX_TOPIC_LEN]), Ok(()));
    for p in [".", "a.", ".a", "a..b"] {
        assert_eq!(validate_pattern(p), Err(TopicError::EmptyToken), "{p}");
    }
    for p in ["a b", "a.\tb", "a\n", "a.\u{a0}"] {
        assert_eq!(validate_pattern(p), Err(TopicError::Whitespace), "{p:?}");
    }
}

#[test]
fn wildcard_errors() {
    for p in ["a*", "a.b*", "*a", ">a", "a.>b", "a.>.b", ">.a", "**", ">>"] {
        assert_eq!(validate_pattern(p), Err(TopicError::BadWildcard), "{p}");
    }
    for s in ["*", ">", "a.*", "a.>", "*.b"] {
        assert_eq!(
            validate_subject(s),
            Err(TopicError::WildcardInPublish),
            "{s}"
        );
    }
    assert_eq!(validate_subject("a*"), Err(TopicError::BadWildcard));
}

#[test]
fn reserved() {
    for t in ["_INBOX.x", "$SYS", "$SYS.>", "_"] {
        let e = validate_pattern(t).unwrap_err();
        assert_eq!(e, TopicError::Reserved, "{t}");
        assert!(e.is_forbidden());
    }
    assert_eq!(validate_subject("$SYS.x"), Err(TopicError::Reserved));
    assert!(!TopicError::BadWildcard.is_forbidden());
    // Malformed reserved topics are reported as malformed.
    assert_eq!(validate_pattern("_a..b"), Err(TopicError::EmptyToken));
}

#[test]
fn wildcard_detection() {
    assert!(is_wildcard("a.*"));
    assert!(is_wildcard(">"));
    assert!(is_wildcard("*.b.>"));
    assert!(!is_wildcard("a.b"));
    assert!(!is_wildcard("a*"));
}

#[test]
fn matching() {
    let yes = [
        ("a", "a"),
        ("a.b", "a.b"),
        ("a.*", "a.b"),
        ("*.b", "a.b"),
        ("*", "a"),
        (">", "a"),
        (">", "a.b.c"),
        ("a.>", "a.b"),
        ("a.>", "a.b.c"),
        ("a.*.>", "a.b.c"),
        ("*.*.c", "a.b.c"),
    ];
    for (p, s) in yes {
        assert!(matches(p, s), "{p} should match {s}");
    }
    let no = [
        ("a", "b"),
        ("a.*", "a"),
        ("a.>", "a"),
        ("a.b", "a.b.c"),
        ("a.b.c", "a.b"),
        ("a.*", "a.b.c"),
        ("*", "a.b"),
        ("a.*.>", "a.b"),
        ("ab", "a"),
        ("a", "ab"),
        // A `>` that is not last is malformed and matches nothing.
        ("a.>.c", "a.b.c"),
    ];
    for (p, s) in no {
        assert!(!matches(p, s), "{p} should not match {s}");
    }
}

#[test]
fn wildcards_do_not_leak_reserved_subjects() {
    assert!(!matches(">", "$SYS.x"));
    assert!(!matches("*.x", "_INBOX.x"));
    assert!(!matches("*", "$SYS"));
    // Named explicitly (only the server does that), they still match.
    assert!(matches("$SYS.>", "$SYS.x"));
    assert!(matches("$SYS.*", "$SYS.x"));
    // Reserved only concerns the first character of the subject.
    assert!(matches(">", "a.$SYS"));
}

#[test]
fn malformed_input_does_not_panic() {
    for (p, s) in [
        ("", ""),
        (".", "."),
        ("..", "a"),
        (">", ""),
        ("*", ""),
        ("a.>", "a."),
    ] {
        let _ = matches(p, s);
    }
}
