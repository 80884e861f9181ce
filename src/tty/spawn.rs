//! Starting a program as the leader of a new terminal session with `posix_spawn`, so the server
//! is never forked (see docs/design.md for why).

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::ptr;

/// A program to run: its argument vector, its whole environment and its working directory.
pub struct Program {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: CString,
}

/// Starts `program` in a new session whose controlling terminal is `tty` (a PTY's slave path),
/// connected to its stdin, stdout and stderr. The child is the caller's to reap.
pub fn spawn_session_leader(program: &Program, tty: &CStr) -> io::Result<libc::pid_t> {
    let path = program
        .argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut actions = FileActions::new()?;
    actions.open_tty(0, tty)?;
    actions.dup2(0, 1)?;
    actions.dup2(0, 2)?;
    actions.chdir(&program.cwd)?;
    actions.close_from(3)?;
    let attributes = Attributes::new()?;
    let argv = null_terminated(&program.argv);
    let env = null_terminated(&program.env);
    let mut pid = 0;
    // SAFETY: every pointer is valid for the call: path, argv and env point into `program`, which
    // outlives it, and both arrays end with a null pointer; actions and attributes are initialised.
    check(unsafe {
        libc::posix_spawnp(
            &mut pid,
            path.as_ptr(),
            &actions.0,
            &attributes.0,
            argv.as_ptr(),
            env.as_ptr(),
        )
    })?;
    Ok(pid)
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(ptr::null_mut()))
        .collect()
}

/// The posix_spawn functions return an error number rather than setting errno.
fn check(code: libc::c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut actions = MaybeUninit::uninit();
        // SAFETY: init writes a valid object to the pointer, or fails and writes nothing we use.
        check(unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        Ok(Self(unsafe { actions.assume_init() }))
    }

    fn open_tty(&mut self, fd: libc::c_int, path: &CStr) -> io::Result<()> {
        // SAFETY: the actions are initialised and glibc copies the path.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut self.0, fd, path.as_ptr(), libc::O_RDWR, 0)
        })
    }

    fn dup2(&mut self, from: libc::c_int, to: libc::c_int) -> io::Result<()> {
        // SAFETY: the actions are initialised.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) })
    }

    fn chdir(&mut self, dir: &CStr) -> io::Result<()> {
        // SAFETY: the actions are initialised and glibc copies the path.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
    }

    fn close_from(&mut self, fd: libc::c_int) -> io::Result<()> {
        // SAFETY: the actions are initialised.
        check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(&mut self.0, fd) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed only here.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    fn new() -> io::Result<Self> {
        let mut attributes = MaybeUninit::uninit();
        // SAFETY: init writes a valid object to the pointer, or fails and writes nothing we use.
        check(unsafe { libc::posix_spawnattr_init(attributes.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        let mut this = Self(unsafe { attributes.assume_init() });
        // SAFETY: the sets are initialised by sigfillset/sigemptyset before use, and the
        // attribute object is initialised.
        unsafe {
            let mut defaults = MaybeUninit::uninit();
            libc::sigfillset(defaults.as_mut_ptr());
            let mut defaults = defaults.assume_init();
            // These two cannot be caught or ignored, so they cannot be reset either.
            libc::sigdelset(&mut defaults, libc::SIGKILL);
            libc::sigdelset(&mut defaults, libc::SIGSTOP);
            check(libc::posix_spawnattr_setsigdefault(&mut this.0, &defaults))?;
            let mut empty = MaybeUninit::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            check(libc::posix_spawnattr_setsigmask(
                &mut this.0,
                empty.as_ptr(),
            ))?;
            let flags = libc::POSIX_SPAWN_SETSID
                | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short
                | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short;
            check(libc::posix_spawnattr_setflags(&mut this.0, flags))?;
        }
        Ok(this)
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed only here.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// The error `posix_spawn` reports for `program` in `cwd`, which must fail.
    fn spawn_error(program: &str, cwd: &str) -> Option<i32> {
        let program = Program {
            argv: vec![c(program)],
            env: vec![],
            cwd: c(cwd),
        };
        spawn_session_leader(&program, &c("/dev/null"))
            .unwrap_err()
            .raw_os_error()
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_child() {
        assert_eq!(
            spawn_error("/nonexistent/termpool-shell", "/"),
            Some(libc::ENOENT)
        );
    }

    #[test]
    fn a_missing_working_directory_is_an_error_not_a_child() {
        assert_eq!(
            spawn_error("/bin/true", "/nonexistent/termpool-home"),
            Some(libc::ENOENT)
        );
    }
}
