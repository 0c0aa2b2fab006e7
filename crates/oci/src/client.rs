//! The registry client: the distribution API calls a Wasm artifact needs, with
//! authentication, the choice of HTTPS or plain HTTP, timeouts and size limits.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{self, HeaderValue, Request, Response, StatusCode, header};

use crate::auth::{Challenge, Credentials, DockerConfig};
use crate::digest::Digest;
use crate::error::OciError;
use crate::manifest::{
    Artifact, Descriptor, Manifest, WasmConfig, media_type, parse_wasm_manifest,
};
use crate::reference::{Reference, host_without_port};
use crate::store::BlobStore;

/// How a [`Client`] behaves. [`ClientOptions::default`] is what `wedge pull` uses without flags.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest wait for a connection, for each read or write on it, and for a response
    /// to start: a registry that hangs fails after this, not never.
    pub timeout: Duration,
    /// The most a pull may download: the config and every layer together. Checked against
    /// the manifest before anything is downloaded, and again while bytes arrive.
    pub max_pull_size: u64,
    /// The largest manifest accepted (4 MiB, as containerd and distribution use).
    pub max_manifest_size: u64,
    /// Blobs larger than this are uploaded in chunks of this size (`PATCH` with
    /// `Content-Range`); smaller ones in one `PUT`. `None`: always one `PUT`.
    pub chunk_size: Option<u64>,
    /// Registries (`host[:port]` as written in references) that may be reached over plain
    /// HTTP although they are not on loopback. Loopback is always allowed.
    pub insecure_registries: Vec<String>,
    /// Credentials the caller gave; they win over the docker config's.
    pub credentials: Option<Credentials>,
    /// A docker-style config.json to take credentials from.
    pub docker_config: Option<DockerConfig>,
    /// Which certificate authorities TLS trusts.
    pub root_certificates: RootCertificates,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            max_pull_size: 1 << 30,
            max_manifest_size: 4 << 20,
            chunk_size: Some(16 << 20),
            insecure_registries: Vec::new(),
            credentials: None,
            docker_config: None,
            root_certificates: RootCertificates::System,
            user_agent: concat!("wedge/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// The trust roots for TLS.
#[derive(Debug, Clone)]
pub enum RootCertificates {
    /// `SSL_CERT_FILE` if set, else the system bundle (Debian's
    /// `/etc/ssl/certs/ca-certificates.crt` and its equivalents), else Mozilla's roots
    /// compiled in (a `FROM scratch` image without a bundle still verifies public
    /// registries).
    System,
    /// Mozilla's roots compiled in, nothing else.
    Mozilla,
    /// These PEM certificates only.
    Pem(Vec<u8>),
}

/// Where systems keep their CA bundle (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS-like, SUSE).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

impl RootCertificates {
    fn load(&self) -> Result<ureq::tls::RootCerts, OciError> {
        let from_pem = |pem: &[u8], path: PathBuf| -> Result<ureq::tls::RootCerts, OciError> {
            let certs: Vec<_> = ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(OciError::RootCertificates {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "no PEM certificate in it",
                    ),
                });
            }
            Ok(ureq::tls::RootCerts::from(certs))
        };
        match self {
            RootCertificates::Mozilla => Ok(ureq::tls::RootCerts::WebPki),
            RootCertificates::Pem(pem) => from_pem(pem, PathBuf::from("(given PEM)")),
            RootCertificates::System => {
                if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
                    let path = PathBuf::from(path);
                    let pem =
                        std::fs::read(&path).map_err(|source| OciError::RootCertificates {
                            path: path.clone(),
                            source,
                        })?;
                    return from_pem(&pem, path);
                }
                for bundle in SYSTEM_BUNDLES {
                    if let Ok(pem) = std::fs::read(bundle) {
                        return from_pem(&pem, PathBuf::from(bundle));
                    }
                }
                Ok(ureq::tls::RootCerts::WebPki)
            }
        }
    }
}

/// What an operation needs from the registry: the token scope's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

/// What the client learnt about one registry host.
#[derive(Debug, Default)]
struct HostState {
    scheme: Option<Scheme>,
    /// Basic auth was asked for: send these credentials on every request.
    basic: Option<String>,
    /// Bearer tokens by scope.
    tokens: HashMap<String, String>,
}

