//! `volley-bench replay`: how long resuming clients take to get what they missed. Starts a
//! `nats-server -js` and one gateway with history on a topic, connects N clients, gives each a
//! position, disconnects them, stores M messages, then reconnects all N at once with
//! `?since=..&epoch=..` and measures, per client, the time from the upgrade request to the M-th
//! replayed message, plus the gateway's CPU over the whole replay.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::natsd::NatsServer;
use crate::server::Server;
use crate::{http, procfs, wire};

const TOPIC: &str = "bench.replay";

/// Arguments of `volley-bench replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volley-gateway binary.
    #[arg(long)]
    pub gateway: PathBuf,
    /// The nats-server program (started with -js).
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Resuming clients.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub clients: usize,
    /// Messages each client missed (and gets replayed).
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Runs (each with fresh processes).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The gateway's `history.replayTimeout` for the run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub replay_timeout: Duration,
    /// Deadline for every client to finish its replay.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
}

/// A connected client: its socket and the bytes read past the last frame.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr, target: &str) -> anyhow::Result<Conn> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(&wire::upgrade_request(&addr.to_string(), target))
            .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((status, head)) = wire::response_head(&buf) {
                ensure!(status == 101, "upgrade answered {status}");
                buf.drain(..head);
                return Ok(Conn { stream, buf });
            }
        }
    }

    /// The next text frame.
    async fn next_text(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while let Some(frame) = wire::parse_frame(&self.buf) {
                let payload = self.buf[frame.payload.clone()].to_vec();
                self.buf.drain(..frame.len);
                match frame.opcode {
                    wire::OP_TEXT => return Ok(payload),
                    wire::OP_CLOSE => bail!("closed by the gateway"),
                    _ => {}
                }
            }
            let n = self.stream.read(&mut chunk).await?;
            ensure!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

async fn wait_history(admin: std::net::SocketAddr) -> anyhow::Result<()> {
    for _ in 0..400 {
        let body = http::get(admin, "/metrics").await?;
        if String::from_utf8_lossy(&body)
            .lines()
            .any(|l| l.trim() == "volley_history_available 1")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("history never became available")
}

/// One run's figures.
#[derive(Debug)]
pub struct Outcome {
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub server_cpu_s: f64,
    pub replayed: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn run_once(a: &Args) -> anyhow::Result<Outcome> {
    let store = std::env::temp_dir().join(format!("volley-bench-js-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let nats = NatsServer::start_with(
        &a.nats_server,
        None,
        &[
            "-js".into(),
            "--store_dir".into(),
            store.display().to_string(),
        ],
    )
    .await?;
    let url = nats.url();
    // History sized for the run: every missed message kept and replayable, and a client queue
    // that holds a whole replay (the defaults keep 1,000 per topic and 512 KiB per replay).
    let keep = a.messages + 100;
    let replay_bytes = keep * a.size.max(1);
    let config = store.with_extension("yaml");
    std::fs::write(
        &config,
        format!(
            "maxPendingBytes: {}\nhistory:\n  topics: [{TOPIC}]\n  maxMessagesPerTopic: {keep}\n  \
             replayMaxMessages: {keep}\n  replayMaxBytes: {replay_bytes}\n  replayTimeout: {}\n",
            (4usize << 20).max(4 * replay_bytes),
            humantime::format_duration(a.replay_timeout)
        ),
    )?;
    let extra = [
        "--nats".to_string(),
        url.clone(),
        "--config".into(),
        config.display().to_string(),
    ];
    let env = [("POD_NAME", "bench-replay".to_string())];
    let gw = Server::spawn(&a.gateway, "epoll", &extra, &env, None).await?;
    wait_history(gw.admin).await?;

    // Every client subscribes and gets one message: its position.
    let mut conns = Vec::with_capacity(a.clients);
    for _ in 0..a.clients {
        conns.push(Conn::open(gw.client, &format!("/ws?topics={TOPIC}")).await?);
    }
    let mut epoch = String::new();
    for c in &mut conns {
        let reply: Value = serde_json::from_slice(&c.next_text().await?)?;
        epoch = reply["epoch"]
            .as_str()
            .context("epoch in the reply")?
            .to_owned();
    }
    let client = async_nats::connect(url.as_str()).await?;
    let js = async_nats::jetstream::new(client);
    let payload = bytes_of(a.size);
    // The history consumer starts with the first subscriber; give it a moment to exist.
    tokio::time::sleep(Duration::from_millis(500)).await;
    js.publish(format!("push.{TOPIC}"), payload.clone().into())
        .await?
        .await?;
    let mut since = 0;
    for c in &mut conns {
        let m: Value = serde_json::from_slice(&c.next_text().await?)?;
        since = m["seq"].as_u64().context("seq in the message")?;
    }
    drop(conns);
    // Missed while away, stored and acknowledged.
    let mut acks = Vec::with_capacity(a.messages);
    for _ in 0..a.messages {
        acks.push(
            js.publish(format!("push.{TOPIC}"), payload.clone().into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }

    let ticks = procfs::clock_ticks();
    let cpu_before = procfs::cpu_seconds(gw.pid, ticks)?;
    let started = Instant::now();
    let target = format!("/ws?topics={TOPIC}&since={since}&epoch={epoch}");
    let mut tasks = Vec::with_capacity(a.clients);
    for _ in 0..a.clients {
        let target = target.clone();
        let addr = gw.client;
        let messages = a.messages;
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let mut c = Conn::open(addr, &target).await?;
            let reply: Value = serde_json::from_slice(&c.next_text().await?)?;
            ensure!(reply["recovered"] == true, "not recovered: {reply}");
            for _ in 0..messages {
                c.next_text().await?;
            }
            anyhow::Ok((t0.elapsed(), reply["replayed"].as_u64().unwrap_or(0)))
        }));
    }
    let mut times = Vec::with_capacity(a.clients);
    let mut replayed = 0;
    for t in tasks {
        let (took, n) = tokio::time::timeout(a.deadline, t)
            .await
            .context("replay deadline")???;
        times.push(took);
        replayed += n;
    }
    let wall = started.elapsed();
    let server_cpu_s = procfs::cpu_seconds(gw.pid, ticks)? - cpu_before;
    times.sort();
    gw.stop().await;
    nats.stop().await;
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_file(&config);
    Ok(Outcome {
        wall,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        max: percentile(&times, 1.0),
        server_cpu_s,
        replayed,
    })
}

fn bytes_of(size: usize) -> Vec<u8> {
    // JSON string payload of the requested size.
    let mut v = vec![b'x'; size.max(2)];
    v[0] = b'"';
    let last = v.len() - 1;
    v[last] = b'"';
    v
}

/// Runs the replay benchmark and prints one table row per run.
pub async fn main(a: Args) -> anyhow::Result<()> {
    println!(
        "| run | clients | missed each | replayed total | all done s | per client p50 / p99 / max ms | srv CPU s | srv µs / replayed msg |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in 1..=a.runs {
        let o = run_once(&a).await?;
        println!(
            "| {run} | {} | {} | {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.2} | {:.2} |",
            a.clients,
            a.messages,
            o.replayed,
            o.wall.as_secs_f64(),
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3,
            o.max.as_secs_f64() * 1e3,
            o.server_cpu_s,
            o.server_cpu_s * 1e6 / (o.replayed.max(1) as f64),
        );
    }
    Ok(())
}
