//! The run check catches a broken image: a real dynamically linked binary (coreutils `true`)
//! packed with everything runs from its unpacked root filesystem as 65532:65532; packed without
//! libc, or without the dynamic loader, it does not. Needs root (chroot), as CI has.

use std::path::{Path, PathBuf};
use std::process::Output;

use oci_spec::image::Arch;
use xtask::archive::{self, Meta};
use xtask::rootfs::{self, CA_BUNDLE, Kind};
use xtask::spec::Image;
use xtask::{smoke, verify};

const TRUE: Image = Image {
    name: "true",
    package: "coreutils",
    description: "test subject",
};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-chroot-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn require_root() {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "these tests chroot into an image's root filesystem: run them as root (CI does)"
    );
}

/// Packs /bin/true, minus the files `drop` matches, then verifies, unpacks and runs it.
fn pack_and_run(tag: &str, drop: impl Fn(&str) -> bool) -> Output {
    require_root();
    let binary = std::fs::canonicalize("/bin/true").unwrap();
    let parts = rootfs::collect(&binary, Path::new(CA_BUNDLE)).unwrap();
    let mut entries = rootfs::entries(&TRUE, parts).unwrap();
    let before = entries.len();
    entries.retain(|e| !(matches!(e.kind, Kind::File(_)) && drop(&e.path)));
    if tag != "complete" {
        assert!(entries.len() < before, "{tag}: nothing dropped");
    }
    let meta = Meta {
        version: "0.0.0".into(),
        revision: "test".into(),
        arch: archive::host_arch().unwrap(),
        epoch: None,
    };
    assert!(matches!(meta.arch, Arch::Amd64 | Arch::ARM64));
    let dir = scratch(tag);
    let built = archive::write(&TRUE, &meta, &entries, &dir).unwrap();
    let v = verify::verify(&built.path).unwrap();
    let root = dir.join("rootfs");
    verify::unpack(&v, &root).unwrap();
    smoke::command(&root, &TRUE.binary_path(), &["--version"])
        .output()
        .unwrap()
}

#[test]
fn a_complete_image_runs_as_nonroot() {
    let out = pack_and_run("complete", |_| false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("true"));
}

#[test]
fn an_image_without_libc_fails_to_run() {
    let out = pack_and_run("no-libc", |p| {
        Path::new(p)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))
    });
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("libc.so"), "{stderr}");
}

#[test]
fn an_image_without_the_loader_fails_to_run() {
    let out = pack_and_run("no-loader", |p| {
        Path::new(p)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
    });
    assert!(!out.status.success());
}
