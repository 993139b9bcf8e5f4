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
fn peak_rss_from_status() {
    let text =
        "Name:\tvolley-gateway\nVmPeak:\t  9000 kB\nVmHWM:\t    6144 kB\nVmRSS:\t    5120 kB\n";
    assert_eq!(parse_peak_rss(text).unwrap(), 6144 * 1024);
    assert!(parse_peak_rss("VmRSS:\t5120 kB\n").is_err());
}

#[test]
fn the_peak_of_this_process_resets_to_its_current_rss() {
    let pid = std::process::id();
    // Touch 64 MiB, let it go, then reset: the peak falls back to what is resident now.
    let big = vec![1u8; 64 << 20];
    assert!(big.iter().step_by(4096).all(|&b| b == 1));
    drop(big);
    let before = peak_rss_bytes(pid).unwrap();
    reset_peak_rss(pid).unwrap();
    let after = peak_rss_bytes(pid).unwrap();
    assert!(after < before, "{after} < {before}");
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

#[test]
fn work_in_user_mode_shows_in_the_user_part() {
    let pid = std::process::id();
    let ticks = clock_ticks();
    let (user0, _) = cpu_split(pid, ticks).unwrap();
    // Bounded in time: the machine may be loaded, so spin until the user time moved.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut x = 0u64;
    while cpu_split(pid, ticks).unwrap().0 < user0 + 0.05 && std::time::Instant::now() < deadline {
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
    let (user, system) = cpu_split(pid, ticks).unwrap();
    assert!(user >= user0 + 0.05, "user {user} s, before {user0} s");
    assert!(system >= 0.0);
}
