//! The local backend: a login shell on a PTY of the server's own machine, opened by portable-pty,
//! started by `spawn` and driven through the master fd by `pty`.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use portable_pty::{native_pty_system, PtySize};
use tokio::io::unix::AsyncFd;

use super::pty::{self, dup_cloexec, PtyMaster, Shell};
use super::spawn::{spawn_session_leader, Program};
use super::{Backend, IsLive, Placement, Spawned, TtyError};
use crate::protocol::TermSize;

/// How long a hung-up shell may take to exit before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(3);
/// The environment a session may inherit from the server; everything else is cleared.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "TZ"];

/// Spawns shells on local PTYs, as the server's own user.
pub struct LocalBackend {
    argv: Vec<String>,
    user: String,
    home: String,
    /// Every shell spawned (its pid, which is its session id, and its start time), so that idle
    /// reaping can find the jobs they left behind.
    sessions: Mutex<Vec<(libc::pid_t, u64)>>,
    /// A directory of the server's own commands (`download`), first on the shell's PATH, and
    /// the environment they read.
    tools: Option<(String, Vec<(String, String)>)>,
}

impl LocalBackend {
    pub fn new(argv: Vec<String>) -> Self {
        let (user, home) = current_user();
        LocalBackend {
            argv,
            user,
            home,
            sessions: Mutex::default(),
            tools: None,
        }
    }

    /// Puts `dir` first on every shell's PATH and gives the shells `env`.
    pub fn with_tools(mut self, dir: String, env: Vec<(String, String)>) -> Self {
        self.tools = Some((dir, env));
        self
    }

    /// The shell with a clean environment: a few variables of the server's, the rest set here.
    fn program(&self) -> io::Result<Program> {
        let mut env = Vec::new();
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                env.push(env_entry(name, &self.inherited(name, value))?);
            }
        }
        if let Some((_, tool_env)) = &self.tools {
            for (name, value) in tool_env {
                env.push(env_entry(name, OsStr::new(value))?);
            }
        }
        if std::env::var_os("LANG").is_none() {
            env.push(env_entry("LANG", OsStr::new("C.UTF-8"))?);
        }
        for (name, value) in [
            ("TERM", "xterm-256color"),
            ("COLORTERM", "truecolor"),
            ("HOME", &self.home),
            ("USER", &self.user),
            ("LOGNAME", &self.user),
            ("SHELL", &self.argv[0]),
        ] {
            env.push(env_entry(name, OsStr::new(value))?);
        }
        Ok(Program {
            argv: self
                .argv
                .iter()
                .map(|a| c_string(a.as_bytes()))
                .collect::<io::Result<_>>()?,
            env,
            cwd: c_string(self.home.as_bytes())?,
        })
    }
}

impl LocalBackend {
    /// An inherited variable's value for the shell: PATH with the tools' directory first.
    fn inherited(&self, name: &str, value: std::ffi::OsString) -> std::ffi::OsString {
        match &self.tools {
            Some((dir, _)) if name == "PATH" => {
                let mut path = std::ffi::OsString::from(format!("{dir}:"));
                path.push(value);
                path
            }
            _ => value,
        }
    }
}

fn env_entry(name: &str, value: &OsStr) -> io::Result<CString> {
    c_string(&[name.as_bytes(), b"=", value.as_bytes()].concat())
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a command"))
}

