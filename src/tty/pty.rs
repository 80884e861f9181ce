//! The server's side of a PTY master, shared by every backend that hands the server a master fd
//! (local, or passed by a container's agent); backends differ only in their [`Shell`].

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{Spawned, Tty, TtyError, TtyOutput};
use crate::protocol::TermSize;

/// The shell on the other side of a PTY, as its backend knows it.
#[async_trait]
pub(super) trait Shell: Send + Sync + 'static {
    /// Completes once the shell has exited.
    async fn exited(&self);
    /// The shell's exit code once it has exited (`None` when unknown), or why the backend lost it.
    async fn exit_code(&self) -> Result<Option<i32>, TtyError>;
    /// SIGHUP to every process of the shell's terminal session; a shell that ignores it is killed
    /// a little later. Called once.
    async fn hang_up(this: &Arc<Self>);
    /// The shell's pid as this server sees pids, when the backend knows it.
    fn pid(&self) -> Option<i32> {
        None
    }
}

/// A live terminal: `master` with `shell` on its other side.
pub(super) fn session<S: Shell>(master: PtyMaster, shell: S) -> Spawned {
    let master = Arc::new(master);
    let shell = Arc::new(shell);
    let tty = Arc::new(PtyTty {
        master: master.clone(),
        shell: shell.clone(),
        hung_up: AtomicBool::new(false),
    });
    let output = Box::new(PtyOutput {
        master,
        shell,
        shell_exited: false,
    });
    Spawned { tty, output }
}

struct PtyTty<S> {
    master: Arc<PtyMaster>,
    shell: Arc<S>,
    hung_up: AtomicBool,
}

#[async_trait]
impl<S: Shell> Tty for PtyTty<S> {
    async fn write(&self, data: &[u8]) -> Result<(), TtyError> {
        self.master.write_all(data).await
    }

    async fn resize(&self, size: TermSize) -> Result<(), TtyError> {
        if self.hung_up.load(Ordering::SeqCst) {
            return Err(TtyError::Closed);
        }
        Ok(self.master.set_size(size)?)
    }

    async fn hangup(&self) {
        if !self.hung_up.swap(true, Ordering::SeqCst) {
            S::hang_up(&self.shell).await;
        }
    }

    fn foreground_pid(&self) -> Option<i32> {
        // SAFETY: tcgetpgrp only reads the terminal's state; the fd is open for self's lifetime.
        let pgrp = unsafe { libc::tcgetpgrp(self.master.raw()) };
        (pgrp > 0).then_some(pgrp)
    }

    fn shell_pid(&self) -> Option<i32> {
        self.shell.pid()
    }
}

struct PtyOutput<S> {
    master: Arc<PtyMaster>,
    shell: Arc<S>,
    shell_exited: bool,
}

#[async_trait]
impl<S: Shell> TtyOutput for PtyOutput<S> {
    async fn read(&mut self) -> Option<Bytes> {
        self.master
            .read(&mut self.shell_exited, self.shell.exited())
            .await
    }

    async fn exit_code(&mut self) -> Result<Option<i32>, TtyError> {
        self.shell.exit_code().await
    }
}

/// The most output relayed in one frame; bigger bursts become several frames.
const MAX_CHUNK: usize = 64 * 1024;

/// Output read in one go that is smaller than this is relayed without trying to read more.
const INTERACTIVE_CHUNK: usize = 512;

/// A PTY master, non-blocking, registered with tokio for readability only. With write interest
/// too, every byte the shell takes from its input queue would wake this thread: the kernel signals
/// the master writable each time room frees up, fifteen wake-ups for a typed command line, each
/// paid for by the shell on its core. Writes wait on a registration of their own instead, made
/// only while the queue is full (a paste), see [`PtyMaster::write_all`].
pub(super) struct PtyMaster(AsyncFd<OwnedFd>);

