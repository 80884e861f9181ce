//! What `/proc` says about processes: alive or not, children, command lines and CPU time.

use std::time::{Duration, Instant};

/// The last few hundred bytes of `bytes`, for failure messages.
pub fn tail(bytes: &[u8]) -> String {
    format!("{:?}", &bytes[bytes.len().saturating_sub(400)..]).replace(", ", " ")
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Processes that are still alive (not zombies) among `pids`.
pub fn alive(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Pids whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            *pid != me &&
            // Arguments are NUL-separated in /proc: compare them as a space-separated line.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.iter().map(|&b| if b == 0 { b' ' } else { b }).collect::<Vec<u8>>())
                .map(|c| contains(&c, needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Direct children of `pid` that are alive.
pub fn children_of(pid: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit(')').next()?.to_owned();
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    let ppid: u32 = f.next()?.parse().ok()?;
                    Some(ppid == pid && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// CPU time and run-queue wait (ns) of every thread of `pid` so far, from /proc/PID/task/*/schedstat
/// (a thread that ended in between is missed; the processes measured here keep theirs).
pub fn schedstat(pid: u32) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(line) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut f = line
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        total.0 += f.next().unwrap_or(0);
        total.1 += f.next().unwrap_or(0);
    }
    Some(total)
}

/// CPU time all threads of process `pid` have used so far.
pub fn server_cpu(pid: u32) -> Duration {
    let (cpu, _) = schedstat(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    Duration::from_nanos(cpu)
}

/// Polls `cond` until true or `timeout`; returns its last value.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
