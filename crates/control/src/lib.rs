//! wedge-control: the control plane. The app manifest (`wedge.toml`) and a function's
//! configuration keys, validated into the gateway's function specifications; the function
//! store in the data dir; the deploy API; versions and the atomic swap of what is served.

pub mod api;
pub mod config;
pub mod manifest;
pub mod multipart;
pub mod plane;
mod queues_api;
pub mod runtime_config;
pub mod store;
pub mod token;

pub use config::FunctionConfig;
pub use manifest::{AppManifest, ManifestError, Sources};
