//! How the gateway task's frames reach the switch.
//!
//! Frames from the switch always arrive on the gateway port's socketpair (the switch's port
//! tasks write them there). Frames the gateway sends go one of two ways:
//! - direct (the daemon's choice): the gateway task runs the switch's forwarding decision
//!   itself, as if the frame had been read from the gateway port, and writes it to the
//!   destination port's device. That saves a copy through the socketpair and a wake-up of the
//!   gateway port's task per frame, which is most of a published connection's setup latency;
//! - through the socketpair, for a gateway without a switch handle (unit tests).

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use netyard_switch::port::VNET_HDR_LEN;
use netyard_switch::sys::AsyncMemPeer;
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

/// The gateway's link to its switch.
pub struct Uplink {
    peer: AsyncMemPeer,
    direct: Option<Direct>,
}

impl Uplink {
    pub fn new(peer: AsyncMemPeer, direct: Option<Direct>) -> Uplink {
        Uplink { peer, direct }
    }

    /// Waits for and receives one frame from the switch.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peer.recv(buf).await
    }

    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peer.try_recv(buf)
    }

    /// Sends a switch frame (virtio-net header, then Ethernet). False when it could not be
    /// queued (socketpair full); a direct send always "succeeds" (a full device queue is the
    /// switch's drop, counted on that port).
    pub fn send(&self, frame: &[u8]) -> bool {
        match &self.direct {
            Some(d) => {
                let ports = d.switch.ports();
                let now = d.switch.now_ms();
                SCRATCH.with_borrow_mut(|s| {
                    driver::forward(&d.switch, &ports, &d.port, frame, now, s)
                });
                true
            }
            None => self.peer.try_send(frame).is_ok(),
        }
    }

    /// Sends an Ethernet frame without a virtio-net header (behind an all-zero one).
    pub fn send_plain(&self, frame: &[u8]) -> bool {
        if self.direct.is_none() {
            return self.peer.try_send_parts(&[&PLAIN_HDR, frame]).is_ok();
        }
        PLAIN.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend_from_slice(&PLAIN_HDR);
            buf.extend_from_slice(frame);
            self.send(buf)
        })
    }
}
