//! Persistence of users, UIDs and containers across restarts: a small synchronous [`Store`] trait
//! and its SQLite implementation ([`SqliteStore`]).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};

/// The first UID the store hands out: far above any host or image account.
pub const FIRST_UID: u32 = 200_000;
/// UIDs stop here (well below the kernel's 2^32-2 and Docker's limits).
pub const LAST_UID: u32 = 2_000_000_000;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Hex SHA-256 of the identity (the raw identity is never stored).
    pub identity_hash: String,
    pub username: String,
    pub uid: u32,
    /// Name of the container holding the user's slot, if any.
    pub container: Option<String>,
    /// Unix seconds of the last placement.
    pub last_seen: i64,
}

/// A container of the pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub slot: usize,
    pub name: String,
    /// Docker id of the container last seen in that slot.
    pub id: String,
}

/// One placement to persist atomically: `username` (created with a new UID when unknown) now holds
/// a slot in `container`; `evicted`, if any, loses its slot.
#[derive(Debug, Clone, Copy)]
pub struct NewAssignment<'a> {
    pub identity_hash: &'a str,
    pub username: &'a str,
    pub container: &'a str,
    pub last_seen: i64,
    pub evicted: Option<&'a str>,
}

/// Errors of the store. Opening refuses loudly rather than run without durable state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store file {path} cannot be opened for writing: {reason}")]
    Unwritable { path: PathBuf, reason: String },
    #[error("disk full while writing the store ({context})")]
    DiskFull { context: String },
    #[error("store file {path} is not a usable database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no UIDs left (next would be {0})")]
    UidsExhausted(i64),
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Where the pool keeps users, UIDs and containers.
pub trait Store: Send {
    /// Every known user.
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Every known container, by slot.
    fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError>;
    /// Persists a placement (and its eviction) in one transaction; returns the user's record,
    /// with a freshly allocated UID if the user was unknown.
    fn assign(&mut self, a: &NewAssignment<'_>) -> Result<UserRecord, StoreError>;
    /// Updates last-seen times of known users (unknown names are ignored).
    fn touch(&mut self, seen: &[(String, i64)]) -> Result<(), StoreError>;
    /// Records the container now in a slot.
    fn save_container(&mut self, c: &ContainerRecord) -> Result<(), StoreError>;
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    identity_hash TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    uid           INTEGER NOT NULL UNIQUE,
    container     TEXT,
    last_seen     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    slot INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    id   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`. Fails with a clear error when the file
    /// cannot be written or the disk is full: the pool never runs on a store it cannot persist to.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        make_private(&path).map_err(|e| io_error(&path, e))?;
        let conn = Connection::open(&path).map_err(|e| open_error(&path, e))?;
        let mut store = SqliteStore { conn, path };
        store.init().map_err(|e| match e {
            StoreError::Sqlite { source, .. } => open_error(&store.path, source),
            other => other,
        })?;
        Ok(store)
    }

    /// Pragmas, schema, the UID counter, and a real write to prove the file is writable.
    fn init(&mut self) -> Result<(), StoreError> {
        let ctx = |what: &str| format!("initialising {}: {what}", self.path.display());
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql(&ctx("journal_mode")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unwritable {
                path: self.path.clone(),
                reason: format!("WAL journal refused (got {mode})"),
            });
        }
        self.conn
            .execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(sql(&ctx("pragmas")))?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql(&ctx("busy_timeout")))?;
        let tx = self.conn.transaction().map_err(sql(&ctx("begin")))?;
        tx.execute_batch(SCHEMA).map_err(sql(&ctx("schema")))?;
        tx.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('next_uid', ?1)",
            params![FIRST_UID],
        )
        .map_err(sql(&ctx("uid counter")))?;
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('opened_at', ?1)",
            params![unix_now()],
        )
        .map_err(sql(&ctx("write check")))?;
        tx.commit().map_err(sql(&ctx("commit")))
    }

    /// Makes sure no UID below `first` is ever handed out (the counter only ever moves up, so no
    /// UID is reused). Lets several pools on one host, whose processes share per-UID limits, use
    /// ranges of their own.
    pub fn raise_uid_floor(&mut self, first: u32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE meta SET value = max(value, ?1) WHERE key = 'next_uid'",
                params![first],
            )
            .map_err(sql("raising the UID floor"))?;
        Ok(())
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SqliteStore {
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT identity_hash, username, uid, container, last_seen FROM users")
            .map_err(sql("listing users"))?;
        let rows = stmt.query_map([], user_row).map_err(sql("listing users"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading a user row"))
    }

    fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT slot, name, id FROM containers ORDER BY slot")
            .map_err(sql("listing containers"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ContainerRecord {
                    slot: r.get::<_, i64>(0)? as usize,
                    name: r.get(1)?,
                    id: r.get(2)?,
                })
            })
            .map_err(sql("listing containers"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading a container row"))
    }

    fn assign(&mut self, a: &NewAssignment<'_>) -> Result<UserRecord, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("beginning an assignment"))?;
        if let Some(evicted) = a.evicted {
            tx.execute(
                "UPDATE users SET container = NULL WHERE username = ?1",
                params![evicted],
            )
            .map_err(sql(&format!("evicting {evicted}")))?;
        }
        let updated = tx
            .execute(
                "UPDATE users SET container = ?2, last_seen = ?3 WHERE identity_hash = ?1",
                params![a.identity_hash, a.container, a.last_seen],
            )
            .map_err(sql(&format!("assigning {}", a.username)))?;
        if updated == 0 {
            let uid = allocate_uid(&tx)?;
            tx.execute(
                "INSERT INTO users(identity_hash, username, uid, container, last_seen) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.identity_hash, a.username, uid, a.container, a.last_seen],
            )
            .map_err(sql(&format!("creating user {}", a.username)))?;
        }
        let rec = tx
            .query_row(
                "SELECT identity_hash, username, uid, container, last_seen FROM users \
                 WHERE identity_hash = ?1",
                params![a.identity_hash],
                user_row,
            )
            .map_err(sql(&format!("reading back {}", a.username)))?;
        tx.commit()
            .map_err(sql(&format!("committing the assignment of {}", a.username)))?;
        Ok(rec)
    }

    fn touch(&mut self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql("beginning a touch"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE users SET last_seen = MAX(last_seen, ?2) WHERE username = ?1",
                )
                .map_err(sql("preparing a touch"))?;
            for (user, at) in seen {
                stmt.execute(params![user, at])
                    .map_err(sql(&format!("touching {user}")))?;
            }
        }
        tx.commit().map_err(sql("committing last-seen times"))
    }

    fn save_container(&mut self, c: &ContainerRecord) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("beginning a container update"))?;
        // A renamed pool may leave another slot with this name: the name follows the slot.
        tx.execute(
            "DELETE FROM containers WHERE name = ?1 AND slot != ?2",
            params![c.name, c.slot as i64],
        )
        .map_err(sql(&format!("saving container {}", c.name)))?;
        tx.execute(
            "INSERT INTO containers(slot, name, id) VALUES (?1, ?2, ?3) \
             ON CONFLICT(slot) DO UPDATE SET name = excluded.name, id = excluded.id",
            params![c.slot as i64, c.name, c.id],
        )
        .map_err(sql(&format!("saving container {}", c.name)))?;
        tx.commit()
            .map_err(sql(&format!("committing container {}", c.name)))
    }
}

/// Creates the database file with mode 0600 if it is missing (whatever the umask), and takes
/// group and other access away from it and its `-wal` and `-shm` files if a version before this
/// one left them readable. SQLite creates `-wal` and `-shm` with the main file's mode, so they are
/// 0600 from then on too.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        // An existing store is opened, never emptied.
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

/// Classifies an I/O error met while preparing `path`.
fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return StoreError::DiskFull {
            context: format!("creating {}", path.display()),
        };
    }
    StoreError::Unwritable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Takes the next UID from the counter (never reused, never `max()+1`).
fn allocate_uid(tx: &Transaction<'_>) -> Result<u32, StoreError> {
    let next: i64 = tx
        .query_row("SELECT value FROM meta WHERE key = 'next_uid'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("reading the UID counter"))?
        .unwrap_or(i64::from(FIRST_UID));
    let uid = u32::try_from(next)
        .ok()
        .filter(|u| (FIRST_UID..=LAST_UID).contains(u))
        .ok_or(StoreError::UidsExhausted(next))?;
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('next_uid', ?1)",
        params![next + 1],
    )
    .map_err(sql("advancing the UID counter"))?;
    Ok(uid)
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        identity_hash: r.get(0)?,
        username: r.get(1)?,
        uid: r.get(2)?,
        container: r.get(3)?,
        last_seen: r.get(4)?,
    })
}

/// Maps an SQLite error to a store error with `context`; disk-full gets its own variant.
fn sql(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull {
            context: context.to_string(),
        },
        _ => StoreError::Sqlite {
            context: context.to_string(),
            source: e,
        },
    }
}

/// Classifies an error met while opening `path`.
fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let reason = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull {
            context: format!("opening {}", path.display()),
        },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        // A full disk often shows as an I/O error on the WAL index, not as SQLITE_FULL.
        Some(ErrorCode::SystemIoFailure) => StoreError::Unwritable {
            path: path.to_path_buf(),
            reason: format!("{reason} (is the disk full?)"),
        },
        _ => StoreError::Unwritable {
            path: path.to_path_buf(),
            reason,
        },
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
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

    fn assignment<'a>(
        id: &'a str,
        user: &'a str,
        container: &'a str,
        evicted: Option<&'a str>,
    ) -> NewAssignment<'a> {
        NewAssignment {
            identity_hash: id,
            username: user,
            container,
            last_seen: 100,
            evicted,
        }
    }

    #[test]
    fn uids_start_at_200000_and_are_never_reused() {
        let db = TempDb::new("uids");
        let mut s = SqliteStore::open(&db.0).expect("open");
        let a = s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
        let b = s.assign(&assignment("hb", "ub", "c-1", None)).expect("b");
        assert_eq!((a.uid, b.uid), (FIRST_UID, FIRST_UID + 1));
        // Re-assigning a known user keeps its UID.
        let a2 = s.assign(&assignment("ha", "ua", "c-1", None)).expect("a2");
        assert_eq!(a2.uid, a.uid);
        assert_eq!(a2.container.as_deref(), Some("c-1"));
        // Deleting the newest user (as an admin might) does not make its UID come back.
        s.conn
            .execute("DELETE FROM users WHERE username = 'ub'", [])
            .expect("delete");
        let c = s.assign(&assignment("hc", "uc", "c-0", None)).expect("c");
        assert_eq!(c.uid, FIRST_UID + 2);
    }

    #[test]
    fn state_survives_reopen() {
        let db = TempDb::new("reopen");
        {
            let mut s = SqliteStore::open(&db.0).expect("open");
            s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
            s.save_container(&ContainerRecord {
                slot: 0,
                name: "c-0".into(),
                id: "abc".into(),
            })
            .expect("container");
            s.touch(&[("ua".into(), 500), ("nobody".into(), 9)])
                .expect("touch");
        }
        let mut s = SqliteStore::open(&db.0).expect("reopen");
        let users = s.users().expect("users");
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].last_seen, 500);
        assert_eq!(users[0].container.as_deref(), Some("c-0"));
        let cs = s.containers().expect("containers");
        assert_eq!(
            cs,
            vec![ContainerRecord {
                slot: 0,
                name: "c-0".into(),
                id: "abc".into()
            }]
        );
        let b = s.assign(&assignment("hb", "ub", "c-0", None)).expect("b");
        assert_eq!(b.uid, FIRST_UID + 1, "counter persisted");
    }

    #[test]
    fn touch_never_moves_last_seen_back() {
        let db = TempDb::new("touch");
        let mut s = SqliteStore::open(&db.0).expect("open");
        s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
        s.touch(&[("ua".into(), 50)]).expect("touch");
        assert_eq!(s.users().expect("users")[0].last_seen, 100);
    }

    #[test]
    fn eviction_and_assignment_are_one_transaction() {
        let db = TempDb::new("evict");
        let mut s = SqliteStore::open(&db.0).expect("open");
        let a = s.assign(&assignment("ha", "ua", "c-0", None)).expect("a");
        let b = s
            .assign(&assignment("hb", "ub", "c-0", Some("ua")))
            .expect("b");
        assert_eq!(b.container.as_deref(), Some("c-0"));
        let users = s.users().expect("users");
        let ua = users.iter().find(|u| u.username == "ua").expect("ua kept");
        assert_eq!(ua.container, None, "slot dropped");
        assert_eq!(ua.uid, a.uid, "account and UID kept");
        // A failing assignment (username clash) rolls the eviction back too.
        s.assign(&assignment("hc", "uc", "c-1", None)).expect("c");
        let err = s.assign(&assignment("hx", "ub", "c-1", Some("uc")));
        assert!(err.is_err(), "duplicate username must fail");
        let uc = s
            .users()
            .expect("users")
            .into_iter()
            .find(|u| u.username == "uc");
        assert_eq!(uc.and_then(|u| u.container).as_deref(), Some("c-1"));
    }

    #[test]
    fn container_names_follow_slots() {
        let db = TempDb::new("containers");
        let mut s = SqliteStore::open(&db.0).expect("open");
        let rec = |slot, id: &str| ContainerRecord {
            slot,
            name: format!("c-{slot}"),
            id: id.into(),
        };
        s.save_container(&rec(0, "a")).expect("0");
        s.save_container(&rec(1, "b")).expect("1");
        s.save_container(&rec(0, "c")).expect("0 replaced");
        let cs = s.containers().expect("list");
        assert_eq!(cs, vec![rec(0, "c"), rec(1, "b")]);
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
        s.touch(&[("ua".into(), 500)]).expect("touch");
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
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
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
}
