use std::io::{self, IoSlice, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{BATCH, Job, Ring};

/// A ring, or `None` (said on stderr) where this kernel or sandbox has no io_uring (e.g. a
/// container whose seccomp profile refuses `io_uring_setup`): there the reference's own tests
/// check the writev fallback instead.
fn ring(entries: u32) -> Option<Ring> {
    match Ring::new(entries) {
        Ok(ring) => Some(ring),
        Err(e) => {
            eprintln!("io_uring unavailable here ({e}): the ring's tests have nothing to test");
            None
        }
    }
}

/// A connected loopback pair: (our non-blocking end, the peer's blocking end).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (ours, theirs)
}

fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn one_submission_writes_each_job_to_its_socket() {
    let Some(mut ring) = ring(BATCH as u32) else {
        return;
    };
    assert!(ring.capacity() >= BATCH);
    let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    let data: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 10 + i as usize]).collect();
    let tail = b"-end".to_vec();
    // Job 0 sends two slices, the others one each.
    let slices = [
        IoSlice::new(&data[0]),
        IoSlice::new(&tail),
        IoSlice::new(&data[1]),
        IoSlice::new(&data[2]),
    ];
    let jobs = [
        Job {
            fd: pairs[0].0.as_raw_fd(),
            first: 0,
            len: 2,
        },
        Job {
            fd: pairs[1].0.as_raw_fd(),
            first: 2,
            len: 1,
        },
        Job {
            fd: pairs[2].0.as_raw_fd(),
            first: 3,
            len: 1,
        },
    ];
    let mut results = Vec::new();
    ring.writev_all(&jobs, &slices, &mut results).unwrap();
    let written: Vec<usize> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(written, [14, 11, 12]);
    assert_eq!(ring.enters(), 1);
    let mut pairs = pairs;
    assert_eq!(read_exactly(&mut pairs[0].1, 14), b"aaaaaaaaaa-end");
    assert_eq!(read_exactly(&mut pairs[1].1, 11), vec![b'b'; 11]);
    assert_eq!(read_exactly(&mut pairs[2].1, 12), vec![b'c'; 12]);
}

#[test]
fn a_full_socket_answers_would_block_and_others_still_go_out() {
    let Some(mut ring) = ring(8) else {
        return;
    };
    let (full, _peer_never_reads) = pair();
    let (open, mut reader) = pair();
    let big = vec![7u8; 1 << 20];
    let small = b"hello".to_vec();
    let mut results = Vec::new();
    // Fill `full` until the kernel says EAGAIN: a short write first, then WouldBlock.
    let mut saw_would_block = false;
    for _ in 0..1_000 {
        let slices = [IoSlice::new(&big), IoSlice::new(&small)];
        let jobs = [
            Job {
                fd: full.as_raw_fd(),
                first: 0,
                len: 1,
            },
            Job {
                fd: open.as_raw_fd(),
                first: 1,
                len: 1,
            },
        ];
        ring.writev_all(&jobs, &slices, &mut results).unwrap();
        assert_eq!(results[1].as_ref().unwrap(), &5);
        assert_eq!(read_exactly(&mut reader, 5), small);
        match &results[0] {
            Ok(n) => assert!(*n > 0 && *n <= big.len()),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                saw_would_block = true;
                break;
            }
        }
    }
    assert!(saw_would_block, "a socket nobody reads must fill up");
}

#[test]
fn a_bad_descriptor_fails_only_its_job() {
    let Some(mut ring) = ring(8) else {
        return;
    };
    let (ok, mut reader) = pair();
    let data = b"x".to_vec();
    let slices = [IoSlice::new(&data)];
    let jobs = [
        Job {
            fd: -1,
            first: 0,
            len: 1,
        },
        Job {
            fd: ok.as_raw_fd(),
            first: 0,
            len: 1,
        },
        Job {
            fd: ok.as_raw_fd(),
            first: 5,
            len: 1,
        },
    ];
    let mut results = Vec::new();
    ring.writev_all(&jobs, &slices, &mut results).unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().raw_os_error(),
        Some(9),
        "EBADF"
    );
    assert_eq!(results[1].as_ref().unwrap(), &1);
    assert_eq!(
        results[2].as_ref().unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(read_exactly(&mut reader, 1), data);
}

#[test]
fn more_jobs_than_the_ring_takes_is_an_error() {
    let Some(mut ring) = ring(2) else {
        return;
    };
    let jobs = vec![
        Job {
            fd: -1,
            first: 0,
            len: 0
        };
        ring.capacity() + 1
    ];
    let mut results = Vec::new();
    let err = ring.writev_all(&jobs, &[], &mut results).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(ring.enters(), 0);
}
