//! Trust on first use: contacts' fingerprints are pinned the first time they are seen; a changed
//! key is refused until the user trusts it again. Also the bounded set of message ids already
//! shown, so a message is shown once across runs.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::Hash;

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

    /// The pinned contacts other than `name` whose names look like it: the same name but for
    /// case, or the same UTS #39 skeleton ([`nano_proto::Username::skeleton`]). A relay refuses
    /// to register such a pair, so one found here came from elsewhere (an older relay, another
    /// relay with the same home) and the user is warned before trusting it.
    pub fn look_alikes(&self, name: &str) -> Vec<String> {
        let Ok(wanted) = nano_proto::Username::new(name) else {
            return Vec::new();
        };
        let skeleton = wanted.skeleton();
        self.contacts
            .keys()
            .filter(|other| other.as_str() != name)
            .filter(|other| {
                nano_proto::Username::new(other)
                    .is_ok_and(|o| o == wanted || o.skeleton() == skeleton)
            })
            .cloned()
            .collect()
    }

    /// Pins `fingerprint` for `name`, replacing any earlier pin.
    pub fn trust(&mut self, name: &str, fingerprint: &str) {
        self.contacts.insert(
            name.to_owned(),
            Contact {
                fingerprint: fingerprint.to_owned(),
                pinned_at_ms: nano_proto::now_ms(),
            },
        );
    }
}

/// The most recent ids, oldest forgotten first, at most [`MAX_SEEN`]: what was shown (kept
/// in the home across runs) and, in the connection, what was received and acknowledged.
#[derive(Debug, Clone)]
pub struct BoundedSet<T: Eq + Hash + Clone> {
    order: VecDeque<T>,
    index: HashSet<T>,
}

/// Message ids already shown.
pub type Seen = BoundedSet<String>;

/// The stored form: the ids, oldest first.
#[derive(Serialize, Deserialize)]
struct StoredIds<T> {
    ids: VecDeque<T>,
}

impl<T: Eq + Hash + Clone> Default for BoundedSet<T> {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            index: HashSet::new(),
        }
    }
}

impl<T: Eq + Hash + Clone> BoundedSet<T> {
    /// Whether `id` is remembered.
    pub fn contains<Q: ?Sized + Hash + Eq>(&self, id: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.index.contains(id)
    }

    /// Remembers `id`; returns false if it was already there.
    pub fn insert<Q: ?Sized + Hash + Eq + ToOwned<Owned = T>>(&mut self, id: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        if self.contains(id) {
            return false;
        }
        self.order.push_back(id.to_owned());
        self.index.insert(id.to_owned());
        while self.order.len() > MAX_SEEN {
            if let Some(old) = self.order.pop_front() {
                self.index.remove::<T>(&old);
            }
        }
        true
    }
}

impl<T: Eq + Hash + Clone + Serialize> Serialize for BoundedSet<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredIds {
            ids: self.order.clone(),
        }
        .serialize(s)
    }
}

impl<'de, T: Eq + Hash + Clone + Deserialize<'de>> Deserialize<'de> for BoundedSet<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = StoredIds::<T>::deserialize(d)?;
        let mut set = Self::default();
        for id in &stored.ids {
            set.insert(id);
        }
        Ok(set)
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
        let back: Seen = serde_json::from_str(&json).unwrap();
        assert!(back.contains(&(MAX_SEEN + 1).to_string()));
    }
}

#[cfg(test)]
mod look_alike_tests {
    use super::Contacts;

    #[test]
    fn a_look_alike_contact_is_named() {
        let mut c = Contacts::default();
        c.trust("alice", "aa");
        c.trust("bob", "bb");
        c.trust("Alice", "cc");
        assert_eq!(c.look_alikes("a1ice"), vec!["Alice", "alice"]);
        assert_eq!(c.look_alikes("alice"), vec!["Alice"]);
        assert!(c.look_alikes("carol").is_empty());
        assert!(c.look_alikes("not a name").is_empty());
    }
}
