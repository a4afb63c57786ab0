//! The gateway task's link to its switch, both ways.
//!
//! In the daemon ([`SwitchLink::InProcess`]):
//! - frames from the switch are handed over in process: the gateway's switch port is a
//!   [`HandoffPort`](netyard_switch::handoff::HandoffPort), so the port task that read a frame
//!   from a container's TAP queues that very buffer for the gateway task (no syscall, no copy,
//!   one wake-up per burst). The socketpair this replaced cost a copy each way, a socket buffer
//!   and an epoll wake-up per frame: about a third of the daemon's CPU on the container's TCP
//!   out path;
//! - frames the gateway sends are forwarded by the gateway task itself: it runs the switch's
//!   forwarding decision as if the frame had been read from the gateway port and writes it to
//!   the destination port's device. That saves a copy and a wake-up of another task per frame,
//!   which is most of a published connection's setup latency.
//!
//! Without a switch (unit tests, [`SwitchLink::Socket`]) both directions go through the
//! socketpair of an in-memory port.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use netyard_switch::handoff::HandoffRx;
use netyard_switch::port::VNET_HDR_LEN;
use netyard_switch::sys::pagebuf::PageBuf;
use netyard_switch::sys::{AsyncMemPeer, MemPeer};
use netyard_switch::{driver, Switch, SwitchPort};

/// The switch and the gateway's own port on it, for direct forwarding.
#[derive(Clone)]
pub struct Direct {
    pub switch: Arc<Switch>,
    pub port: Arc<SwitchPort>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("port", &self.port.name)
            .finish()
    }
}

thread_local! {
    /// Software segmentation scratch of direct forwarding (per runtime thread, reused).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A header-less frame copied behind a zero virtio-net header.
    static PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

const PLAIN_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// How a gateway is joined to its switch.
pub enum SwitchLink {
    /// Both directions through a socketpair port (tests).
    Socket(MemPeer),
    /// The daemon's: frames from the switch handed over in process, frames to it forwarded
    /// by the gateway task.
    InProcess { rx: HandoffRx, direct: Direct },
}

enum Link {
    Socket(AsyncMemPeer),
    InProcess { rx: HandoffRx, direct: Direct },
}

/// The gateway's link to its switch.
pub struct Uplink {
    link: Link,
}

impl Uplink {
    /// Must be called inside a tokio runtime (a socketpair is registered with it).
    pub fn new(link: SwitchLink) -> io::Result<Uplink> {
        let link = match link {
            SwitchLink::Socket(peer) => Link::Socket(AsyncMemPeer::new(peer)?),
            SwitchLink::InProcess { rx, direct } => Link::InProcess { rx, direct },
        };
        Ok(Uplink { link })
    }

    /// Waits for and receives one frame from the switch (virtio-net header, then Ethernet)
    /// into `buf`, returning its length. In process, `buf` is swapped for the frame's own
    /// buffer (keep it as long as the switch's receive buffers: they trade places).
    pub async fn recv(&self, buf: &mut PageBuf) -> io::Result<usize> {
        match &self.link {
            Link::Socket(peer) => peer.recv(buf).await,
            Link::InProcess { rx, .. } => rx.recv(buf).await,
        }
    }

    /// [`Uplink::recv`] without waiting (`WouldBlock` when nothing waits).
    pub fn try_recv(&self, buf: &mut PageBuf) -> io::Result<usize> {
        match &self.link {
            Link::Socket(peer) => peer.try_recv(buf),
            Link::InProcess { rx, .. } => rx.try_recv(buf),
        }
    }

    /// Sends a switch frame (virtio-net header, then Ethernet). False when it could not be
    /// queued (socketpair full); a direct send always "succeeds" (a full device queue is the
    /// switch's drop, counted on that port).
    pub fn send(&self, frame: &[u8]) -> bool {
        match &self.link {
            Link::InProcess { direct: d, .. } => {
                let ports = d.switch.ports();
                let now = d.switch.now_ms();
                SCRATCH.with_borrow_mut(|s| {
                    driver::forward(
                        &d.switch,
                        &ports,
                        &d.port,
                        frame,
                        now,
                        driver::Entry::Port,
                        s,
                    )
                });
                true
            }
            Link::Socket(peer) => peer.try_send(frame).is_ok(),
        }
    }

    /// Sends an Ethernet frame without a virtio-net header (behind an all-zero one).
    pub fn send_plain(&self, frame: &[u8]) -> bool {
        if let Link::Socket(peer) = &self.link {
            return peer.try_send_parts(&[&PLAIN_HDR, frame]).is_ok();
        }
        PLAIN.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend_from_slice(&PLAIN_HDR);
            buf.extend_from_slice(frame);
            self.send(buf)
        })
    }
}
