//! Kernel-backed ports. Every `unsafe` call of the switch crate lives under this module.
//!
//! - [`tap`]: a TAP device ([`TapPort`]), opened inside a container's network namespace with
//!   [`open_tap`] and handed to the daemon as an fd.
//! - [`packet`]: an AF_PACKET socket bound to an interface of the daemon's namespace
//!   ([`PacketPort`]), typically the host end of a veth pair.
//! - [`mem`]: an in-memory port over a `SOCK_SEQPACKET` socketpair ([`MemPort`] and its test-side
//!   [`MemPeer`]), so tests drive the switch with real fds and readiness but no privileges.
//! - [`vxlan`]: a VXLAN tunnel ([`VxlanPort`]): a UDP socket of the daemon's namespace that
//!   carries the network's frames to and from remote VTEPs.
//! - [`link`]: bringing an interface up with plain ioctls.
//! - [`uring`]: batched writes through a per-thread io_uring (TAP ports' bursts).
//! - [`pagebuf`]: a port's receive buffer in its own anonymous mapping ([`PageBuf`](pagebuf::PageBuf)).
//! - [`schedstat`]: the calling thread's scheduler counters (busy-polling's contention signal).
//!
//! # Frame contract
//!
//! Every buffer passed to [`Port::recv`](crate::port::Port::recv) and
//! [`Port::send`](crate::port::Port::send) is `[10-byte virtio_net_hdr][Ethernet frame]`. A port
//! whose device exchanges no header writes 10 zero bytes before the frame on receive and skips
//! the first 10 bytes on send. All ports are non-blocking: "nothing to read" and "no room to
//! write" come back as [`io::ErrorKind::WouldBlock`], which ends a burst and is not an error.
//!
//! # Data-path errors
//!
//! `recv` may fail for one frame without the port being broken; the driver counts and skips:
//! - a frame longer than the buffer: [`io::ErrorKind::InvalidData`] wrapping [`FrameTruncated`]
//!   (test with [`FrameTruncated::is`]). The frame is consumed and lost.
//! - AF_PACKET with a vnet header: `EINVAL` when the kernel cannot describe a frame's offload
//!   state in a virtio-net header (the frame is dropped by the kernel).
//! - a frame the port itself refuses (a VXLAN datagram for another VNI, say):
//!   [`io::ErrorKind::InvalidData`] wrapping [`PortDrop`], which names the
//!   [`DropReason`](crate::counters::DropReason) the driver counts. `send` reports frames it
//!   refuses the same way.
//! - [`io::ErrorKind::Interrupted`]: no frame this time, but the port has more to look at (see
//!   [`vxlan`]); the driver counts nothing and calls again within its burst.
//!
//! `send` failures (`EINVAL` for a malformed header, `EMSGSIZE`, `ENOBUFS`, `ENETDOWN`, `EIO`)
//! concern that one frame.
//!
//! # Conventions
//!
//! Each ioctl or socket option is one small function with one `unsafe` block and a `// SAFETY:`
//! comment; fds are [`OwnedFd`](std::os::fd::OwnedFd) and close on drop. Setup failures are
//! [`SysError`] values naming the operation and the interface.

use std::io;

pub mod link;
pub mod mem;
pub mod packet;
pub mod pagebuf;
pub mod schedstat;
pub mod tap;
pub mod uring;
pub mod vxlan;

mod ifreq;
#[cfg(test)]
mod testutil;

pub use link::set_link_up;
pub use mem::{AsyncMemPeer, MemPeer, MemPort};
pub use packet::{PacketPort, RecvMeta, BATCH_MAX};
pub use tap::{open_tap, open_tap_raw, TapPort};
pub use vxlan::{VxlanConfig, VxlanPort};

