//! `nano-bench sizes`: what each mode adds to a message on the wire. For each plaintext size it
//! seals a real envelope and encodes the real `send_message` frame, in JSON (the envelope in
//! base64) and in the binary encoding, and prints the bytes and the overhead over the plaintext.
//! Session rows give a steady-state message's overhead and the average over a 100-message
//! conversation with the prekey bundle and the handshake included (`sessions.rs`).

use nano_crypto::{AeadId, CryptoMode, Identity, OsRng};
use nano_proto::{ClientFrame, Username};

/// Arguments of `nano-bench sizes`.
#[derive(Debug, clap::Args)]
pub(crate) struct SizesArgs {
    /// Plaintext sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1024, 4096, 16384])]
    plaintext: Vec<usize>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Messages in the conversation the session averages are taken over.
const CONVERSATION: usize = 100;

/// One session row: a mode and plaintext size.
#[derive(Debug, serde::Serialize)]
struct SessionRow {
    steady_overhead_bytes: usize,
    /// `None` for an empty plaintext (no ratio to take).
    avg_overhead_pct_100: Option<f64>,
    /// As `avg_overhead_pct_100`, with every message in its binary `send_message` frame and
    /// the bundle in its binary `prekey_bundle` frame.
    frame_overhead_pct_100: Option<f64>,
    bundle_bytes: usize,
    handshake_bytes: usize,
}

/// Recipient (and bundle owner) named in the measured frames: as long as the load test's.
const FRAME_NAME: &str = "user_1000";

/// Bytes of the binary `send_message` frame carrying a `len`-byte payload, without `id`.
fn send_frame_len(mode: CryptoMode, len: usize) -> anyhow::Result<usize> {
    let frame = ClientFrame::SendMessage {
        recipient: Username::new(FRAME_NAME)?,
        message: nano_proto::Payload(vec![0; len]),
        crypto_mode: mode,
        id: None,
    };
    Ok(frame.to_binary()?.len())
}

/// Bytes of the binary `prekey_bundle` frame carrying a `len`-byte bundle.
fn bundle_frame_len(mode: CryptoMode, len: usize) -> anyhow::Result<usize> {
    let frame = nano_proto::RelayFrame::PrekeyBundle {
        username: Username::new(FRAME_NAME)?,
        crypto_mode: mode,
        bundle: nano_proto::Bytes(vec![0; len]),
    };
    Ok(frame.to_binary()?.len())
}

fn session_row(mode: CryptoMode, plaintext: usize) -> anyhow::Result<SessionRow> {
    let c = crate::sessions::conversation_bytes(mode, plaintext, CONVERSATION)?;
    // The largest after the handshake: a message that carries a KEM-ratchet chunk.
    let steady = c
        .messages
        .iter()
        .skip(1)
        .max()
        .copied()
        .unwrap_or(0)
        .saturating_sub(plaintext);
    let total: usize = c.bundle + c.messages.iter().sum::<usize>();
    let mut framed = bundle_frame_len(mode, c.bundle)?;
    for &m in &c.messages {
        framed += send_frame_len(mode, m)?;
    }
    let payload = (plaintext * CONVERSATION) as f64;
    let pct = |bytes: usize| (payload > 0.0).then(|| (bytes as f64 - payload) / payload * 100.0);
    Ok(SessionRow {
        steady_overhead_bytes: steady,
        avg_overhead_pct_100: pct(total),
        frame_overhead_pct_100: pct(framed),
        bundle_bytes: c.bundle,
        handshake_bytes: c.messages.first().copied().unwrap_or(0),
    })
}

/// One row: a mode and plaintext size, and what goes on the wire for it.
struct Row {
    mode: CryptoMode,
    plaintext: usize,
    envelope: usize,
    json: usize,
    binary: usize,
}

fn measure(mode: CryptoMode, plaintext: usize) -> anyhow::Result<Row> {
    let from = Identity::generate(mode, &mut OsRng)?;
    let to = Identity::generate(mode, &mut OsRng)?;
    let sealed = nano_crypto::seal(
        &from,
        to.public_bundle(),
        &vec![b'a'; plaintext],
        mode,
        AeadId::ChaCha20Poly1305,
    )?;
    let frame = ClientFrame::SendMessage {
        recipient: Username::new("user_1000")?,
        message: nano_proto::Payload(sealed.clone()),
        crypto_mode: mode,
        id: None,
    };
    Ok(Row {
        mode,
        plaintext,
        envelope: sealed.len(),
        json: frame.to_json()?.len(),
        binary: frame.to_binary()?.len(),
    })
}

fn overhead(bytes: usize, plaintext: usize) -> String {
    if plaintext == 0 {
        return "–".into();
    }
    let pct = (bytes as f64 - plaintext as f64) / plaintext as f64 * 100.0;
    format!("+{pct:.0} %")
}

/// Prints the tables (or one JSON object with `--json`).
pub(crate) fn run(args: &SizesArgs) -> anyhow::Result<()> {
    let mut sealed = serde_json::Map::new();
    let mut sessions = serde_json::Map::new();
    let mut sealed_rows = Vec::new();
    let mut session_rows = Vec::new();
    for mode in CryptoMode::ALL {
        let mut s_mode = serde_json::Map::new();
        let mut e_mode = serde_json::Map::new();
        for &n in &args.plaintext {
            let r = measure(mode, n)?;
            e_mode.insert(
                n.to_string(),
                serde_json::json!({
                    "envelope_bytes": r.envelope,
                    "json_frame_bytes": r.json,
                    "binary_frame_bytes": r.binary,
                }),
            );
            sealed_rows.push(r);
            let s = session_row(mode, n)?;
            s_mode.insert(n.to_string(), serde_json::to_value(&s)?);
            session_rows.push((mode, n, s));
        }
        sealed.insert(mode.as_str().into(), e_mode.into());
        sessions.insert(mode.as_str().into(), s_mode.into());
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "session": sessions, "sealed": sealed })
        );
        return Ok(());
    }
    println!(
        "| mode | plaintext | envelope | envelope overhead | JSON frame | JSON overhead | binary frame | binary overhead |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &sealed_rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.mode,
            r.plaintext,
            r.envelope,
            overhead(r.envelope, r.plaintext),
            r.json,
            overhead(r.json, r.plaintext),
            r.binary,
            overhead(r.binary, r.plaintext),
        );
    }
    println!(
        "\nSessions: steady-state message, and the average over a {CONVERSATION}-message \
         conversation (direction changing every {} messages) with the prekey bundle and the \
         handshake included",
        crate::sessions::SIZE_BURST
    );
    println!(
        "| mode | plaintext | steady overhead | prekey bundle | handshake message | average overhead | average with binary frames |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let pct = |p: Option<f64>| p.map_or_else(|| "–".to_string(), |p| format!("+{p:.2} %"));
    for (mode, n, s) in &session_rows {
        println!(
            "| {mode} | {n} | {} B | {} B | {} B | {} | {} |",
            s.steady_overhead_bytes,
            s.bundle_bytes,
            s.handshake_bytes,
            pct(s.avg_overhead_pct_100),
            pct(s.frame_overhead_pct_100)
        );
    }
    Ok(())
}
