//! Tests for the reconcile build step.

// Tests start from a default spec and change one field at a time: easier to read.
#![allow(clippy::field_reassign_with_default)]

use volley_crds::{AuthSpec, JwtSpec, NatsSpec, PushCluster, PushClusterSpec, SecretKeyRef};

use super::*;

fn stored(spec: PushClusterSpec) -> PushCluster {
    let mut pc = PushCluster::new("web", spec);
    pc.metadata.namespace = Some("apps".into());
    pc.metadata.uid = Some("uid-1".into());
    pc
}

fn opts() -> BuildOptions {
    BuildOptions {
        default_image: "example/gw:1".into(),
        ..Default::default()
    }
}

#[test]
fn children_are_named_labelled_and_owned() {
    let c = build(&stored(PushClusterSpec::default()), 3, &opts()).unwrap();
    let metas = [
        &c.service_account.metadata,
        &c.config_map.metadata,
        &c.deployment.metadata,
        &c.service.metadata,
        &c.pdb.as_ref().unwrap().metadata,
    ];
    for m in metas {
        assert_eq!(m.namespace.as_deref(), Some("apps"));
        let owner = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "PushCluster");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(m.labels.as_ref().unwrap()[CLUSTER_LABEL], "web");
    }
    assert_eq!(c.config_map.metadata.name.as_deref(), Some("web-config"));
    assert_eq!(c.deployment.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        selector_string("web"),
        "app.kubernetes.io/name=volley-gateway,volley.dev/cluster=web"
    );
}

#[test]
fn unstored_objects_are_refused() {
    let pc = PushCluster::new("web", PushClusterSpec::default());
    assert_eq!(build(&pc, 1, &opts()), Err(BuildError::NotStored));
}

#[test]
fn invalid_spec_is_a_spec_error() {
    let mut s = PushClusterSpec::default();
    s.gateway.drain_timeout = Some("forever".into());
    assert!(matches!(
        build(&stored(s), 1, &opts()),
        Err(BuildError::Spec(_))
    ));
}

#[test]
fn deployment_pod_contract() {
    let c = build(&stored(PushClusterSpec::default()), 3, &opts()).unwrap();
    let spec = c.deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.selector.match_labels, Some(selector_labels("web")));
    let tpl = spec.template;
    let pod_labels = tpl.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    for (k, v) in selector_labels("web") {
        assert_eq!(pod_labels[&k], v);
    }
    assert!(
        tpl.metadata
            .unwrap()
            .annotations
            .unwrap()
            .contains_key(CONFIG_HASH_ANNOTATION)
    );
    let pod = tpl.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("web"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    // Default drain 10s + preStop 5s + margin 10s.
    assert_eq!(pod.termination_grace_period_seconds, Some(25));
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let ctr = &pod.containers[0];
    assert_eq!(ctr.image.as_deref(), Some("example/gw:1"));
    assert_eq!(
        ctr.args.as_deref(),
        Some(
            &[
                "--config".to_string(),
                "/etc/volley/config/gateway.yaml".to_string()
            ][..]
        )
    );
    let env: Vec<_> = ctr
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "VOLLEY_CLUSTER"]);
    let pod_name = &ctr.env.as_ref().unwrap()[0];
    assert_eq!(
        pod_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
    let readiness = ctr
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    assert_eq!(readiness.port, IntOrString::String("admin".into()));
    let pre_stop = ctr.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, PRESTOP_SECONDS);
    assert!(pre_stop.exec.is_none());
    let sc = ctr.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".to_string()])
    );
    let ports: Vec<_> = ctr
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [("client".to_string(), 8080), ("admin".to_string(), 9090)]
    );
}

#[test]
fn grace_period_exceeds_drain_plus_prestop() {
    let mut s = PushClusterSpec::default();
    s.gateway.drain_timeout = Some("45s".into());
    let c = build(&stored(s), 1, &opts()).unwrap();
    let grace = c
        .deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .termination_grace_period_seconds;
    assert!(grace.unwrap() > 45 + PRESTOP_SECONDS);
}

