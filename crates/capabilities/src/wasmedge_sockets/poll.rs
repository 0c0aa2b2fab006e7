//! `poll_oneoff` (and WasmEdge's `epoll_oneoff`) over socket fds, clocks, and any other fd.
//!
//! - No socket among the subscriptions, only other fds: wasmtime-wasi answers the call, as
//!   it would without the extension.
//! - Sockets and clocks: answered here. FD_READ/FD_WRITE report `nbytes` and a hang-up as
//!   the HANGUP flag, never as an event error: tokio_wasi's selector fails the whole poll
//!   on any event error, which would end the guest's runtime because a peer went away.
//! - Sockets, clocks and other fds: the other fds are handed to wasmtime-wasi's poll (in a
//!   scratch memory) raced against the sockets, so stdin and files keep its semantics.
//!
//! `epoll_oneoff` is WasmEdge's edge-triggered variant; wedge answers it level-triggered,
//! which reports everything an edge-triggered poll would (and possibly more), so its users
//! (mio's `epoll` feature) only see extra wake-ups.

use std::os::fd::BorrowedFd;
use std::task::Poll;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFdReadyGuard;

use super::abi::{self, Errno, GuestMem};
use super::ops::{Cx, delegate};
use super::{Fail, SOCKET_FD_BASE, WasmEdgeSockets};

/// Whether `fd` has any of `events` right now (poll(2) with a zero timeout).
pub(crate) fn ready_now(fd: BorrowedFd<'_>, events: PollFlags) -> bool {
    !revents(fd)
        .intersection(events | PollFlags::ERR | PollFlags::HUP)
        .is_empty()
}

fn revents(fd: BorrowedFd<'_>) -> PollFlags {
    let mut fds = [PollFd::from_borrowed_fd(
        fd,
        PollFlags::IN | PollFlags::OUT | PollFlags::RDHUP,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents(),
        // A socket poll(2) cannot use is as good as broken: let the guest find out.
        Err(_) => PollFlags::ERR,
    }
}

enum Kind {
    Clock(tokio::time::Instant),
    Socket {
        fd: u32,
        write: bool,
    },
    /// A fd wasmtime-wasi owns: the raw subscription, for its own poll.
    Other([u8; abi::SUBSCRIPTION_SIZE as usize]),
    /// An event that is an error from the start (bad clock id, unknown fd number).
    Error(Errno),
}

struct Sub {
    userdata: u64,
    tag: u8,
    kind: Kind,
}

struct Event {
    userdata: u64,
    error: Errno,
    tag: u8,
    nbytes: u64,
    flags: u16,
}

impl Event {
    fn error(sub: &Sub, error: Errno) -> Self {
        Event {
            userdata: sub.userdata,
            error,
            tag: sub.tag,
            nbytes: 0,
            flags: 0,
        }
    }
}

pub(crate) async fn poll_oneoff(
    cx: &mut Cx<'_>,
    in_ptr: u32,
    out_ptr: u32,
    count: u32,
    nevents_ptr: u32,
) -> wasmtime::Result<i32> {
    let subs = match read_subscriptions(cx, in_ptr, count).await {
        Some(subs) if subs.iter().any(|s| !matches!(s.kind, Kind::Other(_))) => subs,
        // Nothing of ours (or a malformed call): wasmtime-wasi's poll, errors and all.
        _ => {
            return delegate!(
                cx,
                poll_oneoff(
                    in_ptr as i32,
                    out_ptr as i32,
                    count as i32,
                    nevents_ptr as i32
                )
            );
        }
    };
    let checked = abi::aligned(out_ptr, 8)
        .map_err(|_| Errno::INVAL)
        .and_then(|()| cx.mem.range(out_ptr, count * abi::EVENT_SIZE))
        .and_then(|_| abi::aligned(nevents_ptr, 4).map_err(|_| Errno::INVAL))
        .and_then(|()| cx.mem.range(nevents_ptr, 4));
    if let Err(errno) = checked {
        return Ok(i32::from(errno.0));
    }
    let events = match wait(cx, &subs).await {
        Ok(events) => events,
        Err(fail) => return cx.finish(Err(fail)).await,
    };
    Ok(
        match write_events(&mut cx.mem, out_ptr, nevents_ptr, &events) {
            Ok(()) => 0,
            Err(errno) => i32::from(errno.0),
        },
    )
}

/// The subscriptions, or None when they cannot be read (wasmtime-wasi then answers).
async fn read_subscriptions(cx: &mut Cx<'_>, in_ptr: u32, count: u32) -> Option<Vec<Sub>> {
    if count == 0 || abi::aligned(in_ptr, 8).is_err() {
        return None;
    }
    let size = count.checked_mul(abi::SUBSCRIPTION_SIZE)?;
    cx.mem.range(in_ptr, size).ok()?;
    let now = tokio::time::Instant::now();
    let mut subs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = in_ptr + i * abi::SUBSCRIPTION_SIZE;
        let raw: [u8; abi::SUBSCRIPTION_SIZE as usize] = cx
            .mem
            .bytes(at, abi::SUBSCRIPTION_SIZE)
            .ok()?
            .try_into()
            .ok()?;
        let userdata = u64::from_le_bytes(raw[0..8].try_into().ok()?);
        let tag = raw[8];
        let kind = match tag {
            abi::EVENTTYPE_CLOCK => clock(cx, &raw, now).await,
            abi::EVENTTYPE_FD_READ | abi::EVENTTYPE_FD_WRITE => {
                let fd = u32::from_le_bytes(raw[16..20].try_into().ok()?);
                if cx.socks.is_socket(fd) {
                    Kind::Socket {
                        fd,
                        write: tag == abi::EVENTTYPE_FD_WRITE,
                    }
                } else if fd >= SOCKET_FD_BASE {
                    Kind::Error(Errno::BADF)
                } else {
                    Kind::Other(raw)
                }
            }
            _ => Kind::Error(Errno::INVAL),
        };
        subs.push(Sub {
            userdata,
            tag,
            kind,
        });
    }
    Some(subs)
}

