//! AF_PACKET sockets bound to one interface of the daemon's namespace (the host end of a veth
//! pair, or any Ethernet device).
//!
//! With `PACKET_VNET_HDR` the socket exchanges the same virtio-net header as a TAP: the kernel
//! describes GSO and partial-checksum skbs it hands up, and builds a GSO skb from the header of
//! a frame we send, so 64 KB TCP/UDP super-frames cross a veth in one syscall (veth GSO needs
//! Linux >= 4.19). OVS's userspace datapath drives veths the same way.
//!
//! Socket setup, in order:
//! 1. `socket(AF_PACKET, SOCK_RAW|SOCK_NONBLOCK|SOCK_CLOEXEC, 0)`. Protocol 0 means the socket
//!    receives nothing until `bind` names both the protocol and the interface; a socket opened
//!    with `ETH_P_ALL` would queue every interface's frames in between.
//! 2. `PACKET_VNET_HDR` (must precede any ring or bind).
//! 3. `PACKET_QDISC_BYPASS`: sends go straight to the device's xmit (a veth has no qdisc
//!    anyway). Two consequences. A frame the device drops (say the peer's backlog is full)
//!    fails with `ENOBUFS`, not `EAGAIN`: the driver counts it as a drop. And the bypass path
//!    never segments in software, so a GSO frame is only accepted if the device offloads that
//!    GSO type itself: with TSO/USO turned off on the interface (`ethtool -K`), GSO sends fail
//!    with `ENOBUFS` (seen in tests with a TAP without offloads). veth offloads TCP and UDP
//!    GSO by default, which is what [`PacketPort::open`]'s caps assume; they are not read
//!    from the device.
//! 4. `PACKET_IGNORE_OUTGOING`: frames the socket (or the host) sends on the interface are
//!    not read back, so the switch never sees its own output (Linux >= 4.20).
//! 5. Large `SO_RCVBUF`/`SO_SNDBUF` (`*FORCE` as root, else capped by `rmem_max`/`wmem_max`).
//!
//! 6. Unless `NETYARD_PACKET_RING=0`: a receive ring (`PACKET_RX_RING`, TPACKET_V2, `ring`;
//!    [`ring_bytes`] big, 2 MiB unless `NETYARD_PACKET_RING` gives another size in KiB),
//!    so small frames are taken from memory the kernel filled, without a syscall; frames too
//!    big for a slot (GSO super-frames) are still `recv`ed from the socket. A kernel that
//!    refuses the ring leaves the port without one (logged), as before.
//! 7. `bind` to `(ETH_P_ALL, ifindex)`.
//!
//! Batching: [`PacketPort::recv_batch`] and [`PacketPort::send_batch`] move up to
//! [`BATCH_MAX`] frames per recvmmsg/sendmmsg (or ring slots), the OVS way. They are not part
//! of [`Port`] (a TAP has no equivalent); a driver that knows it holds a `PacketPort` may use
//! them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use nix::sys::socket::{self, setsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType};

use super::{
    check_sent, cvt, finish_recv, invalid, payload, payload_mut, socklen, FrameTruncated, PortDrop,
    SysError, HDR,
};
use crate::counters::{DropReason, KernelCount, KernelReading};
use crate::port::{Port, PortCaps};

mod ring;

use ring::{RxRing, Slot};

// From linux/if_packet.h (not exported by every libc 0.2 release).
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;

/// Requested socket buffer size, each way. Enough for 64 full 64 KB GSO frames.
const SOCK_BUF_BYTES: usize = 4 << 20;

/// Most frames one [`PacketPort::recv_batch`] or [`PacketPort::send_batch`] call moves.
pub const BATCH_MAX: usize = 64;

/// What [`PacketPort::recv_batch`] learned about one received frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// The frame's full length, vnet header included (a zero header for a header-less port),
    /// as [`Port::recv`] would return it. Larger than the buffer when `truncated`.
    pub len: usize,
    /// The frame did not fit its buffer and is lost (what
    /// [`FrameTruncated`](super::FrameTruncated) reports for single receives).
    pub truncated: bool,
}

