//! Figures as the benchmark reports them: percentiles, units, the verdict against a target, and
//! the final table.

/// Percentiles over samples in nanoseconds (nearest rank).
pub struct Dist {
    pub sorted: Vec<u64>,
}

impl Dist {
    pub fn new(mut samples: Vec<u64>) -> Dist {
        samples.sort_unstable();
        Dist { sorted: samples }
    }
    pub fn pct(&self, p: f64) -> u64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }
    pub fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// One line of the final table.
pub struct Row {
    pub figure: String,
    pub samples: String,
    pub p50: String,
    pub p99: String,
    pub spread: String,
    pub target: String,
    pub verdict: &'static str,
}

impl Row {
    /// A row of durations in milliseconds: the p50 and p99 of `d`.
    pub fn in_ms(
        figure: String,
        d: &Dist,
        spread: String,
        target: &str,
        verdict: &'static str,
    ) -> Row {
        Row {
            figure,
            samples: d.len().to_string(),
            p50: ms(d.pct(50.0)),
            p99: ms(d.pct(99.0)),
            spread,
            target: target.into(),
            verdict,
        }
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if cfg!(debug_assertions) {
        "(debug build)"
    } else if ok {
        "met"
    } else {
        "MISSED"
    }
}

pub fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

pub fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

pub fn mib_of_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The lowest and highest of `values`, e.g. per-run p50s.
pub fn spread(values: &[u64], fmt: fn(u64) -> String) -> String {
    let (lo, hi) = (values.iter().min().copied(), values.iter().max().copied());
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{}..{} ({} runs)", fmt(lo), fmt(hi), values.len()),
        _ => "-".into(),
    }
}

/// What the figures were measured on.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "nproc {nproc}, kernel {}, cpu {cpu}, load average {}",
        kernel.trim(),
        load.join(" ")
    )
}

/// The final table, one row per figure, columns padded to their widest cell.
pub fn print_table(rows: &[Row]) {
    let header = Row {
        figure: "figure".into(),
        samples: "samples".into(),
        p50: "p50/median".into(),
        p99: "p99".into(),
        spread: "spread".into(),
        target: "target".into(),
        verdict: "",
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let w = [
        width(|r| &r.figure),
        width(|r| &r.samples),
        width(|r| &r.p50),
        width(|r| &r.p99),
        width(|r| &r.spread),
        width(|r| &r.target),
    ];
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
    let line = |r: &Row| {
        format!(
            "{} | {} | {} | {} | {} | {} | {}",
            pad(&r.figure, w[0]),
            pad(&r.samples, w[1]),
            pad(&r.p50, w[2]),
            pad(&r.p99, w[3]),
            pad(&r.spread, w[4]),
            pad(&r.target, w[5]),
            if std::ptr::eq(r, &header) {
                "verdict"
            } else {
                r.verdict
            }
        )
    };
    println!("{}", line(&header));
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 3 * 6 + 7));
    for r in rows {
        println!("{}", line(r));
    }
}

/// Everything a run found: the table's rows, notes under it, and figures that failed.
#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    /// Records a figure's rows, or why `figure` could not be measured.
    pub fn add(&mut self, figure: &str, rows: anyhow::Result<Vec<Row>>) {
        match rows {
            Ok(rows) => self.rows.extend(rows),
            Err(e) => self.failures.push(format!("{figure}: {e:#}")),
        }
    }

    /// The end of the output: load, table, notes and failures.
    pub fn print(&self) {
        println!();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("load average at the end: {}", load.join(" "));
        print_table(&self.rows);
        println!();
        for n in &self.notes {
            println!("note: {n}");
        }
        for f in &self.failures {
            println!("FAILED: {f}");
        }
    }
}
