//! wedge-capabilities: what a guest can be granted by its host.
//!
//! Deny by default: a guest sees only what its grants list; anything else is absent from
//! its linker, so importing it fails before the guest runs, with a message that names the
//! grant that would provide it ([`import_hint`]).
//!
//! Modules: WASI (preview 1 for core modules, 0.2 for components); for `wedge serve`,
//! outbound HTTP, key-value (`wasi:keyvalue`) and SQL (`wedge:sql`), each with its backends as
//! submodules; and the runtime that server backends' connections live on.

pub mod capability;
pub mod wasi;

pub use capability::{Capability, FunctionIdentity, GrantError, InstanceError, InstanceInfo};
pub use wasi::{Preopen, WasiError, import_hint};
pub mod backend_runtime;
pub mod http_outbound;
pub mod key_value;
pub mod names;
pub mod network;
pub mod queue;
pub mod sql;
mod sqlite_size;
pub mod wasmedge_sockets;
