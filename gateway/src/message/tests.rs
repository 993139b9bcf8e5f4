use super::*;

#[test]
fn largest_frame_len_matches_the_encoded_frames() {
    let cases: [(&str, &[u8]); 5] = [
        ("a", b"{\"x\":1}"),
        ("news.today", b"plain text"),
        ("t", b"\"quotes\" and \\ and \x01 control"),
        ("bin", &[0xff, 0xfe, 0x00, 0x80]),
        ("big", &[b'"'; 70_000]),
    ];
    for (topic, payload) in cases {
        let message = Message::new(topic, Bytes::copy_from_slice(payload));
        let envelope = message.frame(Format::Envelope).len();
        let raw = message.frame(Format::Raw).len();
        let predicted = largest_frame_len(topic, payload);
        assert_eq!(predicted, envelope.max(raw), "{topic}");
        assert_eq!(message.largest_frame_len(), predicted, "{topic}");
    }
}

#[test]
fn escaping_can_make_the_frame_much_larger_than_the_payload() {
    // Control characters are written as \u00XX: six bytes each.
    let payload = vec![0x01u8; 1000];
    assert!(largest_frame_len("t", &payload) > 6 * 1000);
}
