//! `nano-client`: end-to-end encrypted messaging from a terminal.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand, ValueEnum};
use nano_client::contacts::{Contacts, PinOutcome};
use nano_client::keystore::{Home, Profile};
use nano_client::sessions::Sessions;
use nano_client::store::FileStore;
use nano_client::{Client, ClientConfig, ClientError, Incoming, ModeChoice, Result, TrustPolicy};
use nano_crypto::{CryptoMode, Fingerprint, Identity, OsRng};

mod cli;
use cli::receive::receive;
use cli::text::utc;

/// Send and receive end-to-end encrypted, quantum-resistant messages through a Nano-Messenger
/// relay. Start with `nano-client init`, then `register`, then `send` and `receive`.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Home directory holding your keys, contacts and settings (default: $NANO_HOME, else the
    /// platform data directory's nano-messenger).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Classical,
    Hybrid,
    Quantum,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SendMode {
    Auto,
    Classical,
    Hybrid,
    Quantum,
}

fn mode(m: Mode) -> CryptoMode {
    match m {
        Mode::Classical => CryptoMode::Classical,
        Mode::Hybrid => CryptoMode::Hybrid,
        Mode::Quantum => CryptoMode::Quantum,
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create your identity: keys for --crypto-mode and every stronger mode, sealed under a
    /// passphrase (prompted, or the first line of the 0600 file $NANO_PASSPHRASE_FILE, or
    /// $NANO_PASSPHRASE).
    Init {
        /// Your username on the relay ([A-Za-z0-9_.-], 1 to 64 characters).
        #[arg(long)]
        username: String,
        /// The weakest mode you accept; nobody can send you anything weaker.
        #[arg(long, value_enum, default_value = "hybrid")]
        crypto_mode: Mode,
        /// The relay's HTTP API, e.g. http://127.0.0.1:8080 or https://relay.example:8080.
        #[arg(long)]
        relay: String,
        /// A PEM file of the certificates an https:// relay's certificate must chain to: a
        /// private CA, or a development relay's DATA_DIR/tls-self-signed.crt. Without it,
        /// the Mozilla roots. Copied into the home.
        #[arg(long, value_name = "FILE")]
        relay_ca: Option<std::path::PathBuf>,
    },
    /// Claim your username on the relay and pin the relay's identity.
    Register,
    /// Send a message (TEXT, or standard input when TEXT is omitted or "-").
    Send {
        /// Who to send to.
        recipient: String,
        /// The message.
        text: Option<String>,
        /// The mode: auto picks one from the connection and this machine's load, never below
        /// anyone's minimum.
        #[arg(long, value_enum, default_value = "auto")]
        crypto_mode: SendMode,
        /// Send a stateless sealed envelope instead of a session message (what is sent anyway
        /// to a contact who has published no prekeys).
        #[arg(long)]
        sealed: bool,
    },
    /// Print the messages waiting for you, then remove them from the relay.
    Receive {
        /// Stay connected and print messages as they arrive (Ctrl-C to stop).
        #[arg(long)]
        follow: bool,
        /// One JSON object per line: id, sender, timestamp, sent_at, crypto_mode, fingerprint,
        /// session (whether it came on a session), text.
        #[arg(long)]
        json: bool,
    },
    /// Your contacts' pinned key fingerprints.
    Contacts {
        #[command(subcommand)]
        action: ContactsAction,
    },
    /// Your username, minimum mode, fingerprint and relay.
    Whoami,
}

#[derive(Debug, Subcommand)]
enum ContactsAction {
    /// List pinned contacts.
    List,
    /// Show one contact's pinned fingerprint and your sessions with them (per mode: epoch,
    /// messages since the last post-quantum refresh, when it started; needs the passphrase).
    Show {
        /// The contact.
        name: String,
    },
    /// Accept NAME's current key. Without --fingerprint, shows the key the relay serves and
    /// changes nothing: check it with NAME in person or on another channel first.
    Trust {
        /// The contact.
        name: String,
        /// The fingerprint NAME told you (64 hex digits; spaces allowed); it must equal the
        /// one the relay serves.
        #[arg(long, value_name = "HEX")]
        fingerprint: Option<String>,
    },
}

/// The passphrase from the file `$NANO_PASSPHRASE_FILE` names: its first line (the line end
/// is not part of it). The file must be readable by its owner only (mode 0600 or stricter),
/// like the keystore it unlocks.
fn passphrase_file(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| ClientError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ClientError::Invalid(format!(
            "{}: the passphrase file must be readable by its owner only (chmod 600)",
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let line = text.split(['\r', '\n']).next().unwrap_or_default();
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

fn passphrase(confirm: bool) -> Result<zeroize::Zeroizing<String>> {
    if let Some(path) = std::env::var_os("NANO_PASSPHRASE_FILE") {
        return passphrase_file(std::path::Path::new(&path));
    }
    if let Ok(p) = std::env::var("NANO_PASSPHRASE") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Invalid(
            "no passphrase: run in a terminal, or set NANO_PASSPHRASE_FILE (or NANO_PASSPHRASE)"
                .into(),
        ));
    }
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| ClientError::Invalid(format!("cannot read the passphrase: {e}")))
    };
    let p = read("Passphrase: ")?;
    if confirm && *read("Repeat passphrase: ")? != *p {
        return Err(ClientError::Invalid("the passphrases differ".into()));
    }
    if p.is_empty() {
        return Err(ClientError::Invalid(
            "the passphrase must not be empty".into(),
        ));
    }
    Ok(p)
}

