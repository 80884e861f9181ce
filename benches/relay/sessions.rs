//! The many-sessions figures: N sessions opened at once (to `ready`, to the first output byte),
//! the server's RSS while they idle, and the floor of N shells on bare PTYs.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;

use crate::floor;
use crate::opts::Opts;
use crate::procfs::status_kib;
use crate::session::{drain_quiet, end_session, open_timed, Target};
use crate::table::{mib_of_kib, ms, spread, verdict, Dist, Row};

/// What the runs of the figure measured.
#[derive(Default)]
struct Measured {
    firsts: Vec<u64>,
    readies: Vec<u64>,
    run_p50s: Vec<u64>,
    walls: Vec<u64>,
    rss_before: Vec<u64>,
    rss_with: Vec<u64>,
}

pub async fn bench_sessions(
    target: &Target,
    opts: &Opts,
    shell_argv: &[String],
    fresh_rss: Option<u64>,
) -> Result<Vec<Row>> {
    let n = opts.sessions;
    let mut m = Measured::default();
    for run in 0..opts.session_runs {
        sessions_run(target, opts, run, &mut m).await?;
    }
    let floor = if opts.wants("floor") {
        Some(floor_row(opts, shell_argv).await?)
    } else {
        None
    };
    let all = Dist::new(m.firsts);
    let ready = Dist::new(m.readies);
    let mut rows = vec![
        Row::in_ms(
            format!("{n} sessions at once: first output byte"),
            &all,
            format!("run p50s {}", spread(&m.run_p50s, ms)),
            "p50 ≤ 100.0 ms",
            verdict(all.pct(50.0) <= 100_000_000),
        ),
        Row::in_ms(
            format!("{n} sessions at once: `ready` frame"),
            &ready,
            format!("last session of a run {}", spread(&m.walls, ms)),
            "-",
            "",
        ),
    ];
    rows.extend(floor);
    if !m.rss_with.is_empty() {
        rows.push(rss_row(n, &m.rss_before, &m.rss_with, fresh_rss));
    }
    Ok(rows)
}

/// One run: N sessions opened at once, left idle, their RSS read, then ended.
async fn sessions_run(target: &Target, opts: &Opts, run: usize, m: &mut Measured) -> Result<()> {
    let n = opts.sessions;
    let pid = target.pid;
    m.rss_before
        .extend(pid.and_then(|p| status_kib(p, "VmRSS")));
    let start = Instant::now();
    let opened = join_all((0..n).map(|_| open_timed(target))).await;
    let wall = start.elapsed().as_nanos() as u64;
    let mut clients = Vec::with_capacity(n);
    let mut run_firsts = Vec::with_capacity(n);
    for result in opened {
        let (c, ready, first) = result?;
        clients.push(c);
        m.readies.push(ready);
        run_firsts.push(first);
    }
    let d = Dist::new(run_firsts.clone());
    eprintln!(
        "  sessions run {}/{}: {n} sessions, first byte p50 {} p99 {}, all within {}",
        run + 1,
        opts.session_runs,
        ms(d.pct(50.0)),
        ms(d.pct(99.0)),
        ms(wall)
    );
    m.run_p50s.push(d.pct(50.0));
    m.walls.push(wall);
    m.firsts.extend_from_slice(&run_firsts);
    // Idle: every shell has printed its prompt and answered a command, then nothing happens.
    join_all(clients.iter_mut().map(|c| c.sync())).await;
    for c in clients.iter_mut() {
        drain_quiet(c).await?;
    }
    tokio::time::sleep(Duration::from_millis(opts.idle_ms)).await;
    if let Some(kib) = pid.and_then(|p| status_kib(p, "VmRSS")) {
        eprintln!("  server VmRSS with {n} idle sessions: {}", mib_of_kib(kib));
        m.rss_with.push(kib);
    }
    let ended = join_all(clients.into_iter().map(|c| end_session(c, b"exit\r"))).await;
    let left = ended.iter().filter(|e| !**e).count();
    if left > 0 {
        eprintln!("  {left} shells did not report their exit within 5 s");
    }
    // Let the server reap the shells before the next run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// N shells spawned at once on bare PTYs by one thread, no server: first byte.
async fn floor_row(opts: &Opts, shell_argv: &[String]) -> Result<Row> {
    let n = opts.sessions;
    eprintln!("floor: {n} shells spawned at once on bare PTYs by one thread, no server");
    let mut p50s = Vec::new();
    let mut bare = Vec::new();
    for run in 0..opts.session_runs {
        let v = floor::first_bytes(shell_argv, n)?;
        let d = Dist::new(v.clone());
        eprintln!(
            "  bare PTY run {}/{}: first byte p50 {} p99 {}",
            run + 1,
            opts.session_runs,
            ms(d.pct(50.0)),
            ms(d.pct(99.0))
        );
        p50s.push(d.pct(50.0));
        bare.extend(v);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let d = Dist::new(bare);
    Ok(Row::in_ms(
        format!("  floor: {n} bare PTY shells at once: first byte"),
        &d,
        format!("run p50s {}", spread(&p50s, ms)),
        "(floor)",
        "",
    ))
}

/// The server's RSS with N idle sessions: the median over runs, against the fresh server's.
fn rss_row(n: usize, rss_before: &[u64], rss_with: &[u64], fresh_rss: Option<u64>) -> Row {
    let mut sorted = rss_with.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    // Later runs start from what glibc kept of the earlier ones: the first run tells the
    // cost of a session.
    let before = rss_before.first().copied();
    let fresh = fresh_rss.map(mib_of_kib).unwrap_or_else(|| "?".into());
    let before_s = before.map(mib_of_kib).unwrap_or_else(|| "?".into());
    let per_session = before
        .map(|b| {
            let kib = rss_with[0] as f64 - b as f64;
            format!(", {:.0} KiB/session in run 1", kib / n as f64)
        })
        .unwrap_or_default();
    Row {
        figure: format!("server VmRSS, {n} idle sessions"),
        samples: format!("{} runs", rss_with.len()),
        p50: mib_of_kib(median),
        p99: "-".into(),
        spread: format!(
            "fresh {fresh}, before run 1 {before_s}{per_session}; {}",
            spread(rss_with, mib_of_kib)
        ),
        target: "≤ 16.0 MiB".into(),
        verdict: verdict(median <= 16 * 1024),
    }
}
