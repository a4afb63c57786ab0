//! Port security: what an endpoint's port accepts as the source of its frames.
//!
//! A port with a [`PortSecurity`] policy only forwards frames that come from the endpoint
//! itself: its MAC as the Ethernet source, and one of its addresses as the IPv4, ARP or IPv6
//! source. Without it, one container could take its neighbour's MAC (the switch would move the
//! MAC to it and the neighbour's traffic with it), answer ARP for the neighbour's address, or
//! spend the neighbour's egress flow quota with forged source addresses. Ports that are not
//! endpoints (the gateway, VXLAN tunnels) and endpoints attached as trusted (a container that
//! routes or bridges) have no policy.
//!
//! [`check`] is a pure function of the policy and the frame's bytes; the bridge calls it
//! before learning the source MAC, so a forged frame never moves a MAC either. It reads fixed
//! offsets, allocates nothing and cannot panic on any bytes. What it checks:
//!
//! | frame | passes when | else |
//! |---|---|---|
//! | any | Ethernet source == the policy's MAC | `spoofed_mac` |
//! | 802.1Q / 802.1ad tagged | never | `vlan_tagged` |
//! | IPv4 | source in `ipv4` (so 0.0.0.0, DHCP's, is dropped: netyard has no DHCP) | `spoofed_ipv4` |
//! | ARP | IPv4-over-Ethernet, sender MAC == the MAC, sender IP in `ipv4` or 0.0.0.0 (a probe) | `spoofed_arp` |
//! | IPv6 | source in `ipv6`, link-local (fe80::/10) or `::` (duplicate address detection) | `spoofed_ipv6` |
//! | NDP (RS, RA, NS, NA) | link-layer address options == the MAC; an NA's target in `ipv6` or link-local | `spoofed_ndp` |
//! | anything else | the MAC check alone | |
//!
//! Tagged frames are dropped rather than looked into: the switch is VLAN-unaware, an endpoint
//! that tags its frames is a bridge or a router (attach it as trusted), and checking behind
//! any number of stacked tags would be one more parser for no endpoint's benefit.
//!
//! Link-local IPv6 sources pass unchecked because the endpoint picks its own (EUI-64 or
//! stable-privacy), so the daemon cannot know them; a forged link-local source or NA target can
//! still poison a neighbour's link-local entry, never a netyard-assigned address's.
//!
//! A frame too short to show the field a rule reads is dropped under that rule's reason: it
//! cannot be shown to be the endpoint's.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::counters::DropReason;
use crate::wire::ethernet::MacAddr;

/// The addresses one endpoint's port may send from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSecurity {
    /// The endpoint's MAC: the only Ethernet (and ARP/NDP link-layer) source accepted.
    pub mac: MacAddr,
    /// IPv4 sources accepted (also ARP sender addresses).
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 sources accepted besides link-local ones and `::` (also NA targets).
    pub ipv6: Vec<Ipv6Addr>,
}

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
/// 802.1Q, 802.1ad (QinQ) and the older QinQ TPID some switches use.
const TPIDS: [[u8; 2]; 3] = [[0x81, 0x00], [0x88, 0xa8], [0x91, 0x00]];

const IPV6_HLEN: usize = 40;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_DEST_OPTS: u8 = 60;
const NEXT_ICMPV6: u8 = 58;
/// Extension headers walked before giving up on finding an NDP message. Linux accepts a
/// handful before ICMPv6; more is no legitimate endpoint's traffic.
const MAX_EXT_HEADERS: usize = 8;

const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_SOURCE_LLADDR: u8 = 1;
const ND_OPT_TARGET_LLADDR: u8 = 2;

/// Whether `eth` (an Ethernet frame without the virtio-net header, at least 14 bytes for a
/// verdict other than `spoofed_mac`) may leave a port under `policy`.
pub fn check(policy: &PortSecurity, eth: &[u8]) -> Result<(), DropReason> {
    if eth.get(6..12) != Some(&policy.mac.0[..]) {
        return Err(DropReason::SpoofedMac);
    }
    let Some(ethertype) = eth.get(12..14) else {
        // Shorter than an Ethernet header: the bridge drops it as a runt before asking.
        return Err(DropReason::Runt);
    };
    let l3 = &eth[ETH_HLEN..];
    match [ethertype[0], ethertype[1]] {
        ETHERTYPE_IPV4 => check_ipv4(policy, l3),
        ETHERTYPE_ARP => check_arp(policy, l3),
        ETHERTYPE_IPV6 => check_ipv6(policy, l3),
        t if TPIDS.contains(&t) => Err(DropReason::VlanTagged),
        _ => Ok(()),
    }
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(o))
}

