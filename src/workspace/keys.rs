//! Access keys: a secret shown once that stands for a cookie-mode account, kept only as its
//! SHA-256 hash; at most one per account, a new one replacing (ending) the old.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Random bytes in a key (shown as hex).
const KEY_BYTES: usize = 32;
/// Redeem attempts one client address may make per minute.
pub const REDEEMS_PER_MINUTE: u32 = 10;
const FILE: &str = "access-keys.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the access keys cannot be saved: {0}")]
    Io(#[from] std::io::Error),
}

/// The account of every key, by key hash; saved in `DATA_DIR` when there is one.
pub struct AccessKeys {
    /// identity -> hex SHA-256 of its key.
    hashes: Mutex<HashMap<String, String>>,
    file: Option<PathBuf>,
}

impl AccessKeys {
    /// The keys kept in `dir` (none yet if it has no key file), or in memory only.
    pub fn open(dir: Option<&Path>) -> Result<Self, KeyError> {
        let file = dir.map(|d| d.join(FILE));
        let hashes = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str(&text).map_err(std::io::Error::other)?
            }
            _ => HashMap::new(),
        };
        Ok(AccessKeys {
            hashes: Mutex::new(hashes),
            file,
        })
    }

    /// Makes a new key for `identity`, replacing its previous one; returns the key itself, which
    /// is kept nowhere.
    pub fn create(&self, identity: &str) -> Result<String, KeyError> {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let key = hex::encode(bytes);
        let mut hashes = self.lock();
        let previous = hashes.insert(identity.to_owned(), hash(&key));
        if let Err(e) = self.save(&hashes) {
            match previous {
                Some(old) => hashes.insert(identity.to_owned(), old),
                None => hashes.remove(identity),
            };
            return Err(e);
        }
        Ok(key)
    }

    /// The identity a key stands for, if it is the current key of one.
    pub fn identity_for_key(&self, key: &str) -> Option<String> {
        let wanted = hash(key);
        let hashes = self.lock();
        hashes
            .iter()
            .find(|(_, h)| subtle::ConstantTimeEq::ct_eq(h.as_bytes(), wanted.as_bytes()).into())
            .map(|(identity, _)| identity.clone())
    }

    pub fn has_key(&self, identity: &str) -> bool {
        self.lock().contains_key(identity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the table whole to a fresh file (0600) and renames it over the old one.
    fn save(&self, hashes: &HashMap<String, String>) -> Result<(), KeyError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let fresh = path.with_extension("json.new");
        let _ = std::fs::remove_file(&fresh);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&fresh)?;
        file.write_all(&serde_json::to_vec(hashes).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&fresh, path)?;
        Ok(())
    }
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Counts redeem attempts per client address (an IPv6 client: its /64) in one-minute windows.
#[derive(Default)]
pub struct RedeemLimiter(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl RedeemLimiter {
    /// Whether `address` may try one more key now (and counts the try).
    pub fn allow(&self, address: Option<IpAddr>) -> bool {
        let key = address.map_or(IpAddr::from([0, 0, 0, 0]), network);
        let now = Instant::now();
        let mut tries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tries.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        let (_, count) = tries.entry(key).or_insert((now, 0));
        *count += 1;
        *count <= REDEEMS_PER_MINUTE
    }
}

/// The address a client is counted under: itself, or its /64 for IPv6.
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_replaces_the_old_and_only_hashes_are_kept() {
        let dir = std::env::temp_dir().join(format!("termpool-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = AccessKeys::open(Some(&dir)).unwrap();
        let first = keys.create("cookie:a").unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(keys.identity_for_key(&first).as_deref(), Some("cookie:a"));
        let second = keys.create("cookie:a").unwrap();
        assert_eq!(keys.identity_for_key(&first), None, "the old key has ended");
        let saved = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(!saved.contains(&second) && saved.contains(&hash(&second)));
        let reopened = AccessKeys::open(Some(&dir)).unwrap();
        assert_eq!(
            reopened.identity_for_key(&second).as_deref(),
            Some("cookie:a")
        );
        assert!(reopened.has_key("cookie:a") && !reopened.has_key("cookie:b"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn redeems_are_limited_per_address_and_ipv6_per_64() {
        let limiter = RedeemLimiter::default();
        let at = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        for _ in 0..REDEEMS_PER_MINUTE {
            assert!(limiter.allow(at("2001:db8::1")));
        }
        assert!(!limiter.allow(at("2001:db8::2")));
        assert!(limiter.allow(at("2001:db8:0:1::1")));
        assert!(limiter.allow(at("192.0.2.1")));
    }
}
