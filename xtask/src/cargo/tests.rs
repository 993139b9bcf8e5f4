use super::*;

#[test]
fn only_the_callers_package_variables_are_dropped() {
    for key in [
        "CARGO_PKG_NAME",
        "CARGO_MANIFEST_DIR",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_EXE_volley-gateway",
        "CARGO_PRIMARY_PACKAGE",
        "OUT_DIR",
    ] {
        assert!(inherited_package_var(key), "{key}");
    }
    for key in [
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO",
        "RUSTFLAGS",
        "PATH",
    ] {
        assert!(!inherited_package_var(key), "{key}");
    }
}
