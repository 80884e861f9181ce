//! What the web layer keeps beside the pool's data: the operator's blocks and the access keys
//! that bring an identity back on another browser.

use rusqlite::{params, OptionalExtension};

use super::sqlite::sql;
use super::{unix_now, SqliteStore, StoreError};
use crate::pool::identity_hash;

/// What a block applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// `value` is the hex SHA-256 of an identity.
    Identity,
    /// `value` is a client address or a CIDR block.
    Address,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Identity => "identity",
            BlockKind::Address => "address",
        }
    }

    pub fn parse(s: &str) -> Option<BlockKind> {
        match s {
            "identity" => Some(BlockKind::Identity),
            "address" => Some(BlockKind::Address),
            _ => None,
        }
    }
}

/// A block as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    pub kind: BlockKind,
    pub value: String,
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl Block {
    /// A block made now.
    pub fn new(kind: BlockKind, value: &str, reason: &str) -> Block {
        Block {
            kind,
            value: value.to_string(),
            reason: reason.to_string(),
            created_at: unix_now(),
        }
    }
}

impl SqliteStore {
    /// Every block, oldest first.
    pub fn blocks(&self) -> Result<Vec<Block>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, value, reason, created_at FROM blocks ORDER BY created_at")
            .map_err(sql("listing blocks"))?;
        let rows = stmt
            .query_map([], |r| {
                let kind: String = r.get(0)?;
                Ok(Block {
                    // The table's CHECK admits no other kind.
                    kind: BlockKind::parse(&kind).unwrap_or(BlockKind::Address),
                    value: r.get(1)?,
                    reason: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .map_err(sql("listing blocks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading a block row"))
    }

    /// Adds a block, or replaces the reason of the same one; returns it as stored.
    pub fn add_block(
        &mut self,
        kind: BlockKind,
        value: &str,
        reason: &str,
    ) -> Result<Block, StoreError> {
        let block = Block::new(kind, value, reason);
        self.conn
            .execute(
                "INSERT INTO blocks(kind, value, reason, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(kind, value) DO UPDATE SET reason = excluded.reason, \
                 created_at = excluded.created_at",
                params![kind.as_str(), value, reason, block.created_at],
            )
            .map_err(sql("adding a block"))?;
        Ok(block)
    }

    /// Removes a block; `false` if there was none.
    pub fn remove_block(&mut self, kind: BlockKind, value: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM blocks WHERE kind = ?1 AND value = ?2",
                params![kind.as_str(), value],
            )
            .map_err(sql("removing a block"))?;
        Ok(n > 0)
    }

    /// Gives `identity` the access key whose hash is `key_hash`, replacing its previous key. The
    /// raw identity is kept (a secret as good as the cookie: the file is its owner's alone), so
    /// that the key can bring it back.
    pub fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("beginning a key update"))?;
        let hash = identity_hash(identity);
        // A key hash names one identity only: whoever held it before loses it.
        tx.execute(
            "DELETE FROM access_keys WHERE key_hash = ?1 OR identity_hash = ?2",
            params![key_hash, hash],
        )
        .map_err(sql("replacing an access key"))?;
        tx.execute(
            "INSERT INTO access_keys(identity_hash, identity, key_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![hash, identity, key_hash, unix_now()],
        )
        .map_err(sql("saving an access key"))?;
        tx.commit().map_err(sql("committing an access key"))
    }

    /// The identity whose access key hashes to `key_hash`.
    pub fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT identity FROM access_keys WHERE key_hash = ?1",
                params![key_hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("looking up an access key"))
    }

    /// Whether `identity` has an access key.
    pub fn has_access_key(&self, identity: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM access_keys WHERE identity_hash = ?1",
                params![identity_hash(identity)],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(sql("looking up an access key"))
    }

    /// Removes the access key of `identity`; `false` if it had none.
    pub fn remove_access_key(&mut self, identity: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM access_keys WHERE identity_hash = ?1",
                params![identity_hash(identity)],
            )
            .map_err(sql("removing an access key"))?;
        Ok(n > 0)
    }
}

/// What the web layer keeps in a store (the operator's blocks, the access keys), whichever store
/// it is: the SQLite file of one host, or the Swarm's configs, which every manager holds.
pub trait OperatorStore: Send {
    /// Every block, oldest first.
    fn blocks(&self) -> Result<Vec<Block>, StoreError>;
    /// Adds a block, or replaces the reason of the same one; returns it as stored.
    fn add_block(
        &mut self,
        kind: BlockKind,
        value: &str,
        reason: &str,
    ) -> Result<Block, StoreError>;
    /// Removes a block; `false` if there was none.
    fn remove_block(&mut self, kind: BlockKind, value: &str) -> Result<bool, StoreError>;
    /// Gives `identity` the access key whose hash is `key_hash`, replacing its previous key.
    fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), StoreError>;
    /// The identity whose access key hashes to `key_hash`.
    fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, StoreError>;
    /// Whether `identity` has an access key.
    fn has_access_key(&self, identity: &str) -> Result<bool, StoreError>;
}

/// Implements [`OperatorStore`] with the store's own methods of the same names.
macro_rules! operator_store {
    ($store:ty) => {
        impl $crate::pool::store::OperatorStore for $store {
            fn blocks(&self) -> Result<Vec<Block>, StoreError> {
                <$store>::blocks(self)
            }
            fn add_block(
                &mut self,
                kind: BlockKind,
                value: &str,
                reason: &str,
            ) -> Result<Block, StoreError> {
                <$store>::add_block(self, kind, value, reason)
            }
            fn remove_block(&mut self, kind: BlockKind, value: &str) -> Result<bool, StoreError> {
                <$store>::remove_block(self, kind, value)
            }
            fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), StoreError> {
                <$store>::set_access_key(self, identity, key_hash)
            }
            fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
                <$store>::identity_for_key(self, key_hash)
            }
            fn has_access_key(&self, identity: &str) -> Result<bool, StoreError> {
                <$store>::has_access_key(self, identity)
            }
        }
    };
}
pub(super) use operator_store;

operator_store!(SqliteStore);
