//! TCP segments on the container side: parsing what an endpoint sends, building what it
//! receives (a virtio-net header, Ethernet, IPv4 and TCP, then the payload).
//!
//! Frames to the container carry a *partial* checksum (NEEDS_CSUM: the field holds the
//! pseudo-header sum) and, when the payload is longer than one MSS, a TCPv4 GSO request: the
//! switch hands such a super-frame whole to a port with offloads (the container's kernel takes
//! it as one big segment) and cuts it in software only for a port without them.

use std::net::{Ipv4Addr, SocketAddrV4};

use netyard_switch::wire::checksum;
use netyard_switch::wire::vnet::{
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VNET_HDR_LEN,
};

use crate::drops::EgressDrop;
use crate::packet::{ETH_HDR, IPV4_HDR, TTL};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// TCP header without options.
pub const TCP_HDR: usize = 20;
/// Headers before the TCP options in a built frame.
pub const HEADROOM: usize = VNET_HDR_LEN + ETH_HDR + IPV4_HDR;
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
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub opts: SynOpts,
    pub payload: &'a [u8],
    /// The IPv4 header and 8 bytes of TCP, for an ICMP error about this segment.
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
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, tcp_len: usize) -> u64 {
    let len = u32::try_from(tcp_len).unwrap_or(u32::MAX);
    checksum::pseudo_header_v4(&src.octets(), &dst.octets(), 6, len)
}

