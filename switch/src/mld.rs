//! MLD snooping: which ports listen to which IPv6 multicast group, so that IPv6 multicast
//! (neighbour solicitations above all) reaches the ports that asked for it instead of every
//! port of the network.
//!
//! Why: every new IPv6 interface sends MLD reports, a duplicate address probe to its
//! solicited-node group and a router solicitation. Flooded, each of those is a write into all N
//! containers, and a TAP write runs the receiving namespace's IPv6 input in the daemon's
//! thread: attaching the N-th endpoint cost O(N) (benches/README.md, `scale`).
//!
//! The rules, those of the Linux bridge with `multicast_snooping` on (its default) and a
//! querier present, the gateway standing in for the querier:
//! - MLD reports (v1 and v2) and v1 done messages are learned (the sender's port joins or
//!   leaves each group) and go to the *router ports* only (the gateway, a VXLAN tunnel, a
//!   router between networks: every port the daemon has not marked as an endpoint), as the
//!   bridge sends reports to its multicast router ports. Queries flood.
//! - IPv6 multicast to ff02::1 (all nodes) floods.
//! - Other IPv6 multicast to a group with listeners goes to those listeners and the router
//!   ports; to ff02::2 (all routers: router solicitations) without listeners, to the router
//!   ports only.
//! - Other IPv6 multicast to a group nobody reported floods, as the bridge does while it has no
//!   querier. The bridge with a querier sends it to router ports only; netyard queries only
//!   when the daemon takes endpoints back after a restart ([`general_query`]), so a port whose
//!   reports it missed (a report sent before the port was read) must still get the traffic of
//!   groups nobody else reported.
//!
//! Memberships do not age (there are no periodic queries to refresh them): they go with a
//! leave, or with the port. A port that reports more than [`MAX_GROUPS_PER_PORT`] groups stops being tracked
//! and receives all IPv6 multicast, as a router port does, so no container can grow the table
//! without bound. Source lists (MLDv2's include/exclude filters) are not tracked: any interest
//! in a group makes the port a listener of all of it. Checksums are not checked: a report only
//! changes its own port's memberships.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::port::PortId;
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::ip::IpProtocol;
use crate::wire::ipv6::{Ipv6Packet, ALL_NODES, ALL_ROUTERS};

/// ICMPv6 message types of MLD (RFC 2710, RFC 3810).
pub mod msg_type {
    /// A query (general or group-specific), sent by routers.
    pub const QUERY: u8 = 130;
    /// An MLDv1 report: the sender listens to the group.
    pub const REPORT_V1: u8 = 131;
    /// An MLDv1 done: the sender stops listening.
    pub const DONE: u8 = 132;
    /// An MLDv2 report: a list of multicast address records.
    pub const REPORT_V2: u8 = 143;
}

/// Record types of an MLDv2 multicast address record (RFC 3810 section 5.2.12).
mod record_type {
    pub const MODE_IS_INCLUDE: u8 = 1;
    pub const MODE_IS_EXCLUDE: u8 = 2;
    pub const CHANGE_TO_INCLUDE: u8 = 3;
    pub const CHANGE_TO_EXCLUDE: u8 = 4;
    pub const ALLOW_NEW_SOURCES: u8 = 5;
}

/// Most groups one port may listen to before it is no longer tracked (and gets all IPv6
/// multicast). A container usually has two or three (the solicited-node groups of its
/// addresses, mDNS).
pub const MAX_GROUPS_PER_PORT: usize = 256;

/// MLDv1 message: type, code, checksum, maximum response delay, reserved, then the group.
const MLD_V1_LEN: usize = 24;
/// MLDv2 report header: type, code, checksum, reserved, number of records.
const MLD_V2_HDR_LEN: usize = 8;
/// MLDv2 record header: type, aux data length, number of sources, then the group.
const MLD_V2_RECORD_LEN: usize = 20;

/// MLDv2 query: type, code, checksum, maximum response code, reserved, the group (:: in a
/// general query), S/QRV, QQIC, number of sources (RFC 3810 section 5.1).
const MLD_V2_QUERY_LEN: usize = 28;
/// The hop-by-hop header every MLD message carries: next header 58, length 0, the router
/// alert option (type 5, length 2, value 0: MLD), then PadN of length 0.
const ROUTER_ALERT_HBH: [u8; 8] = [58, 0, 5, 2, 0, 0, 1, 0];

