use jsonwebtoken::{DecodingKey, Validation, decode};

use super::*;

#[derive(serde::Deserialize)]
struct Decoded {
    sub: String,
    exp: u64,
}

#[test]
fn token_names_the_user_and_verifies_with_the_secret() {
    let token = user_token(b"s3cret", 42).unwrap();
    let claims = decode::<Decoded>(
        &token,
        &DecodingKey::from_secret(b"s3cret"),
        &Validation::default(),
    )
    .unwrap()
    .claims;
    assert_eq!(claims.sub, "42");
    assert!(claims.exp > 1_700_000_000);
    assert!(
        decode::<Decoded>(
            &token,
            &DecodingKey::from_secret(b"other"),
            &Validation::default()
        )
        .is_err()
    );
}

#[test]
fn fresh_secrets_differ() {
    let a = fresh_secret();
    std::thread::sleep(std::time::Duration::from_millis(1));
    assert_ne!(a, fresh_secret());
}
