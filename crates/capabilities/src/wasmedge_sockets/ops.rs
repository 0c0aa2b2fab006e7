//! The bodies of the socket functions: argument checks in WasmEdge's order (alignment
//! first, then memory, then values), the policy check, then the host socket call.

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustix::net::{RecvFlags, SendFlags, Shutdown};
use tokio::io::Interest;
use wasmtime::{AsContextMut, Caller, Extern};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;

use super::abi::{self, AddressBuf, Errno, GuestAddress, GuestMem, aligned, so};
use super::socket::Socket;
use super::{Fail, SOCKET_FD_BASE, SocketsView, WasmEdgeSockets};
use crate::network::Transport;

/// One call's view of the instance: the guest's memory, wasmtime-wasi's preview-1 state and
/// the sockets, borrowed together from the store.
pub(crate) struct Cx<'a> {
    pub mem: GuestMem<'a>,
    pub wasi: &'a mut WasiP1Ctx,
    pub socks: &'a mut WasmEdgeSockets,
    fuel: usize,
}

impl<'a> Cx<'a> {
    pub fn new<T>(
        caller: &'a mut Caller<'_, T>,
        get: impl SocketsView<T>,
    ) -> wasmtime::Result<Self> {
        let fuel = caller.as_context_mut().hostcall_fuel();
        let memory = match caller.get_export("memory") {
            Some(Extern::Memory(memory)) => memory,
            _ => wasmtime::bail!(
                "WasmEdge's socket functions need the module to export its memory as `memory`"
            ),
        };
        let (bytes, data) = memory.data_and_store_mut(caller);
        let (wasi, socks) = get(data);
        Ok(Self {
            mem: GuestMem(bytes),
            wasi,
            socks,
            fuel,
        })
    }

    /// wasmtime-wasi's preview-1 context and the guest memory, for one of its functions.
    pub fn p1(&mut self) -> (&mut WasiP1Ctx, wiggle::GuestMemory<'_>) {
        self.wasi.set_hostcall_fuel(self.fuel);
        (
            &mut *self.wasi,
            wiggle::GuestMemory::Unshared(&mut *self.mem.0),
        )
    }

    /// The errno the guest gets, after reporting a denial or refusal on its stderr.
    pub async fn finish(&mut self, result: Result<(), Fail>) -> wasmtime::Result<i32> {
        match result {
            Ok(()) => Ok(0),
            Err(Fail::Errno(errno)) => Ok(i32::from(errno.0)),
            Err(Fail::Denied(denial)) => {
                tracing::warn!(target: "wedge::network", "{denial}");
                tell(self.wasi, &denial.to_string()).await;
                Ok(i32::from(Errno::ACCES.0))
            }
            Err(Fail::Refused { errno, message }) => {
                tracing::warn!(target: "wedge::network", "{message}");
                tell(self.wasi, &message).await;
                Ok(i32::from(errno.0))
            }
            Err(Fail::Trap(error)) => Err(error),
        }
    }
}

/// Calls wasmtime-wasi's own implementation of a preview-1 function (for a fd that is not a
/// socket). `sync` for the functions wasmtime-wasi implements synchronously.
macro_rules! delegate {
    ($cx:expr, sync $func:ident($($arg:expr),* $(,)?)) => {{
        let (wasi, mut memory) = $cx.p1();
        wasmtime_wasi::p1::wasi_snapshot_preview1::$func(wasi, &mut memory, $($arg),*)
    }};
    ($cx:expr, $func:ident($($arg:expr),* $(,)?)) => {{
        let (wasi, mut memory) = $cx.p1();
        wasmtime_wasi::p1::wasi_snapshot_preview1::$func(wasi, &mut memory, $($arg),*).await
    }};
}
pub(crate) use delegate;

/// Writes one line to the instance's stderr (wherever its WASI context sends it: the
/// terminal under `wedge run`, the function's log under `wedge serve`).
pub(crate) async fn tell(wasi: &mut WasiP1Ctx, line: &str) {
    let line = format!("wedge: {line}\n");
    // A scratch memory for wasmtime-wasi's fd_write: one ciovec at 0, nwritten at 8, the
    // bytes at 16.
    let mut scratch = vec![0u8; 16 + line.len()];
    scratch[0..4].copy_from_slice(&16u32.to_le_bytes());
    scratch[4..8].copy_from_slice(&(line.len() as u32).to_le_bytes());
    scratch[16..].copy_from_slice(line.as_bytes());
    wasi.set_hostcall_fuel(scratch.len());
    let mut memory = wiggle::GuestMemory::Unshared(&mut scratch);
    // A guest that closed its stderr gets no line; the host log has it anyway.
    let _ =
        wasmtime_wasi::p1::wasi_snapshot_preview1::fd_write(wasi, &mut memory, 2, 0, 1, 8).await;
}