/// An MLDv2 General Query from `src_mac` (its EUI-64 link-local address as source, as RFC 3810
/// requires a link-local one) to all nodes: Ethernet frame, no virtio-net header. Hosts answer
/// it with reports of every group they listen to, each within `max_response_ms`; Linux drops a
/// query without hop limit 1 and the router alert, so both are there.
///
/// The gateway sends one when the daemon takes endpoints back after a restart: their earlier
/// reports went to the previous daemon, and only a query makes them report again.
pub fn general_query(src_mac: crate::MacAddr, max_response_ms: u16) -> Vec<u8> {
    use crate::wire::checksum;
    let src = crate::wire::ipv6::link_local_from_mac(src_mac);
    let payload = ROUTER_ALERT_HBH.len() + MLD_V2_QUERY_LEN;
    let mut f = Vec::with_capacity(14 + crate::wire::ipv6::IPV6_HDR_LEN + payload);
    f.extend_from_slice(&crate::wire::ipv6::multicast_mac(ALL_NODES).0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload as u16).to_be_bytes());
    // Next header hop-by-hop (0), hop limit 1.
    f.extend_from_slice(&[0, 1]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&ROUTER_ALERT_HBH);
    let at = f.len();
    f.extend_from_slice(&[msg_type::QUERY, 0, 0, 0]);
    // Below 32768 ms the code is the delay in ms itself.
    f.extend_from_slice(&max_response_ms.min(32767).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    // S = 0, QRV = 2 (the default robustness), QQIC = 125 s (the default query interval), no
    // sources.
    f.extend_from_slice(&[2, 125, 0, 0]);
    let sum = checksum::combine(
        checksum::pseudo_header_v6(
            &src.octets(),
            &ALL_NODES.octets(),
            IpProtocol::Icmpv6.into(),
            MLD_V2_QUERY_LEN as u32,
        ),
        checksum::add(0, &f[at..]),
    );
    let c = !checksum::fold(sum);
    f[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    f
}

/// A change of a port's membership in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Join,
    Leave,
}

/// What snooping makes of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Not for snooping: not IPv6 multicast, all nodes, a query, or a frame that does not
    /// parse. Flooded as any multicast.
    Flood,
    /// An MLD report or done: the sender's membership changes (possibly none), and the frame
    /// goes to router ports only.
    Report(Vec<(Ipv6Addr, Change)>),
    /// IPv6 multicast data (a neighbour solicitation included) to this group.
    Data(Ipv6Addr),
}

/// Classifies an Ethernet frame (no virtio-net header) whose destination MAC is multicast.
pub fn classify(eth: &[u8]) -> Class {
    let Ok(frame) = EthernetFrame::new_checked(eth) else {
        return Class::Flood;
    };
    // A tagged frame is switched like any other (no VLAN support): not snooped.
    if frame.outer_ethertype() != EtherType::Ipv6 {
        return Class::Flood;
    }
    let Some(l3) = eth.get(frame.header_len()..) else {
        return Class::Flood;
    };
    let Ok(ip) = Ipv6Packet::new_checked(l3) else {
        return Class::Flood;
    };
    let dst = ip.dst_addr();
    if !dst.is_multicast() || dst == ALL_NODES {
        return Class::Flood;
    }
    match ip.upper_layer() {
        Some((IpProtocol::Icmpv6, icmp)) => match icmp.first().copied() {
            Some(msg_type::REPORT_V1) => Class::Report(v1_group(icmp, Change::Join)),
            Some(msg_type::DONE) => Class::Report(v1_group(icmp, Change::Leave)),
            Some(msg_type::REPORT_V2) => Class::Report(v2_records(icmp)),
            Some(msg_type::QUERY) => Class::Flood,
            _ => Class::Data(dst),
        },
        _ => Class::Data(dst),
    }
}

/// Whether a port may listen to `group` through a report: a multicast group wider than the
/// interface, and not all nodes (every node is in it; it always floods).
fn snoopable(group: &Ipv6Addr) -> bool {
    group.is_multicast() && group.segments()[0] & 0x000f > 1 && *group != ALL_NODES
}

