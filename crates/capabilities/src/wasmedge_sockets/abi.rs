//! The byte-level ABI of WasmEdge's socket extension: WASI numbers, the layouts the guest
//! builds in its memory, and bounds-checked access to that memory. Every layout here is
//! the one WasmEdge's `lib/host/wasi/wasifunc.cpp` and `thirdparty/wasi/api.hpp` use, and
//! the one `wasmedge_wasi_socket` 0.5 builds (docs/wasmedge.md lists them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// A WASI errno (`__wasi_errno_t`, a u16 returned as i32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub u16);

#[allow(dead_code)] // the whole table, as WASI numbers it, so a mapping can name any of them
impl Errno {
    pub const SUCCESS: Self = Self(0);
    pub const ACCES: Self = Self(2);
    pub const ADDRINUSE: Self = Self(3);
    pub const ADDRNOTAVAIL: Self = Self(4);
    pub const AFNOSUPPORT: Self = Self(5);
    pub const AGAIN: Self = Self(6);
    pub const ALREADY: Self = Self(7);
    pub const BADF: Self = Self(8);
    pub const CONNABORTED: Self = Self(13);
    pub const CONNREFUSED: Self = Self(14);
    pub const CONNRESET: Self = Self(15);
    pub const DESTADDRREQ: Self = Self(17);
    pub const FAULT: Self = Self(21);
    pub const HOSTUNREACH: Self = Self(23);
    pub const INPROGRESS: Self = Self(26);
    pub const INTR: Self = Self(27);
    pub const INVAL: Self = Self(28);
    pub const IO: Self = Self(29);
    pub const ISCONN: Self = Self(30);
    pub const MFILE: Self = Self(33);
    pub const MSGSIZE: Self = Self(35);
    pub const NETDOWN: Self = Self(38);
    pub const NETRESET: Self = Self(39);
    pub const NETUNREACH: Self = Self(40);
    pub const NFILE: Self = Self(41);
    pub const NOBUFS: Self = Self(42);
    pub const NOMEM: Self = Self(48);
    pub const NOPROTOOPT: Self = Self(50);
    pub const NOSPC: Self = Self(51);
    pub const NOSYS: Self = Self(52);
    pub const NOTCONN: Self = Self(53);
    pub const NOTSOCK: Self = Self(57);
    pub const NOTSUP: Self = Self(58);
    pub const PERM: Self = Self(63);
    pub const PIPE: Self = Self(64);
    pub const PROTO: Self = Self(65);
    pub const PROTONOSUPPORT: Self = Self(66);
    pub const PROTOTYPE: Self = Self(67);
    pub const TIMEDOUT: Self = Self(73);
    // getaddrinfo's EAI_* errors, which WasmEdge numbers after WASI's own (77-87).
    pub const AIADDRFAMILY: Self = Self(77);
    pub const AIAGAIN: Self = Self(78);
    pub const AIBADFLAG: Self = Self(79);
    pub const AIFAIL: Self = Self(80);
    pub const AIFAMILY: Self = Self(81);
    pub const AIMEMORY: Self = Self(82);
    pub const AINODATA: Self = Self(83);
    pub const AINONAME: Self = Self(84);
    pub const AISERVICE: Self = Self(85);
    pub const AISOCKTYPE: Self = Self(86);
    pub const AISYSTEM: Self = Self(87);

