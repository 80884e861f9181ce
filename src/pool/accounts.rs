//! Creating a user's Linux account and home in a container with the store's UID, refusing (and
//! telling the operator what to do) when the workspace volume disagrees with the store.

use bollard::Docker;

use super::engine::short;
use super::exec::{exec_root, ExecResult};
use super::PoolError;

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
