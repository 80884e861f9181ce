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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::super::{Args, BackendOptions};
    use crate::pool::PoolConfig;

    fn pool(args: &[&str]) -> Result<PoolConfig, String> {
        let all = [
            "termpool",
            "--use-containers",
            "--data-dir",
            "/tmp/tp-swarm-cfg",
        ];
        let args = all.iter().chain(args).copied();
        let options = Args::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .into_options()
            .map_err(|e| e.to_string())?;
        match options.backend {
            BackendOptions::Containers(pool) => Ok(*pool),
            BackendOptions::Local { .. } => Err("not container mode".into()),
        }
    }

    /// A master key file of `len` bytes, removed when dropped.
    struct KeyFile(std::path::PathBuf);

    impl KeyFile {
        fn arg(&self) -> &str {
            self.0.to_str().unwrap_or_default()
        }
    }

    impl Drop for KeyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn key_file(len: usize) -> KeyFile {
        let n: u64 = rand::random();
        let path = std::env::temp_dir().join(format!("tp-master-{n:x}.key"));
        let mut f = std::fs::File::create(&path).expect("key file");
        f.write_all(&vec![7u8; len]).expect("write key");
        KeyFile(path)
    }

    #[test]
    fn docker_is_the_default_orchestrator() {
        assert!(pool(&[]).expect("defaults").swarm.is_none());
    }

    #[test]
    fn swarm_needs_a_master_key_of_32_bytes() {
        let e = pool(&["--orchestrator", "swarm"]).unwrap_err();
        assert!(
            e.contains("MASTER_KEY_FILE") && e.contains("required"),
            "{e}"
        );
        let short = key_file(31);
        let e = pool(&["--orchestrator", "swarm", "--master-key-file", short.arg()]).unwrap_err();
        assert!(
            e.contains("MASTER_KEY_FILE") && e.contains("31 bytes"),
            "{e}"
        );
        let e = pool(&[
            "--orchestrator",
            "swarm",
            "--master-key-file",
            "/nonexistent/k",
        ]);
        assert!(e.unwrap_err().contains("MASTER_KEY_FILE"));
    }

    #[test]
    fn swarm_settings_reach_the_pool_and_the_key_is_never_printed() {
        let key = key_file(32);
        let cfg = pool(&[
            "--orchestrator",
            "swarm",
            "--master-key-file",
            key.arg(),
            "--slots-per-node",
            "3",
            "--shared-workspace-volume",
            "--agent-connect-timeout-ms",
            "500",
            "--agent-network",
            "agents-x",
        ])
        .expect("valid");
        let swarm = cfg.swarm.clone().expect("swarm settings");
        assert_eq!(swarm.master_key.bytes(), &[7u8; 32][..]);
        assert_eq!((swarm.slots_per_node, swarm.shared_volume), (3, true));
        assert_eq!(swarm.connect_timeout.as_millis(), 500);
        assert_eq!(swarm.network, "agents-x");
        assert_eq!(cfg.agent_dir, None, "agents are reached over the network");
        let shown = format!("{cfg:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("7, 7, 7"),
            "{shown}"
        );
    }

    #[test]
    fn swarm_refuses_what_it_cannot_do() {
        let key = key_file(32);
        let base = ["--orchestrator", "swarm", "--master-key-file", key.arg()];
        let with = |extra: &[&str]| pool(&[&base[..], extra].concat());
        let e = with(&["--user-disk-quota-mb", "10"]).unwrap_err();
        assert!(e.contains("USER_DISK_QUOTA_MB"), "{e}");
        let e = with(&["--agent-network", "bad name"]).unwrap_err();
        assert!(e.contains("AGENT_NETWORK"), "{e}");
        assert!(with(&["--agent-connect-timeout-ms", "50"]).is_err());
        assert!(with(&["--slots-per-node", "1001"]).is_err());
    }
}
