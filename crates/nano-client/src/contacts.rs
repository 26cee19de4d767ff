//! Trust on first use: contacts' fingerprints are pinned the first time they are seen; a changed
//! key is refused until the user trusts it again. Also the bounded set of message ids already
//! shown, so a message is shown once across runs.

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// Most message ids remembered.
pub const MAX_SEEN: usize = 10_000;

/// One pinned contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The pinned bundle fingerprint (hex).
    pub fingerprint: String,
    /// When it was pinned (ms since the epoch).
    pub pinned_at_ms: u64,
}

/// Pinned contacts by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    /// The contacts.
    pub contacts: BTreeMap<String, Contact>,
}

/// What a pin check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// First contact: now pinned.
    New,
    /// The pinned key.
    Known,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Contacts {
    /// Checks `name`'s current `fingerprint` against the pin, pinning it on first use.
    pub fn check(&mut self, name: &str, fingerprint: &str) -> Result<PinOutcome> {
        match self.contacts.get(name) {
            None => {
                self.trust(name, fingerprint);
                Ok(PinOutcome::New)
            }
            Some(c) if c.fingerprint == fingerprint => Ok(PinOutcome::Known),
            Some(c) => Err(ClientError::ContactKeyChanged {
                name: name.to_owned(),
                pinned: c.fingerprint.clone(),
                now: fingerprint.to_owned(),
            }),
        }
    }

    /// Pins `fingerprint` for `name`, replacing any earlier pin.
    pub fn trust(&mut self, name: &str, fingerprint: &str) {
        self.contacts.insert(
            name.to_owned(),
            Contact {
                fingerprint: fingerprint.to_owned(),
                pinned_at_ms: now_ms(),
            },
        );
    }
}

/// Message ids already shown, oldest first, at most [`MAX_SEEN`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seen {
    ids: VecDeque<String>,
    #[serde(skip)]
    index: HashSet<String>,
}

impl Seen {
    /// Whether `id` was shown before.
    pub fn contains(&mut self, id: &str) -> bool {
        if self.index.len() != self.ids.len() {
            self.index = self.ids.iter().cloned().collect();
        }
        self.index.contains(id)
    }

    /// Records `id`; returns false if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.contains(id) {
            return false;
        }
        self.ids.push_back(id.to_owned());
        self.index.insert(id.to_owned());
        while self.ids.len() > MAX_SEEN {
            if let Some(old) = self.ids.pop_front() {
                self.index.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_on_first_use_and_refuses_a_change_until_trusted() {
        let mut c = Contacts::default();
        assert_eq!(c.check("bob", "aa").unwrap(), PinOutcome::New);
        assert_eq!(c.check("bob", "aa").unwrap(), PinOutcome::Known);
        assert!(matches!(
            c.check("bob", "bb"),
            Err(ClientError::ContactKeyChanged { .. })
        ));
        c.trust("bob", "bb");
        assert_eq!(c.check("bob", "bb").unwrap(), PinOutcome::Known);
    }

    #[test]
    fn seen_is_bounded_and_survives_serialization() {
        let mut s = Seen::default();
        for i in 0..MAX_SEEN + 5 {
            assert!(s.insert(&i.to_string()));
        }
        assert!(!s.insert(&(MAX_SEEN + 4).to_string()));
        assert!(!s.contains("0"), "the oldest ids are forgotten");
        let json = serde_json::to_string(&s).unwrap();
        let mut back: Seen = serde_json::from_str(&json).unwrap();
        assert!(back.contains(&(MAX_SEEN + 1).to_string()));
    }
}
