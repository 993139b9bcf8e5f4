use super::*;

#[test]
fn names_paths_and_references_follow_the_version() {
    let g = Image::by_name("volley-gateway").unwrap();
    assert_eq!(g.binary_path(), "/usr/local/bin/volley-gateway");
    assert_eq!(g.archive_name("1.2.3"), "volley-gateway-1.2.3.oci.tar");
    assert_eq!(
        g.reference("1.2.3"),
        "ghcr.io/volley-dev/volley-gateway:1.2.3"
    );
    assert!(Image::by_name("volley-bench").is_none());
}

#[test]
fn labels_carry_source_version_and_revision() {
    let l = IMAGES[1].labels("1.2.3", "abc");
    assert_eq!(l["org.opencontainers.image.version"], "1.2.3");
    assert_eq!(l["org.opencontainers.image.revision"], "abc");
    assert_eq!(l["org.opencontainers.image.source"], SOURCE);
}