/// The errno for a fd that is not one of this instance's sockets: NOTSOCK for what is
/// probably a file or stdio, BADF for a closed or never-opened socket number.
pub(crate) fn foreign(fd: u32) -> Fail {
    Fail::Errno(if fd >= SOCKET_FD_BASE {
        Errno::BADF
    } else {
        Errno::NOTSOCK
    })
}

fn ip_of(address: GuestAddress) -> Result<IpAddr, Fail> {
    match address {
        GuestAddress::Ip(ip) => Ok(ip),
        GuestAddress::Unix => Err(unix_refused()),
    }
}

fn unix_refused() -> Fail {
    Fail::Refused {
        errno: Errno::NOSYS,
        message: "AF_UNIX socket refused: wedge gives guests no Unix sockets (no host paths)"
            .to_string(),
    }
}

pub(crate) fn open(cx: &mut Cx<'_>, family: u32, kind: u32, ro_fd: u32) -> Result<(), Fail> {
    aligned(ro_fd, 4)?;
    cx.mem.range(ro_fd, 4)?;
    let ipv6 = match family {
        1 => false,
        2 => true,
        3 => return Err(unix_refused()),
        _ => return Err(Errno::INVAL.into()),
    };
    let transport = match kind {
        1 => Transport::Udp,
        2 => Transport::Tcp,
        _ => return Err(Errno::INVAL.into()),
    };
    cx.socks.check_capacity()?;
    let socket = Socket::open(ipv6, transport)?;
    let fd = cx.socks.insert(socket);
    cx.mem.write_u32(ro_fd, fd)?;
    Ok(())
}

/// The address a bind, connect or send_to names.
fn guest_target(cx: &Cx<'_>, addr_ptr: u32, storage: bool) -> Result<IpAddr, Fail> {
    let buf = AddressBuf::read(&cx.mem, addr_ptr)?;
    ip_of(buf.decode(&cx.mem, storage)?)
}

pub(crate) fn bind(
    cx: &mut Cx<'_>,
    fd: u32,
    addr_ptr: u32,
    port: u32,
    storage: bool,
) -> Result<(), Fail> {
    let ip = guest_target(cx, addr_ptr, storage)?;
    let policy = cx.socks.policy.clone();
    let socket = cx.socks.sockets.get_mut(&fd).ok_or_else(|| foreign(fd))?;
    let landed = policy
        .check_bind(socket.transport, SocketAddr::new(ip, port as u16))
        .map_err(Fail::Denied)?;
    rustix::net::bind(socket.fd(), &landed).map_err(Fail::host)?;
    socket.requested_port = Some(port as u16);
    if socket.transport == Transport::Udp {
        socket.receives_from_anyone = policy.is_listening_port(socket.local_addr()?);
    }
    Ok(())
}

pub(crate) fn listen(cx: &mut Cx<'_>, fd: u32, backlog: i32) -> Result<(), Fail> {
    let policy = cx.socks.policy.clone();
    let socket = cx.socks.sockets.get_mut(&fd).ok_or_else(|| foreign(fd))?;
    if socket.transport != Transport::Tcp {
        return Err(Errno::NOTSUP.into());
    }
    let local = socket.local_addr()?;
    // A port the system picked (or will pick: listen on an unbound socket) is checked as
    // port 0, which no grant names.
    let checked = match socket.requested_port {
        Some(0) | None => SocketAddr::new(local.ip(), 0),
        Some(_) => local,
    };
    policy.check_listen(checked).map_err(Fail::Denied)?;
    rustix::net::listen(socket.fd(), backlog).map_err(Fail::host)?;
    socket.listening = true;
    Ok(())
}