/// A port's receive ring when nothing says otherwise, in KiB (1024 slots of 2 KiB). Kernel
/// memory taken whole when the port opens, so it is paid per veth port: 2 MiB kept nine tenths
/// of 4 MiB's saving in CPU per small frame and the same delivered rate, 1 MiB about three
/// fifths and a lower rate (benches/README.md, "TPACKET rings and multi-queue TAP").
pub const DEFAULT_RING_KIB: usize = 2048;

/// The receive ring's size from `NETYARD_PACKET_RING`'s value (KiB; 0: no ring; unset: the
/// default), or why the value is not one.
pub fn parse_ring_kib(value: Option<&str>) -> Result<usize, String> {
    match value.map(str::trim) {
        None => Ok(DEFAULT_RING_KIB),
        Some(v) => v.parse::<usize>().map_err(|_| {
            format!("NETYARD_PACKET_RING: {v:?} is not a size in KiB (0 turns the ring off)")
        }),
    }
}

/// The size, in bytes, of the receive ring every port gets (0: none): `NETYARD_PACKET_RING`
/// in KiB, default [`DEFAULT_RING_KIB`]; a value that is no number is logged and the default
/// used. Rounded down to a power of two of 64 KiB blocks, at most 64 MiB. Read once.
pub fn ring_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        let value = std::env::var("NETYARD_PACKET_RING").ok();
        parse_ring_kib(value.as_deref())
            .unwrap_or_else(|e| {
                tracing::warn!("{e}; using {DEFAULT_RING_KIB}");
                DEFAULT_RING_KIB
            })
            .saturating_mul(1024)
    })
}

/// Whether ports get a receive ring ([`ring_bytes`] is not 0).
pub fn ring_configured() -> bool {
    ring_bytes() > 0
}

/// An AF_PACKET socket as a switch port.
#[derive(Debug)]
pub struct PacketPort {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    caps: PortCaps,
    /// The receive ring, if the port has one (`ring`).
    ring: Option<RxRing>,
}

/// setsockopt of one `int` option.
pub(super) fn set_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = socklen::<libc::c_int>()?;
    // SAFETY: `fd` is a valid open fd; the option value points to a live `c_int` and `len` is
    // its size; the return value is checked.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    })?;
    Ok(())
}

