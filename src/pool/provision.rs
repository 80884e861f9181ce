//! Every Docker call of the pool, kept stateless (a `&Docker` and the config in, ids out) so the
//! orchestration in `manager` stays readable and this file can be checked against DESIGN.md's
//! isolation settings line by line.
//!
//! A user container: the configured memory (swap equal: no swap), CPU, pids and per-UID nproc
//! limits, `no-new-privileges`, all capabilities dropped but the five `useradd` needs, `init`,
//! the pool's labels, the shared volume at /workspace, no restart policy (a container that dies is
//! replaced by the pool, which redoes the hidepid remount), never privileged, never the Docker
//! socket. `/proc` is remounted `hidepid=invisible` by a short-lived helper container that joins
//! the user container's PID namespace with SYS_ADMIN, so the user container itself never has it.
//! With a session agent, the container's own directory of `agent_dir` is bind-mounted at
//! /run/termpool (nothing else of the host), and the entrypoint runs the agent.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{PoolConfig, PoolError, AGENT_MOUNT, AGENT_SOCKET, WORKSPACE};

/// Label whose value names the pool a user container belongs to.
pub const LABEL_POOL: &str = "termpool.pool";
/// Label holding a user container's slot index.
pub const LABEL_SLOT: &str = "termpool.slot";
/// Label holding a digest of the settings a user container was created with.
pub const LABEL_CONFIG: &str = "termpool.config";
/// Label marking a hidepid helper container of a pool.
pub const LABEL_HELPER: &str = "termpool.hidepid-helper";

/// Capabilities of a user container: exactly what creating accounts needs.
const USER_CAPS: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"];
/// Capabilities of the hidepid helper: enter the mount namespace and remount /proc.
const HELPER_CAPS: [&str; 3] = ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"];
/// The helper's command.
const HIDEPID_CMD: [&str; 8] = [
    "--target",
    "1",
    "--mount",
    "--",
    "mount",
    "-o",
    "remount,hidepid=invisible",
    "/proc",
];
/// Upper bound on one root exec or one helper run.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on version negotiation at connect time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates the account (with the stored UID) and its home if missing; never touches an existing
/// home's contents. Idempotent and safe to run twice at once. Args: name, uid, home.
///
/// Fails closed (before creating anything) when the volume disagrees with the store's UID: when
/// the home exists but is another UID's (or a link), or when the UID already owns another entry
/// of /workspace. Both happen when the store was lost while the volume was kept and UIDs were
/// handed out again: going on would give one user another's files. Exit codes: 3 the account
/// exists here with another UID, 4 the home is not this UID's, 5 the UID owns another home.
///
/// The script holds a lock of its container throughout: a second run for the same user must not
/// see the first one's new home between its mkdir and its chown, root's for that moment. The
/// lock file is root's alone (0600), so that no user can hold it.
const ACCOUNT_SCRIPT: &str = r#"set -eu
name=$1 uid=$2 home=$3
umask 077
exec 9>>/run/termpool-accounts.lock
umask 022
flock -w 30 9
if [ -L "$home" ] || { [ -e "$home" ] && [ "$(stat -c %u "$home")" != "$uid" ]; }; then
    echo "$home exists and belongs to uid $(stat -c %u "$home"), not $uid" >&2
    exit 4
fi
other=$(find "$(dirname "$home")" -mindepth 1 -maxdepth 1 -uid "$uid" ! -name "$name" | head -n 1)
if [ -n "$other" ]; then
    echo "uid $uid already owns $other" >&2
    exit 5
fi
cur=$(id -u "$name" 2>/dev/null || true)
if [ -z "$cur" ]; then
    useradd -l -M -u "$uid" -d "$home" -s /bin/bash "$name" || true
    cur=$(id -u "$name" 2>/dev/null || true)
fi
if [ "$cur" != "$uid" ]; then
    echo "account $name has uid '$cur', expected $uid" >&2
    exit 3
fi
if [ ! -d "$home" ]; then
    mkdir -p "$home"
    chown "$uid:$(id -g "$name")" "$home"
    chmod 700 "$home"
fi
"#;

