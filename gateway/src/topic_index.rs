//! Per-shard subscription index: from subscription patterns to the keys (connections)
//! subscribed to them, answering "who gets this subject" on the fan-out hot path.
//!
//! Exact patterns live in a hash map (one lookup per message); wildcard patterns live in a
//! token trie walked by the subject's tokens. Neither lookup allocates.

use std::collections::HashMap;
use std::hash::Hash;

use crate::topic::{MAX_TOPIC_LEN, is_reserved, is_wildcard};

#[cfg(test)]
mod tests;

/// Sets smaller than this are searched linearly on removal: cheaper than hashing for the
/// common case of a handful of subscribers, and saves a map per pattern.
const POSITION_MAP_THRESHOLD: usize = 32;

/// The keys subscribed to one pattern. Iteration is a plain slice walk; removal is O(1)
/// (swap_remove plus a position map) once the set is large, so removing 10,000 keys from one
/// topic is not quadratic.
struct KeySet<K> {
    keys: Vec<K>,
    /// Index of each key in `keys`; only built once the set reaches the threshold.
    positions: Option<HashMap<K, usize>>,
}

impl<K: Copy + Eq + Hash> KeySet<K> {
    fn new() -> Self {
        KeySet {
            keys: Vec::new(),
            positions: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn position(&self, key: K) -> Option<usize> {
        match &self.positions {
            Some(map) => map.get(&key).copied(),
            None => self.keys.iter().position(|&k| k == key),
        }
    }

    /// Adds the key; false when it was already there.
    fn insert(&mut self, key: K) -> bool {
        if self.position(key).is_some() {
            return false;
        }
        self.keys.push(key);
        match &mut self.positions {
            Some(map) => {
                map.insert(key, self.keys.len() - 1);
            }
            None if self.keys.len() >= POSITION_MAP_THRESHOLD => {
                self.positions = Some(self.keys.iter().enumerate().map(|(i, &k)| (k, i)).collect());
            }
            None => {}
        }
        true
    }

    /// Removes the key; false when it was not there.
    fn remove(&mut self, key: K) -> bool {
        let Some(idx) = self.position(key) else {
            return false;
        };
        self.keys.swap_remove(idx);
        if let Some(map) = &mut self.positions {
            map.remove(&key);
            // The former last key now sits where the removed one was.
            if let Some(&moved) = self.keys.get(idx) {
                map.insert(moved, idx);
            }
        }
        true
    }

    fn for_each(&self, f: &mut impl FnMut(K)) {
        for &k in &self.keys {
            f(k);
        }
    }
}

/// The keys of one wildcard pattern, with the pattern text kept so `patterns()` can lend it.
struct Leaf<K> {
    pattern: Box<str>,
    keys: KeySet<K>,
}

/// One trie level: the pattern tokens seen so far lead here.
struct Node<K> {
    /// Children for literal tokens.
    children: HashMap<Box<str>, Node<K>>,
    /// Child for a `*` token.
    star: Option<Box<Node<K>>>,
    /// Patterns ending exactly at this node (their last token is `*` or follows one).
    here: Option<Leaf<K>>,
    /// Patterns ending with `>` after this node's path: match when tokens remain.
    tail: Option<Leaf<K>>,
}

impl<K: Copy + Eq + Hash> Node<K> {
    fn new() -> Self {
        Node {
            children: HashMap::new(),
            star: None,
            here: None,
            tail: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.here.is_none()
            && self.tail.is_none()
    }

    /// Reports every key of every pattern below this node matching the remaining tokens.
    /// `at_root` applies the reserved-subject rule of `topic::matches` to the first token.
    fn walk(&self, mut rest: std::str::Split<'_, char>, at_root: bool, f: &mut impl FnMut(K)) {
        let Some(tok) = rest.next() else {
            if let Some(leaf) = &self.here {
                leaf.keys.for_each(f);
            }
            return;
        };
        let wild_ok = !(at_root && is_reserved(tok));
        if wild_ok && let Some(leaf) = &self.tail {
            leaf.keys.for_each(f);
        }
        if let Some(child) = self.children.get(tok) {
            child.walk(rest.clone(), false, f);
        }
        if wild_ok && let Some(star) = &self.star {
            star.walk(rest, false, f);
        }
    }

    /// Removes `key` from the pattern reached by `tokens`, pruning emptied leaves and nodes
    /// on the way back up. Returns None when the pair was absent, else whether the pattern
    /// has no subscriber left.
    fn remove(
        &mut self,
        mut tokens: std::iter::Peekable<std::str::Split<'_, char>>,
        key: K,
    ) -> Option<bool> {
        let Some(tok) = tokens.next() else {
            return remove_from_leaf(&mut self.here, key);
        };
        let last = tokens.peek().is_none();
        if tok == ">" && last {
            return remove_from_leaf(&mut self.tail, key);
        }
        if tok == "*" {
            let child = self.star.as_mut()?;
            let gone = child.remove(tokens, key)?;
            if child.is_empty() {
                self.star = None;
            }
            Some(gone)
        } else {
            let child = self.children.get_mut(tok)?;
            let gone = child.remove(tokens, key)?;
            if child.is_empty() {
                self.children.remove(tok);
            }
            Some(gone)
        }
    }
}

fn remove_from_leaf<K: Copy + Eq + Hash>(slot: &mut Option<Leaf<K>>, key: K) -> Option<bool> {
    let leaf = slot.as_mut()?;
    if !leaf.keys.remove(key) {
        return None;
    }
    let gone = leaf.keys.is_empty();
    if gone {
        *slot = None;
    }
    Some(gone)
}

fn insert_into_leaf<K: Copy + Eq + Hash>(
    slot: &mut Option<Leaf<K>>,
    pattern: &str,
    key: K,
) -> (bool, bool) {
    let leaf = slot.get_or_insert_with(|| Leaf {
        pattern: pattern.into(),
        keys: KeySet::new(),
    });
    let was_empty = leaf.keys.is_empty();
    let added = leaf.keys.insert(key);
    (added, was_empty && added)
}

/// Subscription index of one shard, generic over the subscriber key (a connection's slab
/// index in practice).
///
/// Patterns are expected to have passed [`crate::topic::validate_pattern`]; anything else is
/// stored without panicking but may match oddly. Patterns longer than
/// [`MAX_TOPIC_LEN`] are ignored (`insert` returns false), which also bounds the trie depth
/// and therefore the recursion of lookups and removals.
pub struct TopicIndex<K>
where
    K: Copy + Eq + Hash,
{
    exact: HashMap<Box<str>, KeySet<K>>,
    root: Node<K>,
    /// Number of wildcard patterns with at least one subscriber.
    wildcard_patterns: usize,
}

impl<K> Default for TopicIndex<K>
where
    K: Copy + Eq + Hash,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> TopicIndex<K>
where
    K: Copy + Eq + Hash,
{
    pub fn new() -> Self {
        TopicIndex {
            exact: HashMap::new(),
            root: Node::new(),
            wildcard_patterns: 0,
        }
    }

    /// Subscribes `key` to `pattern`. Returns true when the pattern had no subscriber before
    /// in this index (first interest). Inserting a pair that is already present changes
    /// nothing and returns false.
    pub fn insert(&mut self, pattern: &str, key: K) -> bool {
        if pattern.len() > MAX_TOPIC_LEN {
            return false;
        }
        if !is_wildcard(pattern) {
            if let Some(set) = self.exact.get_mut(pattern) {
                // An existing set is never empty: empty sets are pruned on removal.
                set.insert(key);
                return false;
            }
            let mut set = KeySet::new();
            set.insert(key);
            self.exact.insert(pattern.into(), set);
            return true;
        }

        let mut node = &mut self.root;
        let mut tokens = pattern.split('.').peekable();
        let (_, first) = loop {
            let Some(tok) = tokens.next() else {
                break insert_into_leaf(&mut node.here, pattern, key);
            };
            if tok == ">" && tokens.peek().is_none() {
                break insert_into_leaf(&mut node.tail, pattern, key);
            }
            node = if tok == "*" {
                node.star.get_or_insert_with(|| Box::new(Node::new()))
            } else {
                // Look up before inserting so an existing child costs no allocation.
                if !node.children.contains_key(tok) {
                    node.children.insert(tok.into(), Node::new());
                }
                match node.children.get_mut(tok) {
                    Some(child) => child,
                    None => return false, // just inserted; cannot happen
                }
            };
        };
        if first {
            self.wildcard_patterns += 1;
        }
        first
    }

    /// Unsubscribes `key` from `pattern`. Returns true when the pattern now has no
    /// subscriber (last interest gone). Removing an absent pair returns false and changes
    /// nothing.
    pub fn remove(&mut self, pattern: &str, key: K) -> bool {
        if !is_wildcard(pattern) {
            let Some(set) = self.exact.get_mut(pattern) else {
                return false;
            };
            if !set.remove(key) {
                return false;
            }
            if set.is_empty() {
                self.exact.remove(pattern);
                return true;
            }
            return false;
        }
        match self.root.remove(pattern.split('.').peekable(), key) {
            Some(true) => {
                self.wildcard_patterns = self.wildcard_patterns.saturating_sub(1);
                true
            }
            Some(false) | None => false,
        }
    }

    /// Calls `f` for every key of every pattern matching the concrete `subject`, with the
    /// semantics of [`crate::topic::matches`]. Does not allocate.
    ///
    /// A key subscribed through several matching patterns (say `a.b` and `a.*`) is reported
    /// once per such pattern: deduplicating here would cost a set per message, while the
    /// caller can do it for free with a per-message stamp on the connection.
    pub fn for_each_match(&self, subject: &str, mut f: impl FnMut(K)) {
        if let Some(set) = self.exact.get(subject) {
            set.for_each(&mut f);
        }
        if self.wildcard_patterns > 0 {
            self.root.walk(subject.split('.'), true, &mut f);
        }
    }

    /// Every pattern with at least one subscriber, in no particular order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> + '_ {
        self.exact.keys().map(|p| &**p).chain(TriePatterns {
            stack: vec![&self.root],
            pending: None,
        })
    }

    /// Number of patterns with at least one subscriber.
    pub fn len_patterns(&self) -> usize {
        self.exact.len() + self.wildcard_patterns
    }

    /// True when nobody is subscribed to anything.
    pub fn is_empty(&self) -> bool {
        self.len_patterns() == 0
    }
}

/// Depth-first walk over the trie yielding the stored wildcard patterns.
struct TriePatterns<'a, K> {
    stack: Vec<&'a Node<K>>,
    /// A node can hold two patterns (`here` and `tail`); the second waits here.
    pending: Option<&'a str>,
}

impl<'a, K: Copy + Eq + Hash> Iterator for TriePatterns<'a, K> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(p) = self.pending.take() {
                return Some(p);
            }
            let node = self.stack.pop()?;
            self.stack.extend(node.children.values());
            if let Some(star) = &node.star {
                self.stack.push(star);
            }
            let mut leaves = [&node.here, &node.tail].into_iter().flatten();
            if let Some(leaf) = leaves.next() {
                self.pending = leaves.next().map(|l| &*l.pattern);
                return Some(&leaf.pattern);
            }
        }
    }
}
