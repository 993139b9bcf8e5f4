//! One-shot `GET` over HTTP/1.0 for the monitoring endpoints the tool reads (nats-server's
//! `/connz`, the gateways' `/metrics`): HTTP/1.0 so the body is neither chunked nor kept alive.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BenchError;

/// The body of a 200 answer to `GET path`; any other status is an error naming it.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, BenchError> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let ok = response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200");
    let body_at = response.windows(4).position(|w| w == b"\r\n\r\n");
    match (ok, body_at) {
        (true, Some(at)) => Ok(response.split_off(at + 4)),
        _ => {
            let head = String::from_utf8_lossy(&response[..response.len().min(80)]).into_owned();
            Err(BenchError::Protocol(format!(
                "{addr}{path} answered {head:?}"
            )))
        }
    }
}
