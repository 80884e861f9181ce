//! The operator's blocks and the access keys as Swarm configs beside the pool's records, with the
//! same methods as [`crate::pool::store::SqliteStore`]'s.

use base64::Engine as _;
use bollard::models::Config;
use sha2::{Digest, Sha256};

use super::api::{failed, Write};
use super::records::{
    base_labels, labels_of, Labels, KIND_BLOCK, KIND_KEY, LABEL_IDENTITY, LABEL_KIND, LABEL_STORE,
};
use super::{raced, SwarmStore, ATTEMPTS};
use crate::pool::identity_hash;
use crate::pool::store::operator::operator_store;
use crate::pool::store::{unix_now, Block, BlockKind, StoreError};

operator_store!(SwarmStore);

const LABEL_BLOCK_KIND: &str = "termpool.block.kind";
const LABEL_BLOCK_VALUE: &str = "termpool.block.value";
const LABEL_REASON: &str = "termpool.block.reason";
const LABEL_CREATED: &str = "termpool.created-at";
const LABEL_KEY_HASH: &str = "termpool.key-hash";

/// The first hex digits of a SHA-256 that name a record (96 bits: collisions are out of reach;
/// lookups go by labels anyway).
const NAME_HEX: usize = 24;

fn short_hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..NAME_HEX].to_string()
}

impl SwarmStore {
    /// The records of one kind, optionally with one more label.
    fn list_kind(&self, kind: &str, extra: Option<String>) -> Result<Vec<Config>, StoreError> {
        let mut labels = vec![
            format!("{LABEL_STORE}={}", self.pool),
            format!("{LABEL_KIND}={kind}"),
        ];
        labels.extend(extra);
        let configs = self.api.list(labels)?;
        // Refuses records of a newer release here too.
        super::Snapshot::parse(&self.pool, configs.clone())?;
        Ok(configs)
    }

    /// Every block, oldest first.
    pub fn blocks(&self) -> Result<Vec<Block>, StoreError> {
        let mut blocks = self
            .list_kind(KIND_BLOCK, None)?
            .iter()
            .map(block_of)
            .collect::<Result<Vec<_>, _>>()?;
        blocks.sort_by_key(|b| b.created_at);
        Ok(blocks)
    }

    /// Adds a block, or replaces the reason of the same one; returns it as stored. One record
    /// per (kind, value), so the block is never absent while being replaced.
    pub fn add_block(
        &mut self,
        kind: BlockKind,
        value: &str,
        reason: &str,
    ) -> Result<Block, StoreError> {
        let block = Block::new(kind, value, reason);
        let mut labels = base_labels(&self.pool, KIND_BLOCK);
        labels.insert(LABEL_BLOCK_KIND.into(), kind.as_str().into());
        labels.insert(LABEL_BLOCK_VALUE.into(), value.into());
        labels.insert(LABEL_REASON.into(), reason.into());
        labels.insert(LABEL_CREATED.into(), block.created_at.to_string());
        let name = block_name(&self.pool, kind, value);
        for _ in 0..ATTEMPTS {
            let existing = self.find_block(kind, value)?;
            let write = match existing {
                Some(config) => self.api.update_labels(&config, labels.clone())?,
                None => self
                    .api
                    .create(&name, labels.clone(), kind.as_str().as_bytes())?,
            };
            if write == Write::Done {
                return Ok(block);
            }
        }
        Err(raced(&format!("adding the block of {value}")))
    }

