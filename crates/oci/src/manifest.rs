//! The CNCF Wasm OCI artifact layout (TAG Runtime's "Wasm OCI Artifact layout"): an OCI image
//! manifest with `artifactType: application/wasm`, a config of media type
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer, and (wedge's
//! addition, documented in docs/oci.md) further layers for the files a function needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::OciError;

/// Media types wedge writes or recognises.
pub mod media_type {
    /// An OCI image manifest: what every Wasm artifact is.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image index (a multi-platform image): never a Wasm artifact.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// The Wasm artifact's config.
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
    /// The manifest's `artifactType`, and the media type of the layer that is the Wasm.
    pub const WASM: &str = "application/wasm";
    /// OCI 1.1's empty config (`{}`), which an artifact may use with `artifactType` set.
    pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
    /// A container image's config: what a pulled reference is when it is not a function.
    pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// A file a function is given (wedge's: its `title` annotation is the file's name).
    pub const WEDGE_FILE: &str = "application/vnd.wedge.file.v1";
    /// An AI model for a wasi-nn function (wedge's: `title` is the model file's name).
    pub const WEDGE_MODEL: &str = "application/vnd.wedge.model.v1";
}

/// Annotation keys of the OCI image spec that wedge sets.
pub mod annotation {
    /// A layer's file name (`oras pull` writes a layer to this name).
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const CREATED: &str = "org.opencontainers.image.created";
}

/// A content descriptor: what a manifest says about one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The layer's file name (`org.opencontainers.image.title`), if it has one.
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(annotation::TITLE).map(String::as_str)
    }
}

/// An OCI image manifest (only the fields a Wasm artifact uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The Wasm artifact's config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339, UTC.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip1` for a core module, `wasip2` for a component.
    pub os: String,
    /// The digests of the manifest's layers, in order (so that two artifacts with different
    /// layers never share a config digest).
    #[serde(default)]
    pub layer_digests: Vec<Digest>,
    /// Required for `wasip2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// A component's world, as the config records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The world it targets, when wedge can tell (`wasi:http/proxy@…`, `wasi:cli/command@…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What a Wasm binary is, for the config's `os`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module: `wasip1`.
    Module,
    /// A component: `wasip2`.
    Component,
}

impl WasmKind {
    pub fn os(self) -> &'static str {
        match self {
            WasmKind::Module => "wasip1",
            WasmKind::Component => "wasip2",
        }
    }
}

/// Reads what the config needs from a Wasm binary: its kind and, for a component, its
/// top-level imports and exports. Refuses bytes that are not Wasm.
pub fn inspect_wasm(bytes: &[u8]) -> Result<(WasmKind, Option<ComponentInfo>), OciError> {
    let kind = if wasmparser::Parser::is_component(bytes) {
        WasmKind::Component
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        WasmKind::Module
    } else {
        return Err(OciError::NotWasm {
            reason: describe_start(bytes),
        });
    };
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components each start with a `Version` and end with an `End`:
    // only depth 1 is the outer component's own world.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|error| OciError::InvalidWasm { source: error })?;
        match payload {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let import = import.map_err(|error| OciError::InvalidWasm { source: error })?;
                    imports.push(import.name.name.to_string());
                }
            }
            wasmparser::Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(|error| OciError::InvalidWasm { source: error })?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let info = match kind {
        WasmKind::Module => None,
        WasmKind::Component => {
            let target = target_world(&exports);
            Some(ComponentInfo {
                exports,
                imports,
                target,
            })
        }
    };
    Ok((kind, info))
}

/// The standard world a component's exports say it targets.
fn target_world(exports: &[String]) -> Option<String> {
    let versioned = |interface: &str, world: &str| {
        exports.iter().find_map(|export| {
            let rest = export.strip_prefix(interface)?;
            match rest.strip_prefix('@') {
                Some(version) => Some(format!("{world}@{version}")),
                None if rest.is_empty() => Some(world.to_string()),
                None => None,
            }
        })
    };
    versioned("wasi:http/incoming-handler", "wasi:http/proxy")
        .or_else(|| versioned("wasi:cli/run", "wasi:cli/command"))
}

fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    let head = &bytes[..bytes.len().min(16)];
    if head
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\n')
    {
        format!(
            "it starts with the text {:?}",
            String::from_utf8_lossy(head)
        )
    } else {
        format!("it starts with the bytes {head:02x?}, not `\\0asm`")
    }
}

