//! Session rows of `nano-bench crypto`: handshake, and steady-state encrypt and decrypt of
//! 1 KiB.
//!
//! Definitions (per mode):
//! * `session_handshake` = `Session::initiate` + `Session::respond` against the signed prekeys
//!   (last-resort KEM prekey in hybrid and quantum, which costs the same KEM operation as a
//!   one-time prekey; no one-time prekey in classical), first message included. Median batch.
//! * `session_encrypt`, `session_decrypt` = one 1 KiB message, in a conversation whose direction
//!   changes every [`BURST`] messages, so the figure carries its share of the DH ratchet steps
//!   and of the KEM ratchet (key generation, encapsulation, decapsulation). Amortized: all
//!   messages over all time spent in the calls, not a median batch (a median would leave out the
//!   batches that pay for a ratchet step).

use std::time::{Duration, Instant};

use nano_crypto::session::{
    OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session, SessionRng, SignedPrekeySecrets,
    session_rng,
};
use nano_crypto::{AeadId, CryptoMode, Identity};

use crate::crypto::KIB;
use crate::measure::{self, Budget};
use nano_proto::frames::MAX_PREKEYS_PER_UPLOAD;

/// Messages each way before the direction changes.
pub(crate) const BURST: usize = 64;

/// Two people who can start sessions in `mode` (the responder's prekeys, no one-time prekey).
pub(crate) struct People {
    pub(crate) alice: Identity,
    pub(crate) bob: Identity,
    pub(crate) bob_prekeys: PrekeySecrets,
    pub(crate) bundle: PrekeyBundle,
    pub(crate) rng: SessionRng,
}

impl People {
    pub(crate) fn new(mode: CryptoMode) -> anyhow::Result<Self> {
        let mut rng = session_rng()?;
        let alice = Identity::generate(mode, &mut rng)?;
        let bob = Identity::generate(mode, &mut rng)?;
        let signed = SignedPrekeySecrets::generate(mode, 1, &mut rng)?;
        let bundle = PrekeyBundle::new(signed.certify(&bob, None, &mut rng)?, None)?;
        let bob_prekeys = PrekeySecrets::new(signed, OneTimePrekeys::empty(mode))?;
        Ok(Self {
            alice,
            bob,
            bob_prekeys,
            bundle,
            rng,
        })
    }

    /// A new session pair; the first message is `first`.
    pub(crate) fn pair(
        &mut self,
        aead: AeadId,
        first: &[u8],
    ) -> anyhow::Result<(Session, Session)> {
        let (a, hs) = Session::initiate(
            &self.alice,
            self.bob.public_bundle(),
            &self.bundle,
            aead,
            first,
            &mut self.rng,
        )?;
        let b = Session::respond(
            &self.bob,
            &mut self.bob_prekeys,
            self.alice.public_bundle(),
            &hs,
            &mut self.rng,
        )?;
        Ok((a, b.session))
    }

    /// A bundle that also carries a one-time prekey (what a relay serves while it has one):
    /// the first of a fresh batch of [`MAX_PREKEYS_PER_UPLOAD`] (ids from `id`), as a client
    /// uploads them, so its inclusion proof is as long as a served one's can be (5 hashes);
    /// their secrets are added to Bob's prekeys.
    pub(crate) fn bundle_with_one_time(&mut self, id: u32) -> anyhow::Result<PrekeyBundle> {
        let mode = self.bundle.mode();
        let count = u32::try_from(MAX_PREKEYS_PER_UPLOAD)?;
        let keys = OneTimePrekeys::generate(mode, id, count, &mut self.rng)?;
        let batch = keys.batch()?;
        self.bob_prekeys.add_one_time(keys);
        let signed = self
            .bob_prekeys
            .current()
            .ok_or_else(|| anyhow::anyhow!("no signed prekeys"))?;
        let record = signed.certify(&self.bob, Some(&batch), &mut self.rng)?;
        Ok(PrekeyBundle::new(record, batch.inclusions().next())?)
    }
}

/// Bytes of one conversation: the prekey bundle fetched, then `count` messages of `plaintext`
/// bytes (the first inside the handshake), the direction changing every [`SIZE_BURST`].
pub(crate) struct ConversationBytes {
    pub(crate) bundle: usize,
    pub(crate) messages: Vec<usize>,
}

