//! TAP devices.
//!
//! [`open_tap`] opens the device inside the container's network namespace (the daemon forks a
//! child or uses a thread that joined the namespace); the fd then travels to the daemon, which
//! wraps it in a [`TapPort`]. Its [`TapMode`] decides the device's lifetime:
//!
//! - [`TapMode::Ephemeral`]: the device disappears when the last fd closes, so a dead daemon
//!   leaves nothing behind.
//! - [`TapMode::Persistent`]: the device is created exclusively (a taken name is an error),
//!   owned by the caller's effective uid and marked persistent (TUNSETPERSIST): it outlives the
//!   fd, and so a daemon restart. Without an fd it has no carrier and drops what the container
//!   sends.
//! - [`TapMode::Reopen`]: attaches to such a persistent device after a restart. It never
//!   creates one: a missing device is `ENODEV`.
//!
//! A persistent device goes away with its namespace, or when an fd holder clears the flag
//! ([`set_persist`]`(fd, false)`) and closes the last fd.
//!
//! With offloads the port follows Firecracker and cloud-hypervisor: `IFF_VNET_HDR`, a 10-byte
//! header (TUNSETVNETHDRSZ) and TUNSETOFFLOAD with CSUM/TSO4/TSO6 plus USO4/USO6 where the
//! kernel has them (Linux >= 6.2), so the kernel hands up to 64 KB GSO frames in one read. A
//! TAP fd reads one frame per syscall (no recvmmsg), so big GSO frames are the only way to
//! amortise syscalls. Header size and offloads belong to the device and survive a reopen, but
//! [`TapPort::from_fd`] sets them again anyway, so a reopened fd never depends on what the
//! previous holder left.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::uio::readv;

use super::ifreq::IfReq;
use super::{
    check_sent, cvt, finish_recv, invalid, payload, payload_mut, FrameTruncated, SysError, HDR,
};
use crate::counters::{DropReason, KernelCount, KernelReading};
use crate::port::{Port, PortCaps};

/// Offloads asked of every TAP with a vnet header.
const OFFLOAD_TCP: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
/// UDP segmentation offload, added when the kernel knows it.
const OFFLOAD_UDP: libc::c_uint = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// The longest frame a TAP hands up, with its vnet header: a 64 KiB GSO super-frame, or a
/// frame of the largest MTU (65535) with its Ethernet and VLAN headers.
const FRAME_MAX: usize = HDR + 65_535 + 22;

/// What [`open_tap`] does with the device name (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapMode {
    /// Creates the device, or attaches to an existing TAP of that name that no fd holds; it
    /// vanishes with its last fd (unless it was made persistent by someone else).
    Ephemeral,
    /// Creates the device exclusively (`IFF_TUN_EXCL`: an existing interface of that name is
    /// `EBUSY`, never taken over), sets its owner to the caller's effective uid (TUNSETOWNER, so
    /// a rootless daemon's child may reopen it) and makes it persistent (TUNSETPERSIST).
    Persistent,
    /// Attaches to an existing persistent TAP: `ENODEV` if there is none of that name (nothing
    /// is created), `EINVAL` if the interface is not a TAP, `EBUSY` if another fd holds it.
    Reopen,
}

/// Opens the TAP device `name` in the calling thread's network namespace as `mode` says and
/// returns its fd and the kernel's name for it (`name` may be empty or a pattern like
/// `"tap%d"` when creating).
///
/// The fd is `O_RDWR|O_CLOEXEC|O_NONBLOCK` with `IFF_TAP|IFF_NO_PI`, plus `IFF_VNET_HDR` when
/// `vnet_hdr` (a reopen passes the same flags; they replace the previous holder's). Errors are
/// bare errnos (see [`TapMode`]); callers name the device (`SysError::CreateTap`). Only plain
/// syscalls are made, and the returned `String` is the only allocation, so this is fit for a
/// forked child of a multi-threaded process; [`open_tap_raw`] avoids even that.
pub fn open_tap(name: &str, vnet_hdr: bool, mode: TapMode) -> io::Result<(OwnedFd, String)> {
    let (fd, raw) = open_tap_raw(name, vnet_hdr, mode)?;
    let bytes = raw.map(|c| c.to_ne_bytes()[0]);
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok((fd, String::from_utf8_lossy(&bytes[..len]).into_owned()))
}

