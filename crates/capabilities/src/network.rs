//! The one network policy of a function: where it may connect, which names it may resolve,
//! and where it may listen. Every capability that touches the network asks this policy:
//! outbound HTTP (`wasi:http`, [`crate::http_outbound`]), WasmEdge's socket extension for
//! core modules ([`crate::wasmedge_sockets`]) and `wasi:sockets` for components
//! ([`NetworkPolicy::configure_wasi_sockets`]), so all of them follow one rule.
//!
//! Deny by default. Two lists grant access:
//!
//! - **Outbound** (`allowed_outbound_hosts`, `--allow-outbound`): `scheme://host[:port]`, with
//!   scheme `http`, `https`, `tcp`, `udp` or `*`; host a DNS name, `*.suffix`, `*` or an IP
//!   literal (`[::1]` for IPv6); port a number or `*` (http and https default to 80 and 443;
//!   tcp, udp and `*` must write it). A raw TCP connection is allowed by a `tcp://` entry and
//!   also by an `http://` or `https://` one for the same host and port: a guest speaking HTTP
//!   over a socket is a TCP client, and the host cannot tell the two apart. UDP needs `udp://`
//!   (or `*`).
//! - **Listen** (`listen`, `--listen`): `[ADDR:]PORT`. The guest may bind PORT and listen on
//!   it (TCP) or receive on it (UDP). Without ADDR the socket lands on loopback: a bind to
//!   `0.0.0.0` (or `::`) becomes `127.0.0.1` (or `::1`). Binding every interface needs
//!   `0.0.0.0:PORT` (or `[::]:PORT`) written in so many words.
//!
//! Names: a DNS name may be resolved only if some outbound entry names it (or matches it with
//! `*.suffix` or `*`). An address may be reached only if an entry names it as an IP literal,
//! or a granted name resolved to it in this instance ([`ResolvedNames`]), so a guest cannot
//! resolve `api.example.com` and then connect to an arbitrary address, nor reach a granted
//! address on an ungranted port.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// The transport a raw socket uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        })
    }
}

