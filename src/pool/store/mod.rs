//! Persistence across restarts: the pool's users, UIDs and containers (the [`Store`] trait), and
//! the operator's blocks and the access keys, in one versioned SQLite file ([`SqliteStore`]), or
//! the pool's part in a Swarm's own Raft store ([`SwarmStore`]).

mod operator;
mod schema;
mod sqlite;
mod swarm;

use std::path::PathBuf;

pub use operator::{Block, BlockKind, OperatorStore};
pub use schema::SCHEMA_VERSION;
pub use sqlite::SqliteStore;
pub use swarm::{SwarmStore, SWARM_SCHEMA_VERSION, TOUCH_GRANULARITY_SECS};

/// The first UID the store hands out: far above any host or image account.
pub const FIRST_UID: u32 = 200_000;
/// UIDs stop here (well below the kernel's 2^32-2 and Docker's limits).
pub const LAST_UID: u32 = 2_000_000_000;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Hex SHA-256 of the identity (the raw identity is never stored here).
    pub identity_hash: String,
    pub username: String,
    pub uid: u32,
    /// Name of the container holding the user's slot, if any.
    pub container: Option<String>,
    /// Name of the container whose volume holds the user's home (the slot of its last
    /// placement): kept when the user loses its slot, so that with homes pinned to nodes it
    /// comes back to that node. `None` for a user never placed since homes were recorded.
    pub home: Option<String>,
    /// Unix seconds of the last placement.
    pub last_seen: i64,
    /// Unix seconds of the account's last activity (a placement, or what the server reported
    /// with [`Store::touch`]): idle reaping after a restart starts from here.
    pub last_activity: i64,
}

/// A container of the pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub slot: usize,
    pub name: String,
    /// Docker id of the container last seen in that slot.
    pub id: String,
}

/// One placement to persist atomically: `username` (created with a new UID when unknown) now holds
/// a slot in `container`; `evicted`, if any, loses its slot.
#[derive(Debug, Clone, Copy)]
pub struct NewAssignment<'a> {
    pub identity_hash: &'a str,
    pub username: &'a str,
    pub container: &'a str,
    pub last_seen: i64,
    pub evicted: Option<&'a str>,
}

/// Times to write in one batch (see [`Store::touch`]); unknown usernames are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touches {
    /// (username, unix seconds of a placement).
    pub seen: Vec<(String, i64)>,
    /// (username, unix seconds of activity).
    pub active: Vec<(String, i64)>,
}

impl Touches {
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.active.is_empty()
    }
}

/// Errors of the store. Opening refuses loudly rather than run without durable state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store file {path} cannot be opened for writing: {reason}")]
    Unwritable { path: PathBuf, reason: String },
    #[error("disk full while writing the store ({context})")]
    DiskFull { context: String },
    #[error("store file {path} is not a usable database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "store file {path} was written by a newer termpool (schema version {found}; this release \
         knows up to {supported}): it is left untouched; run that release or a newer one, or \
         restore a backup made by this one"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the records of pool {pool} in the Swarm were written by a newer termpool (schema \
         version {found}; this release knows up to {supported}): they are left untouched; run \
         that release or a newer one"
    )]
    SwarmTooNew {
        pool: String,
        found: i64,
        supported: i64,
    },
    /// The Swarm manager is unreachable, not a manager, or refused a call.
    #[error("store in the Swarm, {context}: {reason}")]
    Swarm { context: String, reason: String },
    #[error("no UIDs left (next would be {0})")]
    UidsExhausted(i64),
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Where the pool keeps users, UIDs and containers.
pub trait Store: Send {
    /// Every known user.
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Every known container, by slot.
    fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError>;
    /// Persists a placement (and its eviction) in one transaction; returns the user's record,
    /// with a freshly allocated UID if the user was unknown. A placement is activity too.
    fn assign(&mut self, a: &NewAssignment<'_>) -> Result<UserRecord, StoreError>;
    /// Moves last-seen and last-activity times of known users forward (never back), in one
    /// transaction.
    fn touch(&mut self, t: &Touches) -> Result<(), StoreError>;
    /// Records the container now in a slot.
    fn save_container(&mut self, c: &ContainerRecord) -> Result<(), StoreError>;
    /// Users whose last activity is before `t` (unix seconds), oldest first.
    fn accounts_idle_since(&self, t: i64) -> Result<Vec<UserRecord>, StoreError>;
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod behaviour;
#[cfg(test)]
mod tests;