/// [`open_tap`] without any allocation: the name comes back as the kernel's NUL-padded
/// `IFNAMSIZ` array, and every error is an `io::Error` holding a raw errno.
///
/// A failure after the device was created (TUNSETOWNER, TUNSETPERSIST) closes the fd, which
/// removes the device again: a persistent TAP exists only if this returned it.
pub fn open_tap_raw(
    name: &str,
    vnet_hdr: bool,
    mode: TapMode,
) -> io::Result<(OwnedFd, [libc::c_char; libc::IFNAMSIZ])> {
    let mut flags = tap_flags(vnet_hdr);
    match mode {
        TapMode::Ephemeral => {}
        TapMode::Persistent => flags |= IFF_TUN_EXCL,
        // TUNSETIFF has no "attach only" flag and would create a missing device: look first.
        TapMode::Reopen => {
            if !interface_exists(name)? {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
        }
    }
    let mut req = IfReq::new(name)?.with_flags(flags);
    let fd = open_tun_dev()?;
    set_iff(fd.as_fd(), &mut req)?;
    match mode {
        TapMode::Ephemeral => {}
        TapMode::Persistent => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let euid = unsafe { libc::geteuid() };
            set_owner(fd.as_fd(), euid)?;
            set_persist(fd.as_fd(), true)?;
        }
        TapMode::Reopen => {
            // The device may have vanished between the look-up and TUNSETIFF, which then made
            // a new one: that one is not persistent, and dropping `fd` removes it again.
            if get_iff_flags(fd.as_fd())? & IFF_PERSIST == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
        }
    }
    Ok((fd, req.name_raw()))
}

/// TUNSETPERSIST: whether the TAP behind `fd` outlives its last fd. Clearing it on a device
/// that is still open removes the device when its last fd closes.
pub fn set_persist(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd and TUNSETPERSIST takes its argument by value (no memory
    // is accessed); the return value is checked.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) })?;
    Ok(())
}

/// TUNSETOWNER: the user (as seen from the caller's user namespace) who may attach to the TAP
/// behind `fd` without CAP_NET_ADMIN. `EINVAL` if `uid` is not mapped there.
pub fn set_owner(fd: BorrowedFd<'_>, uid: libc::uid_t) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd and TUNSETOWNER takes its argument by value (no memory
    // is accessed); the return value is checked.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOWNER, libc::c_ulong::from(uid)) })?;
    Ok(())
}

// TUNSETIFF/TUNGETIFF flags from linux/if_tun.h, typed as the 16-bit `ifr_flags` they travel
// in (libc has them as `c_int`; a test checks they agree).
const IFF_TUN: u16 = 0x0001;
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;
/// TUNGETIFF reports it on a persistent device.
const IFF_PERSIST: u16 = 0x0800;
/// TUNSETIFF: fail with EBUSY instead of attaching to an existing device.
const IFF_TUN_EXCL: u16 = 0x8000;

/// The TUNSETIFF flags netyard uses.
fn tap_flags(vnet_hdr: bool) -> u16 {
    if vnet_hdr {
        IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
    } else {
        IFF_TAP | IFF_NO_PI
    }
}

/// Opens the tun/tap clone device.
fn open_tun_dev() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated static string; open has no other memory effects and
    // its return value is checked.
    let fd = cvt(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    })?;
    // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether interface `name` exists in the calling thread's network namespace (SIOCGIFINDEX).
fn interface_exists(name: &str) -> io::Result<bool> {
    let mut req = IfReq::new(name)?;
    // SAFETY: socket takes only integers; its return value is checked.
    let sock =
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `sock` was just returned by a successful socket call and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: `sock` is a valid socket and `req` points to a live, initialised `ifreq` that
    // SIOCGIFINDEX reads and writes (the index, in the union) within its size; the return
    // value is checked.
    match cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, req.as_mut_ptr()) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e),
    }
}

/// TUNSETIFF: creates or attaches to the device named in `req`; the kernel writes back the
/// final name.
fn set_iff(fd: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd and `req` points to a live, initialised `ifreq` that
    // TUNSETIFF reads and writes within its size; the return value is checked.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) })?;
    Ok(())
}

/// TUNGETIFF: the device's tun flags (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, ...).
fn get_iff_flags(fd: BorrowedFd<'_>) -> io::Result<u16> {
    let mut req = IfReq::new("")?;
    // SAFETY: `fd` is a valid open fd and `req` points to a live, initialised `ifreq` that
    // TUNGETIFF writes within its size; the return value is checked.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, req.as_mut_ptr()) })?;
    Ok(req.flags())
}

