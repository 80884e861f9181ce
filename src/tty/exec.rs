//! A terminal that is a `docker exec` with a TTY: started through a small `sh` wrapper that sizes
//! the TTY and reports the shell's PID (stripped from the output), attached raw (`attach`), hung
//! up by an exec as the same user (`hangup`), its exit code from Docker's events (`exits`).

mod attach;
mod exits;
mod hangup;
mod upload;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::ExecConfig;
use bollard::query_parameters::{InspectContainerOptions, ResizeExecOptionsBuilder};
use bollard::Docker;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Mutex};

use super::container::START_TIMEOUT;
use super::{Placement, Spawned, Tty, TtyError, TtyOutput, Unavailability};
use crate::protocol::TermSize;
use attach::{BoxRead, BoxWrite, Endpoint};
use exits::ExecExits;
use hangup::HangupBatch;

/// Starts the login shell at the requested size and reports its PID first. `$1`/`$2` are the
/// size, passed as arguments so that nothing is ever interpolated into the script.
/// umask 077: what a user writes outside their home (e.g. /tmp, shared by the container) is
/// theirs alone unless they choose otherwise.
const SESSION_WRAPPER: &str = "umask 077; stty cols \"$1\" rows \"$2\" 2>/dev/null; \
     printf '\\033]5379;termpool-pid=%s\\007' \"$$\"; exec /bin/bash -l";
const PID_MARK_START: &[u8] = b"\x1b]5379;termpool-pid=";
const PID_MARK_END: u8 = 0x07;
/// How long an ended session waits for Docker's report of its exit before asking for it.
const EXIT_EVENT_WAIT: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 * 1024;
/// Docker scans exec input for "detach keys" and ends the attach when it sees them; the default,
/// Ctrl-P Ctrl-Q, is an ordinary emacs/readline chord. Docker cannot switch this off, so the
/// sequence is made six bytes that no keyboard or text paste produces in a row.
const DETACH_KEYS: &str = "ctrl-^,ctrl-_,ctrl-@,ctrl-^,ctrl-_,ctrl-@";

/// Creates and starts exec terminals in the pool's containers.
pub(super) struct ExecTerminals {
    docker: Docker,
    endpoint: Endpoint,
    hangups: Arc<HangupBatch>,
    exits: Arc<ExecExits>,
}

impl ExecTerminals {
    /// Follows the exec exits of containers labelled `label_filter` (`key=value`) from now on.
    pub(super) fn new(docker: Docker, label_filter: String) -> Result<Self, TtyError> {
        let endpoint = Endpoint::from_env()?;
        let exits = ExecExits::watch(docker.clone(), label_filter);
        Ok(ExecTerminals {
            docker,
            endpoint,
            hangups: Arc::default(),
            exits,
        })
    }

    /// Creates the exec of a session in `container` (its id) with environment `env`; returns the
    /// exec's id.
    pub(super) async fn create(
        &self,
        container: &str,
        p: &Placement,
        size: TermSize,
        env: Vec<String>,
    ) -> Result<String, bollard::errors::Error> {
        // `env -i`: an exec inherits the container's environment (TERMPOOL_* and the image's);
        // the shell gets exactly `env`, the allowlist the session agent's shells get.
        let cmd: Vec<String> = ["/usr/bin/env", "-i"]
            .into_iter()
            .map(str::to_owned)
            .chain(env)
            .chain(
                ["/bin/sh", "-c", SESSION_WRAPPER, "termpool-session"]
                    .into_iter()
                    .map(str::to_owned),
            )
            .chain([size.cols.to_string(), size.rows.to_string()])
            .collect();
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            detach_keys: Some(DETACH_KEYS.into()),
            // Never privileged: a privileged exec gets every capability.
            privileged: Some(false),
            user: Some(p.user.clone()),
            working_dir: Some(p.home.clone()),
            cmd: Some(cmd),
            ..Default::default()
        };
        Ok(self.docker.create_exec(container, config).await?.id)
    }

    /// Starts a created exec and waits for its shell to report its PID.
    pub(super) async fn start(&self, exec_id: String, p: &Placement) -> Result<Spawned, TtyError> {
        let container = p.container_id.clone().unwrap_or_default();
        let exit_event = self.exits.exit_of(&exec_id, &container);
        let (mut reader, writer) = self.endpoint.start_exec(&exec_id, true).await?;
        let started = tokio::time::timeout(START_TIMEOUT, read_pid_mark(&mut reader)).await;
        let (pid, early_output) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(self.start_failed(&exec_id, e).await),
            Err(_) => {
                return Err(TtyError::unavailable(
                    Unavailability::NotPrepared,
                    format!("exec {exec_id} in {container} did not start the shell in time"),
                ))
            }
        };
        let session = Arc::new(ExecSession {
            docker: self.docker.clone(),
            exec_id,
            container,
            user: p.user.clone(),
            pid,
            writer: Mutex::new(Some(writer)),
            hung_up: AtomicBool::new(false),
            hangups: self.hangups.clone(),
        });
        let output = Box::new(ExecTtyOutput {
            session: session.clone(),
            reader,
            early_output,
            failed: None,
            exit_event: Some(exit_event),
        });
        Ok(Spawned {
            tty: session,
            output,
        })
    }

    /// Explains a shell that ended before it started, with the exec's exit code.
    async fn start_failed(&self, exec_id: &str, e: TtyError) -> TtyError {
        let code = self
            .docker
            .inspect_exec(exec_id)
            .await
            .ok()
            .and_then(|i| i.exit_code);
        log::warn!("exec {exec_id} ended before the shell started (exit code {code:?}): {e}");
        e
    }
}

