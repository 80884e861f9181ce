//! The workspace volume's marker (Swarm mode): one line per slot that keeps its homes on the
//! volume, so that the server can tell a slot's own volume from an empty or foreign one.

use serde::{Deserialize, Serialize};

/// The marker's file name under [`crate::WORKSPACE`].
pub const VOLUME_MARKER: &str = ".termpool-volume";
/// Longest pool label a marker carries (Docker object names are short).
pub const MAX_MARK_POOL: usize = 64;
/// What every line of the marker starts with.
const PREFIX: &str = "termpool-volume";

/// MARK's body, and one line of the marker: slot `slot` of pool `pool` keeps its homes here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeMark {
    pub pool: String,
    pub slot: u32,
}

impl VolumeMark {
    pub fn new(pool: &str, slot: u32) -> Self {
        VolumeMark {
            pool: pool.into(),
            slot,
        }
    }

    /// Whether the pool label can go into a line and be read back: 1 to [`MAX_MARK_POOL`]
    /// letters, digits, `-`, `_` or `.`.
    pub fn is_valid(&self) -> bool {
        (1..=MAX_MARK_POOL).contains(&self.pool.len())
            && self
                .pool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    }

    /// The marker's line for this slot (no newline).
    pub fn line(&self) -> String {
        format!("{PREFIX} pool={} slot={}", self.pool, self.slot)
    }

    /// One line read back; `None` when it is not a line [`VolumeMark::line`] writes.
    pub fn parse(line: &str) -> Option<VolumeMark> {
        let rest = line.strip_prefix(PREFIX)?.strip_prefix(" pool=")?;
        let (pool, slot) = rest.split_once(" slot=")?;
        let digits_only = !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit());
        let mark = VolumeMark {
            pool: pool.to_string(),
            slot: slot.parse().ok().filter(|_| digits_only)?,
        };
        mark.is_valid().then_some(mark)
    }
}

/// Every slot a marker's content names, in order; `Err` with the first line that is not a mark
/// (blank lines are skipped).
pub fn parse_marker(content: &str) -> Result<Vec<VolumeMark>, String> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| VolumeMark::parse(l).ok_or_else(|| l.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(pool: &str, slot: u32) -> VolumeMark {
        VolumeMark::new(pool, slot)
    }

    #[test]
    fn lines_round_trip_and_a_marker_lists_its_slots() {
        let a = mark("termpool", 0);
        assert_eq!(a.line(), "termpool-volume pool=termpool slot=0");
        assert_eq!(VolumeMark::parse(&a.line()), Some(a.clone()));
        let b = mark("swarmtest-x.y_z", 4_000_000_000);
        let content = format!("{}\n\n{}\n", a.line(), b.line());
        assert_eq!(parse_marker(&content), Ok(vec![a, b]));
        assert_eq!(parse_marker(""), Ok(vec![]));
    }

    #[test]
    fn anything_else_is_no_mark() {
        for bad in [
            "termpool-volume pool= slot=0",
            "termpool-volume pool=a slot=",
            "termpool-volume pool=a slot=-1",
            "termpool-volume pool=a slot=+1",
            "termpool-volume pool=a slot=1 ",
            "termpool-volume pool=a b slot=1",
            "termpool-volume pool=a/b slot=1",
            "termpool-volume  pool=a slot=1",
            "termpool-volume pool=a slot=99999999999",
            "pool=a slot=1",
            "garbage",
        ] {
            assert_eq!(VolumeMark::parse(bad), None, "{bad:?}");
        }
        let long = mark(&"p".repeat(MAX_MARK_POOL + 1), 1);
        assert!(!long.is_valid());
        assert_eq!(VolumeMark::parse(&long.line()), None);
        let content = format!("{}\nsomething else\n", mark("p", 1).line());
        assert_eq!(parse_marker(&content), Err("something else".into()));
        assert!(!mark("a\nb", 1).is_valid());
    }
}
