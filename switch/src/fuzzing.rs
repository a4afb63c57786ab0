//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`) that reach the switch's parsers of
//! untrusted bytes. Each takes the fuzzer's bytes and must never panic; each also checks
//! invariants the callers rely on (a panic is a finding). They live in the library, not in
//! the fuzz crate, so the stable test `tests/fuzz_regressions.rs` replays stored inputs
//! through the very code the targets run.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock};

use crate::bridge::{Switch, SwitchConfig, Verdict};
use crate::gso::{self, GsoError};
use crate::overlay::{self, InnerCsum};
use crate::port::{Port, PortCaps, PortId, VNET_HDR_LEN};
use crate::security::PortSecurity;
use crate::wire::checksum;
use crate::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use crate::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use crate::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use crate::wire::ip::{IpProtocol, Lengths};
use crate::wire::ipv4::{Ipv4Packet, Ipv4Repr, IPV4_HDR_LEN};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use crate::wire::tcp::{TcpPacket, TcpRepr};
use crate::wire::udp::{UdpPacket, UdpRepr, UDP_HDR_LEN};
use crate::wire::vnet::{GsoType, VnetHdrRepr};
use crate::MacAddr;

/// A port that takes every frame and reads none: `decide` never does I/O, but `add_port`
/// needs a port.
struct NullPort;

impl Port for NullPort {
    fn recv(&self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
    fn send(&self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn caps(&self) -> PortCaps {
        PortCaps::PLAIN
    }
    fn raw_fd(&self) -> RawFd {
        -1
    }
    fn kind(&self) -> &'static str {
        "fuzz"
    }
}

/// One switch for the whole run (as in the daemon, the MAC table lives across frames), with
/// two ports and a small per-port MAC cap so the cap path is reached.
fn switch() -> &'static (Arc<Switch>, PortId, PortId) {
    static SW: OnceLock<(Arc<Switch>, PortId, PortId)> = OnceLock::new();
    SW.get_or_init(|| {
        let s = Switch::new(
            "fuzz",
            SwitchConfig {
                mtu: 1500,
                aging_ms: 1000,
                max_macs_per_port: 8,
            },
        );
        let a = s.add_port("a", Box::new(NullPort)).id;
        let b = s.add_port("b", Box::new(NullPort)).id;
        (s, a, b)
    })
}

/// The frame path of a driver task: `data[0]` picks the ingress port, port security and the
/// clock; the rest is a switch frame (virtio-net header, then Ethernet). A frame the switch
/// forwards is then cut as for a port without offloads (`gso::segment_with_vnet_hdr`).
pub fn frame_path(data: &[u8]) {
    let Some((&ctl, frame)) = data.split_first() else {
        return;
    };
    let (sw, a, b) = switch();
    let ingress = if ctl & 1 == 0 { *a } else { *b };
    let security = PortSecurity {
        mac: MacAddr([2, 0, 0, 0, 0, 0x0a]),
        ipv4: vec![Ipv4Addr::new(10, 0, 0, 2)],
        ipv6: vec!["fd00::2".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST)],
    };
    let sec = (ctl & 2 != 0).then_some(&security);
    let now = u64::from(ctl >> 2) * 100;
    let (verdict, _) = sw.decide(ingress, sec, frame, now);
    if let Verdict::Drop(_) = verdict {
        return;
    }
    // decide() accepted it, so the vnet header is there and parses.
    let Some((h, eth)) = frame.split_at_checked(VNET_HDR_LEN) else {
        panic!("decide forwarded a frame shorter than the vnet header");
    };
    let Ok(hdr) = VnetHdrRepr::from_bytes(h) else {
        panic!("decide forwarded a frame whose vnet header does not parse");
    };
    let mut scratch = Vec::new();
    let _ = gso::segment_with_vnet_hdr(&hdr, eth, None, &mut scratch, &mut |seg: &[u8]| {
        assert!(
            seg.len() >= VNET_HDR_LEN,
            "a segment without its vnet header"
        );
        Ok(())
    });
}

