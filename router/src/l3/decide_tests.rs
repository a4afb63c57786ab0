//! [`decide`]'s unit tests: made-up frames through a two-interface router, no kernel.

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use netyard_switch::port::VNET_HDR_LEN;
use netyard_switch::wire::checksum;
use netyard_switch::wire::ipv4::Ipv4Packet;
use netyard_switch::wire::udp::UdpPacket;
use netyard_switch::MacAddr;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr};

use super::decide::{arp_frame, decide, Cx, Verdict};
use super::nat::Nat;
use super::neigh::Neighbours;
use super::{Config, Counter, Counters, Iface, Route};

const R_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
const R_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 254);
const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 10);
const MAC_RA: MacAddr = MacAddr([2, 0, 0, 0, 1, 254]);
const MAC_RB: MacAddr = MacAddr([2, 0, 0, 0, 2, 254]);
const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 1, 10]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 2, 10]);
const IP: usize = VNET_HDR_LEN + 14;

struct R {
    cfg: Config,
    neigh: Neighbours,
    nat: Nat,
    counters: Vec<Counters>,
    out: Vec<u8>,
}

impl R {
    fn new(nat_b: bool, mtu_b: u32) -> R {
        let cfg = Config {
            ifaces: vec![
                Iface {
                    ip: R_A,
                    net: "10.1.0.0/24".parse().expect("net"),
                    mac: MAC_RA,
                    mtu: 1500,
                    nat: false,
                },
                Iface {
                    ip: R_B,
                    net: "10.2.0.0/24".parse().expect("net"),
                    mac: MAC_RB,
                    mtu: mtu_b,
                    nat: nat_b,
                },
            ],
            routes: vec![Route {
                prefix: "10.9.0.0/16".parse().expect("net"),
                via: Ipv4Addr::new(10, 2, 0, 1),
                iface: 1,
            }],
        };
        R {
            cfg,
            neigh: Neighbours::new(2),
            nat: Nat::default(),
            counters: vec![Counters::default(), Counters::default()],
            out: vec![0; 70_000],
        }
    }

    fn decide(&mut self, ingress: usize, frame: &mut [u8]) -> Verdict {
        let cx = Cx {
            cfg: &self.cfg,
            neigh: &mut self.neigh,
            nat: &mut self.nat,
            counters: &self.counters,
            now: 0,
            out: &mut self.out,
        };
        decide(cx, ingress, frame)
    }
}

/// A UDP frame (vnet header, Ethernet, IPv4 with `ttl` and DF, UDP with its checksum).
fn udp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    len: usize,
) -> Vec<u8> {
    let mut v = vec![0u8; VNET_HDR_LEN];
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), ttl)
        .udp(40000, 53)
        .write(&mut v, &vec![7u8; len])
        .expect("built");
    let mut p = Ipv4Packet::new_unchecked(&mut v[IP..]);
    p.set_frag(true, false, 0);
    p.fill_checksum();
    v
}

fn echo(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0u8; VNET_HDR_LEN];
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(0x1234, 1)
        .write(&mut v, b"abcdefgh")
        .expect("built");
    v
}

fn ip_ok(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let p = Ipv4Packet::new_checked(&frame[IP..]).expect("ipv4");
    assert!(p.verify_checksum(), "IPv4 header checksum");
    p
}

fn udp_ok(frame: &[u8]) {
    let p = ip_ok(frame);
    let u = UdpPacket::new_checked(p.payload()).expect("udp");
    assert!(
        u.verify_checksum(p.pseudo_header(u32::from(u.len()))),
        "UDP checksum"
    );
}

fn eth(frame: &[u8]) -> (MacAddr, MacAddr) {
    let e = &frame[VNET_HDR_LEN..];
    (
        MacAddr::from_bytes(&e[0..6]).expect("dst"),
        MacAddr::from_bytes(&e[6..12]).expect("src"),
    )
}

fn learn_b(r: &mut R) {
    r.neigh.learn(1, HOST_B, MAC_B, 0);
    r.neigh.learn(1, Ipv4Addr::new(10, 2, 0, 1), MAC_B, 0);
}

