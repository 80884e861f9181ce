//! ACCOUNT, END, STATUS and MARK: today's account script and process ending, the lockdown's
//! report, the volume's marker; each answered as a RESULT.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;

use termpool_agent_proto::{
    AccountRequest, AgentResult, EndRequest, FailureKind, HomeOwner, StatusReport, VolumeMark,
    ACCOUNT_SCRIPT, MAX_BODY, VOLUME_MARKER, WORKSPACE,
};

use super::Context;
use crate::{end, lockdown};

/// The most of the marker STATUS reports: a line for each of 1000 slots, with room.
const MARKER_MAX: u64 = 48 * 1024;

fn failed(kind: FailureKind, message: impl Into<String>) -> AgentResult {
    AgentResult::Failed {
        kind,
        message: message.into(),
    }
}

/// Creates the account and its home with the account script.
pub fn account(body: &[u8], uid_min: u32) -> AgentResult {
    let req: AccountRequest = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(e) => return failed(FailureKind::BadRequest, e.to_string()),
    };
    if let Err(e) = check_account(&req, uid_min) {
        return failed(FailureKind::BadRequest, e);
    }
    let uid = req.uid.to_string();
    let out = Command::new("/bin/sh")
        .args(["-c", ACCOUNT_SCRIPT, "sh", &req.name, &uid, &req.home])
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return failed(FailureKind::Failed, format!("the account script: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match out.status.code() {
        Some(0) => AgentResult::Ok,
        Some(3) => failed(FailureKind::AccountUidMismatch, stderr),
        Some(4) => failed(FailureKind::HomeNotOwned, stderr),
        Some(5) => failed(FailureKind::UidOwnsOtherHome, stderr),
        code => failed(
            FailureKind::Failed,
            format!("the account script ended with {code:?}: {stderr}"),
        ),
    }
}

/// A name as the server makes them (a letter, then letters, digits, `_` or `-`; at most 32),
/// a termpool UID, and the home the server gives that name.
fn check_account(req: &AccountRequest, uid_min: u32) -> Result<(), String> {
    let name_ok = req.name.len() <= 32
        && req.name.starts_with(|c: char| c.is_ascii_lowercase())
        && req
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        return Err(format!("{:?} is not a termpool account name", req.name));
    }
    end::target_uid(&req.uid.to_string(), uid_min)?;
    if req.home != format!("{WORKSPACE}/{}", req.name) {
        return Err(format!("{:?} is not {}'s home", req.home, req.name));
    }
    Ok(())
}

/// Ends every process of the UID.
pub fn end(body: &[u8], uid_min: u32) -> AgentResult {
    let req: EndRequest = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(e) => return failed(FailureKind::BadRequest, e.to_string()),
    };
    let uid = match end::target_uid(&req.uid.to_string(), uid_min) {
        Ok(uid) => uid,
        Err(e) => return failed(FailureKind::BadRequest, e),
    };
    match end::kill_all(uid) {
        Ok(None) => AgentResult::Ok,
        Ok(Some(pid)) => failed(
            FailureKind::Failed,
            format!("process {pid} of uid {uid} survives SIGKILL"),
        ),
        Err(e) => failed(FailureKind::Failed, e.to_string()),
    }
}

/// The lockdown read back, the homes on the volume and its marker.
pub fn status(context: &Context) -> AgentResult {
    let mut report = StatusReport {
        lockdown: lockdown::report(context.lockdown_error.clone()),
        homes: homes(),
        volume_marker: read_marker(Path::new(WORKSPACE)),
        homes_left_out: 0,
    };
    // Room for the `{"status":...}` around the report in RESULT's body.
    report.fit(MAX_BODY - 64);
    AgentResult::Status(report)
}

/// The marker's content (never through a link), if there is one.
fn read_marker(dir: &Path) -> Option<String> {
    let file = open_nofollow(&dir.join(VOLUME_MARKER), false).ok()?;
    let mut content = String::new();
    file.take(MARKER_MAX).read_to_string(&mut content).ok()?;
    Some(content.trim().to_owned())
}