/// The group of an MLDv1 report or done, if it has one worth tracking.
fn v1_group(icmp: &[u8], change: Change) -> Vec<(Ipv6Addr, Change)> {
    icmp.get(8..MLD_V1_LEN)
        .and_then(|g| <[u8; 16]>::try_from(g).ok())
        .map(Ipv6Addr::from)
        .filter(snoopable)
        .map(|g| vec![(g, change)])
        .unwrap_or_default()
}

/// The membership changes of an MLDv2 report's records; a truncated record ends the list.
fn v2_records(icmp: &[u8]) -> Vec<(Ipv6Addr, Change)> {
    let Some(count) = icmp.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = MLD_V2_HDR_LEN;
    for _ in 0..count {
        let Some(rec) = icmp.get(at..at + MLD_V2_RECORD_LEN) else {
            break;
        };
        let kind = rec[0];
        let aux_len = usize::from(rec[1]) * 4;
        let sources = usize::from(u16::from_be_bytes([rec[2], rec[3]]));
        let Ok(group) = <[u8; 16]>::try_from(&rec[4..20]).map(Ipv6Addr::from) else {
            break;
        };
        at += MLD_V2_RECORD_LEN + sources * 16 + aux_len;
        if !snoopable(&group) {
            continue;
        }
        let change = match kind {
            // Exclude mode: everything but some sources, so the group.
            record_type::MODE_IS_EXCLUDE | record_type::CHANGE_TO_EXCLUDE => Change::Join,
            // Include mode with no source left: the sender stops listening.
            record_type::MODE_IS_INCLUDE | record_type::CHANGE_TO_INCLUDE if sources == 0 => {
                Change::Leave
            }
            record_type::MODE_IS_INCLUDE
            | record_type::CHANGE_TO_INCLUDE
            | record_type::ALLOW_NEW_SOURCES => Change::Join,
            // Blocking some sources leaves the port listening to others; unknown types say
            // nothing.
            _ => continue,
        };
        out.push((group, change));
    }
    out
}

/// Where a snooped frame goes, besides never back to its ingress port. It holds the
/// published lists themselves (a reference count each, no copy), so deciding costs the data
/// path neither a lock nor an allocation.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Every port, as any multicast.
    Flood,
    /// The router ports, the group's listeners and the untracked ports (the two lists never
    /// share a port: an untracked port's memberships are dropped).
    RoutersAnd {
        listeners: Option<Arc<[PortId]>>,
        untracked: Arc<Vec<PortId>>,
    },
}

impl Delivery {
    /// Does a port that is not a router port get the frame?
    pub fn reaches(&self, port: PortId) -> bool {
        match self {
            Delivery::Flood => true,
            Delivery::RoutersAnd {
                listeners,
                untracked,
            } => {
                listeners.as_deref().is_some_and(|l| l.contains(&port)) || untracked.contains(&port)
            }
        }
    }
}

/// One switch's memberships: changed under a lock (reports come only when a group is joined
/// or left), read by the data path without one from the lists [`Groups`] last published.
#[derive(Debug)]
pub struct Snooping {
    table: Mutex<Groups>,
    /// Each group with listeners and its listeners, as of the last change.
    listeners: papaya::HashMap<Ipv6Addr, Arc<[PortId]>, foldhash::fast::RandomState>,
    untracked: ArcSwap<Vec<PortId>>,
}

impl Default for Snooping {
    fn default() -> Self {
        Snooping {
            table: Mutex::default(),
            listeners: papaya::HashMap::builder()
                // Groups are chosen by whoever reports: a random seed keeps a container from
                // aiming at one bucket chain (as the MAC table's does).
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            untracked: ArcSwap::default(),
        }
    }
}