    /// The WASI number of a host error (Linux errno).
    pub fn from_host(error: rustix::io::Errno) -> Self {
        use rustix::io::Errno as E;
        match error {
            E::ACCESS => Self::ACCES,
            E::ADDRINUSE => Self::ADDRINUSE,
            E::ADDRNOTAVAIL => Self::ADDRNOTAVAIL,
            E::AFNOSUPPORT => Self::AFNOSUPPORT,
            E::AGAIN => Self::AGAIN,
            E::ALREADY => Self::ALREADY,
            E::BADF => Self::BADF,
            E::CONNABORTED => Self::CONNABORTED,
            E::CONNREFUSED => Self::CONNREFUSED,
            E::CONNRESET => Self::CONNRESET,
            E::DESTADDRREQ => Self::DESTADDRREQ,
            E::FAULT => Self::FAULT,
            E::HOSTUNREACH => Self::HOSTUNREACH,
            E::INPROGRESS => Self::INPROGRESS,
            E::INTR => Self::INTR,
            E::INVAL => Self::INVAL,
            E::ISCONN => Self::ISCONN,
            E::MFILE => Self::MFILE,
            E::MSGSIZE => Self::MSGSIZE,
            E::NETDOWN => Self::NETDOWN,
            E::NETRESET => Self::NETRESET,
            E::NETUNREACH => Self::NETUNREACH,
            E::NFILE => Self::NFILE,
            E::NOBUFS => Self::NOBUFS,
            E::NOMEM => Self::NOMEM,
            E::NOPROTOOPT => Self::NOPROTOOPT,
            E::NOSPC => Self::NOSPC,
            E::NOSYS => Self::NOSYS,
            E::NOTCONN => Self::NOTCONN,
            E::NOTSOCK => Self::NOTSOCK,
            E::OPNOTSUPP => Self::NOTSUP,
            E::PERM => Self::PERM,
            E::PIPE => Self::PIPE,
            E::PROTO => Self::PROTO,
            E::PROTONOSUPPORT => Self::PROTONOSUPPORT,
            E::PROTOTYPE => Self::PROTOTYPE,
            E::TIMEDOUT => Self::TIMEDOUT,
            _ => Self::IO,
        }
    }
}

/// `__wasi_address_family_t`.
pub const FAMILY_INET4: u8 = 1;
pub const FAMILY_INET6: u8 = 2;
pub const FAMILY_UNIX: u8 = 3;

/// `__wasi_sock_type_t`.
pub const SOCK_ANY: u8 = 0;
pub const SOCK_DGRAM: u8 = 1;
pub const SOCK_STREAM: u8 = 2;

/// `__wasi_protocol_t`.
pub const PROTO_TCP: u8 = 1;
pub const PROTO_UDP: u8 = 2;

/// `__wasi_fdflags_t`.
pub const FDFLAGS_APPEND: u16 = 1 << 0;
pub const FDFLAGS_DSYNC: u16 = 1 << 1;
pub const FDFLAGS_NONBLOCK: u16 = 1 << 2;
pub const FDFLAGS_RSYNC: u16 = 1 << 3;
pub const FDFLAGS_SYNC: u16 = 1 << 4;
pub const FDFLAGS_ALL: u16 =
    FDFLAGS_APPEND | FDFLAGS_DSYNC | FDFLAGS_NONBLOCK | FDFLAGS_RSYNC | FDFLAGS_SYNC;

/// `__wasi_riflags_t`, `__wasi_roflags_t`, `__wasi_sdflags_t`.
pub const RIFLAGS_PEEK: u16 = 1 << 0;
pub const RIFLAGS_WAITALL: u16 = 1 << 1;
pub const ROFLAGS_TRUNCATED: u16 = 1 << 0;
pub const SDFLAGS_RD: u32 = 1 << 0;
pub const SDFLAGS_WR: u32 = 1 << 1;

/// `__wasi_filetype_t` of sockets.
pub const FILETYPE_SOCKET_DGRAM: u8 = 5;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;

/// `__wasi_rights_t` a socket fd carries: read, write, set flags, poll, shutdown, accept.
pub const SOCKET_RIGHTS: u64 = (1 << 1) | (1 << 6) | (1 << 3) | (1 << 27) | (1 << 28) | (1 << 29);

/// `__wasi_sock_opt_level_t`: only SOL_SOCKET exists.
pub const SOL_SOCKET: u32 = 0;

/// `__wasi_sock_opt_so_t`.
pub mod so {
    pub const REUSEADDR: u32 = 0;
    pub const TYPE: u32 = 1;
    pub const ERROR: u32 = 2;
    pub const DONTROUTE: u32 = 3;
    pub const BROADCAST: u32 = 4;
    pub const SNDBUF: u32 = 5;
    pub const RCVBUF: u32 = 6;
    pub const KEEPALIVE: u32 = 7;
    pub const OOBINLINE: u32 = 8;
    pub const LINGER: u32 = 9;
    pub const RCVLOWAT: u32 = 10;
    pub const RCVTIMEO: u32 = 11;
    pub const SNDTIMEO: u32 = 12;
    pub const ACCEPTCONN: u32 = 13;
    pub const BINDTODEVICE: u32 = 14;
}

