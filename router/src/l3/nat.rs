//! Masquerading's table (`router create --nat NETWORK`): what leaves through a NAT interface
//! gets the interface's address as its source and, when the inside port (or ICMP echo id) is
//! taken by another inside host, another port; a reply to that address and port is
//! translated back. Pure: time is an argument.
//!
//! Mapping is endpoint-independent (one outside port per inside address and port, whatever
//! the destination) and so is filtering: a packet from anywhere to a mapped port reaches the
//! inside host, as a typical home router's "full cone" does. Ports are kept when free
//! (port preservation), else taken from [`FIRST_PORT`] up. There is no TCP state tracking:
//! a mapping lives [`TCP_IDLE_MS`] after its last packet.
//!
//! ICMP errors are translated with their flow ([`translate_icmp_error`]), as a home router's
//! conntrack does for RELATED packets: a time exceeded or unreachable coming back for a
//! masqueraded packet quotes that packet as it left (the router's address and the outside
//! port), so the quoted header is rewritten back to the inside host's address and port
//! before the error goes to it. Without that the inside host's kernel could not match the
//! error to its socket: traceroute and tracepath from behind the NAT would see only stars
//! beyond the router, and a connect to an unreachable port would hang instead of failing.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use netyard_switch::wire::checksum as csum;

/// The protocols NAT translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP echo: the identifier plays the port.
    Icmp,
}

pub const TCP_IDLE_MS: u64 = 3_600_000;
pub const UDP_IDLE_MS: u64 = 60_000;
pub const ICMP_IDLE_MS: u64 = 30_000;
/// Most mappings of one router.
pub const MAX_ENTRIES: usize = 16_384;
/// Outside ports are taken from here up when the inside one is in use.
pub const FIRST_PORT: u16 = 1024;

impl Proto {
    fn idle_ms(self) -> u64 {
        match self {
            Proto::Tcp => TCP_IDLE_MS,
            Proto::Udp => UDP_IDLE_MS,
            Proto::Icmp => ICMP_IDLE_MS,
        }
    }
}

/// Why a packet could not be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    /// No free outside port, or the table is full.
    Full,
    /// A packet to the outside address matches no mapping.
    NoMapping,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    outside_port: u16,
    last: u64,
}

#[derive(Debug, Default)]
pub struct Nat {
    /// (interface, protocol, inside address, inside port) -> the mapping.
    out: HashMap<(usize, Proto, Ipv4Addr, u16), Entry>,
    /// (interface, protocol, outside port) -> (inside address, inside port).
    back: HashMap<(usize, Proto, u16), (Ipv4Addr, u16)>,
    cursor: u16,
}

impl Nat {
    /// The outside port for a packet leaving through `iface` from `ip:port`; `.1` is true
    /// when the mapping is new.
    pub fn outbound(
        &mut self,
        iface: usize,
        proto: Proto,
        ip: Ipv4Addr,
        port: u16,
        now: u64,
    ) -> Result<(u16, bool), NatError> {
        if let Some(e) = self.out.get_mut(&(iface, proto, ip, port)) {
            if now.saturating_sub(e.last) < proto.idle_ms() {
                e.last = now;
                return Ok((e.outside_port, false));
            }
            // Expired but not swept yet: let it go and map afresh.
            let old = e.outside_port;
            self.out.remove(&(iface, proto, ip, port));
            self.back.remove(&(iface, proto, old));
        }
        if self.out.len() >= MAX_ENTRIES {
            self.expire(now);
            if self.out.len() >= MAX_ENTRIES {
                return Err(NatError::Full);
            }
        }
        let free = |p: u16, back: &HashMap<(usize, Proto, u16), (Ipv4Addr, u16)>| {
            !back.contains_key(&(iface, proto, p))
        };
        let chosen = if port != 0 && free(port, &self.back) {
            port
        } else {
            let span = u32::from(u16::MAX - FIRST_PORT) + 1;
            let mut found = None;
            for _ in 0..span {
                self.cursor = if self.cursor < FIRST_PORT || self.cursor == u16::MAX {
                    FIRST_PORT
                } else {
                    self.cursor + 1
                };
                if free(self.cursor, &self.back) {
                    found = Some(self.cursor);
                    break;
                }
            }
            found.ok_or(NatError::Full)?
        };
        self.out.insert(
            (iface, proto, ip, port),
            Entry {
                outside_port: chosen,
                last: now,
            },
        );
        self.back.insert((iface, proto, chosen), (ip, port));
        Ok((chosen, true))
    }

