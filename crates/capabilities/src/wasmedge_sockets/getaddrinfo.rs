//! `sock_getaddrinfo`: name resolution into a result list the guest built beforehand.
//!
//! The guest passes the node name (usually with its trailing NUL counted in the length) and
//! the service, a hints `addrinfo`, and a pointer to the first of `max` `addrinfo` records
//! it linked together through `ai_next`, each with its `sockaddr` and that sockaddr's data
//! buffer. wedge fills as many records as there are answers and writes how many. Layouts
//! (all little-endian, 4-byte aligned):
//!
//! - `addrinfo` (28 bytes): `ai_flags` u16 @0, `ai_family` u8 @2, `ai_socktype` u8 @3,
//!   `ai_protocol` u8 @4, `ai_addrlen` u32 @8, `ai_addr` u32 @12, `ai_canonname` u32 @16,
//!   `ai_canonname_len` u32 @20, `ai_next` u32 @24.
//! - `sockaddr` (12 bytes): `sa_family` u8 @0, `sa_data_len` u32 @4, `sa_data` u32 @8.
//! - `sa_data`: what follows the family in the host's `sockaddr_in(6)`: the port big-endian,
//!   then the IPv4 address and 8 zero bytes (14 bytes), or the flow info, the IPv6 address
//!   and the scope id (26 bytes).
//!
//! A name is resolved only if the policy grants it; an IP literal needs no lookup (what may
//! be reached is checked at connect). Every address a granted name resolved to is
//! remembered, so the guest may then connect to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Fail;
use super::abi::{self, Errno, GuestMem};
use super::ops::Cx;

/// One answer: an address with the socket type and protocol it is for.
struct Answer {
    ip: IpAddr,
    socktype: u8,
    protocol: u8,
}

/// The arguments, as pointers into guest memory.
pub(crate) struct Request {
    pub node: (u32, u32),
    pub service: (u32, u32),
    pub hints: u32,
    pub res: u32,
    pub max: u32,
    pub res_len: u32,
}

/// A C string argument: the bytes before the first NUL (WasmEdge's guests count the NUL).
fn c_string(mem: &GuestMem<'_>, (ptr, len): (u32, u32)) -> Result<String, Errno> {
    let bytes = mem.bytes(ptr, len)?;
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8(bytes.to_vec()).map_err(|_| Errno::AINONAME)
}

/// Services a guest names instead of a number (the ones WasmEdge guests use, and the
/// databases serverless code talks to).
const SERVICES: &[(&str, u16)] = &[
    ("http", 80),
    ("https", 443),
    ("domain", 53),
    ("ftp", 21),
    ("ssh", 22),
    ("smtp", 25),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("redis", 6379),
];

pub(crate) async fn getaddrinfo(cx: &mut Cx<'_>, request: Request) -> Result<(), Fail> {
    abi::aligned(request.hints, 4)?;
    abi::aligned(request.res, 4)?;
    abi::aligned(request.res_len, 4)?;
    let node = c_string(&cx.mem, request.node)?;
    let service = c_string(&cx.mem, request.service)?;
    let hints = cx.mem.bytes(request.hints, abi::ADDRINFO_SIZE)?.to_vec();
    let first = cx.mem.u32(request.res)?;
    cx.mem.range(request.res_len, 4)?;
    if node.is_empty() && service.is_empty() {
        return Err(Errno::AINONAME.into());
    }
    if request.max < 1 {
        return Err(Errno::AIMEMORY.into());
    }
    let flags = u16::from_le_bytes([hints[0], hints[1]]);
    let (family, socktype, protocol) = (hints[2], hints[3], hints[4]);
    if flags & !abi::AI_ALL_FLAGS != 0 || (flags & abi::AI_CANONNAME != 0 && node.is_empty()) {
        return Err(Errno::AIBADFLAG.into());
    }
    if family > abi::FAMILY_INET6 {
        return Err(Errno::AIFAMILY.into());
    }
    if protocol > abi::PROTO_UDP || socktype > abi::SOCK_STREAM {
        return Err(Errno::NOSYS.into());
    }
    let port = match service.parse::<u16>() {
        Ok(port) => port,
        Err(_) if service.is_empty() => 0,
        Err(_) if flags & abi::AI_NUMERICSERV != 0 => return Err(Errno::AINONAME.into()),
        Err(_) => SERVICES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&service))
            .map(|(_, port)| *port)
            .ok_or(Errno::AISERVICE)?,
    };
    let ips = resolve(cx, &node, port, flags).await?;
    let answers = answers(&ips, family, socktype, protocol);
    if answers.is_empty() {
        return Err(Errno::AINODATA.into());
    }
    let canonical = (flags & abi::AI_CANONNAME != 0).then_some(node.as_str());
    let written = fill(
        &mut cx.mem,
        first,
        request.max,
        &answers,
        port,
        flags,
        canonical,
    )?;
    if written == 0 {
        // Every answer was larger than the sockaddr buffers the guest offered.
        return Err(Errno::AIMEMORY.into());
    }
    cx.mem.write_u32(request.res_len, written)?;
    Ok(())
}

