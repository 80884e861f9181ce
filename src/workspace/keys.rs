//! Access keys: a secret shown once that stands for a cookie-mode account, kept only as its
//! SHA-256 hash; at most one per account, a new one replacing (ending) the old.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::blocks::SharedStore;
use crate::session::address_key;

/// Random bytes in a key (shown as hex).
const KEY_BYTES: usize = 32;
/// Redeem attempts one client address may make per minute.
pub const REDEEMS_PER_MINUTE: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store that keeps them failed (its own message).
    #[error("the access key store failed: {0}")]
    Store(String),
}

/// Where key hashes are kept: one per identity.
pub trait KeyStore: Send {
    /// Makes `key_hash` the identity's one key, ending any previous one.
    fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), KeyError>;
    fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, KeyError>;
    fn has_access_key(&self, identity: &str) -> Result<bool, KeyError>;
}

/// Access keys: made here, their hashes kept in a [`KeyStore`].
pub struct AccessKeys {
    store: Mutex<Box<dyn KeyStore>>,
}

impl AccessKeys {
    /// Keys kept in the server's store (`DATA_DIR`'s file, or the Swarm's), or for the process's
    /// lifetime without one.
    pub fn open(store: Option<SharedStore>) -> Self {
        match store {
            Some(store) => AccessKeys::with_store(Box::new(StoredKeys(store))),
            None => AccessKeys::with_store(Box::<MemoryKeys>::default()),
        }
    }

    pub fn with_store(store: Box<dyn KeyStore>) -> Self {
        AccessKeys {
            store: Mutex::new(store),
        }
    }

    /// Makes a new key for `identity`, replacing its previous one; returns the key itself, which
    /// is kept nowhere.
    pub fn create(&self, identity: &str) -> Result<String, KeyError> {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let key = hex::encode(bytes);
        self.lock().set_access_key(identity, &hash(&key))?;
        Ok(key)
    }

    /// The identity a key stands for, if it is the current key of one.
    pub fn identity_for_key(&self, key: &str) -> Option<String> {
        self.lock()
            .identity_for_key(&hash(key))
            .unwrap_or_else(|e| {
                log::error!("{e}");
                None
            })
    }

    pub fn has_key(&self, identity: &str) -> bool {
        self.lock().has_access_key(identity).unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn KeyStore>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Key hashes in the store, beside the placements and blocks (its `access_keys` table, or Swarm
/// configs).
struct StoredKeys(SharedStore);

impl StoredKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn crate::pool::OperatorStore>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyStore for StoredKeys {
    fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), KeyError> {
        let result = self.lock().set_access_key(identity, key_hash);
        result.map_err(|e| KeyError::Store(e.to_string()))
    }

    fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, KeyError> {
        let result = self.lock().identity_for_key(key_hash);
        result.map_err(|e| KeyError::Store(e.to_string()))
    }

    fn has_access_key(&self, identity: &str) -> Result<bool, KeyError> {
        let result = self.lock().has_access_key(identity);
        result.map_err(|e| KeyError::Store(e.to_string()))
    }
}

/// Key hashes for the process's lifetime, when the server keeps no store (no `DATA_DIR`).
#[derive(Default)]
pub struct MemoryKeys {
    /// identity -> hex SHA-256 of its key.
    hashes: HashMap<String, String>,
}

impl KeyStore for MemoryKeys {
    fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), KeyError> {
        self.hashes.insert(identity.to_owned(), key_hash.to_owned());
        Ok(())
    }

    fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, KeyError> {
        let found = self
            .hashes
            .iter()
            .find(|(_, h)| subtle::ConstantTimeEq::ct_eq(h.as_bytes(), key_hash.as_bytes()).into());
        Ok(found.map(|(identity, _)| identity.clone()))
    }

    fn has_access_key(&self, identity: &str) -> Result<bool, KeyError> {
        Ok(self.hashes.contains_key(identity))
    }
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Counts redeem attempts per client address key (an IPv6 client: its block, as admission counts
/// it) in one-minute windows.
pub struct RedeemLimiter {
    ipv6_prefix_len: u8,
    tries: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RedeemLimiter {
    /// A limiter counting IPv6 clients per block of `ipv6_prefix_len` bits.
    pub fn new(ipv6_prefix_len: u8) -> Self {
        RedeemLimiter {
            ipv6_prefix_len,
            tries: Mutex::default(),
        }
    }

    /// Whether `address` may try one more key now (and counts the try).
    pub fn allow(&self, address: Option<IpAddr>) -> bool {
        let key = address.map_or(IpAddr::from([0, 0, 0, 0]), |a| {
            address_key(a, self.ipv6_prefix_len)
        });
        let now = Instant::now();
        let mut tries = self.tries.lock().unwrap_or_else(|e| e.into_inner());
        tries.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        let (_, count) = tries.entry(key).or_insert((now, 0));
        *count += 1;
        *count <= REDEEMS_PER_MINUTE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_replaces_the_old_and_only_hashes_are_kept() {
        let dir = std::env::temp_dir().join(format!("termpool-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.sqlite");
        let open = || {
            let store: Box<dyn crate::pool::OperatorStore> =
                Box::new(crate::pool::SqliteStore::open(&path).unwrap());
            AccessKeys::open(Some(std::sync::Arc::new(Mutex::new(store))))
        };
        let keys = open();
        let first = keys.create("cookie:a").unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(keys.identity_for_key(&first).as_deref(), Some("cookie:a"));
        let second = keys.create("cookie:a").unwrap();
        assert_eq!(keys.identity_for_key(&first), None, "the old key has ended");
        drop(keys);
        let saved = std::fs::read(&path).unwrap();
        let contains = |needle: &str| saved.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!contains(&second) && contains(&hash(&second)));
        let reopened = open();
        assert_eq!(
            reopened.identity_for_key(&second).as_deref(),
            Some("cookie:a")
        );
        assert!(reopened.has_key("cookie:a") && !reopened.has_key("cookie:b"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_a_store_keys_last_as_long_as_the_process() {
        let keys = AccessKeys::open(None);
        let key = keys.create("cookie:a").unwrap();
        assert_eq!(keys.identity_for_key(&key).as_deref(), Some("cookie:a"));
        assert!(keys.identity_for_key("0000").is_none());
    }

    #[test]
    fn redeems_are_limited_per_address_and_ipv6_per_block() {
        let limiter = RedeemLimiter::new(64);
        let at = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        for _ in 0..REDEEMS_PER_MINUTE {
            assert!(limiter.allow(at("2001:db8::1")));
        }
        assert!(!limiter.allow(at("2001:db8::2")));
        assert!(limiter.allow(at("2001:db8:0:1::1")));
        assert!(limiter.allow(at("192.0.2.1")));
    }
}
