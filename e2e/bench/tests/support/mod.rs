//! What the bench's end-to-end tests share: the gateway binary named by `VOLLEY_BENCH_GATEWAY`
//! (`scripts/test.sh` builds it just before and sets it), else the same gateway code in-process,
//! and running volley-bench for its JSON.

#![allow(dead_code)] // each test file uses its own part

use std::path::PathBuf;
use std::process::Command;

use volley_gateway::config::{Config, Options};
use volley_gateway::gateway::Gateway;

/// The gateway binary to run, named by `VOLLEY_BENCH_GATEWAY`; `None` runs the gateway code
/// in-process. Chosen explicitly, never guessed from what happens to lie in the target dir (a
/// binary there may be older than the code under test), and said on stderr either way.
pub fn gateway_binary() -> Option<PathBuf> {
    let Some(path) = std::env::var_os("VOLLEY_BENCH_GATEWAY").filter(|p| !p.is_empty()) else {
        eprintln!("gateway: in-process (set VOLLEY_BENCH_GATEWAY to run a built binary)");
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "VOLLEY_BENCH_GATEWAY={} is not a file",
        path.display()
    );
    eprintln!("gateway: the binary {}", path.display());
    Some(path)
}

/// A one-shard gateway on loopback ports in this process, with `options` on top.
pub fn in_process(rt: &tokio::runtime::Runtime, options: Options) -> Gateway {
    let options = Options {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        shards: Some(1),
        ..options
    };
    let config = Config::from_options(options).unwrap();
    rt.block_on(Gateway::start(config)).unwrap()
}

/// `--connect`/`--admin`/`--server-pid` for gateways running in this process.
pub fn connect_args(gateways: &[&Gateway]) -> Vec<String> {
    let list = |addr: fn(&Gateway) -> std::net::SocketAddr| {
        gateways
            .iter()
            .map(|g| addr(g).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        "--connect".into(),
        list(|g| g.client_addr()),
        "--admin".into(),
        list(|g| g.admin_addr()),
        "--server-pid".into(),
        std::process::id().to_string(),
    ]
}

/// Runs `volley-bench run` with the flags in `base` (split at whitespace) and `extra`, and
/// returns the JSON report it wrote.
pub fn bench(name: &str, base: &str, extra: &[String]) -> String {
    let out = std::env::temp_dir().join(format!("volley-bench-{name}-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_volley-bench"))
        .arg("run")
        .args(base.split_whitespace())
        .args(extra)
        .arg("--json")
        .arg(&out)
        .status()
        .expect("run volley-bench");
    assert!(status.success());
    let text = std::fs::read_to_string(&out).expect("report written");
    let _ = std::fs::remove_file(&out);
    text
}
