//! Topic validation, wildcard matching, the subscription index and the subscribe rules.
//!
//! - `validate_*` never panic and accept only what the documented grammar allows.
//! - `matches` agrees with a reference recursive matcher (NATS semantics plus the rule that a
//!   leading wildcard never matches a reserved subject).
//! - `TopicIndex` agrees with a plain set of (pattern, key) pairs under any sequence of
//!   inserts and removes: first/last-interest results, pattern count and matches.
//! - Whatever `Identity::may_subscribe` / `anonymous_may_subscribe` allow never matches
//!   another user's `user.X` subjects, and stays within the token's `topics` claim.

use std::collections::BTreeSet;

use volley_gateway::fuzzing::auth::{self, Identity};
use volley_gateway::fuzzing::topic::TopicIndex;
use volley_gateway::fuzzing::topic::{self, MAX_TOPIC_LEN, TopicError};

use super::input::Input;

const TOKENS: &[&str] = &[
    "a", "b", "user", "alice", "bob", "*", ">", "_r", "$s", "x y", "", "a*", "é", "a>b", "\t",
];

fn pattern(input: &mut Input<'_>) -> String {
    if input.u8().is_multiple_of(8) {
        return input.string(300);
    }
    let n = 1 + input.below(5);
    let tokens: Vec<&str> = (0..n).map(|_| *input.pick(TOKENS)).collect();
    tokens.join(".")
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let patterns: Vec<String> = (0..1 + input.below(6))
        .map(|_| pattern(&mut input))
        .collect();
    let subjects: Vec<String> = (0..1 + input.below(6))
        .map(|_| pattern(&mut input))
        .collect();
    for p in patterns.iter().chain(&subjects) {
        validation(p);
    }
    // Subjects the patterns themselves can produce, so matches are common.
    let mut all_subjects = subjects.clone();
    for p in &patterns {
        all_subjects.push(instantiate(p, &mut input));
    }
    all_subjects.retain(|s| publishable(s));
    for p in &patterns {
        for s in &all_subjects {
            if topic::validate_pattern(p).is_ok() {
                assert_eq!(
                    topic::matches(p, s),
                    reference_match(p, s),
                    "{p:?} vs {s:?}"
                );
            } else {
                // Defined on any input, even if not meaningful.
                let _ = topic::matches(p, s);
            }
        }
    }
    index(&mut input, &patterns, &all_subjects);
    subscribe_rules(&mut input, &patterns, &all_subjects);
}

/// A subject that reaches the matcher: valid for publishing, or well-formed but reserved
/// (the server's own `_`/`$` subjects).
fn publishable(s: &str) -> bool {
    matches!(
        topic::validate_subject(s),
        Ok(()) | Err(TopicError::Reserved)
    )
}

fn validation(s: &str) {
    let as_pattern = topic::validate_pattern(s);
    let as_subject = topic::validate_subject(s);
    if as_pattern.is_ok() || as_subject.is_ok() {
        assert!(!s.is_empty() && s.len() <= MAX_TOPIC_LEN);
        assert!(!s.chars().any(char::is_whitespace));
        assert!(!s.starts_with(['_', '$']));
        assert!(s.split('.').all(|t| !t.is_empty()));
    }
    if as_subject.is_ok() {
        assert!(as_pattern.is_ok(), "a subject is also a pattern");
        assert!(!topic::is_wildcard(s));
        assert!(!s.contains(['*', '>']));
    }
    if as_pattern.is_ok() {
        let tokens: Vec<&str> = s.split('.').collect();
        for (i, t) in tokens.iter().enumerate() {
            let wildcard_ok = *t == "*" || (*t == ">" && i + 1 == tokens.len());
            assert!(wildcard_ok || !t.contains(['*', '>']), "{s:?}");
        }
        assert_eq!(
            topic::is_wildcard(s),
            tokens.iter().any(|t| *t == "*" || *t == ">")
        );
    }
}

fn reference_match(pattern: &str, subject: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    if matches!(p[0], "*" | ">") && subject.starts_with(['_', '$']) {
        return false;
    }
    fn go(p: &[&str], s: &[&str]) -> bool {
        match (p.split_first(), s.split_first()) {
            (None, None) => true,
            (Some((&">", rest)), Some(_)) => rest.is_empty(),
            (Some((&"*", pr)), Some((_, sr))) => go(pr, sr),
            (Some((pt, pr)), Some((st, sr))) => pt == st && go(pr, sr),
            _ => false,
        }
    }
    go(&p, &s)
}

