//! Routers between networks (issue 18): an L3 router with one interface on each of several
//! switches.
//!
//! - [`decide`]: the forwarding decision, pure: (frame, [`Config`], [`Neighbours`], [`Nat`],
//!   now) -> [`Verdict`]. It rewrites a forwarded frame in place (MACs, TTL, NAT) with
//!   incremental checksums (`netyard_switch::wire::checksum::replace`, RFC 1624) and builds
//!   replies (ARP, echo, ICMP errors) into a buffer the caller owns: no allocation per frame.
//! - [`neigh`]: the ARP cache of each interface.
//! - [`nat`]: masquerading's table (ports and echo ids per protocol, timeouts).
//! - [`task`]: the one tokio task per router that moves frames between the switches.

pub mod decide;
pub mod nat;
pub mod neigh;
pub mod task;

#[cfg(test)]
mod decide_tests;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::Ipv4Net;
use netyard_switch::MacAddr;

pub use decide::{decide, Cx, Verdict};

/// One interface: the router's address and MAC on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub ip: Ipv4Addr,
    /// The network's subnet (the connected route).
    pub net: Ipv4Net,
    pub mac: MacAddr,
    /// The network's MTU (IP bytes per packet).
    pub mtu: u32,
    /// Masquerade what leaves through this interface.
    pub nat: bool,
}

/// A static route: `prefix` via `via`, a neighbour on interface `iface`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Net,
    pub via: Ipv4Addr,
    pub iface: usize,
}

/// What the router is: its interfaces (index = interface number) and static routes. Swapped
/// whole when a route changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub ifaces: Vec<Iface>,
    pub routes: Vec<Route>,
}

impl Config {
    /// The interface holding `ip` as its own address.
    pub fn own(&self, ip: Ipv4Addr) -> Option<usize> {
        self.ifaces.iter().position(|f| f.ip == ip)
    }

    /// Longest-prefix match over the connected subnets and the static routes: the
    /// interface and the next hop. A connected subnet wins a tie (as the kernel's
    /// connected routes do with a static route of the same length).
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
        let mut best: Option<(u8, usize, Ipv4Addr)> = None;
        for (i, f) in self.ifaces.iter().enumerate() {
            if f.net.contains(&dst) && best.is_none_or(|(l, _, _)| f.net.prefix_len() > l) {
                best = Some((f.net.prefix_len(), i, dst));
            }
        }
        for r in &self.routes {
            if r.prefix.contains(&dst) && best.is_none_or(|(l, _, _)| r.prefix.prefix_len() > l) {
                best = Some((r.prefix.prefix_len(), r.iface, r.via));
            }
        }
        best.map(|(_, i, h)| (i, h))
    }
}

/// One counter of an interface; [`Counters`] holds one value of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    Forwarded,
    ArpReplies,
    EchoReplies,
    TtlExceeded,
    NoRoute,
    FragNeeded,
    TooBig,
    Unresolved,
    Malformed,
    Ignored,
    NatOut,
    NatIn,
    NatNew,
    NatFull,
    NatNoMapping,
    /// ICMP errors the router sent, by type and code (on the interface they left through,
    /// the one the packet arrived on).
    SentTimeExceeded,
    SentNetUnreachable,
    SentPortUnreachable,
    SentFragNeeded,
}

impl Counter {
    pub const ALL: [Counter; 19] = [
        Counter::Forwarded,
        Counter::ArpReplies,
        Counter::EchoReplies,
        Counter::TtlExceeded,
        Counter::NoRoute,
        Counter::FragNeeded,
        Counter::TooBig,
        Counter::Unresolved,
        Counter::Malformed,
        Counter::Ignored,
        Counter::NatOut,
        Counter::NatIn,
        Counter::NatNew,
        Counter::NatFull,
        Counter::NatNoMapping,
        Counter::SentTimeExceeded,
        Counter::SentNetUnreachable,
        Counter::SentPortUnreachable,
        Counter::SentFragNeeded,
    ];

