//! Watch topics on a Volley gateway: connects, subscribes and prints every frame it receives.
//!
//! ```text
//! cargo run --example watch -- ws://127.0.0.1:8080/ws?topics=news
//! ```
//! Type `sub a,b` / `unsub a` / `ping` on stdin to send client ops.
//!
//! It resumes by itself: when the gateway closes the connection to move it (1012 rebalance,
//! 1001 shutdown) or the connection is lost, it reconnects (to the same URL, which in Kubernetes
//! is the Service) and subscribes again with the last stream position it saw of each pattern
//! (`since`) and the epoch, so for topics with history nothing published meanwhile is missed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use volley_gateway::history::positions::Positions;

/// Reconnect attempts in a row before giving up.
const MAX_ATTEMPTS: u32 = 30;

/// The URL's `topics` (the first connection subscribes them) and the URL without them (later
/// connections subscribe with the resume op instead).
fn split_topics(url: &str) -> (Vec<String>, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (Vec::new(), url.to_owned());
    };
    let mut topics = Vec::new();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("topics=") {
            Some(list) => topics.extend(
                list.split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| t.replace("%3E", ">").replace("%2A", "*")),
            ),
            None => rest.push(pair),
        }
    }
    let bare = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (topics, bare)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws?topics=news".to_owned());
    let (topics, bare) = split_topics(&url);
    let mut positions = Positions::new(topics);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut first = true;
    let mut attempts = 0;
    loop {
        let target = if first { url.as_str() } else { bare.as_str() };
        let socket = match tokio_tungstenite::connect_async(target).await {
            Ok((socket, _)) => socket,
            Err(e) if !first && attempts < MAX_ATTEMPTS => {
                attempts += 1;
                eprintln!("reconnect failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempts.min(4))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        attempts = 0;
        eprintln!("connected to {target}");
        let (mut tx, mut rx) = socket.split();
        if !first && !positions.patterns().is_empty() {
            let op = positions.resume_op();
            eprintln!("resuming: {op}");
            tx.send(Message::Text(op.to_string().into())).await?;
        }
        first = false;
        let reconnect = loop {
            tokio::select! {
                frame = rx.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        positions.observe(&text);
                        println!("{text}");
                    }
                    Some(Ok(Message::Binary(bytes))) => println!("<{} binary bytes>", bytes.len()),
                    Some(Ok(Message::Close(close))) => {
                        eprintln!("closed: {close:?}");
                        // Moved by the gateway (or it went away): come back and resume.
                        break close.is_none_or(|c| {
                            matches!(c.code, CloseCode::Away | CloseCode::Restart | CloseCode::Again)
                        });
                    }
                    Some(Ok(_)) => {}
                    // A lost connection (a killed pod): resume elsewhere.
                    Some(Err(e)) => {
                        eprintln!("connection lost: {e}");
                        break true;
                    }
                    None => break true,
                },
                line = stdin.next_line(), if stdin_open => {
                    let Some(line) = line? else {
                        stdin_open = false;
                        continue;
                    };
                    let mut words = line.split_whitespace();
                    let op = match (words.next(), words.next()) {
                        (Some(op @ ("sub" | "unsub")), Some(topics)) => {
                            let topics: Vec<&str> = topics.split(',').collect();
                            for t in &topics {
                                if op == "sub" {
                                    positions.add((*t).to_owned());
                                } else {
                                    positions.remove(t);
                                }
                            }
                            serde_json::json!({ "op": op, "topics": topics })
                        }
                        (Some("ping"), _) => serde_json::json!({ "op": "ping" }),
                        _ => {
                            eprintln!("commands: sub a,b | unsub a | ping");
                            continue;
                        }
                    };
                    tx.send(Message::Text(op.to_string().into())).await?;
                }
            }
        };
        if !reconnect {
            return Ok(());
        }
    }
}