/// When a clock subscription fires. Relative timeouts count from now; absolute ones are
/// measured against the guest's own clock (wasmtime-wasi's), so they agree with what the
/// guest reads from `clock_time_get`.
async fn clock(cx: &mut Cx<'_>, raw: &[u8; 48], now: tokio::time::Instant) -> Kind {
    let field = |range: std::ops::Range<usize>| {
        raw[range]
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let (id, timeout, flags) = (field(16..20) as u32, field(24..32), field(40..42) as u16);
    if id > 1 {
        // Only the realtime and monotonic clocks can be waited on, as in wasmtime-wasi.
        return Kind::Error(Errno::INVAL);
    }
    if flags & abi::SUBCLOCKFLAGS_ABSTIME == 0 {
        return Kind::Clock(now + Duration::from_nanos(timeout));
    }
    match guest_clock_now(cx.wasi, id).await {
        Some(guest_now) => {
            Kind::Clock(now + Duration::from_nanos(timeout.saturating_sub(guest_now)))
        }
        None => Kind::Error(Errno::INVAL),
    }
}

/// `clock_time_get` of wasmtime-wasi, in a scratch memory.
async fn guest_clock_now(wasi: &mut wasmtime_wasi::p1::WasiP1Ctx, id: u32) -> Option<u64> {
    use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
    let mut scratch = [0u8; 8];
    wasi.set_hostcall_fuel(scratch.len());
    let mut memory = wiggle::GuestMemory::Unshared(&mut scratch);
    let errno = wasmtime_wasi::p1::wasi_snapshot_preview1::clock_time_get(
        wasi,
        &mut memory,
        id as i32,
        0,
        0,
    )
    .ok()?;
    (errno == 0).then(|| u64::from_le_bytes(scratch))
}

/// What a socket's readiness means for one subscription, if it is ready.
fn socket_event(sub: &Sub, socks: &WasmEdgeSockets, fd: u32, write: bool) -> Option<Event> {
    let socket = socks.sockets.get(&fd)?;
    let revents = revents(socket.fd());
    let (ready, hangup) = if write {
        (
            revents.intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP),
            revents.contains(PollFlags::HUP),
        )
    } else {
        (
            revents.intersects(PollFlags::IN | PollFlags::ERR | PollFlags::HUP | PollFlags::RDHUP),
            revents.intersects(PollFlags::HUP | PollFlags::RDHUP),
        )
    };
    if !ready {
        return None;
    }
    let nbytes = if write {
        rustix::net::sockopt::socket_send_buffer_size(socket.fd()).map_or(1, |n| n as u64)
    } else {
        // A listener (or a socket whose queue cannot be asked) has "something": 1.
        match rustix::io::ioctl_fionread(socket.fd()) {
            Ok(n) if n > 0 || hangup => n,
            _ => 1,
        }
    };
    Some(Event {
        userdata: sub.userdata,
        error: Errno::SUCCESS,
        tag: sub.tag,
        nbytes,
        flags: if hangup { abi::EVENTRWFLAGS_HANGUP } else { 0 },
    })
}