/// `flags`: None for V1 (the new socket blocks), Some for V2 (its fdflags).
pub(crate) async fn accept(
    cx: &mut Cx<'_>,
    fd: u32,
    flags: Option<u32>,
    ro_fd: u32,
) -> Result<(), Fail> {
    aligned(ro_fd, 4)?;
    cx.mem.range(ro_fd, 4)?;
    let nonblocking = match flags {
        None => false,
        Some(flags) if flags & !u32::from(abi::FDFLAGS_ALL) != 0 => {
            return Err(Errno::INVAL.into());
        }
        Some(flags) => flags & u32::from(abi::FDFLAGS_NONBLOCK) != 0,
    };
    cx.socks.check_capacity()?;
    let deadline = cx.socks.deadline;
    let listener = cx.socks.socket(fd)?;
    let conn = listener
        .io(Interest::READABLE, listener.recv_timeout, deadline, |fd| {
            rustix::net::accept_with(
                fd,
                rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
            )
        })
        .await?;
    let accepted = listener.accepted(conn, nonblocking)?;
    let new_fd = cx.socks.insert(accepted);
    cx.mem.write_u32(ro_fd, new_fd)?;
    Ok(())
}

pub(crate) async fn connect(
    cx: &mut Cx<'_>,
    fd: u32,
    addr_ptr: u32,
    port: u32,
    storage: bool,
) -> Result<(), Fail> {
    let ip = guest_target(cx, addr_ptr, storage)?;
    let socks = &*cx.socks;
    let socket = socks.sockets.get(&fd).ok_or_else(|| foreign(fd))?;
    let target = SocketAddr::new(ip, port as u16);
    socks
        .policy
        .check_connect(socket.transport, target, &socks.resolved)
        .map_err(Fail::Denied)?;
    match rustix::net::connect(socket.fd(), &target) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INPROGRESS) if !socket.nonblocking => {
            // A blocking connect: wait until the handshake ends, then report its outcome
            // (SO_ERROR), as the kernel would have.
            let outcome = socket
                .io(
                    Interest::WRITABLE,
                    socket.send_timeout,
                    socks.deadline,
                    |fd| {
                        if !super::poll::ready_now(fd, rustix::event::PollFlags::OUT) {
                            return Err(rustix::io::Errno::AGAIN);
                        }
                        rustix::net::sockopt::socket_error(fd)
                    },
                )
                .await;
            match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(Fail::host(error)),
                // SO_SNDTIMEO ran out: Linux answers EINPROGRESS.
                Err(Fail::Errno(Errno::AGAIN)) => Err(Errno::INPROGRESS.into()),
                Err(fail) => Err(fail),
            }
        }
        Err(error) => Err(Fail::host(error)),
    }
}

/// What one receive got.
pub(crate) struct Received {
    pub len: usize,
    pub truncated: bool,
    pub from: Option<SocketAddr>,
}

/// The most a receive through a host buffer (UDP, MSG_PEEK) takes at once: a UDP datagram
/// is at most 65,507 bytes.
const BOUNCE_LIMIT: usize = 64 * 1024;

/// Receives into the guest's iovecs, blocking or not as the socket is.
pub(crate) async fn receive(
    socks: &WasmEdgeSockets,
    mem: &mut GuestMem<'_>,
    fd: u32,
    iovecs: &[(u32, u32)],
    flags: u16,
) -> Result<Received, Fail> {
    let socket = socks.socket(fd)?;
    let want: usize = iovecs.iter().map(|(_, len)| *len as usize).sum();
    if socket.transport == Transport::Udp || flags & abi::RIFLAGS_PEEK != 0 {
        return receive_through_buffer(socks, socket, mem, iovecs, want, flags).await;
    }
    // TCP: straight into guest memory, one iovec after the other. The first wait is the
    // socket's (blocking or not); after data came, the rest is taken only if it is already
    // there, unless MSG_WAITALL asks to wait for all of it.
    let wait_all = flags & abi::RIFLAGS_WAITALL != 0;
    let mut total = 0usize;
    for &(buf, len) in iovecs {
        let mut offset = 0u32;
        while offset < len {
            let range = mem.range(buf + offset, len - offset)?;
            let target = &mut mem.0[range];
            let attempt = |fd: std::os::fd::BorrowedFd<'_>| {
                rustix::net::recv(fd, &mut *target, RecvFlags::empty()).map(|(n, _)| n)
            };
            let result = if total == 0 || wait_all {
                socket
                    .io(
                        Interest::READABLE,
                        socket.recv_timeout,
                        socks.deadline,
                        attempt,
                    )
                    .await
            } else {
                let mut attempt = attempt;
                attempt(socket.fd()).map_err(Fail::host)
            };
            match result {
                Ok(0) => return Ok(received(total)),
                Ok(n) => {
                    total += n;
                    offset += n as u32;
                    if !wait_all && offset < len {
                        return Ok(received(total));
                    }
                }
                Err(_) if total > 0 => return Ok(received(total)),
                Err(fail) => return Err(fail),
            }
        }
    }
    if want == 0 {
        // A zero-length read returns at once, as recv(2) does.
        return Ok(received(0));
    }
    Ok(received(total))
}

