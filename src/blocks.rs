//! The operator's blocks of identities and client addresses: checked on every request from
//! memory, kept in the store (when there is one) so that a restart keeps them.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use ipnet::IpNet;

use crate::identity::TrustedProxies;
use crate::pool::identity_hash;
use crate::pool::store::{Block, BlockKind, OperatorStore, StoreError};

/// The store the web layer shares: a connection of its own to the pool's file, or to the Swarm's
/// configs.
pub type SharedStore = Arc<Mutex<Box<dyn OperatorStore>>>;

/// Why a block cannot be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("an identity is blocked by its hash: 64 lowercase hex digits, as /admin/users shows")]
    BadIdentity,
    #[error("an address block is an IP address or a CIDR block: {0}")]
    BadAddress(String),
    #[error("the reason must be 1 to 500 characters")]
    BadReason,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One block, ready to match.
struct Entry {
    block: Block,
    /// The block of an address entry.
    net: Option<TrustedProxies>,
}

/// Every block, in memory, written through to the store.
pub struct Blocklist {
    entries: RwLock<Vec<Entry>>,
    store: Option<SharedStore>,
}

impl Blocklist {
    /// The blocks the store holds (none without a store).
    pub fn load(store: Option<SharedStore>) -> Result<Blocklist, StoreError> {
        let blocks = match &store {
            Some(s) => s.lock().unwrap_or_else(|e| e.into_inner()).blocks()?,
            None => Vec::new(),
        };
        let entries = blocks
            .into_iter()
            .filter_map(|block| match entry(block) {
                Ok(e) => Some(e),
                Err(e) => {
                    log::warn!("ignoring a stored block: {e}");
                    None
                }
            })
            .collect();
        Ok(Blocklist {
            entries: RwLock::new(entries),
            store,
        })
    }

    /// Whether there is no block at all (the common case: nothing to check).
    pub fn is_empty(&self) -> bool {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Whether the blocks are kept across restarts.
    pub fn is_persistent(&self) -> bool {
        self.store.is_some()
    }

    /// The block that refuses this client, if any: its address first, then its identity.
    pub fn matching(&self, identity: Option<&str>, client: Option<IpAddr>) -> Option<Block> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        if entries.is_empty() {
            return None;
        }
        if let Some(ip) = client {
            let hit = entries
                .iter()
                .find(|e| e.net.as_ref().is_some_and(|n| n.contains(ip)));
            if let Some(e) = hit {
                return Some(e.block.clone());
            }
        }
        let hash = identity.map(identity_hash)?;
        entries
            .iter()
            .find(|e| e.block.kind == BlockKind::Identity && e.block.value == hash)
            .map(|e| e.block.clone())
    }

    /// Every block, oldest first.
    pub fn list(&self) -> Vec<Block> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(|e| e.block.clone()).collect()
    }

    /// Adds (or replaces the reason of) a block; stored before it takes effect in memory, so that
    /// nothing is in force that a restart would forget.
    pub fn add(&self, kind: BlockKind, value: &str, reason: &str) -> Result<Block, BlockError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(BlockError::BadReason);
        }
        let value = canonical(kind, value)?;
        let block = match &self.store {
            Some(s) => s
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_block(kind, &value, reason)?,
            None => Block::new(kind, &value, reason),
        };
        let new = entry(block.clone())?;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| !(e.block.kind == kind && e.block.value == block.value));
        entries.push(new);
        Ok(block)
    }

    /// Removes a block; `false` if there was none.
    pub fn remove(&self, kind: BlockKind, value: &str) -> Result<bool, BlockError> {
        let value = canonical(kind, value)?;
        if let Some(s) = &self.store {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove_block(kind, &value)?;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let before = entries.len();
        entries.retain(|e| !(e.block.kind == kind && e.block.value == value));
        Ok(entries.len() < before)
    }
}

/// The value as stored: a lowercase hash, or the address block in its shortest form.
fn canonical(kind: BlockKind, value: &str) -> Result<String, BlockError> {
    let value = value.trim();
    match kind {
        BlockKind::Identity => {
            let hex = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| value.to_ascii_lowercase())
                .ok_or(BlockError::BadIdentity)
        }
        BlockKind::Address => {
            parse_net(value).map(|n| match n.prefix_len() == n.max_prefix_len() {
                true => n.addr().to_string(),
                false => n.trunc().to_string(),
            })
        }
    }
}

fn parse_net(value: &str) -> Result<IpNet, BlockError> {
    let bad = || BlockError::BadAddress(format!("{value:?}"));
    let list = TrustedProxies::parse(&[value]).map_err(|_| bad())?;
    if list.len() != 1 {
        return Err(bad());
    }
    match value.split_once('/') {
        Some(_) => value.parse::<IpNet>().map_err(|_| bad()),
        None => value
            .parse::<IpAddr>()
            .map(|ip| IpNet::from(ip.to_canonical()))
            .map_err(|_| bad()),
    }
}

fn entry(block: Block) -> Result<Entry, BlockError> {
    let net = match block.kind {
        BlockKind::Address => {
            Some(TrustedProxies::parse(&[block.value.as_str()]).map_err(BlockError::BadAddress)?)
        }
        BlockKind::Identity => None,
    };
    Ok(Entry { block, net })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_identities_are_matched() {
        let list = Blocklist::load(None).unwrap();
        assert!(list.matching(Some("a"), "192.0.2.1".parse().ok()).is_none());
        list.add(BlockKind::Address, "192.0.2.0/24", "spam")
            .unwrap();
        list.add(BlockKind::Address, "2001:db8::1", "spam").unwrap();
        let hash = identity_hash("mallory");
        list.add(BlockKind::Identity, &hash.to_uppercase(), "abuse")
            .unwrap();
        let at = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(
            list.matching(None, at("192.0.2.77")).unwrap().reason,
            "spam"
        );
        assert!(
            list.matching(None, at("::ffff:192.0.2.77")).is_some(),
            "mapped"
        );
        assert!(list.matching(None, at("2001:db8::1")).is_some());
        assert!(list.matching(None, at("2001:db8::2")).is_none());
        assert!(list.matching(Some("alice"), at("198.51.100.1")).is_none());
        let hit = list.matching(Some("mallory"), at("198.51.100.1")).unwrap();
        assert_eq!(
            (hit.kind, hit.reason.as_str()),
            (BlockKind::Identity, "abuse")
        );
        assert!(list.remove(BlockKind::Identity, &hash).unwrap());
        assert!(!list.remove(BlockKind::Identity, &hash).unwrap());
        assert!(list.matching(Some("mallory"), None).is_none());
        assert!(list.remove(BlockKind::Address, "192.0.2.0/24").unwrap());
    }

    #[test]
    fn bad_blocks_are_refused() {
        let list = Blocklist::load(None).unwrap();
        for (kind, value) in [
            (BlockKind::Identity, "mallory"),
            (BlockKind::Identity, "abc"),
            (BlockKind::Address, "example.org"),
            (BlockKind::Address, "10.0.0.0/33"),
            (BlockKind::Address, ""),
            (BlockKind::Address, "1.2.3.4,5.6.7.8"),
        ] {
            assert!(list.add(kind, value, "x").is_err(), "{value}");
        }
        assert!(matches!(
            list.add(BlockKind::Address, "1.2.3.4", " "),
            Err(BlockError::BadReason)
        ));
        assert!(list.list().is_empty());
        let b = list.add(BlockKind::Address, "10.1.2.3/8", "x").unwrap();
        assert_eq!(b.value, "10.0.0.0/8");
    }
}
