//! `nano-client receive`: what comes in, printed for a terminal (control characters escaped)
//! or as JSON lines, each message acknowledged once shown.

use nano_client::keystore::Home;
use nano_client::{ClientError, Incoming, Result};

use super::text::{printable, utc};
use crate::connect;

/// `nano-client receive`: prints each new message once (a line of JSON each with `json`) and
/// acknowledges it; stops at the end of the backlog unless `follow`. Returns whether every
/// message could be shown.
///
/// # Errors
/// Connecting, the home directory's files, the connection failing.
pub(crate) async fn receive(home: &Home, follow: bool, json: bool) -> Result<bool> {
    let (client, mut incoming) = connect(home).await?;
    let mut seen = home.seen()?;
    let mut clean = true;
    while let Some(item) = incoming.recv().await {
        match item {
            Incoming::UpToDate if !follow => break,
            Incoming::UpToDate | Incoming::Redelivered { .. } => {}
            Incoming::Message(m) => {
                let id = m.id.to_hex();
                if seen.insert(&id) {
                    let text = String::from_utf8_lossy(&m.plaintext);
                    if json {
                        let line = serde_json::json!({
                            "id": id,
                            "sender": m.sender,
                            "timestamp": m.timestamp_ms,
                            "sent_at": m.sent_at_ms,
                            "crypto_mode": m.crypto_mode.as_str(),
                            "fingerprint": m.sender_fingerprint.to_hex(),
                            "session": m.session,
                            "text": text,
                        });
                        println!("{line}");
                    } else {
                        println!(
                            "[{}] {} ({}): {}",
                            utc(m.timestamp_ms),
                            m.sender,
                            m.crypto_mode,
                            printable(&text)
                        );
                    }
                    home.save_seen(&seen)?;
                }
                client.ack(&[m.id]).await?;
            }
            Incoming::Unverifiable {
                id,
                sender,
                what,
                len,
            } => {
                // Test traffic: said for what it is, never shown as a message, then removed.
                let from = sender.as_deref().unwrap_or("an anonymous sender");
                eprintln!(
                    "nano-client: message {} from {from} ({len} bytes) is {what}; not shown",
                    id.to_hex()
                );
                client.ack(&[id]).await?;
            }
            // Shown before a crash, acknowledged too late: its key is used, its text was shown.
            Incoming::Rejected { id, .. } if seen.contains(&id.to_hex()) => {
                client.ack(&[id]).await?;
            }
            Incoming::Rejected { id, error, .. } => {
                clean = false;
                eprintln!("nano-client: {error}");
                // A message that can never be opened is removed; one from a contact whose key
                // changed stays until the key is trusted again.
                if matches!(
                    error,
                    ClientError::Rejected { .. } | ClientError::SessionUnknown { .. }
                ) {
                    client.ack(&[id]).await?;
                }
            }
            Incoming::SessionReset {
                id,
                peer,
                mode,
                lost,
            } => {
                clean = false;
                eprintln!(
                    "nano-client: {peer} could not read your {mode} message {} (their session \
                     was lost); your next message to them starts a new session",
                    lost.to_hex()
                );
                client.ack(&[id]).await?;
            }
        }
    }
    client.flush().await?;
    client.close().await;
    Ok(clean)
}
