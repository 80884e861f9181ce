//! The host's PTY budget: every devpts instance of every container (the users' /dev/pts and the
//! agent's own) draws on the one `kernel.pty.max`, so the pool's caps must fit what the host leaves.

use super::{PoolConfig, PoolError};

const PTY_SYSCTLS: &str = "/proc/sys/kernel/pty";

/// The host's PTY numbers: the limit, the part kept for the host's own /dev/pts, those in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPtys {
    pub max: u64,
    pub reserve: u64,
    pub in_use: u64,
}

impl HostPtys {
    /// Read from /proc/sys/kernel/pty (not namespaced: a server in a container reads the host's).
    pub fn read() -> std::io::Result<HostPtys> {
        let read = |name: &str| -> std::io::Result<u64> {
            let text = std::fs::read_to_string(format!("{PTY_SYSCTLS}/{name}"))?;
            text.trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("kernel.pty.{name}: {text:?}")))
        };
        Ok(HostPtys {
            max: read("max")?,
            reserve: read("reserve")?,
            in_use: read("nr")?,
        })
    }

    /// What containers may still take: instances other than the host's own cannot use the
    /// reserve.
    pub fn left_for_containers(&self) -> u64 {
        self.max
            .saturating_sub(self.reserve)
            .saturating_sub(self.in_use)
    }
}

/// Refuses a pool whose containers together could take more PTYs than the host has left: both
/// instances of each container count, full.
pub fn check_host_budget(cfg: &PoolConfig) -> Result<(), PoolError> {
    let host = HostPtys::read()
        .map_err(|e| PoolError::Provision(format!("cannot read the host's PTY limits: {e}")))?;
    check_budget(cfg, host)
}

fn check_budget(cfg: &PoolConfig, host: HostPtys) -> Result<(), PoolError> {
    let per_container = u64::from(cfg.ptys_per_container) + u64::from(cfg.agent_ptys);
    let wanted = cfg.max_containers as u64 * per_container;
    if wanted > host.left_for_containers() {
        return Err(PoolError::Provision(format!(
            "MAX_CONTAINERS ({}) x (PTYS_PER_CONTAINER ({}) + the sessions' own PTYs ({}: \
             USERS_PER_CONTAINER x MAX_SESSIONS_PER_USER, at most MAX_SESSIONS, plus \
             USERS_PER_CONTAINER)) = {wanted} PTYs \
             do not fit the host's kernel.pty.max {} minus its reserve {} and the {} in use: \
             lower them or raise kernel.pty.max",
            cfg.max_containers,
            cfg.ptys_per_container,
            cfg.agent_ptys,
            host.max,
            host.reserve,
            host.in_use
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_must_fit_what_the_host_leaves_to_containers() {
        let host = HostPtys {
            max: 4096,
            reserve: 1024,
            in_use: 72,
        };
        assert_eq!(host.left_for_containers(), 3000);
        let cfg = |containers, ptys, agent| PoolConfig {
            max_containers: containers,
            ptys_per_container: ptys,
            agent_ptys: agent,
            ..PoolConfig::default()
        };
        assert!(
            check_budget(&PoolConfig::default(), host).is_ok(),
            "defaults"
        );
        assert!(check_budget(&cfg(10, 256, 44), host).is_ok());
        assert!(check_budget(&cfg(10, 100, 200), host).is_ok());
        let e = check_budget(&cfg(10, 100, 201), host)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PTYS_PER_CONTAINER") && e.contains("MAX_SESSIONS_PER_USER"),
            "{e}"
        );
        assert!(check_budget(&cfg(10, 300, 1), host).is_err(), "users' part");
        assert!(HostPtys::read().is_ok_and(|h| h.max > 0));
    }
}
