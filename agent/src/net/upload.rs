//! WRITE: an upload, written by this connection's process after it has become the user (no
//! shell, no `docker exec`): a new file in the shell's working directory or the home, never
//! overwritten, never written through a link, and removed when anything stops it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use termpool_agent_proto::{
    check_file_name, AgentResult, FailureKind, FrameType, Receiver, WriteRequest,
};

use super::conn::{invalid, read_message};
use crate::accounts::{self, Account};

/// How long the server may pause between two pieces of a file (it forwards a client's upload
/// as it comes).
const PIECE_TIMEOUT: Duration = Duration::from_secs(60);

/// Receives the file WRITE announces and writes it as the user; the RESULT to send. An error
/// means the connection broke off (the file, if made, is removed).
pub fn write(
    stream: &mut TcpStream,
    rx: &mut Receiver,
    request: &[u8],
    uid_min: u32,
) -> io::Result<AgentResult> {
    let (req, mut pieces) = Pieces::announced(stream, rx, request)?;
    let (mut file, path) = match open_as_user(&req, uid_min) {
        Ok(opened) => opened,
        Err(refused) => {
            pieces.drain()?;
            return Ok(refused);
        }
    };
    let mut failed = None;
    let received = pieces.each(|piece| {
        if failed.is_none() {
            failed = file.write_all(piece).err();
        }
    });
    if let Err(e) = received {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    match failed {
        None => Ok(AgentResult::Written {
            path: path.display().to_string(),
        }),
        Some(e) => {
            let _ = std::fs::remove_file(&path);
            Ok(refusal(&e, path.parent().unwrap_or(Path::new("/"))))
        }
    }
}

/// Reads and throws away the file WRITE announces, for a request refused before its body.
pub fn drain(stream: &mut TcpStream, rx: &mut Receiver, request: &[u8]) -> io::Result<()> {
    Pieces::announced(stream, rx, request)?.1.drain()
}

/// The INPUT frames that carry a file of `left` bytes.
struct Pieces<'a> {
    stream: &'a mut TcpStream,
    rx: &'a mut Receiver,
    left: u64,
    msg: Vec<u8>,
}

impl<'a> Pieces<'a> {
    /// The request WRITE's body `request` holds, and the pieces it announces.
    fn announced(
        stream: &'a mut TcpStream,
        rx: &'a mut Receiver,
        request: &[u8],
    ) -> io::Result<(WriteRequest, Pieces<'a>)> {
        stream.set_read_timeout(Some(PIECE_TIMEOUT))?;
        let req: WriteRequest = serde_json::from_slice(request).map_err(invalid)?;
        let left = req.length;
        let msg = Vec::new();
        Ok((
            req,
            Pieces {
                stream,
                rx,
                left,
                msg,
            },
        ))
    }

    /// Hands each piece to `f` until the file's length has come.
    fn each(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        while self.left > 0 {
            read_message(self.stream, &mut self.msg)?;
            let frame = self.rx.open(&mut self.msg).map_err(invalid)?;
            if frame.kind != FrameType::Input || frame.body.len() as u64 > self.left {
                return Err(invalid("a piece of the file that does not fit it"));
            }
            self.left -= frame.body.len() as u64;
            f(frame.body);
        }
        Ok(())
    }

    /// Reads the file's pieces and throws them away: the answer comes after the last one.
    fn drain(&mut self) -> io::Result<()> {
        self.each(|_| {})
    }
}

/// Checks the request, becomes the user and makes the file; the refusal to answer otherwise.
fn open_as_user(req: &WriteRequest, uid_min: u32) -> Result<(File, PathBuf), AgentResult> {
    let bad = |message: String| AgentResult::Failed {
        kind: FailureKind::BadRequest,
        message,
    };
    let account = accounts::lookup(&req.user)
        .filter(|a| a.uid >= uid_min && a.gid >= uid_min && a.home == req.home)
        .ok_or_else(|| bad(format!("{} is not a termpool account here", req.user)))?;
    check_file_name(&req.file).map_err(|e| bad(e.into()))?;
    become_user(&account).map_err(|e| AgentResult::Failed {
        kind: FailureKind::Failed,
        message: format!("becoming {}: {e}", account.name),
    })?;
    let dir = working_dir(req.shell_pid, &account);
    let path = dir.join(&req.file);
    // O_EXCL: a name that exists, a link included, is refused rather than followed.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| refusal(&e, &dir))?;
    Ok((file, path))
}

/// The shell's working directory when the shell is the user's, else the home. Read as the user:
/// another user's `cwd` link is not readable without CAP_SYS_PTRACE, which the agent has not.
fn working_dir(shell_pid: Option<u32>, account: &Account) -> PathBuf {
    let home = PathBuf::from(&account.home);
    let Some(pid) = shell_pid else {
        return home;
    };
    let proc = format!("/proc/{pid}");
    let owned = std::fs::metadata(&proc).is_ok_and(|m| m.uid() == account.uid);
    match std::fs::read_link(format!("{proc}/cwd")) {
        Ok(dir) if owned && dir.is_absolute() && dir.is_dir() => dir,
        _ => home,
    }
}

/// Drops root for good: the account's group and UID, no supplementary groups.
fn become_user(account: &Account) -> io::Result<()> {
    // SAFETY: plain system calls on integers; this process is single-threaded.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(account.gid, account.gid, account.gid) == 0
            && libc::setresuid(account.uid, account.uid, account.uid) == 0
    };
    match ok {
        true => Ok(()),
        false => Err(io::Error::last_os_error()),
    }
}

/// The answer for a file that could not be made or written in `dir`. A refusal the user can act
/// on names the directory alone (the server words it); any other failure says what happened.
fn refusal(e: &io::Error, dir: &Path) -> AgentResult {
    let kind = FailureKind::of_write_error(e);
    let message = match kind {
        FailureKind::Failed => format!("{}: {e}", dir.display()),
        _ => dir.display().to_string(),
    };
    AgentResult::Failed { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_directory_and_failures_the_error() {
        let refused = |errno| refusal(&io::Error::from_raw_os_error(errno), Path::new("/w/u"));
        let denied = AgentResult::Failed {
            kind: FailureKind::Denied,
            message: "/w/u".into(),
        };
        assert_eq!(refused(libc::EACCES), denied);
        match refused(libc::EIO) {
            AgentResult::Failed { kind, message } => {
                assert_eq!(kind, FailureKind::Failed);
                assert!(
                    message.starts_with("/w/u: ") && message.len() > 6,
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