/// TUNSETVNETHDRSZ.
fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(size).map_err(invalid)?;
    // SAFETY: `fd` is a valid open fd and TUNSETVNETHDRSZ reads one `int` through the pointer,
    // which points to a live local; the return value is checked.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) })?;
    Ok(())
}

/// TUNSETOFFLOAD: the offloads the kernel may leave to us in frames it hands up.
fn set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd and TUNSETOFFLOAD takes its argument by value (no memory
    // is accessed); the return value is checked.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    })?;
    Ok(())
}

/// Makes `fd` non-blocking if it is not already.
fn ensure_nonblocking(fd: BorrowedFd<'_>, ifname: &str) -> Result<(), SysError> {
    let bits = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| SysError::GetStatusFlags {
        ifname: ifname.to_owned(),
        source: e.into(),
    })?;
    let flags = OFlag::from_bits_retain(bits);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(|e| {
            SysError::SetNonBlocking {
                ifname: ifname.to_owned(),
                source: e.into(),
            }
        })?;
    }
    Ok(())
}

/// A TAP device as a switch port.
#[derive(Debug)]
pub struct TapPort {
    fd: OwnedFd,
    name: String,
    caps: PortCaps,
    /// Reads the device's own drop counters, if the daemon gave a reader.
    device_drops: Option<Box<dyn DeviceDrops>>,
}

/// The drop counters a TAP device keeps itself (`struct rtnl_link_stats64`), from the device's
/// point of view: it "transmits" what the container sends to netyard and "receives" what
/// netyard writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceDropCounts {
    /// Frames netyard wrote that the container's kernel dropped on input (a full backlog).
    pub rx_dropped: u64,
    /// Frames the container sent that the device dropped because its queue to netyard
    /// (`txqueuelen` frames) was full.
    pub tx_dropped: u64,
}

/// Reads a TAP device's [`DeviceDropCounts`]. The counters live with the device in the
/// container's namespace, which the TAP fd gives no way to query: the daemon supplies a
/// reader that can (a netlink socket opened in that namespace).
pub trait DeviceDrops: Send + Sync + std::fmt::Debug + 'static {
    fn read(&self) -> io::Result<DeviceDropCounts>;
}

impl TapPort {
    /// Wraps a TAP fd from [`open_tap`], in any [`TapMode`]. `offloads` must match how it was
    /// opened (`vnet_hdr == offloads`), which is checked with TUNGETIFF.
    ///
    /// With `offloads`, sets a 10-byte vnet header and CSUM/TSO4/TSO6 (+USO4/USO6 when the
    /// kernel accepts them): caps are `vnet_hdr`, `gso_tcp`, and `gso_udp` only if USO was
    /// accepted. Without, caps are [`PortCaps::PLAIN`]. Ensures `O_NONBLOCK` either way. Both
    /// are set on every call, never assumed: a reopened persistent TAP carries whatever header
    /// size and offloads its previous holder left.
    pub fn from_fd(fd: OwnedFd, name: String, offloads: bool) -> Result<TapPort, SysError> {
        ensure_nonblocking(fd.as_fd(), &name)?;
        let actual = get_iff_flags(fd.as_fd()).map_err(|source| SysError::GetTapFlags {
            ifname: name.clone(),
            source,
        })?;
        let mask = IFF_TUN | IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if actual & mask != tap_flags(offloads) {
            return Err(SysError::TapFlagsMismatch {
                ifname: name,
                actual,
                vnet_hdr: offloads,
            });
        }
        let caps = if offloads {
            Self::enable_offloads(fd.as_fd(), &name)?
        } else {
            PortCaps::PLAIN
        };
        Ok(TapPort {
            fd,
            name,
            caps,
            device_drops: None,
        })
    }

    /// Gives the port a reader of the device's own drop counters, which
    /// [`Port::kernel_drops`] then reports (`tap_queue_full`, `tap_rx_dropped`).
    #[must_use]
    pub fn with_device_drops(mut self, reader: Box<dyn DeviceDrops>) -> TapPort {
        self.device_drops = Some(reader);
        self
    }