    /// The inside address and port of a packet that arrived on `iface` for its address at
    /// `port`.
    pub fn inbound(
        &mut self,
        iface: usize,
        proto: Proto,
        port: u16,
        now: u64,
    ) -> Result<(Ipv4Addr, u16), NatError> {
        let (ip, inside) = *self
            .back
            .get(&(iface, proto, port))
            .ok_or(NatError::NoMapping)?;
        match self.out.get_mut(&(iface, proto, ip, inside)) {
            Some(e) if now.saturating_sub(e.last) < proto.idle_ms() => {
                e.last = now;
                Ok((ip, inside))
            }
            _ => Err(NatError::NoMapping),
        }
    }

    /// The outside port of an existing, live mapping of `ip:port` on `iface` (refreshed); None
    /// when there is none. Never creates one.
    pub fn mapped(
        &mut self,
        iface: usize,
        proto: Proto,
        ip: Ipv4Addr,
        port: u16,
        now: u64,
    ) -> Option<u16> {
        match self.out.get_mut(&(iface, proto, ip, port)) {
            Some(e) if now.saturating_sub(e.last) < proto.idle_ms() => {
                e.last = now;
                Some(e.outside_port)
            }
            _ => None,
        }
    }

    /// Forgets mappings idle past their protocol's timeout.
    pub fn expire(&mut self, now: u64) {
        let back = &mut self.back;
        self.out.retain(|(iface, proto, _, _), e| {
            let keep = now.saturating_sub(e.last) < proto.idle_ms();
            if !keep {
                back.remove(&(*iface, *proto, e.outside_port));
            }
            keep
        });
    }

    /// Live mappings.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// ICMP types whose message quotes the packet it is about (RFC 792): destination
/// unreachable, time exceeded, parameter problem.
pub fn is_error(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 11 | 12)
}

/// Which way an ICMP error crosses the NAT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorWay {
    /// Arriving on the NAT interface for its address `outside`: the quoted packet left with
    /// `outside` and an outside port as its source.
    In { outside: Ipv4Addr },
    /// Leaving through the NAT interface from inside host `inside` (about a packet that came
    /// in translated): the quoted packet has `inside` and the inside port as its destination,
    /// which become the interface's address `outside` and the outside port.
    Out { inside: Ipv4Addr, outside: Ipv4Addr },
}

/// Offset of the quoted IP header in an ICMP error message.
const QUOTE: usize = 8;
/// Offset of an ICMP message's checksum.
const ICMP_CSUM: usize = 2;

/// Translates the packet an ICMP error quotes, in place. `msg` is the ICMP message (from its
/// type byte to the end of the IP payload), which must quote an IPv4 header and at least 8
/// bytes of what followed (RFC 792's minimum: the ports, or an echo's identifier). Returns
/// the host the error is for after translation: the inside host for [`ErrorWay::In`] (the
/// caller rewrites the outer destination to it), the outside address for
/// [`ErrorWay::Out`].
///
/// Every checksum stays as right as it was, updated incrementally (RFC 1624): the quoted IP
/// header's, the quoted TCP/UDP checksum when the quote reaches it (over the pseudo-header,
/// so the address change too; a UDP zero checksum stays zero), a quoted echo's, and the ICMP
/// message's own over all of them. The quoted fields all sit at even offsets of the message
/// (8 bytes of ICMP header, an IP header of 4-byte words), which the incremental update
/// needs.
pub fn translate_icmp_error(
    nat: &mut Nat,
    iface: usize,
    way: ErrorWay,
    msg: &mut [u8],
    now: u64,
) -> Result<Ipv4Addr, NatError> {
    let q = QUOTE;
    if msg.len() < q + 20 || !is_error(msg[0]) || msg[q] >> 4 != 4 {
        return Err(NatError::NoMapping);
    }
    let ihl = usize::from(msg[q] & 0x0f) * 4;
    let l4 = q + ihl;
    if ihl < 20 || msg.len() < l4 + 8 {
        return Err(NatError::NoMapping);
    }
    let addr_at = |src: bool| if src { q + 12 } else { q + 16 };
    let quoted = |at: usize| Ipv4Addr::new(msg[at], msg[at + 1], msg[at + 2], msg[at + 3]);
    // The quoted packet's protocol and where its translated port (or echo id) and checksum
    // are; for In the quoted packet's source, for Out its destination.
    let src = matches!(way, ErrorWay::In { .. });
    let (proto, port_at, l4_csum) = match msg[q + 9] {
        6 => (
            Proto::Tcp,
            if src { l4 } else { l4 + 2 },
            Some(l4 + 16).filter(|c| msg.len() >= c + 2),
        ),
        17 => (
            Proto::Udp,
            if src { l4 } else { l4 + 2 },
            Some(l4 + 6).filter(|c| msg[*c] != 0 || msg[c + 1] != 0),
        ),
        // An echo request left (In), an echo reply came in translated (Out).
        1 if msg[l4] == if src { 8 } else { 0 } => (Proto::Icmp, l4 + 4, Some(l4 + 2)),
        _ => return Err(NatError::NoMapping),
    };
    let port = u16::from_be_bytes([msg[port_at], msg[port_at + 1]]);
    let (addr, new_addr, new_port) = match way {
        ErrorWay::In { outside } => {
            if quoted(addr_at(true)) != outside {
                return Err(NatError::NoMapping);
            }
            let (ip, inside) = nat.inbound(iface, proto, port, now)?;
            (addr_at(true), ip, inside)
        }
        ErrorWay::Out { inside, outside } => {
            if quoted(addr_at(false)) != inside {
                return Err(NatError::NoMapping);
            }
            let p = nat
                .mapped(iface, proto, inside, port, now)
                .ok_or(NatError::NoMapping)?;
            (addr_at(false), outside, p)
        }
    };
    let pseudo = proto != Proto::Icmp;
    // The quoted address: the quoted IP header's checksum and, over the pseudo-header, the
    // quoted TCP/UDP checksum.
    let mut fix = fixes(q + 10, pseudo.then_some(l4_csum).flatten());
    put(msg, addr, &new_addr.octets(), &mut fix);
    // The quoted port or echo id: the quoted L4 checksum.
    let mut fix = fixes(usize::MAX, l4_csum);
    put(msg, port_at, &new_port.to_be_bytes(), &mut fix);
    Ok(match way {
        ErrorWay::In { .. } => new_addr,
        ErrorWay::Out { outside, .. } => outside,
    })
}

