//! `cargo bench --bench relay`: what a user of termpool feels (keystroke echo, command round trip,
//! throughput, opening sessions, RSS), measured end to end over a real WebSocket against the real
//! server binary. Options: `USAGE` in `opts.rs`; the method is in `docs/design.md`.

#[path = "../support/blocking.rs"]
mod blocking;
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../support/floor.rs"]
mod floor;

mod attach;
mod latency;
mod opts;
mod procfs;
mod session;
mod sessions;
mod table;
mod terminal;
mod throughput;

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use common::Server;

use opts::Opts;
use procfs::status_kib;
use session::{end_session, fresh_identity, Target};
use table::{machine, Report};

async fn run(opts: Opts, command_line: String) -> Result<()> {
    println!("command:  {command_line}");
    println!("machine:  {}", machine());
    println!("client:   tokio current-thread runtime (1 thread), tokio-tungstenite, TCP_NODELAY");
    if cfg!(debug_assertions) {
        println!("build:    DEBUG (cargo test): a smoke run; the figures mean nothing against the targets");
    }
    // Either the server started here, or one that is already running.
    let (server, target) = match &opts.url {
        Some(url) => (None, running_server(&opts, url).await?),
        None => {
            let (server, target) = start_server(&opts).await;
            (Some(server), target)
        }
    };
    let target = Target {
        query: if opts.query.is_empty() {
            "cols=80&rows=24".into()
        } else {
            format!("cols=80&rows=24&{}", opts.query)
        },
        ..target
    };
    println!("query:    /ws?{}", target.query);
    let fresh_rss = target.pid.and_then(|p| status_kib(p, "VmRSS"));
    let target = probe(target).await?;
    println!();
    let mut report = Report::default();
    bench_all(&target, &opts, fresh_rss, &mut report).await;
    report.print();
    drop(server);
    if report.failures.is_empty() {
        Ok(())
    } else {
        bail!("{} figure(s) could not be measured", report.failures.len())
    }
}

/// The target of `--url`: a server that is already running.
async fn running_server(opts: &Opts, url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("--url must start with ws:// (no TLS in this client)"))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/ws".to_owned()),
    };
    let cookie = match &opts.cookie {
        Some(c) => c.clone(),
        None => fresh_identity(&addr)
            .await
            .context("pass --cookie for a server that sets none")?,
    };
    println!("server:   {url} (already running; pid {:?})", opts.pid);
    Ok(Target {
        addr,
        path,
        cookie,
        query: String::new(),
        pid: opts.pid,
        local: false,
    })
}

/// Starts the server binary with the bench's defaults, unless `--server-arg` gives others.
async fn start_server(opts: &Opts) -> (Server, Target) {
    let args = server_args(opts);
    let printable: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    println!(
        "server:   {} --port 0 --bind 127.0.0.1 {}",
        env!("CARGO_BIN_EXE_termpool"),
        printable.join(" ")
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&refs, &[]);
    let cookie = server.new_identity().await;
    let target = Target {
        addr: server.addr.clone(),
        path: "/ws".into(),
        cookie,
        query: String::new(),
        pid: Some(server.pid()),
        local: false,
    };
    (server, target)
}

fn server_args(opts: &Opts) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let given = |flag: &str| {
        opts.server_args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    if !given("--shell") {
        args.extend(["--shell".into(), opts.shell.clone()]);
    }
    for (flag, value) in [
        ("--max-sessions-per-user", "1000"),
        ("--max-new-sessions-per-minute", "0"),
        // Every new user of the benchmark comes from 127.0.0.1.
        ("--max-new-identities-per-address-per-minute", "0"),
        ("--max-sessions-per-address", "0"),
        ("--max-identities-per-address", "0"),
    ] {
        if !given(flag) {
            args.extend([flag.into(), value.into()]);
        }
    }
    args.extend(opts.server_args.iter().cloned());
    args
}

