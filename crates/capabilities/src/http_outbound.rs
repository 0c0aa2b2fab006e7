//! Outbound HTTP (`wasi:http/outgoing-handler`), limited to a function's
//! `allowed_outbound_hosts`.
//!
//! The interface is always linked for HTTP functions (JavaScript and Python toolchains
//! import it whether or not the code calls out), so denial happens per request: a request
//! to a host outside the list fails inside the guest with the standard
//! `error-code.HTTP-request-denied`, and the host's log names the denied destination. The
//! list itself, and how entries match, is [`crate::network`]'s.

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// The HTTP capability's name for the function's one network policy: `allowed_outbound_hosts`
/// is checked per request here, as raw sockets check it in [`crate::wasmedge_sockets`].
pub use crate::network::NetworkPolicy as OutboundPolicy;
pub use crate::network::{AllowedHost, AllowedHostError};

/// `wasi:http` hooks for one request of one function: the allow-list check before the
/// request leaves, then wasmtime's default client (HTTP/1.1 and HTTPS via rustls).
pub struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    function: Arc<str>,
    request_id: Arc<str>,
}

impl OutboundHooks {
    pub fn new(policy: Arc<OutboundPolicy>, function: Arc<str>, request_id: Arc<str>) -> Self {
        Self {
            policy,
            function,
            request_id,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        if !self.policy.allows_uri(request.uri()) {
            tracing::warn!(
                function = %self.function,
                request_id = %self.request_id,
                destination = %request.uri(),
                "outbound request denied: the destination is not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Whether the node offers outbound HTTP: `wedge serve` does, `wedge run` does not (it
/// grants no network).
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundOffer {
    pub offered: bool,
}

/// Outbound HTTP as a capability: the allow-list is the grant; each instance gets hooks that
/// check it (and name the function and request in the log of a denial).
pub struct OutboundHttp;

/// One instance's `wasi:http` state: wasmtime-wasi-http's context and wedge's hooks.
pub struct OutboundHttpState {
    pub ctx: wasmtime_wasi_http::WasiHttpCtx,
    pub hooks: OutboundHooks,
}

impl crate::Capability for OutboundHttp {
    type Config = OutboundPolicy;
    type Services = OutboundOffer;
    type Grant = Arc<OutboundPolicy>;
    type ComponentState = OutboundHttpState;
    type ModuleState = ();

    const COMPONENT_IMPORTS: &'static [&'static str] = &["wasi:http/"];
    const MODULE_IMPORTS: &'static [&'static str] = &[];

    fn offered(services: &OutboundOffer) -> bool {
        services.offered
    }

    fn prepare(
        config: &OutboundPolicy,
        _: &OutboundOffer,
        _: crate::FunctionIdentity<'_>,
    ) -> Result<Arc<OutboundPolicy>, crate::GrantError> {
        Ok(Arc::new(config.clone()))
    }

    fn component_state(
        grant: &Arc<OutboundPolicy>,
        instance: &crate::InstanceInfo<'_>,
    ) -> Result<OutboundHttpState, crate::InstanceError> {
        Ok(OutboundHttpState {
            ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            hooks: OutboundHooks::new(
                grant.clone(),
                instance.function.clone(),
                instance.request_id.clone(),
            ),
        })
    }

    fn module_state(
        _: &Arc<OutboundPolicy>,
        _: &crate::InstanceInfo<'_>,
    ) -> Result<(), crate::InstanceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn allows(policy: &OutboundPolicy, uri: &str) -> bool {
        policy.allows_uri(&uri.parse().unwrap())
    }

    #[test]
    fn matching() {
        let p = policy(&[
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "https://api.test",
        ]);
        assert!(allows(&p, "http://127.0.0.1:8080/x"));
        assert!(!allows(&p, "http://127.0.0.1:8081/x"));
        assert!(!allows(&p, "https://127.0.0.1:8080/x"));
        assert!(allows(&p, "https://a.example.com/"));
        assert!(!allows(&p, "https://example.com/"));
        assert!(allows(&p, "https://API.test/v1"));
        assert!(!allows(&p, "https://api.test:8443/v1"));
        assert!(!allows(&policy(&[]), "http://127.0.0.1/"));
        assert!(allows(
            &policy(&["*://localhost:*"]),
            "http://localhost:1234/"
        ));
    }

    #[test]
    fn bad_entries_say_why() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://x/path",
            "http://x:port",
            "*://x",
            "http://",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
        let e = AllowedHost::parse("localhost").unwrap_err().to_string();
        assert!(e.contains("scheme://host"), "{e}");
    }
}
