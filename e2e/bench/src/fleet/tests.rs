use super::*;

#[test]
fn labels_name_the_gateway_count_in_cluster_mode() {
    assert_eq!(label("epoll", 1, false), "epoll");
    assert_eq!(label("epoll", 3, true), "epoll x3");
    assert_eq!(label("epoll", 1, true), "epoll x1");
    assert_eq!(label("external", 3, true), "external x3");
}

#[test]
fn pids_are_counted_once() {
    assert_eq!(distinct([7, 7, 7]), vec![7]);
    assert_eq!(distinct([3, 1, 3, 2, 1]), vec![3, 1, 2]);
    assert!(distinct([]).is_empty());
}

#[test]
fn pod_names_differ() {
    assert_eq!(pod_name(0), "bench-gw-0");
    assert_ne!(pod_name(1), pod_name(2));
}

#[test]
fn cpu_used_between_samples() {
    let before = CpuSample {
        total: 1.0,
        user: 0.25,
        per_gateway: vec![0.25, 0.75],
        nats: Some(0.5),
    };
    let after = CpuSample {
        total: 3.0,
        user: 0.5,
        per_gateway: vec![1.25, 1.75],
        nats: Some(0.75),
    };
    let used = after.since(&before);
    assert_eq!(used.total, 2.0);
    assert_eq!(used.user, 0.25);
    assert_eq!(used.per_gateway, vec![1.0, 1.0]);
    assert_eq!(used.nats, Some(0.25));
    let standalone = CpuSample::default();
    assert_eq!(standalone.since(&standalone).nats, None);
}
