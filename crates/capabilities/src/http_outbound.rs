//! Outbound HTTP (`wasi:http/outgoing-handler`), limited to a function's
//! `allowed_outbound_hosts`.
//!
//! The interface is always linked for HTTP functions (JavaScript and Python toolchains
//! import it whether or not the code calls out), so denial happens per request: a request
//! to a host outside the list fails inside the guest with the standard
//! `error-code.HTTP-request-denied`, and the host's log names the denied destination.

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One entry of `allowed_outbound_hosts`: `scheme://host[:port]`, where scheme may be
/// `http`, `https` or `*`, host may be `*` or start with `*.`, and port may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain (not example.com itself).
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// No port written: the scheme's default (80 for http, 443 for https).
    Default,
    Exact(u16),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{entry}` is not an allowed outbound host: {reason}. Write scheme://host[:port], e.g. \"https://api.example.com\", \"http://127.0.0.1:8080\" or \"https://*.example.com\""
)]
pub struct AllowedHostError {
    pub entry: String,
    pub reason: &'static str,
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<Self, AllowedHostError> {
        let error = |reason| AllowedHostError {
            entry: entry.to_string(),
            reason,
        };
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| error("it has no scheme"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_string()),
            _ => return Err(error("the scheme must be http, https or *")),
        };
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(error("it must not have a path, query or user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, PortPattern::Any),
            Some((host, port)) => (
                host,
                PortPattern::Exact(
                    port.parse()
                        .map_err(|_| error("the port is not a number"))?,
                ),
            ),
            None => (rest, PortPattern::Default),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(format!(".{suffix}"))
        } else if host.is_empty() || host.contains('*') {
            return Err(error("the host is empty or has a misplaced *"));
        } else {
            HostPattern::Exact(host)
        };
        if scheme.is_none() && port == PortPattern::Default {
            return Err(error("with scheme * the port must be written (or *)"));
        }
        Ok(Self { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(exact) => exact.eq_ignore_ascii_case(host),
            HostPattern::Suffix(suffix) => host.to_ascii_lowercase().ends_with(suffix),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
            PortPattern::Default => Some(port) == default_port(scheme),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The outbound hosts one function may reach. Empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    pub fn parse(entries: &[String]) -> Result<Self, AllowedHostError> {
        Ok(Self {
            allowed: entries
                .iter()
                .map(|e| AllowedHost::parse(e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether a request to `uri` may leave.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("http");
        let Some(host) = uri.host() else {
            return false;
        };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|rule| rule.allows(scheme, host, port))
    }
}

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
