//! What a user container is created with (limits, capabilities, labels, mounts, network), as
//! one pure function that can be checked against docs/design.md's isolation settings line by line.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum,
};
use sha2::{Digest, Sha256};

use super::{PoolConfig, AGENT_MOUNT, AGENT_SOCKET, WORKSPACE};

/// Label whose value names the pool a user container belongs to.
pub const LABEL_POOL: &str = "termpool.pool";
/// Label holding a user container's slot index.
pub const LABEL_SLOT: &str = "termpool.slot";
/// Label holding a digest of the settings a user container was created with.
pub const LABEL_CONFIG: &str = "termpool.config";

/// Capabilities of a user container's root: what creating accounts needs, and KILL, so that the
/// reaper ends an account's processes as root (agent/src/end.rs). Users hold none of them.
pub(super) const USER_CAPS: [&str; 6] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
];
/// Where the cgroup files would list every process of the container (`tasks`, `cgroup.procs`):
/// an empty read-only tmpfs instead, so that no user learns another's pids there.
pub(super) const CGROUP_MASK: &str = "/sys/fs/cgroup";

/// The network the user containers join. `bridge` means a bridge network of the pool's own with
/// inter-container traffic off: on Docker's default bridge, a user could reach services that
/// users of other containers run.
pub fn effective_network(cfg: &PoolConfig) -> String {
    if cfg.network_mode == "bridge" {
        format!("{}-net", cfg.name_prefix)
    } else {
        cfg.network_mode.clone()
    }
}

/// A digest of every setting a user container is created with, so that a container made by an
/// older configuration or image is replaced instead of adopted.
pub fn settings_digest(cfg: &PoolConfig, image_id: &str) -> String {
    let text = format!(
        "v2|{image_id}|{}|{}|{}|{}|{}|{}|{}|{:?}|{}|{}|{}|{}",
        cfg.memory_bytes,
        cfg.nano_cpus,
        cfg.pids_limit,
        cfg.user_nproc,
        cfg.volume,
        effective_network(cfg),
        USER_CAPS.join(","),
        cfg.agent_dir,
        cfg.agent_peer_uid,
        cfg.uid_min,
        cfg.ptys_per_container,
        cfg.agent_ptys,
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The create request of a user container (see the module doc).
pub fn user_container_body(cfg: &PoolConfig, digest: &str, idx: usize) -> ContainerCreateBody {
    let name = cfg.container_name(idx);
    let labels = HashMap::from([
        (LABEL_POOL.to_string(), cfg.pool_label.clone()),
        (LABEL_SLOT.to_string(), idx.to_string()),
        (LABEL_CONFIG.to_string(), digest.to_string()),
    ]);
    let host_config = HostConfig {
        memory: Some(cfg.memory_bytes),
        memory_swap: Some(cfg.memory_bytes),
        nano_cpus: Some(cfg.nano_cpus),
        pids_limit: Some(cfg.pids_limit),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nproc".into()),
            soft: Some(cfg.user_nproc),
            hard: Some(cfg.user_nproc),
        }]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(USER_CAPS.iter().map(|c| c.to_string()).collect()),
        init: Some(true),
        privileged: Some(false),
        mounts: Some(user_container_mounts(cfg, &name)),
        network_mode: Some(effective_network(cfg)),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(cfg.image.clone()),
        hostname: Some(name.clone()),
        env: Some(user_container_env(cfg, &name)),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The shared volume and the cgroup mask: what every user container mounts, on every
/// orchestrator.
pub(super) fn workspace_and_cgroup_mask(cfg: &PoolConfig) -> Vec<Mount> {
    vec![
        Mount {
            target: Some(WORKSPACE.into()),
            source: Some(cfg.volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        },
        Mount {
            target: Some(CGROUP_MASK.into()),
            typ: Some(MountType::TMPFS),
            read_only: Some(true),
            ..Default::default()
        },
    ]
}

/// The shared volume, the cgroup mask, and the container's agent directory when there is an agent.
fn user_container_mounts(cfg: &PoolConfig, name: &str) -> Vec<Mount> {
    let mut mounts = workspace_and_cgroup_mask(cfg);
    if let Some(dir) = &cfg.agent_dir {
        mounts.push(Mount {
            target: Some(AGENT_MOUNT.into()),
            source: Some(dir.join(name).to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            ..Default::default()
        });
    }
    mounts
}

fn user_container_env(cfg: &PoolConfig, name: &str) -> Vec<String> {
    let mut env = vec![format!("TERMPOOL_CONTAINER_NAME={name}")];
    if cfg.agent_dir.is_some() {
        env.extend([
            format!("TERMPOOL_AGENT_SOCKET={AGENT_MOUNT}/{AGENT_SOCKET}"),
            format!("TERMPOOL_AGENT_PEER_UID={}", cfg.agent_peer_uid),
            format!("TERMPOOL_UID_MIN={}", cfg.uid_min),
        ]);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_container_follows_the_isolation_settings() {
        let cfg = PoolConfig::default();
        let body = user_container_body(&cfg, "d", 3);
        let hc = body.host_config.expect("host config");
        assert_eq!(hc.memory, hc.memory_swap, "no swap");
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.init, Some(true));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        let caps = hc.cap_add.unwrap_or_default();
        assert!(
            !caps.iter().any(|c| c.contains("SYS_ADMIN")),
            "never SYS_ADMIN"
        );
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert!(
            hc.binds.is_none(),
            "no bind mounts, so never the Docker socket"
        );
        assert!(caps.contains(&"KILL".to_string()), "the reaper stays root");
        let mounts = hc.mounts.unwrap_or_default();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].target.as_deref(), Some("/sys/fs/cgroup"));
        assert_eq!(mounts[1].read_only, Some(true));
        let labels = body.labels.unwrap_or_default();
        assert_eq!(labels.get(LABEL_SLOT).map(String::as_str), Some("3"));
        assert_eq!(
            body.env,
            Some(vec!["TERMPOOL_CONTAINER_NAME=termpool-user-3".to_string()])
        );
    }

    #[test]
    fn settings_digest_changes_with_settings() {
        let cfg = PoolConfig::default();
        let other = PoolConfig {
            memory_bytes: 1,
            ..PoolConfig::default()
        };
        assert_eq!(settings_digest(&cfg, "img"), settings_digest(&cfg, "img"));
        assert_ne!(settings_digest(&cfg, "img"), settings_digest(&other, "img"));
        assert_ne!(settings_digest(&cfg, "img"), settings_digest(&cfg, "img2"));
    }
}
