//! The store's records as Swarm configs: their names, their labels, and reading them back.

use std::collections::HashMap;

use bollard::models::Config;

use super::super::{ContainerRecord, StoreError, UserRecord};
use super::api::failed;

/// The schema version of the records this release writes (a label on every record).
pub const SWARM_SCHEMA_VERSION: i64 = 1;

/// Names the pool a record belongs to (the only label the store filters on).
pub(super) const LABEL_STORE: &str = "termpool.store";
pub(super) const LABEL_KIND: &str = "termpool.store.kind";
pub(super) const LABEL_SCHEMA: &str = "termpool.store.schema";
const LABEL_ACCOUNT: &str = "termpool.account";
pub(super) const LABEL_IDENTITY: &str = "termpool.identity";
const LABEL_UID: &str = "termpool.uid";
const LABEL_CONTAINER: &str = "termpool.container";
/// On an account: the container whose volume holds the user's home (kept across evictions).
const LABEL_HOME: &str = "termpool.home";
const LABEL_CONTAINER_ID: &str = "termpool.container-id";
const LABEL_SLOT: &str = "termpool.slot";
const LABEL_SEEN: &str = "termpool.last-seen";
const LABEL_ACTIVE: &str = "termpool.last-activity";
/// On an account that took a slot from another user whose record is not yet updated.
const LABEL_EVICTS: &str = "termpool.evicts";
const LABEL_NEXT_UID: &str = "termpool.next-uid";

pub(super) const KIND_ACCOUNT: &str = "account";
pub(super) const KIND_SLOT: &str = "slot";
pub(super) const KIND_META: &str = "meta";
pub(super) const KIND_BLOCK: &str = "block";
pub(super) const KIND_KEY: &str = "key";

/// Longest pool label: Swarm names are at most 64 characters, and the longest suffix is a
/// block's (`-bi-` and 24 hex digits).
pub(super) const MAX_POOL_LABEL: usize = 32;

pub(super) fn account_name(pool: &str, uid: u32) -> String {
    format!("{pool}-uid-{uid}")
}

pub(super) fn slot_name(pool: &str, slot: usize) -> String {
    format!("{pool}-slot-{slot}")
}

pub(super) fn meta_name(pool: &str) -> String {
    format!("{pool}-meta")
}

/// A pool label usable in Swarm object names.
pub(super) fn valid_pool_label(pool: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    pool.len() <= MAX_POOL_LABEL
        && pool.starts_with(|c: char| c.is_ascii_alphanumeric())
        && pool.chars().all(ok_char)
}

/// The labels every record carries.
pub(super) fn base_labels(pool: &str, kind: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_STORE.to_string(), pool.to_string()),
        (LABEL_KIND.to_string(), kind.to_string()),
        (LABEL_SCHEMA.to_string(), SWARM_SCHEMA_VERSION.to_string()),
    ])
}

/// An account's config: the user, and a slot taken from `evicts` not yet recorded on their side.
#[derive(Debug, Clone)]
pub(super) struct Account {
    pub config: Config,
    pub user: UserRecord,
    pub evicts: Option<String>,
}

impl Account {
    /// The labels of `user` in `pool`.
    pub fn labels(pool: &str, user: &UserRecord, evicts: Option<&str>) -> HashMap<String, String> {
        let mut l = base_labels(pool, KIND_ACCOUNT);
        l.insert(LABEL_ACCOUNT.into(), user.username.clone());
        l.insert(LABEL_IDENTITY.into(), user.identity_hash.clone());
        l.insert(LABEL_UID.into(), user.uid.to_string());
        l.insert(LABEL_SEEN.into(), user.last_seen.to_string());
        l.insert(LABEL_ACTIVE.into(), user.last_activity.to_string());
        if let Some(c) = &user.container {
            l.insert(LABEL_CONTAINER.into(), c.clone());
        }
        if let Some(h) = &user.home {
            l.insert(LABEL_HOME.into(), h.clone());
        }
        if let Some(e) = evicts {
            l.insert(LABEL_EVICTS.into(), e.to_string());
        }
        l
    }

    /// The immutable data of a new account's config.
    pub fn data(user: &UserRecord) -> Vec<u8> {
        serde_json::json!({
            "identity_hash": user.identity_hash,
            "username": user.username,
            "uid": user.uid,
        })
        .to_string()
        .into_bytes()
    }

    fn parse(config: Config) -> Result<Account, StoreError> {
        let l = Labels::of(&config)?;
        let container = l.optional(LABEL_CONTAINER);
        let user = UserRecord {
            identity_hash: l.text(LABEL_IDENTITY)?,
            username: l.text(LABEL_ACCOUNT)?,
            uid: l.number(LABEL_UID)?,
            // Records of a release before the label: the home is the slot held, if any.
            home: l.optional(LABEL_HOME).or_else(|| container.clone()),
            container,
            last_seen: l.number(LABEL_SEEN)?,
            last_activity: l.number(LABEL_ACTIVE)?,
        };
        let evicts = l.optional(LABEL_EVICTS);
        Ok(Account {
            config,
            user,
            evicts,
        })
    }
}

