//! wedge-trigger-http: the HTTP trigger, wedge's data plane on the network.
//!
//! A request's way through (DESIGN.md): accept (hyper, tokio) → `/_wedge` endpoints (health,
//! metrics, the deploy API's mount) → route (longest prefix) → head size → the body boxed
//! once → [`wedge_host::Host::call`] (admission, a fresh instance, the guest, the response)
//! → the request's log line. Everything after routing is the host's, shared with every other
//! trigger.

pub mod metrics;
pub mod router;
pub mod server;

pub use server::{ApiFuture, ApiHandler, ApiRequest, Gateway, GatewayLimits};
