//! Uploaded files written on the server's own machine (local mode, where the server's user is
//! the shell's): into the shell's working directory, never over an existing file or through a
//! symlink, and nothing left behind when the upload fails.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest file name accepted, in bytes (the usual NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

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
        match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ELOOP) => UploadError::Exists(name.to_owned()),
            Some(libc::EDQUOT) | Some(libc::ENOSPC) => UploadError::Quota,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                UploadError::Denied(dir.display().to_string())
            }
            _ => UploadError::Io(e),
        }
    }
}

/// Checks that `name` is a plain file name: no directory part, no `.` or `..`, no NUL, not empty,
/// at most 255 bytes.
pub fn check_name(name: &str) -> Result<(), UploadError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(UploadError::BadName("the file needs a name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(UploadError::BadName(
            "the file name is longer than 255 bytes",
        ));
    }
    if name.contains(['/', '\0']) {
        return Err(UploadError::BadName(
            "the file name may not contain '/' or NUL",
        ));
    }
    Ok(())
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
    fn only_plain_names_pass() {
        for good in ["a.txt", "...", "..a", "with space", "é", &"x".repeat(255)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "/etc",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

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