/// Messages each way before the direction changes, in the size report's conversations.
pub(crate) const SIZE_BURST: usize = 10;

pub(crate) fn conversation_bytes(
    mode: CryptoMode,
    plaintext: usize,
    count: usize,
) -> anyhow::Result<ConversationBytes> {
    let mut p = People::new(mode)?;
    let bundle = p.bundle_with_one_time(1)?;
    let body = vec![b'a'; plaintext];
    let (mut a, hs) = Session::initiate(
        &p.alice,
        p.bob.public_bundle(),
        &bundle,
        AeadId::ChaCha20Poly1305,
        &body,
        &mut p.rng,
    )?;
    let mut b = Session::respond(
        &p.bob,
        &mut p.bob_prekeys,
        p.alice.public_bundle(),
        &hs,
        &mut p.rng,
    )?
    .session;
    let mut messages = vec![hs.len()];
    for i in 1..count {
        let from_a = (i / SIZE_BURST).is_multiple_of(2);
        let (s, r) = if from_a {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let m = s.encrypt(&body, &mut p.rng)?;
        r.decrypt(&m, &mut p.rng)?;
        messages.push(m.len());
    }
    Ok(ConversationBytes {
        bundle: bundle.to_bytes().len(),
        messages,
    })
}

/// Handshakes per second (median batch).
pub(crate) fn handshake_rate(
    mode: CryptoMode,
    aead: AeadId,
    budget: Budget,
) -> anyhow::Result<f64> {
    let mut p = People::new(mode)?;
    Ok(measure::ops_per_sec(budget, || {
        (u64::from(p.pair(aead, &KIB).is_ok()), ())
    }))
}

/// Amortized steady-state (encrypt, decrypt) messages per second.
pub(crate) fn message_rates(
    mode: CryptoMode,
    aead: AeadId,
    budget: Budget,
) -> anyhow::Result<(f64, f64)> {
    let mut p = People::new(mode)?;
    let (mut a, mut b) = p.pair(aead, b"hello")?;
    let mut rng = session_rng()?;
    let mut burst = |from_a: bool, enc: &mut Duration, dec: &mut Duration| -> anyhow::Result<()> {
        let (s, r) = if from_a {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let t = Instant::now();
        let msgs = (0..BURST)
            .map(|_| s.encrypt(&KIB, &mut rng))
            .collect::<Result<Vec<_>, _>>()?;
        *enc += t.elapsed();
        let t = Instant::now();
        for m in &msgs {
            r.decrypt(m, &mut rng)?;
        }
        *dec += t.elapsed();
        Ok(())
    };
    let (mut enc, mut dec) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let mut from_a = true;
    while start.elapsed() < budget.warmup {
        burst(from_a, &mut enc, &mut dec)?;
        from_a = !from_a;
    }
    let (mut enc, mut dec, mut n) = (Duration::ZERO, Duration::ZERO, 0u64);
    let start = Instant::now();
    while start.elapsed() < budget.total {
        burst(from_a, &mut enc, &mut dec)?;
        from_a = !from_a;
        n += BURST as u64;
    }
    Ok((n as f64 / enc.as_secs_f64(), n as f64 / dec.as_secs_f64()))
}

/// The three session rows of one mode: on one core, or summed over one thread per core.
pub(crate) fn rows(
    mode: CryptoMode,
    aead: AeadId,
    budget: Budget,
    all_cores: bool,
) -> anyhow::Result<[(&'static str, f64); 3]> {
    let one = || -> anyhow::Result<[f64; 3]> {
        let h = handshake_rate(mode, aead, budget)?;
        let (e, d) = message_rates(mode, aead, budget)?;
        Ok([h, e, d])
    };
    let rates = if all_cores {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = std::thread::scope(|s| {
            let hs: Vec<_> = (0..cores).map(|_| s.spawn(one)).collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("bench thread panicked"))?
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        per.iter().fold([0.0; 3], |acc, r| {
            [acc[0] + r[0], acc[1] + r[1], acc[2] + r[2]]
        })
    } else {
        one()?
    };
    Ok([
        ("session_handshake", rates[0]),
        ("session_encrypt", rates[1]),
        ("session_decrypt", rates[2]),
    ])
}
