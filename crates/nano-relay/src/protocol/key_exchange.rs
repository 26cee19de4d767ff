//! `key_exchange` frames: an offer of the relay's signed ephemeral KEM key
//! ([`crate::crypto::kex`]), and its completion, on the connection it was offered on.
//!
//! The performance guide's key-exchange frame, kept as a probe (PROTOCOL.md §12): no channel
//! results and nothing is kept after completion. A connection holds at most [`MAX_OFFERS`].

use std::sync::Arc;

use nano_crypto::CryptoMode;
use nano_proto::{Bytes, RelayFrame};

use crate::error::RelayError;

use super::Session;

/// Key-exchange offers one session keeps for completion (one per mode).
const MAX_OFFERS: usize = 3;

impl Session {
    pub(super) async fn key_exchange(
        &mut self,
        mode: CryptoMode,
        key_id: Option<u64>,
        ciphertext: Option<Bytes>,
    ) -> Vec<RelayFrame> {
        match self.key_exchange_inner(mode, key_id, ciphertext).await {
            Ok(f) => vec![f],
            Err(e) => vec![self.err(&e, None)],
        }
    }

    pub(super) async fn key_exchange_inner(
        &mut self,
        mode: CryptoMode,
        key_id: Option<u64>,
        ciphertext: Option<Bytes>,
    ) -> Result<RelayFrame, RelayError> {
        self.check_mode(mode)?;
        let shared = Arc::clone(&self.shared);
        match (key_id, ciphertext) {
            (Some(id), Some(ct)) => {
                let offer = self
                    .offers
                    .get(&id)
                    .filter(|o| o.keypair.mode() == mode)
                    .cloned()
                    .ok_or_else(|| {
                        RelayError::Proto(nano_proto::ProtoError::InvalidField {
                            field: "key_id",
                            reason: "no key with this id was offered on this connection".into(),
                        })
                    })?;
                if nano_proto::now_ms() >= offer.expires_at_ms {
                    self.offers.remove(&id);
                    return Err(RelayError::KeyExpired);
                }
                // A ciphertext that fails leaves the offer in place; a completed one is spent.
                let frame = self
                    .shared
                    .crypto
                    .run(move || shared.kex.complete(&offer, ct.as_slice()))
                    .await??;
                self.offers.remove(&id);
                Ok(frame)
            }
            _ => {
                let offer = self
                    .shared
                    .crypto
                    .run(move || shared.kex.offer(mode))
                    .await??;
                if self.offers.len() >= MAX_OFFERS {
                    self.offers.retain(|_, o| o.keypair.mode() != mode);
                }
                if self.offers.len() >= MAX_OFFERS {
                    self.offers.clear();
                }
                let frame = offer.frame.clone();
                self.offers.insert(offer.key_id, offer);
                Ok(frame)
            }
        }
    }
}
