use super::Conn;

/// Idle memory per connection is a checked number (BENCHMARKS.md: ≤ 512 B per idle connection,
/// 440–447 B measured): the slab slot must not grow past what it was before the session moved
/// out of the shard (192 bytes on x86_64).
#[test]
fn a_connection_slot_stays_small() {
    assert!(
        std::mem::size_of::<Conn>() <= 192,
        "Conn is {} bytes",
        std::mem::size_of::<Conn>()
    );
}
