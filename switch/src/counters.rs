//! Per-port counters: lock-free atomics, one counter per drop reason.
//!
//! Every dropped frame increments exactly one [`DropReason`] on exactly one port: receive-side
//! reasons on the ingress port, transmit-side reasons on the egress port.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::fdb::LearnOutcome;

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
    /// Inter-container communication is off on the network (`icc=false`): a frame from one
    /// isolated port (an endpoint, the VXLAN tunnel) for another. Only the gateway may talk to
    /// them.
    IccBlocked,
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
    /// An inner TCP or UDP checksum out of a VXLAN tunnel that is wrong and not a partial one
    /// (the pseudo-header sum a kernel sender's CHECKSUM_PARTIAL leaves, which is handed on as
    /// NEEDS_CSUM): the frame was damaged, or was never checksummed.
    VxlanBadInnerChecksum,
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
    /// Kernel: the AF_PACKET socket's receive buffer was full, so the kernel dropped frames the
    /// host end of the veth handed it before netyard could read them (PACKET_STATISTICS).
    PacketRcvbufFull,
    /// Kernel: the TAP device's queue towards netyard was full (the container sent faster than
    /// netyard read), counted by the device as `tx_dropped`.
    TapQueueFull,
    /// Kernel: frames netyard wrote to the TAP that the container's kernel dropped on input (a
    /// full backlog), counted by the device as `rx_dropped`.
    TapRxDropped,
    /// Kernel: datagrams the kernel dropped because a UDP socket's receive buffer was full
    /// (the socket's drop count, as SO_RXQ_OVFL reports it).
    UdpRcvbufFull,
    /// Impairment: the link's loss model dropped it (`link set --loss/--loss-burst`).
    ImpairLoss,
    /// Impairment: the link already held `--limit` packets (delayed or waiting for the rate).
    ImpairLimit,
    /// Impairment: held by the link when its settings changed, and dropped with them.
    ImpairFlushed,
    /// The link's carrier is off (`link down`): dropped either way.
    LinkDown,
    /// A macvlan uplink: a unicast frame from the LAN for a MAC no endpoint of the network has
    /// (the uplink is promiscuous; Docker's macvlan never sees such frames either).
    UplinkNotOurs,
    /// A macvlan uplink: a frame from the LAN whose source is one of the network's endpoints'
    /// MACs (a loop, or a LAN host forging it).
    UplinkOwnSource,
}

impl DropReason {
    pub const ALL: [DropReason; 33] = [
        DropReason::Runt,
        DropReason::BadVnetHdr,
        DropReason::MulticastSource,
        DropReason::ZeroSource,
        DropReason::OverMtu,
        DropReason::SamePort,
        DropReason::IccBlocked,
        DropReason::RxTruncated,
        DropReason::RxError,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::BadGso,
        DropReason::VxlanTruncated,
        DropReason::VxlanNoIFlag,
        DropReason::VxlanWrongVni,
        DropReason::VxlanHandoffFull,
        DropReason::VxlanBadInnerChecksum,
        DropReason::SpoofedMac,
        DropReason::SpoofedIpv4,
        DropReason::SpoofedArp,
        DropReason::SpoofedIpv6,
        DropReason::SpoofedNdp,
        DropReason::VlanTagged,
        DropReason::PacketRcvbufFull,
        DropReason::TapQueueFull,
        DropReason::TapRxDropped,
        DropReason::UdpRcvbufFull,
        DropReason::ImpairLoss,
        DropReason::ImpairLimit,
        DropReason::ImpairFlushed,
        DropReason::LinkDown,
        DropReason::UplinkNotOurs,
        DropReason::UplinkOwnSource,
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
            DropReason::IccBlocked => "icc_blocked",
            DropReason::RxTruncated => "rx_truncated",
            DropReason::RxError => "rx_error",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxError => "tx_error",
            DropReason::BadGso => "bad_gso",
            DropReason::VxlanTruncated => "vxlan_truncated",
            DropReason::VxlanNoIFlag => "vxlan_i_flag_clear",
            DropReason::VxlanWrongVni => "vxlan_wrong_vni",
            DropReason::VxlanHandoffFull => "vxlan_handoff_full",
            DropReason::VxlanBadInnerChecksum => "vxlan_bad_inner_checksum",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIpv4 => "spoofed_ipv4",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::SpoofedIpv6 => "spoofed_ipv6",
            DropReason::SpoofedNdp => "spoofed_ndp",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::PacketRcvbufFull => "packet_rcvbuf_full",
            DropReason::TapQueueFull => "tap_queue_full",
            DropReason::TapRxDropped => "tap_rx_dropped",
            DropReason::UdpRcvbufFull => "udp_rcvbuf_full",
            DropReason::ImpairLoss => "impair_loss",
            DropReason::ImpairLimit => "impair_limit",
            DropReason::ImpairFlushed => "impair_flushed",
            DropReason::LinkDown => "link_down",
            DropReason::UplinkNotOurs => "uplink_not_ours",
            DropReason::UplinkOwnSource => "uplink_own_source",
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
    /// Source MACs learned on this port (new, or moved here from another port).
    pub learned: AtomicU64,
    /// Frames received on this port that the switch flooded (broadcast, multicast, unknown
    /// unicast).
    pub flooded: AtomicU64,
    drops: PerReason<AtomicU64>,
}

/// One value per drop reason. (The standard library implements `Default` for arrays of at
/// most 32 elements only, and there are more reasons than that.)
#[derive(Debug)]
struct PerReason<T>([T; DropReason::ALL.len()]);

impl<T: Default> Default for PerReason<T> {
    fn default() -> Self {
        PerReason(std::array::from_fn(|_| T::default()))
    }
}

impl<T> std::ops::Index<usize> for PerReason<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.0[i]
    }
}

