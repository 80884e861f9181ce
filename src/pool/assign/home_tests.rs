//! The home-volume rule of the assigner: a user with a home goes only to a container on its
//! volume (or waits); the other rules hold within that volume.

use std::collections::{HashMap, HashSet};

use super::oracle::{check, every_small_pool};
use super::tests::{a, pool_on, run};
use super::*;

/// The same with homes pinned to volumes: every split of up to three containers over two
/// volumes (container 0 on volume 0), and the requester's home on either volume, its own slot
/// (if any) anywhere, as after an eviction or a move.
#[test]
fn brute_force_homes_on_two_volumes() {
    let splits = |n: usize| (0..(1u32 << n)).filter(|m| m & 1 == 0).collect();
    let checked = every_small_pool(1..=3, splits, &[Some(0), Some(1)]);
    assert!(checked > 1_000_000, "checked {checked} cases");
}

#[test]
fn home_table() {
    use AssignError::*;
    use Decision::*;
    // Containers 0 and 1 on volume 0 (node A), 2 and 3 on volume 1 (node B), one user each.
    let two_nodes = |alive: [bool; 4]| {
        let caps: Vec<(bool, usize)> = alive.iter().map(|&a| (a, 1)).collect();
        pool_on(&caps, &[0, 0, 1, 1])
    };
    let up = two_nodes([true; 4]);
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Vec<ContainerSlot>,
        Vec<Assignment>,
        Vec<&str>,
        Option<usize>,
        _,
    )> = vec![
        (
            "evicted, free slot only on the other node: evicts on its own",
            up.clone(),
            vec![a("x", 0, 5), a("y", 1, 3), a("z", 2, 1)],
            vec![],
            Some(0),
            Ok(Evict {
                idx: 1,
                evicted_user: "y".into(),
            }),
        ),
        (
            "evicted, own node all live, free slot elsewhere: refused",
            up.clone(),
            vec![a("x", 0, 5), a("y", 1, 3)],
            vec!["x", "y"],
            Some(0),
            Err(PoolFull),
        ),
        (
            "evicted, the least recent idle user is on the other node: not that one",
            up.clone(),
            vec![a("x", 0, 5), a("y", 1, 3), a("z", 2, 1), a("w", 3, 0)],
            vec![],
            Some(0),
            Ok(Evict {
                idx: 1,
                evicted_user: "y".into(),
            }),
        ),
        (
            "free slot on its own node",
            up.clone(),
            vec![a("x", 0, 5)],
            vec![],
            Some(0),
            Ok(New { idx: 1 }),
        ),
        (
            "newcomer goes anywhere: the least loaded",
            up.clone(),
            vec![a("x", 0, 5), a("y", 1, 3)],
            vec![],
            None,
            Ok(New { idx: 2 }),
        ),
        (
            "own node's slots all failing: waits although others are free",
            two_nodes([false, false, true, true]),
            vec![a("me", 0, 5)],
            vec![],
            Some(0),
            Err(HomeUnavailable),
        ),
        (
            "own slot failing, another slot of its node alive: that one",
            two_nodes([false, true, true, true]),
            vec![a("me", 0, 5)],
            vec![],
            Some(0),
            Ok(New { idx: 1 }),
        ),
        (
            "sticky on its node",
            up.clone(),
            vec![a("me", 3, 5)],
            vec![],
            Some(1),
            Ok(Sticky { idx: 3 }),
        ),
        (
            "a home volume no container is on: waits",
            up.clone(),
            vec![],
            vec![],
            Some(7),
            Err(HomeUnavailable),
        ),
    ];
    for (name, containers, assignments, live, home, want) in cases {
        let got = run(&containers, &assignments, &live, "me", home);
        assert_eq!(got, want, "case {name:?}");
        let live = |u: &str| live.contains(&u);
        check(&containers, &assignments, &live, "me", home, &got);
    }
}

/// Users placed, evicted and placed again over two nodes, each user's home the volume of its
/// first slot: nobody is ever placed off its home, no container overfills, no live user is
/// evicted.
#[test]
fn sequential_placement_keeps_homes() {
    let containers = pool_on(
        &[(true, 2), (true, 1), (true, 1), (false, 3)],
        &[0, 0, 1, 1],
    );
    let mut held: Vec<(String, usize, i64)> = Vec::new();
    let mut homes: HashMap<String, usize> = HashMap::new();
    let live = |u: &str| u.ends_with('4');
    let mut evicted: HashSet<String> = HashSet::new();
    let (mut returned, mut refused) = (0, 0);
    for t in 0..200i64 {
        let user = format!("user{}", (t * 7) % 11);
        let home = homes.get(&user).copied();
        let view: Vec<Assignment> = held.iter().map(|(u, c, s)| a(u, *c, *s)).collect();
        let got = assign(&containers, &view, &live, &user, home);
        check(&containers, &view, &live, &user, home, &got);
        let Ok(d) = &got else {
            assert_eq!(got, Err(AssignError::PoolFull));
            refused += 1;
            continue;
        };
        let volume = containers[d.idx()].volume;
        assert_eq!(*homes.entry(user.clone()).or_insert(volume), volume);
        returned += usize::from(evicted.remove(&user));
        if let Decision::Evict { evicted_user, .. } = d {
            held.retain(|(u, _, _)| u != evicted_user);
            evicted.insert(evicted_user.clone());
        }
        held.retain(|(u, _, _)| *u != user);
        held.push((user, d.idx(), t));
        for c in &containers {
            let n = held.iter().filter(|h| h.1 == c.index).count();
            assert!(n <= c.capacity, "container {} holds {n}", c.index);
        }
    }
    // The run did bring evicted users back, and refused some.
    assert!(returned > 0 && refused > 0, "{returned} {refused}");
}
