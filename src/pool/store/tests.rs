use std::path::PathBuf;

use rusqlite::{params, Connection};

use super::behaviour::{self, assignment, seen, user};
use super::*;

/// A store file in the temp dir, removed (with its WAL files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> TempDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("termpool-store-{tag}-{}-{nanos}.db", std::process::id());
        TempDb(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl TempDb {
    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.0).expect("open")
    }
}

#[test]
fn uids_start_at_200000_and_are_never_reused() {
    let db = TempDb::new("uids");
    let (mut s, _) = behaviour::uids_start_at_the_first_and_stay(|| db.store());
    // Deleting the newest user (as an admin might) does not make its UID come back.
    s.conn
        .execute("DELETE FROM users WHERE username = 'ub'", [])
        .expect("delete");
    behaviour::a_deleted_users_uid_is_not_reused(&mut s);
}

#[test]
fn state_survives_reopen() {
    let db = TempDb::new("reopen");
    behaviour::state_survives_reopen(|| db.store());
}

#[test]
fn touch_never_moves_last_seen_back() {
    let db = TempDb::new("touch");
    behaviour::touch_never_moves_last_seen_back(|| db.store());
}

#[test]
fn eviction_and_assignment_are_one_transaction() {
    let db = TempDb::new("evict");
    behaviour::eviction_and_assignment_go_together(|| db.store());
}

/// The file keeps no home: on one engine homes are on one volume, the home is the slot held.
#[test]
fn homes_are_the_slot_held() {
    let db = TempDb::new("home");
    let mut s = db.store();
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    assert_eq!(user(&s, "ua").home.as_deref(), Some("c-0"));
    s.assign(&assignment("hb", "ub", "c-0", Some("ua")))
        .expect("b");
    assert_eq!(user(&s, "ua").home, None);
}

#[test]
fn container_names_follow_slots() {
    let db = TempDb::new("containers");
    behaviour::container_names_follow_slots(|| db.store());
}

#[test]
fn activity_is_kept_and_idle_accounts_are_listed_oldest_first() {
    let db = TempDb::new("activity");
    behaviour::activity_is_kept_and_idle_accounts_are_listed_oldest_first(|| db.store());
}

/// Permission bits of the store's file with `suffix`.
fn mode_of(db: &TempDb, suffix: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let mut p = db.0.clone().into_os_string();
    p.push(suffix);
    let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    meta.permissions().mode() & 0o777
}

#[test]
fn the_files_are_the_owners_alone() {
    let db = TempDb::new("mode");
    let mut s = SqliteStore::open(&db.0).expect("open");
    s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
    s.touch(&seen(&[("ua", 500)])).expect("touch");
    s.save_container(&ContainerRecord {
        slot: 0,
        name: "c-0".into(),
        id: "abc".into(),
    })
    .expect("container");
    // The WAL and its index exist while the connection is open.
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode_of(&db, suffix), 0o600, "store file{suffix}");
    }
}

#[test]
fn readable_files_of_an_older_version_are_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::new("oldmode");
    {
        let mut s = SqliteStore::open(&db.0).expect("open");
        s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.0.clone().into_os_string();
            p.push(suffix);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        // Reopened while the first connection still holds the WAL files.
        let again = SqliteStore::open(&db.0).expect("reopen");
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode_of(&db, suffix), 0o600, "store file{suffix}");
        }
        drop(again);
    }
    assert_eq!(mode_of(&db, ""), 0o600);
}

#[test]
fn wal_and_full_sync_are_on() {
    let db = TempDb::new("pragmas");
    let s = SqliteStore::open(&db.0).expect("open");
    let mode: String = s
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    let sync: i64 = s
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("sync");
    assert_eq!(mode.to_lowercase(), "wal");
    assert_eq!(sync, 2, "FULL");
}

