//! One `Config` for the whole server, read from command-line flags and the environment variables
//! documented in the README. Every value is validated here, at start, so that a bad setting stops
//! the server with a message naming the variable instead of failing later on a user's request.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::identity::{IpNet, Mode, TokenTable};
use crate::pool::{PoolConfig, AGENT_SOCKET};

/// termpool: a multi-user web terminal server.
#[derive(Parser, Debug, Clone)]
#[command(version, about, long_about = None)]
pub struct Config {
    /// Run each session in a Docker container of the pool (true) or as a local PTY (false).
    #[arg(long, env = "USE_CONTAINERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub use_containers: bool,

    /// Address to listen on [default: 127.0.0.1 in local mode, 0.0.0.0 in container mode].
    #[arg(long, env = "BIND_ADDRESS")]
    pub bind: Option<IpAddr>,

    /// TCP port (0 picks a free one; the chosen address is printed on stdout).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Shell command line of a local-mode session (split on whitespace).
    #[arg(long, env = "SHELL_COMMAND", default_value = "/bin/bash -l")]
    pub shell: String,

    /// How users are identified: cookie (anonymous per browser), header (from a trusted auth proxy),
    /// or token (static bearer tokens from TOKEN_FILE).
    #[arg(long, env = "IDENTITY_MODE", value_enum, default_value_t = IdentityMode::Cookie)]
    pub identity_mode: IdentityMode,

    /// Header mode: the header in which the auth proxy names the user.
    #[arg(long, env = "IDENTITY_HEADER", default_value = "X-Forwarded-User")]
    pub identity_header: String,

    /// Addresses or CIDR blocks of the reverse proxies in front of the server, comma-separated.
    /// From them alone are believed: X-Forwarded-For (the client's address, for per-address
    /// limits), X-Forwarded-Proto or Forwarded (https: the cookie gets `Secure`), and in header
    /// mode the identity header.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Token mode: a file of `user:token` lines (tokens of 16+ characters).
    #[arg(long, env = "TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Extra origins allowed to open a WebSocket, comma-separated (the server's own is always allowed).
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_origins: Vec<String>,

    /// Host names the server answers to, comma-separated, `*` for any [default: localhost,
    /// 127.0.0.1 and ::1 when listening on a loopback address, else any]. Any other `Host` is
    /// refused with 403: a web page whose own name resolves to this address (DNS rebinding) would
    /// otherwise be this server's own origin.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Largest WebSocket frame accepted from a client, in bytes; a larger one closes the socket (1009).
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,

    /// Live sessions one user may hold at once; one more is refused with 429.
    #[arg(long, env = "MAX_SESSIONS_PER_USER", default_value_t = 10)]
    pub max_sessions_per_user: usize,

    /// New sessions one user may open per minute; more are refused with 429 (0 = no limit).
    #[arg(long, env = "MAX_NEW_SESSIONS_PER_MINUTE", default_value_t = 60)]
    pub max_new_sessions_per_minute: u32,

    /// Live sessions on the whole server, of all users (detached ones count); one more is
    /// refused with 503 (0 = no limit).
    #[arg(long, env = "MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,

