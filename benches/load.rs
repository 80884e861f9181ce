//! `cargo bench --bench load [-- --quick]`: container mode under load (the full pool typing, then
//! sessions opened and closed one after another), printing echo latency, errors, server CPU and
//! RSS, and the processes and descriptors left. Needs Docker and the user image.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Client, Frame, Server, TestPool};
use futures_util::future::join_all;

struct Plan {
    containers: usize,
    users_each: usize,
    sessions: usize,
    typing_for: Duration,
    cycles: usize,
}

fn plan() -> Plan {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`, as in CI) this is a
    // smoke run that proves the benchmark still works.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench") {
        Plan {
            containers: 2,
            users_each: 10,
            sessions: 20,
            typing_for: Duration::from_secs(10),
            cycles: 50,
        }
    } else {
        Plan {
            containers: 10,
            users_each: 20,
            sessions: 200,
            typing_for: Duration::from_secs(60),
            cycles: 1000,
        }
    }
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12) // utime, stime (fields 14 and 15)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes in the pool's containers, as the host sees them.
fn pool_processes(prefix: &str, containers: usize) -> usize {
    (0..containers)
        .map(|i| {
            TestPool::docker(&["top", &format!("{prefix}-{i}"), "-eo", "pid"])
                .lines()
                .count()
                - 1
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A new user's session with `cat` echoing every byte.
async fn ready_typist(server: &Server) -> Client {
    let mut c = server.connect("").await;
    c.ready().await;
    c.run("stty raw -echo; printf 'GO''>'; cat").await;
    c.expect_output("GO>").await;
    c.pending.clear();
    c
}

/// Types a key every 100 ms until `until`, timing each echo. `phase` spreads the typists over the
/// period, as real users are not in step.
async fn typist(mut c: Client, until: Instant, phase: Duration) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::new();
    let period = Duration::from_millis(100);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    while Instant::now() < until {
        tick.tick().await;
        let sent = Instant::now();
        c.send_bytes(b"k").await;
        loop {
            match c.next_frame(Duration::from_secs(5)).await {
                Some(Frame::Bytes(b)) if b.contains(&b'k') => break,
                Some(Frame::Bytes(_)) | Some(Frame::Ping) => {}
                other => return Err(format!("no echo: {other:?}")),
            }
        }
        samples.push(sent.elapsed());
    }
    c.close().await;
    Ok(samples)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let plan = plan();
    println!("termpool load benchmark: {} sessions on {} containers x {} users, one key every 100 ms for {:?}; then {} sessions opened and closed in sequence", plan.sessions, plan.containers, plan.users_each, plan.typing_for, plan.cycles);
    println!(
        "machine: {} cores; client: one current-thread tokio runtime",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let pool = TestPool::new("load");
    let per_user = (plan.cycles + 10).to_string();
    let server = pool.server(
        plan.containers,
        plan.users_each,
        &[
            "--reattach-grace-secs",
            "0",
            "--max-new-sessions-per-minute",
            "0",
            // Every user of the benchmark comes from 127.0.0.1.
            "--max-new-identities-per-address-per-minute",
            "0",
            "--max-sessions-per-address",
            "0",
            "--max-identities-per-address",
            "0",
            "--max-sessions-per-user",
            &per_user,
        ],
    );
    let errors = everyone_typing(&server, &plan).await;
    let settled = open_and_close(&server, &pool, &plan).await;
    if errors > 0 || !settled {
        eprintln!("load benchmark: errors or leaks (see above)");
        std::process::exit(1);
    }
}

/// Part 1: every slot typing, all at once. Prints the figures; returns the sessions that failed.
async fn everyone_typing(server: &Server, plan: &Plan) -> usize {
    let pid = server.pid();
    let placing = Instant::now();
    let clients = join_all((0..plan.sessions).map(|_| ready_typist(server))).await;
    println!(
        "{} users placed and their sessions open in {:.1} s",
        clients.len(),
        placing.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let until = started + plan.typing_for;
    let cpu_before = cpu_ticks(pid);
    let rss_peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let rss_peak = rss_peak.clone();
        tokio::spawn(async move {
            loop {
                rss_peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let n = clients.len() as u32;
    let typists = (0u32..)
        .zip(clients)
        .map(|(i, c)| typist(c, until, Duration::from_millis(100) * i / n.max(1)));
    let results = join_all(typists).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / 100.0;
    sampler.abort();
    let mut samples: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for r in results {
        match r {
            Ok(s) => samples.extend(s),
            Err(e) => {
                errors += 1;
                eprintln!("session error: {e}");
            }
        }
    }
    samples.sort();
    let rss_peak = rss_peak.load(std::sync::atomic::Ordering::Relaxed);
    print_typing(&samples, errors, cpu, wall, rss_peak);
    errors
}

fn print_typing(samples: &[Duration], errors: usize, cpu: f64, wall: f64, rss_peak: u64) {
    println!("\n| figure | value |\n|---|---|");
    println!("| keystroke echoes measured | {} |", samples.len());
    println!(
        "| echo p50 | {:.2} ms |",
        percentile(samples, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "| echo p99 | {:.2} ms (target < 50 ms) |",
        percentile(samples, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| echo max | {:.2} ms |",
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("| sessions failed | {errors} (target 0) |");
    println!(
        "| server CPU | {:.1} s over {wall:.0} s = {:.0}% of one core |",
        cpu,
        100.0 * cpu / wall
    );
    println!("| server RSS peak | {:.1} MiB |", rss_peak as f64 / 1024.0);
}

/// Part 2: sessions opened and closed in sequence, by one user. Prints the figures; returns
/// whether the server's descriptors and the pool's processes went back to what they were.
async fn open_and_close(server: &Server, pool: &TestPool, plan: &Plan) -> bool {
    let pid = server.pid();
    tokio::time::sleep(Duration::from_secs(5)).await; // let part 1's hang-ups finish
    let fds_before = open_fds(pid);
    let procs_before = pool_processes(&pool.prefix, plan.containers);
    let cookie = server.new_identity().await;
    let cycle_start = Instant::now();
    for _ in 0..plan.cycles {
        let mut c = server.connect_as(&cookie, "").await;
        c.ready().await;
        c.sync().await;
        c.close().await;
    }
    let cycle_time = cycle_start.elapsed();
    let settled = common::eventually(Duration::from_secs(30), || {
        pool_processes(&pool.prefix, plan.containers) <= procs_before && open_fds(pid) <= fds_before
    })
    .await;
    let (fds_after, procs_after) = (open_fds(pid), pool_processes(&pool.prefix, plan.containers));
    println!(
        "| open/close cycles | {} in {:.1} s ({:.0} ms each) |",
        plan.cycles,
        cycle_time.as_secs_f64(),
        cycle_time.as_secs_f64() * 1e3 / plan.cycles as f64
    );
    println!(
        "| server file descriptors | {fds_before} before, {fds_after} after (leaked: {}) |",
        fds_after.saturating_sub(fds_before)
    );
    println!("| processes in the pool's containers | {procs_before} before, {procs_after} after (leaked: {}) |", procs_after.saturating_sub(procs_before));
    settled
}
