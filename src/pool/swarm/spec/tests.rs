use std::time::Duration;

use bollard::models::MountType;

use super::*;
use crate::pool::swarm::MasterKey;

fn swarm(slots_per_node: u64, shared_volume: bool) -> SwarmConfig {
    SwarmConfig {
        network: "termpool-agents".into(),
        master_key: MasterKey::new(vec![7; 32]),
        slots_per_node,
        shared_volume,
        connect_timeout: Duration::from_secs(2),
    }
}

fn spec_of(sw: &SwarmConfig, pinned_to: Option<&str>) -> ServiceSpec {
    let cfg = PoolConfig::default();
    let slot = SlotService {
        cfg: &cfg,
        swarm: sw,
        image_id: "sha256:abc",
        idx: 3,
        generation: 5,
        secret_id: "sec1",
        pinned_to,
        full_nodes: &[],
    };
    service_spec(&slot, "digest")
}

fn container(spec: &ServiceSpec) -> &TaskSpecContainerSpec {
    let task = spec.task_template.as_ref().expect("task template");
    task.container_spec.as_ref().expect("container spec")
}

#[test]
fn the_service_carries_every_hardening_setting() {
    let cfg = PoolConfig::default();
    let spec = spec_of(&swarm(0, false), Some("node1"));
    assert_eq!(spec.name.as_deref(), Some("termpool-user-3"));
    let replicas = spec.mode.as_ref().and_then(|m| m.replicated.as_ref());
    assert_eq!(replicas.and_then(|r| r.replicas), Some(1), "one task");
    let endpoint = spec.endpoint_spec.as_ref().and_then(|e| e.mode);
    assert_eq!(endpoint, Some(EndpointSpecModeEnum::DNSRR));
    let task = spec.task_template.as_ref().expect("task");
    let limits = task.resources.as_ref().and_then(|r| r.limits.as_ref());
    let limits = limits.expect("limits");
    assert_eq!(limits.memory_bytes, Some(cfg.memory_bytes));
    assert_eq!(limits.nano_cpus, Some(cfg.nano_cpus));
    assert_eq!(limits.pids, Some(cfg.pids_limit));
    let restart = task.restart_policy.as_ref().and_then(|r| r.condition);
    assert_eq!(restart, Some(TaskSpecRestartPolicyConditionEnum::ANY));
    let nets = task.networks.as_ref().expect("networks");
    assert_eq!(nets[0].target.as_deref(), Some("termpool-agents"));

    let c = container(&spec);
    assert_eq!(c.image.as_deref(), Some("sha256:abc"), "image by ID");
    assert_eq!(c.init, Some(true));
    assert_eq!(c.hostname.as_deref(), Some("termpool-user-3"));
    assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
    let caps = c.capability_add.clone().unwrap_or_default();
    for cap in USER_CAPS.iter().chain(LOCKDOWN_CAPS.iter()) {
        assert!(
            caps.contains(&format!("CAP_{cap}")),
            "{cap} missing: {caps:?}"
        );
    }
    assert_eq!(caps.len(), USER_CAPS.len() + 3, "nothing else: {caps:?}");
    let ulimit = &c.ulimits.as_ref().expect("ulimits")[0];
    assert_eq!(ulimit.name.as_deref(), Some("nproc"));
    assert_eq!((ulimit.soft, ulimit.hard), (Some(256), Some(256)));
    let labels = c.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(LABEL_POOL), Some(&cfg.pool_label));
    assert_eq!(labels.get(LABEL_SLOT).map(String::as_str), Some("3"));
    assert_eq!(
        labels.get(LABEL_KEY_GENERATION).map(String::as_str),
        Some("5")
    );
}

