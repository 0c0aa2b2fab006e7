//! wedge-gateway: the HTTP data plane.
//!
//! A request's way through (DESIGN.md): accept → route (longest prefix) → admission
//! (global and per-function concurrency, body size) → a fresh `Store` with the function's
//! host state → instantiate from the cached pre-instance → run under an epoch deadline →
//! response → metrics and the guest's output into the function's log.
//!
//! This crate depends on the engine and on capability interfaces, never on how a
//! function's configuration was written down (that is `wedge-control`'s job).

mod capture;
mod deadline;
pub mod function;
mod guest;
pub mod guest_response;
mod http_kind;
pub mod logs;
pub mod metrics;
mod request_id;
pub mod response;
pub mod router;
pub mod server;
pub mod time;
mod wagi;

pub use function::{Function, FunctionKind, FunctionSpec, LoadFunctionError, StateServices};
pub use response::{Body, BodyError, REQUEST_ID_HEADER};
pub use server::{ApiFuture, ApiHandler, ApiRequest, Gateway, GatewayLimits};
