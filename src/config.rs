//! The server's settings: the command line and environment (`args`) turned once, at start, into
//! typed and validated options, so that a bad setting stops the server naming its variable.

mod admin;
mod args;
mod pool;
mod swarm;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use admin::AdminOptions;
pub use args::{Args, IdentityMode, Orchestrator};

use crate::identity::{Mode, TokenFile, TrustedProxies};
use crate::pool::PoolConfig;
use crate::session::Limits;

/// Everything the server was told, checked; each part goes to the layer that uses it.
pub struct Options {
    pub server: ServerOptions,
    pub identity: Mode,
    pub limits: Limits,
    pub backend: BackendOptions,
    /// Persistent state (the cookie key, the placement store); `None`: nothing outlives the process.
    pub data_dir: Option<PathBuf>,
}

/// What the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bind: SocketAddr,
    /// Worker threads, resolved (never 0).
    pub workers: usize,
    /// `"local"` or `"container"`, for the log.
    pub mode_name: &'static str,
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub busy_poll: Duration,
    /// Extra origins allowed to open a WebSocket, without a trailing slash.
    pub allowed_origins: Vec<String>,
    /// The host names the server answers to, normalized; `None` means any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Whether any IP address literal is also answered to (container mode on a public address).
    pub ip_literal_hosts: bool,
    pub trusted_proxies: TrustedProxies,
    /// The path prefix of every route: starts and ends with `/` (`/` alone at the root).
    pub base_path: String,
    pub max_upload_bytes: u64,
    /// Uploads one user may have under way at once.
    pub max_uploads_per_user: usize,
    pub max_download_mb: u64,
    /// The admin API's settings; `None`: it is off.
    pub admin: Option<AdminOptions>,
}

/// Where sessions run.
pub enum BackendOptions {
    Local { shell: Vec<String> },
    Containers(Box<PoolConfig>),
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

impl Args {
    /// Checks every setting and turns them into options; refuses settings that parse but cannot
    /// work.
    pub fn into_options(self) -> Result<Options, ConfigError> {
        let shell: Vec<String> = self.shell.split_whitespace().map(str::to_owned).collect();
        if shell.is_empty() {
            return Err(invalid("SHELL_COMMAND", "is empty"));
        }
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| invalid("TRUSTED_PROXIES", e))?;
        let backend = match self.use_containers {
            true => BackendOptions::Containers(Box::new(self.pool_config()?)),
            false => BackendOptions::Local { shell },
        };
        Ok(Options {
            identity: self.identity(&trusted_proxies)?,
            server: self.server_options(trusted_proxies)?,
            limits: self.limits(),
            data_dir: self.data_dir(),
            backend,
        })
    }

    fn server_options(
        &self,
        trusted_proxies: TrustedProxies,
    ) -> Result<ServerOptions, ConfigError> {
        let bind = self.bind_address();
        Ok(ServerOptions {
            bind: SocketAddr::new(bind, self.port),
            workers: match self.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            mode_name: if self.use_containers {
                "container"
            } else {
                "local"
            },
            max_frame_bytes: self.max_frame_bytes,
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            busy_poll: Duration::from_micros(self.busy_poll_us),
            allowed_origins: self.allowed_origins()?,
            allowed_hosts: self.allowed_hosts(bind)?,
            ip_literal_hosts: self.pool_on_public_address(bind),
            trusted_proxies,
            base_path: base_path(&self.base_path)?,
            max_upload_bytes: self.max_upload_mb << 20,
            max_uploads_per_user: self.max_uploads_per_user as usize,
            max_download_mb: self.max_download_mb,
            admin: self.admin()?,
        })
    }