fn received(len: usize) -> Received {
    Received {
        len,
        truncated: false,
        from: None,
    }
}

/// UDP (one datagram per call) and MSG_PEEK (the same bytes again next time) through a host
/// buffer, then scattered into the iovecs.
async fn receive_through_buffer(
    socks: &WasmEdgeSockets,
    socket: &Socket,
    mem: &mut GuestMem<'_>,
    iovecs: &[(u32, u32)],
    want: usize,
    flags: u16,
) -> Result<Received, Fail> {
    let mut buffer = vec![0u8; want.min(BOUNCE_LIMIT)];
    let mut host_flags = RecvFlags::empty();
    if flags & abi::RIFLAGS_PEEK != 0 {
        host_flags |= RecvFlags::PEEK;
    }
    if flags & abi::RIFLAGS_WAITALL != 0 {
        host_flags |= RecvFlags::WAITALL;
    }
    let udp = socket.transport == Transport::Udp;
    if udp {
        host_flags |= RecvFlags::TRUNC;
    }
    let (len, full, from) = loop {
        let (len, full, from) = socket
            .io(
                Interest::READABLE,
                socket.recv_timeout,
                socks.deadline,
                |fd| rustix::net::recvfrom(fd, &mut buffer[..], host_flags),
            )
            .await?;
        let from = from.and_then(|addr| SocketAddr::try_from(addr).ok());
        // A UDP socket that holds no listen grant hears only from where it may send: a
        // datagram from anywhere else is dropped, as a stateful firewall would.
        if let (true, false, Some(sender)) = (udp, socket.receives_from_anyone, from)
            && socks
                .policy
                .check_connect(Transport::Udp, sender, &socks.resolved)
                .is_err()
        {
            tracing::debug!(%sender, "dropped a datagram from an address the guest may not reach");
            if host_flags.contains(RecvFlags::PEEK) {
                // Take the peeked datagram off the queue.
                let _ = rustix::net::recv(socket.fd(), &mut [0u8; 1][..], RecvFlags::DONTWAIT);
            }
            continue;
        }
        break (len, full, from);
    };
    scatter(mem, iovecs, &buffer[..len])?;
    Ok(Received {
        len,
        truncated: udp && full > len,
        from,
    })
}

fn scatter(mem: &mut GuestMem<'_>, iovecs: &[(u32, u32)], mut data: &[u8]) -> Result<(), Errno> {
    for &(buf, len) in iovecs {
        if data.is_empty() {
            break;
        }
        let n = data.len().min(len as usize);
        mem.write(buf, &data[..n])?;
        data = &data[n..];
    }
    Ok(())
}

/// Sends the guest's iovecs (gathered by one sendmsg, no copy) to the connected peer, or to
/// `to`. A blocking TCP socket sends everything (waiting as needed), as send(2) on a
/// blocking socket does; a non-blocking one sends what fits now.
pub(crate) async fn transmit(
    socks: &WasmEdgeSockets,
    mem: &GuestMem<'_>,
    fd: u32,
    iovecs: &[(u32, u32)],
    to: Option<SocketAddr>,
) -> Result<usize, Fail> {
    let socket = socks.socket(fd)?;
    let bytes: &[u8] = &*mem.0;
    let total: usize = iovecs.iter().map(|(_, len)| *len as usize).sum();
    let mut sent = 0usize;
    loop {
        let slices = slices_from(bytes, iovecs, sent);
        let attempt = |fd: std::os::fd::BorrowedFd<'_>| {
            let mut control = rustix::net::SendAncillaryBuffer::default();
            match to {
                Some(to) => {
                    rustix::net::sendmsg_addr(fd, &to, &slices, &mut control, SendFlags::NOSIGNAL)
                }
                None => rustix::net::sendmsg(fd, &slices, &mut control, SendFlags::NOSIGNAL),
            }
        };
        match socket
            .io(
                Interest::WRITABLE,
                socket.send_timeout,
                socks.deadline,
                attempt,
            )
            .await
        {
            Ok(n) => sent += n,
            Err(_) if sent > 0 => return Ok(sent),
            Err(fail) => return Err(fail),
        }
        if sent >= total || socket.nonblocking || socket.transport == Transport::Udp {
            return Ok(sent);
        }
    }
}