    /// Sets the header size and the offloads, falling back to no USO on kernels without it.
    fn enable_offloads(fd: BorrowedFd<'_>, name: &str) -> Result<PortCaps, SysError> {
        set_vnet_hdr_size(fd, HDR).map_err(|source| SysError::SetVnetHdrSize {
            ifname: name.to_owned(),
            source,
        })?;
        let mut caps = PortCaps {
            vnet_hdr: true,
            gso_tcp: true,
            gso_udp: true,
        };
        let mut flags = OFFLOAD_TCP | OFFLOAD_UDP;
        if let Err(e) = set_offload(fd, flags) {
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(SysError::SetOffload {
                    ifname: name.to_owned(),
                    flags,
                    source: e,
                });
            }
            // Linux < 6.2 rejects the USO bits with EINVAL.
            flags = OFFLOAD_TCP;
            caps.gso_udp = false;
            set_offload(fd, flags).map_err(|source| SysError::SetOffload {
                ifname: name.to_owned(),
                flags,
                source,
            })?;
        }
        Ok(caps)
    }

    /// The interface name given to [`TapPort::from_fd`].
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl TapPort {
    /// [`Port::send_batch`] one write at a time.
    fn send_each(&self, frames: &[&[u8]], failed: &mut dyn FnMut(usize, io::Error)) -> usize {
        for (i, f) in frames.iter().enumerate() {
            if let Err(e) = self.send(f) {
                failed(i, e);
            }
        }
        frames.len()
    }
}

