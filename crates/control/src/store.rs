//! The function store: what a node has acknowledged, under its data dir.
//!
//! ```text
//! DIR/lock                 held (flock) while a server uses DIR
//! DIR/wedge.db             SQLite, WAL, synchronous=FULL: functions and their versions
//! DIR/blobs/<blake3>.wasm  the uploaded bytes, content-addressed (stored once)
//! ```
//!
//! Order of writes for a deploy: the blob (temp, fsync, rename, fsync dir), then one SQLite
//! transaction for the version and the function's current version. A crash before the commit
//! leaves at most an unreferenced blob, which `open` removes; after it, the deploy is whole.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::config::FunctionConfig;

/// Where `wedge serve` keeps its state without `--data`: `$XDG_DATA_HOME/wedge`, else
/// `~/.local/share/wedge`. The clients look for the API token there too.
pub fn default_data_dir() -> Option<PathBuf> {
    let from_env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(xdg) = from_env("XDG_DATA_HOME") {
        return Some(PathBuf::from(xdg).join("wedge"));
    }
    from_env("HOME").map(|home| PathBuf::from(home).join(".local/share/wedge"))
}

/// One version of a deployed function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: u64,
    /// BLAKE3 of the Wasm bytes, hex: the blob's name.
    pub digest: String,
    /// `http` or `wagi`, as detected at deploy.
    pub kind: String,
    pub size: u64,
    pub config: FunctionConfig,
    pub created_ms: u64,
}

/// A deployed function and the version it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFunction {
    pub name: String,
    pub current: StoredVersion,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data dir `{}` is in use by another wedge server (it holds `{}`); stop it, or give this one its own --data DIR",
        dir.display(), lock.display()
    )]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error("cannot use the data dir `{}`: {reason}", dir.display())]
    Dir { dir: PathBuf, reason: String },
    #[error("the function database `{}` failed: {reason}", path.display())]
    Database { path: PathBuf, reason: String },
    #[error("cannot write the blob `{}`: {reason}", path.display())]
    WriteBlob { path: PathBuf, reason: String },
    #[error(
        "the blob `{}` of an acknowledged version is missing or damaged ({reason}); restore the data dir from a backup or redeploy the function",
        path.display()
    )]
    ReadBlob { path: PathBuf, reason: String },
}

/// The content-addressed blobs: plain files, safe to read from any thread.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Stores `bytes` under their digest, durably; the same bytes are stored once.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.read(digest).is_ok() {
            return Ok(());
        }
        let path = self.path(digest);
        wedge_engine::durable::write_atomically(&path, bytes).map_err(|error| {
            StoreError::WriteBlob {
                path,
                reason: error.to_string(),
            }
        })
    }

    /// The bytes of a stored blob, checked against their digest.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).map_err(|error| StoreError::ReadBlob {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let actual = blake3::hash(&bytes).to_hex();
        if actual.as_str() != digest {
            return Err(StoreError::ReadBlob {
                path,
                reason: format!("its content hashes to {actual}"),
            });
        }
        Ok(bytes)
    }
}

pub struct FunctionStore {
    dir: PathBuf,
    blobs: Blobs,
    db_path: PathBuf,
    db: Connection,
    /// Held for the store's lifetime: one server per data dir.
    _lock: File,
}

