//! A plain HTTP/1.1 GET to a relay the bench spawned (`http://127.0.0.1:PORT`, no TLS), for its
//! `/ready`. Independent of reqwest's TLS backend (which panics without a process-wide rustls
//! crypto provider once a dependency enables rustls without one).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most response bytes read.
const MAX_RESPONSE: u64 = 1 << 20;

/// `GET {api}{path}` within `timeout`: (status code, body), or `None` if the relay could not
/// be reached or answered something that is not HTTP.
pub(crate) async fn get(api: &str, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let host = api.strip_prefix("http://")?.trim_end_matches('/');
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.take(MAX_RESPONSE).read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}
