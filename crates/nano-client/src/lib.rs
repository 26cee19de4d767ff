//! Nano-Messenger client: an async SDK and the `nano-client` CLI.
//!
//! ```text
//! client      Client::connect / register / send (ModeChoice) / ack / read; bundle cache;
//!             Auto mode from measured RTT and CPU load; the TrustPolicy hook
//! config      ClientConfig: the relay's URL, the user, the pinned relay identity, TLS roots,
//!             the one-time prekey supply
//! connection  the WebSocket task: login, keep-alive, reconnect with backoff, resend of
//!             unanswered sends; pushed messages go to the inbox (a new sender's after its
//!             identity bundle)
//! incoming    Incoming, Received, Unverifiable: what the message stream yields
//! inbox       receive → triage → bundle fetch → batch verify / session open → dedup →
//!             Incoming stream; parked messages, notices (returns what to write, owns no socket)
//! triage      the inbox's decisions without I/O: what a pushed message is, what a failed
//!             bundle fetch means, what an opened envelope or session payload becomes
//!             (shown, left in the inbox, parked, lost, refused)
//! login       the relay's signed challenge checked against its pinned identity and the
//!             connection's TLS channel binding, before anything is signed
//! prekeys     the one-time prekey supply: generated, saved, uploaded; topped up when low
//! outbox      unanswered sends: resent after a reconnect, retried after `unavailable`,
//!             forgotten once their caller stops waiting
//! api         the relay's HTTP API (relay info, users, registration), pooled
//! tls         HTTPS/WSS trust: Mozilla roots, or the certificates of a relay CA file
//! keystore    the home directory: Argon2id + ChaCha20-Poly1305 keystore, profile, 0600 files
//! contacts    trust-on-first-use pins of contacts' fingerprints; ids already shown
//! session_send  which session a message goes out on: the current one, or a new one from
//!             the contact's prekey bundle (one first message per contact at a time;
//!             in an explicit mode claimed while the identity bundle is fetched)
//! sessions    the session core, free of I/O: encrypt, initiate from a prekey bundle, open
//! notices     session notices: telling a sender its message could not be read, acting on one
//! parked      session messages waiting for their session's handshake (delivered out of order)
//! identities  received messages waiting for their sender's identity bundle, asked for on the
//!             connection (`get_identity`) rather than over HTTP
//! store       PrekeyStore / SessionStore / Store (with its lock): MemoryStore, and FileStore
//!             (encrypted, atomic, locked across processes)
//! error       ClientError: one line each, saying what to do
//!
//! The `nano-client` binary: main.rs (arguments, commands) and cli/ (receive, text).
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
mod config;
mod connection;
pub mod contacts;
pub mod error;
mod identities;
mod inbox;
mod incoming;
pub mod keystore;
pub mod login;
mod notices;
mod outbox;
mod parked;
pub mod prekeys;
mod session_send;
pub mod sessions;
pub mod store;
pub mod tls;
mod triage;

pub use client::{
    Client, ClientConfig, Incoming, ModeChoice, Received, SendReceipt, TrustAll, TrustPolicy,
    Unverifiable,
};
pub use error::{ClientError, Result};