/// A registry client. Cheap to share between threads; it remembers each host's scheme and
/// tokens.
pub struct Client {
    agent: ureq::Agent,
    options: ClientOptions,
    hosts: Mutex<HashMap<String, HostState>>,
}

/// A pulled Wasm artifact: everything in it is in the blob store, checked.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference, pinned to the manifest's digest.
    pub reference: Reference,
    /// The manifest's digest: the artifact's identity.
    pub digest: Digest,
    pub manifest: Manifest,
    /// `None` when the artifact uses OCI 1.1's empty config.
    pub config: Option<WasmConfig>,
    /// Index in `manifest.layers` of the Wasm.
    pub wasm_layer: usize,
    /// Where each layer is in the store, in manifest order.
    pub layer_paths: Vec<PathBuf>,
    /// How many bytes of blobs (config and layers) were downloaded; 0 when all came from
    /// the store.
    pub downloaded: u64,
}

impl Pulled {
    /// The Wasm layer's descriptor and path in the store.
    pub fn wasm(&self) -> (&Descriptor, &std::path::Path) {
        (
            &self.manifest.layers[self.wasm_layer],
            &self.layer_paths[self.wasm_layer],
        )
    }
}

/// The manifest media types a pull accepts in answers, so the registry says what it has
/// (an index or a Docker image is then refused by name, not misread).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, OciError> {
        let roots = options.root_certificates.load()?;
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .build();
        let timeout = Some(options.timeout);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(options.user_agent.as_str())
            // Blob downloads may be redirected to storage (S3 and the like); the registry's
            // Authorization header is never sent there (ureq's default).
            .max_redirects(5)
            .timeout_resolve(timeout)
            .timeout_connect(timeout)
            .timeout_send_request(timeout)
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .timeout_per_write(timeout)
            .build()
            .into();
        Ok(Client {
            agent,
            options,
            hosts: Mutex::new(HashMap::new()),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The manifest digest a reference names now: its own digest, or what its tag points
    /// at (asked once, with `HEAD`).
    pub fn resolve(&self, reference: &Reference) -> Result<Digest, OciError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        let operation = format!("resolving {reference}");
        let path = format!(
            "/v2/{}/manifests/{}",
            reference.repository(),
            reference.manifest_key()
        );
        let response = self.exchange(reference, Access::Pull, &operation, &|base| {
            Request::head(format!("{base}{path}"))
                .header(header::ACCEPT, MANIFEST_ACCEPT)
                .body(())
        })?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(self.tag_not_found(reference));
        }
        let response = self.check_status(reference, &operation, response, &|| {
            format!(
                "the tag `{}` of {}",
                reference.manifest_key(),
                reference.repository()
            )
        })?;
        if let Some(digest) = header_digest(&response) {
            return Ok(digest);
        }
        // A registry that does not say the digest on HEAD: fetch the manifest by tag and
        // hash what came (these exact bytes are then what the digest names).
        let (bytes, _) = self.get_manifest_bytes(reference, &reference.manifest_key())?;
        Ok(Digest::sha256(&bytes))
    }

    /// A tag that is not there: says whether the repository is missing altogether or which
    /// tags it has (a HEAD's 404 has no body to tell, so the tag list is asked).
    fn tag_not_found(&self, reference: &Reference) -> OciError {
        let registry = reference.registry().to_string();
        let repository = reference.repository();
        let tag = reference.manifest_key();
        let operation = format!("listing the tags of {repository}");
        let path = format!("/v2/{repository}/tags/list?n=20");
        let listed = self.exchange(reference, Access::Pull, &operation, &|base| {
            Request::get(format!("{base}{path}")).body(())
        });
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        match listed {
            Ok(response) if response.status() == StatusCode::NOT_FOUND => OciError::NotFound {
                registry,
                what: format!("the repository {repository}"),
                detail: error_codes(response).message,
            },
            Ok(response) if response.status().is_success() => {
                let tags = response
                    .into_body()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_string()
                    .ok()
                    .and_then(|text| serde_json::from_str::<Tags>(&text).ok())
                    .and_then(|t| t.tags)
                    .unwrap_or_default();
                let detail = if tags.is_empty() {
                    "the repository has no tags".to_string()
                } else {
                    format!("the repository has the tags {}", tags.join(", "))
                };
                OciError::NotFound {
                    registry,
                    what: format!("the tag `{tag}` of {repository}"),
                    detail,
                }
            }
            // The list is only for the message: without it, say what is known.
            _ => OciError::NotFound {
                registry,
                what: format!("the tag `{tag}` of {repository}"),
                detail: "404 Not Found".into(),
            },
        }
    }

    /// The manifest with `digest`, from the store when it has it, else fetched by digest and
    /// checked. Returns its bytes and Content-Type.
    fn manifest_by_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
        store: &BlobStore,
    ) -> Result<(Vec<u8>, Option<String>), OciError> {
        if let Some(bytes) = store.read(digest)? {
            return Ok((bytes, None));
        }
        let (bytes, content_type) = self.get_manifest_bytes(reference, &digest.to_string())?;
        let what = format!("the manifest of {reference}");
        let actual = Digest::sha256(&bytes);
        if actual != *digest {
            return Err(OciError::DigestMismatch {
                what,
                expected: digest.clone(),
                actual,
            });
        }
        store.put(digest, &bytes, &what)?;
        Ok((bytes, content_type))
    }

    fn get_manifest_bytes(
        &self,
        reference: &Reference,
        key: &str,
    ) -> Result<(Vec<u8>, Option<String>), OciError> {
        let operation = format!("fetching the manifest of {reference}");
        let path = format!("/v2/{}/manifests/{key}", reference.repository());
        let response = self.exchange(reference, Access::Pull, &operation, &|base| {
            Request::get(format!("{base}{path}"))
                .header(header::ACCEPT, MANIFEST_ACCEPT)
                .body(())
        })?;
        let response = self.check_status(reference, &operation, response, &|| {
            format!("the manifest `{key}` of {}", reference.repository())
        })?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = self.options.max_manifest_size;
        let what = format!("the manifest of {reference}");
        if let Some(length) = content_length(&response)
            && length > limit
        {
            return Err(OciError::TooLarge {
                what,
                size: length,
                limit,
            });
        }
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| self.read_error(reference, &operation, error))?;
        if bytes.len() as u64 > limit {
            return Err(OciError::TooLarge {
                what,
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok((bytes, content_type))
    }

    /// Pulls a Wasm artifact into `store`: resolves the tag once, fetches the manifest by
    /// digest, checks that it is a Wasm artifact and within the size limit, then fetches
    /// the config and every layer that the store does not already have, checking each
    /// digest. With a digest reference and everything in the store, no request is made.
    pub fn pull(&self, reference: &Reference, store: &BlobStore) -> Result<Pulled, OciError> {
        let digest = self.resolve(reference)?;
        let pinned = reference.with_digest(digest.clone());
        let (bytes, content_type) = self.manifest_by_digest(&pinned, &digest, store)?;
        let what = reference.to_string();
        let (manifest, wasm_layer) = parse_wasm_manifest(&bytes, content_type.as_deref(), &what)?;

        let total = manifest
            .layers
            .iter()
            .map(|layer| layer.size)
            .fold(manifest.config.size, u64::saturating_add);
        if total > self.options.max_pull_size {
            return Err(OciError::TooLarge {
                what: format!("{what} (its config and layers)"),
                size: total,
                limit: self.options.max_pull_size,
            });
        }

        let mut downloaded = 0;
        let config_what = format!("the config of {what}");
        downloaded += self.fetch_blob(&pinned, &manifest.config, store, &config_what)?;
        let config = if manifest.config.media_type == media_type::WASM_CONFIG {
            let bytes = store.read(&manifest.config.digest)?.unwrap_or_default();
            Some(check_config(&bytes, &manifest, &what)?)
        } else {
            None
        };
        let mut layer_paths = Vec::with_capacity(manifest.layers.len());
        for (index, layer) in manifest.layers.iter().enumerate() {
            let layer_what = match layer.title() {
                Some(title) => format!("layer {index} ({title}) of {what}"),
                None => format!("layer {index} of {what}"),
            };
            downloaded += self.fetch_blob(&pinned, layer, store, &layer_what)?;
            layer_paths.push(store.path(&layer.digest));
        }
        Ok(Pulled {
            reference: pinned,
            digest,
            manifest,
            config,
            wasm_layer,
            layer_paths,
            downloaded,
        })
    }

    /// Fetches one blob into the store unless it is there; returns the bytes downloaded.
    fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        store: &BlobStore,
        what: &str,
    ) -> Result<u64, OciError> {
        if store.contains(&descriptor.digest)? {
            return Ok(0);
        }
        let operation = format!("fetching {what}");
        let path = format!("/v2/{}/blobs/{}", reference.repository(), descriptor.digest);
        let response = self.exchange(reference, Access::Pull, &operation, &|base| {
            Request::get(format!("{base}{path}")).body(())
        })?;
        let response = self.check_status(reference, &operation, response, &|| {
            format!("the blob {} ({what})", descriptor.digest)
        })?;
        let mut writer = store.writer(&descriptor.digest, descriptor.size, what)?;
        let mut reader = response.into_body().into_reader();
        let mut buffer = vec![0u8; 1 << 16];
        let mut received = 0u64;
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(|error| self.read_error(reference, &operation, error))?;
            if n == 0 {
                break;
            }
            received += n as u64;
            writer.write(&buffer[..n])?;
        }
        writer.commit()?;
        Ok(received)
    }

    /// Pushes an artifact: every blob the registry lacks (checked with `HEAD`), then the
    /// manifest under the reference's tag. Returns the manifest's digest.
    pub fn push(&self, reference: &Reference, artifact: &Artifact) -> Result<Digest, OciError> {
        self.push_blob(
            reference,
            &artifact.manifest.config.digest,
            &artifact.config_bytes,
        )?;
        for (descriptor, bytes) in &artifact.layers {
            self.push_blob(reference, &descriptor.digest, bytes)?;
        }
        self.push_manifest(
            reference,
            media_type::OCI_MANIFEST,
            &artifact.manifest_bytes,
        )
    }

    /// Uploads one blob unless the repository has it: monolithic (`POST`, then `PUT` with
    /// the bytes), or chunked (`PATCH`es of [`ClientOptions::chunk_size`], then `PUT`)
    /// for larger ones.
    pub fn push_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(), OciError> {
        let repository = reference.repository();
        let operation = format!("checking for blob {digest} in {repository}");
        let head_path = format!("/v2/{repository}/blobs/{digest}");
        let response = self.exchange(reference, Access::Push, &operation, &|base| {
            Request::head(format!("{base}{head_path}")).body(())
        })?;
        if response.status() == StatusCode::OK {
            return Ok(());
        }
        if response.status() != StatusCode::NOT_FOUND {
            self.check_status(reference, &operation, response, &|| {
                format!("blob {digest}")
            })?;
        }

        let operation = format!("starting the upload of blob {digest} to {repository}");
        let start_path = format!("/v2/{repository}/blobs/uploads/");
        let response = self.exchange(reference, Access::Push, &operation, &|base| {
            Request::post(format!("{base}{start_path}"))
                .header(header::CONTENT_LENGTH, "0")
                .body(())
        })?;
        let response = self.check_status(reference, &operation, response, &|| {
            format!("the repository {repository}")
        })?;
        let mut location = self.upload_location(reference, &operation, &response)?;

        let chunk = self
            .options
            .chunk_size
            .filter(|&chunk| chunk > 0 && (bytes.len() as u64) > chunk)
            .map(|chunk| usize::try_from(chunk).unwrap_or(usize::MAX));
        let last = match chunk {
            None => bytes,
            Some(chunk) => {
                let operation = format!("uploading blob {digest} to {repository}");
                for (index, part) in bytes.chunks(chunk).enumerate() {
                    let start = index * chunk;
                    let end = start + part.len() - 1;
                    let url = location.clone();
                    let response = self.exchange(reference, Access::Push, &operation, &|_| {
                        Request::patch(url.as_str())
                            .header(header::CONTENT_TYPE, "application/octet-stream")
                            .header(header::CONTENT_RANGE, format!("{start}-{end}"))
                            .header(header::CONTENT_LENGTH, part.len().to_string())
                            .body(part)
                    })?;
                    let response = self.check_status(reference, &operation, response, &|| {
                        format!("the upload of blob {digest}")
                    })?;
                    location = self.upload_location(reference, &operation, &response)?;
                }
                &[]
            }
        };
        let operation = format!("finishing the upload of blob {digest} to {repository}");
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let response = self.exchange(reference, Access::Push, &operation, &|_| {
            Request::put(url.as_str())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, last.len().to_string())
                .body(last)
        })?;
        self.check_status(reference, &operation, response, &|| {
            format!("the upload of blob {digest}")
        })?;
        Ok(())
    }

    /// Pushes a manifest under the reference's tag (or digest) and returns its digest, as
    /// computed here and confirmed by the registry's `Docker-Content-Digest`.
    pub fn push_manifest(
        &self,
        reference: &Reference,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, OciError> {
        let digest = Digest::sha256(bytes);
        let key = reference
            .tag()
            .map_or_else(|| digest.to_string(), str::to_string);
        let operation = format!("pushing the manifest of {reference}");
        let path = format!("/v2/{}/manifests/{key}", reference.repository());
        let response = self.exchange(reference, Access::Push, &operation, &|base| {
            Request::put(format!("{base}{path}"))
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, bytes.len().to_string())
                .body(bytes)
        })?;
        let response = self.check_status(reference, &operation, response, &|| {
            format!("the repository {}", reference.repository())
        })?;
        if let Some(stored) = header_digest(&response)
            && stored != digest
        {
            return Err(OciError::DigestMismatch {
                what: format!("the manifest the registry stored for {reference}"),
                expected: digest,
                actual: stored,
            });
        }
        Ok(digest)
    }

    fn upload_location(
        &self,
        reference: &Reference,
        operation: &str,
        response: &Response<ureq::Body>,
    ) -> Result<String, OciError> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::Protocol {
                registry: reference.registry().to_string(),
                operation: operation.to_string(),
                problem: "an upload answer without a Location".into(),
            })?;
        if location.starts_with("http://") || location.starts_with("https://") {
            return Ok(location.to_string());
        }
        let base = self.base_url(reference, operation)?;
        Ok(format!("{base}{location}"))
    }

    /// Sends a request made by `make` (given the registry's base URL), authenticating as a
    /// `401` asks and sending it once more. Transport failures become typed errors; any
    /// other status is the caller's to judge.
    fn exchange<B: ureq::AsSendBody>(
        &self,
        reference: &Reference,
        access: Access,
        operation: &str,
        make: &dyn Fn(&str) -> Result<Request<B>, http::Error>,
    ) -> Result<Response<ureq::Body>, OciError> {
        let base = self.base_url(reference, operation)?;
        let scope = format!("repository:{}:{}", reference.repository(), access.actions());
        let response = self.send(reference, operation, &base, &scope, make)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenges: Vec<Challenge> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Challenge::parse)
            .collect();
        let detail = registry_message(response);
        let scope = self.authenticate(reference, operation, &scope, &challenges, &detail)?;
        let response = self.send(reference, operation, &base, &scope, make)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(reference, operation, registry_message(response)));
        }
        Ok(response)
    }

    fn send<B: ureq::AsSendBody>(
        &self,
        reference: &Reference,
        operation: &str,
        base: &str,
        scope: &str,
        make: &dyn Fn(&str) -> Result<Request<B>, http::Error>,
    ) -> Result<Response<ureq::Body>, OciError> {
        let mut request = make(base).map_err(|error| OciError::Protocol {
            registry: reference.registry().to_string(),
            operation: operation.to_string(),
            problem: format!("wedge could not form the request ({error})"),
        })?;
        // Credentials and tokens go to the registry's own host only: an upload Location may
        // point elsewhere (a storage service), which must not see them.
        let to_registry = request
            .uri()
            .authority()
            .is_some_and(|authority| authority.as_str() == reference.api_host());
        if to_registry && let Some(authorization) = self.authorization(reference, scope) {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, authorization);
        }
        tracing::debug!(method = %request.method(), uri = %request.uri(), "registry request");
        self.agent
            .run(request)
            .map_err(|error| self.transport_error(reference, operation, error))
    }

    fn authorization(&self, reference: &Reference, scope: &str) -> Option<HeaderValue> {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let state = hosts.get(reference.api_host())?;
        let value = match (state.tokens.get(scope), &state.basic) {
            (Some(token), _) => format!("Bearer {token}"),
            (None, Some(basic)) => basic.clone(),
            (None, None) => return None,
        };
        HeaderValue::from_str(&value).ok()
    }

    fn credentials(&self, reference: &Reference) -> Option<Credentials> {
        self.options.credentials.clone().or_else(|| {
            self.options
                .docker_config
                .as_ref()
                .and_then(|config| config.credentials_for(reference.registry()))
                .cloned()
        })
    }

    /// Acts on a `401`'s challenges: gets a token (Bearer) or arms Basic auth. Returns the
    /// scope the retry must present.
    fn authenticate(
        &self,
        reference: &Reference,
        operation: &str,
        scope: &str,
        challenges: &[Challenge],
        detail: &str,
    ) -> Result<String, OciError> {
        let credentials = self.credentials(reference);
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => Some((realm, service, scope)),
            Challenge::Basic => None,
        });
        if let Some((realm, service, challenge_scope)) = bearer {
            // The challenge's scope says what this request needs; ours, what the operation
            // will need next (push needs pull,push before it has been refused for it).
            let scope = challenge_scope.clone().unwrap_or_else(|| scope.to_string());
            let token = self.fetch_token(
                reference,
                operation,
                realm,
                service.as_deref(),
                &scope,
                credentials.as_ref(),
            )?;
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            let state = hosts.entry(reference.api_host().to_string()).or_default();
            state.tokens.insert(scope.clone(), token);
            return Ok(scope);
        }
        if challenges.contains(&Challenge::Basic) {
            let Some(credentials) = credentials else {
                return Err(self.unauthorized(reference, operation, detail.to_string()));
            };
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            let state = hosts.entry(reference.api_host().to_string()).or_default();
            if state.basic.is_some() {
                // These credentials were already sent and refused.
                drop(hosts);
                return Err(self.unauthorized(reference, operation, detail.to_string()));
            }
            state.basic = Some(credentials.basic_header());
            return Ok(scope.to_string());
        }
        Err(OciError::Protocol {
            registry: reference.registry().to_string(),
            operation: operation.to_string(),
            problem: format!(
                "401 without a Bearer or Basic challenge in WWW-Authenticate ({detail})"
            ),
        })
    }

    fn fetch_token(
        &self,
        reference: &Reference,
        operation: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, OciError> {
        let realm_host = realm
            .strip_prefix("https://")
            .map(|_| None)
            .or_else(|| realm.strip_prefix("http://").map(Some));
        match realm_host {
            Some(None) => {}
            Some(Some(rest)) => {
                let host = rest.split('/').next().unwrap_or(rest);
                if !self.plain_http_allowed(host) {
                    return Err(OciError::InsecureRealm {
                        registry: reference.registry().to_string(),
                        realm: realm.to_string(),
                    });
                }
            }
            None => {
                return Err(OciError::Protocol {
                    registry: reference.registry().to_string(),
                    operation: operation.to_string(),
                    problem: format!("its token realm `{realm}` is not an http(s) URL"),
                });
            }
        }
        let mut url = format!("{realm}{}", if realm.contains('?') { '&' } else { '?' });
        if let Some(service) = service {
            url.push_str(&format!("service={}&", query_escape(service)));
        }
        url.push_str(&format!("scope={}", query_escape(scope)));
        let mut request = self.agent.get(&url);
        if let Some(credentials) = credentials {
            request = request.header(header::AUTHORIZATION, credentials.basic_header());
        }
        let token_operation = format!("{operation} (asking {realm} for a token)");
        let response = request
            .call()
            .map_err(|error| self.transport_error(reference, &token_operation, error))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.unauthorized(reference, operation, registry_message(response)));
            }
            status => {
                return Err(OciError::Registry {
                    registry: reference.registry().to_string(),
                    operation: token_operation,
                    status: status.as_u16(),
                    message: registry_message(response),
                });
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let text = response
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|error| self.transport_error(reference, &token_operation, error))?;
        let answer: TokenAnswer =
            serde_json::from_str(&text).map_err(|error| OciError::Protocol {
                registry: reference.registry().to_string(),
                operation: token_operation.clone(),
                problem: format!("the token answer is not JSON with a token ({error})"),
            })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| OciError::Protocol {
                registry: reference.registry().to_string(),
                operation: token_operation,
                problem: "the token answer has neither `token` nor `access_token`".into(),
            })
    }

    fn unauthorized(&self, reference: &Reference, operation: &str, detail: String) -> OciError {
        let problem = match self.credentials(reference) {
            Some(credentials) => format!(
                "the credentials of user `{}` were not accepted ({detail}); check the user name and password",
                credentials.username
            ),
            None => {
                let helper = self.options.docker_config.as_ref().and_then(|config| {
                    Some((config.path(), config.helper_for(reference.registry())?))
                });
                match helper {
                    Some((path, helper)) => format!(
                        "it needs credentials ({detail}); {} hands this registry to the credential helper `{helper}`, which wedge does not run: pass --registry-user and --registry-password-stdin",
                        path.display()
                    ),
                    None => format!(
                        "it needs credentials ({detail}): pass --registry-user and --registry-password-stdin, or put them in docker's config.json (`auths`)"
                    ),
                }
            }
        };
        OciError::Unauthorized {
            registry: reference.registry().to_string(),
            operation: operation.to_string(),
            problem,
        }
    }

    /// Turns a non-success status into its error; `what` names the thing for a 404.
    fn check_status(
        &self,
        reference: &Reference,
        operation: &str,
        response: Response<ureq::Body>,
        what: &dyn Fn() -> String,
    ) -> Result<Response<ureq::Body>, OciError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let registry = reference.registry().to_string();
        let codes = error_codes(response);
        let detail = codes.message.clone();
        Err(match status {
            StatusCode::NOT_FOUND => {
                let what = if codes.has("NAME_UNKNOWN") {
                    format!("the repository {}", reference.repository())
                } else {
                    what()
                };
                OciError::NotFound {
                    registry,
                    what,
                    detail,
                }
            }
            StatusCode::FORBIDDEN => OciError::Denied {
                registry,
                operation: operation.to_string(),
                detail,
            },
            StatusCode::UNAUTHORIZED => self.unauthorized(reference, operation, detail),
            _ => OciError::Registry {
                registry,
                operation: operation.to_string(),
                status: status.as_u16(),
                message: detail,
            },
        })
    }

    /// `scheme://host` of the registry: HTTPS, or plain HTTP when the host is on loopback
    /// or allowed and does not speak TLS. Found out once per host by asking `/v2/`.
    fn base_url(&self, reference: &Reference, operation: &str) -> Result<String, OciError> {
        let host = reference.api_host();
        let known = {
            let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts.get(host).and_then(|state| state.scheme)
        };
        let scheme = match known {
            Some(scheme) => scheme,
            None => {
                let scheme = self.probe(reference, operation)?;
                let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
                hosts.entry(host.to_string()).or_default().scheme = Some(scheme);
                scheme
            }
        };
        Ok(match scheme {
            Scheme::Https => format!("https://{host}"),
            Scheme::Http => format!("http://{host}"),
        })
    }

    fn probe(&self, reference: &Reference, operation: &str) -> Result<Scheme, OciError> {
        let host = reference.api_host();
        let check = |scheme: Scheme, response: Response<ureq::Body>| {
            // 200 (open) or 401 (auth) both say "a registry is here"; anything else is not
            // the distribution API.
            match response.status() {
                StatusCode::OK | StatusCode::UNAUTHORIZED => Ok(scheme),
                status => Err(OciError::Protocol {
                    registry: reference.registry().to_string(),
                    operation: operation.to_string(),
                    problem: format!(
                        "it answered {status} to GET /v2/, so it is not an OCI registry (or not at this address)"
                    ),
                }),
            }
        };
        match self.agent.get(format!("https://{host}/v2/")).call() {
            Ok(response) => check(Scheme::Https, response),
            Err(error) if speaks_plain_http(&error) => {
                if !self.plain_http_allowed(reference.registry()) {
                    return Err(OciError::PlainHttpRefused {
                        registry: reference.registry().to_string(),
                    });
                }
                let response = self
                    .agent
                    .get(format!("http://{host}/v2/"))
                    .call()
                    .map_err(|error| self.transport_error(reference, operation, error))?;
                check(Scheme::Http, response)
            }
            Err(error) => Err(self.transport_error(reference, operation, error)),
        }
    }

    fn plain_http_allowed(&self, registry: &str) -> bool {
        is_loopback(host_without_port(registry))
            || self
                .options
                .insecure_registries
                .iter()
                .any(|allowed| allowed == registry || allowed == host_without_port(registry))
    }

    fn transport_error(
        &self,
        reference: &Reference,
        operation: &str,
        error: ureq::Error,
    ) -> OciError {
        let registry = reference.registry().to_string();
        let operation = operation.to_string();
        match &error {
            ureq::Error::Timeout(_) => OciError::Timeout {
                registry,
                operation,
                after: self.options.timeout,
                source: Box::new(error),
            },
            ureq::Error::Io(io) if is_timeout(io) => OciError::Timeout {
                registry,
                operation,
                after: self.options.timeout,
                source: Box::new(error),
            },
            ureq::Error::Io(io) if io_rustls_error(io).is_some() => OciError::Tls {
                registry,
                source: Box::new(error),
            },
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::Pem(_) => OciError::Tls {
                registry,
                source: Box::new(error),
            },
            _ => OciError::Unreachable {
                registry,
                operation,
                source: Box::new(error),
            },
        }
    }

    /// A failure while a body is being read: the reader wraps ureq's error in an io::Error.
    fn read_error(
        &self,
        reference: &Reference,
        operation: &str,
        error: std::io::Error,
    ) -> OciError {
        let timeout = is_timeout(&error)
            || error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)));
        let source = Box::new(ureq::Error::Io(error));
        if timeout {
            OciError::Timeout {
                registry: reference.registry().to_string(),
                operation: operation.to_string(),
                after: self.options.timeout,
                source,
            }
        } else {
            OciError::Unreachable {
                registry: reference.registry().to_string(),
                operation: operation.to_string(),
                source,
            }
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Whether a failed HTTPS request failed because the server answered in plain HTTP: its
/// first bytes (`HTTP/1.1 400 ...`) are not a TLS record. A certificate problem is not this.
fn speaks_plain_http(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Rustls(rustls::Error::InvalidMessage(_)) => true,
        ureq::Error::Io(io) => io_rustls_error(io)
            .is_some_and(|inner| matches!(inner, rustls::Error::InvalidMessage(_))),
        _ => false,
    }
}