/// The checksums a change must fix besides the ICMP message's own: up to two offsets of the
/// message (`usize::MAX` for none). A fixed array: no allocation on the path.
fn fixes(a: usize, b: Option<usize>) -> [usize; 2] {
    [a, b.unwrap_or(usize::MAX)]
}

/// Writes `new` at `at` in the ICMP message, fixing the checksums at `fix` (each then
/// itself a changed field of the message) and the message's own.
fn put(msg: &mut [u8], at: usize, new: &[u8], fix: &mut [usize; 2]) {
    let old: [u8; 4] = {
        let mut o = [0u8; 4];
        o[..new.len()].copy_from_slice(&msg[at..at + new.len()]);
        o
    };
    let old = &old[..new.len()];
    msg[at..at + new.len()].copy_from_slice(new);
    set_csum(msg, ICMP_CSUM, old, new);
    for &c in fix.iter().filter(|c| **c != usize::MAX) {
        let before = [msg[c], msg[c + 1]];
        let after = csum::replace(u16::from_be_bytes(before), old, new);
        // A quoted UDP checksum never becomes zero (that would mean "none").
        let after = if after == 0 { 0xffff } else { after }.to_be_bytes();
        msg[c..c + 2].copy_from_slice(&after);
        set_csum(msg, ICMP_CSUM, &before, &after);
    }
}