/// A subject `pattern` matches (when valid): wildcards replaced by concrete tokens.
fn instantiate(pattern: &str, input: &mut Input<'_>) -> String {
    const CONCRETE: &[&str] = &["a", "b", "user", "alice", "bob", "c"];
    let mut out: Vec<String> = Vec::new();
    for t in pattern.split('.') {
        match t {
            "*" => out.push(input.pick(CONCRETE).to_string()),
            ">" => {
                for _ in 0..1 + input.below(3) {
                    out.push(input.pick(CONCRETE).to_string());
                }
            }
            t => out.push(t.to_owned()),
        }
    }
    out.join(".")
}

fn index(input: &mut Input<'_>, patterns: &[String], subjects: &[String]) {
    let valid: Vec<&String> = patterns
        .iter()
        .filter(|p| topic::validate_pattern(p).is_ok())
        .collect();
    let mut index = TopicIndex::<u8>::new();
    let mut model: BTreeSet<(String, u8)> = BTreeSet::new();
    if valid.is_empty() {
        // Unvalidated patterns are stored or ignored without panicking.
        for (key, p) in patterns.iter().enumerate() {
            index.insert(p, key as u8);
            for s in subjects {
                index.for_each_match(s, |_| {});
            }
            index.remove(p, key as u8);
        }
        return;
    }
    for _ in 0..input.below(24) {
        let p = (*input.pick(&valid)).clone();
        let key = input.u8() % 4;
        let had_pattern = model.iter().any(|(q, _)| *q == p);
        if input.u8().is_multiple_of(3) {
            let was = model.remove(&(p.clone(), key));
            let last = was && !model.iter().any(|(q, _)| *q == p);
            assert_eq!(index.remove(&p, key), last, "remove {p:?} {key}");
        } else {
            model.insert((p.clone(), key));
            assert_eq!(index.insert(&p, key), !had_pattern, "insert {p:?} {key}");
        }
        let distinct: BTreeSet<&str> = model.iter().map(|(q, _)| q.as_str()).collect();
        assert_eq!(index.len_patterns(), distinct.len());
        let listed: BTreeSet<&str> = index.patterns().collect();
        assert_eq!(listed, distinct);
        for s in subjects {
            let mut got = Vec::new();
            index.for_each_match(s, |k| got.push(k));
            got.sort_unstable();
            let mut want: Vec<u8> = model
                .iter()
                .filter(|(q, _)| topic::matches(q, s))
                .map(|(_, k)| *k)
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "matches of {s:?}");
        }
    }
}

fn subscribe_rules(input: &mut Input<'_>, patterns: &[String], subjects: &[String]) {
    let user = match input.u8() % 4 {
        0 => None,
        1 => Some("alice".to_owned()),
        2 => Some("bob".to_owned()),
        _ => Some(input.string(12)),
    };
    let claim = match input.u8() % 2 {
        0 => None,
        _ => Some(
            (0..input.below(3))
                .map(|_| pattern(input))
                .collect::<Vec<_>>(),
        ),
    };
    let identity = Identity {
        user,
        expires_at: input.u64(),
        topics: claim,
    };
    let own = identity.user_topic();
    let own_sub = own.as_ref().and(identity.user.as_deref());
    let foreign = |s: &str| {
        let mut t = s.split('.');
        t.next() == Some("user") && matches!(t.next(), Some(x) if Some(x) != own_sub)
    };
    let in_own_space = |s: &str| {
        let mut t = s.split('.');
        own_sub.is_some() && t.next() == Some("user") && t.next() == own_sub
    };
    for p in patterns {
        let anonymous = auth::anonymous_may_subscribe(p);
        let allowed = identity.may_subscribe(p);
        assert!(!(anonymous || allowed) || topic::validate_pattern(p).is_ok());
        for s in subjects.iter().filter(|s| topic::matches(p, s)) {
            let any_user = s.split('.').next() == Some("user") && s.split('.').count() >= 2;
            assert!(!anonymous || !any_user, "anonymous {p:?} reaches {s:?}");
            if !allowed {
                continue;
            }
            assert!(!foreign(s), "{identity:?} {p:?} reaches {s:?}");
            if let (Some(claim), false) = (&identity.topics, in_own_space(p)) {
                assert!(
                    claim.iter().any(|a| topic::matches(a, s)),
                    "{p:?} reaches {s:?} outside the claim {claim:?}"
                );
            }
        }
    }
}
