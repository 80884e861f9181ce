//! The Swarm calls the pool makes on the manager: checking the Swarm and the agents' network,
//! the slots' services, their tasks and their key secrets.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::models::{SecretSpec, Service, ServiceSpec, Task, TaskState};
use bollard::query_parameters::{
    InspectServiceOptions, ListSecretsOptions, ListServicesOptions, ListTasksOptions,
    UpdateServiceOptions,
};
use bollard::Docker;

use crate::pool::engine::docker_err;
use crate::pool::spec::{LABEL_POOL, LABEL_SLOT};
use crate::pool::{PoolConfig, PoolError};

/// Refuses an engine that is not a manager of an active Swarm, saying what to do.
pub async fn check_manager(docker: &Docker) -> Result<(), PoolError> {
    let info = docker
        .info()
        .await
        .map_err(docker_err("asking the engine about its Swarm"))?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.control_available == Some(true) {
        return Ok(());
    }
    Err(PoolError::Provision(format!(
        "ORCHESTRATOR=swarm needs the server's engine to be a Swarm manager; this one is not \
         (swarm state {:?}): run `docker swarm init` (or join as a manager), or set \
         ORCHESTRATOR=docker",
        swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_default()
    )))
}

/// Refuses a missing agents' network, or one the server cannot be attached to.
pub async fn check_network(docker: &Docker, name: &str) -> Result<(), PoolError> {
    let hint = format!(
        "create it with `docker network create -d overlay --attachable {name}` and attach the \
         server to it"
    );
    let net = match docker.inspect_network(name, None).await {
        Ok(net) => net,
        Err(e) if is_not_found(&e) => {
            return Err(PoolError::Provision(format!(
                "AGENT_NETWORK {name} does not exist: {hint}"
            )))
        }
        Err(e) => return Err(docker_err(format!("inspecting network {name}"))(e)),
    };
    if net.driver.as_deref() != Some("overlay") {
        return Err(PoolError::Provision(format!(
            "AGENT_NETWORK {name} is a {} network, not an overlay: {hint}",
            net.driver.unwrap_or_default()
        )));
    }
    Ok(())
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn pool_filter(cfg: &PoolConfig) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_POOL}={}", cfg.pool_label)],
    )])
}

/// Every slot's service of this pool (not the node relay's).
pub async fn list_services(docker: &Docker, cfg: &PoolConfig) -> Result<Vec<Service>, PoolError> {
    let mut filters = pool_filter(cfg);
    // Several labels in one filter must all be there.
    if let Some(labels) = filters.get_mut("label") {
        labels.push(LABEL_SLOT.to_string());
    }
    let opts = ListServicesOptions {
        filters: Some(filters),
        ..Default::default()
    };
    docker
        .list_services(Some(opts))
        .await
        .map_err(docker_err("listing the pool's services"))
}

/// A service by name; `None` when it does not exist.
pub async fn inspect_service(docker: &Docker, name: &str) -> Result<Option<Service>, PoolError> {
    match docker
        .inspect_service(name, None::<InspectServiceOptions>)
        .await
    {
        Ok(s) => Ok(Some(s)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(docker_err(format!("inspecting service {name}"))(e)),
    }
}

/// Creates a service; returns its id.
pub async fn create_service(docker: &Docker, spec: ServiceSpec) -> Result<String, PoolError> {
    let name = spec.name.clone().unwrap_or_default();
    let created = docker
        .create_service(spec, None)
        .await
        .map_err(docker_err(format!("creating service {name}")))?;
    created
        .id
        .ok_or_else(|| PoolError::Provision(format!("service {name} was created without an id")))
}

/// Replaces a service's spec, at the version it was read at (a concurrent change fails).
pub async fn update_service(
    docker: &Docker,
    service: &Service,
    spec: ServiceSpec,
) -> Result<(), PoolError> {
    let name = spec.name.clone().unwrap_or_default();
    let version = service.version.as_ref().and_then(|v| v.index).unwrap_or(0);
    let opts = UpdateServiceOptions {
        version: version as i32,
        ..Default::default()
    };
    docker
        .update_service(&name, spec, opts, None)
        .await
        .map(|_| ())
        .map_err(docker_err(format!("updating service {name}")))
}

/// Removes a service; gone already is fine.
pub async fn remove_service(docker: &Docker, name: &str) -> Result<(), PoolError> {
    match docker.delete_service(name).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(docker_err(format!("removing service {name}"))(e)),
    }
}

