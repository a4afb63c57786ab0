//! The gateway's IPv6 on the link: Neighbor Discovery (RFC 4861) and ICMPv6 echo for its own
//! addresses, Router Advertisements, and where every other IPv6 frame sent to it goes.
//!
//! Pure: [`decide`] takes the gateway's [`Ndp6`] and one complete Ethernet frame and returns a
//! [`V6Verdict`] (an answer to send, smoltcp for DNS on the gateway's addresses, the egress
//! engine, or nothing); [`router_advert`] builds an RA, [`join_advert`] the one an endpoint
//! gets as it joins. The gateway task calls them and owns the timer of unsolicited RAs.
//!
//! Why not smoltcp's IPv6: its Neighbor Advertisements carry neither the router flag nor the
//! override flag. A host that learnt the gateway as its default router from an RA and then
//! gets an NA without R=1 for the same address must drop it from its default router list
//! (RFC 4861 section 7.2.5): the container's default IPv6 route would vanish at its first
//! neighbour probe. smoltcp sends no Router Advertisements either. It still serves DNS on the
//! gateway's IPv6 addresses (its UDP and TCP sockets are address-family agnostic), finding the
//! container's MAC by its own solicitation, whose answer (an NA) [`decide`] hands it.
//!
//! What the RA says: the prefix on-link (L=1) but not autonomous (A=0), so the kernel adds no
//! SLAAC address beside the one netyard configured; a router lifetime that makes the gateway
//! the default IPv6 router (0 on an `--internal` network: no default route, as IPv4's); the
//! link MTU. Its source is the gateway's EUI-64 link-local address, which hosts require of a
//! router and name as the next hop (`default via fe80::...`).

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use netyard_switch::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use netyard_switch::wire::icmpv6::{
    na_flags, prefix_flags, Icmpv6Packet, Icmpv6Repr, NdpOption, NS_NA_LEN, RA_LEN,
};
use netyard_switch::wire::ip::IpProtocol;
use netyard_switch::wire::ipv6::{self, Ipv6Packet, Ipv6Repr, ALL_NODES, IPV6_HDR_LEN};

/// Seconds a Router Advertisement makes the gateway the default router for (RFC 4861's
/// default, 3 x MaxRtrAdvInterval).
pub const ROUTER_LIFETIME: u16 = 1800;
/// Seconds between unsolicited Router Advertisements: well inside the lifetime, so a host
/// that missed some keeps its route.
pub const RA_INTERVAL_SECS: u64 = 200;
/// NDP messages travel with hop limit 255 and hosts drop any other (RFC 4861 section 7.1):
/// proof that the sender is on the link.
const NDP_HOP_LIMIT: u8 = 255;
const ETH_HLEN: usize = 14;

/// The gateway's IPv6 side, as [`decide`] and [`router_advert`] need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ndp6 {
    pub mac: MacAddr,
    /// The gateway's address in the network's prefix.
    pub addr: Ipv6Addr,
    /// More addresses of the gateway's, answered as `addr` is (slirp4netns's DNS at
    /// fd00::3); inside the prefix or not.
    pub extra: Vec<Ipv6Addr>,
    pub prefix: Ipv6Net,
    /// The network's MTU, advertised.
    pub mtu: u32,
    /// Whether the gateway is the endpoints' default router (false on `--internal`).
    pub default_router: bool,
}

impl Ndp6 {
    /// The gateway's link-local address (EUI-64 of its MAC).
    pub fn link_local(&self) -> Ipv6Addr {
        ipv6::link_local_from_mac(self.mac)
    }

    /// Whether `a` is one of the gateway's own addresses.
    pub fn is_own(&self, a: Ipv6Addr) -> bool {
        a == self.addr || a == self.link_local() || self.extra.contains(&a)
    }
}

/// Where an IPv6 frame sent to the gateway goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V6Verdict {
    /// Send this Ethernet frame back (an NA, an RA, an echo reply).
    Reply(Vec<u8>),
    /// smoltcp's: DNS to one of the gateway's addresses, or an NA answering its solicitation.
    Local,
    /// To an address beyond the network: the egress engine's.
    Egress,
    /// Nothing to do (another host's neighbour traffic, multicast listener reports, a bad
    /// checksum, a frame that is not IPv6).
    Ignore,
}