/// One session first: the server answers, and in which mode.
async fn probe(target: Target) -> Result<Target> {
    let mut probe = target.open().await?;
    let ready = probe.ready().await;
    let target = Target {
        local: ready.mode == "local",
        ..target
    };
    // Quoted, as JSON: the figures in the README show it so.
    println!("mode:     \"{}\"", ready.mode);
    end_session(probe, b"exit\r").await;
    Ok(target)
}

/// Every figure `opts` asks for, in the order of the table.
async fn bench_all(target: &Target, opts: &Opts, fresh_rss: Option<u64>, report: &mut Report) {
    let warmup = if opts.quick { 50 } else { 200 };
    let shell_argv: Vec<String> = opts.shell.split_whitespace().map(str::to_owned).collect();
    for figure in &latency::figures(opts, warmup) {
        latency::bench_figure(figure, target, opts, &shell_argv, report).await;
    }
    if opts.wants("floor") {
        latency::tcp_floor(opts, warmup, report);
    }
    if opts.wants("throughput") {
        eprintln!(
            "throughput: `head -c {} /dev/zero` in a raw TTY",
            opts.mib << 20
        );
        let row = throughput::bench_throughput(target, opts, &mut report.notes).await;
        report.add("throughput", row.map(|r| vec![r]));
        if opts.wants("floor") {
            eprintln!("floor: the same on a bare PTY, no server");
            let row = throughput::floor_throughput(&shell_argv, opts);
            report.add("floor throughput", row.map(|r| vec![r]));
        }
    }
    if opts.wants("reattach") {
        eprintln!("re-attach: drop the socket of a session, open `?session=<id>`");
        report.add("reattach", attach::bench_reattach(target, opts).await);
    }
    if opts.wants("newuser") {
        eprintln!("newuser: a fresh identity's first session");
        let row = attach::bench_new_users(target, opts).await;
        report.add("newuser", row.map(|r| vec![r]));
    }
    if opts.wants("sessions") {
        eprintln!("sessions: {} at once", opts.sessions);
        let rows = sessions::bench_sessions(target, opts, &shell_argv, fresh_rss).await;
        report.add("sessions", rows);
    }
}

fn smoke_run() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// The command line as the output quotes it, without the value of `--cookie` (a login).
fn command_line() -> String {
    let mut s = String::new();
    if let Ok(v) = std::env::var("TERMPOOL_BENCH_ARGS") {
        let words: Vec<&str> = v.split_whitespace().collect();
        write!(s, "TERMPOOL_BENCH_ARGS='{}' ", without_cookie(&words)).unwrap();
    }
    s.push_str(if smoke_run() {
        "(run without --bench, e.g. by cargo test: smoke run) relay -- --quick"
    } else {
        "cargo bench --bench relay --"
    });
    if !smoke_run() {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        if !args.is_empty() {
            write!(s, " {}", without_cookie(&args)).unwrap();
        }
    }
    s
}

fn without_cookie<S: AsRef<str>>(words: &[S]) -> String {
    let shown = words
        .iter()
        .enumerate()
        .map(|(i, w)| match i.checked_sub(1) {
            Some(prev) if words[prev].as_ref() == "--cookie" => "<cookie>",
            _ => w.as_ref(),
        });
    shown.collect::<Vec<_>>().join(" ")
}

fn main() {
    let mut args: Vec<String> = std::env::var("TERMPOOL_BENCH_ARGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it (in
    // the debug profile, with libtest's arguments): then it is only a smoke test, as `--quick`.
    if smoke_run() {
        args.push("--quick".into());
    } else {
        args.extend(std::env::args().skip(1));
    }
    let command_line = command_line();
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("relay bench: {e:#}");
            std::process::exit(2);
        }
    };
    // One thread, so that the client competes with the server and the shells for as little CPU
    // as possible.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(opts, command_line)) {
        eprintln!("relay bench: {e:#}");
        std::process::exit(1);
    }
}