/// Binds `fd` to every protocol on interface `ifindex`.
fn bind_all(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let ifindex =
        libc::c_int::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    let addr = libc::sockaddr_ll {
        sll_family: libc::c_ushort::try_from(libc::AF_PACKET).map_err(invalid)?,
        sll_protocol: u16::try_from(libc::ETH_P_ALL).map_err(invalid)?.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let len = socklen::<libc::sockaddr_ll>()?;
    // SAFETY: `fd` is a valid open fd; `addr` is a live, initialised `sockaddr_ll` and `len` is
    // its size; the return value is checked.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(())
}

/// Sizes a socket buffer with the `*FORCE` option, falling back to the capped one when not
/// privileged.
pub(super) fn set_buf<F, O>(fd: BorrowedFd<'_>, force: F, plain: O) -> io::Result<()>
where
    F: nix::sys::socket::SetSockOpt<Val = usize>,
    O: nix::sys::socket::SetSockOpt<Val = usize>,
{
    match setsockopt(&fd, force, &SOCK_BUF_BYTES) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => Ok(setsockopt(&fd, plain, &SOCK_BUF_BYTES)?),
        Err(e) => Err(e.into()),
    }
}

impl PacketPort {
    /// Opens an AF_PACKET socket on `ifname` in the calling thread's network namespace (see the
    /// module docs for the steps), with a receive ring unless [`ring_configured`] says no.
    /// With `vnet_hdr` the caps are `vnet_hdr`, `gso_tcp` and `gso_udp`; without,
    /// [`PortCaps::PLAIN`].
    pub fn open(ifname: &str, vnet_hdr: bool) -> Result<PacketPort, SysError> {
        PacketPort::open_with(ifname, vnet_hdr, ring_configured())
    }

    /// [`PacketPort::open`], with a receive ring or without as `ring` says (a ring the kernel
    /// refuses is logged and done without).
    pub fn open_with(ifname: &str, vnet_hdr: bool, ring: bool) -> Result<PacketPort, SysError> {
        let name = || ifname.to_owned();
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| SysError::PacketSocket {
            ifname: name(),
            source: e.into(),
        })?;
        let bfd = fd.as_fd();
        if vnet_hdr {
            set_int_opt(bfd, libc::SOL_PACKET, PACKET_VNET_HDR, 1).map_err(|source| {
                SysError::SetPacketVnetHdr {
                    ifname: name(),
                    source,
                }
            })?;
        }
        set_int_opt(bfd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1).map_err(|source| {
            SysError::SetQdiscBypass {
                ifname: name(),
                source,
            }
        })?;
        set_int_opt(bfd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1).map_err(|source| {
            SysError::SetIgnoreOutgoing {
                ifname: name(),
                source,
            }
        })?;
        set_buf(bfd, sockopt::RcvBufForce, sockopt::RcvBuf).map_err(|source| {
            SysError::SetRecvBuffer {
                ifname: name(),
                source,
            }
        })?;
        set_buf(bfd, sockopt::SndBufForce, sockopt::SndBuf).map_err(|source| {
            SysError::SetSendBuffer {
                ifname: name(),
                source,
            }
        })?;
        let ring = ring
            .then(|| {
                let bytes = match ring_bytes() {
                    0 => DEFAULT_RING_KIB << 10,
                    b => b,
                };
                RxRing::new(bfd, bytes)
                    .inspect_err(|e| {
                        tracing::info!(ifname, error = %e, "no receive ring: frames are read one recv each");
                    })
                    .ok()
            })
            .flatten();
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|e| SysError::IfIndex {
            ifname: name(),
            source: e.into(),
        })?;
        bind_all(bfd, ifindex).map_err(|source| SysError::BindPacket {
            ifname: name(),
            ifindex,
            source,
        })?;
        let caps = if vnet_hdr {
            PortCaps {
                vnet_hdr: true,
                gso_tcp: true,
                gso_udp: true,
            }
        } else {
            PortCaps::PLAIN
        };
        Ok(PacketPort {
            fd,
            ifname: ifname.to_owned(),
            ifindex,
            caps,
            ring,
        })
    }

    /// Puts the interface in promiscuous mode for as long as this socket lives
    /// (`PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`: the kernel counts such members and
    /// drops the mode when the last socket closes, so a crashed daemon leaves nothing set).
    /// An uplink needs it: the LAN sends frames to its endpoints' MACs, not the interface's.
    pub fn set_promiscuous(&self) -> io::Result<()> {
        let ifindex = libc::c_int::try_from(self.ifindex).map_err(invalid)?;
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::c_ushort::try_from(libc::PACKET_MR_PROMISC).map_err(invalid)?,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        let len = socklen::<libc::packet_mreq>()?;
        // SAFETY: `self.fd` is a valid open socket; `mreq` is a live, initialised
        // `packet_mreq` and `len` is its size; the return value is checked.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                std::ptr::from_ref(&mreq).cast(),
                len,
            )
        })?;
        Ok(())
    }

    /// The interface the socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's index (at open time).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether frames are received through a ring (module docs, step 6).
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// [`Port::recv`] through the ring: the next slot's frame copied into `buf`; None when
    /// the slot could not hold it and the kernel queued it on the socket, to `recv` from there.
    fn recv_ring(&self, ring: &RxRing, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let with_hdr = self.caps.vnet_hdr;
        let got = ring.take(with_hdr, |slot, bytes| match slot {
            Slot::Frame { start, len } => {
                let total = len + HDR;
                let (Some(dst), Some(frame)) =
                    (buf.get_mut(..total), bytes.get(start..start + len))
                else {
                    return Err(FrameTruncated {
                        len: total,
                        cap: buf.len(),
                    }
                    .into_io());
                };
                let (hdr, body) = dst.split_at_mut(HDR);
                match bytes.get(start - HDR..start) {
                    Some(h) if with_hdr => hdr.copy_from_slice(h),
                    _ => hdr.fill(0),
                }
                body.copy_from_slice(frame);
                Ok(Some(total))
            }
            // The kernel queued the frame before it handed the slot over.
            Slot::Queued => Ok(None),
            // Cut short with nowhere to queue the rest: the socket's buffer was full.
            Slot::Lost => Err(PortDrop(DropReason::PacketRcvbufFull).into_io()),
        });
        match got {
            None => Some(Err(io::Error::from(io::ErrorKind::WouldBlock))),
            Some(Ok(None)) => None,
            Some(Ok(Some(n))) => Some(Ok(n)),
            Some(Err(e)) => Some(Err(e)),
        }
    }

    /// [`PacketPort::recv_batch`] through the ring: a [`Port::recv`] per frame (a slot, or the
    /// socket for a frame too big for one), until the ring is empty.
    fn recv_batch_ring<B: AsMut<[u8]>>(
        &self,
        bufs: &mut [B],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let mut got = 0;
        for (buf, m) in bufs.iter_mut().zip(meta.iter_mut()).take(BATCH_MAX) {
            let buf = buf.as_mut();
            if buf.len() < HDR {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            match Port::recv(self, buf) {
                Ok(len) => {
                    *m = RecvMeta {
                        len,
                        truncated: false,
                    }
                }
                Err(e) => match e.get_ref().and_then(|i| i.downcast_ref::<FrameTruncated>()) {
                    Some(t) => {
                        *m = RecvMeta {
                            len: t.len,
                            truncated: true,
                        }
                    }
                    None if got > 0 || e.kind() == io::ErrorKind::Interrupted => break,
                    None => return Err(e),
                },
            }
            got += 1;
        }
        Ok(got)
    }

    /// Receives up to `min(bufs.len(), meta.len(), BATCH_MAX)` frames with one `recvmmsg`,
    /// frame `i` into `bufs[i]` laid out as [`Port::recv`] does, and its length and truncation
    /// into `meta[i]`. Returns how many were received; `WouldBlock` if none were waiting.
    ///
    /// A truncated frame is reported in its `meta` entry, not as an error. An error the kernel
    /// hits after the first frame ends the batch early and is returned by the next call.
    /// Every buffer must hold at least the 10-byte header (`InvalidInput` otherwise).
    pub fn recv_batch<B: AsMut<[u8]>>(
        &self,
        bufs: &mut [B],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let count = bufs.len().min(meta.len()).min(BATCH_MAX);
        if count == 0 {
            return Ok(0);
        }
        if self.ring.is_some() {
            return self.recv_batch_ring(&mut bufs[..count], meta);
        }
        let with_hdr = self.caps.vnet_hdr;
        let mut caps = [0usize; BATCH_MAX];
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH_MAX];
        for ((buf, iov), cap) in bufs.iter_mut().zip(&mut iovs).zip(&mut caps).take(count) {
            let buf = buf.as_mut();
            *cap = buf.len();
            let dst = if with_hdr { buf } else { payload_mut(buf)? };
            iov.iov_base = dst.as_mut_ptr().cast();
            iov.iov_len = dst.len();
        }
        // SAFETY: `mmsghdr` is plain old data (integers and raw pointers); all-zero is valid.
        let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
        for (hdr, iov) in hdrs.iter_mut().zip(&mut iovs).take(count) {
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        let vlen = libc::c_uint::try_from(count).map_err(invalid)?;
        // SAFETY: `self.fd` is a valid socket; the first `count` headers each point to one iovec
        // that covers a live, exclusively borrowed part of `bufs[i]`, all of which outlive the
        // call; no name or control buffers are given; a null timeout is allowed. The return
        // value is checked.
        let got = cvt(unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        })?;
        let got = usize::try_from(got).unwrap_or(0).min(count);
        for i in 0..got {
            // With MSG_TRUNC, `msg_len` is the frame's full length.
            let n = usize::try_from(hdrs[i].msg_len).map_err(invalid)?;
            let len = if with_hdr { n } else { n + HDR };
            let truncated = len > caps[i] || hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            if !with_hdr && !truncated {
                if let Some(h) = bufs[i].as_mut().get_mut(..HDR) {
                    h.fill(0);
                }
            }
            meta[i] = RecvMeta { len, truncated };
        }
        Ok(got)
    }

    /// Sends up to `min(frames.len(), BATCH_MAX)` frames (laid out as for [`Port::send`]) with
    /// one `sendmmsg`. Returns how many were sent, which may be fewer; `WouldBlock` if none
    /// could be. An error on the first frame is returned; an error on a later one ends the batch
    /// early (retry from the returned count to see it).
    pub fn send_batch<B: AsRef<[u8]>>(&self, frames: &[B]) -> io::Result<usize> {
        let count = frames.len().min(BATCH_MAX);
        if count == 0 {
            return Ok(0);
        }
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH_MAX];
        for (frame, iov) in frames.iter().zip(&mut iovs).take(count) {
            let frame = frame.as_ref();
            let src = if self.caps.vnet_hdr {
                frame
            } else {
                payload(frame)?
            };
            // The kernel only reads through this pointer (sendmmsg).
            iov.iov_base = src.as_ptr().cast_mut().cast();
            iov.iov_len = src.len();
        }
        // SAFETY: `mmsghdr` is plain old data (integers and raw pointers); all-zero is valid.
        let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
        for (hdr, iov) in hdrs.iter_mut().zip(&mut iovs).take(count) {
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        let vlen = libc::c_uint::try_from(count).map_err(invalid)?;
        // SAFETY: `self.fd` is a valid socket; the first `count` headers each point to one iovec
        // covering a live part of `frames[i]`, which sendmmsg only reads; no name or control
        // buffers are given. The return value is checked.
        let sent = cvt(unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
            )
        })?;
        Ok(usize::try_from(sent).unwrap_or(0).min(count))
    }
}

