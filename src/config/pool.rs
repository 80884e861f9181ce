//! The container pool's settings (container mode only), checked: sizes and limits, the UID range
//! the accounts take, names Docker accepts, and the agents' directory.

use std::path::PathBuf;

use super::{docker_name, invalid, Args, ConfigError};
use crate::pool::{PoolConfig, AGENT_SOCKET};

impl Args {
    /// The pool's settings, checked (container mode only: local mode ignores them).
    pub(super) fn pool_config(&self) -> Result<PoolConfig, ConfigError> {
        self.check_pool()?;
        let swarm = self.swarm()?;
        // On Swarm the agents are reached over the network, never through a shared directory.
        let agent_dir = match swarm {
            Some(_) => None,
            None => self.agent_dir()?,
        };
        Ok(PoolConfig {
            max_containers: self.max_containers,
            users_per_container: self.users_per_container,
            image: self.container_image.clone(),
            memory_bytes: (self.container_memory_mb * 1024 * 1024) as i64,
            nano_cpus: (self.container_cpus * 1e9) as i64,
            pids_limit: self.container_pids_limit,
            user_nproc: self.user_nproc,
            ptys_per_container: self.ptys_per_container,
            agent_ptys: self.agent_ptys(),
            user_disk_quota_mb: self.user_disk_quota_mb,
            volume: self.workspace_volume.clone(),
            network_mode: self.container_network.clone(),
            name_prefix: self.container_prefix.clone(),
            pool_label: self.container_prefix.clone(),
            agent_dir,
            // SAFETY: geteuid has no memory effects.
            agent_peer_uid: unsafe { libc::geteuid() },
            uid_min: self.uid_base,
            swarm,
            ..PoolConfig::default()
        })
    }

    /// The `max=` of a container's devpts instance for sessions: the sessions it may hold at once
    /// (its users' sessions, no more than the server's), and one more per user, for a session
    /// that starts while the one it replaces (a detached one past the limit) still ends.
    fn agent_ptys(&self) -> u32 {
        let per_container = self.users_per_container * self.max_sessions_per_user;
        let sessions = match self.max_sessions {
            0 => per_container,
            all => per_container.min(all),
        };
        u32::try_from(sessions + self.users_per_container).unwrap_or(u32::MAX)
    }

    fn check_pool(&self) -> Result<(), ConfigError> {
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
        // SAFETY: getuid and geteuid have no memory effects.
        let own = unsafe { [libc::getuid(), libc::geteuid()] };
        check_uid_range(self.uid_base, &own)?;
        if self.user_nproc < 8 {
            return Err(invalid("USER_NPROC", "must be at least 8"));
        }
        if !docker_name(&self.container_prefix) {
            return Err(invalid("CONTAINER_PREFIX", "use letters, digits, - _ ."));
        }
        if !docker_name(&self.workspace_volume) {
            return Err(invalid("WORKSPACE_VOLUME", "use letters, digits, - _ ."));
        }
        Ok(())
    }

    /// The agents' directory as an absolute path (a bind mount's source must be), or `None`
    /// without agents; refused if its socket paths would not fit.
    fn agent_dir(&self) -> Result<Option<PathBuf>, ConfigError> {
        if !self.session_agent {
            return Ok(None);
        }
        let Some(dir) = self
            .agent_dir
            .clone()
            .or_else(|| Some(self.data_dir()?.join("agents")))
        else {
            return Ok(None);
        };
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        // Room for "/<container>/agent.sock" within a unix socket path's 108 bytes.
        let longest_name = format!(
            "{}-{}",
            self.container_prefix,
            self.max_containers.saturating_sub(1)
        );
        let longest = dir.join(longest_name).join(AGENT_SOCKET);
        if longest.as_os_str().len() >= 100 {
            return Err(invalid(
                "AGENT_DIR",
                format!("{} is too long for a unix socket path", longest.display()),
            ));
        }
        Ok(Some(dir))
    }
}

/// Accounts take UIDs from `uid_base` upward, forever: a range holding the server's own uid (a
/// user could then signal or trace the server and own its files) or a system uid is refused.
pub(super) fn check_uid_range(uid_base: u32, own: &[u32]) -> Result<(), ConfigError> {
    if uid_base < 1000 {
        return Err(invalid(
            "UID_BASE",
            "system UIDs (below 1000) cannot be accounts",
        ));
    }
    if let Some(uid) = own.iter().find(|&&uid| uid >= uid_base) {
        return Err(invalid(
            "UID_BASE",
            format!("the server runs as uid {uid}, inside the accounts' range {uid_base}.."),
        ));
    }
    Ok(())
}
