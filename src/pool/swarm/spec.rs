//! What a slot's Swarm service is created with: today's container settings (limits, caps,
//! labels, mounts) carried onto a one-task service, plus the agent's network listener and key,
//! and the node relay's mount (`relay.rs` has the relay's own service).

use std::collections::HashMap;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, NetworkAttachmentConfig, ResourcesUlimits,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};

use termpool_agent_proto::AGENT_PORT;

use super::SwarmConfig;
use crate::pool::spec::{LABEL_CONFIG, LABEL_POOL, LABEL_SLOT, USER_CAPS};
use crate::pool::PoolConfig;

/// Label holding the generation of the slot's agent key (its secret's name ends with it).
pub const LABEL_KEY_GENERATION: &str = "termpool.key-generation";
/// The name of the slot's key inside its container, under `/run/secrets/`.
pub const KEY_TARGET: &str = "agent-key";
/// What the agent needs besides the user containers' capabilities, for its lockdown alone: it
/// remounts /proc (SYS_ADMIN), fences its network (NET_ADMIN) and drops them all, shrinking its
/// bounding set last (SETPCAP), before any user process exists.
pub const LOCKDOWN_CAPS: [&str; 3] = ["SYS_ADMIN", "NET_ADMIN", "SETPCAP"];
/// Where the node relay's socket directory is mounted, in the relay and (read-only) in slots.
pub const RELAY_MOUNT: &str = "/run/termpool-relay";
/// The constraint key that pins a service to one node.
const PIN_KEY: &str = "node.id==";

/// Everything that decides one slot's service.
pub struct SlotService<'a> {
    pub cfg: &'a PoolConfig,
    pub swarm: &'a SwarmConfig,
    /// The image named by ID: Swarm then never tries a pull, every node runs exactly this image.
    pub image_id: &'a str,
    pub idx: usize,
    /// The generation of the slot's key, and the Swarm secret holding it.
    pub generation: u32,
    pub secret_id: &'a str,
    /// The node the slot is pinned to, if it is.
    pub pinned_to: Option<&'a str>,
    /// Nodes an unpinned slot must not start on: they hold `SLOTS_PER_NODE` slots already.
    pub full_nodes: &'a [String],
}

/// The name of the Swarm secret holding a slot's key of `generation`.
pub fn secret_name(cfg: &PoolConfig, idx: usize, generation: u32) -> String {
    format!("{}-key-{generation}", cfg.container_name(idx))
}

/// A digest of every setting a slot's service is created with (the key and the pin aside), so
/// that a service of an older configuration or image is replaced instead of adopted.
pub fn settings_digest(cfg: &PoolConfig, swarm: &SwarmConfig, image_id: &str) -> String {
    let text = format!(
        "swarm-v3|{image_id}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        cfg.memory_bytes,
        cfg.nano_cpus,
        cfg.pids_limit,
        cfg.user_nproc,
        cfg.volume,
        swarm.network,
        USER_CAPS.join(","),
        LOCKDOWN_CAPS.join(","),
        cfg.uid_min,
        swarm.slots_per_node,
        cfg.ptys_per_container,
        cfg.agent_ptys,
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Whether slots are pinned to the node of their first task: yes, unless homes are on a volume
/// every node shares (otherwise Swarm would move a dead node's slot onto an empty local volume).
pub fn pins_slots(swarm: &SwarmConfig) -> bool {
    !swarm.shared_volume
}

/// The node id a service is pinned to, read back from its constraints.
pub fn pinned_node(spec: &ServiceSpec) -> Option<String> {
    let placement = spec.task_template.as_ref()?.placement.as_ref()?;
    placement.constraints.as_ref()?.iter().find_map(|c| {
        let c: String = c.chars().filter(|ch| !ch.is_whitespace()).collect();
        c.strip_prefix(PIN_KEY).map(str::to_string)
    })
}

/// The constraint pinning a service to `node_id`.
pub fn pin_constraint(node_id: &str) -> String {
    format!("node.id == {node_id}")
}

/// The create request of a slot's service (see the module doc).
pub fn service_spec(s: &SlotService<'_>, digest: &str) -> ServiceSpec {
    let name = s.cfg.container_name(s.idx);
    let labels = HashMap::from([
        (LABEL_POOL.to_string(), s.cfg.pool_label.clone()),
        (LABEL_SLOT.to_string(), s.idx.to_string()),
        (LABEL_CONFIG.to_string(), digest.to_string()),
        (LABEL_KEY_GENERATION.to_string(), s.generation.to_string()),
    ]);
    ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels.clone()),
        task_template: Some(task_spec(s, &name, labels)),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        networks: None,
        endpoint_spec: Some(EndpointSpec {
            // No IPVS on many hosts: a virtual IP may not route; the task's own address does.
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: None,
        }),
        ..Default::default()
    }
}

