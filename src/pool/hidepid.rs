//! A user container's mounts (`/proc` hidepid, `/dev/pts` capped, the agent's own devpts
//! instance), made by a short-lived helper container running the agent's `--prepare-mounts` in
//! its PID namespace with SYS_ADMIN, so that the user container itself never has it.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::Docker;

use super::engine::short;
use super::exec::exec_root;
use super::helper::{run_to_completion, Helper};
use super::{PoolConfig, PoolError};

/// Where the sessions' own devpts instance is mounted in a user container (the agent's
/// `mounts::AGENT_PTS`).
pub const AGENT_PTS: &str = "/dev/termpool-pts";
/// Capabilities of the helper: open pid 1's mount namespace (PTRACE), join it (ADMIN, CHROOT),
/// mount.
const HELPER_CAPS: [&str; 3] = ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"];

/// The helper's command: the agent's static binary, which enters the user container's mount
/// namespace and mounts by itself; nothing of the user container is executed.
fn helper_cmd(cfg: &PoolConfig) -> Vec<String> {
    vec![
        "--prepare-mounts".to_string(),
        cfg.ptys_per_container.to_string(),
        cfg.agent_ptys.to_string(),
    ]
}

/// The create request of the hidepid helper for container `target_id`.
pub fn helper_body(cfg: &PoolConfig, target_id: &str) -> ContainerCreateBody {
    Helper {
        args: helper_cmd(cfg),
        caps: &HELPER_CAPS,
        security: &["apparmor=unconfined"],
        env: Vec::new(),
        host: HostConfig {
            pid_mode: Some(format!("container:{target_id}")),
            ..Default::default()
        },
    }
    .body(cfg)
}

/// Makes sure the container's /proc is mounted with hidepid: checks first unless `fresh`, runs
/// the helper if needed, and verifies the result. Users are admitted only after this succeeded.
pub async fn ensure_hidepid(
    docker: &Docker,
    cfg: &PoolConfig,
    id: &str,
    fresh: bool,
) -> Result<(), PoolError> {
    if !fresh && mounts_prepared(docker, cfg, id).await? {
        return Ok(());
    }
    run_helper(docker, cfg, id).await?;
    if mounts_prepared(docker, cfg, id).await? {
        Ok(())
    } else {
        Err(PoolError::Provision(format!(
            "container {}: /proc lacks hidepid, /dev/pts its max or {AGENT_PTS} its instance \
             after the helper ran",
            short(id)
        )))
    }
}

/// Whether the container's /proc mount carries hidepid, its /dev/pts the PTY cap, and the
/// agent's devpts instance is mounted (checked by a root exec).
pub async fn mounts_prepared(
    docker: &Docker,
    cfg: &PoolConfig,
    id: &str,
) -> Result<bool, PoolError> {
    let out = exec_root(docker, id, &["cat", "/proc/mounts"]).await?;
    if out.code != Some(0) {
        return Err(PoolError::Provision(format!(
            "container {}: reading /proc/mounts failed ({:?}): {}",
            short(id),
            out.code,
            out.stderr.trim()
        )));
    }
    Ok(mounts_have_hidepid(&out.stdout)
        && mounts_have_pts(
            &out.stdout,
            "/dev/pts",
            &[&format!("max={}", cfg.ptys_per_container)],
        )
        && mounts_have_pts(
            &out.stdout,
            AGENT_PTS,
            &["ptmxmode=600", &format!("max={}", cfg.agent_ptys)],
        ))
}

/// Whether the topmost mount at `target` in a /proc/mounts text is devpts with every option of
/// `want`.
pub fn mounts_have_pts(mounts: &str, target: &str, want: &[&str]) -> bool {
    mounts
        .lines()
        .rev()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[1] == target)
        .is_some_and(|f| f[2] == "devpts" && want.iter().all(|w| f[3].split(',').any(|o| o == *w)))
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
    let what = format!("hidepid helper for {}", short(id));
    run_to_completion(docker, helper_body(cfg, id), &what).await
}

#[cfg(test)]
mod tests {
    use super::super::processes::AGENT_BINARY;
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
    fn the_pty_cap_is_read_from_the_topmost_devpts_mount() {
        let docker =
            "devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=666 0 0";
        let has = |mounts: &str, max: &str| mounts_have_pts(mounts, "/dev/pts", &[max]);
        assert!(!has(docker, "max=256"));
        let capped =
            format!("{docker}\ndevpts /dev/pts devpts rw,gid=5,mode=620,ptmxmode=666,max=256 0 0");
        assert!(has(&capped, "max=256"));
        assert!(!has(&capped, "max=255"));
        assert!(!has("devpts /dev/ptsx devpts rw,max=256 0 0", "max=256"));
        let covered = format!("{capped}\ntmpfs /dev/pts tmpfs rw,max=256 0 0");
        assert!(!has(&covered, "max=256"), "a tmpfs over the instance");
    }

    #[test]
    fn the_agent_instance_must_keep_its_ptmx_for_root() {
        let want = ["ptmxmode=600", "max=200"];
        let agent = "devpts /dev/termpool-pts devpts rw,gid=5,mode=620,ptmxmode=600,max=200 0 0";
        assert!(mounts_have_pts(agent, AGENT_PTS, &want));
        let open = agent.replace("ptmxmode=600", "ptmxmode=666");
        assert!(!mounts_have_pts(&open, AGENT_PTS, &want));
        assert!(!mounts_have_pts("", AGENT_PTS, &want));
    }

    #[test]
    fn helper_joins_the_pid_namespace_without_network() {
        let cfg = PoolConfig::default();
        let hc = helper_body(&cfg, "abc").host_config.expect("host config");
        assert_eq!(hc.pid_mode.as_deref(), Some("container:abc"));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        let body = helper_body(&cfg, "abc");
        assert_eq!(body.entrypoint, Some(vec![AGENT_BINARY.to_string()]));
        assert_eq!(
            body.cmd.expect("cmd"),
            ["--prepare-mounts", "64", "220"].map(String::from),
            "both caps are arguments"
        );
    }
}