/// The tasks of service `name` that Swarm wants running (the current one, and one waiting for
/// its node).
pub async fn wanted_tasks(docker: &Docker, name: &str) -> Result<Vec<Task>, PoolError> {
    let filters = HashMap::from([
        ("service".to_string(), vec![name.to_string()]),
        ("desired-state".to_string(), vec!["running".to_string()]),
    ]);
    let opts = ListTasksOptions {
        filters: Some(filters),
    };
    docker
        .list_tasks(Some(opts))
        .await
        .map_err(docker_err(format!("listing the tasks of service {name}")))
}

/// The task of `tasks` that runs, if one does.
pub fn running_task(tasks: &[Task]) -> Option<&Task> {
    tasks
        .iter()
        .find(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
}

/// Whether Swarm found no node for the slot's task (its constraints exclude every node).
pub fn unschedulable(tasks: &[Task]) -> bool {
    let pending = |t: &Task| {
        let status = t.status.as_ref();
        let why = status.and_then(|s| s.err.as_deref().or(s.message.as_deref()));
        status.and_then(|s| s.state) == Some(TaskState::PENDING)
            && why.is_some_and(|w| w.contains("no suitable node"))
    };
    !tasks.is_empty() && tasks.iter().all(pending)
}

/// Why the slot's task does not run, from the task Swarm is trying to start.
pub fn task_trouble(tasks: &[Task]) -> String {
    let Some(status) = tasks.iter().find_map(|t| t.status.as_ref()) else {
        return "no task yet".into();
    };
    let state = status.state.map(|s| s.to_string()).unwrap_or_default();
    let why = status.err.as_deref().or(status.message.as_deref());
    format!("task {state}: {}", why.unwrap_or(""))
}

/// Creates the Swarm secret holding a slot's key; returns its id.
pub async fn create_secret(
    docker: &Docker,
    cfg: &PoolConfig,
    idx: usize,
    name: &str,
    key: &[u8],
) -> Result<String, PoolError> {
    let labels = HashMap::from([
        (LABEL_POOL.to_string(), cfg.pool_label.clone()),
        (LABEL_SLOT.to_string(), idx.to_string()),
    ]);
    let spec = SecretSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        data: Some(base64::engine::general_purpose::STANDARD.encode(key)),
        ..Default::default()
    };
    let created = docker
        .create_secret(spec)
        .await
        .map_err(docker_err(format!("creating secret {name}")))?;
    Ok(created.id)
}

/// Removes this pool's key secrets that no service uses any more (`in_use`: secret ids).
pub async fn remove_unused_secrets(
    docker: &Docker,
    cfg: &PoolConfig,
    in_use: &[String],
) -> Result<(), PoolError> {
    let opts = ListSecretsOptions {
        filters: Some(pool_filter(cfg)),
    };
    let secrets = docker
        .list_secrets(Some(opts))
        .await
        .map_err(docker_err("listing the pool's secrets"))?;
    for id in secrets.into_iter().filter_map(|s| s.id) {
        if !in_use.contains(&id) {
            // A secret still referenced is refused by Swarm: that is fine, it stays.
            let _ = docker.delete_secret(&id).await;
        }
    }
    Ok(())
}

/// Removes one secret; a failure is logged (a leftover secret holds only an unused key).
pub async fn remove_secret(docker: &Docker, id: &str) {
    if let Err(e) = docker.delete_secret(id).await {
        if !is_not_found(&e) {
            log::warn!("pool: removing secret {id}: {e}");
        }
    }
}

/// The ids of the secrets a service's tasks get.
pub fn secrets_of(service: &Service) -> Vec<String> {
    let spec = service.spec.as_ref().and_then(|s| s.task_template.as_ref());
    let secrets = spec
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.secrets.clone())
        .unwrap_or_default();
    secrets.into_iter().filter_map(|s| s.secret_id).collect()
}
