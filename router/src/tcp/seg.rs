//! TCP segments on the container side: parsing what an endpoint sends, building what it
//! receives (a virtio-net header, Ethernet, IPv4 and TCP, then the payload).
//!
//! Both families: an IPv6 segment is the same TCP behind a 40-byte IPv6 header (extension
//! headers skipped when parsing, none written), its checksum over IPv6's pseudo-header, and
//! a super-frame's GSO type TCPV6 instead of TCPV4.
//!
//! Frames to the container carry a *partial* checksum (NEEDS_CSUM: the field holds the
//! pseudo-header sum) and, when the payload is longer than one MSS, a TCP GSO request: the
//! switch hands such a super-frame whole to a port with offloads (the container's kernel takes
//! it as one big segment) and cuts it in software only for a port without them.

use std::net::{IpAddr, SocketAddr};

use netyard_switch::wire::checksum;
use netyard_switch::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use netyard_switch::wire::ip::{IpProtocol, Lengths};
use netyard_switch::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use netyard_switch::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use netyard_switch::wire::tcp::{self, TcpPacket, TcpRepr};
use netyard_switch::wire::vnet::{GsoType, VnetHdr, VnetHdrRepr, VNET_HDR_LEN};

use crate::drops::EgressDrop;
use crate::packet::{ETH_HDR, IPV4_HDR, TTL};
use crate::packet6::IPV6_HDR;

pub const FIN: u8 = tcp::flags::FIN;
pub const SYN: u8 = tcp::flags::SYN;
pub const RST: u8 = tcp::flags::RST;
pub const PSH: u8 = tcp::flags::PSH;
pub const ACK: u8 = tcp::flags::ACK;

/// TCP header without options.
pub const TCP_HDR: usize = tcp::TCP_HDR_LEN;
/// Largest Ethernet frame built (the switch's and the kernel's 64 KiB limit).
pub const MAX_FRAME: usize = 65_535;

/// What the SYN options offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynOpts {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
}

/// A parsed TCP segment from an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg<'a> {
    pub src_mac: [u8; 6],
    /// IPv4 or IPv6, both of one family.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub opts: SynOpts,
    pub payload: &'a [u8],
    /// The IP header (IPv6: and its extension headers) and 8 bytes of TCP, for an ICMP
    /// error about this segment.
    pub quote: &'a [u8],
    pub ttl: u8,
}

impl Seg<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment takes (payload, SYN and FIN count one each).
    pub fn seq_len(&self) -> u32 {
        let mut n = self.payload.len() as u32;
        if self.has(SYN) {
            n += 1;
        }
        if self.has(FIN) {
            n += 1;
        }
        n
    }
}

/// The TCP pseudo-header's partial sum ([`checksum`], the switch's one implementation). A
/// length past 16 bits (a super-frame whose IP length says 0) is summed whole, as the switch's
/// segmentation does.
fn pseudo(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u64 {
    let len = u32::try_from(tcp_len).unwrap_or(u32::MAX);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v4(&s.octets(), &d.octets(), 6, len)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(&s.octets(), &d.octets(), 6, len)
        }
        // Never built: both ends of a connection are of one family.
        _ => 0,
    }
}

/// The IP layer of a TCP segment, either family: addresses, the TCP bytes, the quote.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    tcp: &'a [u8],
    quote: &'a [u8],
    ttl: u8,
}

fn ipv4_layer(l3: &[u8], lengths: Lengths) -> Result<Ip<'_>, EgressDrop> {
    let ip = Ipv4Packet::new_checked_with(l3, lengths).map_err(|_| EgressDrop::Malformed)?;
    if !ip.verify_checksum() {
        return Err(EgressDrop::BadChecksum);
    }
    if ip.is_fragment() {
        return Err(EgressDrop::Fragment);
    }
    if ip.protocol() != IpProtocol::Tcp {
        return Err(EgressDrop::Unsupported);
    }
    let packet = ip.packet();
    Ok(Ip {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        tcp: ip.payload(),
        quote: &packet[..(ip.header_len() + 8).min(packet.len())],
        ttl: ip.ttl(),
    })
}