    /// Cookie mode: new anonymous users one client address (an IPv6 client: its /64) may start
    /// sessions for per minute; more are refused with 429 (0 = no limit). Anyone gets a new
    /// identity by sending no cookie: without this, per-user limits limit nothing for a script.
    #[arg(
        long,
        env = "MAX_NEW_IDENTITIES_PER_ADDRESS_PER_MINUTE",
        default_value_t = 10
    )]
    pub max_new_identities_per_address_per_minute: u32,

    /// Seconds a session whose socket dropped waits for a re-attach before it is hung up (0: at once).
    #[arg(long, env = "REATTACH_GRACE_SECS", default_value_t = 300)]
    pub reattach_grace_secs: u64,

    /// Seconds an account may have no live session before its leftover processes are ended.
    #[arg(long, env = "IDLE_REAP_SECS", default_value_t = 86400)]
    pub idle_reap_secs: u64,

    /// Seconds between the server's WebSocket pings; a peer silent for 3 intervals is closed.
    #[arg(long, env = "PING_INTERVAL_SECS", default_value_t = 30)]
    pub ping_interval_secs: u64,

    /// Microseconds a worker thread keeps polling for events instead of sleeping after a keystroke,
    /// so that its echo (and the next keystroke) need not wake it (0 = never).
    #[arg(long, env = "BUSY_POLL_US", default_value_t = 200)]
    pub busy_poll_us: u64,

    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Directory for persistent state: the cookie key, and the placement store in container mode
    /// [default: none in local mode (cookies end with the process), ./termpool-data in container mode].
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Number of containers in the pool.
    #[arg(long, env = "MAX_CONTAINERS", default_value_t = 10)]
    pub max_containers: usize,

    /// Users placed on one container (1 = a container per user).
    #[arg(long, env = "USERS_PER_CONTAINER", default_value_t = 20)]
    pub users_per_container: usize,

    /// Image of the user containers (built from Dockerfile.user).
    #[arg(
        long,
        env = "CONTAINER_IMAGE",
        default_value = "terminal-multi-user:latest"
    )]
    pub container_image: String,

    /// Memory limit of one user container, in MiB (swap is set equal: no swap).
    #[arg(long, env = "CONTAINER_MEMORY_MB", default_value_t = 512)]
    pub container_memory_mb: u64,

    /// CPU limit of one user container, in cores.
    #[arg(long, env = "CONTAINER_CPUS", default_value_t = 0.5)]
    pub container_cpus: f64,

    /// Process limit of one user container.
    #[arg(long, env = "CONTAINER_PIDS_LIMIT", default_value_t = 1024)]
    pub container_pids_limit: i64,

    /// Processes one Linux user may run inside a container (ulimit nproc).
    #[arg(long, env = "USER_NPROC", default_value_t = 256)]
    pub user_nproc: i64,

    /// First UID given to a user account (UIDs are global across the pool and never reused; keep
    /// ranges of several pools on one host apart: per-user process limits count per UID).
    #[arg(long, env = "UID_BASE", default_value_t = 200_000)]
    pub uid_base: u32,

    /// Docker volume mounted at /workspace in every container of the pool.
    #[arg(long, env = "WORKSPACE_VOLUME", default_value = "termpool-workspace")]
    pub workspace_volume: String,

    /// Network mode of the user containers (bridge, none, or a network name).
    #[arg(long, env = "CONTAINER_NETWORK", default_value = "bridge")]
    pub container_network: String,

    /// Start container sessions through a session agent in each container, which hands the PTY to
    /// the server over a unix socket (true), or as one `docker exec` per session (false: slower,
    /// but needs no directory shared with the containers, e.g. with a remote DOCKER_HOST).
    #[arg(long, env = "SESSION_AGENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub session_agent: bool,

    /// Host directory for the agents' sockets, one subdirectory per container bind-mounted into
    /// it; must be the same path for the server and the Docker engine [default: DATA_DIR/agents].
    #[arg(long, env = "AGENT_DIR")]
    pub agent_dir: Option<PathBuf>,

    /// Name prefix (and pool label) of the user containers.
    #[arg(long, env = "CONTAINER_PREFIX", default_value = "termpool-user")]
    pub container_prefix: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    Cookie,
    Header,
    Token,
}

