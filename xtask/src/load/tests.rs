use super::*;

#[test]
fn each_cluster_kind_has_its_command() {
    let a = Path::new("/t/volley-gateway-0.1.0.oci.tar");
    let ctr = Loader::parse("ctr", None, None).unwrap();
    assert_eq!(
        ctr.argv(a),
        [
            "ctr",
            "-n",
            "k8s.io",
            "images",
            "import",
            "/t/volley-gateway-0.1.0.oci.tar"
        ]
    );
    let k3s = Loader::parse("ctr", Some("k3s ctr"), None).unwrap();
    assert_eq!(k3s.argv(a)[..3], ["k3s", "ctr", "-n"]);
    assert_eq!(
        Loader::parse("kind", None, Some("dev")).unwrap().argv(a),
        [
            "kind",
            "load",
            "image-archive",
            "/t/volley-gateway-0.1.0.oci.tar",
            "--name",
            "dev"
        ]
    );
    assert_eq!(
        Loader::parse("k3d", None, None).unwrap().argv(a),
        ["k3d", "image", "import", "/t/volley-gateway-0.1.0.oci.tar"]
    );
    assert_eq!(
        Loader::parse("docker", None, None),
        Err(UnknownLoader("docker".into()))
    );
}