fn ipv6_layer(l3: &[u8], lengths: Lengths) -> Result<Ip<'_>, EgressDrop> {
    let ip = Ipv6Packet::new_checked_with(l3, lengths).map_err(|_| EgressDrop::Malformed)?;
    // None: a fragment header, or a chain too long or cut.
    let (proto, tcp) = ip.upper_layer().ok_or(EgressDrop::Fragment)?;
    if proto != IpProtocol::Tcp {
        return Err(EgressDrop::Unsupported);
    }
    let packet = ip.packet();
    let headers = packet.len() - tcp.len();
    Ok(Ip {
        src: ip.src_addr().into(),
        dst: ip.dst_addr().into(),
        tcp,
        quote: &packet[..(headers + 8).min(packet.len())],
        ttl: ip.hop_limit(),
    })
}

/// Parses an IPv4 TCP segment. `frame` is the Ethernet frame (virtio-net header removed);
/// `csum_trusted` when the header said NEEDS_CSUM or DATA_VALID (a partial checksum from the
/// endpoint's own kernel cannot be verified, and needs not be).
///
/// A trusted frame's IPv4 total length is read as a GSO super-frame's ([`Lengths::Gso`]: 0
/// means the whole frame): a super-frame always comes with NEEDS_CSUM (the kernel hands GSO
/// only with CHECKSUM_PARTIAL), so `csum_trusted` covers every GSO frame and the relay's
/// interface needs no second flag.
pub fn parse(frame: &[u8], csum_trusted: bool) -> Result<Seg<'_>, EgressDrop> {
    let malformed = EgressDrop::Malformed;
    let eth = EthernetFrame::new_checked(frame).map_err(|_| malformed)?;
    let lengths = if csum_trusted {
        Lengths::Gso
    } else {
        Lengths::Strict
    };
    let l3 = frame.get(eth.header_len()..).unwrap_or_default();
    let ip = match eth.outer_ethertype() {
        EtherType::Ipv4 => ipv4_layer(l3, lengths)?,
        EtherType::Ipv6 => ipv6_layer(l3, lengths)?,
        _ => return Err(malformed),
    };
    let (src_ip, dst_ip) = (ip.src, ip.dst);
    let tcp = TcpPacket::new_checked(ip.tcp).map_err(|_| malformed)?;
    if !csum_trusted && !tcp.verify_checksum(pseudo(src_ip, dst_ip, tcp.segment().len())) {
        return Err(EgressDrop::BadChecksum);
    }
    let repr = TcpRepr::parse(&tcp).map_err(|_| malformed)?;
    if repr.src_port == 0 || repr.dst_port == 0 {
        return Err(EgressDrop::BadAddress);
    }
    Ok(Seg {
        src_mac: eth.src_addr().0,
        src: SocketAddr::new(src_ip, repr.src_port),
        dst: SocketAddr::new(dst_ip, repr.dst_port),
        seq: repr.seq_number,
        ack: repr.ack_number,
        // URG, ECE and CWR are not interpreted.
        flags: repr.flags & 0x3f,
        window: repr.window_len,
        opts: SynOpts {
            mss: repr.max_seg_size,
            wscale: repr.window_scale,
        },
        payload: tcp.payload(),
        quote: ip.quote,
        ttl: ip.ttl,
    })
}

/// Where a built frame goes: from `from` (the peer the endpoint talks to) to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    pub gw_mac: [u8; 6],
    pub endpoint_mac: [u8; 6],
    /// Both of one family (the connection's).
    pub from: SocketAddr,
    pub to: SocketAddr,
}

/// The header fields of a segment to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegHdr {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Options for a SYN or SYN-ACK.
    pub syn: Option<SynOpts>,
}

