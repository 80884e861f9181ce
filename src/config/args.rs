//! The command line and environment as clap reads them, grouped under the headings of `--help`;
//! `config.rs` turns them into settings.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{ArgAction, Parser};

const SERVER: &str = "Server";
const IDENTITY: &str = "Identity";
const LIMITS: &str = "Limits";
const POOL: &str = "Container pool";
const TUNING: &str = "Tuning";
const OPERATOR: &str = "Operator";
const SWARM: &str = "Several hosts (Docker Swarm)";

/// termpool: a multi-user web terminal server.
#[derive(Parser, Debug, Clone)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Run each session in a Docker container of the pool (true) or as a local PTY (false).
    #[arg(long, env = "USE_CONTAINERS", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", help_heading = SERVER)]
    pub use_containers: bool,

    /// Address to listen on [default: 127.0.0.1 in local mode, 0.0.0.0 in container mode].
    #[arg(long, env = "BIND_ADDRESS", help_heading = SERVER)]
    pub bind: Option<IpAddr>,

    /// TCP port (0 picks a free one; the chosen address is printed on stdout).
    #[arg(long, env = "PORT", default_value_t = 3000, help_heading = SERVER)]
    pub port: u16,

    /// Shell command line of a local-mode session (split on whitespace).
    #[arg(long, env = "SHELL_COMMAND", default_value = "/bin/bash -l", help_heading = SERVER)]
    pub shell: String,

    /// Extra origins allowed to open a WebSocket, comma-separated (the server's own is always allowed).
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',', default_value = "",
          help_heading = SERVER)]
    pub allowed_origins: Vec<String>,

    /// Host names the server answers to, comma-separated, `*` for any [default: localhost,
    /// 127.0.0.1 and ::1 when listening on a loopback address; in container mode on any other
    /// address, those and any IP address literal (with a warning), which stay allowed beside the
    /// names given; else any]. Any other `Host` is
    /// refused with 403: a web page whose own name resolves to this address (DNS rebinding) would
    /// otherwise be this server's own origin.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',', help_heading = SERVER)]
    pub allowed_hosts: Vec<String>,

    /// Path prefix the server is reached at, e.g. `/terminal/` behind a reverse proxy: the page,
    /// its assets, the WebSocket, the API and the login live under it.
    #[arg(long, env = "BASE_PATH", default_value = "/", help_heading = SERVER)]
    pub base_path: String,

    /// Directory for persistent state: the cookie key, and the placement store in container mode
    /// [default: none in local mode (cookies end with the process), ./termpool-data in container mode].
    #[arg(long, env = "DATA_DIR", help_heading = SERVER)]
    pub data_dir: Option<PathBuf>,

    /// How users are identified: cookie (anonymous per browser), header (from a trusted auth proxy),
    /// or token (static bearer tokens from TOKEN_FILE).
    #[arg(long, env = "IDENTITY_MODE", value_enum, default_value_t = IdentityMode::Cookie,
          help_heading = IDENTITY)]
    pub identity_mode: IdentityMode,

    /// Header mode: the header in which the auth proxy names the user.
    #[arg(long, env = "IDENTITY_HEADER", default_value = "X-Forwarded-User", help_heading = IDENTITY)]
    pub identity_header: String,

    /// Addresses or CIDR blocks of the reverse proxies in front of the server, comma-separated.
    /// From them alone are believed: X-Forwarded-For (the client's address, for per-address
    /// limits), X-Forwarded-Proto or Forwarded (https: the cookie gets `Secure`), and in header
    /// mode the identity header.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', help_heading = IDENTITY)]
    pub trusted_proxies: Vec<String>,

    /// Token mode: a file of `user:token` lines (tokens of 16+ characters).
    #[arg(long, env = "TOKEN_FILE", help_heading = IDENTITY)]
    pub token_file: Option<PathBuf>,

    /// Largest WebSocket frame accepted from a client, in bytes (1024-67108864); a larger one
    /// closes the socket (1009).
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 1 << 20, help_heading = LIMITS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=64 << 20))]
    pub max_frame_bytes: usize,

    /// Live sessions one user may hold at once (1 or more); one more is refused with 429.
    #[arg(long, env = "MAX_SESSIONS_PER_USER", default_value_t = 10, help_heading = LIMITS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_sessions_per_user: usize,

    /// New sessions one user may open per minute; more are refused with 429 (0 = no limit).
    #[arg(long, env = "MAX_NEW_SESSIONS_PER_MINUTE", default_value_t = 60, help_heading = LIMITS)]
    pub max_new_sessions_per_minute: u32,

    /// Live sessions on the whole server, of all users (detached ones count); one more is
    /// refused with 503 (0 = no limit).
    #[arg(long, env = "MAX_SESSIONS", default_value_t = 1000, help_heading = LIMITS)]
    pub max_sessions: usize,

    /// Cookie mode: new anonymous users one client address (an IPv6 client: its block) may start
    /// sessions for per minute; more are refused with 429 (0 = no limit). Anyone gets a new
    /// identity by sending no cookie: without this, per-user limits limit nothing for a script.
    #[arg(long, env = "MAX_NEW_IDENTITIES_PER_ADDRESS_PER_MINUTE", default_value_t = 10,
          help_heading = LIMITS)]
    pub max_new_identities_per_address_per_minute: u32,

    /// Live sessions one client address may hold at once, of all its users (detached ones count;
    /// an IPv6 client: its IPV6_PREFIX_LEN block); one more is refused with 429 (0 = no limit).
    #[arg(long, env = "MAX_SESSIONS_PER_ADDRESS", default_value_t = 30, help_heading = LIMITS)]
    pub max_sessions_per_address: usize,

    /// Users (identities) one client address may have live sessions for at once; a session of
    /// one more is refused with 429 (0 = no limit). Each holds an account of the pool.
    #[arg(long, env = "MAX_IDENTITIES_PER_ADDRESS", default_value_t = 10, help_heading = LIMITS)]
    pub max_identities_per_address: usize,

    /// The IPv6 block (prefix length in bits, 32-128) counted as one client address by every
    /// per-address limit: a single IPv6 host is commonly given a /64 or a /56.
    #[arg(long, env = "IPV6_PREFIX_LEN", default_value_t = 56, help_heading = LIMITS,
          value_parser = clap::value_parser!(u8).range(32..=128))]
    pub ipv6_prefix_len: u8,

    /// Seconds without client input after which an attached session is detached (closed with code
    /// 4000, "idle"; the shell waits for a re-attach like any dropped one); the page is warned a
    /// minute before, or half the time if that is shorter (0 = never).
    #[arg(long, env = "IDLE_SESSION_SECS", default_value_t = 3600, help_heading = LIMITS)]
    pub idle_session_secs: u64,
    /// Largest file a user may upload, in MiB (1-1048576); a larger one is refused with 413.
    #[arg(long, env = "MAX_UPLOAD_MB", default_value_t = 100, help_heading = LIMITS,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_upload_mb: u64,
    /// Uploads one user may have under way at once (1-64); one more is refused with 429. Each
    /// holds a process in the user's container until its body has come.
    #[arg(long, env = "MAX_UPLOADS_PER_USER", default_value_t = 4, help_heading = LIMITS,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_uploads_per_user: u64,

    /// Largest file the `download` command sends to the browser, in MiB (1-7: the page's
    /// terminal drops an OSC sequence over 10 MB, and base64 makes 7 MiB into 9.8 MB).
    #[arg(long, env = "MAX_DOWNLOAD_MB", default_value_t = 7, help_heading = LIMITS,
          value_parser = clap::value_parser!(u64).range(1..=7))]
    pub max_download_mb: u64,

    /// Seconds a session whose socket dropped waits for a re-attach before it is hung up (0: at once).
    #[arg(long, env = "REATTACH_GRACE_SECS", default_value_t = 300, help_heading = LIMITS)]
    pub reattach_grace_secs: u64,

    /// Seconds (1 or more) an account may have no live session before its leftover processes are
    /// ended.
    #[arg(long, env = "IDLE_REAP_SECS", default_value_t = 86400, help_heading = LIMITS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_reap_secs: u64,

    /// Number of containers in the pool (1-1000).
    #[arg(long, env = "MAX_CONTAINERS", default_value_t = 10, help_heading = POOL)]
    pub max_containers: usize,

    /// Users placed on one container (1-1000; 1 = a container per user).
    #[arg(long, env = "USERS_PER_CONTAINER", default_value_t = 20, help_heading = POOL)]
    pub users_per_container: usize,

    /// Image of the user containers (built from Dockerfile.user).
    #[arg(long, env = "CONTAINER_IMAGE", default_value = "terminal-multi-user:latest",
          help_heading = POOL)]
    pub container_image: String,

    /// Memory limit of one user container, in MiB (16 or more; swap is set equal: no swap).
    #[arg(long, env = "CONTAINER_MEMORY_MB", default_value_t = 512, help_heading = POOL)]
    pub container_memory_mb: u64,

    /// CPU limit of one user container, in cores (above 0, up to 1024).
    #[arg(long, env = "CONTAINER_CPUS", default_value_t = 0.5, help_heading = POOL)]
    pub container_cpus: f64,

    /// Process limit of one user container (16 or more).
    #[arg(long, env = "CONTAINER_PIDS_LIMIT", default_value_t = 1024, help_heading = POOL)]
    pub container_pids_limit: i64,

    /// Processes one Linux user may run inside a container (ulimit nproc; 8 or more).
    #[arg(long, env = "USER_NPROC", default_value_t = 256, help_heading = POOL)]
    pub user_nproc: i64,

    /// PTYs the users of one container may hold at once (8-4096; /dev/pts is remounted with
    /// `max=`); the sessions' own PTYs come from another instance, of USERS_PER_CONTAINER x
    /// MAX_SESSIONS_PER_USER (at most MAX_SESSIONS) plus USERS_PER_CONTAINER. MAX_CONTAINERS
    /// times both must fit the
    /// host's kernel.pty.max minus its reserve and the PTYs in use, or the server refuses to start.
    #[arg(long, env = "PTYS_PER_CONTAINER", default_value_t = 64, help_heading = POOL,
          value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub ptys_per_container: u32,

    /// Disk quota of each account on the workspace volume in MiB (0 = none; up to 16777216). The
    /// volume must be btrfs with quotas enabled, or ext4/XFS with user quotas on
    /// (docs/isolation.md); set before an account is created in a container.
    #[arg(long, env = "USER_DISK_QUOTA_MB", default_value_t = 0, help_heading = POOL,
          value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    pub user_disk_quota_mb: u64,

    /// First UID given to a user account (10000-2000000000; UIDs are global across the pool and
    /// never reused; keep ranges of several pools on one host apart: per-user process limits
    /// count per UID).
    #[arg(long, env = "UID_BASE", default_value_t = 200_000, help_heading = POOL)]
    pub uid_base: u32,

    /// Docker volume mounted at /workspace in every container of the pool.
    #[arg(long, env = "WORKSPACE_VOLUME", default_value = "termpool-workspace", help_heading = POOL)]
    pub workspace_volume: String,

    /// Network mode of the user containers (bridge, none, or a network name).
    #[arg(long, env = "CONTAINER_NETWORK", default_value = "bridge", help_heading = POOL)]
    pub container_network: String,

    /// Start container sessions through a session agent in each container, which hands the PTY to
    /// the server over a unix socket (true), or as one `docker exec` per session (false: slower,
    /// but needs no directory shared with the containers, e.g. with a remote DOCKER_HOST).
    #[arg(long, env = "SESSION_AGENT", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", help_heading = POOL)]
    pub session_agent: bool,

    /// Host directory for the agents' sockets, one subdirectory per container bind-mounted into
    /// it; must be the same path for the server and the Docker engine [default: DATA_DIR/agents].
    #[arg(long, env = "AGENT_DIR", help_heading = POOL)]
    pub agent_dir: Option<PathBuf>,

    /// Name prefix (and pool label) of the user containers.
    #[arg(long, env = "CONTAINER_PREFIX", default_value = "termpool-user", help_heading = POOL)]
    pub container_prefix: String,

    /// What runs the pool's slots: `docker` (a container per slot on the server's engine) or
    /// `swarm` (a service per slot on the Swarm whose manager is the server's engine).
    #[arg(long, env = "ORCHESTRATOR", value_enum, default_value_t = Orchestrator::Docker,
          help_heading = SWARM)]
    pub orchestrator: Orchestrator,

    /// Swarm: the attachable overlay network the server and the user services share (the
    /// server must be attached to it).
    #[arg(long, env = "AGENT_NETWORK", default_value = "termpool-agents", help_heading = SWARM)]
    pub agent_network: String,

    /// Swarm: a file of 32 or more random bytes from which each slot's agent key is derived
    /// (required with ORCHESTRATOR=swarm; never logged).
    #[arg(long, env = "MASTER_KEY_FILE", help_heading = SWARM)]
    pub master_key_file: Option<PathBuf>,

    /// Swarm: slots one node runs at most (0-1000; 0 = let the scheduler spread them).
    #[arg(long, env = "SLOTS_PER_NODE", default_value_t = 0, help_heading = SWARM,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub slots_per_node: u64,

    /// Swarm: WORKSPACE_VOLUME is on a volume driver shared by every node, so slots are not
    /// pinned to a node and move with their files when one goes down (false: each node keeps
    /// the homes of its slots, which wait for it).
    #[arg(long, env = "SHARED_WORKSPACE_VOLUME", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", help_heading = SWARM)]
    pub shared_workspace_volume: bool,

    /// Swarm: milliseconds (100-60000) a connection to a slot's agent may take before its users
    /// are told that the host holding their files is down.
    #[arg(long, env = "AGENT_CONNECT_TIMEOUT_MS", default_value_t = 2000, help_heading = SWARM,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub agent_connect_timeout_ms: u64,

    /// Seconds (1 or more) between the server's WebSocket pings; a peer silent for 3 intervals is
    /// closed.
    #[arg(long, env = "PING_INTERVAL_SECS", default_value_t = 30, help_heading = TUNING,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval_secs: u64,

    /// Microseconds (0-1000000) a worker thread keeps polling for events instead of sleeping
    /// after a keystroke, so that its echo (and the next keystroke) need not wake it; three
    /// times as long after Enter, for the command's output and prompt (0 = never).
    // Polling beyond a few milliseconds after a keystroke only burns CPU; a second is absurd.
    #[arg(long, env = "BUSY_POLL_US", default_value_t = 200, help_heading = TUNING,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub busy_poll_us: u64,

    /// A file holding the admin API's bearer token (16 or more characters); without it the admin
    /// API (/admin/...) is off.
    #[arg(long, env = "ADMIN_TOKEN_FILE", help_heading = OPERATOR)]
    pub admin_token_file: Option<PathBuf>,

    /// Client addresses or CIDR blocks the admin API answers, comma-separated; any other gets 403,
    /// token or not.
    #[arg(long, env = "ADMIN_ALLOWED_ADDRESSES", value_delimiter = ',',
          default_value = "127.0.0.0/8,::1", help_heading = OPERATOR)]
    pub admin_allowed_addresses: Vec<String>,

    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "WORKERS", default_value_t = 0, help_heading = TUNING)]
    pub workers: usize,
}

/// What runs the pool's slots (ORCHESTRATOR).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orchestrator {
    Docker,
    Swarm,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    Cookie,
    Header,
    Token,
}
