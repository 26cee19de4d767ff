//! Criterion benches of the guide's crypto operations per mode (same definitions as
//! `nano-bench crypto`): keygen, key exchange, sign/verify 1 KiB, AEAD seal 1 KiB, envelope seal
//! and open of 1 KiB, and a 64-signature batch verification; and sessions: handshake
//! (initiate + respond against the signed prekeys) and steady-state encrypt and decrypt of
//! 1 KiB in a conversation that changes direction every 64 messages (as `nano-bench crypto`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nano_crypto::sign::SigContext;
use nano_crypto::{
    AeadId, AeadKey, CryptoMode, Identity, KemKeyPair, OsRng, SigningKeyPair, SymmetricKey,
    VerificationTask, open, seal,
};

const KIB: [u8; 1024] = [0x5a; 1024];

fn crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");
    for mode in CryptoMode::ALL {
        g.bench_function(BenchmarkId::new("keygen", mode), |b| {
            b.iter(|| {
                (
                    KemKeyPair::generate(mode, &mut OsRng).unwrap(),
                    SigningKeyPair::generate(mode, &mut OsRng).unwrap(),
                )
            })
        });
        let kem = KemKeyPair::generate(mode, &mut OsRng).unwrap();
        let pk = kem.public_key();
        g.bench_function(BenchmarkId::new("key_exchange", mode), |b| {
            b.iter(|| {
                let (ct, _) = pk.encapsulate(&mut OsRng).unwrap();
                kem.decapsulate(&ct).unwrap()
            })
        });
        let sk = SigningKeyPair::generate(mode, &mut OsRng).unwrap();
        g.bench_function(BenchmarkId::new("sign_1k", mode), |b| {
            b.iter(|| {
                sk.sign(SigContext::Envelope, black_box(&KIB), &mut OsRng)
                    .unwrap()
            })
        });
        let sig = sk.sign(SigContext::Envelope, &KIB, &mut OsRng).unwrap();
        let vk = sk.verifying_key();
        g.bench_function(BenchmarkId::new("verify_1k", mode), |b| {
            b.iter(|| {
                vk.verify(SigContext::Envelope, black_box(&KIB), &sig)
                    .unwrap()
            })
        });
        let tasks: Vec<_> = (0..64)
            .map(|i| VerificationTask::new(i, &vk, SigContext::Envelope, &KIB, &sig).unwrap())
            .collect();
        g.throughput(Throughput::Elements(64));
        g.bench_function(BenchmarkId::new("batch_verify_64", mode), |b| {
            b.iter(|| nano_crypto::batch::verify_all(black_box(&tasks)))
        });
        g.throughput(Throughput::Elements(1));
        let alice = Identity::generate(mode, &mut OsRng).unwrap();
        let bob = Identity::generate(mode, &mut OsRng).unwrap();
        g.bench_function(BenchmarkId::new("envelope_seal_1k", mode), |b| {
            b.iter(|| seal(&alice, bob.public_bundle(), &KIB, mode, AeadId::Aes256Gcm).unwrap())
        });
        let env = seal(&alice, bob.public_bundle(), &KIB, mode, AeadId::Aes256Gcm).unwrap();
        g.bench_function(BenchmarkId::new("envelope_open_1k", mode), |b| {
            b.iter(|| open(&bob, alice.public_bundle(), black_box(&env)).unwrap())
        });
    }
    for id in AeadId::ALL {
        let key = AeadKey::new(id, &SymmetricKey::new([7; 32])).unwrap();
        g.throughput(Throughput::Bytes(1024));
        g.bench_function(BenchmarkId::new("symmetric_seal_1k", id), |b| {
            b.iter(|| key.seal(&[0; 12], b"", black_box(&KIB)).unwrap())
        });
    }
    g.finish();
}

const BURST: u64 = 64;

fn sessions(c: &mut Criterion) {
    use nano_crypto::session::{
        OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session, SignedPrekeySecrets, session_rng,
    };
    let mut g = c.benchmark_group("session");
    for mode in CryptoMode::ALL {
        let mut rng = session_rng().unwrap();
        let alice = Identity::generate(mode, &mut rng).unwrap();
        let bob = Identity::generate(mode, &mut rng).unwrap();
        let signed = SignedPrekeySecrets::generate(mode, 1, &mut rng).unwrap();
        let bundle =
            PrekeyBundle::new(signed.certify(&bob, None, &mut rng).unwrap(), None).unwrap();
        let mut prekeys = PrekeySecrets::new(signed, OneTimePrekeys::empty(mode)).unwrap();
        let aead = nano_crypto::CryptoAcceleration::detect().preferred_aead();
        let mut pair = |rng: &mut nano_crypto::session::SessionRng| {
            let (a, hs) =
                Session::initiate(&alice, bob.public_bundle(), &bundle, aead, &KIB, rng).unwrap();
            let b = Session::respond(&bob, &mut prekeys, alice.public_bundle(), &hs, rng).unwrap();
            (a, b.session)
        };
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("handshake", mode), |b| {
            b.iter(|| pair(&mut rng))
        });
        let (mut a, mut b) = pair(&mut rng);
        let mut from_a = true;
        let mut burst = |enc_time: &mut std::time::Duration, dec_time: &mut std::time::Duration| {
            let (s, r) = if from_a {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let t = std::time::Instant::now();
            let msgs: Vec<_> = (0..BURST)
                .map(|_| s.encrypt(&KIB, &mut rng).unwrap())
                .collect();
            *enc_time += t.elapsed();
            let t = std::time::Instant::now();
            for m in &msgs {
                black_box(r.decrypt(m, &mut rng).unwrap());
            }
            *dec_time += t.elapsed();
            from_a = !from_a;
        };
        g.throughput(Throughput::Elements(BURST));
        // Each iteration is one burst; the time reported is encrypt's (resp. decrypt's) share.
        g.bench_function(BenchmarkId::new("encrypt_1k_x64", mode), |bch| {
            bch.iter_custom(|iters| {
                let (mut e, mut d) = Default::default();
                for _ in 0..iters {
                    burst(&mut e, &mut d);
                }
                e
            })
        });
        g.bench_function(BenchmarkId::new("decrypt_1k_x64", mode), |bch| {
            bch.iter_custom(|iters| {
                let (mut e, mut d) = Default::default();
                for _ in 0..iters {
                    burst(&mut e, &mut d);
                }
                d
            })
        });
    }
    g.finish();
}

criterion_group!(benches, crypto, sessions);
criterion_main!(benches);
