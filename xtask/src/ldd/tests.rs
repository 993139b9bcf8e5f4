use super::*;

#[test]
fn lists_libraries_and_the_loader_without_the_vdso() {
    let out = "\tlinux-vdso.so.1 (0x00007ffd6b5f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f84ca67c000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f84ca59c000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f84c8c1e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f84ca6af000)
";
    let libs = parse("gw", out).unwrap();
    assert_eq!(
        libs,
        [
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2"
        ]
        .map(PathBuf::from)
    );
}

#[test]
fn a_missing_library_is_an_error_naming_it() {
    let out = "\tlibssl.so.3 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n";
    assert_eq!(
        parse("gw", out),
        Err(LddError::NotFound {
            binary: "gw".into(),
            library: "libssl.so.3".into()
        })
    );
}

#[test]
fn static_binaries_need_nothing_and_garbage_is_refused() {
    assert_eq!(
        parse("s", "\tstatically linked\n").unwrap(),
        Vec::<PathBuf>::new()
    );
    assert!(matches!(
        parse("x", "what is this\n"),
        Err(LddError::Unparsed { .. })
    ));
}

#[test]
fn real_ldd_on_a_system_binary_includes_libc_and_the_loader() {
    let libs = libraries(Path::new("/bin/sh")).unwrap();
    assert!(
        libs.iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("libc.so")),
        "{libs:?}"
    );
    assert!(
        libs.iter()
            .any(|p| p.file_name().unwrap().to_string_lossy().starts_with("ld-")),
        "{libs:?}"
    );
}
