//! The container pool: which container and Linux account each web user's shells run in. It
//! knows nothing of HTTP: it takes an opaque identity and answers with an [`Account`] whose
//! container runs with hidepid and where the account exists, or with a [`PoolError`].

mod accounts;
pub mod assign;
mod container;
mod engine;
mod exec;
mod helper;
mod hidepid;
mod manager;
pub mod orchestrator;
mod processes;
mod ptys;
mod quota;
mod spec;
mod state;
pub mod store;
pub mod swarm;

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use manager::Pool;
pub use store::{OperatorStore, SqliteStore, Store, StoreError, SwarmStore};

/// Hex digits of the identity's SHA-256 in the account names an identity may get, in the order
/// they are tried. The first is the usual name ([`linux_username`]). 12 digits (48 bits) collide
/// by chance after about 2^24 identities, which an attacker finds in seconds: an identity whose
/// shorter name already belongs to another identity gets the next longer one, never the other's
/// account. 31 digits keep `u` + hex within useradd's 32 characters.
const NAME_HEX_DIGITS: [usize; 4] = [12, 16, 24, 31];

/// The usual Linux account name of an identity: `u` + the first 12 hex digits of
/// SHA-256(identity). The pool gives it unless another identity holds it already (see
/// [`account_names`]).
///
/// Deterministic, so the same person always gets the same account; 32 chars max, starts with a
/// letter, lowercase: valid for `useradd` everywhere.
pub fn linux_username(identity: &str) -> String {
    account_names(&identity_hash(identity))
        .next()
        .unwrap_or_default()
}

/// The account names an identity with hex SHA-256 `hash` may get, shortest (usual) first: the
/// pool takes the first one no other identity holds, and records it.
pub fn account_names(hash: &str) -> impl Iterator<Item = String> + '_ {
    NAME_HEX_DIGITS
        .iter()
        .filter_map(move |&n| hash.get(..n))
        .map(|hex| format!("u{hex}"))
}

/// The full hex SHA-256 of an identity: the store's key for a user (the raw identity is never
/// stored).
pub fn identity_hash(identity: &str) -> String {
    hex::encode(Sha256::digest(identity.as_bytes()))
}

/// The home directory of an account inside every container (on the shared volume).
pub fn home_of(username: &str) -> String {
    format!("{WORKSPACE}/{username}")
}

/// Where the shared volume is mounted in every user container.
pub const WORKSPACE: &str = termpool_agent_proto::WORKSPACE;

/// Settings of the pool. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of containers (slots) in the pool.
    pub max_containers: usize,
    /// Users assigned to one container at most.
    pub users_per_container: usize,
    /// Image of the user containers (built from Dockerfile.user).
    pub image: String,
    /// Memory limit of one container; swap is set equal (no swap).
    pub memory_bytes: i64,
    /// CPU limit of one container in billionths of a CPU.
    pub nano_cpus: i64,
    /// Process limit of one container.
    pub pids_limit: i64,
    /// `ulimit -u` (nproc) inside the containers: counted per UID, so it caps each user.
    pub user_nproc: i64,
    /// PTYs one container's /dev/pts may hold (devpts `max=`, set by the hidepid helper).
    pub ptys_per_container: u32,
    /// PTYs of the sessions' own devpts instance in one container (its `max=`): the sessions
    /// the container may hold at once, and one per user for a session replacing another.
    pub agent_ptys: u32,
    /// Disk quota of each account on the workspace volume in MiB (0: none); the volume must be
    /// btrfs with quotas enabled, or ext4/XFS with user quotas on (docs/isolation.md).
    pub user_disk_quota_mb: u64,
    /// Docker volume mounted at /workspace in every container of the pool.
    pub volume: String,
    /// Network mode of the containers (`bridge`, `none`, or a network name).
    pub network_mode: String,
    /// Container names are `<name_prefix>-<slot>`.
    pub name_prefix: String,
    /// Value of the `termpool.pool` label that marks this pool's containers (adopted at start).
    pub pool_label: String,
    /// Host directory holding one directory per container for its session agent's socket,
    /// bind-mounted at /run/termpool in that container; `None`: no agent, sessions are execs.
    pub agent_dir: Option<PathBuf>,
    /// The uid the agents accept connections from: the server's.
    pub agent_peer_uid: u32,
    /// Agents refuse to start shells for accounts below this UID.
    pub uid_min: u32,
    /// How long a new container's agent may take to listen before the container is given up.
    pub agent_start_timeout: Duration,
    /// How often the background task checks that every container still runs.
    pub health_interval: Duration,
    /// How often the last-seen times of returning users are written to the store.
    pub flush_interval: Duration,
    /// Slots are Swarm services with these settings; `None`: containers of the server's engine.
    pub swarm: Option<swarm::SwarmConfig>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let prefix = "termpool-user".to_string();
        PoolConfig {
            max_containers: 10,
            users_per_container: 20,
            image: "terminal-multi-user:latest".into(),
            memory_bytes: 512 * 1024 * 1024,
            nano_cpus: 500_000_000,
            pids_limit: 1024,
            user_nproc: 256,
            ptys_per_container: 64,
            agent_ptys: 220,
            user_disk_quota_mb: 0,
            volume: "termpool-workspace".into(),
            network_mode: "bridge".into(),
            pool_label: prefix.clone(),
            name_prefix: prefix,
            agent_dir: None,
            agent_peer_uid: 0,
            uid_min: 200_000,
            agent_start_timeout: Duration::from_secs(15),
            health_interval: Duration::from_secs(10),
            flush_interval: Duration::from_secs(5),
            swarm: None,
        }
    }
}