fn slices_from<'m>(bytes: &'m [u8], iovecs: &[(u32, u32)], mut skip: usize) -> Vec<IoSlice<'m>> {
    let mut slices = Vec::with_capacity(iovecs.len());
    for &(buf, len) in iovecs {
        let (start, len) = (buf as usize, len as usize);
        if skip >= len {
            skip -= len;
            continue;
        }
        // Every iovec was bounds-checked when it was read.
        slices.push(IoSlice::new(&bytes[start + skip..start + len]));
        skip = 0;
    }
    slices
}

pub(crate) async fn recv(
    cx: &mut Cx<'_>,
    fd: u32,
    (ri_ptr, ri_len, ri_flags): (u32, u32, u32),
    ro_len: u32,
    ro_flags: u32,
) -> Result<(), Fail> {
    aligned(ri_ptr, 4)?;
    aligned(ro_len, 4)?;
    aligned(ro_flags, 2)?;
    let flags = ri_flags_of(ri_flags)?;
    let iovecs = cx.mem.iovecs(ri_ptr, ri_len)?;
    cx.mem.range(ro_len, 4)?;
    cx.mem.range(ro_flags, 2)?;
    let got = receive(cx.socks, &mut cx.mem, fd, &iovecs, flags).await?;
    cx.mem.write_u32(ro_len, got.len as u32)?;
    cx.mem.write_u16(ro_flags, roflags(&got))?;
    Ok(())
}

fn ri_flags_of(ri_flags: u32) -> Result<u16, Fail> {
    if ri_flags & !u32::from(abi::RIFLAGS_PEEK | abi::RIFLAGS_WAITALL) != 0 {
        return Err(Errno::INVAL.into());
    }
    Ok(ri_flags as u16)
}

fn roflags(got: &Received) -> u16 {
    if got.truncated {
        abi::ROFLAGS_TRUNCATED
    } else {
        0
    }
}

/// `sock_recv_from`: V1 writes only the sender's address bytes; V2 (`port_ptr` given)
/// also takes the 128-byte form (family written) and writes the port, in network byte order
/// as WasmEdge does.
pub(crate) async fn recv_from(
    cx: &mut Cx<'_>,
    fd: u32,
    (ri_ptr, ri_len, ri_flags): (u32, u32, u32),
    addr_ptr: u32,
    port_ptr: Option<u32>,
    (ro_len, ro_flags): (u32, u32),
) -> Result<(), Fail> {
    aligned(ri_ptr, 4)?;
    aligned(addr_ptr, 4)?;
    if let Some(port_ptr) = port_ptr {
        aligned(port_ptr, 2)?;
    }
    aligned(ro_len, 4)?;
    aligned(ro_flags, 2)?;
    let address = AddressBuf::read(&cx.mem, addr_ptr)?;
    if port_ptr.is_some() && ![4, 16, abi::ADDR_STORAGE_SIZE].contains(&address.len) {
        return Err(Errno::INVAL.into());
    }
    let flags = ri_flags_of(ri_flags)?;
    let iovecs = cx.mem.iovecs(ri_ptr, ri_len)?;
    if let Some(port_ptr) = port_ptr {
        cx.mem.range(port_ptr, 2)?;
    }
    cx.mem.range(ro_len, 4)?;
    cx.mem.range(ro_flags, 2)?;
    if !cx.socks.is_socket(fd) {
        return Err(foreign(fd));
    }
    let got = receive(cx.socks, &mut cx.mem, fd, &iovecs, flags).await?;
    if let Some(from) = got.from {
        if address.len == abi::ADDR_STORAGE_SIZE && port_ptr.is_some() {
            address.write_storage(&mut cx.mem, from.ip())?;
        } else if address.len as usize >= abi::ip_bytes(from.ip()).len() {
            address.write_raw(&mut cx.mem, from.ip())?;
        }
        if let Some(port_ptr) = port_ptr {
            cx.mem.write(port_ptr, &from.port().to_be_bytes())?;
        }
    }
    cx.mem.write_u32(ro_len, got.len as u32)?;
    cx.mem.write_u16(ro_flags, roflags(&got))?;
    Ok(())
}

