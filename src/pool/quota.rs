//! Per-account disk quotas on the workspace volume, set by a short-lived helper container (root
//! with SYS_ADMIN and CHOWN, the volume mounted) that runs the agent's `--set-quota`; it runs
//! before the account's home is made, which on btrfs it makes itself (a limited subvolume).

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::Docker;

use super::helper::{run_to_completion, Helper};
use super::{home_of, PoolConfig, PoolError, WORKSPACE};

/// Limits the account `username` (`uid`) to `cfg.user_disk_quota_mb` on the workspace volume:
/// a user quota (ext4, XFS) or, on btrfs, its home made a subvolume with a qgroup limit. Fails,
/// naming the helper's reason, on any other filesystem or a home that cannot be limited.
pub async fn set_quota(
    docker: &Docker,
    cfg: &PoolConfig,
    username: &str,
    uid: u32,
) -> Result<(), PoolError> {
    let what = format!("quota helper for uid {uid}");
    run_to_completion(docker, quota_body(cfg, &home_of(username), uid), &what).await
}

/// The create request of the quota helper.
fn quota_body(cfg: &PoolConfig, home: &str, uid: u32) -> ContainerCreateBody {
    Helper {
        args: vec![
            "--set-quota".into(),
            home.into(),
            uid.to_string(),
            cfg.user_disk_quota_mb.to_string(),
        ],
        // CHOWN: a btrfs home is made by root and given to the account.
        caps: &["SYS_ADMIN", "CHOWN"],
        // Docker 20.10's seccomp profile predates quotactl_fd (Linux 5.14) and refuses it.
        security: &["seccomp=unconfined"],
        env: vec![format!("TERMPOOL_UID_MIN={}", cfg.uid_min)],
        host: HostConfig {
            mounts: Some(vec![Mount {
                target: Some(WORKSPACE.into()),
                source: Some(cfg.volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            ..Default::default()
        },
    }
    .body(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_helper_holds_sys_admin_and_chown_only_and_no_network() {
        let cfg = PoolConfig {
            user_disk_quota_mb: 5,
            ..PoolConfig::default()
        };
        let body = quota_body(&cfg, "/workspace/u_a", 200_001);
        let hc = body.host_config.expect("host config");
        let caps = ["SYS_ADMIN", "CHOWN"].map(String::from).to_vec();
        assert_eq!(hc.cap_add, Some(caps));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(
            body.cmd.unwrap_or_default()[1..],
            ["/workspace/u_a", "200001", "5"].map(String::from)
        );
    }
}