/// One entry of `allowed_outbound_hosts`: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Http,
    Https,
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// A DNS name, lowercase.
    Name(String),
    /// `*.example.com`: any subdomain (not example.com itself); stored as `.example.com`.
    Suffix(String),
    /// An IP literal: only this address, never a name.
    Ip(IpAddr),
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
    "`{entry}` is not an allowed outbound host: {reason}. Write scheme://host[:port], e.g. \"https://api.example.com\", \"http://127.0.0.1:8080\", \"https://*.example.com\", \"tcp://db.internal:3306\" or \"udp://[::1]:53\""
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
            "*" => SchemePattern::Any,
            "http" => SchemePattern::Http,
            "https" => SchemePattern::Https,
            "tcp" => SchemePattern::Tcp,
            "udp" => SchemePattern::Udp,
            _ => return Err(error("the scheme must be http, https, tcp, udp or *")),
        };
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(error("it must not have a path, query or user"));
        }
        let (host, port) = split_host_port(rest).map_err(error)?;
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(port) => PortPattern::Exact(
                port.parse()
                    .map_err(|_| error("the port is not a number"))?,
            ),
        };
        let host = parse_host_pattern(host).map_err(error)?;
        if port == PortPattern::Default
            && matches!(
                scheme,
                SchemePattern::Any | SchemePattern::Tcp | SchemePattern::Udp
            )
        {
            return Err(error(
                "with scheme *, tcp or udp the port must be written (or *)",
            ));
        }
        Ok(Self { scheme, host, port })
    }

    fn allows_scheme(&self, scheme: &str) -> bool {
        match self.scheme {
            SchemePattern::Any => true,
            SchemePattern::Http => scheme == "http",
            SchemePattern::Https => scheme == "https",
            SchemePattern::Tcp => scheme == "tcp",
            SchemePattern::Udp => scheme == "udp",
        }
    }

    /// Whether a raw socket of `transport` may use this entry: tcp by tcp, http and https
    /// entries (HTTP is spoken over TCP); udp only by udp ones; `*` by both.
    fn allows_transport(&self, transport: Transport) -> bool {
        matches!(
            (self.scheme, transport),
            (SchemePattern::Any, _)
                | (
                    SchemePattern::Tcp | SchemePattern::Http | SchemePattern::Https,
                    Transport::Tcp
                )
                | (SchemePattern::Udp, Transport::Udp)
        )
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
            PortPattern::Default => match self.scheme {
                SchemePattern::Http => port == 80,
                SchemePattern::Https => port == 443,
                // Parsing refuses a default port for the other schemes.
                _ => false,
            },
        }
    }

    /// Whether the host part matches a DNS name.
    fn matches_name(&self, name: &str) -> bool {
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Name(exact) => exact.eq_ignore_ascii_case(name),
            HostPattern::Suffix(suffix) => name.to_ascii_lowercase().ends_with(suffix),
            HostPattern::Ip(_) => false,
        }
    }

    /// Whether the host part matches a URI's host (a name or an IP literal).
    fn matches_host(&self, host: &str) -> bool {
        match parse_ip(host) {
            Some(ip) => match &self.host {
                HostPattern::Any => true,
                HostPattern::Ip(granted) => canonical(*granted) == canonical(ip),
                // `http://127.0.0.1:8080` written as a name entry still means that address.
                HostPattern::Name(_) | HostPattern::Suffix(_) => false,
            },
            None => self.matches_name(host),
        }
    }

    /// What an entry names, for messages: `tcp://db:3306`.
    fn describe(&self) -> String {
        let scheme = match self.scheme {
            SchemePattern::Any => "*",
            SchemePattern::Http => "http",
            SchemePattern::Https => "https",
            SchemePattern::Tcp => "tcp",
            SchemePattern::Udp => "udp",
        };
        let host = match &self.host {
            HostPattern::Any => "*".to_string(),
            HostPattern::Name(name) => name.clone(),
            HostPattern::Suffix(suffix) => format!("*{suffix}"),
            HostPattern::Ip(ip) => format_ip(*ip),
        };
        match self.port {
            PortPattern::Any => format!("{scheme}://{host}:*"),
            PortPattern::Default => format!("{scheme}://{host}"),
            PortPattern::Exact(port) => format!("{scheme}://{host}:{port}"),
        }
    }
}

/// Splits `host[:port]`, where an IPv6 host is written in brackets (`[::1]:53`).
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address opened with [ is not closed with ]")?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("after ] only :port may follow"),
            },
        };
    }
    if rest.matches(':').count() > 1 {
        return Err("an IPv6 address must be written in brackets, e.g. [::1]:53");
    }
    Ok(match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn parse_host_pattern(host: &str) -> Result<HostPattern, &'static str> {
    if let Some(ip) = parse_ip(host) {
        return Ok(HostPattern::Ip(ip));
    }
    if host.contains(':') {
        return Err("an IPv6 address must be written in brackets, e.g. [::1]:53");
    }
    let host = host.to_ascii_lowercase();
    if host == "*" {
        Ok(HostPattern::Any)
    } else if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err("the host is empty or has a misplaced *");
        }
        Ok(HostPattern::Suffix(format!(".{suffix}")))
    } else if host.is_empty() || host.contains('*') {
        Err("the host is empty or has a misplaced *")
    } else {
        Ok(HostPattern::Name(host))
    }
}

/// An IP literal as a URI or a grant writes it (IPv6 with or without brackets).
fn parse_ip(host: &str) -> Option<IpAddr> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn format_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn format_socket_addr(addr: SocketAddr) -> String {
    format!("{}:{}", format_ip(addr.ip()), addr.port())
}