pub(crate) async fn send(
    cx: &mut Cx<'_>,
    fd: u32,
    (si_ptr, si_len, si_flags): (u32, u32, u32),
    so_len: u32,
) -> Result<(), Fail> {
    aligned(si_ptr, 4)?;
    aligned(so_len, 4)?;
    if si_flags != 0 {
        return Err(Errno::INVAL.into());
    }
    let iovecs = cx.mem.iovecs(si_ptr, si_len)?;
    cx.mem.range(so_len, 4)?;
    let sent = transmit(cx.socks, &cx.mem, fd, &iovecs, None).await?;
    cx.mem.write_u32(so_len, sent as u32)?;
    Ok(())
}

pub(crate) async fn send_to(
    cx: &mut Cx<'_>,
    fd: u32,
    (si_ptr, si_len, si_flags): (u32, u32, u32),
    (addr_ptr, port): (u32, u32),
    so_len: u32,
    storage: bool,
) -> Result<(), Fail> {
    let address = AddressBuf::read(&cx.mem, addr_ptr)?;
    aligned(si_ptr, 4)?;
    aligned(so_len, 4)?;
    let ip = ip_of(address.decode(&cx.mem, storage)?)?;
    if si_flags != 0 {
        return Err(Errno::INVAL.into());
    }
    let iovecs = cx.mem.iovecs(si_ptr, si_len)?;
    cx.mem.range(so_len, 4)?;
    let socks = &*cx.socks;
    let socket = socks.sockets.get(&fd).ok_or_else(|| foreign(fd))?;
    let to = match socket.transport {
        // A stream's peer is fixed: Linux ignores the address, and so does WasmEdge.
        Transport::Tcp => None,
        Transport::Udp => {
            let to = SocketAddr::new(ip, port as u16);
            socks
                .policy
                .check_connect(Transport::Udp, to, &socks.resolved)
                .map_err(Fail::Denied)?;
            Some(to)
        }
    };
    let sent = transmit(socks, &cx.mem, fd, &iovecs, to).await?;
    cx.mem.write_u32(so_len, sent as u32)?;
    Ok(())
}

pub(crate) fn shutdown(cx: &mut Cx<'_>, fd: u32, how: u32) -> Result<(), Fail> {
    if how & !(abi::SDFLAGS_RD | abi::SDFLAGS_WR) != 0 {
        return Err(Errno::INVAL.into());
    }
    let socket = cx.socks.socket(fd)?;
    // WasmEdge maps an empty flag set to SHUT_RD; so does wedge.
    let how = match how {
        abi::SDFLAGS_WR => Shutdown::Write,
        3 => Shutdown::Both,
        _ => Shutdown::Read,
    };
    rustix::net::shutdown(socket.fd(), how).map_err(Fail::host)
}

fn check_option(level: u32, name: u32) -> Result<(), Fail> {
    if level != abi::SOL_SOCKET || name > so::BINDTODEVICE {
        return Err(Errno::INVAL.into());
    }
    Ok(())
}

fn bindtodevice_refused() -> Fail {
    Fail::Refused {
        errno: Errno::ACCES,
        message: "SO_BINDTODEVICE refused: a guest may not pick the host's network interface"
            .to_string(),
    }
}

fn timeval(duration: Option<Duration>) -> Vec<u8> {
    let duration = duration.unwrap_or_default();
    let mut bytes = (duration.as_secs() as i64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&i64::from(duration.subsec_micros()).to_le_bytes());
    bytes
}

fn int(value: i32) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