impl FunctionStore {
    /// Opens (creating if needed) the store in `dir`, locks it, and removes what a crash may
    /// have left half-done: temporary files and blobs no version refers to.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir_error = |error: std::io::Error| StoreError::Dir {
            dir: dir.to_path_buf(),
            reason: error.to_string(),
        };
        std::fs::create_dir_all(dir.join("blobs")).map_err(dir_error)?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(dir_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse {
                    dir: dir.to_path_buf(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(dir_error(error)),
        }
        let db_path = dir.join("wedge.db");
        let db = Connection::open(&db_path).map_err(|e| db_error(&db_path, e))?;
        let store = Self {
            dir: dir.to_path_buf(),
            blobs: Blobs {
                dir: dir.join("blobs"),
            },
            db_path,
            db,
            _lock: lock,
        };
        store.migrate()?;
        // Nothing else writes here while we hold the lock, so every temp file is a leftover.
        wedge_engine::durable::remove_stale_temps(&store.blobs_dir(), Duration::ZERO)
            .map_err(dir_error)?;
        store.remove_unreferenced_blobs()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blobs_dir(&self) -> PathBuf {
        self.blobs.dir.clone()
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn migrate(&self) -> Result<(), StoreError> {
        // WAL with synchronous=FULL: a committed transaction survives a crash or power loss.
        self.db
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 CREATE TABLE IF NOT EXISTS functions (
                     name TEXT PRIMARY KEY,
                     current_version INTEGER NOT NULL,
                     created_ms INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS versions (
                     function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                     version INTEGER NOT NULL,
                     digest TEXT NOT NULL,
                     kind TEXT NOT NULL,
                     size INTEGER NOT NULL,
                     config TEXT NOT NULL,
                     created_ms INTEGER NOT NULL,
                     PRIMARY KEY (function, version)
                 );
                 CREATE INDEX IF NOT EXISTS versions_digest ON versions(digest);",
            )
            .map_err(|e| self.db_error(e))
    }

    fn db_error(&self, error: rusqlite::Error) -> StoreError {
        db_error(&self.db_path, error)
    }

    /// Records a new version of `name` (creating the function if it is new) and makes it
    /// current, in one transaction. Returns the version number and whether the function
    /// is new.
    pub fn add_version(
        &mut self,
        name: &str,
        digest: &str,
        kind: &str,
        size: u64,
        config: &FunctionConfig,
        now_ms: u64,
    ) -> Result<(u64, bool), StoreError> {
        let config_json = serde_json::to_string(config).map_err(|e| StoreError::Database {
            path: self.db_path.clone(),
            reason: e.to_string(),
        })?;
        let db_path = self.db_path.clone();
        let fail = |e| db_error(&db_path, e);
        let tx = self.db.transaction().map_err(fail)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT MAX(version) FROM versions WHERE function = ?1",
                params![name],
                |row| row.get(0),
            )
            .map_err(fail)?;
        let is_new = tx
            .query_row(
                "SELECT 1 FROM functions WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()
            .map_err(fail)?
            .is_none();
        let version = existing.unwrap_or(0) + 1;
        if is_new {
            tx.execute(
                "INSERT INTO functions (name, current_version, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?3)",
                params![name, version, now_ms as i64],
            )
            .map_err(fail)?;
        } else {
            tx.execute(
                "UPDATE functions SET current_version = ?2, updated_ms = ?3 WHERE name = ?1",
                params![name, version, now_ms as i64],
            )
            .map_err(fail)?;
        }
        tx.execute(
            "INSERT INTO versions (function, version, digest, kind, size, config, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                name,
                version,
                digest,
                kind,
                size as i64,
                config_json,
                now_ms as i64
            ],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok((version as u64, is_new))
    }

    /// Makes `version` the one `name` serves (a rollback).
    pub fn set_current(&mut self, name: &str, version: u64, now_ms: u64) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE functions SET current_version = ?2, updated_ms = ?3 WHERE name = ?1",
                params![name, version as i64, now_ms as i64],
            )
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Forgets `name` and all its versions, then removes blobs nothing refers to any more.
    /// Returns whether it existed.
    pub fn delete(&mut self, name: &str) -> Result<bool, StoreError> {
        let deleted = self
            .db
            .execute("DELETE FROM functions WHERE name = ?1", params![name])
            .map_err(|e| self.db_error(e))?;
        if deleted > 0 {
            self.remove_unreferenced_blobs()?;
        }
        Ok(deleted > 0)
    }

    pub fn get(&self, name: &str) -> Result<Option<StoredFunction>, StoreError> {
        Ok(self
            .query_functions("WHERE f.name = ?1", params![name])?
            .into_iter()
            .next())
    }

    /// Every function, by name.
    pub fn list(&self) -> Result<Vec<StoredFunction>, StoreError> {
        self.query_functions("", params![])
    }

    /// Every version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<StoredVersion>, StoreError> {
        let mut statement = self
            .db
            .prepare(
                "SELECT version, digest, kind, size, config, created_ms FROM versions
                 WHERE function = ?1 ORDER BY version",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = statement
            .query_map(params![name], version_from_row)
            .map_err(|e| self.db_error(e))?;
        rows.map(|row| row.map_err(|e| self.db_error(e)).and_then(|v| v))
            .collect()
    }

    fn query_functions(
        &self,
        filter: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredFunction>, StoreError> {
        let sql = format!(
            "SELECT v.version, v.digest, v.kind, v.size, v.config, v.created_ms,
                    f.name, f.created_ms, f.updated_ms
             FROM functions f JOIN versions v
               ON v.function = f.name AND v.version = f.current_version
             {filter} ORDER BY f.name"
        );
        let mut statement = self.db.prepare(&sql).map_err(|e| self.db_error(e))?;
        let rows = statement
            .query_map(params, |row| {
                let current = version_from_row(row)?;
                Ok(current.map(|current| StoredFunction {
                    name: row.get(6).unwrap_or_default(),
                    current,
                    created_ms: row.get::<_, i64>(7).unwrap_or_default() as u64,
                    updated_ms: row.get::<_, i64>(8).unwrap_or_default() as u64,
                }))
            })
            .map_err(|e| self.db_error(e))?;
        rows.map(|row| row.map_err(|e| self.db_error(e)).and_then(|f| f))
            .collect()
    }

    fn remove_unreferenced_blobs(&self) -> Result<(), StoreError> {
        let mut statement = self
            .db
            .prepare("SELECT DISTINCT digest FROM versions")
            .map_err(|e| self.db_error(e))?;
        let referenced: std::collections::HashSet<String> = statement
            .query_map(params![], |row| row.get(0))
            .map_err(|e| self.db_error(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.db_error(e))?;
        let dir_error = |error: std::io::Error| StoreError::Dir {
            dir: self.dir.clone(),
            reason: error.to_string(),
        };
        let mut removed = false;
        for entry in std::fs::read_dir(self.blobs_dir()).map_err(dir_error)? {
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(digest) = name.strip_suffix(".wasm")
                && !referenced.contains(digest)
            {
                std::fs::remove_file(entry.path()).map_err(dir_error)?;
                removed = true;
            }
        }
        if removed {
            wedge_engine::durable::sync_dir(&self.blobs_dir()).map_err(dir_error)?;
        }
        Ok(())
    }
}

fn db_error(path: &Path, error: rusqlite::Error) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Columns 0..6: version, digest, kind, size, config, created_ms. The config is JSON that
/// wedge wrote itself; failing to parse it is reported, not unwrapped.
fn version_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<StoredVersion, StoreError>> {
    let config_json: String = row.get(4)?;
    let config = match serde_json::from_str(&config_json) {
        Ok(config) => config,
        Err(error) => {
            return Ok(Err(StoreError::Database {
                path: PathBuf::from("wedge.db"),
                reason: format!("a stored config is not valid: {error}"),
            }));
        }
    };
    Ok(Ok(StoredVersion {
        version: row.get::<_, i64>(0)? as u64,
        digest: row.get(1)?,
        kind: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        config,
        created_ms: row.get::<_, i64>(5)? as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(route: &str) -> FunctionConfig {
        FunctionConfig {
            route: Some(route.into()),
            ..FunctionConfig::default()
        }
    }

    #[test]
    fn versions_survive_reopening_and_blobs_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let digest = blake3::hash(b"wasm").to_hex().to_string();
        {
            let mut store = FunctionStore::open(dir.path()).unwrap();
            store.blobs().put(&digest, b"wasm").unwrap();
            store.blobs().put(&digest, b"wasm").unwrap();
            assert_eq!(
                store
                    .add_version("a", &digest, "http", 4, &config("/a"), 1)
                    .unwrap(),
                (1, true)
            );
            assert_eq!(
                store
                    .add_version("a", &digest, "http", 4, &config("/a2"), 2)
                    .unwrap(),
                (2, false)
            );
            store.set_current("a", 1, 3).unwrap();
        }
        let store = FunctionStore::open(dir.path()).unwrap();
        let a = store.get("a").unwrap().unwrap();
        assert_eq!(a.current.version, 1);
        assert_eq!(a.current.config.route.as_deref(), Some("/a"));
        assert_eq!((a.created_ms, a.updated_ms), (1, 3));
        assert_eq!(store.versions("a").unwrap().len(), 2);
        assert_eq!(store.blobs().read(&digest).unwrap(), b"wasm");
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_second_server_cannot_open_the_same_dir() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FunctionStore::open(dir.path()).unwrap();
        let error = FunctionStore::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("in use by another wedge server"), "{error}");
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let kept = blake3::hash(b"kept").to_hex().to_string();
        {
            let mut store = FunctionStore::open(dir.path()).unwrap();
            store.blobs().put(&kept, b"kept").unwrap();
            store
                .add_version("a", &kept, "wagi", 4, &config("/a"), 1)
                .unwrap();
            // A blob written before a crash that came before its commit, and a temp file.
            store.blobs().put("0000", b"orphan").unwrap();
            std::fs::write(dir.path().join("blobs/.tmp-1-1"), b"half").unwrap();
        }
        let store = FunctionStore::open(dir.path()).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![format!("{kept}.wasm")]);
        assert!(store.get("a").unwrap().is_some());
    }

    #[test]
    fn delete_removes_versions_and_unshared_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FunctionStore::open(dir.path()).unwrap();
        let shared = blake3::hash(b"s").to_hex().to_string();
        let own = blake3::hash(b"o").to_hex().to_string();
        store.blobs().put(&shared, b"s").unwrap();
        store.blobs().put(&own, b"o").unwrap();
        store
            .add_version("a", &shared, "http", 1, &config("/a"), 1)
            .unwrap();
        store
            .add_version("a", &own, "http", 1, &config("/a"), 2)
            .unwrap();
        store
            .add_version("b", &shared, "http", 1, &config("/b"), 3)
            .unwrap();
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap());
        assert!(store.get("a").unwrap().is_none());
        assert!(store.versions("a").unwrap().is_empty());
        assert!(store.blobs().path(&shared).exists());
        assert!(!store.blobs().path(&own).exists());
    }

    #[test]
    fn a_damaged_blob_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = FunctionStore::open(dir.path()).unwrap();
        let digest = blake3::hash(b"good").to_hex().to_string();
        store.blobs().put(&digest, b"good").unwrap();
        std::fs::write(store.blobs().path(&digest), b"evil").unwrap();
        let error = store.blobs().read(&digest).unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
    }
}
