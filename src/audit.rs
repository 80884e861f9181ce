//! The audit trail: one `key=value` line under the log target `audit` per session opened and
//! ended, per refusal and per operator action. Never a secret: identities appear as a hash prefix.

use std::fmt::{self, Write};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pool::identity_hash;

/// The log target of every audit line (`RUST_LOG=warn,audit=info` keeps them alone).
pub const TARGET: &str = "audit";

/// Hex digits of the identity's SHA-256 an audit line shows: enough to tell users apart and to
/// match `/admin/users`, never enough to be the identity.
const IDENTITY_DIGITS: usize = 16;

/// One audit line being built.
pub struct Line(String);

impl Line {
    /// A line for `event`, stamped with the time (unix seconds, milliseconds after the dot).
    pub fn new(event: &str) -> Line {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = Line(String::with_capacity(256));
        line.0.push_str("event=");
        line.0.push_str(event);
        line.field(
            "time",
            format_args!("{}.{:03}", now.as_secs(), now.subsec_millis()),
        )
    }

    /// Adds `key=value`; a value with spaces, quotes, `=` or control characters is quoted.
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Line {
        let value = value.to_string();
        let plain = !value.is_empty()
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
        let _ = if plain {
            write!(self.0, " {key}={value}")
        } else {
            write!(self.0, " {key}={value:?}")
        };
        self
    }

    /// Adds the short hash of an identity.
    pub fn identity(self, identity: Option<&str>) -> Line {
        match identity {
            Some(id) => {
                let hash = identity_hash(id);
                self.field("identity", &hash[..IDENTITY_DIGITS])
            }
            None => self.field("identity", "-"),
        }
    }

    /// Adds the client's address, `-` when unknown.
    pub fn client(self, client: Option<IpAddr>) -> Line {
        match client {
            Some(ip) => self.field("client", ip),
            None => self.field("client", "-"),
        }
    }

    /// Adds a duration in seconds with milliseconds.
    pub fn duration(self, key: &str, d: Duration) -> Line {
        self.field(key, format_args!("{:.3}", d.as_secs_f64()))
    }

    /// Writes the line to the log.
    pub fn emit(self) {
        log::info!(target: TARGET, "{}", self.0);
    }

    /// The line as it would be written.
    pub fn text(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_when_they_could_break_the_line() {
        let line = Line::new("refused")
            .field("status", 429)
            .field("reason", "too many \"sessions\"\nforged=1")
            .field("empty", "")
            .identity(Some("alice"))
            .client(None);
        let text = line.text();
        assert!(text.starts_with("event=refused time="), "{text}");
        assert!(text.contains(" status=429 "), "{text}");
        assert!(
            text.contains(r#" reason="too many \"sessions\"\nforged=1" "#),
            "{text}"
        );
        assert!(text.contains(r#" empty="""#), "{text}");
        assert!(!text.contains('\n') && !text.contains("alice"), "{text}");
        let hash = identity_hash("alice");
        assert!(
            text.contains(&format!(" identity={} ", &hash[..16])),
            "{text}"
        );
        assert!(text.ends_with(" client=-"), "{text}");
    }
}
