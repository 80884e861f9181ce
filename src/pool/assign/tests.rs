use super::oracle::{check, every_small_pool};
use super::*;
use std::collections::HashSet;

/// Containers each on a volume of its own.
fn pool(caps: &[(bool, usize)]) -> Vec<ContainerSlot> {
    let volumes: Vec<usize> = (0..caps.len()).collect();
    pool_on(caps, &volumes)
}

/// Containers on the given volumes (with homes pinned to nodes: a volume per node).
pub(super) fn pool_on(caps: &[(bool, usize)], volumes: &[usize]) -> Vec<ContainerSlot> {
    caps.iter()
        .zip(volumes)
        .enumerate()
        .map(|(index, (&(alive, capacity), &volume))| ContainerSlot {
            index,
            alive,
            capacity,
            volume,
        })
        .collect()
}

pub(super) fn a(user: &str, container: usize, last_seen: i64) -> Assignment<'_> {
    Assignment {
        user,
        container,
        last_seen,
    }
}

pub(super) fn run(
    containers: &[ContainerSlot],
    assignments: &[Assignment],
    live: &[&str],
    user: &str,
    home: Option<usize>,
) -> Result<Decision, AssignError> {
    let live: HashSet<&str> = live.iter().copied().collect();
    assign(containers, assignments, &|u| live.contains(u), user, home)
}

#[test]
fn table() {
    use AssignError::*;
    use Decision::*;
    let evict = |idx, u: &str| {
        Ok(Evict {
            idx,
            evicted_user: u.into(),
        })
    };
    let up3 = pool(&[(true, 2), (true, 2), (true, 2)]);
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Vec<ContainerSlot>,
        Vec<Assignment>,
        Vec<&str>,
        &str,
        _,
    )> = vec![
        ("empty pool", vec![], vec![], vec![], "me", Err(NoContainer)),
        (
            "all dead",
            pool(&[(false, 2), (false, 2)]),
            vec![],
            vec![],
            "me",
            Err(NoContainer),
        ),
        (
            "first user, lowest index",
            up3.clone(),
            vec![],
            vec![],
            "me",
            Ok(New { idx: 0 }),
        ),
        (
            "least loaded",
            up3.clone(),
            vec![a("x", 0, 1), a("y", 2, 1)],
            vec![],
            "me",
            Ok(New { idx: 1 }),
        ),
        (
            "tie goes low",
            up3.clone(),
            vec![a("x", 0, 1)],
            vec![],
            "me",
            Ok(New { idx: 1 }),
        ),
        (
            "sticky",
            up3.clone(),
            vec![a("me", 2, 1), a("x", 0, 1)],
            vec![],
            "me",
            Ok(Sticky { idx: 2 }),
        ),
        (
            "sticky when over capacity",
            pool(&[(true, 1)]),
            vec![a("x", 0, 1), a("me", 0, 1)],
            vec!["x"],
            "me",
            Ok(Sticky { idx: 0 }),
        ),
        (
            "container gone: moved",
            pool(&[(true, 2), (false, 2)]),
            vec![a("me", 1, 1)],
            vec![],
            "me",
            Ok(New { idx: 0 }),
        ),
        (
            "unknown container index: moved",
            pool(&[(true, 2)]),
            vec![a("me", 7, 1)],
            vec![],
            "me",
            Ok(New { idx: 0 }),
        ),
        (
            "dead skipped",
            pool(&[(false, 2), (true, 2)]),
            vec![],
            vec![],
            "me",
            Ok(New { idx: 1 }),
        ),
        (
            "full skipped",
            pool(&[(true, 1), (true, 2)]),
            vec![a("x", 0, 1), a("y", 1, 1)],
            vec![],
            "me",
            Ok(New { idx: 1 }),
        ),
        (
            "holders of dead containers hold no slot",
            pool(&[(true, 1), (false, 1)]),
            vec![a("x", 1, 1)],
            vec![],
            "me",
            Ok(New { idx: 0 }),
        ),
        (
            "full: evict least recent idle",
            pool(&[(true, 1), (true, 1)]),
            vec![a("x", 0, 5), a("y", 1, 3)],
            vec![],
            "me",
            evict(1, "y"),
        ),
        (
            "full: live users are not evicted",
            pool(&[(true, 1), (true, 1)]),
            vec![a("x", 0, 5), a("y", 1, 3)],
            vec!["y"],
            "me",
            evict(0, "x"),
        ),
        (
            "full: last_seen tie -> smallest name",
            pool(&[(true, 1), (true, 1)]),
            vec![a("y", 0, 3), a("x", 1, 3)],
            vec![],
            "me",
            evict(1, "x"),
        ),
        (
            "full and all live",
            pool(&[(true, 1), (true, 1)]),
            vec![a("x", 0, 5), a("y", 1, 3)],
            vec!["x", "y"],
            "me",
            Err(PoolFull),
        ),
        (
            "gone user, pool full, evicts",
            pool(&[(true, 1), (false, 1)]),
            vec![a("x", 0, 9), a("me", 1, 1)],
            vec![],
            "me",
            evict(0, "x"),
        ),
        (
            "gone user, pool full, all live",
            pool(&[(true, 1), (false, 1)]),
            vec![a("x", 0, 9), a("me", 1, 1)],
            vec!["x"],
            "me",
            Err(PoolFull),
        ),
        (
            "zero capacity",
            pool(&[(true, 0)]),
            vec![],
            vec![],
            "me",
            Err(PoolFull),
        ),
        (
            "own live session doesn't matter",
            pool(&[(true, 1)]),
            vec![a("x", 0, 1)],
            vec!["me"],
            "me",
            evict(0, "x"),
        ),
    ];
    for (name, containers, assignments, live, user, want) in cases {
        let got = run(&containers, &assignments, &live, user, None);
        assert_eq!(got, want, "case {name:?}");
        if let Ok(d) = &got {
            let live = |u: &str| live.contains(&u);
            check(&containers, &assignments, &live, user, None, &got);
            assert!(containers.iter().any(|c| c.index == d.idx() && c.alive));
        }
    }
}