#[test]
fn an_arp_request_for_the_interface_is_answered_and_teaches_the_cache() {
    let mut r = R::new(false, 1500);
    let inf = r.cfg.ifaces[0].clone();
    let asker = Iface {
        ip: HOST_A,
        mac: MAC_A,
        ..inf
    };
    let mut req = [0u8; 64];
    let n = arp_frame(
        &asker,
        ArpOperation::Request,
        MacAddr::BROADCAST,
        R_A,
        &mut req,
    )
    .expect("built");
    let v = r.decide(0, &mut req[..n]);
    let Verdict::Learned {
        iface: 0,
        ip,
        reply: Some(len),
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(ip, HOST_A);
    let reply = &r.out[..len];
    assert_eq!(eth(reply), (MAC_A, MAC_RA));
    let p = ArpPacket::new_checked(&reply[IP..]).expect("arp");
    let ArpRepr::EthernetIpv4 {
        operation,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = ArpRepr::parse(&p).expect("repr")
    else {
        panic!()
    };
    assert_eq!(
        (operation, source_protocol_addr, target_protocol_addr),
        (ArpOperation::Reply, R_A, HOST_A)
    );
    // A known host's request for another host refreshes its entry, and that is all.
    let other = Ipv4Addr::new(10, 1, 0, 99);
    let n = arp_frame(
        &asker,
        ArpOperation::Request,
        MacAddr::BROADCAST,
        other,
        &mut req,
    )
    .expect("built");
    let refreshed = Verdict::Learned {
        iface: 0,
        ip: HOST_A,
        reply: None,
    };
    assert_eq!(r.decide(0, &mut req[..n]), refreshed);
    // A stranger's request for another host is none of the router's business.
    let stranger = Iface {
        ip: Ipv4Addr::new(10, 1, 0, 11),
        ..asker
    };
    let n = arp_frame(
        &stranger,
        ArpOperation::Request,
        MacAddr::BROADCAST,
        other,
        &mut req,
    )
    .expect("built");
    assert_eq!(r.decide(0, &mut req[..n]), Verdict::Drop(Counter::Ignored));
}

#[test]
fn a_ping_to_either_address_is_answered_from_that_address_on_the_ingress() {
    let mut r = R::new(false, 1500);
    let mut f = echo(MAC_A, MAC_RA, HOST_A, R_B);
    let Verdict::Reply { iface: 0, len } = r.decide(0, &mut f) else {
        panic!()
    };
    let out = r.out[..len].to_vec();
    assert_eq!(eth(&out), (MAC_A, MAC_RA));
    let p = ip_ok(&out);
    assert_eq!((p.src_addr(), p.dst_addr()), (R_B, HOST_A));
    assert_eq!(p.payload()[0], 0, "echo reply");
    assert_eq!(checksum::checksum(p.payload()), 0, "ICMP checksum");
    assert_eq!(r.counters[0].get(Counter::EchoReplies), 1);
}

#[test]
fn a_forwarded_packet_loses_one_ttl_gets_new_macs_and_valid_checksums() {
    let mut r = R::new(false, 1500);
    learn_b(&mut r);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 64, 100);
    assert_eq!(
        r.decide(0, &mut f),
        Verdict::Forward {
            iface: 1,
            ask: None
        }
    );
    assert_eq!(eth(&f), (MAC_B, MAC_RB));
    assert_eq!(ip_ok(&f).ttl(), 63);
    udp_ok(&f);
    assert_eq!(r.counters[1].get(Counter::Forwarded), 1);
    // Through the static route, to its next hop's MAC.
    let mut f = udp(MAC_A, MAC_RA, HOST_A, Ipv4Addr::new(10, 9, 3, 3), 64, 10);
    assert_eq!(
        r.decide(0, &mut f),
        Verdict::Forward {
            iface: 1,
            ask: None
        }
    );
    // A next hop not known yet: held while the router asks.
    let mut r = R::new(false, 1500);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 64, 100);
    assert_eq!(
        r.decide(0, &mut f),
        Verdict::Resolve {
            iface: 1,
            hop: HOST_B
        }
    );
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_arriving_side_quoting_the_packet() {
    let mut r = R::new(false, 1500);
    learn_b(&mut r);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 1, 100);
    let orig = f.clone();
    let Verdict::Reply { iface: 0, len } = r.decide(0, &mut f) else {
        panic!()
    };
    let out = r.out[..len].to_vec();
    let p = ip_ok(&out);
    assert_eq!((p.src_addr(), p.dst_addr()), (R_A, HOST_A));
    let icmp = p.payload();
    assert_eq!((icmp[0], icmp[1]), (11, 0));
    assert_eq!(checksum::checksum(icmp), 0);
    assert_eq!(
        &icmp[8..],
        &orig[IP..IP + 128],
        "the whole 128-byte packet is quoted"
    );
    assert_eq!(r.counters[0].get(Counter::TtlExceeded), 1);
}

