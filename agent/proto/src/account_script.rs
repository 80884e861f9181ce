//! The account script, run as root in a user container: by `docker exec` from the server on a
//! single host (`src/pool/accounts.rs`), by the agent for an ACCOUNT frame in Swarm mode.

/// Where the shared volume is mounted in every user container; homes are `WORKSPACE/<name>`.
pub const WORKSPACE: &str = "/workspace";

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
pub const ACCOUNT_SCRIPT: &str = r#"set -eu
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