/// A layer to push: its media type, bytes, and file name.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub data: Vec<u8>,
    pub title: Option<String>,
}

/// A Wasm artifact ready to push: the blobs and the manifest that names them.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub manifest: Manifest,
    /// The manifest exactly as pushed (its digest is the artifact's).
    pub manifest_bytes: Vec<u8>,
    pub config: WasmConfig,
    pub config_bytes: Vec<u8>,
    /// Layers in manifest order: the Wasm first.
    pub layers: Vec<(Descriptor, Vec<u8>)>,
}

impl Artifact {
    /// Builds the artifact for `wasm` (named `wasm_title`, e.g. `hello.wasm`) with further
    /// `files`, created at `created` (RFC 3339). Refuses bytes that are not Wasm, and a file
    /// whose media type is the Wasm layer's (there is exactly one).
    pub fn build(
        wasm: Vec<u8>,
        wasm_title: &str,
        files: Vec<Layer>,
        created: String,
    ) -> Result<Artifact, OciError> {
        let (kind, component) = inspect_wasm(&wasm)?;
        if let Some(file) = files.iter().find(|f| f.media_type == media_type::WASM) {
            return Err(OciError::WrongMediaType {
                what: format!("the file {}", file.title.as_deref().unwrap_or("(untitled)")),
                found: file.media_type.clone(),
                expected:
                    "any media type but application/wasm: an artifact has exactly one Wasm layer"
                        .into(),
            });
        }
        let mut layers = Vec::with_capacity(files.len() + 1);
        let wasm_layer = Layer {
            media_type: media_type::WASM.to_string(),
            data: wasm,
            title: Some(wasm_title.to_string()),
        };
        for layer in std::iter::once(wasm_layer).chain(files) {
            let mut annotations = BTreeMap::new();
            if let Some(title) = &layer.title {
                annotations.insert(annotation::TITLE.to_string(), title.clone());
            }
            let descriptor = Descriptor {
                media_type: layer.media_type,
                digest: Digest::sha256(&layer.data),
                size: layer.data.len() as u64,
                annotations,
            };
            layers.push((descriptor, layer.data));
        }
        let config = WasmConfig {
            created: created.clone(),
            author: None,
            architecture: "wasm".to_string(),
            os: kind.os().to_string(),
            layer_digests: layers.iter().map(|(d, _)| d.digest.clone()).collect(),
            component,
        };
        let config_bytes =
            serde_json::to_vec(&config).map_err(|source| OciError::Encode { source })?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: Some(media_type::WASM.to_string()),
            config: Descriptor {
                media_type: media_type::WASM_CONFIG.to_string(),
                digest: Digest::sha256(&config_bytes),
                size: config_bytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
            annotations: BTreeMap::from([(annotation::CREATED.to_string(), created)]),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|source| OciError::Encode { source })?;
        Ok(Artifact {
            manifest,
            manifest_bytes,
            config,
            config_bytes,
            layers,
        })
    }

    pub fn digest(&self) -> Digest {
        Digest::sha256(&self.manifest_bytes)
    }
}

