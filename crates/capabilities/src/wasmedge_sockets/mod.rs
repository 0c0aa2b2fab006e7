//! WasmEdge's socket extension for WASI preview-1 core modules, deny by default.
//!
//! A large body of serverless code targets WasmEdge: Rust guests on `wasmedge_wasi_socket`
//! and its tokio/hyper/mysql_async ports, which import `sock_open`, `sock_bind`,
//! `sock_connect`, `sock_getaddrinfo`, ... from `wasi_snapshot_preview1`. This module
//! implements that ABI on wasmtime so those guests run unchanged, with every bind, listen,
//! lookup, connect and send checked against the function's [`NetworkPolicy`] (WasmEdge
//! itself grants them the whole network).
//!
//! Sockets are ordinary fds to the guest, so besides the `sock_*` functions this module
//! also defines `fd_close`, `fd_fdstat_get`, `fd_fdstat_set_flags`, `fd_read`, `fd_write`,
//! `poll_oneoff` (and WasmEdge's `epoll_oneoff`): for a socket fd they act on the socket;
//! for every other fd they call wasmtime-wasi's own preview-1 implementation, so files,
//! stdio and clocks behave exactly as without the extension. Socket fds are numbered from
//! [`SOCKET_FD_BASE`] up, far above the small numbers wasmtime-wasi hands out (it numbers
//! densely from 0), so the two never collide.
//!
//! Wiring, in the host that builds a core module's linker:
//!
//! ```text
//! if let Some(abi) = wasmedge_sockets::SocketAbi::detect(&module) {
//!     wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)?;
//!     wasmedge_sockets::add_to_linker(&mut linker, &abi, |s: &mut State| (&mut s.wasi, &mut s.sockets))?;
//! }
//! // per instance:
//! let sockets = WasmEdgeSockets::new(policy.clone(), SocketLimits::default()).with_deadline(deadline);
//! ```
//!
//! The functions are async (`func_wrap_async`): run the module with `call_async` on a tokio
//! runtime. A guest blocked in `accept` or `recv` awaits readiness instead of blocking the
//! thread, and [`WasmEdgeSockets::with_deadline`] makes such a wait trap at the same
//! deadline the epoch interruption enforces in wasm code.

mod abi;
mod getaddrinfo;
mod linker;
mod ops;
mod poll;
mod socket;

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::{ExternType, Module};
use wasmtime_wasi::p1::WasiP1Ctx;

pub use linker::add_to_linker;

use crate::network::{Denial, NetworkPolicy, ResolvedNames};
use abi::Errno;
use socket::Socket;

/// The first fd number a socket gets. wasmtime-wasi numbers its descriptors densely from 0
/// (stdio, preopens, then each open file, reusing closed numbers), so it would need 2^24
/// files open at once to reach this range.
pub const SOCKET_FD_BASE: u32 = 1 << 24;

/// How many sockets one instance may hold open at once (listeners, connections and UDP
/// sockets together) unless its host says otherwise: enough for a busy server's keep-alive
/// connections, few enough that one tenant cannot take the node's file descriptors.
pub const DEFAULT_MAX_SOCKETS: usize = 1024;

/// Limits of one instance's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    pub max_sockets: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            max_sockets: DEFAULT_MAX_SOCKETS,
        }
    }
}

/// One instance's sockets: its open socket fds, what its granted lookups resolved, and the
/// policy every call is checked against.
pub struct WasmEdgeSockets {
    policy: Arc<NetworkPolicy>,
    limits: SocketLimits,
    sockets: HashMap<u32, Socket>,
    next_fd: u32,
    resolved: ResolvedNames,
    deadline: Option<tokio::time::Instant>,
}

impl WasmEdgeSockets {
    pub fn new(policy: Arc<NetworkPolicy>, limits: SocketLimits) -> Self {
        Self {
            policy,
            limits,
            sockets: HashMap::new(),
            next_fd: SOCKET_FD_BASE,
            resolved: ResolvedNames::new(),
            deadline: None,
        }
    }

