//! Keeping a slot's container running: the pool's volume and network, adopting a container made
//! with the same settings, replacing anything else, removing strays.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, VolumeCreateRequest};
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;

use super::engine::{docker_err, inspect, list_labelled, remove, short};
use super::helper::LABEL_HELPER;
use super::hidepid::ensure_hidepid;
use super::spec::{
    effective_network, settings_digest, user_container_body, LABEL_CONFIG, LABEL_POOL,
};
use super::{PoolConfig, PoolError};
use termpool_agent_proto as proto;

/// How often an agent that is not listening yet (a container just started) is tried again.
const AGENT_RETRY: Duration = Duration::from_millis(20);

/// Creates the shared workspace volume (a no-op when it exists).
pub async fn ensure_volume(docker: &Docker, cfg: &PoolConfig) -> Result<(), PoolError> {
    let req = VolumeCreateRequest {
        name: Some(cfg.volume.clone()),
        labels: Some(HashMap::from([(
            LABEL_POOL.to_string(),
            cfg.pool_label.clone(),
        )])),
        ..Default::default()
    };
    docker
        .create_volume(req)
        .await
        .map(|_| ())
        .map_err(docker_err(format!("creating volume {}", cfg.volume)))
}

/// Creates the pool's isolated bridge network when `bridge` is asked for (a no-op when it exists).
pub async fn ensure_network(docker: &Docker, cfg: &PoolConfig) -> Result<(), PoolError> {
    if cfg.network_mode != "bridge" {
        return Ok(());
    }
    let name = effective_network(cfg);
    let filters = HashMap::from([("name".to_string(), vec![name.clone()])]);
    let existing = docker
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(docker_err(format!("listing networks named {name}")))?;
    // The name filter matches substrings: look for the exact name.
    if existing
        .iter()
        .any(|n| n.name.as_deref() == Some(name.as_str()))
    {
        return Ok(());
    }
    let req = bollard::models::NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        options: Some(HashMap::from([(
            "com.docker.network.bridge.enable_icc".to_string(),
            "false".to_string(),
        )])),
        labels: Some(HashMap::from([(
            LABEL_POOL.to_string(),
            cfg.pool_label.clone(),
        )])),
        ..Default::default()
    };
    docker
        .create_network(req)
        .await
        .map(|_| ())
        .map_err(docker_err(format!("creating network {name}")))
}

/// Removes containers of this pool that are no slot's (wrong name) and leftover helpers.
pub async fn remove_strays(docker: &Docker, cfg: &PoolConfig) -> Result<(), PoolError> {
    let wanted: Vec<String> = (0..cfg.max_containers)
        .map(|i| cfg.container_name(i))
        .collect();
    for label in [LABEL_POOL, LABEL_HELPER] {
        for c in list_labelled(docker, label, &cfg.pool_label).await? {
            let name = c.1.trim_start_matches('/');
            if label == LABEL_HELPER || !wanted.iter().any(|w| w == name) {
                log::info!("pool: removing stray container {name}");
                remove(docker, &c.0).await?;
            }
        }
    }
    Ok(())
}

/// Makes sure the slot's container runs with hidepid; adopts a running one created with the same
/// settings, replaces anything else. Returns the container id.
pub async fn ensure_running(
    docker: &Docker,
    cfg: &PoolConfig,
    image_id: &str,
    idx: usize,
) -> Result<String, PoolError> {
    let name = cfg.container_name(idx);
    let digest = settings_digest(cfg, image_id);
    let Some(info) = inspect(docker, &name).await? else {
        return create_fresh(docker, cfg, &digest, idx).await;
    };
    let labels = info
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    if labels.get(LABEL_POOL) != Some(&cfg.pool_label) {
        return Err(PoolError::Provision(format!(
            "a container named {name} exists but is not part of pool {}: remove or rename it",
            cfg.pool_label
        )));
    }
    let id = info.id.clone().unwrap_or_default();
    if is_running(&info) && labels.get(LABEL_CONFIG) == Some(&digest) && !id.is_empty() {
        if agent_answers(cfg, &name).await {
            ensure_hidepid(docker, cfg, &id, false).await?;
            return Ok(id);
        }
        log::warn!(
            "pool: replacing container {name}: its session agent does not answer at {} (was \
             the agent directory deleted or replaced on the host while the container ran?)",
            cfg.agent_socket(&name).unwrap_or_default().display()
        );
    } else {
        log::info!("pool: replacing container {name} (stopped, or created with other settings)");
    }
    remove(docker, &name).await?;
    create_fresh(docker, cfg, &digest, idx).await
}

/// Whether the session agent of a running container `name` can be reached (true without agents).
/// Adopting one that cannot would end every session placed there in a timeout, forever.
async fn agent_answers(cfg: &PoolConfig, name: &str) -> bool {
    match cfg.agent_socket(name) {
        Some(socket) => agent_listens(&socket, cfg.agent_start_timeout).await,
        None => true,
    }
}

/// Whether an agent listens at `socket`, waiting up to `timeout` for one that is still starting
/// (missing or refusing) or busy (its backlog full). When the container's directory was deleted
/// and made again on the host, its agent listens on the deleted inode, where no session reaches it.
async fn agent_listens(socket: &Path, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // The probe connection closes at once; the agent drops it like a server gone away.
        match proto::connect_seqpacket(socket) {
            Ok(_) => return true,
            Err(e) if !proto::is_busy(&e) && !proto::is_not_listening(&e) => return false,
            Err(_) if tokio::time::Instant::now() >= deadline => return false,
            Err(_) => tokio::time::sleep(AGENT_RETRY).await,
        }
    }
}

fn is_running(info: &ContainerInspectResponse) -> bool {
    let state = info.state.as_ref();
    state.and_then(|s| s.running).unwrap_or(false) && !state.and_then(|s| s.paused).unwrap_or(false)
}

/// Waits for a new container's session agent to listen: an image without the agent is named
/// here, once, rather than as every session of the container timing out.
async fn wait_for_agent(socket: &Path, name: &str, timeout: Duration) -> Result<(), PoolError> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if socket.exists() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(PoolError::Provision(format!(
        "container {name}: no session agent at {} after {}s: the image lacks termpool-agent \
         (rebuild it with scripts/build-user-image.sh), or set SESSION_AGENT=false",
        socket.display(),
        timeout.as_secs()
    )))
}

/// Creates and starts the slot's container, then makes /proc hidepid. Returns its id.
async fn create_fresh(
    docker: &Docker,
    cfg: &PoolConfig,
    digest: &str,
    idx: usize,
) -> Result<String, PoolError> {
    let name = cfg.container_name(idx);
    if let Some(dir) = &cfg.agent_dir {
        make_agent_dir(&dir.join(&name))?;
    }
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(opts), user_container_body(cfg, digest, idx))
        .await
        .map_err(docker_err(format!("creating container {name}")))?;
    docker
        .start_container(&created.id, None)
        .await
        .map_err(docker_err(format!("starting container {name}")))?;
    ensure_hidepid(docker, cfg, &created.id, true).await?;
    if let Some(socket) = cfg.agent_socket(&name) {
        wait_for_agent(&socket, &name, cfg.agent_start_timeout).await?;
    }
    log::info!("pool: container {name} ready ({})", short(&created.id));
    Ok(created.id)
}

/// Creates a container's agent directory, readable by the server alone (and root of that
/// container, where the agent runs).
fn make_agent_dir(dir: &Path) -> Result<(), PoolError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed =
        |e: std::io::Error| PoolError::Provision(format!("agent directory {}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)
}
