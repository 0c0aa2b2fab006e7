//! Registers the extension's functions (and the fd functions it shadows) in a linker.

use wasmtime::{Caller, Linker};

use super::getaddrinfo::{self, Request};
use super::ops::{self, Cx, delegate};
use super::poll;
use super::{Generation, SocketAbi, SocketsView};
use crate::wasi::PREVIEW1_MODULE;

/// Defines one async host function: every argument is an i32 (the ABI has no other type),
/// turned into the u32 it means, and the body answers the guest's errno.
macro_rules! func {
    ($linker:expr, $get:expr, $name:expr, |$cx:ident $(, $arg:ident)*| $body:expr) => {
        $linker.func_wrap_async(
            PREVIEW1_MODULE,
            $name,
            move |mut caller: Caller<'_, T>, ($($arg,)*): ($(func!(@i32 $arg),)*)| {
                Box::new(async move {
                    let $cx = &mut Cx::new(&mut caller, $get)?;
                    $(let $arg = $arg as u32;)*
                    $body
                })
            },
        )?;
    };
    (@i32 $arg:ident) => { i32 };
}

/// Adds WasmEdge's socket extension to `linker`, with the signatures `abi` (from
/// [`SocketAbi::detect`] on the module being linked) chose for the names whose two
/// generations differ, and every `*_v2` name. Call it after
/// `wasmtime_wasi::p1::add_to_linker_async`: it replaces that linker's `fd_close`,
/// `fd_fdstat_get`, `fd_fdstat_set_flags`, `fd_read`, `fd_write`, `poll_oneoff`,
/// `sock_accept`, `sock_recv`, `sock_send` and `sock_shutdown` with versions that serve
/// socket fds and hand every other fd to wasmtime-wasi's own. It turns the linker's
/// shadowing on for that and off again afterwards (wasmtime's default).
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    abi: &SocketAbi,
    get: impl SocketsView<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = define(linker, abi, get);
    linker.allow_shadowing(false);
    result
}

