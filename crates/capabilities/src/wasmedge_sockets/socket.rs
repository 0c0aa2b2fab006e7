//! One guest socket: a host socket that is always non-blocking underneath, registered with
//! tokio's reactor, plus the guest-visible state WasmEdge keeps in the kernel (blocking or
//! not, timeouts) that wedge keeps here instead.
//!
//! Why non-blocking underneath: a guest blocked in `accept` or `recv` must not block the
//! thread its runtime drives other guests (and its own timers) on. A blocking call from the
//! guest becomes "try the syscall; on EAGAIN, await readiness; try again", with the
//! socket's own timeout and the instance's deadline around the wait.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Fail;
use super::abi::Errno;
use crate::network::Transport;

pub(crate) struct Socket {
    io: AsyncFd<OwnedFd>,
    pub transport: Transport,
    pub ipv6: bool,
    /// The guest's view: a non-blocking socket answers AGAIN instead of waiting.
    pub nonblocking: bool,
    pub listening: bool,
    /// The port the guest asked to bind (0: the system picks one; None: never bound).
    pub requested_port: Option<u16>,
    /// SO_RCVTIMEO / SO_SNDTIMEO: how long a blocking call waits (None: forever).
    pub recv_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    /// SO_DONTROUTE and SO_RCVLOWAT are remembered for getsockopt, not applied: readiness
    /// and routing stay the host's.
    pub dontroute: i32,
    pub rcvlowat: i32,
    /// A UDP socket bound to a granted listen port takes datagrams from anyone; any other
    /// takes them only from the destinations it may send to.
    pub receives_from_anyone: bool,
}

impl Socket {
    /// A new socket (inside a tokio runtime: it registers with the reactor). Every TCP
    /// socket gets TCP_NODELAY: the ABI has no way to ask for it, and a request/response
    /// server behind Nagle and delayed ACK waits 40 ms per response.
    pub fn open(ipv6: bool, transport: Transport) -> Result<Self, Errno> {
        let domain = if ipv6 {
            AddressFamily::INET6
        } else {
            AddressFamily::INET
        };
        let kind = match transport {
            Transport::Tcp => SocketType::STREAM,
            Transport::Udp => SocketType::DGRAM,
        };
        let fd = rustix::net::socket_with(
            domain,
            kind,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(Errno::from_host)?;
        if transport == Transport::Tcp {
            rustix::net::sockopt::set_tcp_nodelay(&fd, true).map_err(Errno::from_host)?;
        }
        Self::from_fd(fd, ipv6, transport)
    }

    /// An accepted connection of this listener.
    pub fn accepted(&self, fd: OwnedFd, nonblocking: bool) -> Result<Self, Errno> {
        rustix::net::sockopt::set_tcp_nodelay(&fd, true).map_err(Errno::from_host)?;
        let mut socket = Self::from_fd(fd, self.ipv6, Transport::Tcp)?;
        socket.nonblocking = nonblocking;
        Ok(socket)
    }

    fn from_fd(fd: OwnedFd, ipv6: bool, transport: Transport) -> Result<Self, Errno> {
        // `AsyncFd::new` is deprecated because a generic `T` may change or close the fd it
        // reports while registered. An `OwnedFd` cannot: it holds one fd until it is dropped,
        // which deregisters it first. So this use is sound, and needs no `unsafe`.
        #[allow(deprecated)]
        let io = AsyncFd::new(fd).map_err(|error| {
            tracing::warn!(%error, "cannot register a guest socket with the reactor");
            Errno::NOBUFS
        })?;
        Ok(Self {
            io,
            transport,
            ipv6,
            nonblocking: false,
            listening: false,
            requested_port: None,
            recv_timeout: None,
            send_timeout: None,
            dontroute: 0,
            rcvlowat: 1,
            receives_from_anyone: false,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }

    pub fn local_addr(&self) -> Result<SocketAddr, Errno> {
        let addr = rustix::net::getsockname(self.fd()).map_err(Errno::from_host)?;
        SocketAddr::try_from(addr).map_err(|_| Errno::AFNOSUPPORT)
    }

    pub fn peer_addr(&self) -> Result<SocketAddr, Errno> {
        match rustix::net::getpeername(self.fd()).map_err(Errno::from_host)? {
            Some(addr) => SocketAddr::try_from(addr).map_err(|_| Errno::AFNOSUPPORT),
            None => Err(Errno::NOTCONN),
        }
    }

    /// Runs `op` (a syscall on the non-blocking host socket) the way a blocking or
    /// non-blocking guest socket would: on EAGAIN a non-blocking socket answers AGAIN; a
    /// blocking one waits for `interest`, at most `timeout` (then AGAIN, as Linux answers
    /// an expired SO_RCVTIMEO) and never past the instance's `deadline` (then the guest
    /// traps, as the epoch deadline would have stopped it).
    pub async fn io<R>(
        &self,
        interest: Interest,
        timeout: Option<Duration>,
        deadline: Option<tokio::time::Instant>,
        mut op: impl FnMut(BorrowedFd<'_>) -> rustix::io::Result<R>,
    ) -> Result<R, Fail> {
        match retry_intr(|| op(self.fd())) {
            Err(rustix::io::Errno::AGAIN) if !self.nonblocking => {}
            Err(error) => return Err(Fail::host(error)),
            Ok(value) => return Ok(value),
        }
        let timeout_at = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let mut guard = wait(self.io.ready(interest), timeout_at, deadline).await?;
            match retry_intr(|| op(self.fd())) {
                // Readiness was stale (or another caller took the data): wait again.
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(error) => return Err(Fail::host(error)),
                Ok(value) => return Ok(value),
            }
        }
    }

    /// Waits until tokio believes the socket is ready for `interest` (for poll_oneoff,
    /// which then checks with poll(2)).
    pub fn poll_ready(
        &self,
        interest: Interest,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>>> {
        if interest.is_writable() {
            self.io.poll_write_ready(cx)
        } else {
            self.io.poll_read_ready(cx)
        }
    }
}

fn retry_intr<R>(mut op: impl FnMut() -> rustix::io::Result<R>) -> rustix::io::Result<R> {
    loop {
        match op() {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Awaits `ready` unless the socket's timeout or the instance's deadline comes first.
async fn wait<F: std::future::Future<Output = std::io::Result<G>>, G>(
    ready: F,
    timeout_at: Option<tokio::time::Instant>,
    deadline: Option<tokio::time::Instant>,
) -> Result<G, Fail> {
    let sleep_until = |at: Option<tokio::time::Instant>| async move {
        match at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        ready = ready => ready.map_err(|error| {
            tracing::warn!(%error, "waiting on a guest socket failed");
            Fail::Errno(Errno::IO)
        }),
        () = sleep_until(timeout_at) => Err(Fail::Errno(Errno::AGAIN)),
        () = sleep_until(deadline) => Err(Fail::deadline()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_tcp_stream_has_nodelay_set() {
        let listener = Socket::open(false, Transport::Tcp).unwrap();
        assert!(rustix::net::sockopt::tcp_nodelay(listener.fd()).unwrap());
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        rustix::net::bind(listener.fd(), &loopback).unwrap();
        rustix::net::listen(listener.fd(), 1).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let conn = listener
            .io(Interest::READABLE, None, None, |fd| {
                rustix::net::accept_with(fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
            })
            .await
            .ok()
            .unwrap();
        let accepted = listener.accepted(conn, false).unwrap();
        assert!(rustix::net::sockopt::tcp_nodelay(accepted.fd()).unwrap());
        drop(client);
    }
}