#[async_trait]
impl Backend for LocalBackend {
    fn mode(&self) -> &'static str {
        "local"
    }

    async fn place(
        &self,
        _identity: &str,
        _has_live_session: &IsLive,
    ) -> Result<Placement, TtyError> {
        Ok(Placement {
            user: self.user.clone(),
            container: None,
            container_id: None,
            home: self.home.clone(),
        })
    }

    async fn spawn(&self, _placement: &Placement, size: TermSize) -> Result<Spawned, TtyError> {
        // Opening a PTY and posix_spawn (which returns once the child has exec'd) block: keep them
        // off the worker's event loop, where they would stall every other session of the worker
        // (and a burst of new sessions behind it).
        let program = self.program()?;
        let (master, pid) = tokio::task::spawn_blocking(move || {
            let pair = native_pty_system()
                .openpty(PtySize {
                    rows: size.rows,
                    cols: size.cols,
                    pixel_width: 0,
                    pixel_height: 0,
                })
                .map_err(io::Error::other)?;
            let tty = pair
                .master
                .tty_name()
                .ok_or_else(|| io::Error::other("the PTY has no slave path"))?;
            let pid = spawn_session_leader(&program, &c_string(tty.as_os_str().as_bytes())?)?;
            // The slave must not stay open here, or reading the master never reports the end.
            drop(pair.slave);
            let master_fd = pair
                .master
                .as_raw_fd()
                .ok_or_else(|| io::Error::other("PTY master has no fd"))?;
            Ok::<_, io::Error>((dup_cloexec(master_fd)?, pid))
        })
        .await
        .map_err(io::Error::other)??;
        if let Some(start) = process_start_time(pid) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.push((pid, start));
        }
        let process = ShellProcess::new(pid)?;
        Ok(pty::session(PtyMaster::new(master)?, process))
    }

    async fn health(&self) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({ "shell": self.argv[0] }))
    }

    /// Kills what the ended sessions left running (nohup jobs). Every local session runs as the
    /// server's own account, so this is called only when no session at all is live.
    async fn reap(&self, _placement: &Placement) -> Result<(), TtyError> {
        let ended = std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        let mut leaders = Vec::with_capacity(ended.len());
        for (sid, started) in ended {
            // A live process with the leader's pid but another start time means the pid, and so
            // any session of that id, now belongs to somebody else.
            if process_start_time(sid).is_some_and(|t| t != started) {
                continue;
            }
            leaders.push(sid);
        }
        signal_sessions(leaders, libc::SIGKILL).await;
        Ok(())
    }
}

#[async_trait]
impl Shell for ShellProcess {
    async fn exited(&self) {
        self.wait().await;
    }

    async fn exit_code(&self) -> Result<Option<i32>, TtyError> {
        Ok(self.wait().await)
    }

    fn pid(&self) -> Option<i32> {
        Some(self.pid)
    }

    async fn hang_up(this: &Arc<Self>) {
        signal_sessions(vec![this.pid], libc::SIGHUP).await;
        let process = this.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(HANGUP_GRACE, process.wait())
                .await
                .is_err()
            {
                log::warn!("shell {} ignored SIGHUP; killing it", process.pid);
                signal_sessions(vec![process.pid], libc::SIGKILL).await;
                process.wait().await;
            }
        });
    }
}

/// The shell process, watched through a pidfd and reaped exactly once.
struct ShellProcess {
    pid: libc::pid_t,
    pidfd: AsyncFd<OwnedFd>,
    status: Mutex<Option<Option<i32>>>,
}

impl ShellProcess {
    fn new(pid: libc::pid_t) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(ShellProcess {
            pid,
            // SAFETY: the pidfd is owned by this AsyncFd alone and closed only with it.
            pidfd: unsafe { AsyncFd::register(pidfd) }.map_err(io::Error::from)?,
            status: Mutex::new(None),
        })
    }

    /// Waits for the shell to exit; its exit code, or 128 + signal as shells report it.
    async fn wait(&self) -> Option<i32> {
        loop {
            if let Some(status) = *self.status.lock().unwrap_or_else(|e| e.into_inner()) {
                return status;
            }
            // A pidfd becomes readable, and stays so, once the process has exited.
            let Ok(mut guard) = self.pidfd.readable().await else {
                return None;
            };
            guard.retain_ready();
            self.reap();
        }
    }

    fn reap(&self) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_some() {
            return;
        }
        let mut raw = 0;
        // SAFETY: waitpid on our own child with a valid out pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
        *status = match r {
            0 => return, // not exited yet (spurious wake-up)
            r if r < 0 => Some(None),
            _ if libc::WIFEXITED(raw) => Some(Some(libc::WEXITSTATUS(raw))),
            _ if libc::WIFSIGNALED(raw) => Some(Some(128 + libc::WTERMSIG(raw))),
            _ => Some(None),
        };
    }
}