impl Port for PacketPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(ring) = &self.ring {
            if let Some(got) = self.recv_ring(ring, buf) {
                return got;
            }
        }
        let with_hdr = self.caps.vnet_hdr;
        let dst = if with_hdr {
            &mut *buf
        } else {
            payload_mut(buf)?
        };
        // MSG_TRUNC: the return value is the frame's full length even if it did not fit.
        let n = match socket::recv(self.fd.as_raw_fd(), dst, MsgFlags::MSG_TRUNC) {
            Ok(n) => n,
            // A batch send that stopped at a frame the peer had no room for leaves that error
            // on the socket, reported by the next receive: it is no receive error (the send's
            // caller retried that frame), so it only asks to be called again.
            Err(nix::errno::Errno::ENOBUFS) => {
                return Err(io::Error::from(io::ErrorKind::Interrupted))
            }
            Err(e) => return Err(e.into()),
        };
        finish_recv(buf, n, with_hdr)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let src = if self.caps.vnet_hdr {
            frame
        } else {
            payload(frame)?
        };
        let n = socket::send(self.fd.as_raw_fd(), src, MsgFlags::empty())?;
        check_sent(n, src.len())
    }

    /// One `sendmmsg` for the batch ([`PacketPort::send_batch`]). A frame the kernel refuses
    /// after the first ends the call early: the caller's next call starts with it, and then
    /// sees its error (or sends it, if the peer found room meanwhile).
    fn send_batch(&self, frames: &[&[u8]], failed: &mut dyn FnMut(usize, io::Error)) -> usize {
        if frames.is_empty() {
            return 0;
        }
        match PacketPort::send_batch(self, frames) {
            Ok(0) => {
                failed(0, io::Error::from(io::ErrorKind::WouldBlock));
                1
            }
            Ok(n) => n,
            Err(e) => {
                failed(0, e);
                1
            }
        }
    }

    fn batches(&self) -> bool {
        true
    }

    fn caps(&self) -> PortCaps {
        self.caps
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn kind(&self) -> &'static str {
        "veth"
    }

    /// PACKET_STATISTICS: frames the kernel dropped since the last reading, for a full
    /// receive buffer (the kernel resets the count when it is read).
    fn kernel_drops(&self, out: &mut Vec<KernelReading>) -> io::Result<()> {
        // struct tpacket_stats { __u32 tp_packets; __u32 tp_drops; }
        let mut st = [0u32; 2];
        let filled = super::get_u32s_opt(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            &mut st,
        )?;
        if filled < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "PACKET_STATISTICS answered short",
            ));
        }
        out.push(KernelReading {
            reason: DropReason::PacketRcvbufFull,
            count: KernelCount::Since(u64::from(st[1])),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sys::testutil::{
        eth_frame, hdr_u16, in_new_netns, ip, ipv4_gso, recv_matching, wait_readable, GSO_TCPV4,
        GSO_UDP_L4,
    };

    const WAIT: Duration = Duration::from_secs(2);
    const MAC_A: [u8; 6] = [0x02, 0x4e, 0x59, 0, 1, 1];
    const MAC_B: [u8; 6] = [0x02, 0x4e, 0x59, 0, 1, 2];

    /// A veth pair nyv0/nyv1, both up, in the calling thread's namespace.
    fn veth_pair() {
        ip(&[
            "link", "add", "nyv0", "type", "veth", "peer", "name", "nyv1",
        ]);
        ip(&["link", "set", "nyv0", "up"]);
        ip(&["link", "set", "nyv1", "up"]);
    }

    fn with_zero_hdr(frame: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; HDR];
        v.extend_from_slice(frame);
        v
    }

    /// Receives from `port` for `wait`, asserting `frame` (after the header) never shows up.
    fn assert_not_received(port: &PacketPort, frame: &[u8], wait: Duration) {
        let seen = recv_matching(port, wait, |f| f.get(HDR..) == Some(frame));
        assert!(
            seen.is_none(),
            "{} read back a frame it should not see",
            port.ifname()
        );
    }

    #[test]
    fn veth_frames_cross() {
        in_new_netns(|| {
            veth_pair();
            let a = PacketPort::open("nyv0", true).expect("open nyv0");
            let b = PacketPort::open("nyv1", true).expect("open nyv1");
            let b_plain = PacketPort::open("nyv1", false).expect("open nyv1 plain");
            let all = PortCaps {
                vnet_hdr: true,
                gso_tcp: true,
                gso_udp: true,
            };
            assert_eq!(a.caps(), all);
            assert_eq!(b_plain.caps(), PortCaps::PLAIN);
            assert_eq!(a.kind(), "veth");
            assert_eq!(a.ifname(), "nyv0");
            assert_eq!(
                Some(a.ifindex()),
                nix::net::if_::if_nametoindex("nyv0").ok()
            );

            // a -> b, seen by both sockets on nyv1, with a zero header.
            let f1 = eth_frame([0xff; 6], MAC_A, 0x88b5, b"a to b");
            a.send(&with_zero_hdr(&f1)).expect("send a");
            let got = recv_matching(&b, WAIT, |f| f[HDR..] == f1[..]).expect("b missed a's frame");
            assert_eq!(got, with_zero_hdr(&f1));
            let got = recv_matching(&b_plain, WAIT, |f| f.get(HDR..) == Some(&f1[..]))
                .expect("plain socket missed a's frame");
            assert_eq!(got, with_zero_hdr(&f1));

            // b -> a (unicast), and neither sender reads its own frames back.
            let f2 = eth_frame(MAC_A, MAC_B, 0x88b5, b"b to a");
            b.send(&with_zero_hdr(&f2)).expect("send b");
            recv_matching(&a, WAIT, |f| f[HDR..] == f2[..]).expect("a missed b's frame");
            assert_not_received(&a, &f1, Duration::from_millis(100));
            assert_not_received(&b, &f2, Duration::from_millis(100));

            // Truncation is reported, not half-delivered.
            let big = eth_frame(MAC_A, MAC_B, 0x88b5, &[0x5a; 1000]);
            b.send(&with_zero_hdr(&big)).expect("send big");
            let mut small = [0u8; 500];
            let err = loop {
                assert!(wait_readable(a.raw_fd(), WAIT), "big frame never arrived");
                // Something small is not ours: read on.
                if let Err(e) = a.recv(&mut small) {
                    break e;
                }
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(FrameTruncated::is(&err), "{err}");

            // Misuse and bad names.
            assert_eq!(
                b_plain.send(&[0u8; 4]).expect_err("runt").kind(),
                io::ErrorKind::InvalidInput
            );
            let err = PacketPort::open("nynone0", true).expect_err("no such interface");
            assert!(matches!(err, SysError::IfIndex { .. }), "{err}");
        });
        // The namespace, and the veth in it, went away with the thread.
        assert!(nix::net::if_::if_nametoindex("nyv0").is_err());
    }

    /// IPv4 TCP and UDP GSO super-frames (3 segments of 1000 bytes) cross the veth as one frame
    /// each: the kernel built a GSO skb from our header and described it again on the other side.
    #[test]
    fn veth_carries_gso() {
        in_new_netns(|| {
            veth_pair();
            let a = PacketPort::open("nyv0", true).expect("open nyv0");
            let b = PacketPort::open("nyv1", true).expect("open nyv1");

            for gso_type in [GSO_TCPV4, GSO_UDP_L4] {
                let (out, l4) = ipv4_gso(MAC_B, MAC_A, gso_type, 3000, 1000);
                a.send(&out).expect("send GSO frame");
                let got = recv_matching(&b, WAIT, |f| f.len() > 2000)
                    .unwrap_or_else(|| panic!("GSO {gso_type} frame not received"));
                assert_eq!(got.len(), out.len(), "arrived as one super-frame");
                assert_eq!(got[1], gso_type, "gso_type");
                assert_eq!(hdr_u16(&got, 4), 1000, "gso_size");
                assert_eq!(got[0] & 1, 1, "NEEDS_CSUM");
                assert_eq!(hdr_u16(&got, 6), 34, "csum_start");
                assert_eq!(hdr_u16(&got, 8), out[8].into(), "csum_offset");
                assert_eq!(got[HDR + 34 + l4..], out[HDR + 34 + l4..]);
            }
        });
    }

    /// Receives from `port` until its ring and socket are empty: frames whole, errors kept.
    fn drain(port: &PacketPort) -> Vec<io::Result<Vec<u8>>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65_536 + HDR];
        loop {
            match port.recv(&mut buf) {
                Ok(n) => out.push(Ok(buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => out.push(Err(e)),
            }
        }
    }

    /// `NETYARD_PACKET_RING`: a size in KiB, 0 for none, anything else refused by name.
    #[test]
    fn ring_size_from_the_environment() {
        assert_eq!(parse_ring_kib(None), Ok(DEFAULT_RING_KIB));
        assert_eq!(parse_ring_kib(Some(" 1024 ")), Ok(1024));
        assert_eq!(parse_ring_kib(Some("0")), Ok(0));
        let err = parse_ring_kib(Some("4M")).expect_err("not a number");
        assert!(
            err.contains("NETYARD_PACKET_RING") && err.contains("4M"),
            "{err}"
        );
    }

    /// A veth pair with MTU 9000 (frames bigger than a ring slot): a port on nyv0 without a
    /// ring, one on nyv1 with.
    fn jumbo_ports() -> (PacketPort, PacketPort) {
        veth_pair();
        ip(&["link", "set", "nyv0", "mtu", "9000"]);
        ip(&["link", "set", "nyv1", "mtu", "9000"]);
        let a = PacketPort::open_with("nyv0", true, false).expect("open nyv0");
        let b = PacketPort::open_with("nyv1", true, true).expect("open nyv1");
        assert!(!a.has_ring());
        assert!(b.has_ring(), "the kernel refused a ring");
        (a, b)
    }

    /// Through the ring, in order: small frames from its slots, a jumbo frame (too big for a
    /// slot) from the socket's queue, header-less and with a vnet header; a port without a
    /// ring still reads from the socket.
    #[test]
    fn veth_ring_slots_and_queue() {
        in_new_netns(|| {
            let (a, b) = jumbo_ports();
            let b_plain = PacketPort::open_with("nyv1", false, true).expect("open nyv1 plain");
            assert!(b_plain.has_ring(), "the kernel refused a ring");

            let frames: Vec<Vec<u8>> = [60usize, 5000, 100, 1500]
                .iter()
                .map(|&n| eth_frame(MAC_B, MAC_A, 0x88b5, &vec![n as u8; n]))
                .collect();
            for f in &frames {
                a.send(&with_zero_hdr(f)).expect("send");
            }
            for port in [&b, &b_plain] {
                assert!(wait_readable(port.raw_fd(), WAIT), "nothing arrived");
                let got: Vec<Vec<u8>> = drain(port)
                    .into_iter()
                    .map(|r| r.expect("recv"))
                    .filter(|f| f[HDR..].starts_with(&MAC_B))
                    .collect();
                let want: Vec<Vec<u8>> = frames.iter().map(|f| with_zero_hdr(f)).collect();
                assert_eq!(got, want, "{}: all four, whole, in order", port.ifname());
            }

            // A frame bigger than the caller's buffer is reported truncated, never half-given.
            a.send(&with_zero_hdr(&frames[3])).expect("send");
            assert!(wait_readable(b.raw_fd(), WAIT));
            let mut small = [0u8; 600];
            let err = b
                .recv(&mut small)
                .expect_err("1500-byte frame in 600 bytes");
            assert!(FrameTruncated::is(&err), "{err}");

            // b -> a reaches the port without a ring.
            b.send(&with_zero_hdr(&frames[0])).expect("send b");
            recv_matching(&a, WAIT, |f| f[HDR..] == frames[0][..]).expect("a missed b's frame");
        });
    }

    /// A frame too big for a slot that the socket's full buffer cannot queue either is lost
    /// and said so (`packet_rcvbuf_full`), and the frames around it still come.
    #[test]
    fn veth_ring_counts_a_frame_with_nowhere_to_go() {
        in_new_netns(|| {
            let (a, b) = jumbo_ports();
            // The smallest receive buffer: one queued jumbo frame fills it.
            setsockopt(&b.fd, sockopt::RcvBuf, &0).expect("SO_RCVBUF");

            let small = eth_frame(MAC_B, MAC_A, 0x88b5, &[7; 60]);
            let jumbo = eth_frame(MAC_B, MAC_A, 0x88b5, &[9; 5000]);
            for f in [&jumbo, &jumbo, &jumbo, &small] {
                a.send(&with_zero_hdr(f)).expect("send");
            }
            assert!(wait_readable(b.raw_fd(), WAIT));
            let got = drain(&b);
            let lost = got
                .iter()
                .filter(|r| {
                    r.as_ref().err().and_then(PortDrop::reason)
                        == Some(DropReason::PacketRcvbufFull)
                })
                .count();
            let whole: Vec<&Vec<u8>> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(lost, 2, "{got:?}");
            assert_eq!(whole, [&with_zero_hdr(&jumbo), &with_zero_hdr(&small)]);
        });
    }

    #[test]
    fn veth_batches() {
        in_new_netns(|| {
            veth_pair();
            let a = PacketPort::open("nyv0", true).expect("open nyv0");
            let b = PacketPort::open("nyv1", false).expect("open nyv1");

            let frames: Vec<Vec<u8>> = (0u8..3)
                .map(|i| with_zero_hdr(&eth_frame(MAC_B, MAC_A, 0x88b5, &[i; 100])))
                .collect();
            assert_eq!(a.send_batch(&frames).expect("send_batch"), 3);
            assert_eq!(a.send_batch::<Vec<u8>>(&[]).expect("empty batch"), 0);

            let mut bufs = vec![vec![0xeeu8; 2048]; 4];
            let mut meta = [RecvMeta::default(); 4];
            let mut seen = Vec::new();
            while seen.len() < 3 {
                assert!(wait_readable(b.raw_fd(), WAIT), "batch frames missing");
                let n = match b.recv_batch(&mut bufs, &mut meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("recv_batch: {e}"),
                };
                for (buf, m) in bufs.iter().zip(&meta).take(n) {
                    assert!(!m.truncated);
                    let f = &buf[..m.len];
                    if frames.iter().any(|want| want[..] == f[..]) {
                        seen.push(f.to_vec());
                    }
                }
            }
            assert_eq!(seen, frames, "all three, in order, with zero headers");

            // A frame too big for its buffer is flagged in its meta entry.
            let err = b
                .recv_batch(&mut bufs, &mut meta)
                .expect_err("nothing queued");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            a.send_batch(&frames[..1]).expect("send one");
            let mut small = vec![vec![0u8; 50]; 2];
            let mut meta = [RecvMeta::default(); 2];
            assert!(wait_readable(b.raw_fd(), WAIT));
            let n = b.recv_batch(&mut small, &mut meta).expect("recv_batch");
            assert!(n >= 1);
            let ours = meta[..n].iter().find(|m| m.len == frames[0].len());
            assert_eq!(
                ours,
                Some(&RecvMeta {
                    len: frames[0].len(),
                    truncated: true
                })
            );
        });
    }
}
