//! The data plane does not reach into the control plane: the shards, the session, both engines'
//! connection code, the hub, the topic index, the outbox, frames, envelopes and messages never
//! name `nats`, `control`, `admin`, `config` or `gateway`. What crosses the seam goes through
//! the hub (`Inbox` in, `InterestChange` out) or is handed in by `gateway.rs` at start.

use std::path::{Path, PathBuf};

const DATA_PLANE: &[&str] = &[
    "shard.rs",
    "shard",
    "session.rs",
    "session",
    "conn.rs",
    "engine_tokio.rs",
    "engine_tokio",
    "hub.rs",
    "topic_index.rs",
    "outbox.rs",
    "frame.rs",
    "envelope.rs",
    "message.rs",
];
const CONTROL_PLANE: &[&str] = &["nats", "control", "admin", "config", "gateway"];

/// Every `.rs` file at or under `path`, tests included (they are part of the module).
fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn the_data_plane_does_not_import_the_control_plane() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in DATA_PLANE {
        let path = src.join(entry);
        assert!(
            path.exists(),
            "{} is gone: update this list",
            path.display()
        );
        sources(&path, &mut files);
    }
    let mut crossings = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for module in CONTROL_PLANE {
                if code.contains(&format!("crate::{module}")) {
                    crossings.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(crossings.is_empty(), "{}", crossings.join("\n"));
}

#[test]
fn the_check_sees_a_crossing() {
    // The same scan over a line that crosses, so the test above cannot pass by matching nothing.
    let line = "use crate::nats::Router; // routed";
    let code = line.split("//").next().unwrap_or_default();
    assert!(
        CONTROL_PLANE
            .iter()
            .any(|m| code.contains(&format!("crate::{m}")))
    );
}