impl PoolConfig {
    /// The name of the container in `slot`.
    pub fn container_name(&self, slot: usize) -> String {
        format!("{}-{slot}", self.name_prefix)
    }

    /// Where the server reaches the session agent of container `name`, when there are agents.
    pub fn agent_socket(&self, name: &str) -> Option<PathBuf> {
        let dir = self.agent_dir.as_ref()?;
        Some(dir.join(name).join(AGENT_SOCKET))
    }
}

/// Where a container's agent directory is mounted in it, and the socket's name there.
pub const AGENT_MOUNT: &str = "/run/termpool";
pub const AGENT_SOCKET: &str = "agent.sock";

/// Where a user's sessions run: the answer of [`Pool::place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub container_name: String,
    pub container_id: String,
    pub username: String,
    pub uid: u32,
    pub home: String,
}

/// Numbers for /metrics and /healthz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Containers the pool is configured to run.
    pub containers: usize,
    /// Containers running with hidepid verified, ready to take users.
    pub containers_ready: usize,
    /// Users that currently hold a slot.
    pub users_assigned: usize,
    /// Users the store knows (with or without a slot).
    pub users_known: usize,
    /// Slots in total (`containers * users_per_container`).
    pub capacity: usize,
}

/// Why a user could not be placed. The messages are for the operator: they name containers,
/// paths and the engine's errors. A client is told only the kind (see `tty::docker`).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every slot is held by a user with a live session.
    #[error("pool full: every terminal slot is in use, try again later")]
    PoolFull,
    /// The Docker engine cannot be reached (or does not answer).
    #[error("container engine unavailable: {0}")]
    DockerUnavailable(String),
    /// The store failed (disk full, unwritable, corrupt).
    #[error("placement store failed: {0}")]
    Store(#[from] StoreError),
    /// Docker answered, but a container or account could not be set up.
    #[error("container provisioning failed: {0}")]
    Provision(String),
    /// Every slot on the node holding the user's home is held by a user with a live session
    /// (slots elsewhere may be free, but would give the user an empty home).
    #[error("home node full: every terminal slot on the node holding the user's files is in use")]
    HomeFull,
    /// The node holding the user's slot (and home) is down, or its agent does not answer.
    #[error("node down: {0}")]
    NodeDown(String),
    /// The volume the slot's container meets is not the one holding its users' homes (its marker
    /// names no such slot): nobody is admitted there, and nothing is created on it.
    #[error("wrong volume: {0}")]
    WrongVolume(String),
    /// No slot on the node holding the user's home can take users now (the reason says why):
    /// the user waits rather than be placed elsewhere on an empty home.
    #[error("home unavailable: {0}")]
    HomeUnavailable(String),
}

impl PoolError {
    /// The error of a failed call to the engine about `context`: unavailable when the engine did
    /// not answer, a provisioning failure when it refused the request.
    pub fn engine(context: impl std::fmt::Display, e: bollard::errors::Error) -> PoolError {
        engine::docker_err(context)(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_username(s: &str) -> bool {
        s.len() == 13
            && s.starts_with('u')
            && s[1..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }

    #[test]
    fn username_is_deterministic_and_well_formed() {
        for id in [
            "",
            "alice",
            "bob@example.com",
            "ünïcødé",
            &"x".repeat(10_000),
        ] {
            let a = linux_username(id);
            assert_eq!(a, linux_username(id), "same identity, same name");
            assert!(is_username(&a), "{a:?} must match ^u[0-9a-f]{{12}}$");
        }
        assert_ne!(linux_username("alice"), linux_username("bob"));
    }

    #[test]
    fn username_is_the_sha256_prefix() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(linux_username("abc"), "uba7816bf8f01");
        assert!(identity_hash("abc").starts_with(&linux_username("abc")[1..]));
        assert_eq!(identity_hash("abc").len(), 64);
    }

    #[test]
    fn longer_names_extend_the_usual_one() {
        let hash = identity_hash("abc");
        let names: Vec<String> = account_names(&hash).collect();
        assert_eq!(names[0], linux_username("abc"));
        assert_eq!(names.len(), 4);
        for pair in names.windows(2) {
            assert!(pair[1].starts_with(&pair[0]) && pair[1].len() > pair[0].len());
        }
        assert!(names.iter().all(|n| n.len() <= 32), "{names:?}");
    }

    #[test]
    fn home_is_under_workspace() {
        assert_eq!(home_of("uabc"), "/workspace/uabc");
    }

    #[test]
    fn default_config_matches_the_documented_defaults() {
        let c = PoolConfig::default();
        assert_eq!((c.max_containers, c.users_per_container), (10, 20));
        assert_eq!(c.memory_bytes, 536_870_912);
        assert_eq!(c.container_name(3), "termpool-user-3");
    }
}
