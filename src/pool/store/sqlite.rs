//! The SQLite implementation of [`Store`]: opening the file (private, WAL, fully synced, at this
//! release's schema) and the pool's queries.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};

use super::schema;
use super::{
    unix_now, ContainerRecord, NewAssignment, Store, StoreError, Touches, UserRecord, FIRST_UID,
    LAST_UID,
};

/// The columns [`user_row`] reads, in its order.
const USER_COLUMNS: &str = "identity_hash, username, uid, container, last_seen, last_activity";

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    pub(super) conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`. Fails with a clear error when the file
    /// cannot be written or the disk is full: the pool never runs on a store it cannot persist to.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        make_private(&path).map_err(|e| io_error(&path, e))?;
        let conn = Connection::open(&path).map_err(|e| open_error(&path, e))?;
        schema::refuse_newer(&conn, &path).map_err(|e| match e {
            StoreError::Sqlite { source, .. } => open_error(&path, source),
            other => other,
        })?;
        let mut store = SqliteStore { conn, path };
        store.init().map_err(|e| match e {
            StoreError::Sqlite { source, .. } => open_error(&store.path, source),
            other => other,
        })?;
        Ok(store)
    }

    /// Pragmas, migrations, the UID counter, and a real write to prove the file is writable, in
    /// one transaction.
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
        schema::migrate(&tx, &self.path)?;
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
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users"))
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
                "UPDATE users SET container = ?2, last_seen = ?3, \
                 last_activity = MAX(last_activity, ?3) WHERE identity_hash = ?1",
                params![a.identity_hash, a.container, a.last_seen],
            )
            .map_err(sql(&format!("assigning {}", a.username)))?;
        if updated == 0 {
            let uid = allocate_uid(&tx)?;
            tx.execute(
                "INSERT INTO users(identity_hash, username, uid, container, last_seen, \
                 last_activity) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![a.identity_hash, a.username, uid, a.container, a.last_seen],
            )
            .map_err(sql(&format!("creating user {}", a.username)))?;
        }
        let rec = tx
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE identity_hash = ?1"),
                params![a.identity_hash],
                user_row,
            )
            .map_err(sql(&format!("reading back {}", a.username)))?;
        tx.commit()
            .map_err(sql(&format!("committing the assignment of {}", a.username)))?;
        Ok(rec)
    }

    fn touch(&mut self, t: &Touches) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql("beginning a touch"))?;
        for (column, times) in [("last_seen", &t.seen), ("last_activity", &t.active)] {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "UPDATE users SET {column} = MAX({column}, ?2) WHERE username = ?1"
                ))
                .map_err(sql("preparing a touch"))?;
            for (user, at) in times {
                stmt.execute(params![user, at])
                    .map_err(sql(&format!("touching {user}")))?;
            }
        }
        tx.commit().map_err(sql("committing last-seen times"))
    }

    fn accounts_idle_since(&self, t: i64) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE last_activity < ?1 \
                 ORDER BY last_activity"
            ))
            .map_err(sql("listing idle accounts"))?;
        let rows = stmt
            .query_map(params![t], user_row)
            .map_err(sql("listing idle accounts"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading a user row"))
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

/// A user row. The file keeps no home column: on one engine every slot's homes are on one
/// volume (homes are not pinned, see `State::pinned`), so the home is the slot, if any.
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let container: Option<String> = r.get(3)?;
    Ok(UserRecord {
        identity_hash: r.get(0)?,
        username: r.get(1)?,
        uid: r.get(2)?,
        home: container.clone(),
        container,
        last_seen: r.get(4)?,
        last_activity: r.get(5)?,
    })
}

/// Maps an SQLite error to a store error with `context`; disk-full gets its own variant.
pub(super) fn sql(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
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
