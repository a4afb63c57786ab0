//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`) that reach the router's parsers of
//! untrusted bytes and the relay's state machine. Each takes the fuzzer's bytes and must never
//! panic; each also checks invariants the callers rely on (a panic is a finding). They live
//! in the library so that `tests/fuzz_regressions.rs` replays stored inputs on stable through
//! the very code the targets run.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netyard_switch::gso;
use netyard_switch::wire::vnet::{GsoType, VnetHdrRepr, VNET_HDR_LEN};

use crate::packet::{self, AddrMap, Subnet, QUOTE_MAX};
use crate::packet6;
use crate::tcp::conn::{Conn, HostIo, Next, SegOut};
use crate::tcp::seg::{self, Seg, SegHdr, SynOpts, ACK, SYN};

const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 89, 0, 1];

fn subnet() -> Subnet {
    Subnet {
        gateway: Ipv4Addr::new(10, 89, 0, 1),
        prefix_len: 24,
    }
}

/// The gateway's classification of a switch frame (`Engines::ingest` and `plain`), with
/// every parser it runs: `data` is a vnet header and an Ethernet frame. TCP for the gateway's
/// MAC goes through the relay's segment parser; everything else is segmented or has its
/// checksum completed, then goes through the egress parser, the refusal check, and the ICMP
/// error builder quoting what was parsed.
pub fn gateway_ingest(data: &[u8]) {
    let Some((h, frame)) = data.split_at_checked(VNET_HDR_LEN) else {
        return;
    };
    let Ok(hdr) = VnetHdrRepr::from_bytes(h) else {
        return;
    };
    let mut frame = frame.to_vec();
    if frame.get(0..6) == Some(&GW_MAC[..]) {
        if let Some((6, _, _)) = crate::gateway::l4_ports(&frame) {
            tcp_segment(&frame, hdr.needs_csum || hdr.data_valid);
            // The relay takes TCP whole; the rest of the path is for the other protocols.
        }
    }
    if hdr.gso_type != GsoType::None {
        let mut scratch = Vec::new();
        let _ = gso::segment(&hdr, &frame, None, &mut scratch, &mut |s: &[u8]| {
            plain(s);
            Ok(())
        });
        return;
    }
    if hdr.needs_csum
        && gso::complete_checksum(&mut frame, hdr.csum_start.into(), hdr.csum_offset.into())
            .is_err()
    {
        return;
    }
    plain(&frame);
}

/// A complete frame at the gateway: what egress parses and answers.
fn plain(frame: &[u8]) {
    let sn = subnet();
    let _ = crate::gateway::l4_ports(frame);
    let _ = crate::gateway::l4_ports6(frame);
    let _ = packet::ipv4_dst(frame);
    let _ = packet::is_egress(frame, GW_MAC, &sn);
    plain6(frame);
    let maps = [AddrMap {
        guest: Ipv4Addr::new(10, 89, 0, 254),
        host: Ipv4Addr::LOCALHOST,
    }];
    let local: [Ipv4Net; 1] =
        [Ipv4Net::new(Ipv4Addr::new(10, 90, 0, 0), 16).unwrap_or_else(|_| Ipv4Net::default())];
    for m in [&[][..], &maps[..]] {
        let Ok(p) = packet::parse_outbound_mapped(frame, &sn, m) else {
            continue;
        };
        assert!(
            p.quote.len() <= QUOTE_MAX,
            "a quote longer than ICMP errors carry"
        );
        let (IpAddr::V4(dst), IpAddr::V4(ep)) = (p.key.dest.ip(), p.key.endpoint.ip()) else {
            panic!("an IPv4 packet parsed into IPv6 addresses");
        };
        let _ = packet::refusal(dst, &sn, true, &local);
        let _ = packet::egress_target(dst, &sn, m, &local);
        let reply = packet::unreachable_frame(dst, ep, 3, p.quote, 1, GW_MAC);
        let reply = reply.unwrap_or_else(|| panic!("no ICMP error for a parsed packet"));
        // What the gateway builds parses back as a complete IPv4 packet.
        let ip = reply.get(packet::ETH_HDR..).unwrap_or_default();
        assert!(
            etherparse::Ipv4Slice::from_slice(ip).is_ok(),
            "the ICMP error the gateway built does not parse"
        );
    }
}

/// The IPv6 half: parsed, and an ICMPv6 error built about it that parses back.
fn plain6(frame: &[u8]) {
    let sn = packet6::Subnet6 {
        gateway: Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1),
        prefix_len: 64,
    };
    let _ = packet6::ipv6_dst(frame);
    let Ok(p) = packet6::parse_outbound(frame, &sn, &[]) else {
        return;
    };
    assert!(p.quote.len() <= QUOTE_MAX);
    let (IpAddr::V6(dst), IpAddr::V6(ep)) = (p.key.dest.ip(), p.key.endpoint.ip()) else {
        panic!("an IPv6 packet parsed into IPv4 addresses");
    };
    let _ = packet6::egress_target(dst, &sn, &[], &[]);
    let reply = packet6::icmp_error_frame(dst, ep, 1, 4, 0, p.quote, GW_MAC)
        .unwrap_or_else(|| panic!("no ICMPv6 error for a parsed packet"));
    assert!(
        etherparse::SlicedPacket::from_ethernet(&reply).is_ok(),
        "the ICMPv6 error the gateway built does not parse"
    );
}

