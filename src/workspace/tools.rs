//! The server's own commands for local-mode shells (`download`), installed at start in a private
//! directory that goes first on the shells' PATH. Container mode has them in the user image.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

/// The `download` command, the same script the user image installs as /usr/local/bin/download.
pub const DOWNLOAD_SCRIPT: &str = include_str!("../../docker/user/download");

/// Name of the directories, followed by the server's pid and a random part.
const PREFIX: &str = "termpool-tools-";

/// Removes the directories of servers of this uid that are gone (killed before they could remove
/// their own): each start would otherwise leave one behind.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|m| {
            std::os::unix::fs::MetadataExt::uid(&m) == me && m.is_dir() && !m.is_symlink()
        });
        if ours && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes the commands into a new directory of the server's own (mode 700) and returns it, with
/// the environment they read.
pub fn install(max_download_mb: u64) -> std::io::Result<(PathBuf, Vec<(String, String)>)> {
    remove_stale();
    let dir = std::env::temp_dir().join(format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    // A fresh name, created here: nobody can have planted it, or anything in it.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let mut script = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(dir.join("download"))?;
    script.write_all(DOWNLOAD_SCRIPT.as_bytes())?;
    // Login shells' profiles usually set PATH afresh (Debian's /etc/profile does): bash also gets
    // the command as an exported function, which it takes from the environment before any
    // profile runs.
    let function = format!("() {{ '{}/download' \"$@\"; }}", dir.display());
    let env = vec![
        (
            "TERMPOOL_MAX_DOWNLOAD_MB".to_owned(),
            max_download_mb.to_string(),
        ),
        ("BASH_FUNC_download%%".to_owned(), function),
    ];
    Ok((dir, env))
}
