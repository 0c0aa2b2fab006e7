//! From bytes to a runnable program: detect the format, then compile, load from the cache, or
//! load a `.cwasm`. The format is always decided by the bytes, never by the file name.

use crate::WedgeEngine;
use crate::artifact::{self, ArtifactError, ArtifactHeader, ArtifactKind, PayloadSeal};
use crate::cache::{ArtifactCache, CacheKey, CachedEntry};

/// The two kinds of WebAssembly program wedge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    /// A core module (WASI preview 1 and plain modules).
    Module,
    /// A component (WASI 0.2).
    Component,
}

impl std::fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProgramKind::Module => "core module",
            ProgramKind::Component => "component",
        })
    }
}

impl From<ArtifactKind> for ProgramKind {
    fn from(kind: ArtifactKind) -> Self {
        match kind {
            ArtifactKind::Module => ProgramKind::Module,
            ArtifactKind::Component => ProgramKind::Component,
        }
    }
}

impl From<ProgramKind> for ArtifactKind {
    fn from(kind: ProgramKind) -> Self {
        match kind {
            ProgramKind::Module => ArtifactKind::Module,
            ProgramKind::Component => ArtifactKind::Component,
        }
    }
}

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFormat {
    /// A WebAssembly binary.
    Binary(ProgramKind),
    /// WebAssembly text (`.wat`).
    Text,
    /// A wedge AOT artifact.
    Artifact,
}

/// A compiled program, ready to instantiate.
#[derive(Clone)]
pub enum Program {
    Module(wasmtime::Module),
    Component(wasmtime::component::Component),
}

impl Program {
    pub fn kind(&self) -> ProgramKind {
        match self {
            Program::Module(_) => ProgramKind::Module,
            Program::Component(_) => ProgramKind::Component,
        }
    }
}

/// Where a loaded program's code came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled now (and stored in the cache, when there is one).
    Compiled,
    /// Loaded from the AOT cache without compiling.
    Cached,
    /// A cache entry was damaged: it was discarded and the program recompiled.
    Rebuilt { reason: String },
    /// Loaded from a `.cwasm` artifact given by the user.
    Artifact,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "it is not WebAssembly: {description}. A WebAssembly binary starts with the bytes 00 61 73 6d (\"\\0asm\"); WebAssembly text starts with `(module` or `(component`"
    )]
    NotWasm { description: String },
    #[error(
        "it is a WebAssembly binary of an unsupported version (header bytes {header}): wedge runs core modules (version 1) and components (layer 1)"
    )]
    UnsupportedVersion { header: String },
    #[error("it is not valid WebAssembly text: {detail}")]
    InvalidText { detail: String },
    #[error("it is not a valid WebAssembly {kind}: {detail}")]
    InvalidWasm { kind: ProgramKind, detail: String },
    #[error(
        "it is a precompiled artifact made by another tool (an ELF file such as `wasmtime compile` writes); wedge runs only artifacts made by `wedge compile`: compile the original .wasm with `wedge compile FILE.wasm -o FILE.cwasm`"
    )]
    ForeignArtifact,
    #[error(
        "it is a damaged wedge artifact ({0}); recompile it from its .wasm with `wedge compile`"
    )]
    DamagedArtifact(artifact::ArtifactError),
    #[error(
        "it is a wedge artifact that this wedge cannot use: {reason}. Recompile it from its .wasm with `wedge compile FILE.wasm -o FILE.cwasm`"
    )]
    IncompatibleArtifact { reason: String },
    #[error(
        "it was compiled without fuel metering, which --fuel needs; recompile it with `wedge compile --fuel FILE.wasm -o FILE.cwasm`, or run the .wasm"
    )]
    ArtifactWithoutFuel,
    #[error(
        "cannot store the compiled code in `{}`: {reason}; check that the directory is writable and the disk is not full", dir.display()
    )]
    Cache {
        dir: std::path::PathBuf,
        reason: String,
    },
}

