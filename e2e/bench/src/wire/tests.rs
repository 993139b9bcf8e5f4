use super::*;

#[test]
fn upgrade_request_and_response_head() {
    let req = String::from_utf8(upgrade_request("127.0.0.1:1", "/ws?topics=a")).unwrap();
    assert!(req.starts_with("GET /ws?topics=a HTTP/1.1\r\n"));
    assert!(req.ends_with("\r\n\r\n"));
    assert_eq!(response_head(b"HTTP/1.1 101 Switching"), None);
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x01a";
    assert_eq!(response_head(head), Some((101, head.len() - 3)));
    assert_eq!(response_head(b"HTTP/1.1 503 Busy\r\n\r\n").unwrap().0, 503);
}

#[test]
fn frames_of_every_length_form() {
    assert_eq!(
        parse_frame(b"\x81\x03abcX"),
        Some(Frame {
            opcode: OP_TEXT,
            payload: 2..5,
            len: 5
        })
    );
    assert_eq!(parse_frame(b"\x81\x03ab"), None);
    let mut mid = vec![0x82, 126, 0x01, 0x00];
    mid.extend(vec![7u8; 256]);
    assert_eq!(parse_frame(&mid).unwrap().payload, 4..260);
    assert_eq!(parse_frame(&mid[..100]), None);
    let mut big = vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0];
    big.extend(vec![1u8; 65536]);
    assert_eq!(parse_frame(&big).unwrap().len, 65546);
    assert_eq!(parse_frame(b"\x89\x00").unwrap().opcode, OP_PING);
    assert_eq!(parse_frame(b"\x81"), None);
}

#[test]
fn client_control_frames_are_masked() {
    assert_eq!(client_control(0xA, b"hi"), b"\x8a\x82\0\0\0\0hi".to_vec());
}