pub(crate) fn getsockopt(
    cx: &mut Cx<'_>,
    fd: u32,
    (level, name): (u32, u32),
    flag_ptr: u32,
    size_ptr: u32,
) -> Result<(), Fail> {
    aligned(size_ptr, 4)?;
    check_option(level, name)?;
    let size = cx.mem.u32(size_ptr)?;
    cx.mem.range(flag_ptr, size)?;
    let socket = cx.socks.sockets.get(&fd).ok_or_else(|| foreign(fd))?;
    let fd = socket.fd();
    let host = |r: rustix::io::Result<bool>| r.map(|b| int(i32::from(b))).map_err(Fail::host);
    let value = match name {
        so::REUSEADDR => host(rustix::net::sockopt::socket_reuseaddr(fd))?,
        so::TYPE => int(match socket.transport {
            Transport::Udp => i32::from(abi::SOCK_DGRAM),
            Transport::Tcp => i32::from(abi::SOCK_STREAM),
        }),
        so::ERROR => int(
            match rustix::net::sockopt::socket_error(fd).map_err(Fail::host)? {
                Ok(()) => 0,
                Err(error) => i32::from(Errno::from_host(error).0),
            },
        ),
        so::DONTROUTE => int(socket.dontroute),
        so::BROADCAST => host(rustix::net::sockopt::socket_broadcast(fd))?,
        so::SNDBUF => {
            int(rustix::net::sockopt::socket_send_buffer_size(fd).map_err(Fail::host)? as i32)
        }
        so::RCVBUF => {
            int(rustix::net::sockopt::socket_recv_buffer_size(fd).map_err(Fail::host)? as i32)
        }
        so::KEEPALIVE => host(rustix::net::sockopt::socket_keepalive(fd))?,
        so::OOBINLINE => host(rustix::net::sockopt::socket_oobinline(fd))?,
        so::LINGER => {
            let linger = rustix::net::sockopt::socket_linger(fd).map_err(Fail::host)?;
            let mut bytes = int(i32::from(linger.is_some()));
            bytes.extend(int(linger.map_or(0, |d| d.as_secs() as i32)));
            bytes
        }
        so::RCVLOWAT => int(socket.rcvlowat),
        so::RCVTIMEO => timeval(socket.recv_timeout),
        so::SNDTIMEO => timeval(socket.send_timeout),
        so::ACCEPTCONN => int(i32::from(socket.listening)),
        // Never bound to a device: the empty name.
        _ => Vec::new(),
    };
    let written = value.len().min(size as usize);
    cx.mem.write(flag_ptr, &value[..written])?;
    cx.mem.write_u32(size_ptr, written as u32)?;
    Ok(())
}

pub(crate) fn setsockopt(
    cx: &mut Cx<'_>,
    fd: u32,
    (level, name): (u32, u32),
    flag_ptr: u32,
    size: u32,
) -> Result<(), Fail> {
    check_option(level, name)?;
    let flag = cx.mem.bytes(flag_ptr, size)?.to_vec();
    let socket = cx.socks.sockets.get_mut(&fd).ok_or_else(|| foreign(fd))?;
    let read_i32 = |at: usize| -> Result<i32, Fail> {
        flag.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_le_bytes)
            .ok_or(Fail::Errno(Errno::INVAL))
    };
    let read_timeval = || -> Result<Option<Duration>, Fail> {
        let part = |at: usize| {
            flag.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_le_bytes)
                .ok_or(Fail::Errno(Errno::INVAL))
        };
        let (secs, micros) = (part(0)?, part(8)?);
        if secs < 0 || !(0..1_000_000).contains(&micros) {
            return Err(Errno::INVAL.into());
        }
        let duration = Duration::from_secs(secs as u64) + Duration::from_micros(micros as u64);
        Ok((!duration.is_zero()).then_some(duration))
    };
    let fd = socket.fd();
    use rustix::net::sockopt as opt;
    match name {
        so::REUSEADDR => opt::set_socket_reuseaddr(fd, read_i32(0)? != 0).map_err(Fail::host),
        so::BROADCAST => opt::set_socket_broadcast(fd, read_i32(0)? != 0).map_err(Fail::host),
        so::SNDBUF => {
            opt::set_socket_send_buffer_size(fd, read_i32(0)?.max(0) as usize).map_err(Fail::host)
        }
        so::RCVBUF => {
            opt::set_socket_recv_buffer_size(fd, read_i32(0)?.max(0) as usize).map_err(Fail::host)
        }
        so::KEEPALIVE => opt::set_socket_keepalive(fd, read_i32(0)? != 0).map_err(Fail::host),
        so::OOBINLINE => opt::set_socket_oobinline(fd, read_i32(0)? != 0).map_err(Fail::host),
        so::LINGER => {
            let (on, secs) = (read_i32(0)?, read_i32(4)?);
            let linger = (on != 0).then(|| Duration::from_secs(secs.max(0) as u64));
            opt::set_socket_linger(fd, linger).map_err(Fail::host)
        }
        so::DONTROUTE => {
            socket.dontroute = read_i32(0)?;
            Ok(())
        }
        so::RCVLOWAT => {
            socket.rcvlowat = read_i32(0)?.max(1);
            Ok(())
        }
        so::RCVTIMEO => {
            socket.recv_timeout = read_timeval()?;
            Ok(())
        }
        so::SNDTIMEO => {
            socket.send_timeout = read_timeval()?;
            Ok(())
        }
        so::BINDTODEVICE => Err(bindtodevice_refused()),
        // SO_TYPE, SO_ERROR, SO_ACCEPTCONN are read-only, as in Linux.
        _ => Err(Errno::NOPROTOOPT.into()),
    }
}