    /// Is this the counter of frames the router dropped? Each dropped frame counts under
    /// exactly one such counter; the ICMP error some of them caused is counted among the
    /// `Sent*`. A match, so a new counter must be sorted here.
    pub fn is_drop(self) -> bool {
        match self {
            Counter::TtlExceeded
            | Counter::NoRoute
            | Counter::FragNeeded
            | Counter::TooBig
            | Counter::Unresolved
            | Counter::Malformed
            | Counter::Ignored
            | Counter::NatFull
            | Counter::NatNoMapping => true,
            Counter::Forwarded
            | Counter::ArpReplies
            | Counter::EchoReplies
            | Counter::NatOut
            | Counter::NatIn
            | Counter::NatNew
            | Counter::SentTimeExceeded
            | Counter::SentNetUnreachable
            | Counter::SentPortUnreachable
            | Counter::SentFragNeeded => false,
        }
    }

    /// The ICMP errors sent: each counter with its message's type and code names.
    pub const SENT: [(Counter, &'static str, &'static str); 4] = [
        (Counter::SentTimeExceeded, "time_exceeded", "ttl"),
        (Counter::SentNetUnreachable, "dest_unreachable", "net"),
        (Counter::SentPortUnreachable, "dest_unreachable", "port"),
        (Counter::SentFragNeeded, "dest_unreachable", "frag_needed"),
    ];

    /// The name in `router inspect` and /metrics.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Forwarded => "forwarded",
            Counter::ArpReplies => "arp_replies",
            Counter::EchoReplies => "echo_replies",
            Counter::TtlExceeded => "ttl_exceeded",
            Counter::NoRoute => "no_route",
            Counter::FragNeeded => "frag_needed",
            Counter::TooBig => "too_big",
            Counter::Unresolved => "unresolved",
            Counter::Malformed => "malformed",
            Counter::Ignored => "ignored",
            Counter::NatOut => "nat_out",
            Counter::NatIn => "nat_in",
            Counter::NatNew => "nat_new",
            Counter::NatFull => "nat_full",
            Counter::NatNoMapping => "nat_no_mapping",
            Counter::SentTimeExceeded => "sent_time_exceeded",
            Counter::SentNetUnreachable => "sent_net_unreachable",
            Counter::SentPortUnreachable => "sent_port_unreachable",
            Counter::SentFragNeeded => "sent_frag_needed",
        }
    }
}

/// An interface's counters: relaxed atomics, written by the router's task, read by stats.
#[derive(Debug, Default)]
pub struct Counters {
    v: [AtomicU64; Counter::ALL.len()],
}

impl Counters {
    pub fn add(&self, c: Counter) {
        self.v[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.v[c as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_counter_in_index_order() {
        // Counters index their array by the discriminant, and stats list ALL.
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
        assert_eq!(Counter::ALL.len(), Counter::SentFragNeeded as usize + 1);
    }

    #[test]
    fn the_longest_prefix_wins_and_a_connected_subnet_wins_a_tie() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let iface = |ip: [u8; 4], net: &str| Iface {
            ip: Ipv4Addr::from(ip),
            net: net.parse().expect("net"),
            mac,
            mtu: 1500,
            nat: false,
        };
        let c = Config {
            ifaces: vec![
                iface([10, 1, 0, 1], "10.1.0.0/24"),
                iface([10, 2, 0, 1], "10.2.0.0/24"),
            ],
            routes: vec![
                Route {
                    prefix: "0.0.0.0/0".parse().expect("n"),
                    via: Ipv4Addr::new(10, 2, 0, 9),
                    iface: 1,
                },
                Route {
                    prefix: "10.1.0.0/24".parse().expect("n"),
                    via: Ipv4Addr::new(10, 2, 0, 8),
                    iface: 1,
                },
                Route {
                    prefix: "10.3.0.0/16".parse().expect("n"),
                    via: Ipv4Addr::new(10, 1, 0, 7),
                    iface: 0,
                },
            ],
        };
        assert_eq!(
            c.lookup(Ipv4Addr::new(10, 1, 0, 5)),
            Some((0, Ipv4Addr::new(10, 1, 0, 5)))
        );
        assert_eq!(
            c.lookup(Ipv4Addr::new(10, 3, 4, 5)),
            Some((0, Ipv4Addr::new(10, 1, 0, 7)))
        );
        assert_eq!(
            c.lookup(Ipv4Addr::new(8, 8, 8, 8)),
            Some((1, Ipv4Addr::new(10, 2, 0, 9)))
        );
        let no_default = Config {
            routes: vec![],
            ..c
        };
        assert_eq!(no_default.lookup(Ipv4Addr::new(8, 8, 8, 8)), None);
        assert_eq!(no_default.own(Ipv4Addr::new(10, 2, 0, 1)), Some(1));
    }
}
