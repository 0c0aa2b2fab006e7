//! The transparent AOT cache: compiled artifacts on disk, keyed by what was compiled and how.
//!
//! The key is BLAKE3(engine fingerprint ‖ input bytes), so a different wedge build, CPU or
//! compilation setting never sees another's entry. Entries are written durably
//! (`durable::write_atomically`), so a reader sees a whole entry or none, and a deploy that
//! was acknowledged finds its artifact after a crash; an entry damaged anyway
//! (disk error, a hand edit) fails the artifact digest check and is discarded by the loader.
//! The cache is an optimisation: failing to write it is logged, never fatal.

use std::path::{Path, PathBuf};

use crate::Fingerprint;

/// The name of a cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn new(fingerprint: Fingerprint, input: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&fingerprint.0);
        hasher.update(input);
        CacheKey(hasher.finalize().to_hex().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A directory of compiled artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/wedge`, else `$HOME/.cache/wedge`; `None` when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let from_env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        if let Some(xdg) = from_env("XDG_CACHE_HOME") {
            return Some(PathBuf::from(xdg).join("wedge"));
        }
        from_env("HOME").map(|home| PathBuf::from(home).join(".cache").join("wedge"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry's header: who compiled it, for which engine, and the payload's seal.
    pub fn meta_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.meta", key.as_str()))
    }

    /// The entry's payload: wasmtime's serialized code, alone in its file so that it can be
    /// mapped (`deserialize_file`) rather than copied into the process.
    pub fn code_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.code", key.as_str()))
    }

    /// The entry's header bytes and where its code is, if the entry is complete.
    pub fn get(&self, key: &CacheKey) -> Option<CachedEntry> {
        match std::fs::read(self.meta_path(key)) {
            Ok(meta) => Some(CachedEntry {
                meta,
                code: self.code_path(key),
            }),
            Err(error) => {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(%error, key = key.as_str(), "cannot read cache entry");
                }
                None
            }
        }
    }

    /// Stores an entry durably: the code first, then the header that makes it complete.
    /// Files are only ever replaced (rename), never changed in place, so a mapping of an
    /// older `.code` keeps seeing the bytes it was checked against.
    pub fn put(&self, key: &CacheKey, meta: &[u8], code: &[u8]) -> std::io::Result<()> {
        crate::durable::write_atomically(&self.code_path(key), code)?;
        crate::durable::write_atomically(&self.meta_path(key), meta)
    }

    pub fn discard(&self, key: &CacheKey) {
        for path in [self.meta_path(key), self.code_path(key)] {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, path = %path.display(), "cannot remove damaged cache entry");
            }
        }
    }
}

/// A complete cache entry: the header's bytes, and the path of the code it seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    pub meta: Vec<u8>,
    pub code: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_fingerprint_and_bytes() {
        let a = CacheKey::new(Fingerprint([1; 32]), b"wasm");
        assert_eq!(a, CacheKey::new(Fingerprint([1; 32]), b"wasm"));
        assert_ne!(a, CacheKey::new(Fingerprint([2; 32]), b"wasm"));
        assert_ne!(a, CacheKey::new(Fingerprint([1; 32]), b"wasn"));
    }

    #[test]
    fn put_get_discard() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path().join("nested"));
        let key = CacheKey::new(Fingerprint([1; 32]), b"x");
        assert_eq!(cache.get(&key), None);
        cache.put(&key, b"header", b"code").unwrap();
        let entry = cache.get(&key).unwrap();
        assert_eq!(entry.meta, b"header");
        assert_eq!(std::fs::read(&entry.code).unwrap(), b"code");
        cache.discard(&key);
        assert_eq!(cache.get(&key), None);
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(cache.dir()).unwrap().collect();
        assert!(leftovers.is_empty());
    }
}
