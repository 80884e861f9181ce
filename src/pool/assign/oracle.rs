//! The assigner's rules restated as "for all" conditions on a result, independent of how
//! `assign` finds it, and the enumeration of small pools that checks every case against them.

use std::collections::HashSet;

use super::tests::a;
use super::*;

/// The rules restated as "for all" conditions on a result, independent of how `assign` finds
/// it. With a `home` volume, "alive" reads "alive and on that volume" for where the user may go
/// (the holders still count wherever they are).
pub(super) fn check(
    containers: &[ContainerSlot],
    assignments: &[Assignment],
    live: &dyn Fn(&str) -> bool,
    user: &str,
    home: Option<usize>,
    got: &Result<Decision, AssignError>,
) {
    let ctx = || format!("{containers:?} {assignments:?} user={user} home={home:?} -> {got:?}");
    let is_alive = |i: usize| containers.iter().any(|c| c.index == i && c.alive);
    let on_home = |c: &ContainerSlot| home.is_none_or(|v| c.volume == v);
    let is_open = |i: usize| {
        containers
            .iter()
            .any(|c| c.index == i && c.alive && on_home(c))
    };
    if let Ok(d) = got {
        // The home-node property: never a container off the user's home volume.
        assert!(is_open(d.idx()), "placed off its home: {}", ctx());
    }
    let holders: Vec<&Assignment> = assignments
        .iter()
        .filter(|x| x.user != user && is_alive(x.container))
        .collect();
    let load = |i: usize| holders.iter().filter(|x| x.container == i).count();
    let free: Vec<&ContainerSlot> = containers
        .iter()
        .filter(|c| is_open(c.index) && load(c.index) < c.capacity)
        .collect();
    let idle: Vec<&&Assignment> = holders
        .iter()
        .filter(|x| !live(x.user) && is_open(x.container))
        .collect();
    let own = assignments.iter().find(|x| x.user == user);

    if !containers.iter().any(|c| c.alive) {
        assert_eq!(got, &Err(AssignError::NoContainer), "{}", ctx());
    } else if !containers.iter().any(|c| is_open(c.index)) {
        assert_eq!(got, &Err(AssignError::HomeUnavailable), "{}", ctx());
    } else if let Some(own) = own.filter(|o| is_open(o.container)) {
        assert_eq!(
            got,
            &Ok(Decision::Sticky { idx: own.container }),
            "{}",
            ctx()
        );
    } else if !free.is_empty() {
        let Ok(Decision::New { idx }) = got else {
            panic!("expected New: {}", ctx())
        };
        assert!(free.iter().any(|c| c.index == *idx), "{}", ctx());
        for c in &free {
            assert!((load(c.index), c.index) >= (load(*idx), *idx), "{}", ctx());
        }
    } else if !idle.is_empty() {
        let Ok(Decision::Evict { idx, evicted_user }) = got else {
            panic!("expected Evict: {}", ctx())
        };
        let victim = holders
            .iter()
            .find(|x| x.user == evicted_user)
            .unwrap_or_else(|| panic!("victim must hold a slot: {}", ctx()));
        assert_eq!(victim.container, *idx, "{}", ctx());
        assert!(!live(evicted_user), "never evict a live user: {}", ctx());
        assert!(evicted_user != user, "{}", ctx());
        for other in &idle {
            assert!(victim.last_seen <= other.last_seen, "{}", ctx());
        }
    } else {
        assert_eq!(got, &Err(AssignError::PoolFull), "{}", ctx());
    }
}

/// `n` containers: container i alive if bit i of `alive`, capacity 1 or 2 by bit i of `cap`,
/// on volume 0 or 1 by bit i of `vol`.
pub(super) fn masked_pool(n: usize, alive: u32, cap: u32, vol: u32) -> Vec<ContainerSlot> {
    (0..n)
        .map(|i| ContainerSlot {
            index: i,
            alive: alive & (1 << i) != 0,
            capacity: 1 + (cap >> i & 1) as usize,
            volume: (vol >> i & 1) as usize,
        })
        .collect()
}

/// Checks [`enumerate_users`] with three other users over every pool of `sizes` containers, each
/// alive or dead and of capacity 1 or 2, on each volume split `volumes(n)` gives, for each of
/// `homes`; returns the cases checked.
pub(super) fn every_small_pool(
    sizes: std::ops::RangeInclusive<usize>,
    volumes: impl Fn(usize) -> Vec<u32>,
    homes: &[Option<usize>],
) -> usize {
    const OTHERS: [&str; 3] = ["a", "b", "c"];
    let mut checked = 0;
    for n in sizes {
        for alive_mask in 0..(1u32 << n) {
            for cap_mask in 0..(1u32 << n) {
                for vol_mask in volumes(n) {
                    let containers = masked_pool(n, alive_mask, cap_mask, vol_mask);
                    for &home in homes {
                        checked += enumerate_users(&containers, &OTHERS, home);
                    }
                }
            }
        }
    }
    checked
}

/// Checks every assignment of `others` (none or one of the containers, live or not, seen at
/// 0 or 1) for a requester that is new or assigned to any container.
pub(super) fn enumerate_users(
    containers: &[ContainerSlot],
    others: &[&str],
    home: Option<usize>,
) -> usize {
    let choices = containers.len() + 1; // unassigned or container i
    let per_user = choices * 4; // x live x last_seen
    let combos = per_user.pow(others.len() as u32);
    let mut checked = 0;
    for code in 0..combos {
        let mut assignments = Vec::new();
        let mut live = HashSet::new();
        let mut c = code;
        for user in others {
            let (slot, flags) = (c % choices, (c / choices) % 4);
            c /= per_user;
            if slot > 0 {
                assignments.push(a(user, slot - 1, (flags & 1) as i64));
            }
            if flags & 2 != 0 {
                live.insert(*user);
            }
        }
        for own in 0..choices {
            let mut with_me = assignments.clone();
            if own > 0 {
                with_me.push(a("me", own - 1, 0));
            }
            let is_live = |u: &str| live.contains(u);
            let got = assign(containers, &with_me, &is_live, "me", home);
            check(containers, &with_me, &is_live, "me", home, &got);
            checked += 1;
        }
    }
    checked
}