/// The addresses for `node`: none needed for an empty node or a literal, the host resolver
/// (if the policy grants the name) for a name.
async fn resolve(cx: &mut Cx<'_>, node: &str, port: u16, flags: u16) -> Result<Vec<IpAddr>, Fail> {
    if node.is_empty() {
        return Ok(if flags & abi::AI_PASSIVE != 0 {
            vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ]
        } else {
            vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]
        });
    }
    let literal = node
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(node);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if flags & abi::AI_NUMERICHOST != 0 {
        return Err(Errno::AINONAME.into());
    }
    cx.socks
        .policy
        .check_lookup(node, (port != 0).then_some(port))
        .map_err(Fail::Denied)?;
    let lookup = tokio::net::lookup_host((node, port));
    let found = match cx.socks.deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, lookup).await {
            Ok(found) => found,
            Err(_) => return Err(Fail::deadline()),
        },
        None => lookup.await,
    };
    let found: Vec<SocketAddr> = match found {
        Ok(found) => found.collect(),
        Err(error) => {
            tracing::debug!(%error, node, "lookup failed");
            return Err(Errno::AINONAME.into());
        }
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !ips.contains(&addr.ip()) {
            ips.push(addr.ip());
        }
    }
    for ip in &ips {
        cx.socks.resolved.record(node, *ip);
    }
    Ok(ips)
}

/// One answer per address and socket type: both TCP and UDP when the hints name neither,
/// as getaddrinfo(3) gives (leaving out raw sockets, which guests cannot open).
fn answers(ips: &[IpAddr], family: u8, socktype: u8, protocol: u8) -> Vec<Answer> {
    let kinds: &[(u8, u8)] = match (socktype, protocol) {
        (abi::SOCK_STREAM, _) | (abi::SOCK_ANY, abi::PROTO_TCP) => {
            &[(abi::SOCK_STREAM, abi::PROTO_TCP)]
        }
        (abi::SOCK_DGRAM, _) | (abi::SOCK_ANY, abi::PROTO_UDP) => {
            &[(abi::SOCK_DGRAM, abi::PROTO_UDP)]
        }
        _ => &[
            (abi::SOCK_STREAM, abi::PROTO_TCP),
            (abi::SOCK_DGRAM, abi::PROTO_UDP),
        ],
    };
    ips.iter()
        .filter(|ip| match family {
            abi::FAMILY_INET4 => ip.is_ipv4(),
            abi::FAMILY_INET6 => ip.is_ipv6(),
            _ => true,
        })
        .flat_map(|ip| {
            kinds.iter().map(|(socktype, protocol)| Answer {
                ip: *ip,
                socktype: *socktype,
                protocol: *protocol,
            })
        })
        .collect()
}