/// GSO segmentation as the switch and the gateway run it: `data` is a vnet header and an
/// Ethernet frame, `data[..2]` after the header also picks a segment size limit. Every
/// segment must fit the limit and, when its checksum was computed, verify.
pub fn gso_segment(data: &[u8]) {
    let Some((h, rest)) = data.split_at_checked(VNET_HDR_LEN) else {
        return;
    };
    let Ok(hdr) = VnetHdrRepr::from_bytes(h) else {
        return;
    };
    let Some((limit, frame)) = rest.split_at_checked(2) else {
        return;
    };
    let limit = u16::from_be_bytes([limit[0], limit[1]]);
    let limit = (limit != 0).then_some(limit);
    let mut scratch = Vec::new();
    let mut emitted = 0usize;
    let gso = hdr.gso_type != GsoType::None;
    let r = gso::segment(&hdr, frame, limit, &mut scratch, &mut |seg: &[u8]| {
        emitted += 1;
        // A frame without GSO is handed on as it came (the switch drops runts before); a
        // segment cut from a GSO frame holds at least its headers.
        assert!(
            !gso || seg.len() >= 14 + 20 + 8,
            "a segment shorter than its headers"
        );
        Ok(())
    });
    match r {
        Ok(n) => assert_eq!(n, emitted, "segment() counted what it emitted"),
        Err(GsoError::Emit(_)) => panic!("emit never fails here"),
        Err(_) => {}
    }
    // The same frame through the prefixed form must give the same count.
    let mut again = 0usize;
    let r2 = gso::segment_with_vnet_hdr(&hdr, frame, limit, &mut scratch, &mut |seg: &[u8]| {
        again += 1;
        assert_eq!(&seg[..VNET_HDR_LEN], &VnetHdrRepr::NONE.to_bytes()[..]);
        Ok(())
    });
    assert_eq!(r.is_ok(), r2.is_ok(), "both forms agree on the frame");
    if r.is_ok() {
        assert_eq!(emitted, again, "both forms cut the same segments");
    }
    // Completing a checksum anywhere in the frame either fails or writes in range.
    if hdr.needs_csum {
        let mut f = frame.to_vec();
        let _ = gso::complete_checksum(&mut f, hdr.csum_start.into(), hdr.csum_offset.into());
    }
}

/// VXLAN decapsulation as the tunnel port runs it: `data` is a UDP payload (VXLAN header,
/// inner Ethernet frame). A datagram with the right VNI has its inner frame handed on with the
/// receive-side vnet header ([`overlay::rx_vnet_hdr`]); the flow hash and the receive merge
/// ([`overlay::gro_tcp4`], the inner frame cut in two at `data[1]`) run over it too. A partial
/// checksum found must complete to a valid one.
pub fn vxlan_decap(data: &[u8]) {
    const VNI: u32 = 42;
    let Ok(frame) = crate::sys::vxlan::decap(data, VNI) else {
        return;
    };
    let mut hdr = [0u8; VNET_HDR_LEN];
    let mut inner = frame.to_vec();
    let found = overlay::rx_vnet_hdr(&mut hdr, &mut inner);
    if let InnerCsum::Partial {
        csum_start,
        csum_offset,
    } = found
    {
        assert!(usize::from(csum_start) + usize::from(csum_offset) + 2 <= inner.len());
        let parsed = VnetHdrRepr::from_bytes(&hdr).ok();
        if parsed.is_some_and(|h| h.needs_csum) {
            // Left for the receiver: completing it must succeed.
            let mut done = inner.clone();
            gso::complete_checksum(&mut done, csum_start.into(), csum_offset.into())
                .unwrap_or_else(|e| panic!("a partial checksum that cannot complete: {e}"));
        }
    }
    let port = overlay::flow_source_port(&inner);
    assert!(port >= overlay::SOURCE_PORT_MIN);
    // Receive merging over the frame and a copy of itself (two "segments").
    let cut = data.get(1).map_or(0, |&c| usize::from(c)).min(inner.len());
    let (x, y) = inner.split_at(cut);
    let mut out = vec![0u8; 2 * inner.len() + VNET_HDR_LEN + 64];
    if let Some((merged, len)) = overlay::gro_tcp4(&[&inner, &inner, x, y], &mut out) {
        assert!(merged >= 2 && len <= out.len());
        let _ = checksum::checksum(&out[..len]);
    }
}

