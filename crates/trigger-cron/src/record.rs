//! The last firing of each `catch_up = "last"` trigger, kept in DATA/triggers/cron.db, so a
//! node that was down knows what it missed. SQLite in WAL mode with `synchronous=FULL`: a
//! firing recorded before its call survives a crash or a power loss.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create the directory {}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cron record {}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// (function, trigger index).
pub type TriggerKey = (String, usize);

pub struct FiringRecord {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl FiringRecord {
    /// Opens (or creates) `dir/cron.db`.
    pub fn open(dir: &Path) -> Result<Self, RecordError> {
        std::fs::create_dir_all(dir).map_err(|source| RecordError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("cron.db");
        let database = |source| RecordError::Database {
            path: path.clone(),
            source,
        };
        let connection = Connection::open(&path).map_err(database)?;
        connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(database)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(database)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS last_firing (
                     function TEXT NOT NULL,
                     trigger INTEGER NOT NULL,
                     scheduled_at INTEGER NOT NULL,
                     PRIMARY KEY (function, trigger)
                 ) WITHOUT ROWID;",
            )
            .map_err(database)?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // The connection holds no state of ours between statements.
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, source: rusqlite::Error) -> RecordError {
        RecordError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// The scheduled time of the last recorded firing of `key`.
    pub fn last(&self, key: &TriggerKey) -> Result<Option<Timestamp>, RecordError> {
        let seconds: Option<i64> = self
            .connection()
            .query_row(
                "SELECT scheduled_at FROM last_firing WHERE function = ?1 AND trigger = ?2",
                params![key.0, key.1 as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        Ok(seconds.and_then(|s| Timestamp::from_second(s).ok()))
    }

    /// Records that `key` fired for `scheduled_at` (unless a later time is recorded already:
    /// writes of two firings may finish out of order); durable when it returns.
    pub fn set(&self, key: &TriggerKey, scheduled_at: Timestamp) -> Result<(), RecordError> {
        self.connection()
            .execute(
                "INSERT INTO last_firing (function, trigger, scheduled_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (function, trigger)
                 DO UPDATE SET scheduled_at = MAX(scheduled_at, excluded.scheduled_at)",
                params![key.0, key.1 as i64, scheduled_at.as_second()],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Forgets every trigger not in `keys` (a removed function, a trigger that no longer
    /// catches up), so that one added again later does not run a firing from long ago.
    pub fn retain(&self, keys: &BTreeSet<TriggerKey>) -> Result<(), RecordError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.error(e))?;
        let stored: Vec<TriggerKey> = {
            let mut statement = transaction
                .prepare("SELECT function, trigger FROM last_firing")
                .map_err(|e| self.error(e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as usize))
                })
                .map_err(|e| self.error(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.error(e))?
        };
        for key in stored.iter().filter(|key| !keys.contains(*key)) {
            transaction
                .execute(
                    "DELETE FROM last_firing WHERE function = ?1 AND trigger = ?2",
                    params![key.0, key.1 as i64],
                )
                .map_err(|e| self.error(e))?;
        }
        transaction.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_survives_reopening_and_removed_triggers_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let triggers = dir.path().join("triggers");
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let job = ("job".to_string(), 0);
        let other = ("other".to_string(), 2);
        {
            let record = FiringRecord::open(&triggers).unwrap();
            assert_eq!(record.last(&job).unwrap(), None);
            record.set(&job, at).unwrap();
            record.set(&other, at).unwrap();
            let later = Timestamp::from_second(1_800_000_060).unwrap();
            record.set(&job, later).unwrap();
            // A write that finishes late does not move the record back.
            record.set(&job, at).unwrap();
        }
        let record = FiringRecord::open(&triggers).unwrap();
        assert_eq!(
            record.last(&job).unwrap(),
            Some(Timestamp::from_second(1_800_000_060).unwrap())
        );
        record.retain(&BTreeSet::from([job.clone()])).unwrap();
        assert_eq!(record.last(&other).unwrap(), None);
        assert!(record.last(&job).unwrap().is_some());
        let mode: String = record
            .connection()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = record
            .connection()
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn an_unusable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let error = FiringRecord::open(&file.join("triggers"))
            .err()
            .expect("a file is no directory");
        assert!(error.to_string().contains("a-file"), "{error}");
    }
}