/// Builds `[vnet hdr][Ethernet][IPv4 or IPv6][TCP][payload]` in `buf` (cleared first; its capacity
/// is reused). `mss` is the GSO segment size if the payload exceeds it. The payload comes in
/// two parts (a ring's two slices).
pub fn build(
    buf: &mut Vec<u8>,
    a: &Addressing,
    h: &SegHdr,
    payload: (&[u8], &[u8]),
    mss: u16,
    ip_id: u16,
) {
    let plen = payload.0.len() + payload.1.len();
    let syn = h.syn.unwrap_or_default();
    let tcp_repr = TcpRepr {
        src_port: a.from.port(),
        dst_port: a.to.port(),
        seq_number: h.seq,
        ack_number: h.ack,
        flags: h.flags,
        window_len: h.window,
        max_seg_size: syn.mss,
        window_scale: syn.wscale,
    };
    let tcp_hdr = tcp_repr.header_len();
    let tcp_len = tcp_hdr + plen;
    let gso = plen > usize::from(mss) && mss > 0;
    let v6 = a.from.is_ipv6();
    let ip_hdr = if v6 { IPV6_HDR } else { IPV4_HDR };
    let l3 = VNET_HDR_LEN + ETH_HDR;
    let l4 = l3 + ip_hdr;
    buf.clear();
    buf.resize(l4 + tcp_hdr, 0);
    buf.extend_from_slice(payload.0);
    buf.extend_from_slice(payload.1);
    // Header lengths are at most 14 + 20 + 28 bytes: the conversions cannot fail.
    let to16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    VnetHdrRepr {
        needs_csum: true,
        data_valid: false,
        gso_type: match (gso, v6) {
            (false, _) => GsoType::None,
            (true, false) => GsoType::TcpV4,
            (true, true) => GsoType::TcpV6,
        },
        ecn: false,
        hdr_len: to16(ETH_HDR + ip_hdr + tcp_hdr),
        gso_size: if gso { mss } else { 0 },
        csum_start: to16(ETH_HDR + ip_hdr),
        csum_offset: to16(tcp::CHECKSUM_OFFSET),
    }
    .emit(&mut VnetHdr::new_unchecked(&mut buf[..VNET_HDR_LEN]));
    EthernetRepr {
        src_addr: MacAddr(a.gw_mac),
        dst_addr: MacAddr(a.endpoint_mac),
        vlan_tci: None,
        ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
    }
    .emit(&mut EthernetFrame::new_unchecked(
        &mut buf[VNET_HDR_LEN..l3],
    ));
    match (a.from.ip(), a.to.ip()) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_len,
            hop_limit: TTL,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut buf[l3..l4])),
        // Don't fragment; a super-frame's total length is capped at 65535 (the frame is its
        // extent).
        (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: IpProtocol::Tcp,
            payload_len: tcp_len,
            ttl: TTL,
            ident: ip_id,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[l3..l4])),
        // Addressing of mixed families is never made (both come from one connection).
        _ => {}
    }
    // TCP with the pseudo-header sum in the checksum field (NEEDS_CSUM).
    let mut tcp = TcpPacket::new_unchecked(&mut buf[l4..]);
    tcp_repr.emit(&mut tcp);
    tcp.fill_partial_checksum(pseudo(a.from.ip(), a.to.ip(), tcp_len));
}

/// Largest payload of one built frame for a given MSS: whole segments within 64 KiB.
/// (Sized for IPv6's longer header, so one limit serves both families.)
pub fn max_payload(mss: u16) -> usize {
    let room = MAX_FRAME - ETH_HDR - IPV6_HDR - TCP_HDR;
    let mss = usize::from(mss.max(1));
    (room / mss).max(1) * mss
}

