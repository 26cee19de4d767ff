//! `nano-bench sizes`: what each mode adds to a message on the wire. For each plaintext size it
//! seals a real envelope and encodes the real `send_message` frame, in JSON (the envelope in
//! base64) and in the binary encoding, and prints the bytes and the overhead over the plaintext.

use nano_crypto::{AeadId, CryptoMode, Identity, OsRng};
use nano_proto::{ClientFrame, MessageId, Username};

/// Arguments of `nano-bench sizes`.
#[derive(Debug, clap::Args)]
pub(crate) struct SizesArgs {
    /// Plaintext sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1024, 4096, 16384])]
    plaintext: Vec<usize>,
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
        message: nano_proto::encode_message(&sealed),
        crypto_mode: mode,
        id: Some(MessageId([7; 16])),
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

/// Prints the table.
pub(crate) fn run(args: &SizesArgs) -> anyhow::Result<()> {
    println!(
        "| mode | plaintext | envelope | envelope overhead | JSON frame | JSON overhead | binary frame | binary overhead |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for mode in [
        CryptoMode::Classical,
        CryptoMode::Hybrid,
        CryptoMode::Quantum,
    ] {
        for &n in &args.plaintext {
            let r = measure(mode, n)?;
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
    }
    Ok(())
}
