//! wedge-control: the control plane. Today: the app manifest (`wedge.toml`), validated into
//! the gateway's function specifications with errors that name the function, the key and
//! the fix.

pub mod manifest;

pub use manifest::{AppManifest, ManifestError, Sources};