/// What the gateway does with `frame` (Ethernet, final checksums: the gateway cut GSO frames
/// and completed partial checksums before).
pub fn decide(cfg: &Ndp6, frame: &[u8]) -> V6Verdict {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return V6Verdict::Ignore;
    };
    if eth.outer_ethertype() != EtherType::Ipv6 {
        return V6Verdict::Ignore;
    }
    let Some(src_mac) = MacAddr::from_bytes(&frame[6..]) else {
        return V6Verdict::Ignore;
    };
    let dst_mac = MacAddr::from_bytes(frame).unwrap_or_default();
    let Ok(ip) = Ipv6Packet::new_checked(&frame[eth.header_len()..]) else {
        return V6Verdict::Ignore;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if let Some((IpProtocol::Icmpv6, msg)) = ip.upper_layer() {
        if let Some(v) = icmp(cfg, &ip, src_mac, src, dst, msg) {
            return v;
        }
    }
    if dst.is_multicast() {
        return V6Verdict::Ignore;
    }
    if cfg.is_own(dst) {
        return V6Verdict::Local;
    }
    // Unicast to someone else: only what was sent to the gateway's MAC is the gateway's to
    // route, and an address of the network itself is on-link (its owner answers, not us).
    if dst_mac != cfg.mac || ipv6::is_link_local(&dst) || cfg.prefix.contains(&dst) {
        return V6Verdict::Ignore;
    }
    if src.is_unspecified() || ipv6::is_link_local(&src) {
        // A link-local source has no route back from beyond the link (RFC 4291 2.5.6).
        return V6Verdict::Ignore;
    }
    V6Verdict::Egress
}

/// The ICMPv6 messages the gateway answers; `None` for those it treats as any packet (an
/// echo request to another address goes to egress, for instance).
fn icmp(
    cfg: &Ndp6,
    ip: &Ipv6Packet<&[u8]>,
    src_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg: &[u8],
) -> Option<V6Verdict> {
    let Ok(p) = Icmpv6Packet::new_checked(msg) else {
        return Some(V6Verdict::Ignore);
    };
    let Ok(repr) = Icmpv6Repr::parse(&p) else {
        return Some(V6Verdict::Ignore);
    };
    let ndp = matches!(
        repr,
        Icmpv6Repr::RouterSolicit
            | Icmpv6Repr::RouterAdvert { .. }
            | Icmpv6Repr::NeighborSolicit { .. }
            | Icmpv6Repr::NeighborAdvert { .. }
    );
    let mine = cfg.is_own(dst);
    if !ndp && !mine {
        return None;
    }
    if !p.verify_checksum(&src, &dst) {
        return Some(V6Verdict::Ignore);
    }
    if ndp && ip.hop_limit() != NDP_HOP_LIMIT {
        return Some(V6Verdict::Ignore);
    }
    Some(match repr {
        Icmpv6Repr::RouterSolicit => {
            // Unicast to the asker when it has an address (and so answers NS for it), else
            // to all nodes (RFC 4861 section 6.2.6).
            let (to, to_mac) = if src.is_unspecified() {
                (ALL_NODES, ipv6::multicast_mac(ALL_NODES))
            } else {
                (src, src_mac)
            };
            V6Verdict::Reply(router_advert(cfg, to, to_mac))
        }
        Icmpv6Repr::NeighborSolicit { target } if cfg.is_own(target) => {
            // A duplicate address probe (source ::) is answered to all nodes, unsolicited;
            // a resolution, to the asker (RFC 4861 section 7.2.4).
            let (to, to_mac, solicited) = if src.is_unspecified() {
                (ALL_NODES, ipv6::multicast_mac(ALL_NODES), 0)
            } else {
                (src, src_mac, na_flags::SOLICITED)
            };
            let flags = na_flags::ROUTER | na_flags::OVERRIDE | solicited;
            V6Verdict::Reply(neighbor_advert(cfg, target, flags, to, to_mac))
        }
        // Another host's resolution or probe: its owner answers.
        Icmpv6Repr::NeighborSolicit { .. } => V6Verdict::Ignore,
        // Perhaps the answer smoltcp waits for to send a DNS answer.
        Icmpv6Repr::NeighborAdvert { .. } => V6Verdict::Local,
        Icmpv6Repr::EchoRequest { ident, seq_no } => {
            V6Verdict::Reply(echo_reply(cfg, dst, src, src_mac, ident, seq_no, p.data()))
        }
        // Other routers' advertisements, errors and replies to the gateway: nothing to do.
        _ => V6Verdict::Ignore,
    })
}