/// Detects the input format from the first bytes.
pub fn detect(bytes: &[u8]) -> Result<InputFormat, LoadError> {
    const WASM_MAGIC: &[u8] = b"\0asm";
    if artifact::is_artifact(bytes) {
        return Ok(InputFormat::Artifact);
    }
    if bytes.starts_with(WASM_MAGIC) {
        return match bytes.get(4..8) {
            Some([1, 0, 0, 0]) => Ok(InputFormat::Binary(ProgramKind::Module)),
            Some([0x0d, 0, 1, 0]) => Ok(InputFormat::Binary(ProgramKind::Component)),
            Some(header) => Err(LoadError::UnsupportedVersion {
                header: hex_bytes(header),
            }),
            None => Err(LoadError::InvalidWasm {
                kind: ProgramKind::Module,
                detail: "the file ends inside the 8-byte header".into(),
            }),
        };
    }
    if wasmtime::Engine::detect_precompiled(bytes).is_some() {
        return Err(LoadError::ForeignArtifact);
    }
    if looks_like_wat(bytes) {
        return Ok(InputFormat::Text);
    }
    Err(LoadError::NotWasm {
        description: describe_bytes(bytes),
    })
}

/// WAT starts, after white space and comments, with `(`.
fn looks_like_wat(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix(";;") {
            rest = after
                .split_once('\n')
                .map_or("", |(_, tail)| tail)
                .trim_start();
        } else if let Some(after) = rest.strip_prefix("(;") {
            rest = after
                .split_once(";)")
                .map_or("", |(_, tail)| tail)
                .trim_start();
        } else {
            return rest.starts_with('(');
        }
    }
}

/// Says in words what a non-Wasm file looks like, so the user can tell what they passed.
pub fn describe_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    if bytes.starts_with(b"\x7fELF") {
        return "it starts with 7f 45 4c 46 (\"\\x7fELF\"), a native executable or library".into();
    }
    if bytes.starts_with(b"#!") {
        let line = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
        let line = line.lines().next().unwrap_or_default();
        return format!("it starts with {line:?}, a script");
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return "it starts with 1f 8b, gzip-compressed data".into();
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return "it starts with 50 4b 03 04 (\"PK\"), a zip archive".into();
    }
    if let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(4096)]) {
        let snippet: String = text.chars().take(32).collect();
        return format!("it starts with the text {snippet:?}");
    }
    format!("its first bytes are {}", hex_bytes(head))
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compiles and loads programs for one engine, through an optional cache.
pub struct Loader<'a> {
    engine: &'a WedgeEngine,
    cache: Option<&'a ArtifactCache>,
    /// The input's file name, for positions in WAT syntax errors.
    source_path: Option<&'a std::path::Path>,
    /// Whether failing to write the cache is an error (a deploy must not be acknowledged
    /// before its artifact is on disk) rather than a warning (`wedge run`).
    cache_required: bool,
}

impl<'a> Loader<'a> {
    pub fn new(engine: &'a WedgeEngine, cache: Option<&'a ArtifactCache>) -> Self {
        Self {
            engine,
            cache,
            source_path: None,
            cache_required: false,
        }
    }

    /// Makes a failed cache write an error (`LoadError::Cache`) instead of a warning.
    pub fn requiring_cache(mut self) -> Self {
        self.cache_required = true;
        self
    }

    /// Names the input file, so that text syntax errors point at `file.wat:LINE:COL`.
    pub fn with_source_path(mut self, path: &'a std::path::Path) -> Self {
        self.source_path = Some(path);
        self
    }

    /// Loads any supported input: binary or text Wasm (through the cache), or an artifact.
    pub fn load(&self, bytes: &[u8]) -> Result<(Program, LoadSource), LoadError> {
        match detect(bytes)? {
            InputFormat::Artifact => Ok((self.load_artifact(bytes)?, LoadSource::Artifact)),
            _ => self.load_source(bytes),
        }
    }

    /// Compiles source (binary or text) into an artifact for `wedge compile`.
    pub fn compile_to_artifact(&self, bytes: &[u8]) -> Result<(Vec<u8>, ProgramKind), LoadError> {
        let program = self.compile(bytes)?;
        let artifact = self.serialize(&program)?;
        Ok((artifact, program.kind()))
    }