/// A slot's config: the container last seen in it.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub config: Config,
    pub record: ContainerRecord,
}

impl Slot {
    pub fn labels(pool: &str, c: &ContainerRecord) -> HashMap<String, String> {
        let mut l = base_labels(pool, KIND_SLOT);
        l.insert(LABEL_SLOT.into(), c.slot.to_string());
        l.insert(LABEL_CONTAINER.into(), c.name.clone());
        l.insert(LABEL_CONTAINER_ID.into(), c.id.clone());
        l
    }

    fn parse(config: Config) -> Result<Slot, StoreError> {
        let l = Labels::of(&config)?;
        let record = ContainerRecord {
            slot: l.number(LABEL_SLOT)?,
            name: l.text(LABEL_CONTAINER)?,
            id: l.text(LABEL_CONTAINER_ID)?,
        };
        Ok(Slot { config, record })
    }
}

/// The pool's meta record: the UID high-water mark, so that a removed account's UID never
/// comes back.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    pub config: Config,
    pub next_uid: i64,
}

impl Meta {
    pub fn labels(pool: &str, next_uid: i64) -> HashMap<String, String> {
        let mut l = base_labels(pool, KIND_META);
        l.insert(LABEL_NEXT_UID.into(), next_uid.to_string());
        l
    }

    fn parse(config: Config) -> Result<Meta, StoreError> {
        let next_uid = Labels::of(&config)?.number(LABEL_NEXT_UID)?;
        Ok(Meta { config, next_uid })
    }
}

/// Every record of one pool, as listed at one moment.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub accounts: Vec<Account>,
    pub slots: Vec<Slot>,
    pub meta: Option<Meta>,
}

impl Snapshot {
    /// Sorts the listed configs of `pool` into records, refusing any written by a newer release.
    pub fn parse(pool: &str, configs: Vec<Config>) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        for config in configs {
            let l = Labels::of(&config)?;
            let found: i64 = l.number(LABEL_SCHEMA)?;
            if found > SWARM_SCHEMA_VERSION {
                return Err(StoreError::SwarmTooNew {
                    pool: pool.to_string(),
                    found,
                    supported: SWARM_SCHEMA_VERSION,
                });
            }
            match l.text(LABEL_KIND)?.as_str() {
                KIND_ACCOUNT => snap.accounts.push(Account::parse(config)?),
                KIND_SLOT => snap.slots.push(Slot::parse(config)?),
                KIND_META => snap.meta = Some(Meta::parse(config)?),
                // The operator's records, read by `operator`.
                KIND_BLOCK | KIND_KEY => {}
                other => return Err(l.bad(LABEL_KIND, other)),
            }
        }
        Ok(snap)
    }

    /// The identity's account (the lowest UID, should two servers have made it one each).
    pub fn account_by_identity(&self, hash: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .filter(|a| a.user.identity_hash == hash)
            .min_by_key(|a| a.user.uid)
    }

    pub fn account_by_name(&self, username: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.user.username == username)
    }
}

/// The labels of `config`, if it has any.
pub(super) fn labels_of(config: &Config) -> Option<&HashMap<String, String>> {
    config.spec.as_ref().and_then(|s| s.labels.as_ref())
}

/// A config's labels, read with errors naming the record.
pub(super) struct Labels<'a> {
    name: &'a str,
    map: &'a HashMap<String, String>,
}

impl<'a> Labels<'a> {
    pub(super) fn of(config: &'a Config) -> Result<Labels<'a>, StoreError> {
        let spec = config.spec.as_ref();
        let name = spec.and_then(|s| s.name.as_deref()).unwrap_or("?");
        match spec.and_then(|s| s.labels.as_ref()) {
            Some(map) => Ok(Labels { name, map }),
            None => Err(failed(
                &format!("reading record {name}"),
                "it has no labels".into(),
            )),
        }
    }

    fn optional(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }

    pub(super) fn text(&self, key: &str) -> Result<String, StoreError> {
        self.optional(key).ok_or_else(|| self.bad(key, "(missing)"))
    }

    pub(super) fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T, StoreError> {
        let text = self.text(key)?;
        text.parse().map_err(|_| self.bad(key, &text))
    }

    pub(super) fn bad(&self, key: &str, value: &str) -> StoreError {
        failed(
            &format!("reading record {}", self.name),
            format!("label {key} is not usable: {value}"),
        )
    }
}
