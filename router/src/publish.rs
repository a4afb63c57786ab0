//! Published ports (DNAT): the control-plane handle the daemon uses to hand bound host sockets
//! to a gateway.
//!
//! The daemon binds the host side itself (so a busy port is refused synchronously, before
//! anything changes) and passes the bound, non-blocking sockets here. The gateway task then
//! accepts TCP connections (or receives UDP datagrams) on them and forwards each into the
//! container, keeping the client's real address and port as the source the container sees
//! (a loopback client is shown as the gateway address, which the container can answer).

use std::net::{SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

/// A bound host socket of one published port.
#[derive(Debug)]
pub enum HostSocket {
    /// A listening TCP socket (already `listen`ed).
    Tcp(std::net::TcpListener),
    /// A bound UDP socket.
    Udp(std::net::UdpSocket),
}

/// One host port forwarded to one container port. All sockets (e.g. 0.0.0.0 and [::], or a
/// single dual-stack one) share the same container target.
#[derive(Debug)]
pub struct PublishRule {
    pub sockets: Vec<HostSocket>,
    /// The endpoint's address and the container port.
    pub container: SocketAddrV4,
    /// The endpoint's IPv6 address and the container port, on a dual-stack network: IPv6
    /// clients reach it with their own address as source. None: IPv6 clients reach the IPv4
    /// address, shown as the gateway.
    pub container6: Option<SocketAddrV6>,
    /// The endpoint's MAC (frames into the container are addressed to it).
    pub container_mac: [u8; 6],
}

/// Names a rule so it can be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishId(pub u64);

#[derive(Debug)]
pub(crate) enum PublishCmd {
    Add(PublishId, PublishRule),
    Remove(PublishId),
}

/// Adds and removes published ports on a running gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<PublishCmd>,
    next: Arc<AtomicU64>,
}

impl Publisher {
    pub(crate) fn new() -> (Publisher, mpsc::UnboundedReceiver<PublishCmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Publisher {
                tx,
                next: Arc::new(AtomicU64::new(1)),
            },
            rx,
        )
    }

    /// Starts forwarding `rule`'s sockets into the container; closing happens on
    /// [`Publisher::unpublish`] or when the gateway stops.
    pub fn publish(&self, rule: PublishRule) -> PublishId {
        let id = PublishId(self.next.fetch_add(1, Relaxed));
        // A stopped gateway drops the rule (and its sockets) with the channel.
        let _ = self.tx.send(PublishCmd::Add(id, rule));
        id
    }

    /// Stops forwarding and closes the rule's host sockets. Established TCP connections
    /// through it are kept until they end, as with Docker's proxy.
    pub fn unpublish(&self, id: PublishId) {
        let _ = self.tx.send(PublishCmd::Remove(id));
    }
}