#[test]
fn spread_12_users_over_3_containers_of_4() {
    let containers = pool(&[(true, 4), (true, 4), (true, 4)]);
    let names: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let mut assignments: Vec<Assignment> = Vec::new();
    for name in &names {
        let d = assign(&containers, &assignments, &|_| true, name, None).expect("room");
        assert!(matches!(d, Decision::New { .. }));
        assignments.push(a(name, d.idx(), 0));
    }
    for idx in 0..3 {
        assert_eq!(assignments.iter().filter(|x| x.container == idx).count(), 4);
    }
    // Round robin while loads are equal: 0,1,2,0,1,2,...
    let order: Vec<usize> = assignments.iter().map(|x| x.container).collect();
    assert_eq!(order, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    let full = assign(&containers, &assignments, &|_| true, "newcomer", None);
    assert_eq!(full, Err(AssignError::PoolFull));
}

/// Every combination of small pools: containers alive or dead with capacity 1 or 2, up to
/// three other users with any assignment, liveness and two last-seen values, and the
/// requester new or assigned anywhere.
#[test]
fn brute_force_small_pools() {
    let checked = every_small_pool(0..=3, |_| vec![0], &[None]);
    assert!(checked > 100_000, "checked {checked} cases");
}

/// Placing users one by one never overfills a container and never evicts a live user.
#[test]
fn sequential_placement_respects_capacity() {
    let containers = pool(&[(true, 3), (true, 2), (false, 5), (true, 1)]);
    let mut held: Vec<(String, usize, i64)> = Vec::new();
    let live = |u: &str| u.ends_with('7') || u.ends_with('3');
    for t in 0..40i64 {
        let user = format!("user{}", t % 13);
        let view: Vec<Assignment> = held.iter().map(|(u, c, s)| a(u, *c, *s)).collect();
        let got = assign(&containers, &view, &live, &user, None);
        check(&containers, &view, &live, &user, None, &got);
        match got {
            Ok(Decision::Evict { idx, evicted_user }) => {
                held.retain(|(u, _, _)| *u != evicted_user);
                held.push((user, idx, t));
            }
            Ok(Decision::New { idx }) => held.push((user, idx, t)),
            Ok(Decision::Sticky { idx }) => {
                held.iter_mut().filter(|h| h.0 == user).for_each(|h| {
                    assert_eq!(h.1, idx);
                    h.2 = t;
                });
            }
            Err(e) => assert_eq!(e, AssignError::PoolFull),
        }
        for c in &containers {
            let n = held.iter().filter(|h| h.1 == c.index).count();
            assert!(n <= c.capacity, "container {} holds {n}", c.index);
            assert!(c.alive || n == 0);
        }
    }
}
