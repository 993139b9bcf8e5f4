use super::*;

#[test]
fn shed_splits_in_proportion() {
    assert_eq!(split_shed(10, &[100, 100]), vec![5, 5]);
    assert_eq!(split_shed(3, &[300, 100]), vec![2, 1]);
    assert_eq!(split_shed(4, &[1, 0, 9]), vec![0, 0, 4]);
}

#[test]
fn shed_never_asks_more_than_a_shard_has() {
    assert_eq!(split_shed(50, &[3, 4]), vec![3, 4]);
    assert_eq!(split_shed(0, &[3, 4]), vec![0, 0]);
    assert_eq!(split_shed(5, &[]), Vec::<usize>::new());
}

#[test]
fn shed_total_is_exact() {
    for count in 0..40 {
        let per_shard = [7, 13, 0, 5];
        let split = split_shed(count, &per_shard);
        assert_eq!(
            split.iter().sum::<usize>(),
            count.min(25),
            "{count}: {split:?}"
        );
        for (s, n) in split.iter().zip(per_shard) {
            assert!(*s <= n);
        }
    }
}

#[test]
fn rss_is_read_from_proc() {
    assert!(rss_bytes().unwrap() > 0);
}
