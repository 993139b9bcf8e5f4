use super::*;
use crate::topic::matches;

fn matched(index: &TopicIndex<u32>, subject: &str) -> Vec<u32> {
    let mut keys = Vec::new();
    index.for_each_match(subject, |k| keys.push(k));
    keys.sort_unstable();
    keys
}

fn sorted_patterns(index: &TopicIndex<u32>) -> Vec<String> {
    let mut p: Vec<String> = index.patterns().map(str::to_owned).collect();
    p.sort();
    p
}

#[test]
fn exact() {
    let mut ix = TopicIndex::new();
    assert!(ix.insert("a.b", 1));
    assert!(!ix.insert("a.b", 2));
    assert!(ix.insert("a.c", 3));
    assert_eq!(matched(&ix, "a.b"), [1, 2]);
    assert_eq!(matched(&ix, "a.c"), [3]);
    assert_eq!(matched(&ix, "a"), [] as [u32; 0]);
    assert_eq!(matched(&ix, "a.b.c"), [] as [u32; 0]);
}

#[test]
fn star() {
    let mut ix = TopicIndex::new();
    ix.insert("a.*", 1);
    ix.insert("*.b", 2);
    ix.insert("*", 3);
    ix.insert("a.*.c", 4);
    assert_eq!(matched(&ix, "a.b"), [1, 2]);
    assert_eq!(matched(&ix, "a.x"), [1]);
    assert_eq!(matched(&ix, "x"), [3]);
    assert_eq!(matched(&ix, "a"), [3]);
    assert_eq!(matched(&ix, "a.b.c"), [4]);
}

#[test]
fn tail() {
    let mut ix = TopicIndex::new();
    ix.insert(">", 1);
    ix.insert("a.>", 2);
    ix.insert("a.b.>", 3);
    assert_eq!(matched(&ix, "a"), [1]);
    assert_eq!(matched(&ix, "a.b"), [1, 2]);
    assert_eq!(matched(&ix, "a.b.c.d"), [1, 2, 3]);
    assert_eq!(matched(&ix, "z.b.c"), [1]);
}

#[test]
fn mixed_and_duplicates_across_patterns() {
    let mut ix = TopicIndex::new();
    ix.insert("a.b", 1);
    ix.insert("a.*", 1);
    ix.insert("a.>", 1);
    ix.insert("*.b", 2);
    ix.insert("a.*.>", 3);
    // Key 1 is reported once per matching pattern, as documented.
    assert_eq!(matched(&ix, "a.b"), [1, 1, 1, 2]);
    assert_eq!(matched(&ix, "a.b.c"), [1, 3]);
}

#[test]
fn no_false_matches() {
    let mut ix = TopicIndex::new();
    ix.insert("a.*", 1);
    ix.insert("a.>", 2);
    ix.insert("a.b", 3);
    ix.insert("a.*.c", 4);
    assert_eq!(matched(&ix, "a"), [] as [u32; 0]);
    assert_eq!(matched(&ix, "a.b.c"), [2, 4]);
    assert_eq!(matched(&ix, "b.b"), [] as [u32; 0]);
    assert_eq!(matched(&ix, "a.b.d"), [2]);
}

#[test]
fn agrees_with_topic_matches() {
    let patterns = [
        "a", "a.b", "a.b.c", "*", "a.*", "*.b", "*.*", "a.*.c", ">", "a.>", "*.>", "a.b.>",
        "$SYS.>", "$SYS.x",
    ];
    let subjects = [
        "a", "b", "a.b", "a.c", "b.b", "a.b.c", "a.x.c", "a.b.c.d", "$SYS.x", "_INBOX.b", "$SYS",
    ];
    let mut ix = TopicIndex::new();
    for (i, p) in patterns.iter().enumerate() {
        ix.insert(p, i as u32);
    }
    for s in subjects {
        let expected: Vec<u32> = (0..patterns.len() as u32)
            .filter(|&i| matches(patterns[i as usize], s))
            .collect();
        assert_eq!(matched(&ix, s), expected, "subject {s}");
    }
    // Reserved subjects reach only patterns that name them.
    assert_eq!(matched(&ix, "$SYS.x"), [12, 13]);
}