/// Sends `signal` to every process of the terminal sessions led by `leaders` (the shells and all
/// they started, including jobs in other process groups), and SIGCONT so stopped jobs see it.
///
/// Finding them means reading /proc/<pid>/stat of every process on the machine (about 4 ms with
/// a few hundred), so it is done on a blocking thread, not on the event loop that relays other
/// sessions' keystrokes, and requests that arrive during a scan share the next one: 100 sessions
/// closed at once cost a few scans, not 100.
async fn signal_sessions(leaders: Vec<libc::pid_t>, signal: libc::c_int) {
    let (done, finished) = tokio::sync::oneshot::channel();
    let start_scanning = {
        let mut pending = SIGNAL_REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
        let scanning = pending.is_some();
        pending.get_or_insert_with(Vec::new).push(SignalRequest {
            leaders,
            signal,
            done,
        });
        !scanning
    };
    if start_scanning {
        tokio::task::spawn_blocking(scan_until_no_requests);
    }
    // An error means the scan was abandoned with the runtime: nothing left to wait for.
    let _ = finished.await;
}

struct SignalRequest {
    leaders: Vec<libc::pid_t>,
    signal: libc::c_int,
    done: tokio::sync::oneshot::Sender<()>,
}

/// Requests waiting for the next scan of /proc; `None` while no scan is running.
static SIGNAL_REQUESTS: Mutex<Option<Vec<SignalRequest>>> = Mutex::new(None);

fn scan_until_no_requests() {
    loop {
        let batch = {
            let mut pending = SIGNAL_REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
            let batch = pending.as_mut().map(std::mem::take).unwrap_or_default();
            if batch.is_empty() {
                *pending = None;
                return;
            }
            batch
        };
        let leaders: Vec<libc::pid_t> = batch.iter().flat_map(|r| r.leaders.clone()).collect();
        let members = session_members(&leaders);
        for request in batch {
            for &(pid, sid) in &members {
                if request.leaders.contains(&sid) {
                    // SAFETY: kill has no memory effects.
                    unsafe {
                        libc::kill(pid, request.signal);
                        libc::kill(pid, libc::SIGCONT);
                    }
                }
            }
            let _ = request.done.send(());
        }
    }
}

/// The processes (pid, session id) whose session id is one of `leaders`, found in /proc.
fn session_members(leaders: &[libc::pid_t]) -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return leaders.iter().map(|&l| (l, l)).collect();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| Some((pid, process_session(pid)?)))
        .filter(|(_, sid)| leaders.contains(sid))
        .collect()
}

/// Field `n` (1-based, n >= 3) of /proc/<pid>/stat, counted after the command name, which may
/// itself hold spaces or ')'.
fn stat_field(pid: libc::pid_t, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n - 3)?.parse().ok()
}

/// The session id of a process (field 6).
fn process_session(pid: libc::pid_t) -> Option<libc::pid_t> {
    stat_field(pid, 6).and_then(|s| libc::pid_t::try_from(s).ok())
}

/// When a process started, in clock ticks since boot (field 22).
fn process_start_time(pid: libc::pid_t) -> Option<u64> {
    stat_field(pid, 22)
}

/// The server's own user name and home directory.
fn current_user() -> (String, String) {
    // SAFETY: getpwuid returns a pointer into static storage or null; read at once, single use at
    // start.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
            return (format!("uid{}", libc::geteuid()), home);
        }
        let name = CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned();
        let home = CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned();
        (name, home)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_field_survives_odd_command_names() {
        // Our own process: its session id must parse even though we can't control its name.
        let me = std::process::id() as libc::pid_t;
        // SAFETY: getsid(0) has no memory effects.
        let sid = unsafe { libc::getsid(0) };
        assert_eq!(process_session(me), Some(sid));
    }
}
