//! SIGTERM sent the moment the binary prints its listening line (what a supervisor or a test
//! harness does) drains and exits 0: the handlers are installed before that line, so the signal
//! never meets the default action (which would kill the process).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_right_after_the_listening_line_drains_cleanly() {
    // The race needs the process descheduled between the line and the handlers: more rounds,
    // more chances on a loaded machine.
    for round in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_volley-gateway"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--shards",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("volley-gateway listening"), "{line:?}");
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("round {round}: no exit within 60s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "round {round}: {status}");
    }
}