fn define<T: Send + 'static>(
    linker: &mut Linker<T>,
    abi: &SocketAbi,
    get: impl SocketsView<T>,
) -> wasmtime::Result<()> {
    // The plain names are V1 where both generations share a signature (as WasmEdge links
    // them); the `_v2` names also take the 128-byte address form.
    for name in ["sock_open", "sock_open_v2"] {
        func!(linker, get, name, |cx, family, kind, ro_fd| {
            let result = ops::open(cx, family, kind, ro_fd);
            cx.finish(result).await
        });
    }
    for (name, storage) in [("sock_bind", false), ("sock_bind_v2", true)] {
        func!(linker, get, name, |cx, fd, addr, port| {
            let result = ops::bind(cx, fd, addr, port, storage);
            cx.finish(result).await
        });
    }
    for name in ["sock_listen", "sock_listen_v2"] {
        func!(linker, get, name, |cx, fd, backlog| {
            let result = ops::listen(cx, fd, backlog as i32);
            cx.finish(result).await
        });
    }
    for (name, storage) in [("sock_connect", false), ("sock_connect_v2", true)] {
        func!(linker, get, name, |cx, fd, addr, port| {
            let result = ops::connect(cx, fd, addr, port, storage).await;
            cx.finish(result).await
        });
    }
    accept_v2(linker, get, "sock_accept_v2")?;
    match abi.accept {
        Generation::V2 => accept_v2(linker, get, "sock_accept")?,
        Generation::V1 => {
            func!(linker, get, "sock_accept", |cx, fd, ro_fd| {
                if !cx.socks.is_socket(fd) {
                    return cx.finish(Err(ops::foreign(fd))).await;
                }
                let result = ops::accept(cx, fd, None, ro_fd).await;
                cx.finish(result).await
            });
        }
    }
    for name in ["sock_recv", "sock_recv_v2"] {
        func!(
            linker,
            get,
            name,
            |cx, fd, ri, ri_len, ri_flags, ro_len, ro_flags| {
                if !cx.socks.is_socket(fd) {
                    return delegate!(
                        cx,
                        sync sock_recv(
                            fd as i32,
                            ri as i32,
                            ri_len as i32,
                            ri_flags as i32,
                            ro_len as i32,
                            ro_flags as i32
                        )
                    );
                }
                let result = ops::recv(cx, fd, (ri, ri_len, ri_flags), ro_len, ro_flags).await;
                cx.finish(result).await
            }
        );
    }
    recv_from_v2(linker, get, "sock_recv_from_v2")?;
    match abi.recv_from {
        Generation::V2 => recv_from_v2(linker, get, "sock_recv_from")?,
        Generation::V1 => {
            func!(
                linker,
                get,
                "sock_recv_from",
                |cx, fd, ri, ri_len, addr, ri_flags, ro_len, ro_flags| {
                    let result = ops::recv_from(
                        cx,
                        fd,
                        (ri, ri_len, ri_flags),
                        addr,
                        None,
                        (ro_len, ro_flags),
                    )
                    .await;
                    cx.finish(result).await
                }
            );
        }
    }
    for name in ["sock_send", "sock_send_v2"] {
        func!(linker, get, name, |cx, fd, si, si_len, si_flags, so_len| {
            if !cx.socks.is_socket(fd) {
                return delegate!(
                    cx,
                    sync sock_send(fd as i32, si as i32, si_len as i32, si_flags as i32, so_len as i32)
                );
            }
            let result = ops::send(cx, fd, (si, si_len, si_flags), so_len).await;
            cx.finish(result).await
        });
    }
    for (name, storage) in [("sock_send_to", false), ("sock_send_to_v2", true)] {
        func!(
            linker,
            get,
            name,
            |cx, fd, si, si_len, addr, port, si_flags, so_len| {
                let result = ops::send_to(
                    cx,
                    fd,
                    (si, si_len, si_flags),
                    (addr, port),
                    so_len,
                    storage,
                )
                .await;
                cx.finish(result).await
            }
        );
    }
    func!(linker, get, "sock_shutdown", |cx, fd, how| {
        if !cx.socks.is_socket(fd) {
            return delegate!(cx, sync sock_shutdown(fd as i32, how as i32));
        }
        let result = ops::shutdown(cx, fd, how);
        cx.finish(result).await
    });
    func!(
        linker,
        get,
        "sock_getsockopt",
        |cx, fd, level, name, flag, size_ptr| {
            let result = ops::getsockopt(cx, fd, (level, name), flag, size_ptr);
            cx.finish(result).await
        }
    );
    func!(
        linker,
        get,
        "sock_setsockopt",
        |cx, fd, level, name, flag, size| {
            let result = ops::setsockopt(cx, fd, (level, name), flag, size);
            cx.finish(result).await
        }
    );
    for (name, peer, generation) in [
        ("sock_getlocaladdr", false, abi.local_addr),
        ("sock_getpeeraddr", true, abi.peer_addr),
        ("sock_getlocaladdr_v2", false, Generation::V2),
        ("sock_getpeeraddr_v2", true, Generation::V2),
    ] {
        match generation {
            Generation::V1 => {
                func!(linker, get, name, |cx, fd, addr, kind, port| {
                    let result = ops::socket_address(cx, fd, peer, addr, Some(kind), port);
                    cx.finish(result).await
                });
            }
            Generation::V2 => {
                func!(linker, get, name, |cx, fd, addr, port| {
                    let result = ops::socket_address(cx, fd, peer, addr, None, port);
                    cx.finish(result).await
                });
            }
        }
    }
    func!(
        linker,
        get,
        "sock_getaddrinfo",
        |cx, node, node_len, service, service_len, hints, res, max, res_len| {
            let request = Request {
                node: (node, node_len),
                service: (service, service_len),
                hints,
                res,
                max,
                res_len,
            };
            let result = getaddrinfo::getaddrinfo(cx, request).await;
            cx.finish(result).await
        }
    );
    for name in ["poll_oneoff", "epoll_oneoff"] {
        func!(linker, get, name, |cx, subs, events, count, nevents| {
            poll::poll_oneoff(cx, subs, events, count, nevents).await
        });
    }
    func!(linker, get, "fd_close", |cx, fd| {
        if cx.socks.sockets.remove(&fd).is_some() {
            return Ok(0);
        }
        delegate!(cx, fd_close(fd as i32))
    });
    func!(linker, get, "fd_fdstat_get", |cx, fd, buf| {
        if !cx.socks.is_socket(fd) {
            return delegate!(cx, fd_fdstat_get(fd as i32, buf as i32));
        }
        let result = ops::fdstat_get(cx, fd, buf);
        cx.finish(result).await
    });
    func!(linker, get, "fd_fdstat_set_flags", |cx, fd, flags| {
        if !cx.socks.is_socket(fd) {
            return delegate!(cx, sync fd_fdstat_set_flags(fd as i32, flags as i32));
        }
        let result = ops::fdstat_set_flags(cx, fd, flags);
        cx.finish(result).await
    });
    func!(linker, get, "fd_read", |cx, fd, iovs, count, nread| {
        if !cx.socks.is_socket(fd) {
            return delegate!(
                cx,
                fd_read(fd as i32, iovs as i32, count as i32, nread as i32)
            );
        }
        let result = ops::fd_io(cx, fd, (iovs, count), nread, false).await;
        cx.finish(result).await
    });
    func!(linker, get, "fd_write", |cx, fd, iovs, count, nwritten| {
        if !cx.socks.is_socket(fd) {
            return delegate!(
                cx,
                fd_write(fd as i32, iovs as i32, count as i32, nwritten as i32)
            );
        }
        let result = ops::fd_io(cx, fd, (iovs, count), nwritten, true).await;
        cx.finish(result).await
    });
    Ok(())
}

/// `sock_accept` with flags: WasmEdge's V2, and standard preview 1's (wasmtime-wasi answers
/// it for fds that are not sockets).
fn accept_v2<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: impl SocketsView<T>,
    name: &str,
) -> wasmtime::Result<()> {
    func!(linker, get, name, |cx, fd, flags, ro_fd| {
        if !cx.socks.is_socket(fd) {
            return delegate!(cx, sync sock_accept(fd as i32, flags as i32, ro_fd as i32));
        }
        let result = ops::accept(cx, fd, Some(flags), ro_fd).await;
        cx.finish(result).await
    });
    Ok(())
}

/// `sock_recv_from` with a port out-pointer (WasmEdge's V2).
fn recv_from_v2<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: impl SocketsView<T>,
    name: &str,
) -> wasmtime::Result<()> {
    func!(linker, get, name, |cx,
                              fd,
                              ri,
                              ri_len,
                              addr,
                              ri_flags,
                              port,
                              ro_len,
                              ro_flags| {
        let result = ops::recv_from(
            cx,
            fd,
            (ri, ri_len, ri_flags),
            addr,
            Some(port),
            (ro_len, ro_flags),
        )
        .await;
        cx.finish(result).await
    });
    Ok(())
}
