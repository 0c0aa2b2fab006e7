//! wedge-host: the trigger-neutral host, and the library for embedding wedge.
//!
//! Everything a way into a function needs, whatever the way: a [`Function`] (its spec,
//! grants and pre-linked code, its concurrency limit, metrics and log), the one list of
//! capabilities that builds every instance's store ([`capabilities`]), deadlines, captured
//! output, how a run ended, and [`Host::call`], which every trigger calls through: admission,
//! a fresh instance, the guest (an `http` component or a `wagi` module), the response.
//! [`command`] is the runner of `wedge run`, on the same list.
//!
//! No listener lives here: the HTTP trigger (wedge-trigger-http) and the others hand calls
//! to [`Host::call`]. Of wedge's crates this one depends on the engine and the capabilities
//! only.

mod call;
pub mod capabilities;
pub mod command;
pub mod deadline;
pub mod function;
pub mod guest_response;
mod http_handler;
mod instances;
pub mod logs;
pub mod metrics;
mod outcome;
mod reactor;
pub mod request_id;
pub mod response;
pub mod time;
pub mod trigger;
mod wagi;

pub use call::{
    CallContext, ExportCallError, Host, HostLimits, HostMetrics, contain_panic,
    serving_engine_options,
};
pub use capabilities::{ComponentState, GrantConfig, ModuleState, Services};
pub use function::{
    Function, FunctionKind, FunctionSpec, HandlerVersion, LoadFunctionError, TriggerConfig,
    TriggerSpec,
};
pub use instances::ReusePolicy;
pub use response::{Body, BodyError, REQUEST_ID_HEADER};
pub use trigger::{FireError, FireFuture, Fired, Trigger, TriggerConfigError};