/// Writes the answers into the guest's linked records; returns how many were filled. An
/// answer whose address does not fit the record's `sa_data` buffer (as its `sa_data_len`
/// states it) is left out rather than written past the buffer.
fn fill(
    mem: &mut GuestMem<'_>,
    first: u32,
    max: u32,
    answers: &[Answer],
    port: u16,
    flags: u16,
    canonical: Option<&str>,
) -> Result<u32, Errno> {
    let mut record = first;
    let mut written = 0u32;
    for answer in answers {
        if written == max {
            break;
        }
        mem.range(record, abi::ADDRINFO_SIZE)?;
        let sockaddr = mem.u32(record + 12)?;
        mem.range(sockaddr, abi::SOCKADDR_SIZE)?;
        let data_capacity = mem.u32(sockaddr + 4)?;
        let data_ptr = mem.u32(sockaddr + 8)?;
        let (family, data, addrlen) = sa_data(answer.ip, port);
        if (data_capacity as usize) < data.len() {
            continue;
        }
        mem.write(data_ptr, &data)?;
        mem.write_u8(sockaddr, family)?;
        mem.write_u32(sockaddr + 4, data.len() as u32)?;
        mem.write_u16(record, flags)?;
        mem.write_u8(record + 2, family)?;
        mem.write_u8(record + 3, answer.socktype)?;
        mem.write_u8(record + 4, answer.protocol)?;
        mem.write_u32(record + 8, addrlen)?;
        let canonname_len = match canonical {
            // The first record carries the canonical name (the name asked for: the host's
            // resolver does not report another), when the guest's buffer holds it and its NUL.
            Some(name) if written == 0 => {
                let (ptr, capacity) = (mem.u32(record + 16)?, mem.u32(record + 20)?);
                if (capacity as usize) > name.len() {
                    mem.write(ptr, name.as_bytes())?;
                    mem.write_u8(ptr + name.len() as u32, 0)?;
                    name.len() as u32
                } else {
                    0
                }
            }
            _ => 0,
        };
        mem.write_u32(record + 20, canonname_len)?;
        written += 1;
        record = mem.u32(record + 24)?;
        if record == 0 {
            break;
        }
    }
    Ok(written)
}

/// The family, `sa_data` bytes and the host `ai_addrlen` for an address.
fn sa_data(ip: IpAddr, port: u16) -> (u8, Vec<u8>, u32) {
    let mut data = port.to_be_bytes().to_vec();
    match ip {
        IpAddr::V4(v4) => {
            data.extend_from_slice(&v4.octets());
            data.extend_from_slice(&[0; 8]);
            (abi::FAMILY_INET4, data, 16)
        }
        IpAddr::V6(v6) => {
            data.extend_from_slice(&[0; 4]);
            data.extend_from_slice(&v6.octets());
            data.extend_from_slice(&[0; 4]);
            (abi::FAMILY_INET6, data, 28)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sa_data_is_the_port_big_endian_then_the_address() {
        let (family, data, addrlen) = sa_data("10.1.2.3".parse().unwrap(), 8080);
        assert_eq!(family, abi::FAMILY_INET4);
        assert_eq!(addrlen, 16);
        assert_eq!(data, [0x1f, 0x90, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
        let (family, data, addrlen) = sa_data("::1".parse().unwrap(), 443);
        assert_eq!((family, addrlen, data.len()), (abi::FAMILY_INET6, 28, 26));
        assert_eq!(&data[0..2], &[0x01, 0xbb]);
        assert_eq!(data[21], 1);
    }

    #[test]
    fn answers_follow_the_hints() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(answers(&ips, 0, 0, 0).len(), 4);
        let v4_tcp = answers(&ips, abi::FAMILY_INET4, abi::SOCK_STREAM, abi::PROTO_TCP);
        assert_eq!(v4_tcp.len(), 1);
        assert_eq!(v4_tcp[0].protocol, abi::PROTO_TCP);
        let udp = answers(&ips, 0, 0, abi::PROTO_UDP);
        assert!(udp.iter().all(|a| a.socktype == abi::SOCK_DGRAM));
    }
}