/// Parses an IPv4 TCP segment. `frame` is the Ethernet frame (virtio-net header removed);
/// `csum_trusted` when the header said NEEDS_CSUM or DATA_VALID (a partial checksum from the
/// endpoint's own kernel cannot be verified, and needs not be).
pub fn parse(frame: &[u8], csum_trusted: bool) -> Result<Seg<'_>, EgressDrop> {
    let malformed = EgressDrop::Malformed;
    let eth = frame.get(..ETH_HDR).ok_or(malformed)?;
    if eth[12..14] != [0x08, 0x00] {
        return Err(malformed);
    }
    let ip = &frame[ETH_HDR..];
    let ihl = usize::from(ip.first().ok_or(malformed)? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_HDR || ip.len() < ihl {
        return Err(malformed);
    }
    if checksum::fold(checksum::add(0, &ip[..ihl])) != 0xffff {
        return Err(EgressDrop::BadChecksum);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // A GSO super-frame from a TAP may say 0 or the real length; trust the frame then.
    let ip = if total >= ihl && total <= ip.len() {
        &ip[..total]
    } else if total == 0 {
        ip
    } else {
        return Err(malformed);
    };
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return Err(EgressDrop::Fragment);
    }
    if ip[9] != 6 {
        return Err(EgressDrop::Unsupported);
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tcp = &ip[ihl..];
    let doff = usize::from(tcp.get(12).ok_or(malformed)? >> 4) * 4;
    if doff < TCP_HDR || tcp.len() < doff {
        return Err(malformed);
    }
    if !csum_trusted
        && checksum::fold(checksum::add(pseudo(src_ip, dst_ip, tcp.len()), tcp)) != 0xffff
    {
        return Err(EgressDrop::BadChecksum);
    }
    let be16 = |o: usize| u16::from_be_bytes([tcp[o], tcp[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes([tcp[o], tcp[o + 1], tcp[o + 2], tcp[o + 3]]);
    let flags = tcp[13] & 0x3f;
    let mut opts = SynOpts::default();
    if flags & SYN != 0 {
        let mut o = &tcp[TCP_HDR..doff];
        while let Some(&kind) = o.first() {
            match kind {
                0 => break,
                1 => o = &o[1..],
                _ => {
                    let Some(&len) = o.get(1) else { break };
                    let len = usize::from(len);
                    if len < 2 || len > o.len() {
                        break;
                    }
                    match (kind, len) {
                        (2, 4) => opts.mss = Some(u16::from_be_bytes([o[2], o[3]])),
                        (3, 3) => opts.wscale = Some(o[2].min(14)),
                        _ => {}
                    }
                    o = &o[len..];
                }
            }
        }
    }
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&eth[6..12]);
    let sport = be16(0);
    let dport = be16(2);
    if sport == 0 || dport == 0 {
        return Err(EgressDrop::BadAddress);
    }
    Ok(Seg {
        src_mac,
        src: SocketAddrV4::new(src_ip, sport),
        dst: SocketAddrV4::new(dst_ip, dport),
        seq: be32(4),
        ack: be32(8),
        flags,
        window: be16(14),
        opts,
        payload: &tcp[doff..],
        quote: &ip[..(ihl + 8).min(ip.len())],
        ttl: ip[8],
    })
}

/// Where a built frame goes: from `from` (the peer the endpoint talks to) to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    pub gw_mac: [u8; 6],
    pub endpoint_mac: [u8; 6],
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
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

/// Builds `[vnet hdr][Ethernet][IPv4][TCP][payload]` in `buf` (cleared first; its capacity
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
    let mut opts = [0u8; 8];
    let mut olen = 0;
    if let Some(s) = h.syn {
        if let Some(m) = s.mss {
            opts[..4].copy_from_slice(&[2, 4, (m >> 8) as u8, m as u8]);
            olen = 4;
        }
        if let Some(w) = s.wscale {
            opts[olen..olen + 4].copy_from_slice(&[1, 3, 3, w]);
            olen += 4;
        }
    }
    let tcp_len = TCP_HDR + olen + plen;
    let ip_len = IPV4_HDR + tcp_len;
    let gso = plen > usize::from(mss) && mss > 0;
    buf.clear();
    // virtio-net header.
    let hdr_len = (ETH_HDR + IPV4_HDR + TCP_HDR + olen) as u16;
    let csum_start = (ETH_HDR + IPV4_HDR) as u16;
    buf.push(VIRTIO_NET_HDR_F_NEEDS_CSUM);
    buf.push(if gso {
        VIRTIO_NET_HDR_GSO_TCPV4
    } else {
        VIRTIO_NET_HDR_GSO_NONE
    });
    buf.extend_from_slice(&hdr_len.to_ne_bytes());
    buf.extend_from_slice(&(if gso { mss } else { 0 }).to_ne_bytes());
    buf.extend_from_slice(&csum_start.to_ne_bytes());
    buf.extend_from_slice(&16u16.to_ne_bytes());
    // Ethernet.
    buf.extend_from_slice(&a.endpoint_mac);
    buf.extend_from_slice(&a.gw_mac);
    buf.extend_from_slice(&[0x08, 0x00]);
    // IPv4, don't fragment.
    let ip_start = buf.len();
    let tl = (ip_len.min(0xffff) as u16).to_be_bytes();
    let id = ip_id.to_be_bytes();
    buf.extend_from_slice(&[0x45, 0, tl[0], tl[1], id[0], id[1], 0x40, 0, TTL, 6, 0, 0]);
    buf.extend_from_slice(&a.from.ip().octets());
    buf.extend_from_slice(&a.to.ip().octets());
    let c = checksum::checksum(&buf[ip_start..ip_start + IPV4_HDR]);
    buf[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
    // TCP with the pseudo-header sum in the checksum field (NEEDS_CSUM).
    buf.extend_from_slice(&a.from.port().to_be_bytes());
    buf.extend_from_slice(&a.to.port().to_be_bytes());
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.ack.to_be_bytes());
    buf.push((((TCP_HDR + olen) / 4) as u8) << 4);
    buf.push(h.flags);
    buf.extend_from_slice(&h.window.to_be_bytes());
    let partial = checksum::fold(pseudo(*a.from.ip(), *a.to.ip(), tcp_len));
    buf.extend_from_slice(&partial.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&opts[..olen]);
    buf.extend_from_slice(payload.0);
    buf.extend_from_slice(payload.1);
}

/// Largest payload of one built frame for a given MSS: whole segments within 64 KiB.
pub fn max_payload(mss: u16) -> usize {
    let room = MAX_FRAME - ETH_HDR - IPV4_HDR - TCP_HDR;
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

    fn addr() -> Addressing {
        Addressing {
            gw_mac: [2, 0x42, 10, 0, 0, 1],
            endpoint_mac: [2, 0x42, 10, 0, 0, 2],
            from: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80),
            to: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000),
        }
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
    fn sequence_comparison_wraps() {
        assert!(seq_lt(u32::MAX - 1, 3));
        assert!(!seq_lt(3, u32::MAX - 1));
        assert!(seq_le(5, 5));
    }
}
