use axum::http::{HeaderMap, HeaderValue};

use super::*;

fn headers(values: &[&[u8]]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(HEADER, HeaderValue::from_bytes(v).expect("header value"));
    }
    map
}

#[test]
fn a_given_key_is_used_as_is() {
    assert_eq!(
        given_or_new(&headers(&[b"order-42:v1"])),
        Ok("order-42:v1".to_owned())
    );
}

#[test]
fn without_a_key_a_new_unique_one_is_made() {
    let a = given_or_new(&HeaderMap::new()).unwrap();
    let b = given_or_new(&HeaderMap::new()).unwrap();
    assert_ne!(a, b);
    assert!(!a.is_empty() && a.len() <= MAX_LEN && a.bytes().all(|c| c.is_ascii_graphic()));
    assert_eq!(given(&HeaderMap::new()), Ok(None));
}

#[test]
fn bad_keys_are_refused_with_a_reason() {
    let long = vec![b'k'; MAX_LEN + 1];
    for bad in [&b""[..], b"has space", b"tab\there", &long, b"caf\xc3\xa9"] {
        assert_eq!(given(&headers(&[bad])), Err(KeyError::Invalid), "{bad:?}");
    }
    assert_eq!(
        given(&headers(&[&[b'k'; MAX_LEN]])).map(|k| k.map(|k| k.len())),
        Ok(Some(MAX_LEN))
    );
    assert_eq!(given(&headers(&[b"a", b"b"])), Err(KeyError::Repeated));
}
