use super::*;

#[test]
fn stat_fields_after_a_tricky_command_name() {
    let text = "4242 (volley gw) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                517 83 0 0 20 0 3 0 12345 123456789 2000 18446744073709551615";
    assert_eq!(parse_stat(text).unwrap(), (517, 83));
    assert!(parse_stat("garbage").is_err());
}

#[test]
fn rss_from_status() {
    let text = "Name:\tvolley-gateway\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t4\n";
    assert_eq!(parse_rss(text).unwrap(), 5120 * 1024);
    assert!(parse_rss("Name: x\n").is_err());
}

#[test]
fn sockstat_tcp_line() {
    let text = "sockets: used 120\nTCP: inuse 40012 orphan 0 tw 3 alloc 40020 mem 1536\nUDP: inuse 1 mem 0\n";
    let s = parse_sockstat(text).unwrap();
    assert_eq!(s.tcp_inuse, 40012);
    assert_eq!(s.tcp_mem_pages, 1536);
    assert_eq!(s.tcp_mem_bytes(), 1536 * 4096);
}

#[test]
fn own_process_is_readable() {
    let pid = std::process::id();
    assert!(rss_bytes(pid).unwrap() > 0);
    assert!(cpu_seconds(pid, clock_ticks()).unwrap() >= 0.0);
    assert!(sockstat().is_ok());
}
