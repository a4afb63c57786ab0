//! Per-port counters: lock-free atomics, one counter per drop reason.
//!
//! Every dropped frame increments exactly one [`DropReason`] on exactly one port: receive-side
//! reasons on the ingress port, transmit-side reasons on the egress port.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than the virtio-net header plus an Ethernet header.
    Runt,
    /// The virtio-net header is invalid (unknown GSO type, checksum offsets outside the frame).
    BadVnetHdr,
    /// The source MAC is a group (multicast/broadcast) address.
    MulticastSource,
    /// The source MAC is all zeros.
    ZeroSource,
    /// Larger than the network's MTU (or a GSO segment size that exceeds it).
    OverMtu,
    /// The destination was learned on the ingress port itself: it never goes back out.
    SamePort,
    /// The device reported a frame larger than the receive buffer.
    RxTruncated,
    /// The device's read failed with an error other than EAGAIN.
    RxError,
    /// The egress device had no room (EAGAIN/ENOBUFS).
    TxQueueFull,
    /// The egress device's write failed.
    TxError,
    /// A GSO super-frame could not be segmented for an egress port without offloads.
    BadGso,
    /// A datagram on a VXLAN port shorter than the 8-byte VXLAN header.
    VxlanTruncated,
    /// A VXLAN header with the I flag clear (its VNI means nothing).
    VxlanNoIFlag,
    /// A VXLAN packet for a VNI no network of the socket has.
    VxlanWrongVni,
    /// A VXLAN packet for another VNI of a shared socket whose hand-off queue was full.
    VxlanHandoffFull,
    /// Port security: the Ethernet source is not the endpoint's MAC.
    SpoofedMac,
    /// Port security: the IPv4 source is not one of the endpoint's addresses.
    SpoofedIpv4,
    /// Port security: an ARP packet whose sender MAC or address is not the endpoint's.
    SpoofedArp,
    /// Port security: the IPv6 source is not the endpoint's (nor link-local, nor `::`).
    SpoofedIpv6,
    /// Port security: a neighbour discovery message announcing another MAC, or an NA for an
    /// address that is not the endpoint's.
    SpoofedNdp,
    /// Port security: an 802.1Q/802.1ad-tagged frame (only trusted ports may tag).
    VlanTagged,
}

impl DropReason {
    pub const ALL: [DropReason; 21] = [
        DropReason::Runt,
        DropReason::BadVnetHdr,
        DropReason::MulticastSource,
        DropReason::ZeroSource,
        DropReason::OverMtu,
        DropReason::SamePort,
        DropReason::RxTruncated,
        DropReason::RxError,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::BadGso,
        DropReason::VxlanTruncated,
        DropReason::VxlanNoIFlag,
        DropReason::VxlanWrongVni,
        DropReason::VxlanHandoffFull,
        DropReason::SpoofedMac,
        DropReason::SpoofedIpv4,
        DropReason::SpoofedArp,
        DropReason::SpoofedIpv6,
        DropReason::SpoofedNdp,
        DropReason::VlanTagged,
    ];

    /// The name used in stats and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadVnetHdr => "bad_vnet_hdr",
            DropReason::MulticastSource => "multicast_source",
            DropReason::ZeroSource => "zero_source",
            DropReason::OverMtu => "over_mtu",
            DropReason::SamePort => "same_port",
            DropReason::RxTruncated => "rx_truncated",
            DropReason::RxError => "rx_error",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxError => "tx_error",
            DropReason::BadGso => "bad_gso",
            DropReason::VxlanTruncated => "vxlan_truncated",
            DropReason::VxlanNoIFlag => "vxlan_i_flag_clear",
            DropReason::VxlanWrongVni => "vxlan_wrong_vni",
            DropReason::VxlanHandoffFull => "vxlan_handoff_full",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIpv4 => "spoofed_ipv4",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::SpoofedIpv6 => "spoofed_ipv6",
            DropReason::SpoofedNdp => "spoofed_ndp",
            DropReason::VlanTagged => "vlan_tagged",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Live counters of one port.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// GSO super-frames received (each counts once in rx_packets too).
    pub rx_gso: AtomicU64,
    /// Frames the switch segmented in software for this port (counted per super-frame).
    pub tx_segmented: AtomicU64,
    /// Source MACs not learned because the port reached its cap.
    pub learn_cap_hits: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl PortCounters {
    pub fn drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }

    pub fn rx(&self, bytes: usize) {
        self.rx_packets.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn tx(&self, bytes: usize) {
        self.tx_packets.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A consistent-enough copy for the API (each field read once, relaxed).
    pub fn snapshot(&self) -> PortStats {
        let drops: BTreeMap<&'static str, u64> = DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops(*r)))
            .collect();
        PortStats {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            rx_gso: self.rx_gso.load(Relaxed),
            tx_segmented: self.tx_segmented.load(Relaxed),
            learn_cap_hits: self.learn_cap_hits.load(Relaxed),
            drops_total: drops.values().sum(),
            drops,
        }
    }
}

/// A serialisable copy of [`PortCounters`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_gso: u64,
    pub tx_segmented: u64,
    pub learn_cap_hits: u64,
    pub drops_total: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let c = PortCounters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "ALL must list reasons in declaration order");
            c.drop(*r);
        }
        let s = c.snapshot();
        assert_eq!(s.drops_total, DropReason::ALL.len() as u64);
        assert!(s.drops.values().all(|v| *v == 1));
    }
}