/// Everything ready now.
fn ready_events(subs: &[Sub], socks: &WasmEdgeSockets) -> Vec<Event> {
    let now = tokio::time::Instant::now();
    let mut events = Vec::new();
    for sub in subs {
        match &sub.kind {
            Kind::Error(errno) => events.push(Event::error(sub, *errno)),
            Kind::Clock(at) if *at <= now => events.push(Event {
                userdata: sub.userdata,
                error: Errno::SUCCESS,
                tag: sub.tag,
                nbytes: 0,
                flags: 0,
            }),
            Kind::Socket { fd, write } => events.extend(socket_event(sub, socks, *fd, *write)),
            Kind::Clock(_) | Kind::Other(_) => {}
        }
    }
    events
}

enum Woke<'s> {
    /// tokio saw readiness on this subscription's socket (maybe stale).
    Socket(usize, AsyncFdReadyGuard<'s, OwnedFd>),
    /// The reactor could not tell (it is shutting down).
    Broken,
    Clock,
    Deadline,
    /// wasmtime-wasi's poll of the other fds returned these raw events.
    Other(Vec<[u8; abi::EVENT_SIZE as usize]>),
}

async fn wait(cx: &mut Cx<'_>, subs: &[Sub]) -> Result<Vec<Event>, Fail> {
    let others: Vec<&[u8; 48]> = subs
        .iter()
        .filter_map(|s| match &s.kind {
            Kind::Other(raw) => Some(raw),
            _ => None,
        })
        .collect();
    let first_clock = subs
        .iter()
        .filter_map(|s| match s.kind {
            Kind::Clock(at) => Some(at),
            _ => None,
        })
        .min();
    loop {
        let events = ready_events(subs, cx.socks);
        if !events.is_empty() {
            return Ok(events);
        }
        let socks: &WasmEdgeSockets = cx.socks;
        let mut clock = first_clock.map(|at| Box::pin(tokio::time::sleep_until(at)));
        let mut deadline = socks
            .deadline
            .map(|at| Box::pin(tokio::time::sleep_until(at)));
        let mut other = (!others.is_empty()).then(|| Box::pin(poll_others(cx.wasi, &others)));
        let woke = std::future::poll_fn(|task| {
            if let Some(other) = other.as_mut()
                && let Poll::Ready(events) = other.as_mut().poll(task)
            {
                return Poll::Ready(Woke::Other(events));
            }
            for (index, sub) in subs.iter().enumerate() {
                if let Kind::Socket { fd, write } = sub.kind
                    && let Some(socket) = socks.sockets.get(&fd)
                {
                    let interest = if write {
                        Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    match socket.poll_ready(interest, task) {
                        Poll::Ready(Ok(guard)) => return Poll::Ready(Woke::Socket(index, guard)),
                        Poll::Ready(Err(_)) => return Poll::Ready(Woke::Broken),
                        Poll::Pending => {}
                    }
                }
            }
            if let Some(clock) = clock.as_mut()
                && clock.as_mut().poll(task).is_ready()
            {
                return Poll::Ready(Woke::Clock);
            }
            if let Some(deadline) = deadline.as_mut()
                && deadline.as_mut().poll(task).is_ready()
            {
                return Poll::Ready(Woke::Deadline);
            }
            Poll::Pending
        })
        .await;
        drop(other);
        match woke {
            Woke::Other(raw) => {
                let mut events = ready_events(subs, socks);
                events.extend(raw.iter().map(|raw| Event {
                    userdata: u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default()),
                    error: Errno(u16::from_le_bytes([raw[8], raw[9]])),
                    tag: raw[10],
                    nbytes: u64::from_le_bytes(raw[16..24].try_into().unwrap_or_default()),
                    flags: u16::from_le_bytes([raw[24], raw[25]]),
                }));
                return Ok(events);
            }
            Woke::Socket(index, mut guard) => {
                // tokio's readiness is edge-triggered and may be stale (the guest's own
                // non-blocking calls bypass it): if poll(2) disagrees, forget it, or the
                // next round would wake at once again.
                if let Kind::Socket { fd, write } = subs[index].kind
                    && socket_event(&subs[index], socks, fd, write).is_none()
                {
                    guard.clear_ready();
                }
            }
            Woke::Broken => return Err(Fail::Errno(Errno::IO)),
            Woke::Clock => {}
            Woke::Deadline => return Err(Fail::deadline()),
        }
    }
}