impl Snooping {
    /// Applies a report of `port` and publishes the groups it touched.
    pub fn learn(&self, port: PortId, changes: &[(Ipv6Addr, Change)]) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Going untracked drops every membership the port had, not only the reported ones.
        let mut touched = table.groups_of(port).to_vec();
        touched.extend(changes.iter().map(|(g, _)| *g));
        table.learn(port, changes);
        self.publish(&table, &touched);
    }

    /// Forgets a port that left the switch.
    pub fn remove_port(&self, port: PortId) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let touched = table.groups_of(port).to_vec();
        table.remove_port(port);
        self.publish(&table, &touched);
    }

    /// Copies the lists of `touched` groups (and the untracked ports, if they changed) from
    /// the table to what the data path reads. Called with the table locked, so publications
    /// are in the order of the changes.
    fn publish(&self, table: &Groups, touched: &[Ipv6Addr]) {
        let map = self.listeners.pin();
        for group in touched {
            match table.by_group.get(group) {
                Some(ports) => {
                    map.insert(*group, Arc::from(ports.as_slice()));
                }
                None => {
                    map.remove(group);
                }
            }
        }
        if self.untracked.load().as_slice() != table.untracked.as_slice() {
            self.untracked.store(Arc::new(table.untracked.clone()));
        }
    }

    /// Where IPv6 multicast data to `group` goes.
    pub fn delivery(&self, group: Ipv6Addr) -> Delivery {
        let listeners = self.listeners.pin().get(&group).cloned();
        if listeners.is_none() && group != ALL_ROUTERS {
            return Delivery::Flood;
        }
        Delivery::RoutersAnd {
            listeners,
            untracked: self.untracked.load_full(),
        }
    }

    /// Where an MLD report goes: the router ports, and the ports that get everything.
    pub fn report_delivery(&self) -> Delivery {
        Delivery::RoutersAnd {
            listeners: None,
            untracked: self.untracked.load_full(),
        }
    }

    /// The groups `port` listens to (for inspection and tests), in the order joined.
    pub fn groups_of(&self, port: PortId) -> Vec<Ipv6Addr> {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .groups_of(port)
            .to_vec()
    }
}

/// The membership table of one switch. Pure: [`Snooping`] holds it behind a mutex and
/// publishes its lists for the data path.
#[derive(Debug, Default)]
pub struct Groups {
    by_group: HashMap<Ipv6Addr, Vec<PortId>>,
    by_port: HashMap<PortId, Vec<Ipv6Addr>>,
    /// Ports past [`MAX_GROUPS_PER_PORT`]: no longer tracked, they get all IPv6 multicast.
    untracked: Vec<PortId>,
}

impl Groups {
    /// Applies a report of `port`.
    pub fn learn(&mut self, port: PortId, changes: &[(Ipv6Addr, Change)]) {
        if self.untracked.contains(&port) {
            return;
        }
        for (group, change) in changes {
            match change {
                Change::Join => {
                    let mine = self.by_port.entry(port).or_default();
                    if mine.contains(group) {
                        continue;
                    }
                    if mine.len() >= MAX_GROUPS_PER_PORT {
                        self.remove_port(port);
                        self.untracked.push(port);
                        return;
                    }
                    mine.push(*group);
                    self.by_group.entry(*group).or_default().push(port);
                }
                Change::Leave => {
                    if let Some(mine) = self.by_port.get_mut(&port) {
                        mine.retain(|g| g != group);
                        if mine.is_empty() {
                            self.by_port.remove(&port);
                        }
                    }
                    self.drop_listener(*group, port);
                }
            }
        }
    }

    fn drop_listener(&mut self, group: Ipv6Addr, port: PortId) {
        if let Some(ports) = self.by_group.get_mut(&group) {
            ports.retain(|p| *p != port);
            if ports.is_empty() {
                self.by_group.remove(&group);
            }
        }
    }

    /// Forgets a port that left the switch.
    pub fn remove_port(&mut self, port: PortId) {
        self.untracked.retain(|p| *p != port);
        for group in self.by_port.remove(&port).unwrap_or_default() {
            self.drop_listener(group, port);
        }
    }

    /// Does `port` get all IPv6 multicast because it reported too many groups?
    pub fn is_untracked(&self, port: PortId) -> bool {
        self.untracked.contains(&port)
    }

    /// The groups `port` listens to (for inspection and tests), in the order joined.
    pub fn groups_of(&self, port: PortId) -> &[Ipv6Addr] {
        self.by_port.get(&port).map_or(&[], Vec::as_slice)
    }