    fn load_source(&self, bytes: &[u8]) -> Result<(Program, LoadSource), LoadError> {
        let Some(cache) = self.cache else {
            return Ok((self.compile(bytes)?, LoadSource::Compiled));
        };
        let key = CacheKey::new(self.engine.fingerprint(), bytes);
        let mut rebuilt_because = None;
        if let Some(entry) = cache.get(&key) {
            match self.load_cached(&entry) {
                Ok(program) => {
                    tracing::debug!(key = key.as_str(), "loaded from the AOT cache");
                    return Ok((program, LoadSource::Cached));
                }
                Err(error) => {
                    tracing::warn!(key = key.as_str(), %error, "discarding damaged cache entry");
                    cache.discard(&key);
                    rebuilt_because = Some(match error {
                        LoadError::DamagedArtifact(damage) => damage.to_string(),
                        other => other.to_string(),
                    });
                }
            }
        }
        let started = std::time::Instant::now();
        let program = self.compile(bytes)?;
        tracing::debug!(elapsed = ?started.elapsed(), "compiled");
        let stored = self
            .serialize_parts(&program)
            .and_then(|(header, payload)| {
                let meta = artifact::encode_header(&header, PayloadSeal::of(&payload));
                cache
                    .put(&key, &meta, &payload)
                    .map_err(|error| LoadError::Cache {
                        dir: cache.dir().to_path_buf(),
                        reason: error.to_string(),
                    })
            });
        let mut program = program;
        match stored {
            // A server keeps what it loaded for a long time: map the code from the cache
            // file (shared with the page cache, paged in when used) instead of keeping the
            // freshly compiled copy in anonymous memory. An idle function then costs little.
            Ok(()) if self.cache_required => {
                let code = cache.code_path(&key);
                let file = std::fs::File::open(&code).map_err(|error| LoadError::Cache {
                    dir: cache.dir().to_path_buf(),
                    reason: error.to_string(),
                })?;
                // SAFETY: the file holds exactly what `serialize_parts` produced for this
                // engine a moment ago (written whole, fsynced and renamed into place by
                // `cache.put`), and cache files are only ever replaced by rename, never
                // written in place; so there is nothing to re-verify before mapping it.
                program = unsafe { self.map_code(program.kind().into(), &file, &code)? };
                crate::memory::return_freed_heap();
            }
            Ok(()) => {}
            Err(error) if self.cache_required => return Err(error),
            Err(error) => tracing::warn!(%error, "cannot write the AOT cache"),
        }
        let source = match rebuilt_because {
            Some(reason) => LoadSource::Rebuilt { reason },
            None => LoadSource::Compiled,
        };
        Ok((program, source))
    }