/// Reads up to the wrapper's PID report; returns the PID and any output that followed it.
async fn read_pid_mark(reader: &mut BoxRead) -> Result<(u32, Bytes), TtyError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(end) = buf.iter().position(|&b| b == PID_MARK_END) {
            let mark = buf.split_to(end + 1);
            let pid = mark
                .strip_prefix(PID_MARK_START)
                .and_then(|rest| std::str::from_utf8(&rest[..rest.len() - 1]).ok())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    TtyError::unavailable(
                        Unavailability::NotPrepared,
                        format!(
                            "a malformed PID report: {:?}",
                            String::from_utf8_lossy(&mark)
                        ),
                    )
                })?;
            return Ok((pid, buf.freeze()));
        }
        if buf.len() > 4096 || reader.read_buf(&mut buf).await? == 0 {
            return Err(TtyError::unavailable(
                Unavailability::NotPrepared,
                format!(
                    "the shell ended at once: {}",
                    String::from_utf8_lossy(&buf).trim()
                ),
            ));
        }
    }
}

/// The input side of an exec terminal.
struct ExecSession {
    docker: Docker,
    exec_id: String,
    container: String,
    user: String,
    /// The shell's PID inside the container: the session id of everything it starts.
    pid: u32,
    writer: Mutex<Option<BoxWrite>>,
    hung_up: AtomicBool,
    hangups: Arc<HangupBatch>,
}

#[async_trait]
impl Tty for ExecSession {
    fn shell_pid(&self) -> Option<i32> {
        i32::try_from(self.pid).ok()
    }

    async fn write(&self, data: &[u8]) -> Result<(), TtyError> {
        let mut writer = self.writer.lock().await;
        let writer = writer.as_mut().ok_or(TtyError::Closed)?;
        match writer.write_all(data).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(TtyError::Closed),
            Err(e) => Err(TtyError::unavailable(
                Unavailability::SessionLost,
                format!("exec {}: the engine's connection: {e}", self.exec_id),
            )),
        }
    }

    async fn resize(&self, size: TermSize) -> Result<(), TtyError> {
        let options = ResizeExecOptionsBuilder::new()
            .w(i32::from(size.cols))
            .h(i32::from(size.rows))
            .build();
        self.docker
            .resize_exec(&self.exec_id, options)
            .await
            .map_err(|e| {
                TtyError::unavailable(
                    Unavailability::ResizeFailed,
                    format!("resizing exec {}: {e}", self.exec_id),
                )
            })
    }

    async fn hangup(&self) {
        if self.hung_up.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(mut writer) = self.writer.lock().await.take() {
            let _ = writer.shutdown().await;
        }
        self.hangups
            .hang_up(&self.docker, &self.container, &self.user, self.pid)
            .await;
    }
}

