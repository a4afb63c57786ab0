//! The one trait every switch port implements.
//!
//! Frame layout contract: every buffer handed to or returned from a port starts with a
//! [`VNET_HDR_LEN`]-byte virtio-net header followed by the Ethernet frame. A port whose device
//! has no vnet header (`caps().vnet_hdr == false`) writes an all-zero header on receive and
//! strips it on send; the switch never hands such a port a GSO or NEEDS_CSUM frame (it segments
//! and completes checksums first, see [`crate::gso`]).

use std::io;
use std::os::fd::RawFd;

pub use crate::wire::vnet::VNET_HDR_LEN;

/// Identifies a port within one switch. Never reused while the switch lives.
pub type PortId = u32;

/// What a port's device can take and give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortCaps {
    /// The device exchanges a virtio-net header with each frame.
    pub vnet_hdr: bool,
    /// The device accepts GSO super-frames and partial checksums on send (TSO4/TSO6/CSUM).
    pub gso_tcp: bool,
    /// The device accepts UDP GSO (USO) super-frames on send.
    pub gso_udp: bool,
}

impl PortCaps {
    /// A plain device: no header, no offloads.
    pub const PLAIN: PortCaps = PortCaps {
        vnet_hdr: false,
        gso_tcp: false,
        gso_udp: false,
    };
}

/// A source and sink of frames backed by a non-blocking file descriptor.
///
/// `recv` and `send` never block: they return `ErrorKind::WouldBlock` when the device has
/// nothing to give or no room. The driver waits for readiness on `raw_fd`.
pub trait Port: Send + Sync + 'static {
    /// Reads one frame (vnet header + Ethernet frame) into `buf`, returning its length.
    /// `ErrorKind::Interrupted` means the port did work that yielded no frame (a shared VXLAN
    /// socket handing datagrams to another VNI's port) and may have more: call again.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (vnet header + Ethernet frame).
    fn send(&self, frame: &[u8]) -> io::Result<()>;
    /// Writes `frames` in order with as few syscalls as the device allows (`sendmmsg`,
    /// io_uring) and returns how many it dealt with (at least one when `frames` is not empty;
    /// the caller calls again with the rest): each was written, or its index and error were
    /// given to `failed`. The default writes them one by one with [`Port::send`].
    fn send_batch(&self, frames: &[&[u8]], failed: &mut dyn FnMut(usize, io::Error)) -> usize {
        for (i, f) in frames.iter().enumerate() {
            if let Err(e) = self.send(f) {
                failed(i, e);
            }
        }
        frames.len()
    }
    /// Whether [`Port::send_batch`] writes several frames per syscall: only then does the
    /// driver hold a burst's frames back for it (the default: no, write each at once).
    fn batches(&self) -> bool {
        false
    }
    /// Takes the frame in `buf[..len]` by taking the buffer itself and leaving an empty one
    /// of the same length in its place (an in-process consumer, [`crate::handoff`]): no copy.
    /// `Ok(false)` when this port does not take buffers (the default: use [`Port::send`]).
    fn hand_off(&self, buf: &mut crate::sys::pagebuf::PageBuf, len: usize) -> io::Result<bool> {
        let _ = (buf, len);
        Ok(false)
    }
    /// The device's capabilities.
    fn caps(&self) -> PortCaps;
    /// The fd the driver registers for read readiness. Owned by the port.
    fn raw_fd(&self) -> RawFd;
    /// Ready when the port holds frames that its fd's readiness does not report (datagrams
    /// another VNI's tunnel port read from a shared VXLAN socket and queued for this one);
    /// otherwise registers `cx`'s waker, woken when such frames come. The driver waits on
    /// this beside the fd. The default never wakes (and registers nothing).
    fn poll_queued(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let _ = cx;
        std::task::Poll::Pending
    }
    /// A short label for logs and stats ("tap", "veth", "mem").
    fn kind(&self) -> &'static str;
    /// Whether the port is a tunnel to other hosts (its frames come from another host's
    /// forwarder, not from an endpoint or an in-process port): busy-polling yields the CPU
    /// differently after forwarding them ([`crate::busy_poll::ThreadYield`]). The default: no.
    fn is_tunnel(&self) -> bool {
        false
    }
    /// Reads the drop counters the kernel keeps for this port's socket or device (frames lost
    /// where netyard cannot see them: a full socket buffer, a full TAP queue) into `out`.
    /// Called off the fast path (a stats request, a scrape, the ager's tick), never per frame;
    /// [`SwitchPort::sync_kernel_drops`](crate::SwitchPort::sync_kernel_drops) turns the
    /// readings into counts. Ports without such counters read nothing.
    fn kernel_drops(&self, out: &mut Vec<crate::counters::KernelReading>) -> io::Result<()> {
        let _ = out;
        Ok(())
    }
}
