use super::*;

#[test]
fn admin_address_comes_from_the_listening_line() {
    assert_eq!(
        admin_addr("volley-gateway listening client=127.0.0.1:4000 admin=127.0.0.1:4001"),
        Some("127.0.0.1:4001".parse().unwrap())
    );
    assert_eq!(admin_addr("something else admin=127.0.0.1:1"), None);
    assert_eq!(
        admin_addr("volley-gateway listening client=127.0.0.1:4000"),
        None
    );
}

#[test]
fn the_chroot_command_runs_as_nonroot_with_the_image_environment() {
    let cmd = command(Path::new("/r"), "/usr/local/bin/x", &["--version"]);
    let args: Vec<_> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "--userspec=65532:65532",
            "/r",
            "/usr/local/bin/x",
            "--version"
        ]
    );
    assert!(cmd.get_program().to_string_lossy().ends_with("chroot"));
}