/// `sock_getlocaladdr` / `sock_getpeeraddr`. V1 (`type_ptr` given): a raw 4- or 16-byte
/// buffer, the type written as 4 or 6 (WasmEdge's long-standing numbering, not the family
/// enum), the port as a u32 in host order. V2: the 128-byte form only.
pub(crate) fn socket_address(
    cx: &mut Cx<'_>,
    fd: u32,
    peer: bool,
    addr_ptr: u32,
    type_ptr: Option<u32>,
    port_ptr: u32,
) -> Result<(), Fail> {
    aligned(addr_ptr, 4)?;
    if let Some(type_ptr) = type_ptr {
        aligned(type_ptr, 4)?;
    }
    aligned(port_ptr, 4)?;
    let address = AddressBuf::read(&cx.mem, addr_ptr)?;
    let v2 = type_ptr.is_none();
    let valid = if v2 {
        address.len == abi::ADDR_STORAGE_SIZE
    } else {
        address.len == 4 || address.len == 16
    };
    if !valid {
        return Err(Errno::INVAL.into());
    }
    if let Some(type_ptr) = type_ptr {
        cx.mem.range(type_ptr, 4)?;
    }
    cx.mem.range(port_ptr, 4)?;
    let socket = cx.socks.sockets.get(&fd).ok_or_else(|| foreign(fd))?;
    let addr = if peer {
        socket.peer_addr()?
    } else {
        socket.local_addr()?
    };
    if v2 {
        address.write_storage(&mut cx.mem, addr.ip())?;
    } else {
        address.write_raw(&mut cx.mem, addr.ip())?;
    }
    if let Some(type_ptr) = type_ptr {
        cx.mem
            .write_u32(type_ptr, if addr.is_ipv4() { 4 } else { 6 })?;
    }
    cx.mem.write_u32(port_ptr, u32::from(addr.port()))?;
    Ok(())
}

pub(crate) fn fdstat_get(cx: &mut Cx<'_>, fd: u32, buf: u32) -> Result<(), Fail> {
    aligned(buf, 8).map_err(|_| Errno::INVAL)?;
    cx.mem.range(buf, abi::FDSTAT_SIZE)?;
    let socket = cx.socks.socket(fd)?;
    let mut stat = [0u8; abi::FDSTAT_SIZE as usize];
    stat[0] = match socket.transport {
        Transport::Tcp => abi::FILETYPE_SOCKET_STREAM,
        Transport::Udp => abi::FILETYPE_SOCKET_DGRAM,
    };
    let flags = if socket.nonblocking {
        abi::FDFLAGS_NONBLOCK
    } else {
        0
    };
    stat[2..4].copy_from_slice(&flags.to_le_bytes());
    stat[8..16].copy_from_slice(&abi::SOCKET_RIGHTS.to_le_bytes());
    stat[16..24].copy_from_slice(&abi::SOCKET_RIGHTS.to_le_bytes());
    cx.mem.write(buf, &stat)?;
    Ok(())
}

pub(crate) fn fdstat_set_flags(cx: &mut Cx<'_>, fd: u32, flags: u32) -> Result<(), Fail> {
    if flags & !u32::from(abi::FDFLAGS_ALL) != 0 {
        return Err(Errno::INVAL.into());
    }
    // APPEND and the sync flags mean nothing on a socket; Linux's F_SETFL ignores them.
    cx.socks.socket_mut(fd)?.nonblocking = flags & u32::from(abi::FDFLAGS_NONBLOCK) != 0;
    Ok(())
}

/// `fd_read` / `fd_write` on a socket: a receive or send without flags.
pub(crate) async fn fd_io(
    cx: &mut Cx<'_>,
    fd: u32,
    (iovs, count): (u32, u32),
    done_ptr: u32,
    write: bool,
) -> Result<(), Fail> {
    aligned(iovs, 4).map_err(|_| Errno::INVAL)?;
    aligned(done_ptr, 4).map_err(|_| Errno::INVAL)?;
    let iovecs = cx.mem.iovecs(iovs, count)?;
    cx.mem.range(done_ptr, 4)?;
    let done = if write {
        transmit(cx.socks, &cx.mem, fd, &iovecs, None).await?
    } else {
        receive(cx.socks, &mut cx.mem, fd, &iovecs, 0).await?.len
    };
    cx.mem.write_u32(done_ptr, done as u32)?;
    Ok(())
}
