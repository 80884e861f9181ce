//! Against a real Swarm manager, named by `TERMPOOL_SWARM_MANAGER_SOCKET`: the behaviour checks of
//! `SqliteStore`'s tests, plus restarts, racing stores, crashes mid-placement and newer schemas.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::query_parameters::ListConfigsOptions;
use bollard::Docker;
use tokio::runtime::Runtime;

use super::records::{Account, LABEL_KIND, LABEL_SCHEMA, LABEL_STORE};
use super::*;
use crate::pool::store::behaviour::{self, active, assignment, user};
use crate::pool::store::{unix_now, LAST_UID};

const SOCKET_VAR: &str = "TERMPOOL_SWARM_MANAGER_SOCKET";

/// A pool label of its own on the test Swarm's manager; every config of it removed on drop.
struct TestPool {
    rt: Runtime,
    docker: Docker,
    label: String,
}

impl TestPool {
    fn new(tag: &str) -> TestPool {
        let socket = std::env::var(SOCKET_VAR).unwrap_or_else(|_| {
            panic!(
                "{SOCKET_VAR} is not set: these tests need a Swarm manager's Docker socket \
                 (scripts/swarm/up.sh; the manager is node 1)"
            )
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let docker = connect(&rt, &socket);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Pool labels are at most 32 characters.
        let tag: String = tag.chars().take(8).collect();
        let unique = nanos ^ std::process::id().rotate_left(20);
        let label = format!("swarm-store-{tag}-{unique:08x}");
        TestPool { rt, docker, label }
    }

    fn open(&self) -> Result<SwarmStore, StoreError> {
        let _entered = self.rt.enter();
        SwarmStore::new(self.docker.clone(), &self.label)
    }

    fn store(&self) -> SwarmStore {
        self.open()
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.label))
    }

    /// The pool's configs as the manager has them.
    fn configs(&self) -> Vec<bollard::models::Config> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_STORE}={}", self.label)],
        )]);
        let options = ListConfigsOptions {
            filters: Some(filters),
        };
        self.rt
            .block_on(self.docker.list_configs(Some(options)))
            .expect("list configs")
    }

    /// (ID, version) of each of the pool's configs.
    fn versions(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .configs()
            .into_iter()
            .map(|c| {
                let index = c.version.and_then(|v| v.index).unwrap_or(0);
                (c.id.unwrap_or_default(), index)
            })
            .collect();
        v.sort();
        v
    }

    fn remove_config(&self, name: &str) {
        self.rt
            .block_on(self.docker.delete_config(name))
            .unwrap_or_else(|e| panic!("removing {name}: {e}"));
    }

    fn create_config(&self, name: &str, labels: HashMap<String, String>) {
        let spec = bollard::models::ConfigSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            data: Some("e30=".into()),
            templating: None,
        };
        self.rt
            .block_on(self.docker.create_config(spec))
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        for c in self.configs() {
            if let Some(id) = c.id {
                let _ = self.rt.block_on(self.docker.delete_config(&id));
            }
        }
    }
}

/// A client of the engine at `socket`, answering (fails loudly otherwise).
fn connect(rt: &Runtime, socket: &str) -> Docker {
    let docker = Docker::connect_with_unix(socket, 30, bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|e| panic!("{SOCKET_VAR}={socket}: {e}"));
    rt.block_on(docker.ping())
        .unwrap_or_else(|e| panic!("{SOCKET_VAR}={socket} does not answer: {e}"));
    docker
}

#[test]
fn uids_start_at_200000_and_are_never_reused() {
    let pool = TestPool::new("uids");
    let (mut s, b) = behaviour::uids_start_at_the_first_and_stay(|| pool.store());
    // Removing the newest account's config (as an operator might) does not bring its UID back.
    pool.remove_config(&format!("{}-uid-{}", pool.label, b.uid));
    behaviour::a_deleted_users_uid_is_not_reused(&mut s);
}

#[test]
fn a_restarted_store_sees_every_placement() {
    let pool = TestPool::new("reopen");
    behaviour::state_survives_reopen(|| pool.store());
}

#[test]
fn touch_never_moves_last_seen_back() {
    let pool = TestPool::new("touch");
    behaviour::touch_never_moves_last_seen_back(|| pool.store());
}

#[test]
fn eviction_and_assignment_go_together() {
    let pool = TestPool::new("evict");
    behaviour::eviction_and_assignment_go_together(|| pool.store());
}

#[test]
fn container_names_follow_slots() {
    let pool = TestPool::new("containers");
    let mut s = behaviour::container_names_follow_slots(|| pool.store());
    // A name moving to another slot leaves the old slot.
    let rec = behaviour::record;
    s.save_container(&rec(2, "c-1", "d")).expect("moved");
    assert_eq!(
        s.containers().expect("list"),
        vec![rec(0, "c-0", "c"), rec(2, "c-1", "d")]
    );
}

#[test]
fn activity_is_kept_and_idle_accounts_are_listed_oldest_first() {
    let pool = TestPool::new("activity");
    behaviour::activity_is_kept_and_idle_accounts_are_listed_oldest_first(|| pool.store());
}

#[test]
fn uid_exhaustion_is_an_error_and_writes_nothing() {
    let pool = TestPool::new("exhaust");
    let mut s = pool.store();
    s.raise_uid_floor(LAST_UID + 1).expect("floor");
    let err = s.assign(&assignment("ha", "ua", "c-0", None));
    assert!(matches!(err, Err(StoreError::UidsExhausted(_))), "{err:?}");
    assert!(s.users().expect("users").is_empty(), "nothing half-written");
}