impl PtyMaster {
    /// Takes over `fd`, a PTY master (it is made non-blocking here).
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(fd.as_raw_fd())?;
        // SAFETY: the fd is owned by this AsyncFd alone and closed only with it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(PtyMaster(fd))
    }

    fn raw(&self) -> RawFd {
        self.0.get_ref().as_raw_fd()
    }

    /// Writes all of `data`. While the terminal's input queue is full it waits on a duplicate of
    /// the master registered for writability, dropped (deregistered) when `data` is written.
    pub async fn write_all(&self, mut data: &[u8]) -> Result<(), TtyError> {
        let mut room: Option<AsyncFd<OwnedFd>> = None;
        while !data.is_empty() {
            match sys_write(self.raw(), data) {
                Ok(n) => {
                    data = &data[n..];
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Err(TtyError::Closed),
                Err(e) => return Err(e.into()),
            }
            let waiter = match room.as_mut() {
                Some(waiter) => waiter,
                None => {
                    let dup = dup_cloexec(self.raw())?;
                    // SAFETY: the duplicate is owned by this AsyncFd alone and closed only with
                    // it. Registering reports it writable at once if room freed up meanwhile.
                    let waiter =
                        unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }
                            .map_err(io::Error::from)?;
                    room.insert(waiter)
                }
            };
            waiter.writable().await?.clear_ready();
        }
        Ok(())
    }

    /// Sets the window size; the kernel sends SIGWINCH to the foreground process group.
    pub fn set_size(&self, size: TermSize) -> io::Result<()> {
        let winsize = libc::winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
        if unsafe { libc::ioctl(self.raw(), libc::TIOCSWINSZ, &winsize) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next output. `shell_exited` completes once the shell has exited; `*exited` remembers
    /// that it has. From then on only what is already buffered is relayed: a background job may
    /// hold the TTY open forever. `None` at the end.
    pub async fn read(
        &self,
        exited: &mut bool,
        shell_exited: impl Future<Output = ()>,
    ) -> Option<Bytes> {
        tokio::pin!(shell_exited);
        loop {
            if *exited {
                return match read_chunk(self.raw()) {
                    Ok(chunk) => chunk.bytes,
                    Err(_) => None,
                };
            }
            let readable = tokio::select! {
                biased;
                ready = self.0.readable() => Some(ready),
                _ = &mut shell_exited => None,
            };
            let Some(ready) = readable else {
                *exited = true;
                continue;
            };
            let mut guard = ready.ok()?;
            match guard.try_io(|fd| read_chunk(fd.get_ref().as_raw_fd())) {
                Ok(Ok(Chunk { bytes, drained })) => {
                    if drained {
                        // The read already saw EAGAIN: without this the next call would make
                        // one more, empty, read() first.
                        guard.clear_ready();
                    }
                    return bytes;
                }
                Ok(Err(_)) => return None,
                Err(_would_block) => continue,
            }
        }
    }
}

/// What one `read_chunk` got: the bytes (`None` at the end of the PTY), and whether it stopped
/// because the PTY had nothing more right now.
struct Chunk {
    bytes: Option<Bytes>,
    drained: bool,
}

/// Reads up to `MAX_CHUNK` bytes, coalescing several reads (a PTY hands out at most a few KiB at a
/// time) so that a burst of output becomes few WebSocket frames. Reads straight into the buffer
/// that is sent on: no zero-filling, no copy. `WouldBlock` when there was nothing at all.
fn read_chunk(fd: RawFd) -> io::Result<Chunk> {
    let mut buf = BytesMut::with_capacity(MAX_CHUNK);
    let mut drained = false;
    while buf.len() < MAX_CHUNK {
        match sys_read(fd, buf.spare_capacity_mut()) {
            Ok(0) => break,
            Ok(n) => {
                // SAFETY: read() initialised exactly n bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                // A few bytes read first are an echo or a prompt, not a burst: sent at once,
                // without one more read() to find the PTY empty (the next call makes it).
                if buf.len() < INTERACTIVE_CHUNK {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !buf.is_empty() => {
                drained = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            // Linux reports the end of a PTY whose every slave fd is closed as EIO.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let bytes = (!buf.is_empty()).then(|| buf.freeze());
    Ok(Chunk { bytes, drained })
}

fn sys_read(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes; read() writes at most that many.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sys_write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is valid for reads of data.len() bytes.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a valid fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A duplicate of `fd`, closed on exec.
pub(super) fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a valid fd; the new fd is owned by the OwnedFd alone.
    unsafe {
        let new = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if new < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(new))
    }
}
