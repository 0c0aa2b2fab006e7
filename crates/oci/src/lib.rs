//! wedge-oci: functions as OCI artifacts in a container registry.
//!
//! A function travels in the CNCF Wasm OCI artifact layout ([`manifest`]): an OCI image
//! manifest with `artifactType: application/wasm`, a `application/vnd.wasm.config.v0+json`
//! config (`created`, `architecture: wasm`, `os: wasip1 | wasip2`, `layerDigests`, and a
//! component's imports, exports and target world), one `application/wasm` layer, and
//! further layers for the files it needs (media types in docs/oci.md).
//!
//! - [`Reference`]: `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, optionally `oci://`-prefixed.
//! - [`Client`]: pull (resolve the tag to a digest once, fetch by digest, check every digest
//!   and size, within a size limit, into a [`BlobStore`]) and push (blobs, monolithic or
//!   chunked, then the manifest), with authentication ([`auth`]): anonymous, then the
//!   registry's Bearer-token or Basic challenge with the caller's or docker config.json's
//!   credentials.
//! - [`Artifact`]: the artifact built from a `.wasm` (and files) for a push.
//! - [`OciError`]: every failure, typed, with [`ErrorKind`] for exit and HTTP statuses.
//!
//! # Transport: wedge's own few calls over ureq, not `oci-client`
//!
//! A Wasm artifact needs nine registry calls (`GET /v2/`, `HEAD`/`GET` a manifest, `GET` a
//! blob, `HEAD` a blob, `POST`/`PATCH`/`PUT` an upload, `PUT` a manifest, and the token
//! realm). They are written here over ureq 3, the HTTP client the CLI already uses, rather
//! than taken from `oci-client` (0.18), because:
//! - **Dependencies and TLS.** `oci-client` is built on reqwest, whose rustls feature brings
//!   aws-lc-rs (a C and assembly build) by default; with its TLS features off, reqwest and
//!   its stack are still a second HTTP client in the binary. ureq's `rustls` feature uses
//!   rustls on `ring` with the same rustls and ring that wasmtime-wasi-http already brings:
//!   no new TLS code, no C TLS stack.
//! - **Limits are ours to enforce.** The size limit is checked against the manifest before a
//!   byte of a layer is fetched and again while bytes arrive; every blob is streamed into a
//!   temporary file while it is hashed and only renamed into the store once size and digest
//!   match. `oci-client` pulls layers into memory and leaves such checks to the caller.
//! - **Timeouts on every phase.** ureq bounds the connect, each read and write, and the wait
//!   for a response head, so a registry that accepts and then hangs fails with
//!   [`OciError::Timeout`], whichever call it hangs in (including the token realm).
//! - **Typed errors.** Each failure the issue names (404 of a repository or a tag, wrong
//!   media type, digest mismatch, over the limit, timeout, wrong credentials) is a variant
//!   with the registry's own error code in its message, not a string from a generic client.
//! - **Sync fits both callers.** The CLI is synchronous; the server resolves and fetches a
//!   function once at deploy time, which belongs on a blocking thread
//!   (`tokio::task::spawn_blocking`) anyway.
//!
//! The cost is owning the protocol details: the `WWW-Authenticate` parser, upload
//! locations, the HTTPS/HTTP choice. Each is small, commented, and tested against a real
//! registry (distribution 2.8) and an independent client (oras) in tests/oci.rs.
//!
//! # HTTPS and plain HTTP
//!
//! TLS is always verified (rustls; trust roots from `SSL_CERT_FILE`, the system bundle, or
//! Mozilla's compiled in: [`RootCertificates`]). Plain HTTP is used only when the registry
//! is on loopback or listed in [`ClientOptions::insecure_registries`], and only after it
//! answered a TLS hello in plain HTTP; a certificate error is never a reason to fall back.

pub mod auth;
pub mod client;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod store;

pub use auth::{Credentials, DockerConfig};
pub use client::{Client, ClientOptions, Pulled, RootCertificates};
pub use digest::Digest;
pub use error::{ErrorKind, OciError};
pub use manifest::{Artifact, Layer, Manifest, WasmConfig, media_type};
pub use reference::{Reference, ReferenceError};
pub use store::BlobStore;
