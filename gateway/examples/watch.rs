//! Watch topics on a Volley gateway: connects, subscribes and prints every frame it receives.
//!
//! ```text
//! cargo run --example watch -- ws://127.0.0.1:8080/ws?topics=news
//! ```
//! Type `sub a,b` / `unsub a` / `ping` on stdin to send client ops.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws?topics=news".to_owned());
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    eprintln!("connected to {url}");
    let (mut tx, mut rx) = socket.split();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => println!("{text}"),
                Some(Ok(Message::Binary(bytes))) => println!("<{} binary bytes>", bytes.len()),
                Some(Ok(Message::Close(close))) => {
                    eprintln!("closed: {close:?}");
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
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
    }
}