/// Every L2-L4 view at once, as smoltcp's `packet_parser`: `data[0]` picks strict or GSO
/// lengths ([`Lengths`]), the rest is an Ethernet frame. Whatever a view accepts, its
/// accessors must not panic, its `Repr` must parse, and emitting that `Repr` and parsing the
/// result must give it back.
pub fn wire_views(data: &[u8]) {
    let Some((&ctl, frame)) = data.split_first() else {
        return;
    };
    let lengths = if ctl & 1 == 0 {
        Lengths::Strict
    } else {
        Lengths::Gso
    };
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    let er = EthernetRepr::parse(&eth).unwrap_or_else(|e| panic!("checked frame: {e}"));
    let mut buf = vec![0xa5u8; er.buffer_len()];
    er.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    let back = EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).expect("emitted"));
    assert_eq!(back, Ok(er), "Ethernet round trip");
    if eth.ethertype() == EtherType::Ipv6 {
        wire_ipv6(frame.get(eth.header_len()..).unwrap_or_default(), lengths);
        return;
    }
    if eth.ethertype() != EtherType::Ipv4 {
        return;
    }
    let l3 = frame.get(eth.header_len()..).unwrap_or_default();
    let Ok(ip) = Ipv4Packet::new_checked_with(l3, lengths) else {
        return;
    };
    assert!(ip.header_len() <= ip.packet_len() && ip.packet_len() <= l3.len());
    let _ = (ip.verify_checksum(), ip.is_fragment(), ip.dscp_ecn());
    let ir = Ipv4Repr::parse(&ip).unwrap_or_else(|e| panic!("checked packet: {e}"));
    if IPV4_HDR_LEN + ir.payload_len <= usize::from(u16::MAX) {
        let mut buf = vec![0xa5u8; IPV4_HDR_LEN + ir.payload_len];
        let mut out = Ipv4Packet::new_unchecked(&mut buf[..]);
        ir.emit(&mut out);
        assert!(out.verify_checksum(), "an emitted header verifies");
        let back = Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).expect("emitted"));
        assert_eq!(back, Ok(ir), "IPv4 round trip");
    }
    let payload = ip.payload();
    let pseudo = ip.pseudo_header(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    match ip.protocol() {
        IpProtocol::Tcp => {
            let Ok(tcp) = TcpPacket::new_checked(payload) else {
                return;
            };
            let _ = (tcp.verify_checksum(pseudo), tcp.checksum_is_partial(pseudo));
            let tr = TcpRepr::parse(&tcp).unwrap_or_else(|e| panic!("checked segment: {e}"));
            let mut buf = vec![0xa5u8; tr.header_len()];
            tr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]));
            let back = TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).expect("emitted"));
            assert_eq!(back, Ok(tr), "TCP round trip");
        }
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked_with(payload, lengths) else {
                return;
            };
            assert!(udp.datagram_len() <= payload.len());
            let _ = (udp.verify_checksum(pseudo), udp.payload().len());
            let ur = UdpRepr::parse(&udp).unwrap_or_else(|e| panic!("checked datagram: {e}"));
            let mut buf = [0xa5u8; UDP_HDR_LEN];
            ur.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), 0);
            let back = UdpRepr::parse(&UdpPacket::new_checked(&buf[..]).expect("emitted"));
            assert_eq!(back, Ok(ur), "UDP round trip");
        }
        IpProtocol::Icmp => {
            let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
                return;
            };
            let _ = icmp.verify_checksum();
            let cr = Icmpv4Repr::parse(&icmp).unwrap_or_else(|e| panic!("checked message: {e}"));
            let mut buf = icmp.message().to_vec();
            let mut out = Icmpv4Packet::new_unchecked(&mut buf[..]);
            cr.emit(&mut out);
            assert!(out.verify_checksum(), "an emitted message verifies");
            let back = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).expect("emitted"));
            assert_eq!(back, Ok(cr), "ICMP round trip");
        }
        _ => {}
    }
}

/// The IPv6 layer of [`wire_views`]: the header, the transport behind the extension headers,
/// ICMPv6 with its NDP options; each `Repr` round-trips.
fn wire_ipv6(l3: &[u8], lengths: Lengths) {
    let Ok(ip) = Ipv6Packet::new_checked_with(l3, lengths) else {
        return;
    };
    assert!(ip.packet_len() <= l3.len());
    let ir = Ipv6Repr::parse(&ip).unwrap_or_else(|e| panic!("checked packet: {e}"));
    let mut buf = vec![0xa5u8; ir.buffer_len() + ir.payload_len];
    ir.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
    if let Ok(back) = Ipv6Packet::new_checked_with(&buf[..], lengths) {
        assert_eq!(Ipv6Repr::parse(&back), Ok(ir), "IPv6 round trip");
    }
    let Some((IpProtocol::Icmpv6, msg)) = ip.upper_layer() else {
        return;
    };
    let Ok(icmp) = Icmpv6Packet::new_checked(msg) else {
        return;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let _ = icmp.verify_checksum(&src, &dst);
    for o in icmp.options().flatten() {
        let mut b = vec![0u8; o.buffer_len()];
        o.emit(&mut b);
    }
    let cr = Icmpv6Repr::parse(&icmp).unwrap_or_else(|e| panic!("checked message: {e}"));
    let mut buf = icmp.message().to_vec();
    let mut out = Icmpv6Packet::new_unchecked(&mut buf[..]);
    cr.emit(&src, &dst, &mut out);
    assert!(
        out.verify_checksum(&src, &dst),
        "an emitted message verifies"
    );
    let back = Icmpv6Repr::parse(&Icmpv6Packet::new_checked(&buf[..]).expect("emitted"));
    assert_eq!(back, Ok(cr), "ICMPv6 round trip");
}
