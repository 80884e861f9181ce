//! How many uploads each user has under way. An upload holds a process in the user's container
//! (a `docker exec`, or a process of the agent) for as long as its body takes to come, so a
//! stranger holding many open would crowd out the container's other users: they are capped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The uploads under way, per identity.
pub struct Uploads {
    max: usize,
    under_way: Mutex<HashMap<String, usize>>,
}

/// One upload under way; ends when dropped.
pub struct UploadTicket {
    uploads: Arc<Uploads>,
    identity: String,
}

impl Uploads {
    /// At most `max` uploads at once per identity.
    pub fn new(max: usize) -> Arc<Uploads> {
        Arc::new(Uploads {
            max,
            under_way: Mutex::new(HashMap::new()),
        })
    }

    /// The most uploads at once per identity.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A ticket for one more upload of `identity`; `None` when it has `max` under way.
    pub fn begin(self: &Arc<Self>, identity: &str) -> Option<UploadTicket> {
        let mut under_way = self.lock();
        let n = under_way.entry(identity.to_owned()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(UploadTicket {
            uploads: self.clone(),
            identity: identity.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // A counter map stays consistent even if a holder panicked.
        self.under_way.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for UploadTicket {
    fn drop(&mut self) {
        let mut under_way = self.uploads.lock();
        if let Some(n) = under_way.get_mut(&self.identity) {
            *n -= 1;
            if *n == 0 {
                under_way.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_has_its_own_cap_and_tickets_give_back_their_place() {
        let uploads = Uploads::new(2);
        let a1 = uploads.begin("a").expect("first");
        let _a2 = uploads.begin("a").expect("second");
        assert!(uploads.begin("a").is_none(), "a third at once");
        let _b = uploads.begin("b").expect("another identity");
        drop(a1);
        assert_eq!(uploads.lock().get("a"), Some(&1));
        let _a3 = uploads.begin("a").expect("a place was given back");
        drop((_a2, _a3, _b));
        assert!(uploads.lock().is_empty(), "no identity is kept once done");
    }
}