#[test]
fn no_route_gets_net_unreachable_and_too_big_with_df_gets_the_next_mtu() {
    let mut r = R::new(false, 1400);
    learn_b(&mut r);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, Ipv4Addr::new(192, 0, 2, 1), 64, 10);
    let Verdict::Reply { iface: 0, len } = r.decide(0, &mut f) else {
        panic!()
    };
    let p = ip_ok(&r.out[..len]);
    assert_eq!((p.payload()[0], p.payload()[1]), (3, 0));
    assert_eq!(r.counters[0].get(Counter::NoRoute), 1);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 64, 1420);
    let Verdict::Reply { iface: 0, len } = r.decide(0, &mut f) else {
        panic!()
    };
    let p = ip_ok(&r.out[..len]);
    assert_eq!((p.payload()[0], p.payload()[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([p.payload()[6], p.payload()[7]]), 1400);
    // An ICMP error about an ICMP error is never sent.
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 1, 10);
    f[IP + 9] = 1;
    f[IP + 20] = 3;
    Ipv4Packet::new_unchecked(&mut f[IP..]).fill_checksum();
    assert_eq!(r.decide(0, &mut f), Verdict::Drop(Counter::TtlExceeded));
}

#[test]
fn nat_masquerades_out_and_translates_the_reply_back_with_valid_checksums() {
    let mut r = R::new(true, 1500);
    learn_b(&mut r);
    r.neigh.learn(0, HOST_A, MAC_A, 0);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 64, 33);
    assert_eq!(
        r.decide(0, &mut f),
        Verdict::Forward {
            iface: 1,
            ask: None
        }
    );
    let p = ip_ok(&f);
    assert_eq!(p.src_addr(), R_B, "the source is the router's B address");
    udp_ok(&f);
    assert_eq!(r.counters[1].get(Counter::NatNew), 1);
    // The reply, to the router's address and the mapped port.
    let mut back = udp(MAC_B, MAC_RB, HOST_B, R_B, 64, 33);
    let sport = u16::from_be_bytes([f[IP + 20], f[IP + 21]]);
    back[IP + 22..IP + 24].copy_from_slice(&sport.to_be_bytes());
    back[IP + 20..IP + 22].copy_from_slice(&53u16.to_be_bytes());
    {
        let ip = Ipv4Packet::new_checked(&back[IP..]).expect("ip");
        let pseudo = ip.pseudo_header(41);
        let mut u = UdpPacket::new_checked(&mut back[IP + 20..]).expect("udp");
        u.fill_checksum(pseudo);
    }
    assert_eq!(
        r.decide(1, &mut back),
        Verdict::Forward {
            iface: 0,
            ask: None
        }
    );
    let p = ip_ok(&back);
    assert_eq!(p.dst_addr(), HOST_A);
    assert_eq!(u16::from_be_bytes([back[IP + 22], back[IP + 23]]), 40000);
    udp_ok(&back);
    assert_eq!(r.counters[1].get(Counter::NatIn), 1);
    // Nothing mapped at that port: for the router itself (an unanswered UDP port).
    let mut stray = udp(MAC_B, MAC_RB, HOST_B, R_B, 64, 8);
    let v = r.decide(1, &mut stray);
    assert!(matches!(v, Verdict::Reply { iface: 1, .. }), "{v:?}");
}

