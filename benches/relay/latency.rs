//! Keystroke figures: a payload sent, its calibrated answer awaited, timed over runs of fresh
//! sessions; the rows and notes they give, and their floors (bare PTY, TCP loopback).

use std::fmt::Write as _;

use anyhow::{bail, Result};
use bytes::Bytes;

use crate::common::{self, schedstat};
use crate::floor;
use crate::opts::Opts;
use crate::session::Target;
use crate::table::{spread, us, verdict, Dist, Report, Row};
use crate::terminal::{tokio_session, BlockingSession, PtyTerm, Terminal};

/// A one-byte payload for each byte value, so that a timed send never allocates.
pub static BYTE_VALUES: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};
pub const DEL: u8 = 0x7f;
pub const COMMAND_LINE: &[u8] = b"echo x$((1+1))\r";
/// A keystroke-latency figure: `setup` typed into a fresh shell, then `payloads` sent in turn, each
/// timed until its (calibrated) answer is complete. One fresh session per run.
pub struct LatencyPlan<'a> {
    pub label: &'a str,
    pub setup: Option<(&'a [u8], &'a str)>,
    /// Keys that make the shell exit at the end of a run (a detached session would otherwise
    /// live on for the server's re-attach grace period).
    pub end: &'static [u8],
    pub payloads: Vec<Bytes>,
    pub warmup: usize,
    pub samples: usize,
}

pub struct LatencyResult {
    pub all: Dist,
    pub run_p50s: Vec<u64>,
    pub mismatches: usize,
    pub answers: Vec<Vec<u8>>,
    /// Per process: (name, CPU ns per sample, run-queue wait ns per sample), one entry per run.
    pub sched: Vec<(&'static str, Vec<(f64, f64)>)>,
}

impl LatencyResult {
    pub fn new() -> LatencyResult {
        LatencyResult {
            all: Dist::new(Vec::new()),
            run_p50s: Vec::new(),
            mismatches: 0,
            answers: Vec::new(),
            sched: Vec::new(),
        }
    }

    pub fn add(&mut self, run: Run) {
        self.run_p50s.push(Dist::new(run.samples.clone()).pct(50.0));
        let mut all = std::mem::take(&mut self.all.sorted);
        all.extend_from_slice(&run.samples);
        self.all = Dist::new(all);
        self.mismatches += run.mismatches;
        self.answers = run.answers;
        for (name, per_sample) in run.sched {
            match self.sched.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(per_sample),
                None => self.sched.push((name, vec![per_sample])),
            }
        }
    }

    /// "server 12.3/4.5 µs, ..." : median over runs of CPU / run-queue wait per sample.
    fn sched_summary(&self) -> String {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let parts: Vec<String> = self
            .sched
            .iter()
            .map(|(name, runs)| {
                let cpu = median(runs.iter().map(|r| r.0).collect());
                let wait = median(runs.iter().map(|r| r.1).collect());
                format!("{name} {:.1}/{:.1}", cpu / 1e3, wait / 1e3)
            })
            .collect();
        format!("{} µs", parts.join(", "))
    }
}