fn set_csum(msg: &mut [u8], at: usize, old: &[u8], new: &[u8]) {
    let c = csum::replace(u16::from_be_bytes([msg[at], msg[at + 1]]), old, new);
    msg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);

    #[test]
    fn a_port_is_kept_when_free_and_another_taken_when_not() {
        let mut n = Nat::default();
        assert_eq!(n.outbound(1, Proto::Udp, A, 5000, 0), Ok((5000, true)));
        assert_eq!(n.outbound(1, Proto::Udp, A, 5000, 10), Ok((5000, false)));
        assert_eq!(
            n.outbound(1, Proto::Udp, B, 5000, 10),
            Ok((FIRST_PORT, true))
        );
        assert_eq!(
            n.outbound(1, Proto::Tcp, B, 5000, 10),
            Ok((5000, true)),
            "per protocol"
        );
        assert_eq!(
            n.outbound(2, Proto::Udp, B, 5000, 10),
            Ok((5000, true)),
            "per interface"
        );
        assert_eq!(n.inbound(1, Proto::Udp, 5000, 20), Ok((A, 5000)));
        assert_eq!(n.inbound(1, Proto::Udp, FIRST_PORT, 20), Ok((B, 5000)));
        assert_eq!(n.inbound(1, Proto::Udp, 7, 20), Err(NatError::NoMapping));
        assert_eq!(n.len(), 4);
    }

    #[test]
    fn an_idle_mapping_expires_and_a_used_one_does_not() {
        let mut n = Nat::default();
        n.outbound(0, Proto::Icmp, A, 77, 0).expect("mapped");
        n.outbound(0, Proto::Udp, A, 53, 0).expect("mapped");
        assert_eq!(n.outbound(0, Proto::Icmp, A, 77, 25_000), Ok((77, false)));
        assert_eq!(n.inbound(0, Proto::Icmp, 77, 50_000), Ok((A, 77)));
        // The echo mapping was refreshed by the request and the reply; the UDP one is idle.
        n.expire(UDP_IDLE_MS);
        assert_eq!(n.len(), 1);
        assert_eq!(
            n.inbound(0, Proto::Udp, 53, UDP_IDLE_MS),
            Err(NatError::NoMapping)
        );
        let later = 50_000 + ICMP_IDLE_MS;
        assert_eq!(
            n.inbound(0, Proto::Icmp, 77, later),
            Err(NatError::NoMapping)
        );
        assert_eq!(n.outbound(0, Proto::Icmp, A, 77, later), Ok((77, true)));
    }

    use etherparse::PacketBuilder;
    use netyard_switch::wire::checksum::{add, checksum, fold, pseudo_header_v4};

    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 254);
    const FAR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 5);
    const HOP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);

    /// An IPv4 packet from `src:sport` to `dst:dport` as it left, UDP (17), TCP (6) or an
    /// echo (1: request when `sport` is the id).
    fn packet(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 1);
        let mut v = Vec::new();
        let payload = [9u8; 21];
        match proto {
            17 => b.udp(sport, dport).write(&mut v, &payload),
            6 => b.tcp(sport, dport, 7, 1024).write(&mut v, &payload),
            _ => b.icmpv4_echo_request(sport, dport).write(&mut v, &payload),
        }
        .expect("built");
        v
    }

    /// An ICMP error message of `t` quoting `quoted` (cut at `cut` bytes), checksummed.
    fn error_about(t: u8, quoted: &[u8], cut: usize) -> Vec<u8> {
        let mut m = vec![t, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&quoted[..cut.min(quoted.len())]);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    fn be(m: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([m[at], m[at + 1]])
    }

    /// Every checksum of a whole quoted packet holds: ICMP message, quoted IP header, quoted
    /// L4 (over the pseudo-header for TCP/UDP).
    fn all_valid(m: &[u8]) {
        assert_eq!(checksum(m), 0, "ICMP message checksum");
        let q = &m[8..];
        assert_eq!(checksum(&q[..20]), 0, "quoted IP header checksum");
        let l4 = &q[20..];
        let (s, d) = (
            <[u8; 4]>::try_from(&q[12..16]).expect("4"),
            <[u8; 4]>::try_from(&q[16..20]).expect("4"),
        );
        let sum = match q[9] {
            1 => add(0, l4),
            p => add(pseudo_header_v4(&s, &d, p, l4.len() as u32), l4),
        };
        assert_eq!(fold(sum), 0xffff, "quoted L4 checksum (protocol {})", q[9]);
    }

    #[test]
    fn an_error_about_a_masqueraded_packet_is_turned_back_to_the_inside_host() {
        for (proto, t) in [(17u8, 11u8), (6, 3), (1, 11)] {
            let mut n = Nat::default();
            let (p, port) = match proto {
                17 => (Proto::Udp, 33434),
                6 => (Proto::Tcp, 40000),
                _ => (Proto::Icmp, 0x77),
            };
            // B already holds the port: A's flow leaves under another one.
            n.outbound(1, p, B, port, 0).expect("mapped");
            let (outside_port, _) = n.outbound(1, p, A, port, 0).expect("mapped");
            assert_ne!(outside_port, port);
            let left = packet(proto, OUTSIDE, FAR, outside_port, 33435);
            let mut m = error_about(t, &left, left.len());
            all_valid(&m);
            let to = translate_icmp_error(&mut n, 1, ErrorWay::In { outside: OUTSIDE }, &mut m, 5);
            assert_eq!(to, Ok(A), "protocol {proto}");
            let inside = packet(proto, A, FAR, port, 33435);
            assert_eq!(
                &m[8..],
                &inside[..],
                "the quote is the packet A sent (protocol {proto})"
            );
            all_valid(&m);
        }
    }

    #[test]
    fn a_quote_cut_after_eight_bytes_keeps_its_checksums_right() {
        // RFC 792's minimum: the IP header and 8 bytes (a TCP quote then lacks its
        // checksum, a UDP one has it).
        let mut n = Nat::default();
        n.outbound(0, Proto::Tcp, A, 5555, 0).expect("mapped");
        n.outbound(0, Proto::Tcp, B, 5555, 0).expect("mapped");
        let left = packet(6, OUTSIDE, FAR, FIRST_PORT, 80);
        let mut m = error_about(3, &left, 28);
        let to = translate_icmp_error(&mut n, 0, ErrorWay::In { outside: OUTSIDE }, &mut m, 5);
        assert_eq!(to, Ok(B));
        assert_eq!(checksum(&m), 0);
        assert_eq!(checksum(&m[8..28]), 0);
        assert_eq!(be(&m, 28), 5555);
        assert_eq!(&m[20..24], &B.octets());
    }

    #[test]
    fn a_udp_quote_without_checksum_keeps_none() {
        let mut n = Nat::default();
        n.outbound(0, Proto::Udp, A, 53, 0).expect("mapped");
        let mut left = packet(17, OUTSIDE, FAR, 53, 53);
        left[26..28].copy_from_slice(&[0, 0]);
        let mut m = error_about(3, &left, left.len());
        let to = translate_icmp_error(&mut n, 0, ErrorWay::In { outside: OUTSIDE }, &mut m, 5);
        assert_eq!(to, Ok(A));
        assert_eq!(be(&m, 8 + 26), 0, "no checksum stays no checksum");
        assert_eq!(checksum(&m), 0);
    }

    #[test]
    fn errors_not_about_a_mapping_are_refused_and_left_alone() {
        let mut n = Nat::default();
        n.outbound(0, Proto::Udp, A, 53, 0).expect("mapped");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Quoting another source than the router's outside address.
            (
                error_about(11, &packet(17, HOP, FAR, 53, 53), 48),
                "other source",
            ),
            // A port nobody mapped.
            (
                error_about(11, &packet(17, OUTSIDE, FAR, 54, 53), 48),
                "unmapped port",
            ),
            // Not an error (an echo request "quoting" a packet).
            (
                error_about(8, &packet(17, OUTSIDE, FAR, 53, 53), 48),
                "not an error",
            ),
            // Cut inside the ports.
            (
                error_about(11, &packet(17, OUTSIDE, FAR, 53, 53), 27),
                "short",
            ),
            // Quoting an echo reply on the way in.
            (
                error_about(
                    11,
                    &{
                        let mut e = packet(1, OUTSIDE, FAR, 53, 1);
                        e[20] = 0;
                        e
                    },
                    48,
                ),
                "echo reply quoted",
            ),
        ];
        for (mut m, what) in cases {
            let before = m.clone();
            let r = translate_icmp_error(&mut n, 0, ErrorWay::In { outside: OUTSIDE }, &mut m, 5);
            assert_eq!(r, Err(NatError::NoMapping), "{what}");
            assert_eq!(m, before, "{what}: changed");
        }
        // Past the mapping's life.
        let mut m = error_about(11, &packet(17, OUTSIDE, FAR, 53, 53), 48);
        let r = translate_icmp_error(
            &mut n,
            0,
            ErrorWay::In { outside: OUTSIDE },
            &mut m,
            UDP_IDLE_MS,
        );
        assert_eq!(r, Err(NatError::NoMapping));
    }

    #[test]
    fn an_inside_hosts_error_about_a_translated_packet_leaves_with_the_outside_port() {
        // FAR's datagram came in to OUTSIDE:FIRST_PORT and went on to B:5000; B's port
        // unreachable quotes it as B saw it, which must leave as FAR's packet was sent.
        let mut n = Nat::default();
        n.outbound(0, Proto::Udp, A, 5000, 0).expect("mapped");
        assert_eq!(
            n.outbound(0, Proto::Udp, B, 5000, 0),
            Ok((FIRST_PORT, true))
        );
        let seen = packet(17, FAR, B, 9999, 5000);
        let mut m = error_about(3, &seen, seen.len());
        let r = translate_icmp_error(
            &mut n,
            0,
            ErrorWay::Out {
                inside: B,
                outside: OUTSIDE,
            },
            &mut m,
            5,
        );
        assert_eq!(r, Ok(OUTSIDE));
        assert_eq!(&m[8..], &packet(17, FAR, OUTSIDE, 9999, FIRST_PORT)[..]);
        all_valid(&m);
        // An error quoting another inside host's packet is not this host's to send.
        let mut m = error_about(3, &seen, seen.len());
        let r = translate_icmp_error(
            &mut n,
            0,
            ErrorWay::Out {
                inside: A,
                outside: OUTSIDE,
            },
            &mut m,
            5,
        );
        assert_eq!(r, Err(NatError::NoMapping));
    }
}