#[test]
fn touches_within_the_granularity_stay_in_memory() {
    let pool = TestPool::new("granularity");
    let mut s = pool.store();
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    let before = pool.versions();
    s.touch(&active(&[("ua", 100 + TOUCH_GRANULARITY_SECS - 1)]))
        .expect("touch");
    // Seen here at once, but no write: a restarted server sees the last written time.
    assert_eq!(
        user(&s, "ua").last_activity,
        100 + TOUCH_GRANULARITY_SECS - 1
    );
    assert_eq!(pool.versions(), before, "no record rewritten");
    assert_eq!(user(&pool.store(), "ua").last_activity, 100);
    s.touch(&active(&[("ua", 100 + TOUCH_GRANULARITY_SECS)]))
        .expect("touch");
    assert_eq!(
        user(&pool.store(), "ua").last_activity,
        100 + TOUCH_GRANULARITY_SECS
    );
}

#[test]
fn two_racing_stores_never_share_a_uid() {
    let pool = TestPool::new("race");
    const EACH: usize = 8;
    let uids: Vec<u32> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|side| {
                let pool = &pool;
                scope.spawn(move || {
                    let mut s = pool.store();
                    (0..EACH)
                        .map(|i| {
                            let (h, u) = (format!("h{side}{i}"), format!("u{side}{i}"));
                            s.assign(&assignment(&h, &u, "c-0", None))
                                .unwrap_or_else(|e| panic!("{u}: {e}"))
                                .uid
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        racers
            .into_iter()
            .flat_map(|r| r.join().expect("racer"))
            .collect()
    });
    let distinct: HashSet<_> = uids.iter().collect();
    assert_eq!(distinct.len(), 2 * EACH, "UIDs handed out twice: {uids:?}");
    let stored: HashSet<_> = pool
        .store()
        .users()
        .expect("users")
        .iter()
        .map(|u| u.uid)
        .collect();
    assert_eq!(stored.len(), 2 * EACH);
}

#[test]
fn two_servers_making_one_user_an_account_keep_one() {
    let pool = TestPool::new("oneuser");
    let (mut first, second) = (pool.store(), pool.store());
    // The second server read the records before the first made the account.
    let stale = second.snapshot().expect("snapshot");
    let made = first
        .assign(&assignment("ha", "ua", "c-0", None))
        .expect("a");
    let raced = second
        .take_slot(&stale, &assignment("ha", "ua", "c-1", None))
        .expect("second");
    assert!(raced.is_none(), "the later account gives way: {raced:?}");
    let users = pool.store().users().expect("users");
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].uid, made.uid);
}

#[test]
fn an_unusable_manager_is_a_clear_error() {
    let pool = TestPool::new("manager");
    // A path where nothing listens: connecting is refused.
    let dead = std::env::temp_dir().join(format!("{}.sock", pool.label));
    std::fs::write(&dead, b"").expect("dead socket path");
    let missing = connect_lazy(&pool.rt, dead.to_str().expect("utf-8"));
    let _entered = pool.rt.enter();
    let err = SwarmStore::new(missing, &pool.label)
        .err()
        .expect("unreachable");
    assert!(err.to_string().contains("unreachable"), "{err}");
    let _ = std::fs::remove_file(&dead);
    // A worker node answers, but holds no cluster state.
    let manager = std::env::var(SOCKET_VAR).expect("socket");
    let worker = std::env::var("TERMPOOL_SWARM_WORKER_SOCKET")
        .unwrap_or_else(|_| manager.replace("-n1.sock", "-n2.sock"));
    assert_ne!(worker, manager, "set TERMPOOL_SWARM_WORKER_SOCKET");
    let err = SwarmStore::new(connect_lazy(&pool.rt, &worker), &pool.label)
        .err()
        .expect("worker");
    assert!(err.to_string().contains("not a Swarm manager"), "{err}");
    let err = SwarmStore::new(pool.docker.clone(), "bad label/")
        .err()
        .expect("label");
    assert!(
        err.to_string().contains("cannot name Swarm configs"),
        "{err}"
    );
}

#[test]
fn a_store_opened_in_a_current_thread_runtime_works() {
    let pool = TestPool::new("current-thread");
    let actix_like = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let socket = std::env::var(SOCKET_VAR).expect("socket");
    let label = pool.label.clone();
    let users = actix_like.block_on(async move {
        let docker =
            Docker::connect_with_unix(&socket, 30, bollard::API_DEFAULT_VERSION).expect("client");
        let mut s = tokio::task::spawn_blocking(move || SwarmStore::new(docker, &label))
            .await
            .expect("join")
            .expect("open");
        tokio::task::spawn_blocking(move || {
            s.assign(&assignment("ha", "ua", "c-0", None))?;
            s.users()
        })
        .await
        .expect("join")
        .expect("assign")
    });
    assert_eq!(users.len(), 1);
}

fn connect_lazy(rt: &Runtime, socket: &str) -> Docker {
    let _entered = rt.enter();
    Docker::connect_with_unix(socket, 5, bollard::API_DEFAULT_VERSION).expect("client")
}

/// The figures of `docs/scaling.md`: what a placement and a full read cost at 200 accounts.
#[test]
fn two_hundred_accounts_cost() {
    let pool = TestPool::new("cost");
    let mut s = pool.store();
    let mut took = Vec::new();
    for i in 0..200 {
        let (h, u) = (format!("h{i}"), format!("u{i}"));
        let start = Instant::now();
        s.assign(&assignment(&h, &u, "c-0", None)).expect("assign");
        took.push(start.elapsed());
    }
    let start = Instant::now();
    let users = s.users().expect("users");
    let listing = start.elapsed();
    assert_eq!(users.len(), 200);
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "swarm store, 200 new accounts: assign p50 {:.1} ms, p99 {:.1} ms; users() of 200 {:.1} ms",
        ms(took[100]),
        ms(took[197]),
        ms(listing)
    );
}

mod operator;
mod recovery;
