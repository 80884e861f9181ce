//! The Swarm settings (`ORCHESTRATOR=swarm`): the agents' network, the master key read once from
//! `MASTER_KEY_FILE`, spreading and pinning of slots, the agents' connect timeout.

use std::time::Duration;

use super::args::Orchestrator;
use super::{invalid, Args, ConfigError};
use crate::pool::swarm::{MasterKey, SwarmConfig, MIN_MASTER_KEY_BYTES};

impl Args {
    /// The Swarm settings when the pool runs on Swarm; `None` for a single engine.
    pub(super) fn swarm(&self) -> Result<Option<SwarmConfig>, ConfigError> {
        if self.orchestrator == Orchestrator::Docker {
            return Ok(None);
        }
        if !super::docker_name(&self.agent_network) {
            return Err(invalid("AGENT_NETWORK", "use letters, digits, - _ ."));
        }
        if self.user_disk_quota_mb > 0 {
            return Err(invalid(
                "USER_DISK_QUOTA_MB",
                "quotas are set by a helper container on the server's own engine: not available \
                 with ORCHESTRATOR=swarm",
            ));
        }
        Ok(Some(SwarmConfig {
            network: self.agent_network.clone(),
            master_key: self.master_key()?,
            slots_per_node: self.slots_per_node,
            shared_volume: self.shared_workspace_volume,
            connect_timeout: Duration::from_millis(self.agent_connect_timeout_ms),
        }))
    }

    /// The master key's bytes, refused when missing or short.
    fn master_key(&self) -> Result<MasterKey, ConfigError> {
        let Some(path) = &self.master_key_file else {
            return Err(invalid(
                "MASTER_KEY_FILE",
                "is required with ORCHESTRATOR=swarm (a file of 32 or more random bytes, e.g. \
                 from `head -c 32 /dev/urandom`)",
            ));
        };
        let bytes = std::fs::read(path)
            .map_err(|e| invalid("MASTER_KEY_FILE", format!("{}: {e}", path.display())))?;
        if bytes.len() < MIN_MASTER_KEY_BYTES {
            return Err(invalid(
                "MASTER_KEY_FILE",
                format!(
                    "{} holds {} bytes; it needs {MIN_MASTER_KEY_BYTES} or more random bytes",
                    path.display(),
                    bytes.len()
                ),
            ));
        }
        Ok(MasterKey::new(bytes))
    }
}
