use super::*;
use crate::archive::{Meta, write};
use crate::rootfs::{Parts, entries};
use crate::spec::IMAGES;
use oci_spec::image::Arch;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "xtask-verify-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn build(dir: &Path, binary_path_ok: bool) -> PathBuf {
    let image = IMAGES[0];
    let mut e = entries(
        &image,
        Parts {
            binary: b"#!bin".to_vec(),
            libraries: vec![("/lib64/ld-linux-x86-64.so.2".into(), b"ld".to_vec())],
            ca_bundle: b"ca".to_vec(),
        },
    )
    .unwrap();
    if !binary_path_ok {
        e.retain(|x| x.path != "usr/local/bin/volley-gateway");
    }
    let meta = Meta {
        version: "1.0.0".into(),
        revision: "r1".into(),
        arch: Arch::Amd64,
        epoch: None,
    };
    write(&image, &meta, &e, dir).unwrap().path
}

/// Rewrites the archive with `f` applied to each member's bytes.
fn rewrite(path: &Path, f: impl Fn(&str, &mut Vec<u8>)) {
    let m = members(path).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, mut data) in m {
        f(&name, &mut data);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

#[test]
fn a_written_archive_verifies_and_is_reproducible() {
    let d = scratch();
    let p = build(&d, true);
    assert_eq!(p.file_name().unwrap(), "volley-gateway-1.0.0.oci.tar");
    let v = verify(&p).unwrap();
    assert_eq!(
        v.reference.as_deref(),
        Some("ghcr.io/volley-dev/volley-gateway:1.0.0")
    );
    let first = std::fs::read(&p).unwrap();
    let again = build(&scratch(), true);
    assert_eq!(
        first,
        std::fs::read(again).unwrap(),
        "same inputs, same bytes"
    );

    let root = d.join("rootfs");
    unpack(&v, &root).unwrap();
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/volley-gateway")).unwrap(),
        b"#!bin"
    );
    assert!(
        std::fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("65532")
    );
}

#[test]
fn a_tampered_blob_fails_its_digest() {
    let p = build(&scratch(), true);
    rewrite(&p, |name, data| {
        if name.starts_with("blobs/") && data.first() == Some(&0x1f) {
            // The gzip layer: flip a byte in the middle.
            let i = data.len() / 2;
            data[i] ^= 0xff;
        }
    });
    let err = verify(&p).unwrap_err();
    assert!(matches!(err, VerifyError::Digest { .. }), "{err}");
}

#[test]
fn a_missing_blob_or_entrypoint_is_reported() {
    let p = build(&scratch(), true);
    let m = members(&p).unwrap();
    let config_like = m.keys().find(|k| k.starts_with("blobs/")).unwrap().clone();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &m {
        if *name != config_like {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
    }
    std::fs::write(&p, b.into_inner().unwrap()).unwrap();
    assert!(matches!(verify(&p), Err(VerifyError::Missing(_))));

    let no_bin = build(&scratch(), false);
    let err = verify(&no_bin).unwrap_err();
    assert!(err.to_string().contains("not in the image"), "{err}");
}