impl ExecSession {
    /// A shell killed because its container stopped or vanished did not exit: the backend lost it.
    /// A shell killed by SIGKILL (exit code 137) usually means exactly that, but the engine can
    /// report its container as running for a moment longer, so that case is looked at twice.
    async fn check_container_lives(&self, exit_code: Option<i64>) -> Result<(), TtyError> {
        let mut lives = self.container_running().await;
        if lives && exit_code == Some(137) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            lives = self.container_running().await;
        }
        if lives {
            Ok(())
        } else {
            Err(TtyError::unavailable(
                Unavailability::SessionLost,
                format!(
                    "container {} of exec {} stopped",
                    self.container, self.exec_id
                ),
            ))
        }
    }

    /// Whether the container runs and is not being removed.
    async fn container_running(&self) -> bool {
        let state = self
            .docker
            .inspect_container(&self.container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state);
        state.is_some_and(|s| {
            s.running == Some(true)
                && s.status == Some(bollard::models::ContainerStateStatusEnum::RUNNING)
        })
    }

    /// The exit code as the engine records it, asked for gently: the stream can end a moment
    /// before the engine records the exit code.
    async fn inspect_exit(&self) -> Result<Option<i32>, TtyError> {
        let mut pause = Duration::from_millis(20);
        for _ in 0..12 {
            let info = self.docker.inspect_exec(&self.exec_id).await.map_err(|e| {
                TtyError::unavailable(
                    Unavailability::SessionLost,
                    format!("inspecting exec {}: {e}", self.exec_id),
                )
            })?;
            if info.running != Some(true) {
                self.check_container_lives(info.exit_code).await?;
                return Ok(info.exit_code.and_then(|c| i32::try_from(c).ok()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        // Still "running" seconds after its stream ended: the container may be going away.
        self.check_container_lives(None).await?;
        Ok(None)
    }
}

/// The output side of an exec terminal.
struct ExecTtyOutput {
    session: Arc<ExecSession>,
    reader: BoxRead,
    early_output: Bytes,
    failed: Option<String>,
    /// The exit code, from Docker's event stream.
    exit_event: Option<oneshot::Receiver<Option<i64>>>,
}

#[async_trait]
impl TtyOutput for ExecTtyOutput {
    async fn read(&mut self) -> Option<Bytes> {
        if !self.early_output.is_empty() {
            return Some(std::mem::take(&mut self.early_output));
        }
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match self.reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some(buf.freeze()),
            Err(e) => {
                let exec = &self.session.exec_id;
                self.failed = Some(format!("exec {exec}: the engine's connection: {e}"));
                None
            }
        }
    }

    async fn exit_code(&mut self) -> Result<Option<i32>, TtyError> {
        if let Some(reason) = self.failed.take() {
            return Err(TtyError::unavailable(Unavailability::SessionLost, reason));
        }
        // Docker tells of the exit on its event stream. Asking it in a loop instead made 100
        // sessions ending together send thousands of requests and stalled the engine for a minute.
        if let Some(event) = self.exit_event.take() {
            if let Ok(Ok(code)) = tokio::time::timeout(EXIT_EVENT_WAIT, event).await {
                self.session.check_container_lives(code).await?;
                return Ok(code.and_then(|c| i32::try_from(c).ok()));
            }
        }
        // The event was missed (the event stream broke, the container died): ask.
        self.session.inspect_exit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pid_mark_is_stripped_and_following_bytes_kept() {
        let stream: &[u8] = b"\x1b]5379;termpool-pid=42\x07\x00\x01\x02rest";
        let mut reader: BoxRead = Box::new(stream);
        let (pid, early) = read_pid_mark(&mut reader).await.unwrap();
        assert_eq!(pid, 42);
        assert_eq!(&early[..], b"\x00\x01\x02rest");
    }

    #[tokio::test]
    async fn a_shell_that_dies_at_once_is_an_error() {
        let mut reader: BoxRead = Box::new(&b"unable to find user"[..]);
        let Err(TtyError::Unavailable(err)) = read_pid_mark(&mut reader).await else {
            panic!("the shell's death is an Unavailable");
        };
        assert_eq!(err.kind, Unavailability::NotPrepared);
        assert!(err.detail().contains("unable to find user"), "{err:?}");
        assert!(
            !err.to_string().contains("unable"),
            "the client is not told: {err}"
        );
    }
}
