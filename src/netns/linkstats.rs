//! A TAP device's own drop counters, read through a NETLINK_ROUTE socket opened in the
//! container's namespace ([`NsOpen::Netlink`](super::NsOpen::Netlink)).
//!
//! Why netlink: the counters (`rx_dropped`, `tx_dropped` of `struct rtnl_link_stats64`) live
//! with the device, which is in the container's namespace; the TAP fd offers no ioctl for them,
//! sysfs shows only the reader's own namespace, and entering the namespace per reading would
//! cost a thread. A socket made there once answers `RTM_GETLINK` for the device's index from
//! the daemon's own thread: one synchronous round trip (the kernel queues the answer before
//! `send` returns), made only on a stats request, a scrape or the ager's tick.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netyard_switch::sys::tap::{DeviceDropCounts, DeviceDrops};
use nix::sys::socket::{recv, send, MsgFlags};

/// Large enough for one RTM_NEWLINK answer (a TAP's is about 1.5 KB).
const ANSWER_BUF: usize = 16 << 10;

/// Reads one interface's drop counters through a netlink socket of its namespace.
#[derive(Debug)]
pub struct LinkDropReader {
    fd: OwnedFd,
    /// The interface's index, looked up by name once: a container may rename its interface,
    /// the index stays.
    ifindex: u32,
    seq: AtomicU32,
}

impl LinkDropReader {
    /// Looks `ifname` up through `fd` (a NETLINK_ROUTE socket of the interface's namespace).
    pub fn new(fd: OwnedFd, ifname: &str) -> io::Result<LinkDropReader> {
        let mut reader = LinkDropReader {
            fd,
            ifindex: 0,
            seq: AtomicU32::new(1),
        };
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(ifname.to_owned()));
        let link = reader.get_link(msg)?;
        reader.ifindex = link.header.index;
        Ok(reader)
    }

    /// One RTM_GETLINK round trip.
    fn get_link(&self, msg: LinkMessage) -> io::Result<LinkMessage> {
        let seq = self.seq.fetch_add(1, Relaxed);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(msg)),
        );
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len().max(ANSWER_BUF)];
        req.serialize(&mut buf);
        send(
            self.fd.as_raw_fd(),
            &buf[..req.buffer_len()],
            MsgFlags::empty(),
        )?;
        // The answer is queued by the time send returns; anything older (the answer to a
        // request whose reader gave up) is skipped by its sequence number.
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)?;
            let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if answer.header.sequence_number != seq {
                continue;
            }
            return match answer.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Ok(link),
                NetlinkPayload::Error(e) => Err(e.to_io()),
                other => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected netlink answer type {}", other.message_type()),
                )),
            };
        }
    }
}

impl DeviceDrops for LinkDropReader {
    fn read(&self) -> io::Result<DeviceDropCounts> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.ifindex;
        let link = self.get_link(msg)?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Stats64(s) => Some(DeviceDropCounts {
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                }),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no IFLA_STATS64"))
    }
}