/// Parses a pulled manifest and checks that it is a Wasm artifact: the media types, one
/// `application/wasm` layer. `what` names it in messages. Returns the Wasm layer's index.
pub fn parse_wasm_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
    what: &str,
) -> Result<(Manifest, usize), OciError> {
    // The media type is in the body (required by OCI 1.1) or, for older writers, only in the
    // response's Content-Type.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        media_type: Option<String>,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|source| OciError::InvalidManifest {
        what: what.to_string(),
        source,
    })?;
    let declared = head
        .media_type
        .or_else(|| content_type.map(|t| t.split(';').next().unwrap_or(t).trim().to_string()));
    let wrong = |found: &str, is: &str| OciError::WrongMediaType {
        what: what.to_string(),
        found: found.to_string(),
        expected: format!(
            "{} with artifactType {} (a Wasm artifact); this is {is}",
            media_type::OCI_MANIFEST,
            media_type::WASM
        ),
    };
    match declared.as_deref() {
        Some(media_type::OCI_MANIFEST) | None => {}
        Some(found @ (media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST)) => {
            return Err(wrong(
                found,
                "an image index (a multi-platform container image)",
            ));
        }
        Some(found @ media_type::DOCKER_MANIFEST) => {
            return Err(wrong(found, "a Docker container image"));
        }
        Some(found) => return Err(wrong(found, "not an OCI image manifest")),
    }
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|source| OciError::InvalidManifest {
            what: what.to_string(),
            source,
        })?;
    let config_type = manifest.config.media_type.as_str();
    let is_wasm_artifact = config_type == media_type::WASM_CONFIG
        || (config_type == media_type::EMPTY_CONFIG
            && manifest.artifact_type.as_deref() == Some(media_type::WASM));
    if !is_wasm_artifact {
        let is = match config_type {
            media_type::IMAGE_CONFIG | media_type::DOCKER_IMAGE_CONFIG => {
                "a container image, not a Wasm artifact".to_string()
            }
            other => format!("an artifact whose config is {other}"),
        };
        return Err(OciError::WrongMediaType {
            what: format!("the config of {what}"),
            found: config_type.to_string(),
            expected: format!(
                "{} (or {} with artifactType {}); this is {is}",
                media_type::WASM_CONFIG,
                media_type::EMPTY_CONFIG,
                media_type::WASM
            ),
        });
    }
    let wasm_layers: Vec<usize> = manifest
        .layers
        .iter()
        .enumerate()
        .filter(|(_, layer)| layer.media_type == media_type::WASM)
        .map(|(i, _)| i)
        .collect();
    match wasm_layers.as_slice() {
        [index] => Ok((manifest, *index)),
        [] => Err(OciError::WrongMediaType {
            what: format!("the layers of {what}"),
            found: manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            expected: format!("one layer of media type {}", media_type::WASM),
        }),
        more => Err(OciError::WrongMediaType {
            what: format!("the layers of {what}"),
            found: format!("{} layers of media type {}", more.len(), media_type::WASM),
            expected: format!("exactly one layer of media type {}", media_type::WASM),
        }),
    }
}

/// RFC 3339 (UTC, seconds) of a time: the config's and manifest's `created`.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's days-since-1970 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn times_are_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_199);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_module_artifact_round_trips_through_the_check() {
        let files = vec![Layer {
            media_type: media_type::WEDGE_MODEL.into(),
            data: b"weights".to_vec(),
            title: Some("model.onnx".into()),
        }];
        let artifact = Artifact::build(
            MODULE.to_vec(),
            "m.wasm",
            files,
            "2024-01-01T00:00:00Z".into(),
        )
        .unwrap();
        assert_eq!(artifact.config.os, "wasip1");
        assert_eq!(artifact.config.layer_digests.len(), 2);
        let (manifest, index) =
            parse_wasm_manifest(&artifact.manifest_bytes, None, "the artifact").unwrap();
        assert_eq!(index, 0);
        assert_eq!(manifest.layers[0].title(), Some("m.wasm"));
        assert_eq!(manifest.layers[1].media_type, media_type::WEDGE_MODEL);
        let json: serde_json::Value = serde_json::from_slice(&artifact.manifest_bytes).unwrap();
        assert_eq!(json["artifactType"], "application/wasm");
        assert_eq!(
            json["config"]["mediaType"],
            "application/vnd.wasm.config.v0+json"
        );
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        let error = Artifact::build(b"# readme".to_vec(), "x", vec![], String::new()).unwrap_err();
        assert!(error.to_string().contains("\"# readme\""), "{error}");
    }

    #[test]
    fn a_container_image_is_the_wrong_media_type() {
        let image = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::IMAGE_CONFIG, "digest": Digest::sha256(b"{}"), "size": 2},
            "layers": []
        });
        let error = parse_wasm_manifest(image.to_string().as_bytes(), None, "x").unwrap_err();
        assert!(error.to_string().contains("a container image"), "{error}");
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []});
        let error = parse_wasm_manifest(index.to_string().as_bytes(), None, "x").unwrap_err();
        assert!(error.to_string().contains("image index"), "{error}");
    }

    #[test]
    fn component_worlds_name_their_target() {
        assert_eq!(
            target_world(&["wasi:http/incoming-handler@0.2.6".into()]),
            Some("wasi:http/proxy@0.2.6".into())
        );
        assert_eq!(
            target_world(&["wasi:cli/run@0.2.0".into()]),
            Some("wasi:cli/command@0.2.0".into())
        );
        assert_eq!(target_world(&["acme:x/y".into()]), None);
    }
}
