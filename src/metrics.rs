//! Counters for `/metrics` (Prometheus text format). Plain relaxed atomics: the relay bumps them on
//! its hot path, so they must cost next to nothing.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::tty::ContainerNode;

/// Upper bounds (seconds) of the session-open latency histogram's buckets.
const OPEN_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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
    /// Refusals (of an upgrade, or of any request by a block), by reason.
    refusals: Mutex<BTreeMap<String, u64>>,
    /// How long opening a new session took, from the request to a running shell.
    open_latency: Histogram,
}

/// Sessions and users of one container, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub container: String,
    pub users_assigned: usize,
    pub live_sessions: usize,
}

/// A Prometheus histogram of durations with the fixed [`OPEN_BUCKETS`].
#[derive(Default)]
struct Histogram {
    /// Observations at most each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; OPEN_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = OPEN_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in OPEN_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
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

    /// Counts a refusal under `reason` (a short snake_case label).
    pub fn count_refusal_reason(&self, reason: &str) {
        let mut map = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(reason.to_owned()).or_default() += 1;
    }

    /// Records how long opening a new session took.
    pub fn observe_open(&self, took: Duration) {
        self.open_latency.observe(took);
    }

    /// The per-container lines: users assigned and live sessions of each.
    pub fn render_occupancy(occupancy: &[Occupancy]) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "termpool_container_users",
                "Users holding a slot in the container.",
                (|o: &Occupancy| o.users_assigned) as fn(&Occupancy) -> usize,
            ),
            (
                "termpool_container_sessions",
                "Live sessions running in the container.",
                |o: &Occupancy| o.live_sessions,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for o in occupancy {
                let _ = writeln!(out, "{name}{{container=\"{}\"}} {}", o.container, value(o));
            }
        }
        out
    }

    /// The node of each container, whether it is ready, and whether its relay runs (where the
    /// pool has one), on a pool of several nodes.
    pub fn render_nodes(nodes: &[ContainerNode]) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "termpool_container_node_ready",
                "The node holding the container, and whether it is ready (1) or down (0).",
                (|n: &ContainerNode| Some(n.ready)) as fn(&ContainerNode) -> Option<bool>,
            ),
            (
                "termpool_container_node_relay",
                "Whether the node relay runs on the container's node (1) or not (0: its sessions are relayed inside the user containers).",
                |n: &ContainerNode| n.relay,
            ),
        ] {
            let lines: Vec<_> = nodes.iter().filter_map(|n| Some((n, value(n)?))).collect();
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (n, on) in lines {
                let (container, node) = (&n.container, &n.node);
                let labels = format!("container=\"{container}\",node=\"{node}\"");
                let _ = writeln!(out, "{name}{{{labels}}} {}", u8::from(on));
            }
        }
        out
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
            "termpool_busy_poll_contended_total",
            "counter",
            "Busy-polling windows ended early because the worker's core was contended.",
            crate::spin::CONTENDED.load(Ordering::Relaxed).to_string(),
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
        let _ = writeln!(
            out,
            "# HELP termpool_refusals_total Requests refused, by reason.\n\
             # TYPE termpool_refusals_total counter"
        );
        for (reason, n) in self
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "termpool_refusals_total{{reason=\"{reason}\"}} {n}");
        }
        self.open_latency.render(
            &mut out,
            "termpool_session_open_seconds",
            "Time from a request for a new session to its running shell.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(container: &str, node: &str, ready: bool, relay: Option<bool>) -> ContainerNode {
        ContainerNode {
            container: container.into(),
            node: node.into(),
            ready,
            relay,
        }
    }

    #[test]
    fn each_container_s_node_is_ready_or_not_and_its_relay_runs_or_not() {
        let text = Metrics::render_nodes(&[
            node("pool-0", "n1", true, Some(true)),
            node("pool-1", "n2", false, Some(false)),
        ]);
        for line in [
            "termpool_container_node_ready{container=\"pool-0\",node=\"n1\"} 1",
            "termpool_container_node_ready{container=\"pool-1\",node=\"n2\"} 0",
            "termpool_container_node_relay{container=\"pool-0\",node=\"n1\"} 1",
            "termpool_container_node_relay{container=\"pool-1\",node=\"n2\"} 0",
            "# TYPE termpool_container_node_relay gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn no_relay_line_where_the_pool_has_no_relay_and_nothing_without_nodes() {
        let text = Metrics::render_nodes(&[node("pool-0", "n1", true, None)]);
        assert!(text.contains("termpool_container_node_ready{"));
        assert!(!text.contains("termpool_container_node_relay"), "{text}");
        assert_eq!(Metrics::render_nodes(&[]), "");
    }
}