    fn compile(&self, bytes: &[u8]) -> Result<Program, LoadError> {
        let wasm: std::borrow::Cow<'_, [u8]> = match detect(bytes)? {
            InputFormat::Binary(_) => bytes.into(),
            InputFormat::Text => wat::parse_bytes(bytes)
                .map_err(|mut error| {
                    if let Some(path) = self.source_path {
                        error.set_path(path);
                    }
                    LoadError::InvalidText {
                        detail: error.to_string(),
                    }
                })?
                .into_owned()
                .into(),
            InputFormat::Artifact => {
                return Err(LoadError::InvalidWasm {
                    kind: ProgramKind::Module,
                    detail: "it is already a compiled artifact".into(),
                });
            }
        };
        let kind = match detect(&wasm)? {
            InputFormat::Binary(kind) => kind,
            _ => ProgramKind::Module,
        };
        let engine = self.engine.engine();
        let invalid = |error: wasmtime::Error| LoadError::InvalidWasm {
            kind,
            detail: error_chain(&error),
        };
        match kind {
            ProgramKind::Module => wasmtime::Module::new(engine, &wasm)
                .map(Program::Module)
                .map_err(invalid),
            ProgramKind::Component => wasmtime::component::Component::new(engine, &wasm)
                .map(Program::Component)
                .map_err(invalid),
        }
    }

    fn serialize(&self, program: &Program) -> Result<Vec<u8>, LoadError> {
        let (header, payload) = self.serialize_parts(program)?;
        Ok(artifact::encode(&header, &payload))
    }

    fn serialize_parts(&self, program: &Program) -> Result<(ArtifactHeader, Vec<u8>), LoadError> {
        let payload = match program {
            Program::Module(module) => module.serialize(),
            Program::Component(component) => component.serialize(),
        }
        .map_err(|error| LoadError::InvalidWasm {
            kind: program.kind(),
            detail: format!(
                "cannot serialize the compiled code: {}",
                error_chain(&error)
            ),
        })?;
        let header = ArtifactHeader {
            kind: program.kind().into(),
            fuel_metering: self.engine.options().fuel_metering,
            fingerprint: self.engine.fingerprint(),
            built_by: crate::BUILD_ID.to_string(),
        };
        Ok((header, payload))
    }

    /// Loads a cache entry by mapping its code file, after checking its header against this
    /// engine and the file's length and digest against the header.
    fn load_cached(&self, entry: &CachedEntry) -> Result<Program, LoadError> {
        let (header, seal, _) =
            artifact::decode_header(&entry.meta).map_err(LoadError::DamagedArtifact)?;
        self.check_compatible(&header)?;
        let damaged = |what: &'static str| LoadError::DamagedArtifact(ArtifactError::Damaged(what));
        let mut file = std::fs::File::open(&entry.code)
            .map_err(|_| damaged("its code file is missing or unreadable"))?;
        let mut hasher = blake3::Hasher::new();
        let read = std::io::copy(&mut file, &mut hasher)
            .map_err(|_| damaged("its code file cannot be read"))?;
        if read != seal.len {
            return Err(damaged("its length differs from the one in its header"));
        }
        if hasher.finalize().as_bytes() != &seal.digest {
            return Err(damaged(
                "its contents do not match the digest in its header",
            ));
        }
        // SAFETY: we just checked the file's length and BLAKE3 digest against the header,
        // and the header's fingerprint against this engine (wasmtime re-checks its own
        // version and settings). The cache only ever replaces files by rename (a new inode)
        // and removes them by unlink, never writes into one, so the mapped bytes stay the
        // checked ones. What remains trusted is the cache directory, which only wedge writes.
        unsafe { self.map_code(header.kind, &file, &entry.code) }
    }

    /// Maps a cache entry's code file (`file`, open on `path`) as a program.
    ///
    /// # Safety
    ///
    /// `deserialize_file` maps the file as native code: it must hold exactly what wasmtime's
    /// `serialize` produced for an engine compatible with this one, and must not change while
    /// mapped.
    unsafe fn map_code(
        &self,
        kind: ArtifactKind,
        file: &std::fs::File,
        path: &std::path::Path,
    ) -> Result<Program, LoadError> {
        // The file's pages are in the page cache (the digest check read them, or we just
        // wrote them), and the kernel maps cached pages around every fault ("fault-around"):
        // the loader's few reads would make the whole code resident in this process. A
        // server (which requires the cache) drops the cached pages, so that an idle function
        // keeps less of its code resident; `wedge run` keeps them, as it is about to run it.
        if self.cache_required {
            let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
        }
        let engine = self.engine.engine();
        // SAFETY: the caller guarantees what `deserialize_file` requires (see `# Safety`).
        unsafe {
            match kind {
                ArtifactKind::Module => {
                    wasmtime::Module::deserialize_file(engine, path).map(Program::Module)
                }
                ArtifactKind::Component => {
                    wasmtime::component::Component::deserialize_file(engine, path)
                        .map(Program::Component)
                }
            }
        }
        .map_err(|error| LoadError::IncompatibleArtifact {
            reason: error_chain(&error),
        })
    }

    /// Verifies an artifact's header and digest against this engine, then loads it.
    pub fn load_artifact(&self, bytes: &[u8]) -> Result<Program, LoadError> {
        let (header, payload) = artifact::decode(bytes).map_err(LoadError::DamagedArtifact)?;
        self.check_compatible(&header)?;
        let engine = self.engine.engine();
        let incompatible = |error: wasmtime::Error| LoadError::IncompatibleArtifact {
            reason: error_chain(&error),
        };
        // SAFETY: `deserialize` maps `payload` as native code, so it must be bytes that
        // wasmtime's `serialize` produced for a compatible engine. We checked above that the
        // payload's BLAKE3 digest matches the header (the bytes are exactly what was written)
        // and that the header's fingerprint equals this engine's (same wedge build, wasmtime
        // version, CPU features and compilation settings); wasmtime re-checks its own version
        // and settings. What remains trusted is that the file was written by `wedge compile`
        // or by this cache, which is documented for users: a .cwasm is native code.
        let program = unsafe {
            match header.kind {
                ArtifactKind::Module => {
                    wasmtime::Module::deserialize(engine, payload).map(Program::Module)
                }
                ArtifactKind::Component => {
                    wasmtime::component::Component::deserialize(engine, payload)
                        .map(Program::Component)
                }
            }
        }
        .map_err(incompatible)?;
        Ok(program)
    }

    fn check_compatible(&self, header: &ArtifactHeader) -> Result<(), LoadError> {
        if header.fingerprint == self.engine.fingerprint() {
            return Ok(());
        }
        let ours = self.engine.options().fuel_metering;
        let reason = if header.built_by != crate::BUILD_ID {
            format!(
                "it was compiled by {}, and this is {}",
                header.built_by,
                crate::BUILD_ID
            )
        } else if header.fuel_metering != ours {
            if ours {
                return Err(LoadError::ArtifactWithoutFuel);
            }
            "it was compiled with fuel metering, and this run has none".to_string()
        } else {
            "it was compiled for a different CPU or engine configuration".to_string()
        };
        Err(LoadError::IncompatibleArtifact { reason })
    }
}