/// An Ethernet frame holding an IPv6 header and `body` (an ICMPv6 message whose checksum the
/// caller fills once the body is in place).
fn frame_with(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: Ipv6Repr,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + IPV6_HDR_LEN + ip.payload_len];
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[ETH_HLEN..]));
    fill(&mut f[ETH_HLEN + IPV6_HDR_LEN..]);
    f
}

/// A Router Advertisement from the gateway's link-local address to `to` (`to_mac`): the
/// gateway's MAC, the link MTU and the prefix (on-link, not autonomous); router lifetime
/// [`ROUTER_LIFETIME`], or 0 when the gateway is not a default router.
pub fn router_advert(cfg: &Ndp6, to: Ipv6Addr, to_mac: MacAddr) -> Vec<u8> {
    let ra = Icmpv6Repr::RouterAdvert {
        hop_limit: 64,
        flags: 0,
        router_lifetime: if cfg.default_router {
            ROUTER_LIFETIME
        } else {
            0
        },
        reachable_time: 0,
        retrans_time: 0,
    };
    let opts = [
        NdpOption::SourceLinkLayer(cfg.mac),
        NdpOption::Mtu(cfg.mtu),
        NdpOption::PrefixInfo {
            prefix_len: cfg.prefix.prefix_len(),
            flags: prefix_flags::ON_LINK,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: cfg.prefix.network(),
        },
    ];
    let len = RA_LEN + opts.iter().map(NdpOption::buffer_len).sum::<usize>();
    let src = cfg.link_local();
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: to,
        next_header: IpProtocol::Icmpv6,
        payload_len: len,
        hop_limit: NDP_HOP_LIMIT,
    };
    frame_with(cfg.mac, to_mac, ip, |b| {
        let mut at = RA_LEN;
        for o in &opts {
            o.emit(&mut b[at..]);
            at += o.buffer_len();
        }
        ra.emit(&src, &to, &mut Icmpv6Packet::new_unchecked(b));
    })
}

/// The Router Advertisement for an endpoint that just joined the network (its MAC), so that
/// it has its default route at once: left to itself, a host solicits only once duplicate
/// address detection of its link-local address is over, a second or two after its interface
/// came up, and a runtime that looks sooner (a CNI CHECK right after ADD) finds no route.
///
/// To all nodes, as an unsolicited RA is, but at the endpoint's MAC (an IPv6 multicast packet
/// may go to a unicast link-layer address, RFC 6085): the host takes it as any unsolicited
/// RA, and only its port gets it. At ff02::1's MAC it would be written into every container
/// of the network at every attach. One per join, so the rate limits of RFC 4861 section 6.2.4
/// on the link's multicast RAs (MAX_INITIAL_RTR_ADVERTISEMENTS, MIN_DELAY_BETWEEN_RAS) are
/// not at stake: each host sees one RA more, the one radvd-like routers send on a new link.
pub fn join_advert(cfg: &Ndp6, mac: MacAddr) -> Vec<u8> {
    router_advert(cfg, ALL_NODES, mac)
}

/// A Neighbor Advertisement of `target` (one of the gateway's) with its MAC.
fn neighbor_advert(
    cfg: &Ndp6,
    target: Ipv6Addr,
    flags: u8,
    to: Ipv6Addr,
    to_mac: MacAddr,
) -> Vec<u8> {
    let na = Icmpv6Repr::NeighborAdvert { flags, target };
    let opt = NdpOption::TargetLinkLayer(cfg.mac);
    let ip = Ipv6Repr {
        src_addr: target,
        dst_addr: to,
        next_header: IpProtocol::Icmpv6,
        payload_len: NS_NA_LEN + opt.buffer_len(),
        hop_limit: NDP_HOP_LIMIT,
    };
    frame_with(cfg.mac, to_mac, ip, |b| {
        opt.emit(&mut b[NS_NA_LEN..]);
        na.emit(&target, &to, &mut Icmpv6Packet::new_unchecked(b));
    })
}

/// An echo reply from `from` (the address asked) with the request's identifier, sequence
/// number and data.
fn echo_reply(
    cfg: &Ndp6,
    from: Ipv6Addr,
    to: Ipv6Addr,
    to_mac: MacAddr,
    ident: u16,
    seq_no: u16,
    data: &[u8],
) -> Vec<u8> {
    let reply = Icmpv6Repr::EchoReply { ident, seq_no };
    let ip = Ipv6Repr {
        src_addr: from,
        dst_addr: to,
        next_header: IpProtocol::Icmpv6,
        payload_len: reply.buffer_len() + data.len(),
        hop_limit: 64,
    };
    frame_with(cfg.mac, to_mac, ip, |b| {
        b[reply.buffer_len()..].copy_from_slice(data);
        reply.emit(&from, &to, &mut Icmpv6Packet::new_unchecked(b));
    })
}

