//! The store's schema as numbered migrations, recorded in SQLite's `user_version`: a store is
//! brought up to this release's version in one transaction, and one from a newer release refused.

use std::path::Path;

use rusqlite::{Connection, Transaction};

use super::sqlite::sql;
use super::StoreError;

/// `MIGRATIONS[i]` takes a store from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the schema of the releases before versioning (which left `user_version` at 0), so
    // `IF NOT EXISTS`: on their stores it finds every table in place.
    "
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
    ",
    // 1 -> 2: activity for idle reaping across restarts (a placement was the last known activity),
    // the operator's blocks, and access keys.
    "
    ALTER TABLE users ADD COLUMN last_activity INTEGER NOT NULL DEFAULT 0;
    UPDATE users SET last_activity = last_seen;
    CREATE INDEX users_by_activity ON users(last_activity);
    CREATE TABLE blocks (
        kind       TEXT NOT NULL CHECK (kind IN ('identity', 'address')),
        value      TEXT NOT NULL,
        reason     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (kind, value)
    );
    CREATE TABLE access_keys (
        identity_hash TEXT PRIMARY KEY,
        identity      TEXT NOT NULL,
        key_hash      TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL
    );
    ",
];

/// The schema version this release writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The version recorded in the store.
fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Refuses a store of a newer release before anything is written to it.
pub(super) fn refuse_newer(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = version(conn).map_err(sql("reading the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Runs the migrations the store lacks, in order, inside `tx` (the caller commits).
pub(super) fn migrate(tx: &Transaction<'_>, path: &Path) -> Result<(), StoreError> {
    // Read again inside the transaction: another server may have upgraded the file meanwhile.
    refuse_newer(tx, path)?;
    let from = version(tx).map_err(sql("reading the schema version"))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        tx.execute_batch(step)
            .map_err(sql(&format!("migrating the store to version {}", i + 1)))?;
    }
    if from < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(sql("recording the schema version"))?;
        log::info!(
            "store {}: schema upgraded from version {from} to {SCHEMA_VERSION}",
            path.display()
        );
    }
    Ok(())
}