/// `__wasi_aiflags_t`.
pub const AI_PASSIVE: u16 = 1 << 0;
pub const AI_CANONNAME: u16 = 1 << 1;
pub const AI_NUMERICHOST: u16 = 1 << 2;
pub const AI_NUMERICSERV: u16 = 1 << 3;
pub const AI_ALL_FLAGS: u16 = 0x7f;

/// `__wasi_eventtype_t`, `__wasi_eventrwflags_t`, `__wasi_subclockflags_t`.
pub const EVENTTYPE_CLOCK: u8 = 0;
pub const EVENTTYPE_FD_READ: u8 = 1;
pub const EVENTTYPE_FD_WRITE: u8 = 2;
pub const EVENTRWFLAGS_HANGUP: u16 = 1 << 0;
pub const SUBCLOCKFLAGS_ABSTIME: u16 = 1 << 0;

/// Sizes of the records the guest lays out.
pub const SUBSCRIPTION_SIZE: u32 = 48;
pub const EVENT_SIZE: u32 = 32;
pub const ADDRINFO_SIZE: u32 = 28;
pub const SOCKADDR_SIZE: u32 = 12;
pub const FDSTAT_SIZE: u32 = 24;
/// The V2 address form: a u16 family, then the address bytes.
pub const ADDR_STORAGE_SIZE: u32 = 128;
/// The most iovecs one call may pass (WasmEdge's `kIOVMax`, Linux's `IOV_MAX`).
pub const IOV_MAX: u32 = 1024;

/// The guest's linear memory, every access bounds-checked (`FAULT` when outside).
pub struct GuestMem<'a>(pub &'a mut [u8]);

impl GuestMem<'_> {
    pub fn range(&self, ptr: u32, len: u32) -> Result<Range<usize>, Errno> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::FAULT)?;
        if end > self.0.len() {
            return Err(Errno::FAULT);
        }
        Ok(start..end)
    }

    pub fn bytes(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let range = self.range(ptr, len)?;
        Ok(&self.0[range])
    }

    pub fn bytes_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let range = self.range(ptr, len)?;
        Ok(&mut self.0[range])
    }

    fn array<const N: usize>(&self, ptr: u32) -> Result<[u8; N], Errno> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(ptr, N as u32)?);
        Ok(out)
    }

    pub fn u16(&self, ptr: u32) -> Result<u16, Errno> {
        Ok(u16::from_le_bytes(self.array(ptr)?))
    }

    pub fn u32(&self, ptr: u32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.array(ptr)?))
    }

    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        self.bytes_mut(ptr, bytes.len() as u32)?
            .copy_from_slice(bytes);
        Ok(())
    }

    pub fn write_u8(&mut self, ptr: u32, value: u8) -> Result<(), Errno> {
        self.write(ptr, &[value])
    }

    pub fn write_u16(&mut self, ptr: u32, value: u16) -> Result<(), Errno> {
        self.write(ptr, &value.to_le_bytes())
    }

    pub fn write_u32(&mut self, ptr: u32, value: u32) -> Result<(), Errno> {
        self.write(ptr, &value.to_le_bytes())
    }

    /// An `iovec`/`ciovec` array: `{buf: u32, buf_len: u32}` each, every buffer in bounds.
    pub fn iovecs(&self, ptr: u32, count: u32) -> Result<Vec<(u32, u32)>, Errno> {
        if count > IOV_MAX {
            return Err(Errno::INVAL);
        }
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = ptr.checked_add(i * 8).ok_or(Errno::FAULT)?;
            let buf = self.u32(at)?;
            let len = self.u32(at + 4)?;
            self.range(buf, len)?;
            out.push((buf, len));
        }
        Ok(out)
    }
}

/// WasmEdge answers a misaligned out-pointer with ADDRNOTAVAIL, not FAULT.
pub fn aligned(ptr: u32, align: u32) -> Result<(), Errno> {
    if !ptr.is_multiple_of(align) {
        Err(Errno::ADDRNOTAVAIL)
    } else {
        Ok(())
    }
}

/// An address the guest passed: `__wasi_address_t {buf: u32, buf_len: u32}` pointing at 4 or
/// 16 raw address bytes, or (V2 only) at the 128-byte form, a little-endian u16 family and
/// the bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAddress {
    Ip(IpAddr),
    /// AF_UNIX in the 128-byte form: refused by wedge.
    Unix,
}

