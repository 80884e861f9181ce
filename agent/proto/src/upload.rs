//! The rules of an upload, the same wherever the file is written (by the server in local mode and
//! through `docker exec`, by the agent on Swarm): which names are files, and which errors the
//! user is told apart.

use std::io;

use crate::FailureKind;

/// Longest file name accepted, in bytes (the usual NAME_MAX).
const MAX_NAME_BYTES: usize = 255;

/// Checks that `name` is a plain file name: not empty, `.` or `..`, no `/` or NUL, at most
/// [`MAX_NAME_BYTES`]. The error says what is wrong, for the user.
pub fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("the file needs a name");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("the file name is longer than 255 bytes");
    }
    if name.contains(['/', '\0']) {
        return Err("the file name may not contain '/' or NUL");
    }
    Ok(())
}

impl FailureKind {
    /// What a failed create or write of an upload means to its user: the name is taken (a link
    /// included, since uploads never follow one), the disk or quota is full, the directory is not
    /// theirs to write; anything else is [`FailureKind::Failed`].
    pub fn of_write_error(e: &io::Error) -> FailureKind {
        match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ELOOP) => FailureKind::FileExists,
            Some(libc::EDQUOT) | Some(libc::ENOSPC) => FailureKind::NoSpace,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => FailureKind::Denied,
            _ => FailureKind::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_files() {
        for good in ["a.txt", "...", "..a", "with space", "é", &"x".repeat(255)] {
            assert!(check_file_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(256);
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\0b", &long] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn write_errors_keep_their_kinds() {
        let kind = |errno| FailureKind::of_write_error(&io::Error::from_raw_os_error(errno));
        assert_eq!(kind(libc::EEXIST), FailureKind::FileExists);
        assert_eq!(kind(libc::ELOOP), FailureKind::FileExists);
        assert_eq!(kind(libc::EDQUOT), FailureKind::NoSpace);
        assert_eq!(kind(libc::ENOSPC), FailureKind::NoSpace);
        assert_eq!(kind(libc::EACCES), FailureKind::Denied);
        assert_eq!(kind(libc::EPERM), FailureKind::Denied);
        assert_eq!(kind(libc::EROFS), FailureKind::Denied);
        assert_eq!(kind(libc::EIO), FailureKind::Failed);
    }
}