/// `read(2)` or `write(2)` (`nr`) of `len` bytes at `buf` on `fd` as a raw syscall, bypassing
/// glibc's wrapper (a cancellation point: two atomic updates of the thread's cancel state
/// around every call, which netyard, cancelling no thread, never needs).
///
/// # Safety
/// `buf` must be valid for `len` bytes: writable and exclusively borrowed for a read,
/// initialised for a write.
unsafe fn raw_io(
    nr: libc::c_long,
    fd: BorrowedFd<'_>,
    buf: *mut u8,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: `fd` is open for the borrow; the caller vouches for `buf` and `len`, and the
    // return value is checked.
    let r = unsafe { libc::syscall(nr, fd.as_raw_fd(), buf, len) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

impl Port for TapPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let with_hdr = self.caps.vnet_hdr;
        let dst = if with_hdr {
            &mut *buf
        } else {
            payload_mut(buf)?
        };
        if dst.len() > FRAME_MAX {
            // No frame fills a buffer this big, so a full one can only be a cut frame: one
            // plain `read`, without the spill-over slot below (the kernel copies no iovec
            // array in), made as a raw syscall ([`raw_io`]: glibc's brackets were 4% of the
            // daemon's time on a small-frame flood).
            // SAFETY: `dst` is a live, exclusively borrowed buffer of `dst.len()` bytes that
            // the kernel writes within.
            let n =
                unsafe { raw_io(libc::SYS_read, self.fd.as_fd(), dst.as_mut_ptr(), dst.len()) }?;
            if n == dst.len() {
                return Err(FrameTruncated {
                    len: buf.len() + 1,
                    cap: buf.len(),
                }
                .into_io());
            }
            return finish_recv(buf, n, with_hdr);
        }
        // tun copies what fits and returns only that, with no truncation flag. A one-byte
        // spill-over slot after the buffer tells a frame that exactly fits (`n <= len`) from
        // one that did not (`n == len + 1`, the rest lost).
        let mut spill = [0u8; 1];
        let n = readv(
            self.fd.as_fd(),
            &mut [IoSliceMut::new(dst), IoSliceMut::new(&mut spill)],
        )?;
        finish_recv(buf, n, with_hdr)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let src = if self.caps.vnet_hdr {
            frame
        } else {
            payload(frame)?
        };
        // A raw syscall, as `recv` reads (a frame of a ping-pong, a burst's first frames and
        // the runs below the batch floor all come this way).
        // SAFETY: `src` is live and initialised for its length; a write only reads it.
        let n = unsafe {
            raw_io(
                libc::SYS_write,
                self.fd.as_fd(),
                src.as_ptr().cast_mut(),
                src.len(),
            )
        }?;
        check_sent(n, src.len())
    }

    /// One io_uring submission for the whole batch ([`super::uring`]: a TAP takes one frame
    /// per write, so this is the only way to write several in one syscall); frame by frame
    /// where io_uring is not available.
    fn send_batch(&self, frames: &[&[u8]], failed: &mut dyn FnMut(usize, io::Error)) -> usize {
        let n = frames.len().min(super::uring::BATCH);
        // A single frame gains nothing from a submission; a header-less TAP (rare: no
        // offloads asked) keeps the plain path rather than a second way of stripping headers.
        if !self.caps.vnet_hdr || n < 2 {
            return self.send_each(&frames[..n], failed);
        }
        let mut results = [0i32; super::uring::BATCH];
        let Some(done) = super::uring::write_batch(self.fd.as_raw_fd(), &frames[..n], &mut results)
        else {
            return self.send_each(&frames[..n], failed);
        };
        for (i, (&r, src)) in results.iter().zip(frames).take(done).enumerate() {
            let outcome = match usize::try_from(r) {
                Ok(written) => check_sent(written, src.len()),
                Err(_) => Err(io::Error::from_raw_os_error(r.saturating_neg())),
            };
            if let Err(e) = outcome {
                failed(i, e);
            }
        }
        done.max(1)
    }

    fn batches(&self) -> bool {
        self.caps.vnet_hdr && super::uring::available()
    }

    fn caps(&self) -> PortCaps {
        self.caps
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn kind(&self) -> &'static str {
        "tap"
    }

    /// The device's running totals (64-bit), if the port has a reader for them.
    fn kernel_drops(&self, out: &mut Vec<KernelReading>) -> io::Result<()> {
        let Some(reader) = &self.device_drops else {
            return Ok(());
        };
        let c = reader.read()?;
        let total = |reason, value| KernelReading {
            reason,
            count: KernelCount::Total { value, bits: 64 },
        };
        out.push(total(DropReason::TapQueueFull, c.tx_dropped));
        out.push(total(DropReason::TapRxDropped, c.rx_dropped));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sys::testutil::{
        broadcast_arp, eth_frame, eventually, hdr_u16, in_new_netns, ip_output, ipv4_gso,
        kernel_at_least, recv_matching, wait_readable, GSO_TCPV4, GSO_UDP_L4,
    };
    use crate::sys::{set_link_up, FrameTruncated, PacketPort};

    #[test]
    fn flag_constants_match_libc() {
        for (ours, theirs) in [
            (IFF_TUN, libc::IFF_TUN),
            (IFF_TAP, libc::IFF_TAP),
            (IFF_NO_PI, libc::IFF_NO_PI),
            (IFF_VNET_HDR, libc::IFF_VNET_HDR),
            (IFF_PERSIST, libc::IFF_PERSIST),
            (IFF_TUN_EXCL, libc::IFF_TUN_EXCL),
        ] {
            assert_eq!(libc::c_int::from(ours), theirs);
        }
    }

    #[test]
    fn tap_offloads_and_frames_cross_the_kernel() {
        in_new_netns(|| {
            let (fd, name) = open_tap("nytest0", true, TapMode::Ephemeral).expect("open_tap");
            assert_eq!(name, "nytest0");
            let tap = TapPort::from_fd(fd, name, true).expect("from_fd");
            assert_eq!(
                tap.caps(),
                PortCaps {
                    vnet_hdr: true,
                    gso_tcp: true,
                    gso_udp: kernel_at_least(6, 2),
                }
            );
            assert_eq!(tap.kind(), "tap");
            set_link_up("nytest0").expect("link up");
            // A plain AF_PACKET socket on the TAP's interface, inside the namespace.
            let sniffer = PacketPort::open("nytest0", false).expect("packet socket");

            // TAP -> kernel: a broadcast ARP written to the TAP arrives on the interface.
            let src = [0x02, 0x4e, 0x59, 0, 0, 1];
            let arp = broadcast_arp(src);
            let mut out = vec![0u8; HDR];
            out.extend_from_slice(&arp);
            tap.send(&out).expect("tap send");
            let got = recv_matching(&sniffer, Duration::from_secs(2), |f| f == out.as_slice());
            assert!(got.is_some(), "ARP written to the TAP not seen on nytest0");

            // kernel -> TAP: a frame sent on the interface is read with a vnet header.
            let frame = eth_frame(
                [0xff; 6],
                [0x02, 0x4e, 0x59, 0, 0, 2],
                0x88b5,
                b"to the tap",
            );
            let mut out = vec![0u8; HDR];
            out.extend_from_slice(&frame);
            sniffer.send(&out).expect("packet send");
            let got = recv_matching(&tap, Duration::from_secs(2), |f| f[HDR..] == frame[..])
                .expect("frame sent on nytest0 not read from the TAP");
            assert_eq!(got.len(), HDR + frame.len());
            // No GSO, no partial checksum for a non-IP frame.
            assert_eq!(got[1], 0, "gso_type");
            assert_eq!(got[0] & 1, 0, "NEEDS_CSUM");

            // A frame that exactly fills the buffer is whole...
            sniffer.send(&out).expect("packet send");
            let mut exact = vec![0u8; HDR + frame.len()];
            assert!(wait_readable(tap.raw_fd(), Duration::from_secs(2)));
            assert_eq!(tap.recv(&mut exact).expect("exact fit"), exact.len());
            assert_eq!(exact[HDR..], frame[..]);
            // ...as it is in a buffer bigger than any frame (the driver's: one plain read)...
            sniffer.send(&out).expect("packet send");
            let mut big = vec![0u8; FRAME_MAX + 1];
            assert!(wait_readable(tap.raw_fd(), Duration::from_secs(2)));
            assert_eq!(tap.recv(&mut big).expect("big buffer"), HDR + frame.len());
            assert_eq!(big[HDR..HDR + frame.len()], frame[..]);
            // ...and one longer than the buffer is reported as truncated, not half-delivered.
            sniffer.send(&out).expect("packet send");
            assert!(wait_readable(tap.raw_fd(), Duration::from_secs(2)));
            let mut small = [0u8; 20];
            let err = tap.recv(&mut small).expect_err("truncated read");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(FrameTruncated::is(&err), "{err}");
        });
    }

    /// With offloads on, GSO super-frames cross between the TAP and the kernel whole, both
    /// ways: the kernel hands the TAP what its offload flags allow instead of segmenting.
    #[test]
    fn tap_gso_both_ways() {
        in_new_netns(|| {
            let (fd, name) = open_tap("nytest3", true, TapMode::Ephemeral).expect("open_tap");
            let tap = TapPort::from_fd(fd, name, true).expect("from_fd");
            assert_gso_both_ways(&tap);
        });
    }

    /// Sends TCP (and, with USO, UDP) GSO super-frames from the kernel to `tap` and back
    /// through an AF_PACKET socket on its interface, and checks each crosses whole.
    fn assert_gso_both_ways(tap: &TapPort) {
        set_link_up(tap.name()).expect("link up");
        let sock = PacketPort::open(tap.name(), true).expect("packet socket");
        let (a, b) = ([0x02, 0x4e, 0x59, 0, 2, 1], [0x02, 0x4e, 0x59, 0, 2, 2]);
        let wait = Duration::from_secs(2);
        let mut types = vec![GSO_TCPV4];
        if tap.caps().gso_udp {
            types.push(GSO_UDP_L4);
        }
        for gso_type in types {
            // kernel -> TAP.
            let (out, _) = ipv4_gso(a, b, gso_type, 3000, 1000);
            sock.send(&out).expect("packet send");
            let got = recv_matching(tap, wait, |f| f.len() > 2000)
                .unwrap_or_else(|| panic!("GSO {gso_type} frame not read from the TAP"));
            assert_eq!(got.len(), out.len(), "read as one super-frame");
            assert_eq!(got[1], gso_type, "gso_type");
            assert_eq!(hdr_u16(&got, 4), 1000, "gso_size");
            assert_eq!(got[HDR..], out[HDR..]);

            // TAP -> kernel.
            let (out, _) = ipv4_gso(b, a, gso_type, 3000, 1000);
            tap.send(&out).expect("tap send");
            let got = recv_matching(&sock, wait, |f| f.len() > 2000)
                .unwrap_or_else(|| panic!("GSO {gso_type} frame written to the TAP lost"));
            assert_eq!(got.len(), out.len(), "arrived as one super-frame");
            assert_eq!(got[1], gso_type, "gso_type");
            assert_eq!(hdr_u16(&got, 4), 1000, "gso_size");
            assert_eq!(got[HDR..], out[HDR..]);
        }
    }

    /// `ip -d link show NAME`, whose `tun` line shows `persist on|off` and `user NAME`. Used
    /// sparingly: every fork copies the fds of all test threads for a moment (see
    /// [`eventually`]).
    fn tun_details(name: &str) -> String {
        ip_output(&["-d", "link", "show", "dev", name])
    }

    fn persistent(fd: BorrowedFd<'_>) -> bool {
        get_iff_flags(fd).expect("TUNGETIFF") & IFF_PERSIST != 0
    }

    fn exists(name: &str) -> bool {
        nix::net::if_::if_nametoindex(name).is_ok()
    }

    /// Reopens the persistent TAP `name`, retrying while it is busy: the fd just closed may
    /// live on for a moment in a child another test thread forked (see [`eventually`]).
    fn reopen(name: &str, vnet_hdr: bool) -> (OwnedFd, String) {
        let mut last = None;
        eventually(Duration::from_secs(1), || {
            match open_tap(name, vnet_hdr, TapMode::Reopen) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => false,
                other => {
                    last = Some(other);
                    true
                }
            }
        });
        match last {
            Some(r) => r.unwrap_or_else(|e| panic!("reopen {name}: {e}")),
            None => panic!("reopen {name}: still busy"),
        }
    }

    /// Whether `name` is gone within a second (see [`eventually`]).
    fn gone(name: &str) -> bool {
        eventually(Duration::from_secs(1), || !exists(name))
    }

    /// The life of a persistent TAP across a "daemon restart": it outlives its fd, a reopen
    /// attaches to it with offloads set again (whatever the holder in between left), and
    /// clearing the flag lets it go with its last fd.
    #[test]
    fn persistent_tap_survives_its_fd_and_reopens() {
        in_new_netns(|| {
            let (fd, name) = open_tap("nyp0", true, TapMode::Persistent).expect("persistent");
            assert_eq!(name, "nyp0");
            assert!(persistent(fd.as_fd()));
            let details = tun_details("nyp0");
            assert!(details.contains("persist on"), "{details}");
            // Owned by the creator: root here.
            assert!(details.contains("user root"), "{details}");
            let tap = TapPort::from_fd(fd, name, true).expect("from_fd");
            set_link_up("nyp0").expect("link up");
            drop(tap);
            // (Reopening below proves it more: Reopen refuses a device that is not persistent.)
            assert!(exists("nyp0"), "persistent TAP died with its fd");

            // A holder in between leaves another header size and no offloads behind.
            let (fd, _) = reopen("nyp0", true);
            set_vnet_hdr_size(fd.as_fd(), 12).expect("TUNSETVNETHDRSZ");
            set_offload(fd.as_fd(), 0).expect("TUNSETOFFLOAD");
            drop(fd);
            assert!(exists("nyp0"));

            // The restarted daemon reopens it: GSO super-frames cross with a 10-byte header.
            let (fd, name) = reopen("nyp0", true);
            assert_eq!(name, "nyp0");
            let tap = TapPort::from_fd(fd, name, true).expect("from_fd on a reopened fd");
            assert!(
                tap.caps().vnet_hdr && tap.caps().gso_tcp,
                "{:?}",
                tap.caps()
            );
            assert_gso_both_ways(&tap);

            // Reopened without the vnet header, the fd has none (the flags are the opener's).
            drop(tap);
            let (fd, name) = reopen("nyp0", false);
            let tap = TapPort::from_fd(fd, name, false).expect("from_fd plain");
            assert_eq!(tap.caps(), PortCaps::PLAIN);

            // Clearing the flag: the device goes with its last fd.
            set_persist(tap.fd.as_fd(), false).expect("TUNSETPERSIST 0");
            assert!(exists("nyp0"), "gone while still open");
            assert!(!persistent(tap.fd.as_fd()));
            drop(tap);
            assert!(gone("nyp0"), "non-persistent TAP outlived its last fd");
        });
    }

    #[test]
    fn reopen_never_creates_and_persistent_never_takes_over() {
        in_new_netns(|| {
            // Reopening a missing device fails with ENODEV and creates nothing.
            let err = open_tap("nym0", true, TapMode::Reopen).expect_err("missing");
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
            assert!(!exists("nym0"), "Reopen created a device");
            // Nor does a pattern name a device to reopen.
            let err = open_tap("nym%d", true, TapMode::Reopen).expect_err("pattern");
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
            // An interface that is no TAP is refused by the kernel.
            let err = open_tap("lo", true, TapMode::Reopen).expect_err("lo");
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");

            // Persistent on a taken name: EBUSY, whether the holder is an open ephemeral TAP,
            // a closed persistent one or another kind of interface; the device stays as it was.
            let (held, _) = open_tap("nyx0", true, TapMode::Ephemeral).expect("ephemeral");
            let err = open_tap("nyx0", true, TapMode::Persistent).expect_err("taken");
            assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
            assert!(!persistent(held.as_fd()));
            // An open ephemeral TAP is not reopened either: it is busy, not persistent.
            let err = open_tap("nyx0", true, TapMode::Reopen).expect_err("busy");
            assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
            drop(held);
            assert!(gone("nyx0"), "ephemeral TAP outlived its fd");

            let (fd, _) = open_tap("nyx1", true, TapMode::Persistent).expect("persistent");
            drop(fd);
            let err = open_tap("nyx1", true, TapMode::Persistent).expect_err("exists");
            assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
            assert!(exists("nyx1"));
            // A persistent device is held by one fd at a time.
            let (fd, _) = reopen("nyx1", true);
            let err = open_tap("nyx1", true, TapMode::Reopen).expect_err("second reopen");
            assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
            drop(fd);

            let err = open_tap("lo", true, TapMode::Persistent).expect_err("lo");
            assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");

            // The owner is what TUNSETOWNER says (ip shows an unnamed uid as a number).
            let (fd, _) = reopen("nyx1", true);
            set_owner(fd.as_fd(), 4_242_424).expect("TUNSETOWNER");
            let details = tun_details("nyx1");
            assert!(details.contains("user 4242424"), "{details}");
            set_persist(fd.as_fd(), false).expect("TUNSETPERSIST 0");
            drop(fd);
            assert!(
                gone("nyx1"),
                "TAP outlived its last fd after TUNSETPERSIST 0"
            );
        });
    }

    #[test]
    fn tap_without_vnet_header() {
        in_new_netns(|| {
            // A header-less fd wrapped with offloads (and the reverse) is refused.
            let (fd, name) = open_tap("nytest1", false, TapMode::Ephemeral).expect("open_tap");
            let err = TapPort::from_fd(fd, name, true).expect_err("mismatch");
            assert!(
                matches!(err, SysError::TapFlagsMismatch { vnet_hdr: true, .. }),
                "{err}"
            );
            let (fd, name) = open_tap("nytest1", true, TapMode::Ephemeral).expect("open_tap");
            let err = TapPort::from_fd(fd, name, false).expect_err("mismatch");
            assert!(
                matches!(
                    err,
                    SysError::TapFlagsMismatch {
                        vnet_hdr: false,
                        ..
                    }
                ),
                "{err}"
            );

            // The kernel picks the name from a pattern.
            let (fd, name) = open_tap("nyt%d", false, TapMode::Ephemeral).expect("open_tap");
            assert_eq!(name, "nyt0");
            let tap = TapPort::from_fd(fd, name, false).expect("from_fd");
            assert_eq!(tap.caps(), PortCaps::PLAIN);
            assert_eq!(tap.name(), "nyt0");
            set_link_up("nyt0").expect("link up");
            let sniffer = PacketPort::open("nyt0", false).expect("packet socket");

            let frame = eth_frame([0xff; 6], [0x02, 0x4e, 0x59, 0, 0, 3], 0x88b5, b"plain");
            let mut out = vec![0xeeu8; HDR];
            out.extend_from_slice(&frame);
            // The switch's header is stripped on send...
            tap.send(&out).expect("tap send");
            let mut want = vec![0u8; HDR];
            want.extend_from_slice(&frame);
            let got = recv_matching(&sniffer, Duration::from_secs(2), |f| f == want.as_slice());
            assert!(got.is_some(), "frame written to the TAP not seen on nyt0");
            // ...and a zero header is put in front on receive.
            sniffer.send(&want).expect("packet send");
            let got = recv_matching(&tap, Duration::from_secs(2), |f| f == want.as_slice());
            assert!(got.is_some(), "frame sent on nyt0 not read from the TAP");
            // A buffer without room for the header is refused.
            let err = tap.send(&[0u8; 5]).expect_err("runt send");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        });
    }

    #[test]
    fn tap_nonblocking_and_gone_when_closed() {
        in_new_netns(|| {
            let (fd, name) = open_tap("nytest2", true, TapMode::Ephemeral).expect("open_tap");
            // from_fd restores O_NONBLOCK if the fd lost it.
            fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("clear O_NONBLOCK");
            let tap = TapPort::from_fd(fd, name, true).expect("from_fd");
            let mut buf = [0u8; 2048];
            let err = tap.recv(&mut buf).expect_err("empty TAP");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            assert!(nix::net::if_::if_nametoindex("nytest2").is_ok());
            drop(tap);
            assert!(gone("nytest2"), "TAP outlived its fd");
        });
    }
}