/// Where an address struct's buffer is, and in which of the three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressBuf {
    pub buf: u32,
    pub len: u32,
}

impl AddressBuf {
    /// Reads the `__wasi_address_t` at `ptr` (alignment 4).
    pub fn read(mem: &GuestMem<'_>, ptr: u32) -> Result<Self, Errno> {
        aligned(ptr, 4)?;
        let buf = mem.u32(ptr)?;
        let len = mem.u32(ptr + 4)?;
        mem.range(buf, len)?;
        Ok(Self { buf, len })
    }

    /// The address it holds (bind, connect, send_to). `storage`: whether the V2 128-byte
    /// form is accepted.
    pub fn decode(&self, mem: &GuestMem<'_>, storage: bool) -> Result<GuestAddress, Errno> {
        match self.len {
            4 => Ok(GuestAddress::Ip(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(mem.bytes(self.buf, 4)?).map_err(|_| Errno::FAULT)?,
            )))),
            16 => Ok(GuestAddress::Ip(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(mem.bytes(self.buf, 16)?).map_err(|_| Errno::FAULT)?,
            )))),
            ADDR_STORAGE_SIZE if storage => match mem.u16(self.buf)? {
                1 => Ok(GuestAddress::Ip(IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(mem.bytes(self.buf + 2, 4)?).map_err(|_| Errno::FAULT)?,
                )))),
                2 => Ok(GuestAddress::Ip(IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(mem.bytes(self.buf + 2, 16)?).map_err(|_| Errno::FAULT)?,
                )))),
                f if f == u16::from(FAMILY_UNIX) => Ok(GuestAddress::Unix),
                _ => Err(Errno::INVAL),
            },
            _ => Err(Errno::INVAL),
        }
    }

    /// Writes `ip` into the buffer in the raw form (4 or 16 bytes at its start): NOMEM when
    /// the buffer is too small for the address, as WasmEdge answers.
    pub fn write_raw(&self, mem: &mut GuestMem<'_>, ip: IpAddr) -> Result<(), Errno> {
        let bytes = ip_bytes(ip);
        if (self.len as usize) < bytes.len() {
            return Err(Errno::NOMEM);
        }
        mem.write(self.buf, &bytes)
    }

    /// Writes `ip` in the 128-byte form: family (1 or 2) as a little-endian u16, then the
    /// address bytes.
    pub fn write_storage(&self, mem: &mut GuestMem<'_>, ip: IpAddr) -> Result<(), Errno> {
        let family = match ip {
            IpAddr::V4(_) => FAMILY_INET4,
            IpAddr::V6(_) => FAMILY_INET6,
        };
        mem.write_u16(self.buf, family as u16)?;
        mem.write(self.buf + 2, &ip_bytes(ip))
    }
}

pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_is_bounds_checked() {
        let mut bytes = vec![0u8; 16];
        let mut mem = GuestMem(&mut bytes);
        mem.write_u32(12, 0xdead_beef).unwrap();
        assert_eq!(mem.u32(12), Ok(0xdead_beef));
        assert_eq!(mem.u32(13), Err(Errno::FAULT));
        assert_eq!(mem.bytes(u32::MAX, 2).err(), Some(Errno::FAULT));
        assert_eq!(aligned(6, 4), Err(Errno::ADDRNOTAVAIL));
    }

    #[test]
    fn the_three_address_forms() {
        let mut bytes = vec![0u8; 256];
        let mut mem = GuestMem(&mut bytes);
        mem.write(16, &[127, 0, 0, 1]).unwrap();
        let raw4 = AddressBuf { buf: 16, len: 4 };
        assert_eq!(
            raw4.decode(&mem, false),
            Ok(GuestAddress::Ip("127.0.0.1".parse().unwrap()))
        );
        let storage = AddressBuf { buf: 64, len: 128 };
        storage
            .write_storage(&mut mem, "::1".parse().unwrap())
            .unwrap();
        assert_eq!(&mem.0[64..66], &[2, 0]);
        assert_eq!(
            storage.decode(&mem, true),
            Ok(GuestAddress::Ip("::1".parse().unwrap()))
        );
        // V1 knows only the raw forms.
        assert_eq!(storage.decode(&mem, false), Err(Errno::INVAL));
        assert_eq!(
            raw4.write_raw(&mut mem, "::1".parse().unwrap()),
            Err(Errno::NOMEM)
        );
    }
}