#[test]
fn secrets_are_mounted_and_referenced() {
    let mut s = PushClusterSpec::default();
    s.image = Some("mine/gw:2".into());
    s.nats = Some(NatsSpec {
        url: "nats://nats:4222".into(),
        credentials_secret: Some("nats-creds".into()),
        subject_prefix: None,
    });
    s.gateway.api_key_ref = Some(SecretKeyRef {
        name: "api".into(),
        key: "key".into(),
    });
    s.gateway.auth = Some(AuthSpec {
        jwt: Some(JwtSpec {
            secret_ref: Some(SecretKeyRef {
                name: "jwt".into(),
                key: "hmac".into(),
            }),
            ..Default::default()
        }),
    });
    let c = build(&stored(s), 1, &opts()).unwrap();
    let pod = c.deployment.spec.unwrap().template.spec.unwrap();
    let ctr = &pod.containers[0];
    assert_eq!(ctr.image.as_deref(), Some("mine/gw:2"));
    let api = ctr
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "VOLLEY_API_KEY")
        .unwrap();
    let sel = api
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("api", "key"));
    let vols = pod.volumes.unwrap();
    let jwt = vols
        .iter()
        .find(|v| v.name == "jwt")
        .unwrap()
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(jwt.secret_name.as_deref(), Some("jwt"));
    assert_eq!(jwt.items.as_ref().unwrap()[0].key, "hmac");
    assert_eq!(jwt.items.as_ref().unwrap()[0].path, "secret");
    assert!(vols.iter().any(|v| v.name == "nats-creds"));
    let mounts: Vec<_> = ctr
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        ["/etc/volley/config", "/etc/volley/jwt", "/etc/volley/nats"]
    );
    let yaml = &c.config_map.data.unwrap()["gateway.yaml"];
    assert!(
        yaml.contains("secretFile: /etc/volley/jwt/secret"),
        "{yaml}"
    );
    assert!(yaml.contains("nats: nats://nats:4222"), "{yaml}");
}

#[test]
fn config_change_changes_the_pod_template_hash() {
    let hash = |s: PushClusterSpec| {
        build(&stored(s), 1, &opts())
            .unwrap()
            .deployment
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let a = hash(PushClusterSpec::default());
    let mut s = PushClusterSpec::default();
    s.gateway.flush_interval = Some("2ms".into());
    assert_ne!(a, hash(s));
    assert_eq!(a, hash(PushClusterSpec::default()));
}

#[test]
fn service_pdb_and_template_passthrough() {
    let mut s = PushClusterSpec::default();
    s.service.type_ = volley_crds::ServiceType::LoadBalancer;
    s.service.port = 443;
    s.service.annotations.insert("lb".into(), "x".into());
    s.template
        .node_selector
        .insert("pool".into(), "edge".into());
    s.template.annotations.insert("team".into(), "push".into());
    let c = build(&stored(s), 2, &opts()).unwrap();
    let svc = c.service.spec.unwrap();
    assert_eq!(svc.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(svc.ports.as_ref().unwrap()[0].port, 443);
    assert_eq!(
        svc.ports.as_ref().unwrap()[0].target_port,
        Some(IntOrString::String("client".into()))
    );
    assert_eq!(c.service.metadata.annotations.unwrap()["lb"], "x");
    let pdb = c.pdb.unwrap().spec.unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector.unwrap().match_labels.unwrap(),
        selector_labels("web")
    );
    let tpl = c.deployment.spec.unwrap().template;
    assert_eq!(tpl.spec.unwrap().node_selector.unwrap()["pool"], "edge");
    assert_eq!(tpl.metadata.unwrap().annotations.unwrap()["team"], "push");
}

#[test]
fn a_single_replica_gets_no_pdb() {
    // maxUnavailable 1 of 1 protects nothing; the controller prunes the PDB instead.
    assert!(
        build(&stored(PushClusterSpec::default()), 1, &opts())
            .unwrap()
            .pdb
            .is_none()
    );
    assert!(
        build(&stored(PushClusterSpec::default()), 0, &opts())
            .unwrap()
            .pdb
            .is_none()
    );
    assert!(
        build(&stored(PushClusterSpec::default()), 2, &opts())
            .unwrap()
            .pdb
            .is_some()
    );
}

#[test]
fn pods_carry_prometheus_scrape_annotations() {
    let c = build(&stored(PushClusterSpec::default()), 2, &opts()).unwrap();
    let a = c
        .deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(a["prometheus.io/scrape"], "true");
    assert_eq!(a["prometheus.io/port"], ADMIN_PORT.to_string());
    assert_eq!(a["prometheus.io/path"], "/metrics");
    // spec.template.annotations may override them.
    let mut s = PushClusterSpec::default();
    s.template
        .annotations
        .insert("prometheus.io/scrape".into(), "false".into());
    let c = build(&stored(s), 2, &opts()).unwrap();
    let a = c
        .deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(a["prometheus.io/scrape"], "false");
}

#[test]
fn gateway_pull_policy_and_secrets_come_from_the_options() {
    let plain = build(&stored(PushClusterSpec::default()), 2, &opts()).unwrap();
    let pod = plain.deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].image_pull_policy, None);
    assert_eq!(pod.image_pull_secrets, None);

    let o = BuildOptions {
        pull_policy: Some("Always".into()),
        pull_secrets: vec!["regcred".into(), "mirror".into()],
        ..opts()
    };
    let c = build(&stored(PushClusterSpec::default()), 2, &o).unwrap();
    let pod = c.deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    let names: Vec<_> = pod
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["regcred", "mirror"]);
}