impl<T> std::ops::IndexMut<usize> for PerReason<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.0[i]
    }
}

impl PortCounters {
    /// Counts what learning a source MAC on this port did: a new or moved entry, or the
    /// table's cap refusing it. One place, so the driver and the daemon's attach (which
    /// pre-learns an endpoint's MAC) count alike.
    pub fn learn(&self, outcome: LearnOutcome) {
        match outcome {
            LearnOutcome::CapReached => {
                self.learn_cap_hits.fetch_add(1, Relaxed);
            }
            LearnOutcome::Learned | LearnOutcome::Moved { .. } => {
                self.learned.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }

    pub fn drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }

    /// Adds `n` drops at once (kernel-side counters, read off the fast path).
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason.index()].fetch_add(n, Relaxed);
        }
    }

    pub fn rx(&self, bytes: usize) {
        self.rx_packets.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn tx(&self, bytes: usize) {
        self.tx_packets.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// [`Self::rx`] of `packets` frames of `bytes` in all: a burst's tally, added at once
    /// (two atomic additions per burst instead of two per frame).
    pub fn rx_many(&self, packets: u64, bytes: u64) {
        if packets > 0 {
            self.rx_packets.fetch_add(packets, Relaxed);
            self.rx_bytes.fetch_add(bytes, Relaxed);
        }
    }

    /// [`Self::tx`] of `packets` frames of `bytes` in all (one batched send's).
    pub fn tx_many(&self, packets: u64, bytes: u64) {
        if packets > 0 {
            self.tx_packets.fetch_add(packets, Relaxed);
            self.tx_bytes.fetch_add(bytes, Relaxed);
        }
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
            learned: self.learned.load(Relaxed),
            flooded: self.flooded.load(Relaxed),
            drops_total: drops.values().sum(),
            drops,
        }
    }
}

/// One reading of a counter the kernel keeps for a port's socket or device (see
/// [`Port::kernel_drops`](crate::port::Port::kernel_drops)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelReading {
    pub reason: DropReason,
    pub count: KernelCount,
}

/// How the kernel hands a counter out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelCount {
    /// Drops since the previous reading: the kernel resets the counter when it is read
    /// (AF_PACKET's PACKET_STATISTICS).
    Since(u64),
    /// The kernel's running total, which wraps at `bits` bits: a device's 64-bit
    /// `rx_dropped`, a socket's 32-bit drop count. It started before netyard looked (a
    /// persistent TAP keeps its counters across daemon restarts), so only what it grows by
    /// after the first reading counts.
    Total { value: u64, bits: u32 },
}

