//! The router's neighbours: an ARP cache per interface, learned from the ARP requests and
//! replies it sees for its own addresses. An entry is used for [`REACHABLE_MS`] after it was
//! last confirmed, then still used while a new request goes out (the kernel's STALE state,
//! simplified), and forgotten after [`FORGET_MS`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use netyard_switch::MacAddr;

/// How long an entry is trusted without asking again.
pub const REACHABLE_MS: u64 = 30_000;
/// How long an unconfirmed entry is kept at all.
pub const FORGET_MS: u64 = 300_000;
/// Most entries per interface (a lab's network, not a data centre's).
pub const MAX_PER_IFACE: usize = 4096;

/// What the cache knows of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Known and recently confirmed.
    Fresh(MacAddr),
    /// Known but old: use it, and ask again.
    Stale(MacAddr),
    Missing,
}

#[derive(Debug, Default)]
pub struct Neighbours {
    per_iface: Vec<HashMap<Ipv4Addr, (MacAddr, u64)>>,
}

impl Neighbours {
    pub fn new(ifaces: usize) -> Neighbours {
        Neighbours {
            per_iface: (0..ifaces).map(|_| HashMap::new()).collect(),
        }
    }

    pub fn lookup(&self, iface: usize, ip: Ipv4Addr, now: u64) -> Lookup {
        match self.per_iface.get(iface).and_then(|t| t.get(&ip)) {
            Some(&(mac, at)) if now.saturating_sub(at) < REACHABLE_MS => Lookup::Fresh(mac),
            Some(&(mac, at)) if now.saturating_sub(at) < FORGET_MS => Lookup::Stale(mac),
            _ => Lookup::Missing,
        }
    }

    /// Records `ip` at `mac` on `iface` (an ARP message from it). When the table is full,
    /// entries past [`FORGET_MS`] go first, then the new one is not kept.
    pub fn learn(&mut self, iface: usize, ip: Ipv4Addr, mac: MacAddr, now: u64) {
        let Some(t) = self.per_iface.get_mut(iface) else {
            return;
        };
        if t.len() >= MAX_PER_IFACE && !t.contains_key(&ip) {
            t.retain(|_, (_, at)| now.saturating_sub(*at) < FORGET_MS);
            if t.len() >= MAX_PER_IFACE {
                return;
            }
        }
        t.insert(ip, (mac, now));
    }

    /// Entries of `iface`, for `router inspect`.
    pub fn entries(&self, iface: usize) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.per_iface
            .get(iface)
            .into_iter()
            .flat_map(|t| t.iter().map(|(ip, (mac, _))| (*ip, *mac)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_fresh_then_stale_then_gone() {
        let mut n = Neighbours::new(2);
        let (ip, mac) = (Ipv4Addr::new(10, 0, 0, 2), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(n.lookup(0, ip, 0), Lookup::Missing);
        n.learn(0, ip, mac, 1000);
        assert_eq!(n.lookup(0, ip, 1000), Lookup::Fresh(mac));
        assert_eq!(n.lookup(1, ip, 1000), Lookup::Missing, "per interface");
        assert_eq!(n.lookup(0, ip, 1000 + REACHABLE_MS), Lookup::Stale(mac));
        assert_eq!(n.lookup(0, ip, 1000 + FORGET_MS), Lookup::Missing);
        n.learn(5, ip, mac, 0);
    }
}