#[test]
fn insert_remove_return_values() {
    let mut ix = TopicIndex::new();
    for p in ["a.b", "a.*", "a.>"] {
        assert!(ix.insert(p, 1), "{p}");
        assert!(!ix.insert(p, 1), "{p}");
        assert!(!ix.insert(p, 2), "{p}");
        assert!(!ix.remove(p, 3), "{p}");
        assert!(!ix.remove(p, 1), "{p}");
        assert!(!ix.remove(p, 1), "{p}");
        assert!(ix.remove(p, 2), "{p}");
        assert!(!ix.remove(p, 2), "{p}");
        assert!(ix.insert(p, 2), "{p}");
    }
    assert!(!ix.remove("x.y", 1));
    assert!(!ix.remove("x.*", 1));
    assert!(!ix.remove("a.*.>", 2));
    assert!(!ix.remove("a.b.*", 2));
    assert_eq!(ix.len_patterns(), 3);
}

#[test]
fn pruning() {
    let mut ix = TopicIndex::new();
    let pats = ["a.b", "a.*", "a.>", "a.*.c", "a.*.>", "*", ">", "x.y.z.*"];
    for (i, p) in pats.iter().enumerate() {
        assert!(ix.insert(p, i as u32));
    }
    assert_eq!(ix.len_patterns(), pats.len());
    let mut expected: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(sorted_patterns(&ix), expected);

    for (i, p) in pats.iter().enumerate() {
        assert!(ix.remove(p, i as u32), "{p}");
    }
    assert_eq!(ix.len_patterns(), 0);
    assert!(ix.is_empty());
    assert!(ix.exact.is_empty());
    assert!(ix.root.is_empty(), "trie not pruned");
    assert_eq!(ix.patterns().count(), 0);
    assert_eq!(matched(&ix, "a.b"), [] as [u32; 0]);
}

#[test]
fn partial_removal_keeps_siblings() {
    let mut ix = TopicIndex::new();
    ix.insert("a.*", 1);
    ix.insert("a.*.c", 2);
    assert!(ix.remove("a.*", 1));
    assert_eq!(matched(&ix, "a.b.c"), [2]);
    assert_eq!(sorted_patterns(&ix), ["a.*.c"]);
}

#[test]
fn ten_thousand_keys_on_one_topic() {
    for pattern in ["stocks.AAPL", "stocks.*"] {
        let mut ix = TopicIndex::new();
        for k in 0..10_000u32 {
            assert_eq!(ix.insert(pattern, k), k == 0);
        }
        assert!(!ix.insert(pattern, 5_000));
        let mut n = 0;
        ix.for_each_match("stocks.AAPL", |_| n += 1);
        assert_eq!(n, 10_000);
        // Remove from the middle out so swap_remove bookkeeping is exercised.
        let order: Vec<u32> = (0..10_000u32)
            .rev()
            .step_by(2)
            .chain((0..10_000u32).step_by(2))
            .collect();
        for (i, &k) in order.iter().enumerate() {
            assert_eq!(ix.remove(pattern, k), i == order.len() - 1, "{k}");
        }
        assert!(ix.is_empty());
    }
}

#[test]
fn keyset_positions_stay_consistent() {
    let mut set = KeySet::new();
    for k in 0..100u32 {
        set.insert(k);
    }
    for k in (0..100u32).filter(|k| k % 3 == 0) {
        assert!(set.remove(k));
    }
    let map = set.positions.as_ref().unwrap();
    assert_eq!(map.len(), set.keys.len());
    for (i, k) in set.keys.iter().enumerate() {
        assert_eq!(map[k], i);
    }
}

#[test]
fn oversized_and_malformed_patterns_do_not_panic() {
    let mut ix = TopicIndex::new();
    let long = "a.".repeat(MAX_TOPIC_LEN) + ">";
    assert!(!ix.insert(&long, 1));
    assert!(!ix.remove(&long, 1));
    for p in ["", ".", "..", "a.>.b", "*.", ".>"] {
        assert!(ix.insert(p, 1), "{p:?}");
        ix.for_each_match(p, |_| {});
        ix.for_each_match("a.b", |_| {});
        assert!(ix.remove(p, 1), "{p:?}");
    }
    assert!(ix.is_empty());
}