    /// Groups with at least one listener.
    pub fn len(&self) -> usize {
        self.by_group.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_group.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::{multicast_mac, solicited_node};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    /// An Ethernet frame carrying IPv6 from `src` to `dst` with `payload` behind a hop-by-hop
    /// header with the router alert option (as MLD messages are sent) when `hbh`.
    fn frame(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8], hbh: bool) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&multicast_mac(dst).0);
        f.extend_from_slice(&SRC_MAC);
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        let ext: &[u8] = &[next, 0, 5, 2, 0, 0, 1, 0];
        let (first, len) = if hbh {
            (0u8, payload.len() + ext.len())
        } else {
            (next, payload.len())
        };
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&u16::try_from(len).unwrap_or(0).to_be_bytes());
        f.extend_from_slice(&[first, 1]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        if hbh {
            f.extend_from_slice(ext);
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_general_query_is_what_linux_accepts_and_floods() {
        let mac = crate::MacAddr([0x02, 0x42, 10, 6, 0, 1]);
        let f = general_query(mac, 2000);
        assert_eq!(&f[0..6], &multicast_mac(ALL_NODES).0);
        let ip = Ipv6Packet::new_checked(&f[14..]).expect("ipv6");
        assert_eq!(ip.hop_limit(), 1, "RFC 3810 section 6.2");
        assert_eq!(ip.src_addr(), crate::wire::ipv6::link_local_from_mac(mac));
        assert_eq!(ip.dst_addr(), ALL_NODES);
        assert_eq!(u8::from(ip.next_header()), 0, "hop-by-hop first");
        let p = ip.payload();
        assert_eq!(&p[..8], &ROUTER_ALERT_HBH, "router alert, MLD");
        let (proto, msg) = ip.upper_layer().expect("upper layer");
        assert_eq!(proto, IpProtocol::Icmpv6);
        assert_eq!(
            msg.len(),
            MLD_V2_QUERY_LEN,
            "an MLDv2 query (v1 is 24 bytes)"
        );
        assert_eq!(msg[0], msg_type::QUERY);
        assert_eq!(u16::from_be_bytes([msg[4], msg[5]]), 2000);
        assert_eq!(&msg[8..24], &Ipv6Addr::UNSPECIFIED.octets(), "general");
        let sum = crate::wire::checksum::combine(
            ip.pseudo_header_for(IpProtocol::Icmpv6, msg.len() as u32),
            crate::wire::checksum::add(0, msg),
        );
        assert_eq!(crate::wire::checksum::fold(sum), 0xffff, "checksum");
        assert_eq!(classify(&f), Class::Flood, "queries reach every port");
    }

    fn ll(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last)
    }

    const MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

    /// An MLDv2 report with `(record type, group, sources)` records.
    fn v2_report(records: &[(u8, Ipv6Addr, usize)]) -> Vec<u8> {
        let mut m = vec![msg_type::REPORT_V2, 0, 0, 0, 0, 0];
        m.extend_from_slice(&u16::try_from(records.len()).unwrap_or(0).to_be_bytes());
        for (kind, group, sources) in records {
            m.push(*kind);
            m.push(0);
            m.extend_from_slice(&u16::try_from(*sources).unwrap_or(0).to_be_bytes());
            m.extend_from_slice(&group.octets());
            for i in 0..*sources {
                m.extend_from_slice(&ll(u16::try_from(i).unwrap_or(0)).octets());
            }
        }
        m
    }

    fn v1(kind: u8, group: Ipv6Addr) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&group.octets());
        m
    }

    fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
        frame(src, dst, 58, msg, true)
    }

    fn sn(last: u16) -> Ipv6Addr {
        solicited_node(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last))
    }

    #[test]
    fn an_mldv2_report_from_a_new_interface_joins_its_solicited_node_groups() {
        let f = icmp6(
            Ipv6Addr::UNSPECIFIED,
            MLDV2_ROUTERS,
            &v2_report(&[
                (record_type::CHANGE_TO_EXCLUDE, sn(2), 0),
                (record_type::MODE_IS_EXCLUDE, sn(3), 0),
            ]),
        );
        assert_eq!(
            classify(&f),
            Class::Report(vec![(sn(2), Change::Join), (sn(3), Change::Join)])
        );
    }

    #[test]
    fn an_include_record_with_no_source_is_a_leave_and_with_sources_a_join() {
        let f = icmp6(
            ll(1),
            MLDV2_ROUTERS,
            &v2_report(&[
                (record_type::CHANGE_TO_INCLUDE, sn(2), 0),
                (record_type::MODE_IS_INCLUDE, sn(3), 2),
                (record_type::ALLOW_NEW_SOURCES, sn(4), 1),
                (6, sn(5), 1),
            ]),
        );
        assert_eq!(
            classify(&f),
            Class::Report(vec![
                (sn(2), Change::Leave),
                (sn(3), Change::Join),
                (sn(4), Change::Join)
            ])
        );
    }

    #[test]
    fn mldv1_reports_and_dones_name_their_group() {
        let f = icmp6(ll(1), sn(7), &v1(msg_type::REPORT_V1, sn(7)));
        assert_eq!(classify(&f), Class::Report(vec![(sn(7), Change::Join)]));
        let all_routers = ALL_ROUTERS;
        let f = icmp6(ll(1), all_routers, &v1(msg_type::DONE, sn(7)));
        assert_eq!(classify(&f), Class::Report(vec![(sn(7), Change::Leave)]));
    }

    #[test]
    fn all_nodes_and_interface_local_groups_are_never_tracked() {
        let f = icmp6(
            ll(1),
            MLDV2_ROUTERS,
            &v2_report(&[
                (record_type::CHANGE_TO_EXCLUDE, ALL_NODES, 0),
                (
                    record_type::CHANGE_TO_EXCLUDE,
                    "ff01::9".parse().unwrap_or(ALL_NODES),
                    0,
                ),
                (
                    record_type::CHANGE_TO_EXCLUDE,
                    "fd00::1".parse().unwrap_or(ALL_NODES),
                    0,
                ),
            ]),
        );
        assert_eq!(classify(&f), Class::Report(vec![]));
    }

    #[test]
    fn a_truncated_report_keeps_the_records_before_the_cut() {
        let mut m = v2_report(&[
            (record_type::CHANGE_TO_EXCLUDE, sn(2), 0),
            (record_type::CHANGE_TO_EXCLUDE, sn(3), 0),
        ]);
        m.truncate(m.len() - 4);
        let f = icmp6(ll(1), MLDV2_ROUTERS, &m);
        assert_eq!(classify(&f), Class::Report(vec![(sn(2), Change::Join)]));
        let f = icmp6(ll(1), MLDV2_ROUTERS, &[msg_type::REPORT_V2, 0, 0]);
        assert_eq!(classify(&f), Class::Report(vec![]));
    }

    #[test]
    fn queries_all_nodes_and_other_traffic_flood_and_data_names_its_group() {
        let q = icmp6(
            ll(1),
            ALL_NODES,
            &v1(msg_type::QUERY, Ipv6Addr::UNSPECIFIED),
        );
        assert_eq!(classify(&q), Class::Flood);
        let q = icmp6(ll(1), sn(2), &v1(msg_type::QUERY, sn(2)));
        assert_eq!(classify(&q), Class::Flood);
        // A neighbour solicitation (type 135), without extension header.
        let ns = frame(ll(1), sn(2), 58, &[135, 0, 0, 0, 0, 0, 0, 0], false);
        assert_eq!(classify(&ns), Class::Data(sn(2)));
        // UDP to a group (mDNS).
        let group: Ipv6Addr = "ff02::fb".parse().unwrap_or(ALL_NODES);
        let udp = frame(ll(1), group, 17, &[0; 8], false);
        assert_eq!(classify(&udp), Class::Data(group));
        let rs = frame(ll(1), ALL_ROUTERS, 58, &[133, 0, 0, 0, 0, 0, 0, 0], false);
        assert_eq!(classify(&rs), Class::Data(ALL_ROUTERS));
        // Not IPv6, truncated IPv6, all nodes.
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(classify(&arp), Class::Flood);
        assert_eq!(classify(&ns[..30]), Class::Flood);
        let ra = frame(ll(1), ALL_NODES, 58, &[134, 0, 0, 0], false);
        assert_eq!(classify(&ra), Class::Flood);
    }

    /// The non-router ports a delivery names, listeners first (`None`: a flood).
    fn to(d: Delivery) -> Option<Vec<PortId>> {
        match d {
            Delivery::Flood => None,
            Delivery::RoutersAnd {
                listeners,
                untracked,
            } => {
                let mut v = listeners.map(|l| l.to_vec()).unwrap_or_default();
                v.extend_from_slice(&untracked);
                Some(v)
            }
        }
    }

    #[test]
    fn data_goes_to_listeners_and_unknown_groups_flood_but_all_routers_goes_to_routers() {
        let g = Snooping::default();
        g.learn(1, &[(sn(2), Change::Join)]);
        g.learn(2, &[(sn(2), Change::Join), (sn(3), Change::Join)]);
        assert_eq!(to(g.delivery(sn(2))), Some(vec![1, 2]));
        assert_eq!(to(g.delivery(sn(3))), Some(vec![2]));
        assert!(g.delivery(sn(2)).reaches(1) && !g.delivery(sn(3)).reaches(1));
        assert_eq!(to(g.delivery(sn(9))), None);
        assert!(g.delivery(sn(9)).reaches(1));
        assert_eq!(to(g.delivery(ALL_ROUTERS)), Some(vec![]));
        // A port that joins all routers (a container forwarding IPv6) gets solicitations.
        g.learn(3, &[(ALL_ROUTERS, Change::Join)]);
        assert_eq!(to(g.delivery(ALL_ROUTERS)), Some(vec![3]));
    }

    #[test]
    fn a_leave_or_a_removed_port_drops_only_that_membership() {
        let g = Snooping::default();
        g.learn(1, &[(sn(2), Change::Join), (sn(3), Change::Join)]);
        g.learn(2, &[(sn(2), Change::Join)]);
        g.learn(1, &[(sn(2), Change::Join)]);
        assert_eq!(g.groups_of(1), vec![sn(2), sn(3)]);
        g.learn(1, &[(sn(2), Change::Leave)]);
        assert_eq!(to(g.delivery(sn(2))), Some(vec![2]));
        assert_eq!(g.groups_of(1), vec![sn(3)]);
        // A leave for a group the port never joined changes nothing.
        g.learn(2, &[(sn(3), Change::Leave)]);
        assert_eq!(to(g.delivery(sn(3))), Some(vec![1]));
        g.remove_port(1);
        assert_eq!(to(g.delivery(sn(3))), None);
        assert_eq!(g.groups_of(1), Vec::<Ipv6Addr>::new());
        g.remove_port(2);
        assert!(g.listeners.pin().is_empty());
        let table = g.table.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(table.is_empty());
        assert!(table.by_port.is_empty());
    }

    #[test]
    fn a_port_past_the_cap_is_untracked_and_gets_everything() {
        let g = Snooping::default();
        g.learn(8, &[(sn(300), Change::Join)]);
        let many: Vec<(Ipv6Addr, Change)> = (0..=MAX_GROUPS_PER_PORT)
            .map(|i| (sn(u16::try_from(i).unwrap_or(0)), Change::Join))
            .collect();
        g.learn(7, &many);
        {
            let table = g.table.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(table.is_untracked(7));
            assert_eq!(table.len(), 1, "its memberships are dropped");
        }
        // Published too: the groups it had joined before the cap are unknown again.
        assert_eq!(g.listeners.pin().len(), 1);
        assert_eq!(to(g.delivery(sn(2))), None);
        g.learn(7, &[(sn(1), Change::Join)]);
        assert_eq!(to(g.delivery(sn(1))), None);
        g.learn(8, &[(sn(1), Change::Join)]);
        assert_eq!(to(g.delivery(sn(1))), Some(vec![8, 7]));
        assert_eq!(to(g.delivery(ALL_ROUTERS)), Some(vec![7]));
        assert_eq!(to(g.report_delivery()), Some(vec![7]));
        g.remove_port(7);
        assert!(!g
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_untracked(7));
        assert_eq!(to(g.report_delivery()), Some(vec![]));
    }
}