/// Adds the slot's line to the volume's marker unless it is there already.
pub fn mark(body: &[u8]) -> AgentResult {
    let mark: VolumeMark = match serde_json::from_slice(body) {
        Ok(mark) => mark,
        Err(e) => return failed(FailureKind::BadRequest, e.to_string()),
    };
    if !mark.is_valid() {
        return failed(
            FailureKind::BadRequest,
            format!("{:?} is not a pool label", mark.pool),
        );
    }
    match add_mark(Path::new(WORKSPACE), &mark) {
        Ok(()) => AgentResult::Ok,
        Err(e) => failed(
            FailureKind::Failed,
            format!("writing the volume's marker: {e}"),
        ),
    }
}

/// Appends `mark`'s line to the marker in `dir` under a lock of the file (the slots of one node
/// share its volume and may mark it at once), and makes it durable.
fn add_mark(dir: &Path, mark: &VolumeMark) -> io::Result<()> {
    let mut file = open_nofollow(&dir.join(VOLUME_MARKER), true)?;
    // SAFETY: flock on a descriptor this function owns; the lock ends when it is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut content = String::new();
    (&file).take(MARKER_MAX).read_to_string(&mut content)?;
    let line = mark.line();
    if content.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let sep = match content.is_empty() || content.ends_with('\n') {
        true => "",
        false => "\n",
    };
    file.write_all(format!("{sep}{line}\n").as_bytes())?;
    file.sync_all()?;
    File::open(dir)?.sync_all()
}

/// The marker file, opened for reading (and appending, created 0644 if missing, when `write`),
/// refused when it is a link.
fn open_nofollow(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(write)
        .create(write)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The directories of the volume (never through a link) and their owners.
fn homes() -> Vec<HomeOwner> {
    let Ok(dir) = std::fs::read_dir(WORKSPACE) else {
        return Vec::new();
    };
    let mut homes: Vec<HomeOwner> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = e.path().symlink_metadata().ok()?;
            meta.is_dir().then(|| HomeOwner {
                name: e.file_name().to_string_lossy().into_owned(),
                uid: meta.uid(),
            })
        })
        .collect();
    homes.sort_by(|a, b| a.name.cmp(&b.name));
    homes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(pool: &str, slot: u32) -> VolumeMark {
        VolumeMark::new(pool, slot)
    }

    fn scratch() -> std::path::PathBuf {
        let n: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let dir = std::env::temp_dir().join(format!("tp-marker-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn marks_are_added_once_each_and_read_back() {
        let dir = scratch();
        assert_eq!(read_marker(&dir), None, "no marker yet");
        add_mark(&dir, &mark("pool", 0)).unwrap();
        add_mark(&dir, &mark("pool", 0)).unwrap();
        add_mark(&dir, &mark("pool", 3)).unwrap();
        let content = read_marker(&dir).unwrap();
        let marks = termpool_agent_proto::parse_marker(&content).unwrap();
        assert_eq!(marks, vec![mark("pool", 0), mark("pool", 3)]);
        let meta = std::fs::metadata(dir.join(VOLUME_MARKER)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o644);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_marker_without_a_final_newline_keeps_its_lines() {
        let dir = scratch();
        std::fs::write(dir.join(VOLUME_MARKER), mark("pool", 1).line()).unwrap();
        add_mark(&dir, &mark("pool", 2)).unwrap();
        let content = read_marker(&dir).unwrap();
        let marks = termpool_agent_proto::parse_marker(&content).unwrap();
        assert_eq!(marks, vec![mark("pool", 1), mark("pool", 2)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_link_is_never_followed() {
        let dir = scratch();
        let target = dir.join("elsewhere");
        std::fs::write(&target, "secret").unwrap();
        std::os::unix::fs::symlink(&target, dir.join(VOLUME_MARKER)).unwrap();
        assert_eq!(read_marker(&dir), None);
        assert!(add_mark(&dir, &mark("pool", 0)).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_mark_requests_are_refused() {
        for body in [
            &b"garbage"[..],
            br#"{"pool":"a b","slot":1}"#,
            br#"{"pool":"","slot":1}"#,
        ] {
            let refused = matches!(
                super::mark(body),
                AgentResult::Failed {
                    kind: FailureKind::BadRequest,
                    ..
                }
            );
            assert!(refused, "{}", String::from_utf8_lossy(body));
        }
    }
}