#[cfg(test)]
mod tests {
    use netyard_switch::wire::icmpv6::{msg_type, NdpOptions};

    use super::*;

    const GW_MAC: MacAddr = MacAddr([0x02, 0x42, 10, 6, 0, 1]);
    const C_MAC: MacAddr = MacAddr([0x02, 0x42, 10, 6, 0, 2]);

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("address")
    }

    fn cfg() -> Ndp6 {
        Ndp6 {
            mac: GW_MAC,
            addr: a("fd00:ab::1"),
            extra: Vec::new(),
            prefix: "fd00:ab::/64".parse().expect("prefix"),
            mtu: 1500,
            default_router: true,
        }
    }

    /// A frame from the container (C_MAC) holding `msg` (an ICMPv6 message, checksum filled
    /// here) from `src` to `dst` with `hop_limit`.
    fn icmp_frame(
        dst_mac: MacAddr,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        repr: Icmpv6Repr,
        body: &[u8],
    ) -> Vec<u8> {
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: repr.buffer_len() + body.len(),
            hop_limit,
        };
        let mut f = frame_with(C_MAC, dst_mac, ip, |b| {
            b[repr.buffer_len()..].copy_from_slice(body);
            repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(b));
        });
        // frame_with writes the container's MAC as source: it was given as src_mac.
        f[6..12].copy_from_slice(&C_MAC.0);
        f
    }

    /// The IPv6 header and ICMPv6 message of a reply, checked.
    fn open(f: &[u8]) -> (MacAddr, Ipv6Repr, Icmpv6Repr, Vec<u8>) {
        let ip = Ipv6Packet::new_checked(&f[ETH_HLEN..]).expect("ipv6");
        let r = Ipv6Repr::parse(&ip).expect("repr");
        let p = Icmpv6Packet::new_checked(ip.payload()).expect("icmpv6");
        assert!(p.verify_checksum(&r.src_addr, &r.dst_addr), "checksum");
        (
            MacAddr::from_bytes(f).expect("dst mac"),
            r,
            Icmpv6Repr::parse(&p).expect("icmp repr"),
            p.data().to_vec(),
        )
    }

    #[test]
    fn router_solicitation_gets_an_advert_with_prefix_mtu_and_lifetime() {
        let c = cfg();
        let ll = a("fe80::42:aff:fe06:2");
        let rs = icmp_frame(
            ipv6::multicast_mac(ipv6::ALL_ROUTERS),
            ll,
            ipv6::ALL_ROUTERS,
            255,
            Icmpv6Repr::RouterSolicit,
            &[],
        );
        let V6Verdict::Reply(f) = decide(&c, &rs) else {
            panic!("an RS is answered");
        };
        let (mac, ip, repr, opts) = open(&f);
        assert_eq!(mac, C_MAC);
        assert_eq!(ip.src_addr, c.link_local());
        assert_eq!(ip.src_addr, a("fe80::42:aff:fe06:1"));
        assert_eq!(ip.dst_addr, ll);
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(
            repr,
            Icmpv6Repr::RouterAdvert {
                hop_limit: 64,
                flags: 0,
                router_lifetime: ROUTER_LIFETIME,
                reachable_time: 0,
                retrans_time: 0
            }
        );
        let opts: Vec<_> = NdpOptions::new(&opts)
            .collect::<Result<_, _>>()
            .expect("opts");
        assert_eq!(
            opts,
            vec![
                NdpOption::SourceLinkLayer(GW_MAC),
                NdpOption::Mtu(1500),
                NdpOption::PrefixInfo {
                    prefix_len: 64,
                    flags: prefix_flags::ON_LINK,
                    valid_lifetime: u32::MAX,
                    preferred_lifetime: u32::MAX,
                    prefix: a("fd00:ab::"),
                }
            ]
        );
        // From :: the answer goes to all nodes.
        let rs = icmp_frame(
            ipv6::multicast_mac(ipv6::ALL_ROUTERS),
            Ipv6Addr::UNSPECIFIED,
            ipv6::ALL_ROUTERS,
            255,
            Icmpv6Repr::RouterSolicit,
            &[],
        );
        let V6Verdict::Reply(f) = decide(&c, &rs) else {
            panic!("an RS from :: is answered");
        };
        let (mac, ip, ..) = open(&f);
        assert_eq!(
            (mac, ip.dst_addr),
            (ipv6::multicast_mac(ALL_NODES), ALL_NODES)
        );
    }

    #[test]
    fn internal_networks_advertise_no_default_router() {
        let c = Ndp6 {
            default_router: false,
            ..cfg()
        };
        let f = router_advert(&c, ALL_NODES, ipv6::multicast_mac(ALL_NODES));
        let (_, _, repr, _) = open(&f);
        assert!(matches!(
            repr,
            Icmpv6Repr::RouterAdvert {
                router_lifetime: 0,
                ..
            }
        ));
    }

    #[test]
    fn a_joining_endpoint_gets_an_all_nodes_advert_at_its_own_mac() {
        let c = cfg();
        let f = join_advert(&c, C_MAC);
        let (mac, ip, ..) = open(&f);
        assert_eq!((mac, ip.dst_addr), (C_MAC, ALL_NODES));
        assert_eq!((ip.src_addr, ip.hop_limit), (c.link_local(), 255));
        // Byte for byte the periodic advertisement but for the destination MAC.
        let all = router_advert(&c, ALL_NODES, ipv6::multicast_mac(ALL_NODES));
        assert_eq!(f[6..], all[6..]);
    }

    #[test]
    fn neighbor_solicitation_for_the_gateway_gets_a_router_advert_flagged_na() {
        let c = cfg_extra();
        let me = a("fd00:ab::2");
        for target in [c.addr, c.link_local(), c.extra[0], c.extra[1]] {
            let ns = icmp_frame(
                ipv6::multicast_mac(ipv6::solicited_node(target)),
                me,
                ipv6::solicited_node(target),
                255,
                Icmpv6Repr::NeighborSolicit { target },
                &[1, 1, 2, 0x42, 10, 6, 0, 2],
            );
            let V6Verdict::Reply(f) = decide(&c, &ns) else {
                panic!("an NS for {target} is answered");
            };
            let (mac, ip, repr, opts) = open(&f);
            assert_eq!((mac, ip.src_addr, ip.dst_addr), (C_MAC, target, me));
            assert_eq!(
                repr,
                Icmpv6Repr::NeighborAdvert {
                    flags: na_flags::ROUTER | na_flags::SOLICITED | na_flags::OVERRIDE,
                    target
                }
            );
            assert_eq!(opts, vec![2, 1, 2, 0x42, 10, 6, 0, 1]);
        }
        // A probe for the gateway's address (DAD) is answered to all nodes, not solicited.
        let ns = icmp_frame(
            ipv6::multicast_mac(ipv6::solicited_node(c.addr)),
            Ipv6Addr::UNSPECIFIED,
            ipv6::solicited_node(c.addr),
            255,
            Icmpv6Repr::NeighborSolicit { target: c.addr },
            &[],
        );
        let V6Verdict::Reply(f) = decide(&c, &ns) else {
            panic!("a DAD probe for the gateway is answered");
        };
        let (_, ip, repr, _) = open(&f);
        assert_eq!(ip.dst_addr, ALL_NODES);
        assert!(
            matches!(repr, Icmpv6Repr::NeighborAdvert { flags, .. } if flags & na_flags::SOLICITED == 0)
        );
    }

    #[test]
    fn other_hosts_neighbor_traffic_and_forged_ndp_are_left_alone() {
        let c = cfg();
        let other = a("fd00:ab::3");
        let ns = icmp_frame(
            ipv6::multicast_mac(ipv6::solicited_node(other)),
            a("fd00:ab::2"),
            ipv6::solicited_node(other),
            255,
            Icmpv6Repr::NeighborSolicit { target: other },
            &[],
        );
        assert_eq!(decide(&c, &ns), V6Verdict::Ignore);
        // Hop limit below 255: not from the link.
        let mut rs = icmp_frame(
            ipv6::multicast_mac(ipv6::ALL_ROUTERS),
            a("fe80::1"),
            ipv6::ALL_ROUTERS,
            64,
            Icmpv6Repr::RouterSolicit,
            &[],
        );
        assert_eq!(decide(&c, &rs), V6Verdict::Ignore);
        // A bad checksum.
        rs[ETH_HLEN + 7] = 255;
        let last = rs.len() - 1;
        rs[last] ^= 0xff;
        assert_eq!(decide(&c, &rs), V6Verdict::Ignore);
        // An NA goes to smoltcp (it may be waiting for it).
        let na = icmp_frame(
            GW_MAC,
            a("fd00:ab::2"),
            c.addr,
            255,
            Icmpv6Repr::NeighborAdvert {
                flags: na_flags::SOLICITED,
                target: a("fd00:ab::2"),
            },
            &[],
        );
        assert_eq!(decide(&c, &na), V6Verdict::Local);
    }

    #[test]
    fn echo_to_the_gateway_is_answered_with_the_data() {
        let c = cfg_extra();
        for to in [c.addr, c.link_local(), c.extra[0], c.extra[1]] {
            let req = icmp_frame(
                GW_MAC,
                a("fd00:ab::2"),
                to,
                64,
                Icmpv6Repr::EchoRequest {
                    ident: 7,
                    seq_no: 9,
                },
                b"ping data",
            );
            let V6Verdict::Reply(f) = decide(&c, &req) else {
                panic!("echo to {to} is answered");
            };
            let (mac, ip, repr, data) = open(&f);
            assert_eq!(
                (mac, ip.src_addr, ip.dst_addr),
                (C_MAC, to, a("fd00:ab::2"))
            );
            assert_eq!(
                repr,
                Icmpv6Repr::EchoReply {
                    ident: 7,
                    seq_no: 9
                }
            );
            assert_eq!(data, b"ping data");
            assert_eq!(f[ETH_HLEN + IPV6_HDR_LEN], msg_type::ECHO_REPLY);
        }
    }

    /// The gateway with two extra addresses, one inside the prefix and one outside it.
    fn cfg_extra() -> Ndp6 {
        Ndp6 {
            extra: vec![a("fd00:ab::3"), a("2001:db8:53::1")],
            ..cfg()
        }
    }

    #[test]
    fn an_extra_address_outside_the_prefix_is_the_gateways_not_egress() {
        let echo = icmp_frame(
            GW_MAC,
            a("fd00:ab::2"),
            a("2001:db8:53::1"),
            64,
            Icmpv6Repr::EchoRequest {
                ident: 3,
                seq_no: 4,
            },
            b"x",
        );
        assert_eq!(decide(&cfg(), &echo), V6Verdict::Egress);
        assert!(matches!(decide(&cfg_extra(), &echo), V6Verdict::Reply(_)));
    }

    #[test]
    fn unicast_beyond_the_network_is_egress_and_the_rest_is_not() {
        let c = cfg();
        let echo = |dst_mac, src: &str, dst: &str| {
            icmp_frame(
                dst_mac,
                a(src),
                a(dst),
                64,
                Icmpv6Repr::EchoRequest {
                    ident: 1,
                    seq_no: 1,
                },
                b"x",
            )
        };
        assert_eq!(
            decide(&c, &echo(GW_MAC, "fd00:ab::2", "2001:db8::1")),
            V6Verdict::Egress
        );
        // Not to the gateway's MAC, on-link, link-local source or destination, multicast.
        assert_eq!(
            decide(&c, &echo(C_MAC, "fd00:ab::2", "2001:db8::1")),
            V6Verdict::Ignore
        );
        assert_eq!(
            decide(&c, &echo(GW_MAC, "fd00:ab::2", "fd00:ab::3")),
            V6Verdict::Ignore
        );
        assert_eq!(
            decide(&c, &echo(GW_MAC, "fe80::2", "2001:db8::1")),
            V6Verdict::Ignore
        );
        assert_eq!(
            decide(&c, &echo(GW_MAC, "fd00:ab::2", "fe80::9")),
            V6Verdict::Ignore
        );
        assert_eq!(
            decide(&c, &echo(GW_MAC, "fd00:ab::2", "ff02::16")),
            V6Verdict::Ignore
        );
        // A UDP datagram to the gateway's address (DNS) is smoltcp's.
        let ip = Ipv6Repr {
            src_addr: a("fd00:ab::2"),
            dst_addr: c.addr,
            next_header: IpProtocol::Udp,
            payload_len: 8,
            hop_limit: 64,
        };
        let udp = frame_with(C_MAC, GW_MAC, ip, |b| {
            b.copy_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0])
        });
        assert_eq!(decide(&c, &udp), V6Verdict::Local);
        // IPv4 is not this module's.
        let mut v4 = udp.clone();
        v4[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(decide(&c, &v4), V6Verdict::Ignore);
    }
}
