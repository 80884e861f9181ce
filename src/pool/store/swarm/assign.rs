//! A placement with its eviction as record writes in a crash-safe order: the newcomer's record
//! first, marked with whom it evicts; then the evicted user's; then the mark is dropped.

use super::api::{failed, Write};
use super::records::{account_name, Account, Snapshot, LABEL_IDENTITY, LABEL_STORE};
use super::{raced, SwarmStore, ATTEMPTS};
use crate::pool::store::{NewAssignment, StoreError, UserRecord, FIRST_UID, LAST_UID};

/// UIDs tried past a taken one before re-reading the records.
const UID_TRIES: i64 = 32;

impl SwarmStore {
    /// [`super::Store::assign`] on the Swarm's records. A crash before the first write leaves the
    /// old placement whole; after it, opening the store (or the next placement) rolls the
    /// eviction forward, so exactly one of the two users holds the slot either way.
    pub(super) fn assign_records(
        &mut self,
        a: &NewAssignment<'_>,
    ) -> Result<UserRecord, StoreError> {
        for _ in 0..ATTEMPTS {
            let snap = self.snapshot()?;
            if snap.accounts.iter().any(|x| x.evicts.is_some()) {
                // A placement an error or a crash left half-done: finished first.
                self.resolve_evictions(&snap)?;
                continue;
            }
            if let Some((rec, evicting)) = self.take_slot(&snap, a)? {
                if evicting {
                    self.finish_eviction(&rec.username)?;
                }
                return Ok(rec);
            }
        }
        Err(raced(&format!("assigning {}", a.username)))
    }

    /// The first write of a placement: the newcomer's record, holding the slot and naming the
    /// user it evicts (and whether it does). `None` if another writer changed the records
    /// meanwhile.
    pub(super) fn take_slot(
        &self,
        snap: &Snapshot,
        a: &NewAssignment<'_>,
    ) -> Result<Option<(UserRecord, bool)>, StoreError> {
        let evicts = a
            .evicted
            .filter(|e| *e != a.username)
            .and_then(|e| snap.account_by_name(e))
            .filter(|x| x.user.container.as_deref() == Some(a.container))
            .map(|x| x.user.username.as_str());
        let Some(account) = snap.account_by_identity(a.identity_hash) else {
            if snap.account_by_name(a.username).is_some() {
                return Err(failed(
                    &format!("assigning {}", a.username),
                    "that account name belongs to another identity".into(),
                ));
            }
            let created = self.create_account(snap, a, evicts)?;
            return Ok(created.map(|u| (u, evicts.is_some())));
        };
        let mut user = self.with_pending(account.user.clone());
        user.container = Some(a.container.to_string());
        user.home = Some(a.container.to_string());
        user.last_seen = a.last_seen;
        user.last_activity = user.last_activity.max(a.last_seen);
        let labels = Account::labels(&self.pool, &user, evicts);
        Ok(match self.api.update_labels(&account.config, labels)? {
            Write::Done => Some((user, evicts.is_some())),
            Write::Conflict => None,
        })
    }

    /// A new account's record under the next free UID: Swarm refuses a second config of one
    /// name, so two servers racing never hand out one UID twice.
    fn create_account(
        &self,
        snap: &Snapshot,
        a: &NewAssignment<'_>,
        evicts: Option<&str>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let highest = snap.accounts.iter().map(|x| i64::from(x.user.uid)).max();
        let floor = snap.meta.as_ref().map_or(0, |m| m.next_uid);
        let first = floor
            .max(highest.map_or(0, |h| h + 1))
            .max(i64::from(FIRST_UID));
        for next in first..first + UID_TRIES {
            let uid = u32::try_from(next)
                .ok()
                .filter(|u| (FIRST_UID..=LAST_UID).contains(u))
                .ok_or(StoreError::UidsExhausted(next))?;
            let user = UserRecord {
                identity_hash: a.identity_hash.to_string(),
                username: a.username.to_string(),
                uid,
                container: Some(a.container.to_string()),
                home: Some(a.container.to_string()),
                last_seen: a.last_seen,
                last_activity: a.last_seen,
            };
            let labels = Account::labels(&self.pool, &user, evicts);
            let name = account_name(&self.pool, uid);
            if self.api.create(&name, labels, &Account::data(&user))? == Write::Done {
                // The config's name already guards the UID; the mark only keeps a removed
                // account's UID from coming back, so failing to move it is not fatal.
                if let Err(e) = self.raise_next_uid(snap.meta.as_ref(), next + 1) {
                    log::warn!("store {}: UID high-water mark not moved: {e}", self.pool);
                }
                if self.older_account_exists(a.identity_hash, uid)? {
                    // Another server made this user an account meanwhile: the lowest UID is
                    // the one, ours goes (its UID is not handed out again).
                    self.api.delete(&name)?;
                    return Ok(None);
                }
                return Ok(Some(user));
            }
        }
        Ok(None)
    }

    /// Whether the identity has an account of a lower UID than `uid`.
    fn older_account_exists(&self, identity_hash: &str, uid: u32) -> Result<bool, StoreError> {
        let labels = vec![
            format!("{LABEL_STORE}={}", self.pool),
            format!("{LABEL_IDENTITY}={identity_hash}"),
        ];
        let snap = Snapshot::parse(&self.pool, self.api.list(labels)?)?;
        Ok(snap.accounts.iter().any(|x| x.user.uid < uid))
    }

    /// Finishes every placement whose eviction is not yet recorded on the evicted side.
    pub(super) fn resolve_evictions(&self, snap: &Snapshot) -> Result<(), StoreError> {
        for holder in snap.accounts.iter().filter(|x| x.evicts.is_some()) {
            log::info!(
                "store {}: finishing the half-done placement of {}",
                self.pool,
                holder.user.username
            );
            self.finish_eviction(&holder.user.username)?;
        }
        Ok(())
    }

    /// The second and third writes of a placement: the evicted user loses the slot (if still
    /// in the newcomer's container) but keeps its home, then the newcomer's mark is dropped.
    fn finish_eviction(&self, holder: &str) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let snap = self.snapshot()?;
            let Some(h) = snap.account_by_name(holder) else {
                return Ok(());
            };
            let Some(evicted) = h.evicts.as_deref() else {
                return Ok(());
            };
            if let Some(x) = snap.account_by_name(evicted) {
                if x.user.container.is_some() && x.user.container == h.user.container {
                    let mut user = x.user.clone();
                    user.container = None;
                    let labels = Account::labels(&self.pool, &user, x.evicts.as_deref());
                    if self.api.update_labels(&x.config, labels)? == Write::Conflict {
                        continue;
                    }
                }
            }
            let labels = Account::labels(&self.pool, &h.user, None);
            if self.api.update_labels(&h.config, labels)? == Write::Done {
                return Ok(());
            }
        }
        Err(raced(&format!("finishing the placement of {holder}")))
    }
}