    /// Removes a block; `false` if there was none.
    pub fn remove_block(&mut self, kind: BlockKind, value: &str) -> Result<bool, StoreError> {
        match self.find_block(kind, value)? {
            Some(config) => {
                self.api.delete(config.id.as_deref().unwrap_or_default())?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn find_block(&self, kind: BlockKind, value: &str) -> Result<Option<Config>, StoreError> {
        let by_value = format!("{LABEL_BLOCK_VALUE}={value}");
        let found = self.list_kind(KIND_BLOCK, Some(by_value))?;
        Ok(found.into_iter().find(|c| {
            labels_of(c).and_then(|l| l.get(LABEL_BLOCK_KIND)) == Some(&kind.as_str().to_string())
        }))
    }

    /// Gives `identity` the access key whose hash is `key_hash`, replacing its previous key. The
    /// raw identity is the record's data (readable, like the SQLite file's, only by whoever holds
    /// the manager's API), so that the key can bring it back.
    pub fn set_access_key(&mut self, identity: &str, key_hash: &str) -> Result<(), StoreError> {
        let hash = identity_hash(identity);
        // A key hash names one identity only: whoever held it before loses it.
        for config in self.list_kind(KIND_KEY, Some(format!("{LABEL_KEY_HASH}={key_hash}")))? {
            if labels_of(&config).and_then(|l| l.get(LABEL_IDENTITY)) != Some(&hash) {
                self.api.delete(config.id.as_deref().unwrap_or_default())?;
            }
        }
        let mut labels = base_labels(&self.pool, KIND_KEY);
        labels.insert(LABEL_IDENTITY.into(), hash.clone());
        labels.insert(LABEL_KEY_HASH.into(), key_hash.into());
        labels.insert(LABEL_CREATED.into(), unix_now().to_string());
        let name = format!("{}-key-{}", self.pool, &hash[..NAME_HEX]);
        for _ in 0..ATTEMPTS {
            // One record per identity: a new key is a label update, never a second record.
            let write = match self.key_of(&hash)? {
                Some(config) => self.api.update_labels(&config, labels.clone())?,
                None => self
                    .api
                    .create(&name, labels.clone(), identity.as_bytes())?,
            };
            if write == Write::Done {
                return Ok(());
            }
        }
        Err(raced("saving an access key"))
    }

    /// The identity whose access key hashes to `key_hash`.
    pub fn identity_for_key(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        let found = self.list_kind(KIND_KEY, Some(format!("{LABEL_KEY_HASH}={key_hash}")))?;
        let Some(config) = found.first() else {
            return Ok(None);
        };
        let data = config.spec.as_ref().and_then(|s| s.data.as_deref());
        let identity = data
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                failed(
                    "reading an access key",
                    "its data is not an identity".into(),
                )
            })?;
        Ok(Some(identity))
    }

    /// Whether `identity` has an access key.
    pub fn has_access_key(&self, identity: &str) -> Result<bool, StoreError> {
        Ok(self.key_of(&identity_hash(identity))?.is_some())
    }

    /// Removes the access key of `identity`; `false` if it had none.
    pub fn remove_access_key(&mut self, identity: &str) -> Result<bool, StoreError> {
        match self.key_of(&identity_hash(identity))? {
            Some(config) => {
                self.api.delete(config.id.as_deref().unwrap_or_default())?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn key_of(&self, hash: &str) -> Result<Option<Config>, StoreError> {
        let by_identity = format!("{LABEL_IDENTITY}={hash}");
        Ok(self
            .list_kind(KIND_KEY, Some(by_identity))?
            .into_iter()
            .next())
    }
}

fn block_name(pool: &str, kind: BlockKind, value: &str) -> String {
    let letter = &kind.as_str()[..1];
    format!("{pool}-b{letter}-{}", short_hash(value))
}

fn block_of(config: &Config) -> Result<Block, StoreError> {
    let l = Labels::of(config)?;
    let kind_text = l.text(LABEL_BLOCK_KIND)?;
    let kind = BlockKind::parse(&kind_text).ok_or_else(|| l.bad(LABEL_BLOCK_KIND, &kind_text))?;
    Ok(Block {
        kind,
        value: l.text(LABEL_BLOCK_VALUE)?,
        reason: l.text(LABEL_REASON)?,
        created_at: l.number(LABEL_CREATED)?,
    })
}
