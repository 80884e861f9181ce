//! Counters for `/metrics` (Prometheus text format). Plain relaxed atomics: the relay bumps them on
//! its hot path, so they must cost next to nothing.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub sessions_open: AtomicI64,
    pub sessions_total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// `error` frames sent to clients.
    pub errors: AtomicU64,
    /// Upgrades refused before the WebSocket opened, by HTTP status.
    pub refused_400: AtomicU64,
    pub refused_401: AtomicU64,
    pub refused_403: AtomicU64,
    pub refused_429: AtomicU64,
    pub refused_5xx: AtomicU64,
}

impl Metrics {
    pub fn count_refusal(&self, status: u16) {
        let counter = match status {
            400 => &self.refused_400,
            401 => &self.refused_401,
            403 => &self.refused_403,
            429 => &self.refused_429,
            _ => &self.refused_5xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "termpool_sessions_open",
            "gauge",
            "Terminal sessions with a live shell.",
            self.sessions_open.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "termpool_sessions_total",
            "counter",
            "Terminal sessions opened since start.",
            get(&self.sessions_total),
        );
        metric(
            "termpool_bytes_in_total",
            "counter",
            "Bytes written to terminals by clients.",
            get(&self.bytes_in),
        );
        metric(
            "termpool_bytes_out_total",
            "counter",
            "Bytes of terminal output sent to clients.",
            get(&self.bytes_out),
        );
        metric(
            "termpool_errors_total",
            "counter",
            "Error frames sent to clients.",
            get(&self.errors),
        );
        let _ = writeln!(
            out,
            "# HELP termpool_upgrades_refused_total WebSocket upgrades refused, by status.\n\
             # TYPE termpool_upgrades_refused_total counter"
        );
        for (status, counter) in [
            ("400", &self.refused_400),
            ("401", &self.refused_401),
            ("403", &self.refused_403),
            ("429", &self.refused_429),
            ("5xx", &self.refused_5xx),
        ] {
            let _ = writeln!(
                out,
                "termpool_upgrades_refused_total{{status=\"{status}\"}} {}",
                get(counter)
            );
        }
        out
    }
}
