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

use std::collections::HashMap;
use std::net::Ipv4Addr;

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
}