/// Reads an artifact's header without loading it (to pick matching engine options).
pub fn peek_artifact(bytes: &[u8]) -> Option<ArtifactHeader> {
    artifact::decode(bytes).ok().map(|(header, _)| header)
}

/// wasmtime's error and its causes on one line, outermost first.
/// An error and its sources as one line (`outer: inner: innermost`), leaving out a source
/// whose text an outer message already holds.
pub fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

pub fn error_chain(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineOptions;

    fn engine() -> WedgeEngine {
        WedgeEngine::new(EngineOptions::default()).unwrap()
    }

    #[test]
    fn detects_formats_from_bytes() {
        assert_eq!(
            detect(b"\0asm\x01\0\0\0").unwrap(),
            InputFormat::Binary(ProgramKind::Module)
        );
        assert_eq!(
            detect(b"\0asm\x0d\0\x01\0").unwrap(),
            InputFormat::Binary(ProgramKind::Component)
        );
        assert_eq!(detect(b"  ;; hi\n(module)").unwrap(), InputFormat::Text);
        assert_eq!(
            detect(b"(; block ;) (component)").unwrap(),
            InputFormat::Text
        );
        assert!(matches!(
            detect(b"\0asm\x02\0\0\0"),
            Err(LoadError::UnsupportedVersion { .. })
        ));
        let not_wasm = detect(b"hello world").unwrap_err().to_string();
        assert!(not_wasm.contains("\"hello world\""), "{not_wasm}");
        let empty = detect(b"").unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");
        let elf = detect(b"\x7fELF\x02\x01\x01\0").unwrap_err().to_string();
        assert!(elf.contains("native executable"), "{elf}");
    }

    #[test]
    fn invalid_wasm_reports_the_validator_message_and_offset() {
        // A function that must return an i32 but has an empty body: well-formed, invalid.
        let bytes = wat::parse_str("(module (func (result i32)))").unwrap();
        let error = Loader::new(&engine(), None).load(&bytes).err().unwrap();
        let text = error.to_string();
        assert!(text.contains("type mismatch"), "{text}");
        assert!(text.contains("offset"), "{text}");
    }

    #[test]
    fn compiles_caches_and_rebuilds_damaged_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path());
        let engine = engine();
        let loader = Loader::new(&engine, Some(&cache));
        let wat = b"(module (func (export \"f\") (result i32) i32.const 7))";
        assert_eq!(loader.load(wat).unwrap().1, LoadSource::Compiled);
        assert_eq!(loader.load(wat).unwrap().1, LoadSource::Cached);

        let key = CacheKey::new(engine.fingerprint(), wat);
        let path = cache.code_path(&key);
        let mut entry = std::fs::read(&path).unwrap();
        let last = entry.len() - 1;
        entry[last] ^= 0xff;
        std::fs::write(&path, entry).unwrap();
        assert!(matches!(
            loader.load(wat).unwrap().1,
            LoadSource::Rebuilt { .. }
        ));
        assert_eq!(loader.load(wat).unwrap().1, LoadSource::Cached);
    }

    #[test]
    fn artifacts_from_another_configuration_are_refused() {
        let plain = engine();
        let metered = WedgeEngine::new(EngineOptions {
            fuel_metering: true,
            ..EngineOptions::default()
        })
        .unwrap();
        let wat = b"(module)";
        let (artifact, kind) = Loader::new(&plain, None).compile_to_artifact(wat).unwrap();
        assert_eq!(kind, ProgramKind::Module);
        assert!(Loader::new(&plain, None).load(&artifact).is_ok());
        assert!(matches!(
            Loader::new(&metered, None).load(&artifact),
            Err(LoadError::ArtifactWithoutFuel)
        ));

        // An artifact claiming another build is refused by name.
        let (header, payload) = artifact::decode(&artifact).unwrap();
        let foreign = artifact::encode(
            &ArtifactHeader {
                built_by: "wedge 0.0.1 (wasmtime 1)".into(),
                fingerprint: crate::Fingerprint([0; 32]),
                ..header
            },
            payload,
        );
        let error = Loader::new(&plain, None)
            .load(&foreign)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("wedge 0.0.1"), "{error}");
    }
}
