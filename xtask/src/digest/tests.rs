use super::*;
use std::collections::HashMap;

#[test]
fn sha256_of_empty_input_is_the_known_value() {
    assert_eq!(
        sha256(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn canonical_json_does_not_depend_on_map_order() {
    let a: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
    let b: HashMap<String, u32> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
    let ja = canonical_json(&serde_json::json!({"z": a, "a": [1, 2]})).unwrap();
    let jb = canonical_json(&serde_json::json!({"a": [1, 2], "z": b})).unwrap();
    assert_eq!(ja, jb);
    assert!(
        String::from_utf8(ja)
            .unwrap()
            .starts_with("{\"a\":[1,2],\"z\":{\"k0\":0,\"k1\":1,\"k10\":10")
    );
}
