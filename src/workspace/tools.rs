//! The server's own commands for local-mode shells (`download`), installed at start in a private
//! directory that goes first on the shells' PATH. Container mode has them in the user image.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

/// The `download` command, the same script the user image installs as /usr/local/bin/download.
pub const DOWNLOAD_SCRIPT: &str = include_str!("../../docker/user/download");

/// Writes the commands into a new directory of the server's own (mode 700) and returns it, with
/// the environment they read.
pub fn install(max_download_mb: u64) -> std::io::Result<(PathBuf, Vec<(String, String)>)> {
    let dir = std::env::temp_dir().join(format!(
        "termpool-tools-{}-{}",
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