/// wasmtime-wasi's own poll of the non-socket subscriptions, in a scratch memory laid out
/// as subscriptions, then events, then the event count.
async fn poll_others(
    wasi: &mut wasmtime_wasi::p1::WasiP1Ctx,
    others: &[&[u8; 48]],
) -> Vec<[u8; abi::EVENT_SIZE as usize]> {
    use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
    let n = others.len() as u32;
    let events_at = n * abi::SUBSCRIPTION_SIZE;
    let count_at = events_at + n * abi::EVENT_SIZE;
    let mut scratch = vec![0u8; (count_at + 4) as usize];
    for (i, raw) in others.iter().enumerate() {
        let at = i * abi::SUBSCRIPTION_SIZE as usize;
        scratch[at..at + raw.len()].copy_from_slice(&raw[..]);
    }
    wasi.set_hostcall_fuel(scratch.len());
    let mut memory = wiggle::GuestMemory::Unshared(&mut scratch);
    let result = wasmtime_wasi::p1::wasi_snapshot_preview1::poll_oneoff(
        wasi,
        &mut memory,
        0,
        events_at as i32,
        n as i32,
        count_at as i32,
    )
    .await;
    match result {
        Ok(0) => {
            let count = u32::from_le_bytes(
                scratch[count_at as usize..count_at as usize + 4]
                    .try_into()
                    .unwrap_or_default(),
            )
            .min(n);
            (0..count as usize)
                .map(|i| {
                    let at = events_at as usize + i * abi::EVENT_SIZE as usize;
                    scratch[at..at + abi::EVENT_SIZE as usize]
                        .try_into()
                        .unwrap_or([0; abi::EVENT_SIZE as usize])
                })
                .collect()
        }
        // wasmtime-wasi refused the whole set (a bad fd, say): each of them gets that error
        // as its event, so the sockets' events are not lost with it.
        Ok(errno) => others
            .iter()
            .map(|raw| {
                let mut event = [0u8; abi::EVENT_SIZE as usize];
                event[0..8].copy_from_slice(&raw[0..8]);
                event[8..10].copy_from_slice(&(errno as u16).to_le_bytes());
                event[10] = raw[8];
                event
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "wasmtime-wasi's poll of a guest's other fds failed");
            std::future::pending().await
        }
    }
}

fn write_events(
    mem: &mut GuestMem<'_>,
    out_ptr: u32,
    nevents_ptr: u32,
    events: &[Event],
) -> Result<(), Errno> {
    for (i, event) in events.iter().enumerate() {
        let at = out_ptr + i as u32 * abi::EVENT_SIZE;
        let mut bytes = [0u8; abi::EVENT_SIZE as usize];
        bytes[0..8].copy_from_slice(&event.userdata.to_le_bytes());
        bytes[8..10].copy_from_slice(&event.error.0.to_le_bytes());
        bytes[10] = event.tag;
        bytes[16..24].copy_from_slice(&event.nbytes.to_le_bytes());
        bytes[24..26].copy_from_slice(&event.flags.to_le_bytes());
        mem.write(at, &bytes)?;
    }
    mem.write_u32(nevents_ptr, events.len() as u32)
}
