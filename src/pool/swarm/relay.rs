//! The node relay: a global service of the user image's agent in `--relay` mode, one task on
//! every node, which relays the sessions of that node's slots outside the users' containers (a
//! user's CPU quota then pays for their programs, not for their output's relaying, as on one
//! host). Slots reach its socket through a volume of each node.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    Limit, Mount, MountType, MountVolumeOptions, ServiceSpec, ServiceSpecMode, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::Docker;
use sha2::{Digest, Sha256};

use super::services;
use super::spec::RELAY_MOUNT;
use crate::pool::spec::{LABEL_CONFIG, LABEL_POOL};
use crate::pool::{PoolConfig, PoolError};

/// The relay's socket, in its directory.
pub const SOCKET: &str = "relay.sock";
/// Marks the relay's service (its value: "1").
pub const LABEL_RELAY: &str = "termpool.relay";
/// The agent in the user image.
const AGENT: &str = "/usr/local/sbin/termpool-agent";
/// The relay's processes: one per session (it relays 8192 at most), its listener and init.
const PIDS: i64 = 8192 + 64;

/// The relay's service, and its volume on each node.
pub fn name(cfg: &PoolConfig) -> String {
    format!("{}-relay", cfg.name_prefix)
}

/// The mount of the relay's directory: the node's own volume (never the operator's shared
/// driver: a socket is reached on its node alone).
pub fn mount(cfg: &PoolConfig, read_only: bool) -> Mount {
    Mount {
        target: Some(RELAY_MOUNT.into()),
        source: Some(name(cfg)),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions {
            labels: Some(HashMap::from([(
                LABEL_POOL.to_string(),
                cfg.pool_label.clone(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A digest of the relay's settings: a service of another image or version is updated.
pub fn settings_digest(image_id: &str) -> String {
    let text = format!("relay-v1|{image_id}|{PIDS}|{RELAY_MOUNT}|{SOCKET}");
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The relay's service: every node, no capability, a read-only root, no new privileges (its
/// own seccomp filter refuses it any new socket or program: Swarm gives a service without
/// networks the node's bridge).
pub fn service_spec(cfg: &PoolConfig, image_id: &str) -> ServiceSpec {
    let labels = HashMap::from([
        (LABEL_POOL.to_string(), cfg.pool_label.clone()),
        (LABEL_RELAY.to_string(), "1".to_string()),
        (LABEL_CONFIG.to_string(), settings_digest(image_id)),
    ]);
    let container = TaskSpecContainerSpec {
        image: Some(image_id.to_string()),
        labels: Some(labels.clone()),
        command: Some(vec![AGENT.into()]),
        args: Some(vec!["--relay".into()]),
        env: Some(vec![format!(
            "TERMPOOL_RELAY_SOCKET={RELAY_MOUNT}/{SOCKET}"
        )]),
        init: Some(true),
        capability_drop: Some(vec!["ALL".into()]),
        read_only: Some(true),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        mounts: Some(vec![mount(cfg, false)]),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(name(cfg)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    pids: Some(PIDS),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the relay's service, or updates one of other settings. Until its task runs on a
/// node, that node's agents relay their sessions themselves.
pub async fn ensure(docker: &Docker, cfg: &PoolConfig, image_id: &str) -> Result<(), PoolError> {
    let name = name(cfg);
    let spec = service_spec(cfg, image_id);
    let digest = settings_digest(image_id);
    match services::inspect_service(docker, &name).await? {
        Some(svc) => {
            let current = svc.spec.as_ref().and_then(|s| s.labels.as_ref());
            if current.and_then(|l| l.get(LABEL_CONFIG)) == Some(&digest) {
                return Ok(());
            }
            log::info!("pool: updating the node relay {name}");
            services::update_service(docker, &svc, spec).await
        }
        None => {
            log::info!("pool: creating the node relay {name}");
            services::create_service(docker, spec).await.map(drop)
        }
    }
}

/// The nodes (by id) where a task of the relay's service runs, among `tasks` (the Swarm's tasks
/// meant to run); none when the service is missing.
pub async fn running_on(
    docker: &Docker,
    cfg: &PoolConfig,
    tasks: &[Task],
) -> Result<HashSet<String>, PoolError> {
    let Some(id) = services::inspect_service(docker, &name(cfg))
        .await?
        .and_then(|svc| svc.id)
    else {
        return Ok(HashSet::new());
    };
    Ok(tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .filter_map(|t| t.node_id.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_runs_on_every_node_with_nothing_it_does_not_need() {
        let cfg = PoolConfig::default();
        let spec = service_spec(&cfg, "sha256:abc");
        assert!(spec.mode.as_ref().unwrap().global.is_some());
        assert!(spec.networks.is_none());
        let task = spec.task_template.unwrap();
        assert!(task.networks.is_none());
        let c = task.container_spec.unwrap();
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.capability_add, None);
        assert_eq!(c.read_only, Some(true));
        assert_eq!(c.privileges.unwrap().no_new_privileges, Some(true));
        assert_eq!(c.command, Some(vec![AGENT.to_string()]));
        assert_eq!(c.args, Some(vec!["--relay".to_string()]));
        let mounts = c.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].read_only, Some(false));
        assert_eq!(mounts[0].source.as_deref(), Some(name(&cfg).as_str()));
        // The node's own volume, never a shared driver.
        assert!(mounts[0]
            .volume_options
            .as_ref()
            .unwrap()
            .driver_config
            .is_none());
        assert_eq!(task.resources.unwrap().limits.unwrap().pids, Some(PIDS));
    }

    #[test]
    fn another_image_is_another_relay() {
        assert_ne!(settings_digest("sha256:a"), settings_digest("sha256:b"));
    }
}