/// One run of a latency figure.
pub struct Run {
    pub samples: Vec<u64>,
    pub mismatches: usize,
    pub answers: Vec<Vec<u8>>,
    pub sched: Vec<(&'static str, (f64, f64))>,
}

/// One keystroke figure: its `--only` name, its row title, its plan, and its p50 and p99 targets.
pub struct Figure {
    pub name: &'static str,
    pub title: &'static str,
    pub plan: LatencyPlan<'static>,
    pub p50_target: u64,
    pub p99_target: Option<u64>,
}

/// The keystroke figures, in the order they are measured.
pub fn figures(opts: &Opts, warmup: usize) -> Vec<Figure> {
    let one = |b: u8| Bytes::from_static(&BYTE_VALUES[b as usize..b as usize + 1]);
    let plan = |label, setup, end, payloads, warmup, samples| LatencyPlan {
        label,
        setup,
        end,
        payloads,
        warmup,
        samples,
    };
    vec![
        Figure {
            name: "echo",
            title: "keystroke echo, raw TTY + `cat` (1 B)",
            // isig: so that ^C can end `cat` (and with it the session) after the run.
            plan: plan(
                "echo/cat",
                Some((
                    b"stty raw -echo isig; echo CAT$((6*7)); exec cat\r",
                    "CAT42",
                )),
                b"\x03",
                b"asdf".iter().map(|&b| one(b)).collect(),
                warmup,
                opts.samples,
            ),
            p50_target: 60_000,
            p99_target: Some(120_000),
        },
        Figure {
            name: "readline",
            title: "keystroke echo, bash readline (x / DEL)",
            plan: plan(
                "echo/readline",
                None,
                b"\x15exit\r",
                vec![one(b'x'), one(DEL)],
                warmup,
                opts.samples,
            ),
            p50_target: 60_000,
            p99_target: Some(120_000),
        },
        Figure {
            name: "cmd",
            title: "command line `echo x$((1+1))` -> prompt",
            plan: plan(
                "cmd",
                None,
                b"\x15exit\r",
                vec![Bytes::from_static(COMMAND_LINE)],
                warmup / 5,
                opts.cmd_samples,
            ),
            p50_target: 200_000,
            p99_target: None,
        },
    ]
}

/// Measures `fig` with each client (and on a bare PTY when the floor is asked for) and adds its
/// rows and notes to `report`.
pub async fn bench_figure(
    fig: &Figure,
    target: &Target,
    opts: &Opts,
    shell: &[String],
    report: &mut Report,
) {
    if !opts.wants(fig.name) {
        return;
    }
    eprintln!("{}", fig.title);
    let with_floor = opts.wants("floor");
    match measure_figure(fig, target, opts, shell, with_floor).await {
        Ok((relayed, bare)) => report_figure(fig, &relayed, with_floor.then_some(&bare), report),
        Err(failure) => report.failures.push(failure),
    }
}

type Measured = (Vec<(&'static str, LatencyResult)>, LatencyResult);

/// Every run of `fig`: each client in turn, then the floor right after, so that all see the same
/// background load. The first failure ends the figure.
async fn measure_figure(
    fig: &Figure,
    target: &Target,
    opts: &Opts,
    shell: &[String],
    with_floor: bool,
) -> Result<Measured, String> {
    let plan = &fig.plan;
    let mut relayed: Vec<(&str, LatencyResult)> = opts
        .clients
        .iter()
        .map(|&kind| (kind, LatencyResult::new()))
        .collect();
    let mut bare = LatencyResult::new();
    for run in 0..opts.runs {
        for (kind, result) in relayed.iter_mut() {
            let r = client_run(kind, target, plan)
                .await
                .map_err(|e| format!("{} ({kind} client): {e:#}", fig.name))?;
            log_run(
                &format!("{} ({kind} client)", plan.label),
                run,
                opts.runs,
                &r,
            );
            result.add(r);
        }
        if with_floor {
            let r = async { measure_run(PtyTerm::open(shell, plan.setup)?, plan).await }
                .await
                .map_err(|e| format!("floor {}: {e:#}", fig.name))?;
            log_run("  bare PTY", run, opts.runs, &r);
            bare.add(r);
        }
    }
    Ok((relayed, bare))
}

/// One run through a session of the client `kind`.
async fn client_run(kind: &str, target: &Target, plan: &LatencyPlan<'_>) -> Result<Run> {
    if kind == "blocking" {
        measure_run(BlockingSession::open(target, plan, target.local)?, plan).await
    } else {
        measure_run(tokio_session(target, plan).await?, plan).await
    }
}

/// The rows and notes of a measured figure.
fn report_figure(
    fig: &Figure,
    relayed: &[(&str, LatencyResult)],
    bare: Option<&LatencyResult>,
    report: &mut Report,
) {
    let (plan, title) = (&fig.plan, fig.title);
    let first = &relayed[0].1;
    let answers: Vec<String> = first
        .answers
        .iter()
        .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
        .collect();
    report
        .notes
        .push(format!("{}: answers {}", plan.label, answers.join(", ")));
    let mut sched: Vec<String> = relayed
        .iter()
        .map(|(kind, r)| format!("{kind} client: {}", r.sched_summary()))
        .collect();
    if let Some(bare) = bare {
        sched.push(format!("bare PTY: {}", bare.sched_summary()));
    }
    report.notes.push(format!(
        "{}: per sample CPU/run-queue wait, median of runs: {}",
        plan.label,
        sched.join("; ")
    ));
    if fig.name == "cmd" && !common::contains(&first.answers[0], b"x2") {
        report
            .failures
            .push("cmd: the calibrated answer lacks the output x2".into());
    }
    for (kind, r) in relayed {
        let title = if relayed.len() > 1 || *kind != "tokio" {
            format!("{title} [{kind} client]")
        } else {
            title.to_string()
        };
        let row = latency_row(&title, r, fig.p50_target, fig.p99_target);
        report.rows.push(row);
    }
    if let Some(bare) = bare {
        let row = floor_row(&format!("  floor: bare PTY, {title}"), bare);
        report.rows.push(row);
    }
}

/// The floor of a round trip: 1 B ping-pong over TCP loopback, blocking.
pub fn tcp_floor(opts: &Opts, warmup: usize, report: &mut Report) {
    eprintln!("floor: TCP loopback ping-pong");
    let mut p50s = Vec::new();
    let mut all = Vec::new();
    for _ in 0..opts.runs {
        match floor::tcp_ping_pong(warmup, opts.samples) {
            Ok(v) => {
                p50s.push(Dist::new(v.clone()).pct(50.0));
                all.extend(v);
            }
            Err(e) => report.failures.push(format!("floor tcp: {e:#}")),
        }
    }
    let r = LatencyResult {
        all: Dist::new(all),
        run_p50s: p50s,
        ..LatencyResult::new()
    };
    report.rows.push(floor_row(
        "  floor: TCP loopback 1 B ping-pong (blocking)",
        &r,
    ));
}

/// One run: calibrate the answers, warm up, then time `plan.samples` round trips.
async fn measure_run<T: Terminal>(mut t: T, plan: &LatencyPlan<'_>) -> Result<Run> {
    let answers = calibrate_answers(&mut t, plan).await?;
    let n = plan.payloads.len();
    for i in 0..plan.warmup {
        t.round_trip(&plan.payloads[i % n], &answers[i % n]).await?;
    }
    let processes = t.processes();
    let before: Vec<_> = processes.iter().map(|(_, pid)| schedstat(*pid)).collect();
    let mut samples = Vec::with_capacity(plan.samples);
    let mut mismatches = 0;
    let mut i = 0;
    while samples.len() < plan.samples {
        match t.round_trip(&plan.payloads[i % n], &answers[i % n]).await? {
            Some(ns) => samples.push(ns),
            None => {
                mismatches += 1;
                if mismatches > plan.samples / 20 + 5 {
                    bail!(
                        "{}: too many answers differ from the calibrated ones",
                        plan.label
                    );
                }
            }
        }
        i += 1;
    }
    let count = i as f64;
    let sched = processes
        .iter()
        .zip(before)
        .filter_map(|((name, pid), before)| {
            let (b, a) = (before?, schedstat(*pid)?);
            let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / count;
            Some((*name, (per(b.0, a.0), per(b.1, a.1))))
        })
        .collect();
    t.finish().await;
    Ok(Run {
        samples,
        mismatches,
        answers,
        sched,
    })
}

/// Each payload's answer, learned twice: a shell whose answers vary can't be timed this way.
async fn calibrate_answers<T: Terminal>(t: &mut T, plan: &LatencyPlan<'_>) -> Result<Vec<Vec<u8>>> {
    let mut answers = Vec::new();
    for p in &plan.payloads {
        answers.push(t.calibrate(p).await?);
    }
    for (p, a) in plan.payloads.iter().zip(&answers) {
        let again = t.calibrate(p).await?;
        if &again != a {
            bail!(
                "{}: the answer to {:?} varies: {:?} then {:?}",
                plan.label,
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(&again)
            );
        }
    }
    Ok(answers)
}

fn log_run(label: &str, run: usize, runs: usize, r: &Run) {
    let d = Dist::new(r.samples.clone());
    let sched: Vec<String> = r
        .sched
        .iter()
        .map(|(n, (cpu, wait))| format!("{n} {:.1}/{:.1}", cpu / 1e3, wait / 1e3))
        .collect();
    eprintln!(
        "  {label} run {}/{runs}: p50 {} p99 {} ({} samples); per sample CPU/run-queue wait: {} µs",
        run + 1,
        us(d.pct(50.0)),
        us(d.pct(99.0)),
        d.len(),
        sched.join(", ")
    );
}

pub fn latency_row(
    figure: &str,
    r: &LatencyResult,
    p50_target: u64,
    p99_target: Option<u64>,
) -> Row {
    let (p50, p99) = (r.all.pct(50.0), r.all.pct(99.0));
    let mut target = format!("p50 ≤ {}", us(p50_target));
    let mut ok = p50 <= p50_target;
    if let Some(t) = p99_target {
        write!(target, ", p99 ≤ {}", us(t)).unwrap();
        ok &= p99 <= t;
    }
    let mut samples = r.all.len().to_string();
    if r.mismatches > 0 {
        write!(samples, " ({} odd)", r.mismatches).unwrap();
    }
    Row {
        figure: figure.to_owned(),
        samples,
        p50: us(p50),
        p99: us(p99),
        spread: format!("run p50s {}", spread(&r.run_p50s, us)),
        target,
        verdict: verdict(ok),
    }
}

/// A row for a floor: no target, it is what the machine gives.
pub fn floor_row(figure: &str, r: &LatencyResult) -> Row {
    Row {
        verdict: "",
        target: "(floor)".into(),
        ..latency_row(figure, r, u64::MAX, None)
    }
}