/// A failed setup step of a kernel-backed port. Each variant names the operation and the
/// interface; data-path failures are plain [`io::Error`]s (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// Creating the TAP device failed: for callers to wrap what [`open_tap`] returned (it
    /// reports a bare `io::Error`, as it runs where errors cannot carry much).
    #[error("{ifname}: create TAP device")]
    CreateTap {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Reading a TAP fd's flags (TUNGETIFF) failed.
    #[error("{ifname}: read TAP flags (TUNGETIFF)")]
    GetTapFlags {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// The TAP fd was opened with other flags than the port needs.
    #[error(
        "{ifname}: TAP fd has flags {actual:#06x}, need IFF_TAP|IFF_NO_PI{}",
        if *.vnet_hdr { "|IFF_VNET_HDR" } else { " without IFF_VNET_HDR" }
    )]
    TapFlagsMismatch {
        ifname: String,
        /// The flags TUNGETIFF reported.
        actual: u16,
        /// Whether the port wanted IFF_VNET_HDR.
        vnet_hdr: bool,
    },
    /// Setting the vnet header size (TUNSETVNETHDRSZ) failed.
    #[error("{ifname}: set vnet header size (TUNSETVNETHDRSZ)")]
    SetVnetHdrSize {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Setting the TAP offloads (TUNSETOFFLOAD) failed.
    #[error("{ifname}: set TAP offloads {flags:#x} (TUNSETOFFLOAD)")]
    SetOffload {
        ifname: String,
        flags: u32,
        #[source]
        source: io::Error,
    },
    /// Reading the fd's status flags (F_GETFL) failed.
    #[error("{ifname}: read fd status flags (F_GETFL)")]
    GetStatusFlags {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Making the fd non-blocking (F_SETFL) failed.
    #[error("{ifname}: set O_NONBLOCK (F_SETFL)")]
    SetNonBlocking {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Looking up the interface index failed (no such interface in this namespace?).
    #[error("{ifname}: look up interface index")]
    IfIndex {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Creating the AF_PACKET socket failed.
    #[error("{ifname}: create AF_PACKET socket")]
    PacketSocket {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Enabling the vnet header on the AF_PACKET socket (PACKET_VNET_HDR) failed.
    #[error("{ifname}: enable PACKET_VNET_HDR")]
    SetPacketVnetHdr {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Enabling PACKET_QDISC_BYPASS failed.
    #[error("{ifname}: enable PACKET_QDISC_BYPASS")]
    SetQdiscBypass {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Enabling PACKET_IGNORE_OUTGOING failed.
    #[error("{ifname}: enable PACKET_IGNORE_OUTGOING")]
    SetIgnoreOutgoing {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Sizing the socket's receive buffer failed.
    #[error("{ifname}: set receive buffer (SO_RCVBUF)")]
    SetRecvBuffer {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Sizing the socket's send buffer failed.
    #[error("{ifname}: set send buffer (SO_SNDBUF)")]
    SetSendBuffer {
        ifname: String,
        #[source]
        source: io::Error,
    },
    /// Binding the AF_PACKET socket to the interface failed.
    #[error("{ifname}: bind AF_PACKET socket to ifindex {ifindex}")]
    BindPacket {
        ifname: String,
        ifindex: u32,
        #[source]
        source: io::Error,
    },
}

/// A received frame was longer than the buffer; the kernel discarded the excess and the frame
/// is lost (its first `cap` bytes are in the buffer, unusable). Carried inside an
/// [`io::Error`] of kind [`io::ErrorKind::InvalidData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame truncated: {len} bytes or more (with vnet header), the buffer holds {cap}")]
pub struct FrameTruncated {
    /// The frame's length, vnet header included: exact for AF_PACKET and mem ports; for a TAP,
    /// which does not report it, `cap + 1` (a lower bound).
    pub len: usize,
    /// The buffer's length.
    pub cap: usize,
}

impl FrameTruncated {
    /// Whether `err` reports a truncated frame.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|e| e.is::<FrameTruncated>())
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// A frame the port refused itself, for a reason the driver counts on the port. Carried inside
/// an [`io::Error`] of kind [`io::ErrorKind::InvalidData`] (a drop allocates that error; drops
/// are the exception, not the data path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame dropped by the port: {}", .0.as_str())]
pub struct PortDrop(pub crate::counters::DropReason);

impl PortDrop {
    /// The reason `err` carries, if it reports a [`PortDrop`].
    pub fn reason(err: &io::Error) -> Option<crate::counters::DropReason> {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<PortDrop>())
            .map(|d| d.0)
    }

    /// The error a port returns for this drop.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Length of the virtio-net header in front of every frame inside the switch.
const HDR: usize = crate::port::VNET_HDR_LEN;

/// An integer that does not fit the C type a syscall wants: `EINVAL`, like the kernel would.
fn invalid<E>(_: E) -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// The size of `T` as a `socklen_t`.
fn socklen<T>() -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(invalid)
}

/// Turns a libc return value into `io::Result`, reading errno on `-1`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Reads an array of `u32` socket option values (a `struct` of `__u32` fields in the uapi)
/// into `out`, returning how many the kernel filled in.
fn get_u32s_opt(
    fd: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    out: &mut [u32],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut len = libc::socklen_t::try_from(std::mem::size_of_val(out)).map_err(invalid)?;
    // SAFETY: `fd` is a valid open fd; `out` is a live, writable buffer of `len` bytes (any bit
    // pattern is a valid u32) and `len` is a live socklen_t the kernel updates; the return
    // value is checked.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            out.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    let filled = usize::try_from(len).map_err(invalid)? / std::mem::size_of::<u32>();
    Ok(filled.min(out.len()))
}

/// The kernel's count of datagrams a socket dropped, mostly for a full receive buffer
/// (`sk_drops`, 32 bits, wrapping). SO_RXQ_OVFL hands out the same counter, but in a control
/// message with every datagram received, that is on the fast path; `SO_MEMINFO`
/// (`SK_MEMINFO_DROPS`, Linux >= 4.14) reads it on demand.
pub fn socket_drops(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
    const SK_MEMINFO_VARS: usize = 9;
    let mut info = [0u32; SK_MEMINFO_VARS];
    let at = usize::try_from(libc::SK_MEMINFO_DROPS).map_err(invalid)?;
    let filled = get_u32s_opt(fd, libc::SOL_SOCKET, libc::SO_MEMINFO, &mut info)?;
    if filled <= at {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without the drop count (kernel older than 4.14)",
        ));
    }
    Ok(info[at])
}

/// The part of `buf` a header-less device reads into: everything after the header space.
fn payload_mut(buf: &mut [u8]) -> io::Result<&mut [u8]> {
    buf.get_mut(HDR..).ok_or_else(short_buffer)
}

/// The part of `frame` a header-less device is given: everything after the header.
fn payload(frame: &[u8]) -> io::Result<&[u8]> {
    frame.get(HDR..).ok_or_else(short_buffer)
}

fn short_buffer() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "buffer shorter than the 10-byte vnet header",
    )
}

/// Finishes a receive of `n` bytes reported by the kernel into `buf`, where the device wrote
/// a header itself (`with_hdr`) or wrote the bare frame at `buf[HDR..]`. Checks truncation
/// against what the kernel reported and zeroes the header of a header-less frame.
fn finish_recv(buf: &mut [u8], n: usize, with_hdr: bool) -> io::Result<usize> {
    let total = if with_hdr { n } else { n + HDR };
    if total > buf.len() {
        return Err(FrameTruncated {
            len: total,
            cap: buf.len(),
        }
        .into_io());
    }
    if !with_hdr {
        buf[..HDR].fill(0);
    }
    Ok(total)
}

/// Control-message space on the stack, aligned as `cmsghdr` wants: room for the one or two
/// small messages netyard sends or asks for (`UDP_SEGMENT`, `UDP_GRO`).
#[repr(C, align(8))]
pub(crate) struct CmsgBuf(pub(crate) [u8; 64]);

/// One `sendmsg` of `iov` on `fd` (to `to`, or the connected peer) carrying `UDP_SEGMENT` =
/// `seg`: the kernel cuts the payload into datagrams of `seg` bytes (UDP GSO; the last may be
/// shorter). The control message is built on the stack: nix's `sendmsg` builds it in a `Vec`
/// per call, an allocation per GSO send (the VXLAN port's and egress's fast paths).
pub fn send_udp_gso(
    fd: std::os::fd::RawFd,
    iov: &[io::IoSlice<'_>],
    seg: u16,
    to: Option<&nix::sys::socket::SockaddrIn>,
    flags: nix::sys::socket::MsgFlags,
) -> nix::Result<usize> {
    use nix::sys::socket::SockaddrLike;
    let data_len = socklen::<u16>().map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
    let (space, len) = unsafe { (libc::CMSG_SPACE(data_len), libc::CMSG_LEN(data_len)) };
    let mut cbuf = CmsgBuf([0; 64]);
    let space = usize::try_from(space).map_err(|_| nix::errno::Errno::EINVAL)?;
    if space > cbuf.0.len() {
        return Err(nix::errno::Errno::EINVAL);
    }
    // SAFETY: an all-zero msghdr is a valid empty one (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(to) = to {
        msg.msg_name = to.as_ptr().cast_mut().cast();
        msg.msg_namelen = to.len();
    }
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; the kernel only reads it.
    msg.msg_iov = iov.as_ptr().cast_mut().cast();
    msg.msg_iovlen = iov.len();
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` zeroed, 8-aligned bytes of `cbuf`, room for one
    // cmsghdr with a u16 (checked above), so CMSG_FIRSTHDR is that header and CMSG_DATA lies
    // inside the buffer; the data is written unaligned as it may sit at any offset.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(nix::errno::Errno::EINVAL);
        }
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = usize::try_from(len).map_err(|_| nix::errno::Errno::EINVAL)?;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), seg);
    }
    // SAFETY: `msg` and everything it points to (the address, `iov` and the buffers it
    // describes, `cbuf`) live until the call returns; the kernel only reads them; the return
    // value is checked.
    let n = unsafe { libc::sendmsg(fd, &msg, flags.bits()) };
    nix::errno::Errno::result(n).map(|n| usize::try_from(n).unwrap_or(0))
}

/// Checks that a send wrote the whole frame (TAP, packet and seqpacket writes are
/// all-or-nothing; anything else is a kernel surprise worth reporting).
fn check_sent(sent: usize, want: usize) -> io::Result<()> {
    if sent == want {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {sent} of {want} bytes"),
        ))
    }
}