    /// A guest waiting in a socket call past `deadline` traps with `Trap::Interrupt`, as a
    /// guest running wasm code past its epoch deadline does.
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(tokio::time::Instant::from_std(deadline));
        self
    }

    /// How many sockets are open.
    pub fn open_sockets(&self) -> usize {
        self.sockets.len()
    }

    fn is_socket(&self, fd: u32) -> bool {
        self.sockets.contains_key(&fd)
    }

    fn socket(&self, fd: u32) -> Result<&Socket, Fail> {
        self.sockets.get(&fd).ok_or(Fail::Errno(Errno::BADF))
    }

    fn socket_mut(&mut self, fd: u32) -> Result<&mut Socket, Fail> {
        self.sockets.get_mut(&fd).ok_or(Fail::Errno(Errno::BADF))
    }

    /// Room for one more socket, or why not.
    fn check_capacity(&self) -> Result<(), Fail> {
        if self.sockets.len() >= self.limits.max_sockets {
            return Err(Fail::Refused {
                errno: Errno::MFILE,
                message: format!(
                    "socket refused: the instance already has {} sockets open, its limit",
                    self.limits.max_sockets
                ),
            });
        }
        Ok(())
    }

    /// Takes a socket into the table and gives it its fd number.
    fn insert(&mut self, socket: Socket) -> u32 {
        loop {
            let fd = self.next_fd;
            self.next_fd = match self.next_fd.checked_add(1) {
                Some(next) if next <= i32::MAX as u32 => next,
                _ => SOCKET_FD_BASE,
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = self.sockets.entry(fd) {
                slot.insert(socket);
                return fd;
            }
        }
    }
}

/// Why a socket call did not succeed.
pub(crate) enum Fail {
    /// An error the guest sees as this errno.
    Errno(Errno),
    /// The policy said no: EACCES, and one line on the instance's stderr naming the grant.
    Denied(Denial),
    /// Something wedge never allows (AF_UNIX, SO_BINDTODEVICE) or a limit: this errno and a
    /// line on stderr saying why.
    Refused { errno: Errno, message: String },
    /// The guest traps (its deadline passed while it waited).
    Trap(wasmtime::Error),
}

impl Fail {
    fn host(error: rustix::io::Errno) -> Self {
        Fail::Errno(Errno::from_host(error))
    }

    fn deadline() -> Self {
        Fail::Trap(wasmtime::Error::from(wasmtime::Trap::Interrupt))
    }
}

impl From<Errno> for Fail {
    fn from(errno: Errno) -> Self {
        Fail::Errno(errno)
    }
}

/// Which generation of an import WasmEdge would link: V1 under the plain name, V2 where
/// the guest's signature differs (`sock_accept` with 3 params, `sock_recv_from` with 8,
/// `sock_getlocaladdr`/`sock_getpeeraddr` with 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generation {
    #[default]
    V1,
    V2,
}

/// How a module uses the extension: the generation chosen for each import whose two
/// generations differ in signature (the others always link V1 under the plain name, and
/// `*_v2` names V2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketAbi {
    pub accept: Generation,
    pub recv_from: Generation,
    pub local_addr: Generation,
    pub peer_addr: Generation,
}

/// Which generations a module's imports use overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiGeneration {
    V1,
    V2,
    /// Some of each: `wasmedge_wasi_socket` 0.5 imports V1 `sock_accept` and
    /// `sock_getpeeraddr` but V2 `sock_recv_from`.
    Mixed,
}

/// Names only WasmEdge's extension has (standard preview 1 has `sock_accept` with 3 params,
/// `sock_recv`, `sock_send` and `sock_shutdown` too, so those alone do not tell).
const EXTENSION_ONLY: &[&str] = &[
    "sock_open",
    "sock_bind",
    "sock_listen",
    "sock_connect",
    "sock_recv_from",
    "sock_send_to",
    "sock_getsockopt",
    "sock_setsockopt",
    "sock_getlocaladdr",
    "sock_getpeeraddr",
    "sock_getaddrinfo",
    "epoll_oneoff",
];

