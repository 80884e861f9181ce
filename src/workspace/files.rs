//! Uploaded files written on the server's own machine (local mode, where the server's user is
//! the shell's): into the shell's working directory, never over an existing file or through a
//! symlink, and nothing left behind when the upload fails.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use termpool_agent_proto::{check_file_name, FailureKind};

/// Why an upload was not written.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    BadName(&'static str),
    #[error("{0} already exists")]
    Exists(String),
    #[error("Disk quota exceeded")]
    Quota,
    #[error("permission denied: {0} is not writable")]
    Denied(String),
    #[error("the file could not be written: {0}")]
    Io(io::Error),
    #[error("uploads are not available for this session")]
    Unsupported,
}

impl UploadError {
    /// The error of a failed open or write, named by what the user can act on.
    pub fn from_io(e: io::Error, name: &str, dir: &Path) -> UploadError {
        let kind = FailureKind::of_write_error(&e);
        UploadError::refused(kind, name, &dir.display().to_string()).unwrap_or(UploadError::Io(e))
    }

    /// The error for the refusal kinds the user can act on (of [`FailureKind::of_write_error`]),
    /// of the file `name` in the directory `dir`; `None` for the others.
    pub fn refused(kind: FailureKind, name: &str, dir: &str) -> Option<UploadError> {
        match kind {
            FailureKind::FileExists => Some(UploadError::Exists(name.to_owned())),
            FailureKind::NoSpace => Some(UploadError::Quota),
            FailureKind::Denied => Some(UploadError::Denied(dir.to_owned())),
            _ => None,
        }
    }
}

/// Checks that `name` is a plain file name (the rules are shared with the agent).
pub fn check_name(name: &str) -> Result<(), UploadError> {
    check_file_name(name).map_err(UploadError::BadName)
}

/// Where an upload of the shell `shell_pid` lands: its working directory when it can be read
/// and still exists, else `home`.
pub fn target_dir(shell_pid: Option<i32>, home: &str) -> PathBuf {
    shell_pid
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok())
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from(home))
}

/// Creates `dir/name` for writing: never an existing file, never through a symlink.
pub fn create(dir: &Path, name: &str) -> Result<(File, PathBuf), UploadError> {
    check_name(name)?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(&path)
        .map_err(|e| UploadError::from_io(e, name, dir))?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overwrites_nor_follows_a_symlink() {
        let dir = std::env::temp_dir().join(format!("termpool-up-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let outside = dir.join("outside");
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let refused = create(&dir, "link").unwrap_err();
        assert!(matches!(refused, UploadError::Exists(_)), "{refused:?}");
        assert!(!outside.exists(), "nothing written through the link");
        create(&dir, "new").unwrap();
        assert!(matches!(create(&dir, "new"), Err(UploadError::Exists(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