/// A setting that cannot work, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// A host name as compared: lower case, without the final dot of a fully qualified name.
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl Config {
    /// Refuses settings that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shell_argv().is_empty() {
            return Err(invalid("SHELL_COMMAND", "is empty"));
        }
        if !(1024..=64 << 20).contains(&self.max_frame_bytes) {
            return Err(invalid("MAX_FRAME_BYTES", "must be 1024..=67108864"));
        }
        if self.max_sessions_per_user == 0 {
            return Err(invalid("MAX_SESSIONS_PER_USER", "must be at least 1"));
        }
        if self.idle_reap_secs == 0 {
            return Err(invalid("IDLE_REAP_SECS", "must be at least 1"));
        }
        if self.ping_interval_secs == 0 {
            return Err(invalid("PING_INTERVAL_SECS", "must be at least 1"));
        }
        // Polling beyond a few milliseconds after a keystroke only burns CPU; a second is absurd.
        if self.busy_poll_us > 1_000_000 {
            return Err(invalid("BUSY_POLL_US", "must be 0..=1000000"));
        }
        for origin in self.extra_origins() {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "ALLOWED_ORIGINS",
                    format!("{origin:?} is not an http(s) origin"),
                ));
            }
        }
        for host in self.allowed_hosts.iter().map(|h| h.trim()) {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(invalid(
                    "ALLOWED_HOSTS",
                    format!("{host:?} is not a host name (write names, without scheme or port)"),
                ));
            }
        }
        if self.use_containers {
            self.validate_pool()?;
        }
        self.trusted_proxies()?;
        self.identity_mode()?;
        Ok(())
    }

    /// The reverse proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .map_err(|e| invalid("TRUSTED_PROXIES", e))
            })
            .collect()
    }

    /// The identity mode with what it needs, loaded and checked.
    pub fn identity_mode(&self) -> Result<Mode, ConfigError> {
        match self.identity_mode {
            IdentityMode::Cookie => Ok(Mode::Cookie),
            IdentityMode::Header => {
                let trusted = self.trusted_proxies()?;
                if trusted.is_empty() {
                    return Err(invalid(
                        "TRUSTED_PROXIES",
                        "header mode needs the proxies' addresses",
                    ));
                }
                let header = self.identity_header.trim().to_ascii_lowercase();
                if actix_web::http::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(invalid("IDENTITY_HEADER", "not a header name"));
                }
                Ok(Mode::Header { header, trusted })
            }
            IdentityMode::Token => {
                let path = self
                    .token_file
                    .as_ref()
                    .ok_or_else(|| invalid("TOKEN_FILE", "token mode needs a token file"))?;
                let tokens = TokenTable::load(path)
                    .map_err(|e| invalid("TOKEN_FILE", format!("{}: {e}", path.display())))?;
                Ok(Mode::Token(tokens))
            }
        }
    }

    fn validate_pool(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_containers) {
            return Err(invalid("MAX_CONTAINERS", "must be 1..=1000"));
        }
        if !(1..=1000).contains(&self.users_per_container) {
            return Err(invalid("USERS_PER_CONTAINER", "must be 1..=1000"));
        }
        if self.container_memory_mb < 16 {
            return Err(invalid("CONTAINER_MEMORY_MB", "must be at least 16"));
        }
        if !(self.container_cpus > 0.0 && self.container_cpus <= 1024.0) {
            return Err(invalid("CONTAINER_CPUS", "must be > 0"));
        }
        if self.container_pids_limit < 16 {
            return Err(invalid("CONTAINER_PIDS_LIMIT", "must be at least 16"));
        }
        if !(10_000..=2_000_000_000).contains(&self.uid_base) {
            return Err(invalid("UID_BASE", "must be within 10000..=2000000000"));
        }
        if self.user_nproc < 8 {
            return Err(invalid("USER_NPROC", "must be at least 8"));
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !name_ok(&self.container_prefix) {
            return Err(invalid("CONTAINER_PREFIX", "use letters, digits, - _ ."));
        }
        if let Some(dir) = self.agent_dir_resolved() {
            // Room for "/<container>/agent.sock" within a unix socket path's 108 bytes.
            let longest = dir.join(self.longest_container_name()).join(AGENT_SOCKET);
            if longest.as_os_str().len() >= 100 {
                return Err(invalid(
                    "AGENT_DIR",
                    format!("{} is too long for a unix socket path", longest.display()),
                ));
            }
        }
        if !name_ok(&self.workspace_volume) {
            return Err(invalid("WORKSPACE_VOLUME", "use letters, digits, - _ ."));
        }
        Ok(())
    }

    pub fn bind_address(&self) -> IpAddr {
        self.bind.unwrap_or(if self.use_containers {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        })
    }

    /// The host names the server answers to; `None` means any.
    pub fn host_names(&self) -> Option<Vec<String>> {
        let named: Vec<String> = self
            .allowed_hosts
            .iter()
            .map(|h| normalize_host(h.trim().trim_start_matches('[').trim_end_matches(']')))
            .collect();
        if named.iter().any(|h| h == "*") {
            return None;
        }
        if !named.is_empty() {
            return Some(named);
        }
        // Reachable only from this machine: only its own names. Reachable from elsewhere: whoever
        // can rebind a name to it could as well connect to it directly.
        self.bind_address()
            .is_loopback()
            .then(|| ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec())
    }

    pub fn shell_argv(&self) -> Vec<String> {
        self.shell.split_whitespace().map(str::to_owned).collect()
    }

    pub fn extra_origins(&self) -> impl Iterator<Item = &str> {
        self.allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// Where persistent state lives: DATA_DIR, or ./termpool-data in container mode.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match (&self.data_dir, self.use_containers) {
            (Some(dir), _) => Some(dir.clone()),
            (None, true) => Some(PathBuf::from("termpool-data")),
            (None, false) => None,
        }
    }

    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            max_containers: self.max_containers,
            users_per_container: self.users_per_container,
            image: self.container_image.clone(),
            memory_bytes: (self.container_memory_mb * 1024 * 1024) as i64,
            nano_cpus: (self.container_cpus * 1e9) as i64,
            pids_limit: self.container_pids_limit,
            user_nproc: self.user_nproc,
            volume: self.workspace_volume.clone(),
            network_mode: self.container_network.clone(),
            name_prefix: self.container_prefix.clone(),
            pool_label: self.container_prefix.clone(),
            agent_dir: self.agent_dir_resolved(),
            // SAFETY: geteuid has no memory effects.
            agent_peer_uid: unsafe { libc::geteuid() },
            uid_min: self.uid_base,
            ..PoolConfig::default()
        }
    }

    /// The agents' directory as an absolute path (a bind mount's source must be), or `None`
    /// without agents.
    fn agent_dir_resolved(&self) -> Option<PathBuf> {
        if !self.session_agent {
            return None;
        }
        let dir = match &self.agent_dir {
            Some(dir) => dir.clone(),
            None => self.data_dir()?.join("agents"),
        };
        Some(std::path::absolute(&dir).unwrap_or(dir))
    }

    /// The longest container name of the pool.
    fn longest_container_name(&self) -> String {
        format!(
            "{}-{}",
            self.container_prefix,
            self.max_containers.saturating_sub(1)
        )
    }

    pub fn mode_name(&self) -> &'static str {
        if self.use_containers {
            "container"
        } else {
            "local"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("termpool").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn host_names_default_to_loopback_names_only_on_loopback() {
        let names = parse(&[]).host_names().unwrap();
        assert_eq!(names, ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(parse(&["--bind", "0.0.0.0"]).host_names(), None);
        let named = parse(&["--allowed-hosts", "Term.Example.ORG.,[::1]"]);
        assert_eq!(named.host_names().unwrap(), ["term.example.org", "::1"]);
        assert_eq!(parse(&["--allowed-hosts", "a,*"]).host_names(), None);
        let err = parse(&["--allowed-hosts", "https://x.org"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "ALLOWED_HOSTS");
    }

    #[test]
    fn defaults_are_valid_and_local_binds_loopback() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.bind_address().to_string(), "127.0.0.1");
        assert_eq!(c.max_frame_bytes, 1 << 20);
    }

    #[test]
    fn agent_directories_are_absolute_and_fit_a_socket_path() {
        let c = parse(&["--use-containers", "true", "--data-dir", "relative/data"]);
        let dir = c.pool_config().agent_dir.unwrap();
        assert!(
            dir.is_absolute() && dir.ends_with("relative/data/agents"),
            "{dir:?}"
        );
        let c = parse(&["--use-containers", "true", "--session-agent", "false"]);
        assert_eq!(c.pool_config().agent_dir, None);
        let long = format!("/{}", "d".repeat(90));
        let err = parse(&["--use-containers", "true", "--agent-dir", &long])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "AGENT_DIR");
    }

    #[test]
    fn container_mode_binds_all_interfaces_by_default() {
        let c = parse(&["--use-containers", "true"]);
        assert_eq!(c.bind_address().to_string(), "0.0.0.0");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = parse(&["--shell", "  "]).validate().unwrap_err();
        assert_eq!(err.var, "SHELL_COMMAND");
        let err = parse(&["--busy-poll-us", "1000001"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "BUSY_POLL_US");
        parse(&["--busy-poll-us", "0"]).validate().unwrap();
        let err = parse(&["--allowed-origins", "evil.com"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "ALLOWED_ORIGINS");
        let err = parse(&["--identity-mode", "header"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "TRUSTED_PROXIES");
        let err = parse(&[
            "--identity-mode",
            "header",
            "--trusted-proxies",
            "10.0.0.0/99",
        ])
        .validate()
        .unwrap_err();
        assert_eq!(err.var, "TRUSTED_PROXIES");
        let err = parse(&["--trusted-proxies", "10.0.0.1,nonsense"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "TRUSTED_PROXIES", "checked in every mode");
        let proxies = parse(&["--trusted-proxies", "10.0.0.0/8, ,::1"]);
        assert_eq!(proxies.trusted_proxies().unwrap().len(), 2);
        let err = parse(&["--identity-mode", "token"]).validate().unwrap_err();
        assert_eq!(err.var, "TOKEN_FILE");
        let err = parse(&["--identity-mode", "token", "--token-file", "/nonexistent"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "TOKEN_FILE");
        let err = parse(&["--use-containers", "true", "--users-per-container", "0"])
            .validate()
            .unwrap_err();
        assert_eq!(err.var, "USERS_PER_CONTAINER");
    }
}