#[test]
fn unwritable_path_is_refused_clearly() {
    // A path under a regular file can never be created, even by root.
    let parent = TempDb::new("notadir");
    std::fs::write(&parent.0, b"x").expect("write");
    let err = SqliteStore::open(parent.0.join("store.db"))
        .err()
        .expect("must refuse");
    assert!(matches!(err, StoreError::Unwritable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("cannot be opened for writing"),
        "{err}"
    );
}

#[test]
fn garbage_file_is_refused_as_corrupt() {
    let db = TempDb::new("garbage");
    std::fs::write(&db.0, vec![0x55u8; 8192]).expect("write");
    let err = SqliteStore::open(&db.0).err().expect("must refuse");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn uid_counter_exhaustion_is_an_error() {
    let db = TempDb::new("exhaust");
    let mut s = SqliteStore::open(&db.0).expect("open");
    s.conn
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'next_uid'",
            params![i64::from(LAST_UID) + 1],
        )
        .expect("set");
    let err = s.assign(&assignment("ha", "ua", "c-0", None));
    assert!(matches!(err, Err(StoreError::UidsExhausted(_))), "{err:?}");
    assert!(s.users().expect("users").is_empty(), "nothing half-written");
}

/// The schema and rows of the last release before versioning, written with its own SQL (as its
/// `SqliteStore::open` left them: `user_version` 0, WAL).
const UNVERSIONED_SCHEMA: &str = "
PRAGMA journal_mode=WAL;
CREATE TABLE users (
    identity_hash TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    uid           INTEGER NOT NULL UNIQUE,
    container     TEXT,
    last_seen     INTEGER NOT NULL
);
CREATE TABLE containers (
    slot INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    id   TEXT NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO users VALUES ('ha', 'ua', 200000, 'c-0', 1000);
INSERT INTO users VALUES ('hb', 'ub', 200001, NULL, 3000);
INSERT INTO containers VALUES (0, 'c-0', 'abc');
INSERT INTO meta VALUES ('next_uid', 200002);
INSERT INTO meta VALUES ('opened_at', 5);
";

#[test]
fn a_store_of_the_unversioned_release_is_upgraded_in_place() {
    let db = TempDb::new("upgrade");
    Connection::open(&db.0)
        .and_then(|c| c.execute_batch(UNVERSIONED_SCHEMA))
        .expect("old store");
    let mut s = SqliteStore::open(&db.0).expect("upgrade");
    let version: i64 = s
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let mut users = s.users().expect("users");
    users.sort_by_key(|u| u.uid);
    let kept: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u.username.as_str(),
                u.uid,
                u.container.as_deref(),
                u.last_seen,
            )
        })
        .collect();
    assert_eq!(
        kept,
        vec![
            ("ua", 200_000, Some("c-0"), 1000),
            ("ub", 200_001, None, 3000)
        ]
    );
    // Their last placement is the last activity known.
    assert_eq!(users[0].last_activity, 1000);
    let cs = s.containers().expect("containers");
    assert_eq!((cs[0].name.as_str(), cs[0].id.as_str()), ("c-0", "abc"));
    // The UID counter went on where it was.
    let c = s.assign(&assignment("hc", "uc", "c-0", None)).expect("c");
    assert_eq!(c.uid, 200_002);
    // The new tables work, and a second open changes nothing.
    s.add_block(BlockKind::Address, "192.0.2.1", "spam")
        .expect("block");
    drop(s);
    let s = SqliteStore::open(&db.0).expect("reopen");
    assert_eq!(s.users().expect("users").len(), 3);
    assert_eq!(s.blocks().expect("blocks").len(), 1);
}

#[test]
fn a_store_of_a_newer_release_is_refused_and_left_untouched() {
    let db = TempDb::new("newer");
    Connection::open(&db.0)
        .and_then(|c| {
            c.execute_batch(UNVERSIONED_SCHEMA)?;
            c.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))?;
            // Everything into the main file, so that its bytes say all.
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;")
        })
        .expect("newer store");
    let before = std::fs::read(&db.0).expect("read");
    let err = SqliteStore::open(&db.0).err().expect("must refuse");
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("newer termpool") && msg.contains("left untouched"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&db.0).expect("read"),
        before,
        "not one byte changed"
    );
}

#[test]
fn a_failed_migration_leaves_the_old_version() {
    let db = TempDb::new("failed-migration");
    Connection::open(&db.0)
        .and_then(|c| {
            c.execute_batch(UNVERSIONED_SCHEMA)?;
            // Migration 2 creates this table: its failure must roll back migration 1's work too.
            c.execute_batch("CREATE TABLE blocks (x INTEGER)")
        })
        .expect("store");
    assert!(SqliteStore::open(&db.0).is_err());
    let c = Connection::open(&db.0).expect("open");
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 0);
    let has_activity = c.prepare("SELECT last_activity FROM users").is_ok();
    assert!(!has_activity, "the column was rolled back");
}

#[test]
fn blocks_are_kept_replaced_and_removed() {
    let db = TempDb::new("blocks");
    behaviour::blocks_are_kept_replaced_and_removed(|| db.store());
}

#[test]
fn an_access_key_names_one_identity() {
    let db = TempDb::new("keys");
    let mut s = behaviour::an_access_key_names_one_identity(|| db.store());
    assert!(s.remove_access_key("anon-2").expect("remove"));
    assert_eq!(s.identity_for_key("k2").expect("gone"), None);
}