/// Whether `a` comes before `b` in sequence space.
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub fn seq_le(a: u32, b: u32) -> bool {
    a == b || seq_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netyard_switch::gso;
    use netyard_switch::wire::vnet::VnetHdrRepr;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn addr() -> Addressing {
        Addressing {
            gw_mac: [2, 0x42, 10, 0, 0, 1],
            endpoint_mac: [2, 0x42, 10, 0, 0, 2],
            from: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80).into(),
            to: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000).into(),
        }
    }

    fn addr6() -> Addressing {
        Addressing {
            from: "[2001:db8::2]:80".parse().expect("v6"),
            to: "[fd00:1::2]:40000".parse().expect("v6"),
            ..addr()
        }
    }

    #[test]
    fn an_ipv6_segment_parses_back_and_its_super_frame_is_tcpv6_gso() {
        let mut buf = Vec::new();
        let syn = SegHdr {
            seq: 7,
            ack: 9,
            flags: SYN | ACK,
            window: 1000,
            syn: Some(SynOpts {
                mss: Some(1440),
                wscale: Some(7),
            }),
        };
        build(&mut buf, &addr6(), &syn, (b"", b""), 1440, 1);
        let hdr = VnetHdrRepr::from_bytes(&buf[..VNET_HDR_LEN]).expect("vnet");
        assert_eq!(hdr.gso_type, GsoType::None);
        assert_eq!(usize::from(hdr.csum_start), ETH_HDR + IPV6_HDR);
        let frame = &mut buf[VNET_HDR_LEN..];
        assert_eq!(&frame[12..14], &[0x86, 0xdd], "IPv6 EtherType");
        gso::complete_checksum(frame, hdr.csum_start.into(), hdr.csum_offset.into())
            .expect("checksum");
        let s = parse(frame, false).expect("parses with a valid checksum");
        assert_eq!((s.src, s.dst), (addr6().from, addr6().to));
        assert_eq!((s.seq, s.ack, s.flags), (7, 9, SYN | ACK));
        assert_eq!(s.opts.mss, Some(1440));
        assert_eq!(s.quote.len(), IPV6_HDR + 8);
        assert_eq!(s.ttl, TTL);

        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let h = SegHdr {
            seq: 1,
            ack: 1,
            flags: ACK | PSH,
            window: 100,
            syn: None,
        };
        build(
            &mut buf,
            &addr6(),
            &h,
            (&data[..1000], &data[1000..]),
            1440,
            1,
        );
        let hdr = VnetHdrRepr::from_bytes(&buf[..VNET_HDR_LEN]).expect("vnet");
        assert_eq!((hdr.gso_type, hdr.gso_size), (GsoType::TcpV6, 1440));
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        let mut n = 0;
        gso::segment(&hdr, &buf[VNET_HDR_LEN..], None, &mut scratch, &mut |seg| {
            let s = parse(seg, false).expect("each segment has a valid checksum");
            assert!(seg.len() - ETH_HDR <= IPV6_HDR + TCP_HDR + 1440);
            got.extend_from_slice(s.payload);
            n += 1;
            Ok(())
        })
        .expect("segments");
        assert_eq!((got, n), (data, 4));
    }

    #[test]
    fn an_ipv6_super_frame_from_the_kernel_may_say_payload_length_zero_when_trusted() {
        let mut buf = Vec::new();
        let h = SegHdr {
            seq: 1,
            ack: 1,
            flags: ACK,
            window: 100,
            syn: None,
        };
        build(&mut buf, &addr6(), &h, (&[7u8; 3000], b""), 1440, 1);
        let frame = &mut buf[VNET_HDR_LEN..];
        frame[ETH_HDR + 4..ETH_HDR + 6].fill(0);
        assert_eq!(parse(frame, true).expect("trusted").payload.len(), 3000);
        assert_eq!(parse(frame, false), Err(EgressDrop::Malformed));
        // A fragment header is a fragment.
        frame[ETH_HDR + 6] = 44;
        assert_eq!(parse(frame, true), Err(EgressDrop::Fragment));
    }

    #[test]
    fn built_frame_parses_back_with_a_valid_checksum_once_completed() {
        let mut buf = Vec::new();
        let h = SegHdr {
            seq: 7,
            ack: 9,
            flags: SYN | ACK,
            window: 1000,
            syn: Some(SynOpts {
                mss: Some(1460),
                wscale: Some(7),
            }),
        };
        build(&mut buf, &addr(), &h, (b"he", b"llo"), 1460, 1);
        let hdr = VnetHdrRepr::from_bytes(&buf[..VNET_HDR_LEN]).unwrap();
        let frame = &mut buf[VNET_HDR_LEN..];
        gso::complete_checksum(frame, hdr.csum_start.into(), hdr.csum_offset.into()).unwrap();
        let s = parse(frame, false).unwrap();
        assert_eq!(s.src, addr().from);
        assert_eq!(s.dst, addr().to);
        assert_eq!((s.seq, s.ack, s.flags, s.window), (7, 9, SYN | ACK, 1000));
        assert_eq!(s.opts.mss, Some(1460));
        assert_eq!(s.opts.wscale, Some(7));
        assert_eq!(s.payload, b"hello");
        assert_eq!(s.seq_len(), 6);
    }

    #[test]
    fn large_payload_is_a_gso_frame_that_segments_cleanly() {
        let mut buf = Vec::new();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let h = SegHdr {
            seq: 1,
            ack: 1,
            flags: ACK | PSH,
            window: 100,
            syn: None,
        };
        build(
            &mut buf,
            &addr(),
            &h,
            (&data[..3000], &data[3000..]),
            1448,
            1,
        );
        let hdr = VnetHdrRepr::from_bytes(&buf[..VNET_HDR_LEN]).unwrap();
        assert_eq!(hdr.gso_size, 1448);
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        gso::segment(&hdr, &buf[VNET_HDR_LEN..], None, &mut scratch, &mut |seg| {
            let s = parse(seg, false).expect("each segment has a valid checksum");
            got.extend_from_slice(s.payload);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for n in 0..80 {
            let junk = vec![0x45u8; n];
            let _ = parse(&junk, false);
        }
        let mut buf = Vec::new();
        let h = SegHdr {
            seq: 1,
            ack: 1,
            flags: ACK,
            window: 1,
            syn: None,
        };
        build(&mut buf, &addr(), &h, (b"x", b""), 1448, 1);
        let frame = &mut buf[VNET_HDR_LEN..];
        assert_eq!(parse(frame, false), Err(EgressDrop::BadChecksum));
        frame[ETH_HDR + 12] ^= 1;
        assert_eq!(
            parse(frame, true),
            Err(EgressDrop::BadChecksum),
            "IP header sum"
        );
    }

    #[test]
    fn a_trusted_super_frame_may_say_ip_length_zero_an_untrusted_one_may_not() {
        let mut buf = Vec::new();
        let data = vec![7u8; 3000];
        let h = SegHdr {
            seq: 1,
            ack: 1,
            flags: ACK,
            window: 100,
            syn: None,
        };
        build(&mut buf, &addr(), &h, (&data, b""), 1448, 1);
        let frame = &mut buf[VNET_HDR_LEN..];
        frame[ETH_HDR + 2..ETH_HDR + 4].fill(0);
        frame[ETH_HDR + 10..ETH_HDR + 12].fill(0);
        let c = checksum::checksum(&frame[ETH_HDR..ETH_HDR + IPV4_HDR]);
        frame[ETH_HDR + 10..ETH_HDR + 12].copy_from_slice(&c.to_be_bytes());
        let s = parse(frame, true).expect("a GSO super-frame (NEEDS_CSUM) with length 0");
        assert_eq!(s.payload, &data[..]);
        assert_eq!(parse(frame, false), Err(EgressDrop::Malformed));
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_lt(u32::MAX - 1, 3));
        assert!(!seq_lt(3, u32::MAX - 1));
        assert!(seq_le(5, 5));
    }
}
