//! A local content-addressed store of pulled blobs and manifests: `DIR/sha256/<hex>`.
//!
//! A blob enters only after its digest and size were checked (it is streamed into a
//! temporary file beside its final name and renamed into place), so a damaged or
//! mismatched download never leaves anything behind. A blob is checked again each time it
//! is read, so a file damaged on disk is dropped and fetched again, never used.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::error::OciError;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// A store in `dir` (created when the first blob is written).
    pub fn new(dir: impl Into<PathBuf>) -> BlobStore {
        BlobStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` is (or would be) kept.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.algorithm().name()).join(digest.hex())
    }

    /// The blob's bytes, if the store has it intact. A copy that no longer matches its
    /// digest is removed and reported as absent.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, OciError> {
        let path = self.path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.error("read", &path, source)),
        };
        if digest.matches(&bytes) {
            return Ok(Some(bytes));
        }
        tracing::warn!(%digest, path = %path.display(), "a stored blob was damaged; it is removed and fetched again");
        self.remove_damaged(&path)?;
        Ok(None)
    }

    /// Whether the store has the blob intact (hashing it; see [`BlobStore::read`]).
    pub fn contains(&self, digest: &Digest) -> Result<bool, OciError> {
        let path = self.path(digest);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(self.error("read", &path, source)),
        };
        let mut hasher = Hasher::new(digest.algorithm());
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(|source| self.error("read", &path, source))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        if hasher.finish() == *digest {
            return Ok(true);
        }
        self.remove_damaged(&path)?;
        Ok(false)
    }

    /// Stores bytes already in memory, after checking them against `digest`.
    pub fn put(&self, digest: &Digest, bytes: &[u8], what: &str) -> Result<(), OciError> {
        let mut writer = self.writer(digest, bytes.len() as u64, what)?;
        writer.write(bytes)?;
        writer.commit()
    }

    /// A writer for one incoming blob of `size` bytes with `digest`; nothing is visible in
    /// the store until [`BlobWriter::commit`] has checked both.
    pub fn writer(&self, digest: &Digest, size: u64, what: &str) -> Result<BlobWriter, OciError> {
        let dir = self.dir.join(digest.algorithm().name());
        std::fs::create_dir_all(&dir).map_err(|source| self.error("create", &dir, source))?;
        let temp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&dir)
            .map_err(|source| self.error("write", &dir, source))?;
        Ok(BlobWriter {
            store: self.clone(),
            digest: digest.clone(),
            declared: size,
            what: what.to_string(),
            temp: std::io::BufWriter::with_capacity(1 << 16, temp),
            hasher: Hasher::new(digest.algorithm()),
            written: 0,
        })
    }

    fn remove_damaged(&self, path: &Path) -> Result<(), OciError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.error("remove a damaged blob from", path, source)),
        }
    }

    fn error(&self, action: &'static str, path: &Path, source: std::io::Error) -> OciError {
        OciError::Store {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One blob being written: hashed and counted as it passes.
pub struct BlobWriter {
    store: BlobStore,
    digest: Digest,
    declared: u64,
    what: String,
    temp: std::io::BufWriter<tempfile::NamedTempFile>,
    hasher: Hasher,
    written: u64,
}

impl BlobWriter {
    /// Appends bytes; more than the declared size is refused at once.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OciError> {
        self.written += bytes.len() as u64;
        if self.written > self.declared {
            return Err(OciError::SizeMismatch {
                what: self.what.clone(),
                declared: self.declared,
                received: format!("more than {}", self.declared),
            });
        }
        self.hasher.update(bytes);
        let dir = self.store.dir.clone();
        self.temp
            .write_all(bytes)
            .map_err(|source| self.store.error("write", &dir, source))
    }

    /// Checks size and digest, then moves the blob into place. On any mismatch the
    /// temporary file is deleted: the store is as it was.
    pub fn commit(self) -> Result<(), OciError> {
        if self.written != self.declared {
            return Err(OciError::SizeMismatch {
                what: self.what,
                declared: self.declared,
                received: self.written.to_string(),
            });
        }
        let actual = self.hasher.finish();
        if actual != self.digest {
            return Err(OciError::DigestMismatch {
                what: self.what,
                expected: self.digest,
                actual,
            });
        }
        let dest = self.store.path(&self.digest);
        let temp = self
            .temp
            .into_inner()
            .map_err(|error| self.store.error("write", &dest, error.into_error()))?;
        temp.as_file()
            .sync_all()
            .map_err(|source| self.store.error("write", &dest, source))?;
        temp.persist(&dest)
            .map_err(|error| self.store.error("write", &dest, error.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_matches() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = Digest::sha256(b"hello");
        store.put(&digest, b"hello", "a blob").unwrap();
        assert_eq!(store.read(&digest).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(store.contains(&digest).unwrap());

        let other = Digest::sha256(b"other");
        let error = store.put(&other, b"hellx", "the blob").unwrap_err();
        assert!(matches!(error, OciError::DigestMismatch { .. }), "{error}");
        let mut writer = store.writer(&other, 5, "the blob").unwrap();
        let error = writer.write(b"toolong").unwrap_err();
        assert!(matches!(error, OciError::SizeMismatch { .. }), "{error}");
        drop(writer);
        let writer = store.writer(&other, 5, "the blob").unwrap();
        let error = writer.commit().unwrap_err();
        assert!(error.to_string().contains("sent 0"), "{error}");
        assert!(store.read(&other).unwrap().is_none());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(digest.hex())]);
    }

    #[test]
    fn a_damaged_copy_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = Digest::sha256(b"hello");
        store.put(&digest, b"hello", "a blob").unwrap();
        std::fs::write(store.path(&digest), b"jello").unwrap();
        assert!(store.read(&digest).unwrap().is_none());
        assert!(!store.path(&digest).exists());
    }
}
