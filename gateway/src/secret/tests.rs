use super::*;

#[test]
fn debug_and_display_never_show_the_value() {
    let secret = Secret::new("hunter2".into());
    assert_eq!(format!("{secret:?}"), REDACTED);
    assert_eq!(format!("{secret}"), REDACTED);
    assert_eq!(
        format!("{:#?}", Some(secret.clone())),
        format!("Some(\n    {REDACTED},\n)")
    );
    assert_eq!(secret.expose(), "hunter2");
}

#[test]
fn urls_lose_their_credentials_only() {
    assert_eq!(
        redact_urls("nats://alice:pw@n1:4222,nats://n2:4222,tls://tok@n3"),
        "nats://<redacted>@n1:4222,nats://n2:4222,tls://<redacted>@n3"
    );
    assert_eq!(redact_urls("n1:4222"), "n1:4222");
    assert_eq!(redact_urls("u:p@n1"), "<redacted>@n1");
    // An '@' after the authority is not a credential.
    assert_eq!(redact_urls("nats://n1/x@y"), "nats://n1/x@y");
    assert_eq!(redact_urls("nats://a:b@c@n1"), "nats://<redacted>@n1");
}
