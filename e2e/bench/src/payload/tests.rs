use super::*;

#[test]
fn payload_has_the_exact_size_and_is_json() {
    for size in [64, 256, 1000] {
        let p = build(3, 1_700_000_000_123_456_789, size);
        assert_eq!(p.len(), size);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["ph"], 3);
    }
    // Too small for the fields: just the fields.
    assert_eq!(build(1, 2, 0), br#"{"ph":1,"ts":2,"pad":""}"#.to_vec());
}

#[test]
fn read_back_from_an_envelope() {
    let p = build(7, 123_456, 128);
    let env = [br#"{"topic":"bench.all","data":"#.as_slice(), &p, b"}"].concat();
    assert_eq!(read(&env), Some((7, 123_456)));
    assert_eq!(read(&p), Some((7, 123_456)));
    assert_eq!(read(br#"{"op":"pong"}"#), None);
    assert_eq!(read(br#"{"ph":,"ts":1}"#), None);
}