fn check_ipv4(policy: &PortSecurity, ip: &[u8]) -> Result<(), DropReason> {
    // The source sits at offset 12 whatever the header length and options.
    match ipv4_at(ip, 12) {
        Some(src) if policy.ipv4.contains(&src) => Ok(()),
        _ => Err(DropReason::SpoofedIpv4),
    }
}

fn check_arp(policy: &PortSecurity, arp: &[u8]) -> Result<(), DropReason> {
    // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4: the only ARP an endpoint speaks, and
    // the only layout whose sender fields are where we read them.
    let Some(fixed) = arp.get(0..6) else {
        return Err(DropReason::SpoofedArp);
    };
    if fixed != [0, 1, 0x08, 0x00, 6, 4] {
        return Err(DropReason::SpoofedArp);
    }
    let sha = arp.get(8..14);
    let spa = ipv4_at(arp, 14);
    match (sha, spa) {
        (Some(sha), Some(spa))
            if sha == policy.mac.0 && (spa.is_unspecified() || policy.ipv4.contains(&spa)) =>
        {
            Ok(())
        }
        _ => Err(DropReason::SpoofedArp),
    }
}

/// fe80::/10.
fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn check_ipv6(policy: &PortSecurity, ip: &[u8]) -> Result<(), DropReason> {
    let Some(src) = ipv6_at(ip, 8) else {
        return Err(DropReason::SpoofedIpv6);
    };
    if !(src.is_unspecified() || is_link_local(&src) || policy.ipv6.contains(&src)) {
        return Err(DropReason::SpoofedIpv6);
    }
    match ndp_message(ip) {
        Some(icmp) => check_ndp(policy, icmp),
        None => Ok(()),
    }
}

/// The ICMPv6 message of an IPv6 packet, behind at most [`MAX_EXT_HEADERS`] hop-by-hop,
/// routing or destination options headers; `None` for anything else (a fragment included:
/// receivers drop fragmented NDP, RFC 6980). Bounded by the payload length and the bytes
/// present: a receiver drops a truncated packet, so what it cannot see is no threat.
fn ndp_message(ip: &[u8]) -> Option<&[u8]> {
    let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let end = ip.len().min(IPV6_HLEN + payload_len);
    let mut next = *ip.get(6)?;
    let mut at = IPV6_HLEN;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXT_ICMPV6 => return ip.get(at..end),
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            _ => return None,
        }
    }
    None
}