/// One entry of `listen`: `[ADDR:]PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenGrant {
    /// `None`: loopback only (a bind to the wildcard address lands on loopback).
    addr: Option<IpAddr>,
    port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{entry}` is not a listen grant: {reason}. Write [ADDR:]PORT, e.g. \"8080\" (loopback), \"127.0.0.1:8080\", \"0.0.0.0:8080\" (every interface) or \"[::1]:8080\""
)]
pub struct ListenGrantError {
    pub entry: String,
    pub reason: &'static str,
}

impl ListenGrant {
    pub fn parse(entry: &str) -> Result<Self, ListenGrantError> {
        let error = |reason| ListenGrantError {
            entry: entry.to_string(),
            reason,
        };
        let parse_port = |port: &str| -> Result<u16, ListenGrantError> {
            match port.parse::<u16>() {
                Ok(0) => Err(error(
                    "port 0 (any free port) cannot be granted: name the port",
                )),
                Ok(port) => Ok(port),
                Err(_) => Err(error("the port is not a number from 1 to 65535")),
            }
        };
        if !entry.contains(':') {
            return Ok(Self {
                addr: None,
                port: parse_port(entry)?,
            });
        }
        let addr: SocketAddr = entry
            .parse()
            .map_err(|_| error("the address is not an IP address with a port"))?;
        if addr.port() == 0 {
            return Err(error(
                "port 0 (any free port) cannot be granted: name the port",
            ));
        }
        Ok(Self {
            addr: Some(canonical(addr.ip())),
            port: addr.port(),
        })
    }

    fn describe(&self) -> String {
        match self.addr {
            None => self.port.to_string(),
            Some(ip) => format!("{}:{}", format_ip(ip), self.port),
        }
    }
}

/// Why the policy refused something, with the grant that would allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// What was attempted: "TCP connect to 10.0.0.1:5432".
    pub attempt: String,
    /// The entry that would allow it, as the grant list writes it.
    pub grant: String,
    pub list: GrantList,
}

/// Which list a grant belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantList {
    Outbound,
    Listen,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = match self.list {
            GrantList::Outbound => "allowed_outbound_hosts (wedge run: --allow-outbound)",
            GrantList::Listen => "listen (wedge run: --listen)",
        };
        write!(
            f,
            "{} denied: not granted; add \"{}\" to {list}",
            self.attempt, self.grant
        )
    }
}

/// The names a granted lookup resolved, per address, in one instance. An address is
/// reachable through a name grant only once a lookup of that name returned it.
#[derive(Debug, Default, Clone)]
pub struct ResolvedNames {
    names: HashMap<IpAddr, Vec<String>>,
    /// Each instance resolves few names; this caps what a guest looping over lookups can
    /// make the host remember.
    capacity: usize,
}

/// How many distinct addresses one instance's lookups are remembered for.
pub const RESOLVED_ADDRESS_LIMIT: usize = 4096;

impl ResolvedNames {
    pub fn new() -> Self {
        Self {
            names: HashMap::new(),
            capacity: RESOLVED_ADDRESS_LIMIT,
        }
    }

    /// Remembers that `name` resolved to `ip`.
    pub fn record(&mut self, name: &str, ip: IpAddr) {
        let ip = canonical(ip);
        if !self.names.contains_key(&ip) && self.names.len() >= self.capacity {
            return;
        }
        let names = self.names.entry(ip).or_default();
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }

    fn names_for(&self, ip: IpAddr) -> &[String] {
        self.names
            .get(&canonical(ip))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// A function's network grants. Empty means no network at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    allowed: Vec<AllowedHost>,
    listen: Vec<ListenGrant>,
}

/// A bad entry in either list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkPolicyError {
    #[error(transparent)]
    Outbound(#[from] AllowedHostError),
    #[error(transparent)]
    Listen(#[from] ListenGrantError),
}

impl NetworkPolicy {
    /// A policy from `allowed_outbound_hosts` alone (no listen grants).
    pub fn parse(entries: &[String]) -> Result<Self, AllowedHostError> {
        Ok(Self {
            allowed: entries
                .iter()
                .map(|e| AllowedHost::parse(e))
                .collect::<Result<_, _>>()?,
            listen: Vec::new(),
        })
    }

    /// A policy from both lists.
    pub fn parse_with_listen(
        outbound: &[String],
        listen: &[String],
    ) -> Result<Self, NetworkPolicyError> {
        let mut policy = Self::parse(outbound)?;
        policy.listen = listen
            .iter()
            .map(|e| ListenGrant::parse(e))
            .collect::<Result<_, _>>()?;
        Ok(policy)
    }

    /// Whether anything at all is granted.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.listen.is_empty()
    }

    /// Whether an HTTP request to `uri` may leave.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("http");
        let Some(host) = uri.host() else {
            return false;
        };
        let default = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let Some(port) = uri.port_u16().or(default) else {
            return false;
        };
        self.allowed.iter().any(|rule| {
            rule.allows_scheme(scheme) && rule.matches_host(host) && rule.allows_port(port)
        })
    }

    /// Whether the guest may resolve the DNS name `name`. `port` (from the lookup's service,
    /// when it has one) only makes the suggested grant precise.
    pub fn check_lookup(&self, name: &str, port: Option<u16>) -> Result<(), Denial> {
        let name = name.trim_end_matches('.');
        if self.allowed.iter().any(|rule| rule.matches_name(name)) {
            return Ok(());
        }
        Err(Denial {
            attempt: format!("DNS lookup of `{name}`"),
            grant: match port {
                Some(port) => format!("tcp://{name}:{port}"),
                None => format!("tcp://{name}:PORT"),
            },
            list: GrantList::Outbound,
        })
    }

    /// Whether a socket of `transport` may connect (or, for UDP, send) to `addr`: granted as
    /// an IP literal, or as a name that resolved to it in this instance.
    pub fn check_connect(
        &self,
        transport: Transport,
        addr: SocketAddr,
        resolved: &ResolvedNames,
    ) -> Result<(), Denial> {
        let names = resolved.names_for(addr.ip());
        if self
            .allowed
            .iter()
            .any(|rule| self.rule_allows_address(rule, transport, addr, names))
        {
            return Ok(());
        }
        Err(self.connect_denial(transport, addr, names.first().map(String::as_str)))
    }

    fn rule_allows_address(
        &self,
        rule: &AllowedHost,
        transport: Transport,
        addr: SocketAddr,
        names: &[String],
    ) -> bool {
        if !rule.allows_transport(transport) || !rule.allows_port(addr.port()) {
            return false;
        }
        match &rule.host {
            HostPattern::Any => true,
            HostPattern::Ip(ip) => canonical(*ip) == canonical(addr.ip()),
            HostPattern::Name(_) | HostPattern::Suffix(_) => {
                names.iter().any(|name| rule.matches_name(name))
            }
        }
    }

    fn connect_denial(&self, transport: Transport, addr: SocketAddr, name: Option<&str>) -> Denial {
        let verb = match transport {
            Transport::Tcp => "connect",
            Transport::Udp => "send",
        };
        let target = match name {
            Some(name) => format!("{name}:{}", addr.port()),
            None => format_socket_addr(addr),
        };
        Denial {
            attempt: format!("{transport} {verb} to {}", format_socket_addr(addr)),
            grant: format!("{}://{target}", transport.scheme()),
            list: GrantList::Outbound,
        }
    }

    /// Where a bind of `requested` lands, or why it may not happen.
    ///
    /// Port 0 (the system picks a free port) needs no grant: a client socket binds so, and
    /// listening on it is refused by [`Self::check_listen`]. A named port needs a listen
    /// grant; a bind to the wildcard address lands on the granted address, which is loopback
    /// unless the grant writes one.
    pub fn check_bind(
        &self,
        transport: Transport,
        requested: SocketAddr,
    ) -> Result<SocketAddr, Denial> {
        if requested.port() == 0 {
            return Ok(requested);
        }
        let ip = canonical(requested.ip());
        let same_family = |granted: &IpAddr| granted.is_ipv4() == ip.is_ipv4();
        let grants: Vec<&ListenGrant> = self
            .listen
            .iter()
            .filter(|grant| grant.port == requested.port())
            .collect();
        if ip.is_unspecified() {
            if grants.iter().any(|g| {
                g.addr
                    .is_some_and(|a| a.is_unspecified() && same_family(&a))
            }) {
                return Ok(requested);
            }
            if let Some(addr) = grants
                .iter()
                .find_map(|g| g.addr.filter(|a| same_family(a)))
            {
                return Ok(SocketAddr::new(addr, requested.port()));
            }
            if grants.iter().any(|g| g.addr.is_none()) {
                let loopback = match ip {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                };
                return Ok(SocketAddr::new(loopback, requested.port()));
            }
        } else if grants.iter().any(|g| match g.addr {
            None => ip.is_loopback(),
            Some(a) => a == ip || (a.is_unspecified() && same_family(&a)),
        }) {
            return Ok(SocketAddr::new(ip, requested.port()));
        }
        Err(Denial {
            attempt: format!("{transport} bind to {}", format_socket_addr(requested)),
            grant: if ip.is_unspecified() || ip.is_loopback() {
                requested.port().to_string()
            } else {
                format_socket_addr(SocketAddr::new(ip, requested.port()))
            },
            list: GrantList::Listen,
        })
    }

    /// Whether a TCP socket bound to `local` may listen.
    pub fn check_listen(&self, local: SocketAddr) -> Result<(), Denial> {
        let denial = || Denial {
            attempt: match local.port() {
                0 => format!(
                    "TCP listen on a port the system picks ({}:0)",
                    format_ip(local.ip())
                ),
                _ => format!("TCP listen on {}", format_socket_addr(local)),
            },
            grant: match local.port() {
                0 => "PORT".to_string(),
                port => port.to_string(),
            },
            list: GrantList::Listen,
        };
        if local.port() == 0 {
            return Err(denial());
        }
        match self.check_bind(Transport::Tcp, local) {
            Ok(landed) if landed == local => Ok(()),
            _ => Err(denial()),
        }
    }

    /// Whether a UDP socket bound to `local` under a listen grant receives from anyone
    /// (true) or only from the destinations it may send to (false).
    pub fn is_listening_port(&self, local: SocketAddr) -> bool {
        local.port() != 0
            && matches!(self.check_bind(Transport::Udp, local), Ok(landed) if landed == local)
    }

    /// The listen grants, as written (for messages and for `wedge serve`'s port mapping).
    pub fn listen_grants(&self) -> Vec<String> {
        self.listen.iter().map(ListenGrant::describe).collect()
    }

    /// The outbound entries, as written.
    pub fn outbound_entries(&self) -> Vec<String> {
        self.allowed.iter().map(AllowedHost::describe).collect()
    }

    /// Whether any outbound entry names a host by DNS name (or pattern), i.e. whether name
    /// lookups can ever be answered.
    pub fn grants_any_name(&self) -> bool {
        self.allowed
            .iter()
            .any(|rule| !matches!(rule.host, HostPattern::Ip(_)))
    }

    /// A connect check for a caller that cannot see the guest's lookups (`wasi:sockets`,
    /// whose name lookup has no per-name hook): an address passes if an entry names it, or
    /// an entry names a host (exactly, not by pattern) that resolves to it on the host now.
    pub async fn check_connect_resolving(
        &self,
        transport: Transport,
        addr: SocketAddr,
    ) -> Result<(), Denial> {
        if self
            .check_connect(transport, addr, &ResolvedNames::new())
            .is_ok()
        {
            return Ok(());
        }
        for rule in &self.allowed {
            let HostPattern::Name(name) = &rule.host else {
                continue;
            };
            if !rule.allows_transport(transport) || !rule.allows_port(addr.port()) {
                continue;
            }
            if let Ok(found) = tokio::net::lookup_host((name.as_str(), addr.port())).await
                && found
                    .into_iter()
                    .any(|a| canonical(a.ip()) == canonical(addr.ip()))
            {
                return Ok(());
            }
        }
        Err(self.connect_denial(transport, addr, None))
    }

    /// Applies this policy to a WASI 0.2 context (`wasi:sockets`): TCP and UDP are enabled
    /// only when something is granted, name lookup only when a name is granted (wasmtime-wasi
    /// 48 offers an on/off switch for lookups, not a per-name hook), and every address the
    /// component binds, connects, sends to or accepts from goes through the same checks as
    /// WasmEdge's socket extension. The differences (no bind address rewriting: a bind to
    /// 0.0.0.0 is refused unless granted; wildcard name grants cannot admit addresses) are
    /// in docs/wasmedge.md.
    pub fn configure_wasi_sockets(self: &Arc<Self>, builder: &mut wasmtime_wasi::WasiCtxBuilder) {
        let udp = self
            .allowed
            .iter()
            .any(|rule| matches!(rule.scheme, SchemePattern::Udp | SchemePattern::Any))
            || !self.listen.is_empty();
        let tcp = !self.allowed.is_empty() || !self.listen.is_empty();
        builder
            .allow_tcp(tcp)
            .allow_udp(udp)
            .allow_ip_name_lookup(self.grants_any_name());
        let policy = Arc::clone(self);
        builder.socket_addr_check(move |addr, use_| {
            let policy = Arc::clone(&policy);
            Box::pin(async move { policy.wasi_sockets_allows(addr, use_).await })
                as Pin<Box<dyn Future<Output = bool> + Send + Sync>>
        });
    }

    /// The `wasi:sockets` check for one use of an address.
    pub async fn wasi_sockets_allows(
        &self,
        addr: SocketAddr,
        use_: wasmtime_wasi::sockets::SocketAddrUse,
    ) -> bool {
        use wasmtime_wasi::sockets::SocketAddrUse as Use;
        match use_ {
            Use::TcpBind => matches!(self.check_bind(Transport::Tcp, addr), Ok(a) if a == addr),
            Use::TcpListen => self.check_listen(addr).is_ok(),
            // Accepted clients of a granted listener, and datagrams to a granted port, are
            // what listening means.
            Use::TcpAccept => true,
            Use::UdpBind => matches!(self.check_bind(Transport::Udp, addr), Ok(a) if a == addr),
            Use::TcpConnect => self
                .check_connect_resolving(Transport::Tcp, addr)
                .await
                .is_ok(),
            // The hook does not say which local socket a datagram arrived on: a component
            // granted a listen port is a server and hears everyone; any other hears only
            // from where it may send.
            Use::UdpReceive if !self.listen.is_empty() => true,
            Use::UdpSend | Use::UdpReceive => self
                .check_connect_resolving(Transport::Udp, addr)
                .await
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(outbound: &[&str], listen: &[&str]) -> NetworkPolicy {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        NetworkPolicy::parse_with_listen(&strings(outbound), &strings(listen)).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn http_entries_match_uris_as_before() {
        let p = policy(&["http://127.0.0.1:8080", "https://*.example.com"], &[]);
        assert!(p.allows_uri(&"http://127.0.0.1:8080/x".parse().unwrap()));
        assert!(!p.allows_uri(&"http://127.0.0.1:8081/x".parse().unwrap()));
        assert!(p.allows_uri(&"https://a.example.com/".parse().unwrap()));
        // tcp and udp entries never admit an HTTP request.
        let raw = policy(&["tcp://127.0.0.1:8080"], &[]);
        assert!(!raw.allows_uri(&"http://127.0.0.1:8080/".parse().unwrap()));
        let v6 = policy(&["http://[::1]:8080"], &[]);
        assert!(v6.allows_uri(&"http://[::1]:8080/".parse().unwrap()));
    }

    #[test]
    fn entries_parse_and_refuse_with_reasons() {
        for good in [
            "tcp://db.internal:3306",
            "udp://[::1]:53",
            "tcp://10.0.0.1:*",
            "*://localhost:*",
            "udp://*.example.com:53",
        ] {
            assert!(AllowedHost::parse(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("tcp://db", "port must be written"),
            ("udp://10.0.0.1", "port must be written"),
            ("tcp://::1:53", "brackets"),
            ("tcp://[::1:53", "not closed"),
            ("ftp://x:21", "http, https, tcp, udp or *"),
            ("tcp://*.:1", "misplaced"),
        ] {
            let error = AllowedHost::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
        for (bad, why) in [
            ("0", "port 0"),
            ("http", "not a number"),
            ("localhost:80", "not an IP address"),
            ("127.0.0.1:0", "port 0"),
        ] {
            let error = ListenGrant::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.contains("[ADDR:]PORT"), "{error}");
        }
    }

    #[test]
    fn ip_literals_reach_only_their_address_and_port() {
        let p = policy(&["tcp://127.0.0.1:5432"], &[]);
        let none = ResolvedNames::new();
        assert!(
            p.check_connect(Transport::Tcp, addr("127.0.0.1:5432"), &none)
                .is_ok()
        );
        // A v4-mapped v6 address is the same address.
        assert!(
            p.check_connect(Transport::Tcp, addr("[::ffff:127.0.0.1]:5432"), &none)
                .is_ok()
        );
        let denial = p
            .check_connect(Transport::Tcp, addr("127.0.0.1:5433"), &none)
            .unwrap_err();
        assert_eq!(denial.grant, "tcp://127.0.0.1:5433");
        assert!(denial.to_string().contains("--allow-outbound"), "{denial}");
        let denial = p
            .check_connect(Transport::Udp, addr("127.0.0.1:5432"), &none)
            .unwrap_err();
        assert_eq!(denial.grant, "udp://127.0.0.1:5432");
        assert!(
            p.check_connect(Transport::Tcp, addr("10.1.1.1:5432"), &none)
                .is_err()
        );
    }

    #[test]
    fn names_are_resolvable_only_when_granted_and_admit_what_they_resolved_to() {
        let p = policy(&["tcp://db.internal:3306", "https://*.example.com"], &[]);
        assert!(p.check_lookup("db.internal", Some(3306)).is_ok());
        assert!(p.check_lookup("DB.Internal.", None).is_ok());
        assert!(p.check_lookup("api.example.com", None).is_ok());
        let denial = p.check_lookup("evil.test", Some(80)).unwrap_err();
        assert_eq!(denial.grant, "tcp://evil.test:80");
        let mut resolved = ResolvedNames::new();
        let target = addr("10.9.8.7:3306");
        assert!(p.check_connect(Transport::Tcp, target, &resolved).is_err());
        resolved.record("db.internal", target.ip());
        assert!(p.check_connect(Transport::Tcp, target, &resolved).is_ok());
        // The name's grant is for 3306 only.
        assert!(
            p.check_connect(Transport::Tcp, addr("10.9.8.7:22"), &resolved)
                .is_err()
        );
        // An https grant admits raw TCP to 443 of what its names resolved to.
        resolved.record("api.example.com", addr("10.0.0.5:0").ip());
        assert!(
            p.check_connect(Transport::Tcp, addr("10.0.0.5:443"), &resolved)
                .is_ok()
        );
        let denial = p
            .check_connect(Transport::Tcp, addr("10.0.0.5:80"), &resolved)
            .unwrap_err();
        assert_eq!(denial.grant, "tcp://api.example.com:80");
    }

    #[test]
    fn udp_needs_a_udp_entry() {
        let p = policy(&["udp://127.0.0.1:53", "http://127.0.0.1:80"], &[]);
        let none = ResolvedNames::new();
        assert!(
            p.check_connect(Transport::Udp, addr("127.0.0.1:53"), &none)
                .is_ok()
        );
        assert!(
            p.check_connect(Transport::Udp, addr("127.0.0.1:80"), &none)
                .is_err()
        );
        assert!(
            p.check_connect(Transport::Tcp, addr("127.0.0.1:53"), &none)
                .is_err()
        );
        assert!(
            p.check_connect(Transport::Tcp, addr("127.0.0.1:80"), &none)
                .is_ok()
        );
    }

    #[test]
    fn binds_land_on_loopback_unless_the_wildcard_is_granted() {
        let p = policy(
            &[],
            &["8080", "0.0.0.0:9090", "10.0.0.2:7070", "[::1]:6060"],
        );
        assert_eq!(
            p.check_bind(Transport::Tcp, addr("0.0.0.0:8080")),
            Ok(addr("127.0.0.1:8080"))
        );
        assert_eq!(
            p.check_bind(Transport::Tcp, addr("[::]:8080")),
            Ok(addr("[::1]:8080"))
        );
        assert_eq!(
            p.check_bind(Transport::Tcp, addr("127.0.0.1:8080")),
            Ok(addr("127.0.0.1:8080"))
        );
        assert_eq!(
            p.check_bind(Transport::Tcp, addr("0.0.0.0:9090")),
            Ok(addr("0.0.0.0:9090"))
        );
        assert_eq!(
            p.check_bind(Transport::Udp, addr("0.0.0.0:7070")),
            Ok(addr("10.0.0.2:7070"))
        );
        assert_eq!(
            p.check_bind(Transport::Tcp, addr("[::]:6060")),
            Ok(addr("[::1]:6060"))
        );
        // A grant without an address is loopback only.
        let denial = p
            .check_bind(Transport::Tcp, addr("10.0.0.9:8080"))
            .unwrap_err();
        assert_eq!(denial.grant, "10.0.0.9:8080");
        assert!(denial.to_string().contains("--listen"), "{denial}");
        let denial = p
            .check_bind(Transport::Tcp, addr("0.0.0.0:8081"))
            .unwrap_err();
        assert_eq!(denial.grant, "8081");
        // Port 0 is a client's bind; listening on it is refused.
        assert_eq!(
            p.check_bind(Transport::Tcp, addr("0.0.0.0:0")),
            Ok(addr("0.0.0.0:0"))
        );
        assert!(p.check_listen(addr("127.0.0.1:0")).is_err());
        assert!(p.check_listen(addr("127.0.0.1:8080")).is_ok());
        assert!(p.check_listen(addr("0.0.0.0:8080")).is_err());
        assert!(p.check_listen(addr("0.0.0.0:9090")).is_ok());
        assert!(p.is_listening_port(addr("127.0.0.1:8080")));
        assert!(!p.is_listening_port(addr("127.0.0.1:40000")));
    }

    #[tokio::test]
    async fn wasi_sockets_hook_uses_the_same_rules() {
        use wasmtime_wasi::sockets::SocketAddrUse as Use;
        let p = Arc::new(policy(&["tcp://localhost:5432"], &["8080"]));
        assert!(
            p.wasi_sockets_allows(addr("127.0.0.1:8080"), Use::TcpBind)
                .await
        );
        // wasi:sockets cannot rewrite a bind: the wildcard is refused unless granted.
        assert!(
            !p.wasi_sockets_allows(addr("0.0.0.0:8080"), Use::TcpBind)
                .await
        );
        assert!(
            p.wasi_sockets_allows(addr("127.0.0.1:8080"), Use::TcpListen)
                .await
        );
        // The lookup hook is all-or-nothing, so connect re-resolves granted names itself.
        assert!(
            p.wasi_sockets_allows(addr("127.0.0.1:5432"), Use::TcpConnect)
                .await
        );
        assert!(
            !p.wasi_sockets_allows(addr("127.0.0.1:5433"), Use::TcpConnect)
                .await
        );
        assert!(
            !p.wasi_sockets_allows(addr("127.0.0.1:5432"), Use::UdpSend)
                .await
        );
        let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
        p.configure_wasi_sockets(&mut builder);
        assert!(p.grants_any_name());
        assert!(!policy(&["tcp://127.0.0.1:1"], &[]).grants_any_name());
    }
}