fn task_spec(s: &SlotService<'_>, name: &str, labels: HashMap<String, String>) -> TaskSpec {
    TaskSpec {
        container_spec: Some(container_spec(s, name, labels)),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(s.cfg.nano_cpus),
                memory_bytes: Some(s.cfg.memory_bytes),
                pids: Some(s.cfg.pids_limit),
            }),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            ..Default::default()
        }),
        placement: Some(placement(s)),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(s.swarm.network.clone()),
            aliases: None,
            driver_opts: None,
        }]),
        ..Default::default()
    }
}

/// Pinned: that node. Otherwise any node but the full ones (each slot is a service of its own,
/// so Swarm's per-service `MaxReplicas` cannot cap the slots of a node).
fn placement(s: &SlotService<'_>) -> TaskSpecPlacement {
    let constraints = match s.pinned_to {
        Some(node) => vec![pin_constraint(node)],
        None => s
            .full_nodes
            .iter()
            .map(|n| format!("node.id != {n}"))
            .collect(),
    };
    TaskSpecPlacement {
        constraints: (!constraints.is_empty()).then_some(constraints),
        ..Default::default()
    }
}

/// The nodes holding `per_node` slots or more, from the node of each slot (0: no cap).
pub fn full_nodes(slot_nodes: &[String], per_node: u64) -> Vec<String> {
    if per_node == 0 {
        return Vec::new();
    }
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for n in slot_nodes {
        *counts.entry(n).or_default() += 1;
    }
    let mut full: Vec<String> = counts
        .into_iter()
        .filter(|(_, c)| *c >= per_node)
        .map(|(n, _)| n.to_string())
        .collect();
    full.sort();
    full
}

fn container_spec(
    s: &SlotService<'_>,
    name: &str,
    labels: HashMap<String, String>,
) -> TaskSpecContainerSpec {
    let caps = USER_CAPS.iter().chain(LOCKDOWN_CAPS.iter());
    TaskSpecContainerSpec {
        image: Some(s.image_id.to_string()),
        labels: Some(labels),
        hostname: Some(name.to_string()),
        env: Some(agent_env(s, name)),
        init: Some(true),
        capability_drop: Some(vec!["ALL".into()]),
        capability_add: Some(caps.map(|c| format!("CAP_{c}")).collect()),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nproc".into()),
            soft: Some(s.cfg.user_nproc),
            hard: Some(s.cfg.user_nproc),
        }]),
        mounts: Some(mounts(s.cfg)),
        secrets: Some(vec![TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(KEY_TARGET.into()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o400),
            }),
            secret_id: Some(s.secret_id.to_string()),
            secret_name: Some(secret_name(s.cfg, s.idx, s.generation)),
        }]),
        ..Default::default()
    }
}

/// The workspace volume (per node unless the operator's driver shares it), the cgroup mask, and
/// the node relay's directory (read-only: the agent, root, only connects to its socket).
fn mounts(cfg: &PoolConfig) -> Vec<Mount> {
    let mut mounts = crate::pool::spec::workspace_and_cgroup_mask(cfg);
    mounts.push(super::relay::mount(cfg, true));
    mounts
}

/// What the agent needs to listen on the network and lock its container down.
fn agent_env(s: &SlotService<'_>, name: &str) -> Vec<String> {
    vec![
        format!("TERMPOOL_CONTAINER_NAME={name}"),
        format!("TERMPOOL_AGENT_LISTEN=0.0.0.0:{AGENT_PORT}"),
        format!("TERMPOOL_AGENT_SLOT={name}"),
        format!("TERMPOOL_AGENT_KEY_FILE=/run/secrets/{KEY_TARGET}"),
        "TERMPOOL_AGENT_LOCKDOWN=1".to_string(),
        format!("TERMPOOL_UID_MIN={}", s.cfg.uid_min),
        // The users' /dev/pts cap and the sessions' own devpts instance, which the lockdown
        // mounts (the single host's helper does it there).
        format!(
            "TERMPOOL_AGENT_PTYS={},{}",
            s.cfg.ptys_per_container, s.cfg.agent_ptys
        ),
        format!(
            "TERMPOOL_RELAY_SOCKET={RELAY_MOUNT}/{}",
            super::relay::SOCKET
        ),
    ]
}

#[cfg(test)]
mod tests;
