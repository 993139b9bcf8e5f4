use super::*;
use crate::spec::IMAGES;

fn parts() -> Parts {
    Parts {
        binary: b"\x7fELF-gateway".to_vec(),
        libraries: vec![
            ("/lib/x86_64-linux-gnu/libc.so.6".into(), b"libc".to_vec()),
            ("/lib64/ld-linux-x86-64.so.2".into(), b"ld".to_vec()),
        ],
        ca_bundle: b"-----BEGIN CERTIFICATE-----".to_vec(),
    }
}

fn find<'a>(e: &'a [Entry], path: &str) -> &'a Entry {
    e.iter()
        .find(|x| x.path == path)
        .unwrap_or_else(|| panic!("{path} missing"))
}

#[test]
fn holds_binary_libraries_loader_users_certs_and_nsswitch() {
    let e = entries(&IMAGES[0], parts()).unwrap();
    let bin = find(&e, "usr/local/bin/volley-gateway");
    assert_eq!(bin.kind, Kind::File(b"\x7fELF-gateway".to_vec()));
    assert_eq!(bin.mode, 0o755);
    assert_eq!(
        find(&e, "lib64/ld-linux-x86-64.so.2").kind,
        Kind::File(b"ld".to_vec())
    );
    find(&e, "lib/x86_64-linux-gnu/libc.so.6");
    assert!(
        matches!(&find(&e, "etc/passwd").kind, Kind::File(d) if String::from_utf8_lossy(d).contains("nonroot:x:65532:65532"))
    );
    assert!(
        matches!(&find(&e, "etc/group").kind, Kind::File(d) if String::from_utf8_lossy(d).contains("nonroot:x:65532:"))
    );
    assert!(
        matches!(&find(&e, "etc/nsswitch.conf").kind, Kind::File(d) if String::from_utf8_lossy(d).contains("hosts: files dns"))
    );
    find(&e, "etc/ssl/certs/ca-certificates.crt");
    let home = find(&e, "home/nonroot");
    assert_eq!(
        (home.uid, home.gid, home.kind.clone()),
        (65532, 65532, Kind::Dir)
    );
    assert_eq!(find(&e, "tmp").mode, 0o1777);
    // Nothing else: no shell, no package manager, no stray library.
    let files: Vec<_> = e
        .iter()
        .filter(|x| matches!(x.kind, Kind::File(_)))
        .map(|x| x.path.as_str())
        .collect();
    assert_eq!(files.len(), 7, "{files:?}");
}

#[test]
fn parents_come_before_children_and_every_parent_exists() {
    let e = entries(&IMAGES[1], parts()).unwrap();
    for (i, x) in e.iter().enumerate() {
        if let Some(parent) = Path::new(&x.path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            let parent = parent.to_string_lossy();
            let at = e
                .iter()
                .position(|y| y.path == parent)
                .unwrap_or_else(|| panic!("no {parent}"));
            assert!(at < i, "{parent} after {}", x.path);
            assert_eq!(e[at].kind, Kind::Dir);
        }
    }
}

#[test]
fn relative_library_paths_are_refused() {
    let mut p = parts();
    p.libraries.push(("libc.so.6".into(), vec![]));
    assert!(matches!(
        entries(&IMAGES[0], p),
        Err(RootfsError::Relative(_))
    ));
}