/// The TLS error inside an I/O error (how ureq reports a failed handshake).
fn io_rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn content_length(response: &Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn header_digest(response: &Response<ureq::Body>) -> Option<Digest> {
    response
        .headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The registry's `{"errors": [{"code", "message"}]}`, read from an error answer.
struct ErrorCodes {
    codes: Vec<String>,
    message: String,
}

impl ErrorCodes {
    fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }
}

fn error_codes(response: Response<ureq::Body>) -> ErrorCodes {
    let status = response.status();
    let text = response
        .into_body()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_str::<Errors>(&text) {
        Ok(errors) if !errors.errors.is_empty() => ErrorCodes {
            message: errors
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{status} {}: {}",
                        e.code.as_deref().unwrap_or("?"),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            codes: errors.errors.into_iter().filter_map(|e| e.code).collect(),
        },
        _ => {
            let text = text.trim();
            let text: String = text.chars().take(200).collect();
            ErrorCodes {
                codes: Vec::new(),
                message: if text.is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {text}")
                },
            }
        }
    }
}

fn registry_message(response: Response<ureq::Body>) -> String {
    error_codes(response).message
}

/// Checks a pulled config: JSON of the Wasm config's shape, architecture `wasm`, a known
/// `os`, and `layerDigests` that are the manifest's.
fn check_config(bytes: &[u8], manifest: &Manifest, what: &str) -> Result<WasmConfig, OciError> {
    let invalid = |problem: String| OciError::InvalidConfig {
        what: what.to_string(),
        problem,
    };
    let config: WasmConfig = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if config.architecture != "wasm" {
        return Err(invalid(format!(
            "architecture is `{}`, not `wasm`",
            config.architecture
        )));
    }
    if !matches!(config.os.as_str(), "wasip1" | "wasip2") {
        return Err(invalid(format!(
            "os is `{}`, not `wasip1` or `wasip2`",
            config.os
        )));
    }
    if let Some(missing) = config
        .layer_digests
        .iter()
        .find(|digest| !manifest.layers.iter().any(|layer| &layer.digest == *digest))
    {
        return Err(invalid(format!(
            "layerDigests names {missing}, which is not a layer of the manifest"
        )));
    }
    Ok(config)
}

/// Percent-encodes a query value (scopes hold `:` and `,`, realms may hold `/`).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.3.2.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("registry.example"));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
