//! The test Swarm's nodes: their state as the manager sees it, a node cut off ([`LinkCut`]),
//! workers promoted to managers for one test ([`Promoted`]); each undone when dropped.

use std::process::Command;
use std::time::Duration;

use super::{dk, dk_try, node_name, run, wait_until, NODES};

/// The state of node `i` as the manager sees it (`ready`, `down`, ...).
pub fn node_state(i: usize) -> String {
    dk_try(
        1,
        &[
            "node",
            "inspect",
            &node_name(i),
            "--format",
            "{{.Status.State}}",
        ],
    )
    .unwrap_or_default()
}

/// Node `i` cut off from the others (its link down, as a dead host looks to them) until
/// dropped, when its link comes back.
pub struct LinkCut(usize);

impl LinkCut {
    pub fn new(i: usize) -> LinkCut {
        assert!(i > 1, "node 1 is the manager that the tests talk to");
        set_link(i, "down");
        LinkCut(i)
    }
}

impl Drop for LinkCut {
    fn drop(&mut self) {
        set_link(self.0, "up");
    }
}

fn set_link(i: usize, state: &str) {
    let out = run(Command::new("ip").args(["link", "set", &format!("tpsw{i}h"), state]));
    assert!(out.status.success(), "ip link set tpsw{i}h {state} failed");
}

/// How a manager reaches manager node `i` (`reachable`), or nothing when `i` is a worker.
pub fn manager_reachability(i: usize) -> String {
    let format = "{{if .ManagerStatus}}{{.ManagerStatus.Reachability}}{{end}}";
    dk_try(1, &["node", "inspect", &node_name(i), "--format", format]).unwrap_or_default()
}

/// Node `i`'s role as the Swarm wants it (`manager` or `worker`): a promotion is wanted before
/// the node has joined the managers.
fn node_role(i: usize) -> String {
    let format = "{{.Spec.Role}}";
    dk_try(1, &["node", "inspect", &node_name(i), "--format", format]).unwrap_or_default()
}

/// The label a promoted node carries while the test writes it to see the managers commit.
const PROBE_LABEL: &str = "termpool.test.promoted";

/// Workers promoted to managers for one test (a server's move between managers), demoted again
/// when dropped, also when the test fails: other tests cut nodes' links, and a Swarm of two
/// managers loses its quorum when either is cut. Declare it before what must go first (the
/// stack whose server runs on a promoted node).
#[derive(Default)]
pub struct Promoted(Vec<usize>);

impl Promoted {
    /// Promotes nodes `nodes`, waits until the managers reach them, then until the managers
    /// commit writes again: a new manager takes the Raft log first, and writes meanwhile fail
    /// (about 20 s on the test Swarm: "context deadline exceeded").
    pub fn promote(&mut self, nodes: &[usize]) {
        for &i in nodes {
            assert!(i > 1, "node 1 is the test Swarm's manager already");
            // Recorded first: a promotion that half happened is undone too.
            self.0.push(i);
            dk(1, &["node", "promote", &node_name(i)]);
        }
        let listing = || dk_try(1, &["node", "ls"]).unwrap_or_else(|e| e);
        let up = wait_until(Duration::from_secs(90), || {
            nodes
                .iter()
                .all(|&i| manager_reachability(i) == "reachable")
        });
        assert!(
            up,
            "nodes {nodes:?} did not become reachable managers:\n{}",
            listing()
        );
        let mut n = 0;
        let committed = wait_until(Duration::from_secs(120), || {
            n += 1;
            nodes.iter().all(|&i| {
                let label = format!("{PROBE_LABEL}={n}");
                dk_try(1, &["node", "update", "--label-add", &label, &node_name(i)]).is_ok()
            })
        });
        assert!(committed, "the managers commit no write:\n{}", listing());
    }
}

impl Drop for Promoted {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let names: Vec<String> = self.0.iter().map(|&i| node_name(i)).collect();
        for name in &names {
            let _ = dk_try(1, &["node", "update", "--label-rm", PROBE_LABEL, name]);
        }
        let mut args = vec!["node", "demote"];
        args.extend(names.iter().map(String::as_str));
        // A demotion before the node joined the managers fails ("can't find manager in raft
        // memberlist") and leaves it to join later: asked until it is a worker for good.
        let demoted = wait_until(Duration::from_secs(120), || {
            let _ = dk_try(1, &args);
            std::thread::sleep(Duration::from_secs(1));
            self.0
                .iter()
                .all(|&i| node_role(i) == "worker" && manager_reachability(i).is_empty())
        });
        // The managers see every node as `unknown` for a few seconds after a demotion: the
        // Swarm is handed back once they are ready again.
        let ready = wait_until(Duration::from_secs(90), || {
            (1..=NODES).all(|i| node_state(i) == "ready")
        });
        if !ready {
            eprintln!("!!! the test Swarm's nodes are not all ready after the demotion");
        }
        if !demoted {
            let message = format!(
                "nodes {names:?} are still managers of the test Swarm: demote them now \
                 (docker -H unix:///run/termpool-swarm/tpswarm-n1.sock node demote ...)"
            );
            eprintln!("!!! {message}");
            if !std::thread::panicking() {
                panic!("{message}");
            }
        }
    }
}