/// Output of a finished root exec.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

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
        Some(socket) => crate::tty::agent::listens(&socket, cfg.agent_start_timeout).await,
        None => true,
    }
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

fn is_running(info: &ContainerInspectResponse) -> bool {
    let state = info.state.as_ref();
    state.and_then(|s| s.running).unwrap_or(false) && !state.and_then(|s| s.paused).unwrap_or(false)
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

/// Waits for a new container's session agent to listen: an image without the agent is named
/// here, once, rather than as every session of the container timing out.
async fn wait_for_agent(
    socket: &std::path::Path,
    name: &str,
    timeout: Duration,
) -> Result<(), PoolError> {
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
fn make_agent_dir(dir: &std::path::Path) -> Result<(), PoolError> {
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

/// A digest of every setting a user container is created with, so that a container made by an
/// older configuration or image is replaced instead of adopted.
pub fn settings_digest(cfg: &PoolConfig, image_id: &str) -> String {
    let text = format!(
        "v1|{image_id}|{}|{}|{}|{}|{}|{}|{}|{:?}|{}|{}",
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
    );
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
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

/// The shared volume, and the container's agent directory when there is an agent.
fn user_container_mounts(cfg: &PoolConfig, name: &str) -> Vec<Mount> {
    let mut mounts = vec![Mount {
        target: Some(WORKSPACE.into()),
        source: Some(cfg.volume.clone()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    }];
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

/// The create request of the hidepid helper for container `target_id`.
pub fn helper_body(cfg: &PoolConfig, target_id: &str) -> ContainerCreateBody {
    let host_config = HostConfig {
        pid_mode: Some(format!("container:{target_id}")),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(HELPER_CAPS.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["apparmor=unconfined".into()]),
        network_mode: Some("none".into()),
        privileged: Some(false),
        auto_remove: Some(false),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(cfg.image.clone()),
        user: Some("0".into()),
        entrypoint: Some(vec!["nsenter".into()]),
        cmd: Some(HIDEPID_CMD.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(
            LABEL_HELPER.to_string(),
            cfg.pool_label.clone(),
        )])),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Makes sure the container's /proc is mounted with hidepid: checks first unless `fresh`, runs
/// the helper if needed, and verifies the result. Users are admitted only after this succeeded.
pub async fn ensure_hidepid(
    docker: &Docker,
    cfg: &PoolConfig,
    id: &str,
    fresh: bool,
) -> Result<(), PoolError> {
    if !fresh && proc_has_hidepid(docker, id).await? {
        return Ok(());
    }
    run_helper(docker, cfg, id).await?;
    if proc_has_hidepid(docker, id).await? {
        Ok(())
    } else {
        Err(PoolError::Provision(format!(
            "container {}: /proc still lacks hidepid after the remount",
            short(id)
        )))
    }
}

/// Whether the container's /proc mount carries hidepid (checked by a root exec).
pub async fn proc_has_hidepid(docker: &Docker, id: &str) -> Result<bool, PoolError> {
    let out = exec_root(docker, id, &["cat", "/proc/mounts"]).await?;
    if out.code != Some(0) {
        return Err(PoolError::Provision(format!(
            "container {}: reading /proc/mounts failed ({:?}): {}",
            short(id),
            out.code,
            out.stderr.trim()
        )));
    }
    Ok(mounts_have_hidepid(&out.stdout))
}

/// Whether the topmost `proc` mount on /proc in a /proc/mounts text has hidepid set.
pub fn mounts_have_hidepid(mounts: &str) -> bool {
    mounts
        .lines()
        .rev()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[1] == "/proc" && f[2] == "proc")
        .is_some_and(|f| {
            f[3].split(',')
                .any(|o| o == "hidepid=invisible" || o == "hidepid=2")
        })
}

/// Runs the hidepid helper for container `id` to completion and removes it.
async fn run_helper(docker: &Docker, cfg: &PoolConfig, id: &str) -> Result<(), PoolError> {
    let created = docker
        .create_container(None::<CreateContainerOptions>, helper_body(cfg, id))
        .await
        .map_err(docker_err(format!(
            "creating the hidepid helper for {}",
            short(id)
        )))?;
    let result = start_and_wait(docker, &created.id).await;
    let failure_logs = match &result {
        Ok(0) => String::new(),
        _ => logs(docker, &created.id).await,
    };
    remove(docker, &created.id).await?;
    match result? {
        0 => Ok(()),
        code => Err(PoolError::Provision(format!(
            "hidepid helper for {} exited with {code}: {}",
            short(id),
            failure_logs.trim()
        ))),
    }
}

/// Starts a container and waits for it to exit; returns its exit code.
async fn start_and_wait(docker: &Docker, id: &str) -> Result<i64, PoolError> {
    docker
        .start_container(id, None)
        .await
        .map_err(docker_err("starting the hidepid helper"))?;
    let opts = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let mut wait = docker.wait_container(id, Some(opts));
    match tokio::time::timeout(STEP_TIMEOUT, wait.next()).await {
        Err(_) => Err(PoolError::Provision(
            "the hidepid helper did not finish".into(),
        )),
        Ok(None) => Err(PoolError::Provision(
            "waiting for the hidepid helper: no answer".into(),
        )),
        Ok(Some(Ok(r))) => Ok(r.status_code),
        Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => Ok(code),
        Ok(Some(Err(e))) => Err(docker_err("waiting for the hidepid helper")(e)),
    }
}

/// A finished container's output, best effort (for error messages).
async fn logs(docker: &Docker, id: &str) -> String {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        tail: "20".into(),
        ..Default::default()
    };
    let mut stream = docker.logs(id, Some(opts));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text
}

/// Creates the account `username` with `uid` in container `id` (see [`ACCOUNT_SCRIPT`]).
pub async fn ensure_account(
    docker: &Docker,
    id: &str,
    username: &str,
    uid: u32,
) -> Result<(), PoolError> {
    let home = super::home_of(username);
    let uid_text = uid.to_string();
    let cmd = ["sh", "-c", ACCOUNT_SCRIPT, "sh", username, &uid_text, &home];
    let out = exec_root(docker, id, &cmd).await?;
    if out.code == Some(0) {
        return Ok(());
    }
    // A line of its own, at error level: the operator has something to do.
    log::error!("{}", account_refusal(username, uid, id, &out));
    Err(PoolError::Provision(format!(
        "the account {username} (uid {uid}) was refused in container {}",
        short(id)
    )))
}

/// The log line of a failed account script: what happened, and what an operator can do.
fn account_refusal(username: &str, uid: u32, id: &str, out: &ExecOutput) -> String {
    let what = format!(
        "pool: refusing account {username} (uid {uid}) in container {} (exit {}): {}",
        short(id),
        out.code.map_or_else(|| "unknown".into(), |c| c.to_string()),
        out.stderr.trim()
    );
    match refusal_hint(out.code, uid) {
        Some(hint) => format!(
            "{what}. The placement store's UIDs disagree with the workspace volume (was DATA_DIR \
             deleted, e.g. by `docker-compose down -v`, while the volume was kept?); the user \
             stays refused so that nobody gets another account's files. Restore the store from \
             a backup; without one, {hint}"
        ),
        None => what,
    }
}

/// What an operator can do about a refusal of [`ACCOUNT_SCRIPT`] without the lost store.
fn refusal_hint(code: Option<i64>, uid: u32) -> Option<String> {
    match code {
        // Homes are named after the user's identity: this one is the user's own, of an old UID.
        Some(4) => Some(format!(
            "chown -R {uid} the home (it is this user's own, of the UID it had before)."
        )),
        Some(5) => Some(
            "the home named here is another user's, who had this UID before: archive it off \
             the volume, or chown -R it to root until its user comes back."
                .into(),
        ),
        Some(3) => Some(
            "this container still has the account with its old UID: remove the pool's \
             containers (the server recreates them) once the homes are sorted out."
                .into(),
        ),
        _ => None,
    }
}

/// The session agent's binary in the user image (Dockerfile.user), there whether or not the pool
/// runs agents.
const AGENT_BINARY: &str = "/usr/local/sbin/termpool-agent";

/// Ends every process of account `username` (UID `uid`) in container `id`, and waits until none
/// is left (zombies linger until init reaps them). Root there holds no CAP_KILL: the agent's
/// binary, run once as root, becomes the account in-process and sends `kill(-1, SIGKILL)`
/// (agent/src/end.rs). It executes nothing as the account, which a user holding the nproc limit
/// full would make fail. By number, so that it works whether or not the account exists in this
/// container. Exit 1: some process survived five seconds of SIGKILL; 2: refused.
pub async fn end_processes(
    docker: &Docker,
    id: &str,
    username: &str,
    uid: u32,
) -> Result<(), PoolError> {
    let uid = uid.to_string();
    let out = exec_root(docker, id, &[AGENT_BINARY, "--end-processes", &uid]).await?;
    if out.code == Some(0) {
        return Ok(());
    }
    Err(PoolError::Provision(format!(
        "ending the processes of {username} in container {} failed ({:?}): {}",
        short(id),
        out.code,
        out.stderr.trim()
    )))
}

/// Runs `cmd` as root in container `id` (never privileged), drains its output and returns it
/// with the exit code (which Docker only knows once the output is drained).
pub async fn exec_root(docker: &Docker, id: &str, cmd: &[&str]) -> Result<ExecOutput, PoolError> {
    let context = format!("exec {:?} in container {}", cmd.first(), short(id));
    match tokio::time::timeout(STEP_TIMEOUT, exec_root_inner(docker, id, cmd, &context)).await {
        Ok(result) => result,
        Err(_) => Err(PoolError::Provision(format!("{context}: timed out"))),
    }
}

async fn exec_root_inner(
    docker: &Docker,
    id: &str,
    cmd: &[&str],
    context: &str,
) -> Result<ExecOutput, PoolError> {
    let opts = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: Some("root"),
        privileged: Some(false),
        env: Some(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]),
        cmd: Some(cmd.to_vec()),
        ..Default::default()
    };
    let exec = docker
        .create_exec(id, opts)
        .await
        .map_err(docker_err(context))?;
    let mut out = ExecOutput::default();
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(docker_err(context))?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(PoolError::Provision(format!(
            "{context}: exec started detached"
        )));
    };
    while let Some(chunk) = output.next().await {
        match chunk.map_err(docker_err(context))? {
            LogOutput::StdOut { message } => {
                out.stdout.push_str(&String::from_utf8_lossy(&message))
            }
            LogOutput::StdErr { message } => {
                out.stderr.push_str(&String::from_utf8_lossy(&message))
            }
            _ => {}
        }
    }
    let info = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(docker_err(context))?;
    out.code = info.exit_code;
    Ok(out)
}

/// The first 12 characters of a container id, as `docker ps` shows them.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidepid_is_read_from_the_topmost_proc_mount() {
        let plain =
            "overlay / overlay rw 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n";
        assert!(!mounts_have_hidepid(plain));
        let hidden = format!("{plain}proc /proc proc rw,relatime,hidepid=invisible 0 0\n");
        assert!(mounts_have_hidepid(&hidden));
        assert!(mounts_have_hidepid("proc /proc proc rw,hidepid=2 0 0"));
        assert!(!mounts_have_hidepid("proc /proc/sys proc ro,hidepid=2 0 0"));
        assert!(!mounts_have_hidepid("tmpfs /proc tmpfs rw,hidepid=2 0 0"));
        assert!(!mounts_have_hidepid("proc /proc proc rw,hidepid=1 0 0"));
        assert!(!mounts_have_hidepid(""));
    }

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
        let mounts = hc.mounts.unwrap_or_default();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        let labels = body.labels.unwrap_or_default();
        assert_eq!(labels.get(LABEL_SLOT).map(String::as_str), Some("3"));
        assert_eq!(
            body.env,
            Some(vec!["TERMPOOL_CONTAINER_NAME=termpool-user-3".to_string()])
        );
    }

    #[test]
    fn helper_joins_the_pid_namespace_without_network() {
        let cfg = PoolConfig::default();
        let hc = helper_body(&cfg, "abc").host_config.expect("host config");
        assert_eq!(hc.pid_mode.as_deref(), Some("container:abc"));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
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