fn check_ndp(policy: &PortSecurity, icmp: &[u8]) -> Result<(), DropReason> {
    let Some(&icmp_type) = icmp.first() else {
        return Ok(());
    };
    // Where each message's options start (RFC 4861 section 4).
    let options_at = match icmp_type {
        ND_ROUTER_SOLICIT => 8,
        ND_ROUTER_ADVERT => 16,
        ND_NEIGHBOR_SOLICIT => 24,
        ND_NEIGHBOR_ADVERT => {
            // The NA's target is the address whose link-layer address it announces: an ARP
            // reply's sender address.
            match ipv6_at(icmp, 8) {
                Some(t) if is_link_local(&t) || policy.ipv6.contains(&t) => 24,
                Some(_) => return Err(DropReason::SpoofedNdp),
                None => return Ok(()), // truncated: receivers drop it
            }
        }
        _ => return Ok(()),
    };
    let mut opts = icmp.get(options_at..).unwrap_or_default();
    while let [kind, len, ..] = opts {
        let n = usize::from(*len) * 8;
        // A zero-length option makes receivers discard the message (RFC 4861 4.6).
        let Some(opt) = opts.get(..n).filter(|_| n > 0) else {
            return Ok(());
        };
        if matches!(*kind, ND_OPT_SOURCE_LLADDR | ND_OPT_TARGET_LLADDR)
            && opt.get(2..8) != Some(&policy.mac.0[..])
        {
            return Err(DropReason::SpoofedNdp);
        }
        opts = &opts[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);
    const NEIGHBOUR: [u8; 6] = [2, 0x42, 10, 0, 0, 3];
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x42, 0xaff, 0xfe00, 2);

    fn policy() -> PortSecurity {
        PortSecurity {
            mac: MAC,
            ipv4: vec![IP],
            ipv6: vec![IP6],
        }
    }

    fn eth(src: [u8; 6], ethertype: [u8; 2], l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(src: Ipv4Addr) -> Vec<u8> {
        let mut ip = vec![0u8; 28];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&[10, 0, 0, 1]);
        ip
    }

    fn arp(sha: [u8; 6], spa: Ipv4Addr) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&sha);
        a.extend_from_slice(&spa.octets());
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&[10, 0, 0, 1]);
        a
    }

    fn ipv6(src: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; IPV6_HLEN];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        ip[6] = next;
        ip[7] = 255;
        ip[8..24].copy_from_slice(&src.octets());
        ip[24..40].copy_from_slice(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets());
        ip.extend_from_slice(payload);
        ip
    }

    /// A neighbour advertisement for `target` with a target link-layer address option.
    fn na(target: Ipv6Addr, lladdr: [u8; 6]) -> Vec<u8> {
        let mut m = vec![ND_NEIGHBOR_ADVERT, 0, 0, 0, 0x20, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(&[ND_OPT_TARGET_LLADDR, 1]);
        m.extend_from_slice(&lladdr);
        m
    }

    /// A neighbour solicitation for `target` with a source link-layer address option.
    fn ns(target: Ipv6Addr, lladdr: [u8; 6]) -> Vec<u8> {
        let mut m = vec![ND_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(&[ND_OPT_SOURCE_LLADDR, 1]);
        m.extend_from_slice(&lladdr);
        m
    }

    #[test]
    fn the_endpoints_own_frames_pass() {
        let p = policy();
        for f in [
            eth(MAC.0, ETHERTYPE_IPV4, &ipv4(IP)),
            eth(MAC.0, ETHERTYPE_ARP, &arp(MAC.0, IP)),
            eth(MAC.0, ETHERTYPE_IPV6, &ipv6(IP6, 17, &[0; 8])),
            eth(MAC.0, ETHERTYPE_IPV6, &ipv6(LL, 17, &[0; 8])),
            eth(MAC.0, [0x88, 0xb5], &[0x5a; 46]),
        ] {
            assert_eq!(check(&p, &f), Ok(()), "{f:02x?}");
        }
    }

    #[test]
    fn a_frame_from_another_mac_is_spoofed_mac_whatever_it_carries() {
        let p = policy();
        assert_eq!(
            check(&p, &eth(NEIGHBOUR, ETHERTYPE_IPV4, &ipv4(IP))),
            Err(DropReason::SpoofedMac)
        );
        assert_eq!(
            check(&p, &eth(NEIGHBOUR, [0x88, 0xb5], &[])),
            Err(DropReason::SpoofedMac)
        );
    }

    #[test]
    fn an_ipv4_packet_from_another_address_is_spoofed_ipv4_and_so_is_dhcps_zero_source() {
        let p = policy();
        for src in [Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::UNSPECIFIED] {
            assert_eq!(
                check(&p, &eth(MAC.0, ETHERTYPE_IPV4, &ipv4(src))),
                Err(DropReason::SpoofedIpv4),
                "{src}"
            );
        }
        // Too short to show its source: it cannot be shown to be the endpoint's.
        assert_eq!(
            check(&p, &eth(MAC.0, ETHERTYPE_IPV4, &ipv4(IP)[..15])),
            Err(DropReason::SpoofedIpv4)
        );
    }

    #[test]
    fn arp_must_name_the_endpoint_as_sender_and_probes_from_zero_pass() {
        let p = policy();
        let probe = arp(MAC.0, Ipv4Addr::UNSPECIFIED);
        assert_eq!(check(&p, &eth(MAC.0, ETHERTYPE_ARP, &probe)), Ok(()));
        let other_ip = arp(MAC.0, Ipv4Addr::new(10, 0, 0, 3));
        let other_mac = arp(NEIGHBOUR, IP);
        let mut not_ipv4 = arp(MAC.0, IP);
        not_ipv4[5] = 16;
        for (what, a) in [
            ("a neighbour's address", other_ip),
            ("a neighbour's MAC", other_mac),
            ("not IPv4 over Ethernet", not_ipv4),
            ("cut short", arp(MAC.0, IP)[..17].to_vec()),
        ] {
            assert_eq!(
                check(&p, &eth(MAC.0, ETHERTYPE_ARP, &a)),
                Err(DropReason::SpoofedArp),
                "{what}"
            );
        }
    }

    #[test]
    fn ipv6_from_another_address_is_spoofed_ipv6_but_link_local_and_dad_pass() {
        let p = policy();
        let neighbour6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
        assert_eq!(
            check(
                &p,
                &eth(MAC.0, ETHERTYPE_IPV6, &ipv6(neighbour6, 17, &[0; 8]))
            ),
            Err(DropReason::SpoofedIpv6)
        );
        // Duplicate address detection: an NS from :: for the address being tried.
        let dad = ipv6(Ipv6Addr::UNSPECIFIED, NEXT_ICMPV6, &ns(IP6, MAC.0)[..24]);
        assert_eq!(check(&p, &eth(MAC.0, ETHERTYPE_IPV6, &dad)), Ok(()));
        assert_eq!(
            check(&p, &eth(MAC.0, ETHERTYPE_IPV6, &ipv6(IP6, 17, &[])[..20])),
            Err(DropReason::SpoofedIpv6)
        );
    }

    #[test]
    fn ndp_announcing_a_neighbours_address_or_another_mac_is_spoofed_ndp() {
        let p = policy();
        let frame = |src: Ipv6Addr, msg: Vec<u8>| eth(MAC.0, ETHERTYPE_IPV6, &ipv6(src, 58, &msg));
        let neighbour6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
        assert_eq!(check(&p, &frame(LL, na(IP6, MAC.0))), Ok(()));
        assert_eq!(check(&p, &frame(LL, na(LL, MAC.0))), Ok(()));
        assert_eq!(check(&p, &frame(LL, ns(neighbour6, MAC.0))), Ok(()));
        assert_eq!(
            check(&p, &frame(LL, na(neighbour6, MAC.0))),
            Err(DropReason::SpoofedNdp),
            "an NA for the neighbour's address"
        );
        assert_eq!(
            check(&p, &frame(LL, na(IP6, NEIGHBOUR))),
            Err(DropReason::SpoofedNdp),
            "an NA naming another MAC"
        );
        assert_eq!(
            check(&p, &frame(IP6, ns(neighbour6, NEIGHBOUR))),
            Err(DropReason::SpoofedNdp),
            "an NS naming another MAC"
        );
        // Behind a destination options header, the same.
        let mut behind = vec![58, 0, 1, 4, 0, 0, 0, 0];
        behind.extend_from_slice(&na(neighbour6, MAC.0));
        assert_eq!(
            check(&p, &eth(MAC.0, ETHERTYPE_IPV6, &ipv6(LL, 60, &behind))),
            Err(DropReason::SpoofedNdp)
        );
    }

    #[test]
    fn tagged_frames_are_dropped_as_vlan_tagged() {
        let p = policy();
        for tpid in TPIDS {
            let mut inner = vec![0, 10, 0x08, 0x00];
            inner.extend_from_slice(&ipv4(IP));
            assert_eq!(
                check(&p, &eth(MAC.0, tpid, &inner)),
                Err(DropReason::VlanTagged)
            );
        }
    }

    #[test]
    fn an_empty_policy_lets_only_the_mac_through() {
        let p = PortSecurity {
            mac: MAC,
            ..Default::default()
        };
        assert_eq!(
            check(&p, &eth(MAC.0, ETHERTYPE_IPV4, &ipv4(IP))),
            Err(DropReason::SpoofedIpv4)
        );
        assert_eq!(check(&p, &eth(MAC.0, [0x88, 0xb5], &[])), Ok(()));
    }

    #[test]
    fn never_panics_on_any_prefix_or_bit_flip() {
        let p = policy();
        let frames = [
            eth(MAC.0, ETHERTYPE_IPV4, &ipv4(IP)),
            eth(MAC.0, ETHERTYPE_ARP, &arp(MAC.0, IP)),
            eth(MAC.0, ETHERTYPE_IPV6, &ipv6(LL, 58, &na(IP6, MAC.0))),
            eth(MAC.0, ETHERTYPE_IPV6, &ipv6(LL, 0, &[58, 255, 0, 0])),
        ];
        for f in &frames {
            for n in 0..=f.len() {
                let _ = check(&p, &f[..n]);
            }
            for i in 0..f.len() {
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[i] ^= 1 << bit;
                    let _ = check(&p, &g);
                }
            }
        }
    }
}
