use super::*;
use crate::rootfs::{Parts, entries};
use crate::spec::IMAGES;

fn sample() -> Vec<Entry> {
    entries(
        &IMAGES[0],
        Parts {
            binary: b"bin".to_vec(),
            libraries: vec![("/lib64/ld-linux-x86-64.so.2".into(), b"ld".to_vec())],
            ca_bundle: b"ca".to_vec(),
        },
    )
    .unwrap()
}

fn meta(epoch: Option<u64>) -> Meta {
    Meta {
        version: "9.8.7".into(),
        revision: "deadbeef".into(),
        arch: Arch::Amd64,
        epoch,
    }
}

#[test]
fn rfc3339_formats_unix_times() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_764_355_845), "2025-11-28T18:50:45Z");
}

#[test]
fn config_runs_the_fixed_path_as_nonroot_with_labels() {
    let layer = layer(&sample(), 0).unwrap();
    assert_ne!(layer.digest, layer.diff_id);
    let c = config(&IMAGES[0], &meta(Some(0)), &layer).unwrap();
    let cfg = c.config().clone().unwrap();
    assert_eq!(cfg.user().as_deref(), Some("65532:65532"));
    assert_eq!(
        cfg.entrypoint().clone().unwrap(),
        ["/usr/local/bin/volley-gateway"]
    );
    let labels = cfg.labels().clone().unwrap();
    assert_eq!(labels["org.opencontainers.image.version"], "9.8.7");
    assert_eq!(labels["org.opencontainers.image.revision"], "deadbeef");
    assert_eq!(c.rootfs().diff_ids(), std::slice::from_ref(&layer.diff_id));
    assert_eq!(c.created().as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(
        config(&IMAGES[0], &meta(None), &layer).unwrap().created(),
        &None
    );
}

#[test]
fn layer_tar_holds_the_entries_with_owners_and_modes() {
    let l = layer(&sample(), 7).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&l.gz[..]), &mut raw).unwrap();
    assert_eq!(sha256(&raw), l.diff_id);
    let mut a = tar::Archive::new(&raw[..]);
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(h.mtime().unwrap(), 7);
        if path == "home/nonroot/" {
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (65532, 65532));
        }
        if path == "usr/local/bin/volley-gateway" {
            assert_eq!(h.mode().unwrap(), 0o755);
            assert_eq!(h.uid().unwrap(), 0);
        }
        seen.push(path);
    }
    assert!(
        seen.contains(&"lib64/ld-linux-x86-64.so.2".to_string()),
        "{seen:?}"
    );
    assert!(seen.contains(&"etc/passwd".to_string()), "{seen:?}");
}
