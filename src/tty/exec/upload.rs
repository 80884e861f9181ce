//! Uploads into a container: a `docker exec` as the session's user (never root) that resolves the
//! shell's working directory itself and writes the body from its stdin with `dd`, exclusively and
//! without following a symlink; anything half-written is removed.

use bollard::models::ExecConfig;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::attach::BoxRead;
use super::ExecTerminals;
use crate::tty::container::PATH;
use crate::tty::Placement;
use crate::workspace::files::UploadError;

/// `$1`: the shell's pid in the container (may be empty), `$2`: the file name, `$3`: the home.
/// Prints the path, then copies stdin into it; on failure prints dd's message on stderr and
/// removes what it created. Arguments, never interpolated into the script.
const WRITE_SCRIPT: &str = r#"dir=
[ -n "$1" ] && dir=$(readlink "/proc/$1/cwd" 2>/dev/null)
[ -n "$dir" ] && [ -d "$dir" ] || dir=$3
path="${dir%/}/$2"
printf '%s\n' "$path"
err=$(dd of="$path" bs=65536 conv=excl oflag=nofollow status=none 2>&1)
status=$?
if [ "$status" -ne 0 ]; then
    case $err in *"File exists"* | *"symbolic links"*) ;; *) rm -f -- "$path" ;; esac
    printf '%s\n' "$err" >&2
    exit 1
fi"#;

/// What the exec wrote and how it ended.
struct Outcome {
    stdout: String,
    stderr: String,
}

impl ExecTerminals {
    /// Writes `length` bytes from `body` as `p.user` in `container` (see [`WRITE_SCRIPT`]).
    pub(in crate::tty) async fn write_file(
        &self,
        container: &str,
        p: &Placement,
        shell_pid: Option<i32>,
        name: &str,
        length: u64,
        body: mpsc::Receiver<Bytes>,
    ) -> Result<String, UploadError> {
        let failed =
            |what: &str, e: String| UploadError::Io(std::io::Error::other(format!("{what}: {e}")));
        let pid = shell_pid.map(|p| p.to_string()).unwrap_or_default();
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            privileged: Some(false),
            user: Some(p.user.clone()),
            working_dir: Some(p.home.clone()),
            env: Some(vec![format!("PATH={PATH}"), "LC_ALL=C".into()]),
            cmd: Some(
                [
                    "/bin/sh",
                    "-c",
                    WRITE_SCRIPT,
                    "termpool-upload",
                    &pid,
                    name,
                    &p.home,
                ]
                .map(String::from)
                .to_vec(),
            ),
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, config).await;
        let exec_id = exec
            .map_err(|e| failed("creating the upload exec", e.to_string()))?
            .id;
        let (reader, mut writer) = self
            .endpoint
            .start_exec(&exec_id, false)
            .await
            .map_err(|e| failed("starting the upload exec", e.to_string()))?;
        let mut collecting = tokio::spawn(collect(reader));
        // A `dd` stopped by a full quota exits without reading the rest of its stdin, and Docker
        // then stops reading the connection: sending on would wait forever. Its output's end
        // (the process's) ends the sending.
        let mut ended = None;
        let sent = tokio::select! {
            sent = send_body(&mut writer, body) => sent,
            outcome = &mut collecting => {
                ended = Some(outcome);
                Err("the upload exec ended before the body".to_owned())
            }
        };
        // The end of stdin is the end of the file.
        let _ = writer.shutdown().await;
        let outcome = match ended {
            Some(outcome) => outcome,
            None => collecting.await,
        }
        .map_err(|e| failed("the upload exec", e.to_string()))?;
        let path = outcome.stdout.lines().next().unwrap_or("").to_owned();
        let code = self
            .docker
            .inspect_exec(&exec_id)
            .await
            .ok()
            .and_then(|i| i.exit_code);
        // A write that failed (a full quota) stops reading stdin: its reason explains a body cut
        // short too, and the script has removed the file.
        let failed_write = code != Some(0) && !outcome.stderr.trim().is_empty();
        if sent != Ok(length) && !failed_write {
            self.remove(container, p, &path).await;
            return Err(failed("the upload", "the body ended short".into()));
        }
        match code {
            Some(0) => Ok(path),
            _ => Err(classify(&outcome.stderr, name, &path)),
        }
    }

    /// Removes what a broken-off upload left, as the user.
    async fn remove(&self, container: &str, p: &Placement, path: &str) {
        if path.is_empty() {
            return;
        }
        let config = ExecConfig {
            user: Some(p.user.clone()),
            privileged: Some(false),
            cmd: Some(["rm", "-f", "--", path].map(String::from).to_vec()),
            ..Default::default()
        };
        if let Ok(exec) = self.docker.create_exec(container, config).await {
            let _ = self.docker.start_exec(&exec.id, None).await;
        }
    }
}

/// Copies the body to the exec's stdin; the number of bytes sent, or the write error.
async fn send_body(
    writer: &mut super::attach::BoxWrite,
    mut body: mpsc::Receiver<Bytes>,
) -> Result<u64, String> {
    let mut sent = 0u64;
    while let Some(chunk) = body.recv().await {
        writer.write_all(&chunk).await.map_err(|e| e.to_string())?;
        sent += chunk.len() as u64;
    }
    Ok(sent)
}

/// Reads the exec's multiplexed output (8-byte headers: stream, 0, 0, 0, length) to its end.
async fn collect(mut reader: BoxRead) -> Outcome {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut head = [0u8; 8];
    while reader.read_exact(&mut head).await.is_ok() {
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len.min(1 << 20)];
        if reader.read_exact(&mut payload).await.is_err() {
            break;
        }
        match head[0] {
            2 => stderr.extend_from_slice(&payload),
            _ => stdout.extend_from_slice(&payload),
        }
    }
    Outcome {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The upload error `dd`'s message stands for.
fn classify(stderr: &str, name: &str, path: &str) -> UploadError {
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    let errno = if stderr.contains("File exists") || stderr.contains("symbolic links") {
        libc::EEXIST
    } else if stderr.contains("quota") || stderr.contains("No space left") {
        libc::EDQUOT
    } else if stderr.contains("Permission denied") || stderr.contains("Read-only") {
        libc::EACCES
    } else {
        log::warn!("upload into a container failed: {}", stderr.trim());
        return UploadError::Io(std::io::Error::other(stderr.trim().to_owned()));
    };
    UploadError::from_io(std::io::Error::from_raw_os_error(errno), name, dir)
}