/// Trust on first use backed by the home's contacts file.
struct Pins {
    home: Home,
    contacts: Mutex<Contacts>,
}

impl TrustPolicy for Pins {
    fn check(&self, name: &str, fp: &Fingerprint) -> Result<()> {
        let mut c = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        if c.check(name, &fp.to_hex())? == PinOutcome::New {
            eprintln!("pinned {name}'s key: {fp}");
            for other in c.look_alikes(name) {
                eprintln!(
                    "warning: the new contact {name} looks like your contact {other}: they are \
                     different people; check whom you are writing to"
                );
            }
            self.home.save_contacts(&c)?;
        }
        Ok(())
    }
}

fn load(home: &Home) -> Result<(Profile, Identity)> {
    let profile = home.profile()?;
    let identity = home.identity(passphrase(false)?.as_bytes())?;
    Ok((profile, identity))
}

async fn connect(home: &Home) -> Result<(Client, tokio::sync::mpsc::Receiver<Incoming>)> {
    let (profile, identity) = load(home)?;
    if !profile.registered {
        return Err(ClientError::Invalid(
            "not registered yet: run `nano-client register`".into(),
        ));
    }
    let pins = Arc::new(Pins {
        home: home.clone(),
        contacts: Mutex::new(home.contacts()?),
    });
    let store = Arc::new(state_store(home, &identity)?);
    let (client, incoming, _) =
        Client::connect_with_store(client_config(&profile), Arc::new(identity), pins, store)
            .await?;
    Ok((client, incoming))
}

/// The home's session state: encrypted files under `state/`.
fn state_store(home: &Home, identity: &Identity) -> Result<FileStore> {
    FileStore::new(&home.dir().join("state"), identity)
}

/// How to reach the relay, from the home's profile.
fn client_config(profile: &Profile) -> ClientConfig {
    ClientConfig {
        relay_url: profile.relay.clone(),
        username: profile.username.clone(),
        pinned_relay_id: profile.relay_id.clone(),
        relay_ca_pem: profile.relay_ca_pem.clone().map(String::into_bytes),
        publish_prekeys: true,
        one_time_prekeys: nano_client::prekeys::TOP_UP,
    }
}