#[test]
fn the_agent_listens_with_the_slots_key_and_locks_down() {
    let spec = spec_of(&swarm(0, false), None);
    let c = container(&spec);
    let env = c.env.clone().unwrap_or_default();
    for want in [
        "TERMPOOL_AGENT_LISTEN=0.0.0.0:7100",
        "TERMPOOL_AGENT_SLOT=termpool-user-3",
        "TERMPOOL_AGENT_KEY_FILE=/run/secrets/agent-key",
        "TERMPOOL_AGENT_LOCKDOWN=1",
        "TERMPOOL_AGENT_PTYS=64,220",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} missing: {env:?}");
    }
    let secret = &c.secrets.as_ref().expect("secrets")[0];
    let file = secret.file.as_ref().expect("file");
    assert_eq!(file.name.as_deref(), Some("agent-key"));
    assert_eq!(file.uid.as_deref(), Some("0"));
    assert_eq!(file.mode, Some(0o400));
    assert_eq!(secret.secret_id.as_deref(), Some("sec1"));
    assert_eq!(secret.secret_name.as_deref(), Some("termpool-user-3-key-5"));
}

#[test]
fn the_workspace_is_mounted_and_never_the_docker_socket() {
    let spec = spec_of(&swarm(0, false), None);
    let mounts = container(&spec).mounts.clone().unwrap_or_default();
    assert_eq!(mounts.len(), 3);
    assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
    assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
    assert_eq!(mounts[1].target.as_deref(), Some("/sys/fs/cgroup"));
    assert_eq!(mounts[1].read_only, Some(true));
    // The node relay's directory, read-only: users may not put anything there.
    assert_eq!(mounts[2].target.as_deref(), Some(RELAY_MOUNT));
    assert_eq!(mounts[2].typ, Some(MountType::VOLUME));
    assert_eq!(mounts[2].read_only, Some(true));
    let env = container(&spec).env.clone().unwrap_or_default();
    assert!(
        env.contains(&format!("TERMPOOL_RELAY_SOCKET={RELAY_MOUNT}/relay.sock")),
        "{env:?}"
    );
    assert!(
        mounts.iter().all(|m| m.typ != Some(MountType::BIND)),
        "no bind mounts, so never the Docker socket"
    );
}

#[test]
fn slots_are_pinned_unless_homes_are_shared() {
    assert!(pins_slots(&swarm(0, false)));
    assert!(!pins_slots(&swarm(0, true)));
    let pinned = spec_of(&swarm(0, false), Some("abc123"));
    assert_eq!(pinned_node(&pinned).as_deref(), Some("abc123"));
    let free = spec_of(&swarm(0, false), None);
    assert_eq!(pinned_node(&free), None);
}

#[test]
fn slots_per_node_keeps_new_slots_off_full_nodes() {
    let nodes: Vec<String> = ["a", "b", "a", "c", "a", "b"].map(String::from).into();
    assert_eq!(
        full_nodes(&nodes, 0),
        Vec::<String>::new(),
        "0: the scheduler spreads"
    );
    assert_eq!(full_nodes(&nodes, 2), ["a", "b"]);
    assert_eq!(full_nodes(&nodes, 3), ["a"]);
    let cfg = PoolConfig::default();
    let sw = swarm(2, false);
    let full = full_nodes(&nodes, 2);
    let constraints = |pinned_to| {
        let slot = SlotService {
            cfg: &cfg,
            swarm: &sw,
            image_id: "sha256:abc",
            idx: 0,
            generation: 1,
            secret_id: "s",
            pinned_to,
            full_nodes: &full,
        };
        let spec = service_spec(&slot, "d");
        let placement = spec.task_template.and_then(|t| t.placement);
        placement.and_then(|p| p.constraints).unwrap_or_default()
    };
    assert_eq!(constraints(None), ["node.id != a", "node.id != b"]);
    // A pinned slot stays on its node (its homes are there), full or not.
    assert_eq!(constraints(Some("a")), ["node.id == a"]);
}

#[test]
fn the_digest_follows_the_settings_but_not_the_key() {
    let cfg = PoolConfig::default();
    let a = settings_digest(&cfg, &swarm(0, false), "img");
    assert_eq!(a, settings_digest(&cfg, &swarm(0, true), "img"));
    assert_ne!(a, settings_digest(&cfg, &swarm(2, false), "img"));
    assert_ne!(a, settings_digest(&cfg, &swarm(0, false), "img2"));
    let mut other = swarm(0, false);
    other.master_key = MasterKey::new(vec![9; 40]);
    assert_eq!(a, settings_digest(&cfg, &other, "img"));
}
