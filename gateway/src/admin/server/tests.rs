use super::*;

#[test]
fn the_cap_is_a_small_share_of_the_descriptor_table() {
    assert_eq!(connection_cap(None), MAX_CONNECTIONS);
    assert_eq!(connection_cap(Some(1_048_576)), MAX_CONNECTIONS);
    assert_eq!(connection_cap(Some(20_000)), MAX_CONNECTIONS);
    assert_eq!(connection_cap(Some(1024)), 64);
    assert_eq!(connection_cap(Some(10)), 1);
}

#[test]
fn reads_the_soft_open_files_limit() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max cpu time              unlimited            unlimited            seconds   \n\
                  Max open files            20000                524288               files     \n";
    assert_eq!(parse_open_files_limit(limits), Some(20_000));
    assert_eq!(parse_open_files_limit("nothing here"), None);
    assert_eq!(
        parse_open_files_limit("Max open files unlimited unlimited files"),
        None
    );
}

#[test]
fn drops_the_oldest_idle_connection_first() {
    assert_eq!(pick_victim([(5, true), (7, false), (6, false)]), Some(6));
    assert_eq!(pick_victim([(5, true), (3, true)]), Some(3));
    assert_eq!(pick_victim(std::iter::empty()), None);
}
