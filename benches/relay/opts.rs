//! The benchmark's command line (`USAGE`), read into `Opts`.

use anyhow::{anyhow, bail, Result};

use crate::common::TEST_SHELL;

pub const USAGE: &str = "\
cargo bench --bench relay -- [options]
  --quick              short smoke run (CI): few samples, 16 MiB, 20 sessions
  --only LIST          comma-separated: echo,readline,cmd,throughput,sessions,reattach,newuser,
                       floor (default: all); floor adds, to the figures chosen, the same measured on a bare
                       PTY without the server, and a TCP loopback ping-pong
  --shell CMD          shell of the server started by the bench (default: the tests' bash)
  --server-arg ARG     extra argument for the server started by the bench (repeatable),
                       e.g. --server-arg --use-containers --server-arg true
  --url ws://H:P/PATH  benchmark an already-running server instead of starting one
  --cookie NAME=VALUE  identity cookie for --url (default: fetched from GET / of that server)
  --pid PID            server pid for --url, for the RSS and CPU figures
  --query Q            extra query parameters for every /ws, e.g. 'cols=120&rows=40'
  --client KIND        client for the keystroke figures: tokio (default: current-thread
                       runtime, tokio-tungstenite), blocking (sync tungstenite, one blocking
                       read per frame: the least a client can add), or both
  --idle-ms N          how long the 100 sessions stay idle before the RSS is read (default 500)
  --runs N             runs per figure (default 5; sessions: 3)
  --samples N          measured samples per run for echo/readline (default 500)
  --cmd-samples N      measured samples per run for the command line (default 80)
  --mib N              MiB of output per throughput run (default 128)
  --sessions N         sessions opened at once (default 100)
The env var TERMPOOL_BENCH_ARGS is split on whitespace and read before the command line.";

#[derive(Clone)]
pub struct Opts {
    pub quick: bool,
    pub only: Vec<String>,
    pub shell: String,
    pub server_args: Vec<String>,
    pub url: Option<String>,
    pub cookie: Option<String>,
    pub pid: Option<u32>,
    pub query: String,
    pub runs: usize,
    pub session_runs: usize,
    pub samples: usize,
    pub cmd_samples: usize,
    pub mib: u64,
    pub sessions: usize,
    pub clients: Vec<&'static str>,
    pub idle_ms: u64,
}

/// The counts a flag set, applied after `--quick` chose its own.
#[derive(Default)]
struct Counts {
    runs: Option<usize>,
    samples: Option<usize>,
    cmd_samples: Option<usize>,
    mib: Option<usize>,
    sessions: Option<usize>,
}

/// The figures `--only` knows.
const FIGURES: [&str; 8] = [
    "echo",
    "readline",
    "cmd",
    "throughput",
    "sessions",
    "reattach",
    "newuser",
    "floor",
];

impl Opts {
    pub fn parse(args: Vec<String>) -> Result<Opts> {
        let mut o = Opts::defaults();
        let mut counts = Counts::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            o.apply(arg, &mut it, &mut counts)?;
        }
        o.settle(counts);
        for f in &o.only {
            if !FIGURES.contains(&f.as_str()) {
                bail!("--only: unknown figure {f}\n{USAGE}");
            }
        }
        Ok(o)
    }

    pub fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }

    fn defaults() -> Opts {
        Opts {
            quick: false,
            only: Vec::new(),
            shell: TEST_SHELL.to_owned(),
            server_args: Vec::new(),
            url: None,
            cookie: None,
            pid: None,
            query: String::new(),
            runs: 5,
            session_runs: 3,
            samples: 500,
            cmd_samples: 80,
            mib: 128,
            sessions: 100,
            clients: vec!["tokio"],
            idle_ms: 500,
        }
    }

    /// Reads one option, and its value from `=` or from the next argument.
    fn apply(
        &mut self,
        arg: String,
        it: &mut std::vec::IntoIter<String>,
        counts: &mut Counts,
    ) -> Result<()> {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| anyhow!("{name} needs a value\n{USAGE}"))
        };
        let number = |v: String| -> Result<usize> {
            v.parse().map_err(|_| anyhow!("{name}: not a number: {v}"))
        };
        match name.as_str() {
            // cargo passes --bench to harness=false benches.
            "--bench" => {}
            "--quick" => self.quick = true,
            "--only" => self.only.extend(value()?.split(',').map(str::to_owned)),
            "--shell" => self.shell = value()?,
            "--server-arg" => self.server_args.push(value()?),
            "--url" => self.url = Some(value()?),
            "--cookie" => self.cookie = Some(value()?),
            "--pid" => self.pid = Some(number(value()?)? as u32),
            "--query" => self.query = value()?,
            "--runs" => counts.runs = Some(number(value()?)?),
            "--samples" => counts.samples = Some(number(value()?)?),
            "--cmd-samples" => counts.cmd_samples = Some(number(value()?)?),
            "--mib" => counts.mib = Some(number(value()?)?),
            "--sessions" => counts.sessions = Some(number(value()?)?),
            "--idle-ms" => self.idle_ms = number(value()?)? as u64,
            "--client" => self.clients = clients(&value()?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
        Ok(())
    }

    /// `--quick`'s counts, then the ones given, each at least 1.
    fn settle(&mut self, counts: Counts) {
        if self.quick {
            (
                self.runs,
                self.session_runs,
                self.samples,
                self.cmd_samples,
                self.mib,
                self.sessions,
            ) = (1, 1, 200, 30, 16, 20);
        }
        self.runs = counts.runs.unwrap_or(self.runs).max(1);
        self.session_runs = counts.runs.unwrap_or(self.session_runs).max(1);
        self.samples = counts.samples.unwrap_or(self.samples).max(1);
        self.cmd_samples = counts.cmd_samples.unwrap_or(self.cmd_samples).max(1);
        self.mib = counts.mib.map_or(self.mib, |m| m as u64).max(1);
        self.sessions = counts.sessions.unwrap_or(self.sessions).max(1);
    }
}

fn clients(kind: &str) -> Result<Vec<&'static str>> {
    Ok(match kind {
        "tokio" => vec!["tokio"],
        "blocking" => vec!["blocking"],
        "both" => vec!["tokio", "blocking"],
        other => bail!("--client: tokio, blocking or both, not {other}"),
    })
}