/// An ICMP error of `t`/`code` from `src` (behind `src_mac`) to `dst`, quoting `quoted` (an
/// IP packet) whole.
fn icmp_error_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    (t, code): (u8, u8),
    quoted: &[u8],
) -> Vec<u8> {
    let mut msg = vec![t, code, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(quoted);
    let c = checksum::checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut v = vec![0u8; VNET_HDR_LEN];
    PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .write(&mut v, etherparse::IpNumber::ICMP, &msg)
        .expect("built");
    v
}

#[test]
fn an_icmp_error_from_beyond_the_nat_reaches_the_inside_host_quoting_what_it_sent() {
    let mut r = R::new(true, 1500);
    learn_b(&mut r);
    r.neigh.learn(0, HOST_A, MAC_A, 0);
    // Another inside host holds port 40000, so A's probe leaves under another port.
    let other = Ipv4Addr::new(10, 1, 0, 11);
    let mut f = udp(MAC_A, MAC_RA, other, HOST_B, 64, 8);
    r.decide(0, &mut f);
    let mut probe = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 64, 20);
    let sent = probe.clone();
    assert!(matches!(
        r.decide(0, &mut probe),
        Verdict::Forward { iface: 1, .. }
    ));
    let left = probe[IP..].to_vec();
    assert_ne!(u16::from_be_bytes([left[20], left[21]]), 40000);
    // B answers port unreachable about the packet as it arrived, to the router's address.
    let mut err = icmp_error_frame(MAC_B, MAC_RB, HOST_B, R_B, (3, 3), &left);
    assert_eq!(
        r.decide(1, &mut err),
        Verdict::Forward {
            iface: 0,
            ask: None
        }
    );
    let p = ip_ok(&err);
    assert_eq!((p.src_addr(), p.dst_addr(), p.ttl()), (HOST_B, HOST_A, 63));
    let msg = p.payload();
    assert_eq!(checksum::checksum(msg), 0, "the ICMP checksum holds");
    let quoted = &msg[8..];
    let mut want = sent[IP..].to_vec();
    // What A sent, as B received it: one TTL less (with its header checksum).
    want[8] -= 1;
    Ipv4Packet::new_unchecked(&mut want[..]).fill_checksum();
    assert_eq!(quoted, &want[..], "the quote is A's own packet again");
    assert_eq!(r.counters[1].get(Counter::NatIn), 1);
    assert_eq!(eth(&err), (MAC_A, MAC_RA));

    // An error quoting a port nobody mapped is for the router and goes nowhere.
    let mut stray = left.clone();
    stray[20..22].copy_from_slice(&7u16.to_be_bytes());
    let mut err = icmp_error_frame(MAC_B, MAC_RB, HOST_B, R_B, (11, 0), &stray);
    assert_eq!(r.decide(1, &mut err), Verdict::Drop(Counter::Ignored));
}

#[test]
fn an_inside_hosts_error_leaves_the_nat_without_its_inside_address() {
    let mut r = R::new(true, 1500);
    learn_b(&mut r);
    r.neigh.learn(0, HOST_A, MAC_A, 0);
    let mut f = udp(MAC_A, MAC_RA, HOST_A, HOST_B, 64, 8);
    r.decide(0, &mut f);
    // B's datagram to the mapped port comes in and goes on to A:40000.
    let mut back = udp(MAC_B, MAC_RB, HOST_B, R_B, 64, 8);
    back[IP + 20..IP + 22].copy_from_slice(&53u16.to_be_bytes());
    back[IP + 22..IP + 24].copy_from_slice(&40000u16.to_be_bytes());
    back[IP + 26..IP + 28].copy_from_slice(&[0, 0]);
    assert!(matches!(
        r.decide(1, &mut back),
        Verdict::Forward { iface: 0, .. }
    ));
    // A answers port unreachable, quoting it as it arrived (A's address and port).
    let arrived = back[IP..].to_vec();
    let mut err = icmp_error_frame(MAC_A, MAC_RA, HOST_A, HOST_B, (3, 3), &arrived);
    assert!(matches!(
        r.decide(0, &mut err),
        Verdict::Forward { iface: 1, .. }
    ));
    let p = ip_ok(&err);
    assert_eq!(p.src_addr(), R_B);
    let msg = p.payload();
    assert_eq!(checksum::checksum(msg), 0);
    assert_eq!(&msg[8 + 16..8 + 20], &R_B.octets(), "quoted destination");
    assert_eq!(u16::from_be_bytes([msg[8 + 22], msg[8 + 23]]), 40000);
    assert_eq!(checksum::checksum(&msg[8..28]), 0);
}
