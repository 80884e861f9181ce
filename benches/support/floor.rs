//! What this machine can do without termpool in the way: the same keystrokes and output through a
//! PTY read and written directly (blocking syscalls, no WebSocket, no server), and a 1-byte TCP
//! ping-pong over loopback. The relay figures minus these floors is the server's own cost.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

/// A program on a PTY of its own, driven from this thread.
pub struct Pty {
    master: Box<dyn MasterPty + Send>,
    child: Box<dyn Child + Send + Sync>,
    fd: RawFd,
}

impl Pty {
    /// Starts `argv` on an 80x24 PTY with the environment the server gives its shells.
    pub fn spawn(argv: &[String]) -> Result<Pty> {
        let pair = native_pty_system().openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })?;
        let mut cmd = CommandBuilder::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("LANG", "C.UTF-8");
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd)?;
        drop(pair.slave);
        let fd = pair
            .master
            .as_raw_fd()
            .ok_or_else(|| anyhow::anyhow!("PTY master has no fd"))?;
        Ok(Pty {
            master: pair.master,
            child,
            fd,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.process_id()
    }

    pub fn write(&self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            // SAFETY: data is valid for reads of data.len() bytes.
            let n = unsafe { libc::write(self.fd, data.as_ptr().cast(), data.len()) };
            if n < 0 {
                bail!("PTY write: {}", std::io::Error::last_os_error());
            }
            data = &data[n as usize..];
        }
        Ok(())
    }

    /// One read, after waiting at most `wait` for data; 0 bytes when none came.
    fn read_some(&self, buf: &mut [u8], wait: Duration) -> Result<usize> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if ready <= 0 {
            return Ok(0);
        }
        self.read_blocking(buf)
    }

    /// One blocking read.
    pub fn read_blocking(&self, buf: &mut [u8]) -> Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            bail!("PTY read: {}", std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Everything that arrives until the PTY has been silent for `quiet`.
    pub fn read_quiet(&self, quiet: Duration) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.read_some(&mut buf, quiet)?;
            if n == 0 {
                return Ok(all);
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads until `needle` has been seen (at most 15 s).
    pub fn read_until(&self, needle: &[u8]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while !all.windows(needle.len()).any(|w| w == needle) {
            if Instant::now() > deadline {
                bail!("PTY: no {:?}", String::from_utf8_lossy(needle));
            }
            let n = self.read_some(&mut buf, Duration::from_millis(100))?;
            all.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// Writes `payload` and reads, blocking, exactly as many bytes as `expected` has; the time it
    /// took in ns, or `None` when the answer differed.
    pub fn round_trip(
        &self,
        payload: &[u8],
        expected: &[u8],
        buf: &mut [u8],
    ) -> Result<Option<u64>> {
        let start = Instant::now();
        self.write(payload)?;
        let mut got = 0;
        let mut same = true;
        while got < expected.len() {
            let n = self.read_blocking(&mut buf[..expected.len() - got])?;
            same &= buf[..n] == expected[got..got + n];
            got += n;
        }
        let ns = start.elapsed().as_nanos() as u64;
        Ok(same.then_some(ns))
    }

    /// Reads, blocking, until `count` zero bytes have arrived; the other bytes are not counted.
    pub fn read_zeros(&self, count: u64, buf: &mut [u8]) -> Result<()> {
        let mut zeros = 0u64;
        while zeros < count {
            let n = self.read_blocking(buf)?;
            zeros += buf[..n].iter().filter(|&&b| b == 0).count() as u64;
        }
        Ok(())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.master;
    }
}

/// A 1-byte TCP ping-pong over loopback with TCP_NODELAY, echoed by a blocking thread; ns each.
pub fn tcp_ping_pong(warmup: usize, samples: usize) -> Result<Vec<u64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut out = Vec::with_capacity(samples);
    let mut b = [0u8; 1];
    for i in 0..warmup + samples {
        let start = Instant::now();
        s.write_all(b"p")?;
        s.read_exact(&mut b)?;
        if i >= warmup {
            out.push(start.elapsed().as_nanos() as u64);
        }
    }
    drop(s);
    let _ = echo.join();
    Ok(out)
}

/// `n` shells started at once on PTYs of their own, from this one thread as the server does (the
/// same portable-pty spawn); for each, the ns from the start until its first output byte. The
/// shells are ended before returning.
pub fn first_bytes(argv: &[String], n: usize) -> Result<Vec<u64>> {
    let start = Instant::now();
    let mut ptys = Vec::with_capacity(n);
    let mut firsts: Vec<Option<u64>> = Vec::with_capacity(n);
    let deadline = start + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while ptys.len() < n || firsts.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            bail!("bare PTYs: not every shell printed within 30 s");
        }
        // Spawn the next shell, then look (without waiting while spawns remain) for output.
        let wait_ms = if ptys.len() < n {
            ptys.push(Pty::spawn(argv)?);
            firsts.push(None);
            0
        } else {
            100
        };
        let mut fds: Vec<libc::pollfd> = ptys
            .iter()
            .zip(&firsts)
            .map(|(p, first)| libc::pollfd {
                fd: if first.is_none() { p.fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array of fds.len() pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        let now = start.elapsed().as_nanos() as u64;
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN != 0 {
                ptys[i].read_blocking(&mut buf)?;
                firsts[i].get_or_insert(now);
            }
        }
    }
    Ok(firsts.into_iter().flatten().collect())
}