/// The relay's segment parser, and on a parsed SYN a connection fed the segment.
fn tcp_segment(frame: &[u8], trusted: bool) {
    let Ok(s) = seg::parse(frame, trusted) else {
        return;
    };
    assert!(s.payload.len() <= frame.len());
    if s.has(SYN) && !s.has(ACK) {
        let mut c = Conn::from_syn(&s, 1000, 1460, 1 << 16);
        let (mut host, mut out) = (NullHost::default(), CountOut::default());
        c.host_connected(Instant::now(), &mut out);
        let _ = c.segment(&s, Instant::now(), &mut host, &mut out);
    }
}

#[derive(Default)]
struct NullHost {
    /// Bytes the host socket takes per write (0: would block).
    room: usize,
    written: u64,
}

impl HostIo for NullHost {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = data.len().min(self.room);
        self.written += n as u64;
        Ok(n)
    }
    fn shutdown_write(&mut self) {}
}

#[derive(Default)]
struct CountOut {
    /// Whether the switch queue takes segments now.
    full: bool,
    sent: u64,
    last: Option<SegHdr>,
}

impl SegOut for CountOut {
    fn send(&mut self, h: &SegHdr, payload: (&[u8], &[u8]), mss: u16) -> bool {
        if self.full {
            return false;
        }
        assert!(mss > 0, "a segment size of 0");
        assert!(
            payload.0.len() + payload.1.len() <= seg::MAX_FRAME,
            "a segment larger than a frame"
        );
        self.sent += 1;
        self.last = Some(*h);
        true
    }
}

/// Reads a big-endian u16 at `i`, 0 past the end.
fn be16(d: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([
        d.get(i).copied().unwrap_or(0),
        d.get(i + 1).copied().unwrap_or(0),
    ])
}

/// The relay's per-connection state machine (`Conn`) driven by a script: the first bytes are
/// the endpoint's SYN (MSS, window scale, initial sequence number), then 8-byte operations:
/// a segment from the endpoint (flags, sequence and acknowledgement offsets from what the
/// connection expects and has sent, window, payload length), the host socket's room, the
/// destination's data or end of file, the switch queue filling, and time passing (timers).
pub fn tcp_conn(data: &[u8]) {
    let Some((head, mut ops)) = data.split_at_checked(6) else {
        return;
    };
    let peer_iss = u32::from(be16(head, 0)) << 16 | u32::from(be16(head, 2));
    let mss = be16(head, 4);
    let wscale = head.get(4).copied().map(|w| w & 0x1f);
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 89, 0, 2), 40000);
    let dst = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 80);
    let syn = Seg {
        src_mac: [2, 0, 0, 0, 0, 2],
        src: src.into(),
        dst: dst.into(),
        seq: peer_iss,
        ack: 0,
        flags: SYN,
        window: 65535,
        opts: SynOpts {
            mss: (mss != 0).then_some(mss),
            wscale,
        },
        payload: &[],
        quote: &[],
        ttl: 64,
    };
    let our_iss = 7_000_000u32;
    let start = Instant::now();
    let mut now = start;
    let mut c = Conn::from_syn(&syn, our_iss, 1460, 1 << 16);
    let mut host = NullHost {
        room: 1 << 20,
        written: 0,
    };
    let mut out = CountOut::default();
    c.host_connected(now, &mut out);
    // The endpoint's view: the next sequence number it sends.
    let mut peer_nxt = peer_iss.wrapping_add(1);
    let payload = [0x5au8; 2048];
    let mut steps = 0;
    while let Some((op, rest)) = ops.split_at_checked(8) {
        ops = rest;
        steps += 1;
        if steps > 512 {
            break;
        }
        let flags = op[1] & 0x3f;
        match op[0] % 6 {
            0 | 1 => {
                let seq = peer_nxt.wrapping_add(u32::from(be16(op, 2)).wrapping_sub(0x8000));
                let acked = out.last.map_or(our_iss, |h| h.seq);
                let ack = acked.wrapping_add(u32::from(be16(op, 4)).wrapping_sub(0x8000));
                let len = usize::from(be16(op, 6)) % (payload.len() + 1);
                let s = Seg {
                    seq,
                    ack,
                    flags,
                    window: be16(op, 6),
                    payload: &payload[..len],
                    ..syn.clone()
                };
                if seq == peer_nxt {
                    peer_nxt = peer_nxt.wrapping_add(s.seq_len());
                }
                match c.segment(&s, now, &mut host, &mut out) {
                    Next::Continue => {}
                    Next::Done | Next::Abort => return,
                }
            }
            2 => host.room = usize::from(be16(op, 2)),
            3 => {
                let mut n = usize::from(be16(op, 2));
                let eof = op[1] & 0x80 != 0;
                let _ = c.fill(|buf| {
                    if n == 0 {
                        return if eof {
                            Ok(0)
                        } else {
                            Err(io::ErrorKind::WouldBlock.into())
                        };
                    }
                    let k = n.min(buf.len());
                    buf[..k].fill(0xa5);
                    n -= k;
                    Ok(k)
                });
                c.push(now, &mut out);
            }
            4 => {
                out.full = op[1] & 1 != 0;
                let _ = c.flush(&mut host);
                if c.ack_owed {
                    c.send_ack(&mut out);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(be16(op, 2)) * 10);
                if c.tick(now, &mut out) == Next::Abort {
                    return;
                }
            }
        }
        assert!(c.to_host.len() <= 1 << 16, "to_host beyond its limit");
        assert!(c.to_cont.len() <= 1 << 16, "to_cont beyond its limit");
        let _ = (c.window(), c.flow_state(), c.finished(), c.deadline());
    }
}
