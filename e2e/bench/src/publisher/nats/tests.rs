use super::*;

#[test]
fn subjects_are_prefix_dot_topic() {
    assert_eq!(subject("push", "bench.all"), "push.bench.all");
    assert_eq!(subject("push", "user.17"), "push.user.17");
    assert_eq!(subject("acme.push", "zipf.3"), "acme.push.zipf.3");
}