impl SocketAbi {
    /// Whether `module` imports WasmEdge's socket extension, and with which signatures.
    /// `None` for a module that needs nothing of it.
    pub fn detect(module: &Module) -> Option<Self> {
        let mut abi = SocketAbi::default();
        let mut uses = false;
        for import in module.imports() {
            if import.module() != crate::wasi::PREVIEW1_MODULE {
                continue;
            }
            let ExternType::Func(ty) = import.ty() else {
                continue;
            };
            let name = import.name();
            let params = ty.params().len();
            let pick = |v2_params: usize| {
                if params == v2_params {
                    Generation::V2
                } else {
                    Generation::V1
                }
            };
            match name {
                "sock_accept" => {
                    abi.accept = pick(3);
                    // Standard preview 1's sock_accept is the 3-parameter one.
                    uses |= abi.accept == Generation::V1;
                }
                "sock_recv_from" => abi.recv_from = pick(8),
                "sock_getlocaladdr" => abi.local_addr = pick(3),
                "sock_getpeeraddr" => abi.peer_addr = pick(3),
                _ => {}
            }
            uses |= EXTENSION_ONLY.contains(&name) || name.ends_with("_v2");
        }
        uses.then_some(abi)
    }

    /// The generation overall, for messages and docs.
    pub fn generation(&self) -> AbiGeneration {
        let all = [self.accept, self.recv_from, self.local_addr, self.peer_addr];
        if all.iter().all(|g| *g == Generation::V1) {
            AbiGeneration::V1
        } else if all.iter().all(|g| *g == Generation::V2) {
            AbiGeneration::V2
        } else {
            AbiGeneration::Mixed
        }
    }
}

/// The accessor the host gives: from its store data to WASI's preview-1 context (which
/// every non-socket fd is handed to) and this module's per-instance state.
pub trait SocketsView<T>:
    Fn(&mut T) -> (&mut WasiP1Ctx, &mut WasmEdgeSockets) + Copy + Send + Sync + 'static
{
}

impl<T, F> SocketsView<T> for F where
    F: Fn(&mut T) -> (&mut WasiP1Ctx, &mut WasmEdgeSockets) + Copy + Send + Sync + 'static
{
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abi_of(wat: &str) -> Option<SocketAbi> {
        let engine = wasmtime::Engine::default();
        SocketAbi::detect(&Module::new(&engine, wat).unwrap())
    }

    #[test]
    fn generations_are_chosen_per_import_signature() {
        let mixed = abi_of(
            r#"(module
                (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_recv_from" (func (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_getpeeraddr" (func (param i32 i32 i32 i32) (result i32))))"#,
        )
        .unwrap();
        assert_eq!(mixed.accept, Generation::V1);
        assert_eq!(mixed.recv_from, Generation::V2);
        assert_eq!(mixed.peer_addr, Generation::V1);
        assert_eq!(mixed.generation(), AbiGeneration::Mixed);
        let v2 = abi_of(
            r#"(module
                (import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_recv_from" (func (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_getlocaladdr" (func (param i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_getpeeraddr" (func (param i32 i32 i32) (result i32))))"#,
        )
        .unwrap();
        assert_eq!(v2.generation(), AbiGeneration::V2);
    }

    #[test]
    fn standard_preview1_socket_calls_alone_are_not_the_extension() {
        assert_eq!(
            abi_of(
                r#"(module
                (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "sock_recv" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#
            ),
            None
        );
        assert!(
            abi_of(
                r#"(module (import "wasi_snapshot_preview1" "sock_open_v2" (func (param i32 i32 i32) (result i32))))"#
            )
            .is_some()
        );
    }
}
