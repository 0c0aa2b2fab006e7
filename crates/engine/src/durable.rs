//! Writing a file so that after a crash (or power loss) it is either whole or absent:
//! a temporary file in the same directory, written and fsynced, renamed into place, then the
//! directory fsynced so the rename itself is on disk. Used for the AOT cache and the
//! control plane's blobs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Temporary files start with this; `remove_stale_temps` recognises them.
const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `dest` (in `dest`'s directory, created if needed) atomically and durably.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = TempFile::create_in(dir)?;
    temp.file.write_all(bytes)?;
    temp.file.sync_all()?;
    std::fs::rename(&temp.path, dest)?;
    temp.persisted = true;
    sync_dir(dir)
}

/// Makes a directory's entries (a rename, a removal) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes temporary files left in `dir` by a process that died mid-write, if they are
/// older than `older_than` (a live writer's are young).
pub fn remove_stale_temps(dir: &Path, older_than: Duration) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let age = entry
            .metadata()?
            .modified()?
            .elapsed()
            .unwrap_or(Duration::ZERO);
        if age >= older_than {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

struct TempFile {
    file: std::fs::File,
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create_in(dir: &Path) -> std::io::Result<Self> {
        // Unique per process and call; `create_new` refuses to reuse a leftover name.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            file,
            path,
            persisted: false,
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_cleans_up_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/file.bin");
        write_atomically(&dest, b"one").unwrap();
        write_atomically(&dest, b"two").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        std::fs::write(dir.path().join("sub/.tmp-1-1"), b"half").unwrap();
        assert_eq!(
            remove_stale_temps(&dir.path().join("sub"), Duration::from_secs(3600)).unwrap(),
            0
        );
        assert_eq!(
            remove_stale_temps(&dir.path().join("sub"), Duration::ZERO).unwrap(),
            1
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.bin")]);
        assert_eq!(
            remove_stale_temps(&dir.path().join("missing"), Duration::ZERO).unwrap(),
            0
        );
    }
}