    fn allowed_origins(&self) -> Result<Vec<String>, ConfigError> {
        let origins = self
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty());
        origins
            .map(
                |origin| match origin.starts_with("http://") || origin.starts_with("https://") {
                    true => Ok(origin.to_owned()),
                    false => Err(invalid(
                        "ALLOWED_ORIGINS",
                        format!("{origin:?} is not an http(s) origin"),
                    )),
                },
            )
            .collect()
    }

    /// The host names the server answers to; `None` means any.
    fn allowed_hosts(&self, bind: IpAddr) -> Result<Option<Vec<String>>, ConfigError> {
        for host in self.allowed_hosts.iter().map(|h| h.trim()) {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(invalid(
                    "ALLOWED_HOSTS",
                    format!("{host:?} is not a host name (write names, without scheme or port)"),
                ));
            }
        }
        let named: Vec<String> = self
            .allowed_hosts
            .iter()
            .map(|h| normalize_host(h.trim().trim_start_matches('[').trim_end_matches(']')))
            .collect();
        if named.iter().any(|h| h == "*") {
            return Ok(None);
        }
        let pool_public = self.pool_on_public_address(bind);
        if !named.is_empty() {
            let local = pool_public && !named.iter().any(|h| h == "localhost");
            return Ok(Some(
                named
                    .into_iter()
                    .chain(local.then(|| "localhost".into()))
                    .collect(),
            ));
        }
        if pool_public {
            log::warn!(
                "ALLOWED_HOSTS is not set: answering only to IP addresses and localhost, so that \
                 no web page can reach this server under a name of its own (DNS rebinding). Set \
                 ALLOWED_HOSTS to the names users reach the server by"
            );
        }
        // Reachable only from this machine: only its own names. A pool on a public address: its
        // IP addresses and localhost, and the names configured. Local mode reachable from
        // elsewhere: any, as before.
        let own = || ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        Ok((bind.is_loopback() || pool_public).then(own))
    }

    /// A pool reachable from elsewhere: any name would let a page whose name an attacker rebinds
    /// to the server's address be this server's own origin; IP literals cannot be rebound.
    fn pool_on_public_address(&self, bind: IpAddr) -> bool {
        self.use_containers && !bind.is_loopback()
    }

    /// The identity mode with what it needs, loaded and checked.
    fn identity(&self, trusted: &TrustedProxies) -> Result<Mode, ConfigError> {
        match self.identity_mode {
            IdentityMode::Cookie => Ok(Mode::Cookie),
            IdentityMode::Header => {
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
                let trusted = trusted.clone();
                Ok(Mode::Header { header, trusted })
            }
            IdentityMode::Token => {
                let path = self
                    .token_file
                    .as_ref()
                    .ok_or_else(|| invalid("TOKEN_FILE", "token mode needs a token file"))?;
                let tokens = TokenFile::open(path)
                    .map_err(|e| invalid("TOKEN_FILE", format!("{}: {e}", path.display())))?;
                Ok(Mode::Token(tokens))
            }
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_live: self.max_sessions_per_user,
            max_per_minute: self.max_new_sessions_per_minute,
            max_total: self.max_sessions,
            max_newcomers_per_minute: self.max_new_identities_per_address_per_minute,
            max_per_address: self.max_sessions_per_address,
            max_identities_per_address: self.max_identities_per_address,
            ipv6_prefix_len: self.ipv6_prefix_len,
            idle_detach: Duration::from_secs(self.idle_session_secs),
            grace: Duration::from_secs(self.reattach_grace_secs),
            idle_reap: Duration::from_secs(self.idle_reap_secs),
        }
    }

    fn bind_address(&self) -> IpAddr {
        self.bind.unwrap_or(if self.use_containers {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        })
    }

    /// Where persistent state lives: DATA_DIR, or ./termpool-data in container mode.
    fn data_dir(&self) -> Option<PathBuf> {
        match (&self.data_dir, self.use_containers) {
            (Some(dir), _) => Some(dir.clone()),
            (None, true) => Some(PathBuf::from("termpool-data")),
            (None, false) => None,
        }
    }
}

/// `BASE_PATH` made `/a/b/`: one leading and one trailing slash, plain path segments between.
fn base_path(raw: &str) -> Result<String, ConfigError> {
    let segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    let plain = |s: &&str| {
        *s != "."
            && *s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if !raw.starts_with('/') || !segments.iter().all(plain) {
        return Err(invalid(
            "BASE_PATH",
            format!("{raw:?} is not a path like /terminal/ (letters, digits, - . _ ~)"),
        ));
    }
    Ok(segments.iter().fold("/".to_owned(), |p, s| p + s + "/"))
}

/// A name Docker accepts for a container prefix or a volume.
fn docker_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests;
