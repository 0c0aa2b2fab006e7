//! wedge-capabilities: what a guest can be granted by its host.
//!
//! Deny by default: a guest sees only what its grants list; anything else is absent from
//! its linker, so importing it fails before the guest runs, with a message that names the
//! grant that would provide it ([`import_hint`]).
//!
//! Today this holds WASI (preview 1 for core modules, 0.2 for components). Capabilities
//! added for `wedge serve` (outbound HTTP, key-value, SQL) get a module each here.

pub mod wasi;

pub use wasi::{Preopen, WasiError, WasiGrants, import_hint};
pub mod http_outbound;
pub mod key_value;
pub mod sql;