async fn run(cli: Cli) -> Result<bool> {
    let home = Home::resolve(cli.home)?;
    match cli.command {
        Command::Init {
            username,
            crypto_mode,
            relay,
            relay_ca,
        } => {
            let username = nano_proto::Username::new(&username)?;
            let relay_ca_pem = relay_ca
                .map(|p| {
                    std::fs::read_to_string(&p).map_err(|e| ClientError::Io {
                        path: p.display().to_string(),
                        reason: e.to_string(),
                    })
                })
                .transpose()?;
            let tls = nano_client::tls::client_config(relay_ca_pem.as_deref().map(str::as_bytes))?;
            nano_client::api::Api::with_tls(&relay, &tls)?;
            if home.exists() {
                return Err(ClientError::HomeExists(home.dir().display().to_string()));
            }
            let pass = passphrase(true)?;
            let identity = Identity::generate(mode(crypto_mode), &mut OsRng)?;
            let profile = Profile {
                username: username.as_str().to_owned(),
                min_mode: mode(crypto_mode),
                relay,
                relay_id: None,
                relay_ca_pem,
                registered: false,
                fingerprint: identity.fingerprint().to_hex(),
            };
            home.create(&identity, &profile, pass.as_bytes())?;
            println!("created {} in {}", username.as_str(), home.dir().display());
            println!("fingerprint: {}", identity.fingerprint());
            println!("next: nano-client register");
        }
        Command::Register => {
            let (mut profile, identity) = load(&home)?;
            let info = Client::register_only(&client_config(&profile), &identity).await?;
            profile.relay_id = Some(info.relay_id.clone());
            profile.registered = true;
            home.save_profile(&profile)?;
            println!("registered {} on {}", profile.username, profile.relay);
            println!("relay identity pinned: {}", info.relay_id);
            // Prekeys, so contacts can start sessions while this user is offline.
            let pins = Arc::new(Pins {
                home: home.clone(),
                contacts: Mutex::new(home.contacts()?),
            });
            let store = Arc::new(state_store(&home, &identity)?);
            let (client, _incoming, _) = Client::connect_with_store(
                client_config(&profile),
                Arc::new(identity),
                pins,
                store,
            )
            .await?;
            client.publish_prekeys().await?;
            client.close().await;
            println!("published prekeys for sessions");
        }
        Command::Send {
            recipient,
            text,
            crypto_mode,
            sealed,
        } => {
            let text = match text.filter(|t| t != "-") {
                Some(t) => t,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s).map_err(|e| {
                        ClientError::Invalid(format!("cannot read standard input: {e}"))
                    })?;
                    s.trim_end_matches('\n').to_owned()
                }
            };
            let choice = match crypto_mode {
                SendMode::Auto => ModeChoice::Auto,
                SendMode::Classical => ModeChoice::Explicit(CryptoMode::Classical),
                SendMode::Hybrid => ModeChoice::Explicit(CryptoMode::Hybrid),
                SendMode::Quantum => ModeChoice::Explicit(CryptoMode::Quantum),
            };
            let (client, _incoming) = connect(&home).await?;
            let receipt = if sealed {
                client
                    .send_sealed(&recipient, text.as_bytes(), choice)
                    .await?
            } else {
                client.send(&recipient, text.as_bytes(), choice).await?
            };
            client.close().await;
            println!(
                "sent {} to {recipient} ({}, {}){}",
                receipt.id.to_hex(),
                receipt.mode,
                if receipt.session {
                    "session"
                } else {
                    "sealed envelope"
                },
                if receipt.duplicate {
                    ", already stored"
                } else {
                    ""
                }
            );
        }
        Command::Receive { follow, json } => return receive(&home, follow, json).await,
        Command::Contacts { action } => {
            let profile = home.profile()?;
            let mut contacts = home.contacts()?;
            match action {
                ContactsAction::List => {
                    if contacts.contacts.is_empty() {
                        println!(
                            "no contacts yet: they are pinned when you first send to or hear from them"
                        );
                    }
                    for (name, c) in &contacts.contacts {
                        println!("{name}  {}", c.fingerprint);
                    }
                }
                ContactsAction::Show { name } => {
                    let c = contacts.contacts.get(&name).ok_or_else(|| {
                        ClientError::Invalid(format!("{name} is not a contact yet"))
                    })?;
                    println!(
                        "{name}\nfingerprint: {}\npinned: {}",
                        c.fingerprint,
                        utc(c.pinned_at_ms)
                    );
                    let identity = home.identity(passphrase(false)?.as_bytes())?;
                    let sessions = Sessions::new(Arc::new(state_store(&home, &identity)?));
                    let info = sessions.info(&name)?;
                    if info.is_empty() {
                        println!("sessions: none yet (the next message starts one)");
                    }
                    for (i, s) in info.iter().enumerate() {
                        let role = if i > 0 && info[i - 1].mode == s.mode {
                            "previous"
                        } else {
                            "current"
                        };
                        println!(
                            "session {} ({role}): epoch {}, {} messages since the last \
                             post-quantum refresh, started {}",
                            s.mode,
                            s.epoch,
                            s.since_pq_refresh,
                            utc(s.started_ms)
                        );
                    }
                }
                ContactsAction::Trust { name, fingerprint } => {
                    let tls = nano_client::tls::client_config(
                        profile.relay_ca_pem.as_deref().map(str::as_bytes),
                    )?;
                    let api = nano_client::api::Api::with_tls(&profile.relay, &tls)?;
                    let info = api.relay_info().await?;
                    if let Some(pinned) = &profile.relay_id
                        && *pinned != info.relay_id
                    {
                        return Err(ClientError::RelayIdentityChanged {
                            pinned: pinned.clone(),
                            now: info.relay_id,
                        });
                    }
                    let bundle = api.bundle(&name).await?;
                    let served = bundle.fingerprint();
                    let Some(expected) = fingerprint else {
                        return Err(ClientError::Invalid(format!(
                            "the relay serves this key for {name}:\n  {served}\ncheck it with \
                             {name} on another channel, then run `nano-client contacts trust \
                             {name} --fingerprint {}`",
                            served.to_hex()
                        )));
                    };
                    let expected: String = expected
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                        .to_ascii_lowercase();
                    // Public values: an ordinary comparison.
                    if expected != served.to_hex() {
                        return Err(ClientError::Invalid(format!(
                            "the relay serves another key for {name} than the fingerprint you \
                             checked ({served}); nothing was trusted"
                        )));
                    }
                    contacts.trust(&name, &served.to_hex());
                    home.save_contacts(&contacts)?;
                    println!("trusted {name}: {served}");
                }
            }
        }
        Command::Whoami => {
            let p = home.profile()?;
            println!("username: {}", p.username);
            println!("minimum mode: {}", p.min_mode);
            println!("fingerprint: {}", p.fingerprint);
            println!("relay: {}", p.relay);
            match &p.relay_id {
                Some(id) => println!("relay identity: {id}"),
                None => println!("relay identity: not pinned yet (run `nano-client register`)"),
            }
            println!("home: {}", home.dir().display());
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nano-client: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nano-client: {e}");
            ExitCode::FAILURE
        }
    }
}
