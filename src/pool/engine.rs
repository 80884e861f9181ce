//! The Docker engine as the pool uses it: connecting, mapping the engine's errors to
//! [`PoolError`], and the container calls every other pool module shares (inspect, list, remove).

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;

use super::{PoolConfig, PoolError};

/// Upper bound on version negotiation at connect time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Maps a Docker error to a pool error: no answer means unavailable, an answer means the request
/// itself failed.
pub fn docker_err(context: impl std::fmt::Display) -> impl FnOnce(DockerError) -> PoolError {
    move |e| {
        if is_unreachable(&e) {
            PoolError::DockerUnavailable(format!("{context}: {e}"))
        } else {
            PoolError::Provision(format!("{context}: {e}"))
        }
    }
}

fn is_unreachable(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::IOError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
            | DockerError::HyperLegacyError { .. }
    )
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// Connects to the engine named by DOCKER_HOST (or the default socket) and settles on an API
/// version both sides speak (Debian's engine speaks 1.41, older than bollard's default).
pub async fn connect() -> Result<Docker, PoolError> {
    let docker = Docker::connect_with_defaults().map_err(docker_err("connecting to Docker"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(PoolError::DockerUnavailable(format!(
            "asking the Docker engine for its version: {e}"
        ))),
        Err(_) => Err(PoolError::DockerUnavailable(format!(
            "the Docker engine did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// The id of the pool's image; a clear error when it was never built.
pub async fn image_id(docker: &Docker, cfg: &PoolConfig) -> Result<String, PoolError> {
    match docker.inspect_image(&cfg.image).await {
        Ok(img) => img
            .id
            .ok_or_else(|| PoolError::Provision(format!("image {} has no id", cfg.image))),
        Err(e) if is_status(&e, 404) => Err(PoolError::Provision(format!(
            "image {} not found: build it with scripts/build-user-image.sh",
            cfg.image
        ))),
        Err(e) => Err(docker_err(format!("inspecting image {}", cfg.image))(e)),
    }
}

/// `(id, name, running)` of every container carrying `label=value`, stopped ones included.
pub async fn list_labelled(
    docker: &Docker,
    label: &str,
    value: &str,
) -> Result<Vec<(String, String, bool)>, PoolError> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let opts = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(docker_err("listing the pool's containers"))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = c
                .names
                .as_ref()?
                .first()?
                .trim_start_matches('/')
                .to_string();
            let running = c.state.map(|s| s.to_string() == "running").unwrap_or(false);
            Some((c.id?, name, running))
        })
        .collect())
}

/// Inspects a container by name or id; `None` when it does not exist.
pub async fn inspect(
    docker: &Docker,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, PoolError> {
    match docker.inspect_container(name, None).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if is_status(&e, 404) => Ok(None),
        Err(e) => Err(docker_err(format!("inspecting container {name}"))(e)),
    }
}

/// Removes a container (and its anonymous volumes) by name or id; gone already is fine.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), PoolError> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(docker_err(format!("removing container {name}"))(e)),
    }
}

/// The first 12 characters of a container id, as `docker ps` shows them.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