/// Turns a port's kernel readings into increments of its drop counters: remembers each
/// reason's last total. Pure: the caller reads the kernel and serialises the calls (two
/// readers racing could otherwise apply an older total after a newer one, and a wrapping
/// difference would count 2^32 drops).
#[derive(Debug, Default)]
pub struct KernelAccumulator {
    last: PerReason<Option<u64>>,
}

impl KernelAccumulator {
    /// How many drops `reading` adds: a [`KernelCount::Since`] all of them; a
    /// [`KernelCount::Total`] nothing the first time (the baseline), then its growth since the
    /// previous total, modulo its width (so a 32-bit counter that wrapped once between two
    /// readings still counts right).
    pub fn advance(&mut self, reading: KernelReading) -> u64 {
        match reading.count {
            KernelCount::Since(n) => n,
            KernelCount::Total { value, bits } => {
                let mask = if bits >= 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                let value = value & mask;
                let slot = &mut self.last[reading.reason.index()];
                let added = slot.map_or(0, |prev| value.wrapping_sub(prev) & mask);
                *slot = Some(value);
                added
            }
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
    pub learned: u64,
    pub flooded: u64,
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

    fn total(reason: DropReason, value: u64, bits: u32) -> KernelReading {
        KernelReading {
            reason,
            count: KernelCount::Total { value, bits },
        }
    }

    #[test]
    fn counts_reset_on_read_are_added_whole() {
        let mut acc = KernelAccumulator::default();
        let since = |n| KernelReading {
            reason: DropReason::PacketRcvbufFull,
            count: KernelCount::Since(n),
        };
        assert_eq!(
            acc.advance(since(59_000)),
            59_000,
            "the first reading counts"
        );
        assert_eq!(acc.advance(since(0)), 0);
        assert_eq!(acc.advance(since(7)), 7);
    }

    #[test]
    fn a_running_total_counts_its_growth_after_the_first_reading() {
        let mut acc = KernelAccumulator::default();
        let r = DropReason::TapQueueFull;
        assert_eq!(
            acc.advance(total(r, 1_000, 64)),
            0,
            "drops before netyard looked"
        );
        assert_eq!(acc.advance(total(r, 1_000, 64)), 0);
        assert_eq!(acc.advance(total(r, 1_250, 64)), 250);
        assert_eq!(acc.advance(total(r, 1_251, 64)), 1);
    }

    #[test]
    fn each_reason_keeps_its_own_baseline() {
        let mut acc = KernelAccumulator::default();
        assert_eq!(acc.advance(total(DropReason::TapQueueFull, 10, 64)), 0);
        assert_eq!(acc.advance(total(DropReason::TapRxDropped, 500, 64)), 0);
        assert_eq!(acc.advance(total(DropReason::TapQueueFull, 12, 64)), 2);
        assert_eq!(acc.advance(total(DropReason::TapRxDropped, 503, 64)), 3);
    }

    #[test]
    fn a_32_bit_total_that_wrapped_counts_across_the_wrap() {
        let mut acc = KernelAccumulator::default();
        let r = DropReason::UdpRcvbufFull;
        assert_eq!(acc.advance(total(r, u64::from(u32::MAX) - 4, 32)), 0);
        assert_eq!(
            acc.advance(total(r, 5, 32)),
            10,
            "4 up to the wrap, then 0..=5"
        );
        // Bits above the width (a sign-extended value) are ignored.
        assert_eq!(acc.advance(total(r, 0xffff_ffff_0000_0006, 32)), 1);
    }

    #[test]
    fn a_64_bit_total_wraps_too() {
        let mut acc = KernelAccumulator::default();
        let r = DropReason::TapRxDropped;
        assert_eq!(acc.advance(total(r, u64::MAX, 64)), 0);
        assert_eq!(acc.advance(total(r, 1, 64)), 2);
    }

    #[test]
    fn added_drops_show_in_the_snapshot_under_their_reason() {
        let c = PortCounters::default();
        c.drop_n(DropReason::PacketRcvbufFull, 59_000);
        c.drop_n(DropReason::TapQueueFull, 0);
        let s = c.snapshot();
        assert_eq!(s.drops["packet_rcvbuf_full"], 59_000);
        assert_eq!(s.drops["tap_queue_full"], 0);
        assert_eq!(s.drops_total, 59_000);
    }
}
