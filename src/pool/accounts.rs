//! Creating a user's Linux account and home in a container with the store's UID, refusing (and
//! telling the operator what to do) when the workspace volume disagrees with the store.

use bollard::Docker;

use super::engine::short;
use super::exec::{exec_root, ExecResult};
use super::PoolError;

/// The account script, shared with the agent (Swarm mode runs it there; see the proto crate).
use termpool_agent_proto::ACCOUNT_SCRIPT;

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
fn account_refusal(username: &str, uid: u32, id: &str, out: &ExecResult) -> String {
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
pub(super) fn refusal_hint(code: Option<i64>, uid: u32) -> Option<String> {
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
