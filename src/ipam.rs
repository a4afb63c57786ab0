//! IPv4 and IPv6 address management for one network, and choosing a free subnet for a new
//! one ([`pick_free_subnet`], and [`pick_ula`] for an IPv6 prefix).
//!
//! Addresses are handed out in order after the last one given, wrapping around, skipping the
//! network address, the broadcast address, the gateway and anything in use: an address is
//! never given to two live endpoints, and a just-released address is not reused at once (so a
//! peer's stale ARP entry has time to expire).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why an address cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("address {ip} is outside the network's subnet {subnet}")]
    OutsideSubnet { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {0} is the network's gateway")]
    Gateway(Ipv4Addr),
    #[error("address {0} is the subnet's network or broadcast address")]
    Reserved(Ipv4Addr),
    #[error("address {0} is already in use on this network")]
    InUse(Ipv4Addr),
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
}

#[derive(Debug, Clone)]
pub struct Ipam {
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    /// Where automatic addresses come from (Docker's `--ip-range`): the subnet when None.
    range: Option<Ipv4Net>,
    used: BTreeSet<Ipv4Addr>,
    /// The last address handed out automatically.
    cursor: u32,
    /// A dual-stack network's IPv6 addresses.
    v6: Option<Ipam6>,
}

impl Ipam {
    pub fn new(subnet: Ipv4Net, gateway: Ipv4Addr) -> Ipam {
        Ipam {
            subnet,
            gateway,
            range: None,
            used: BTreeSet::new(),
            cursor: u32::from(subnet.network()),
            v6: None,
        }
    }

    /// Adds IPv6 address management (a dual-stack network) for `subnet` with `gateway`.
    pub fn with_ipv6(mut self, v6: Option<(Ipv6Net, Ipv6Addr)>) -> Ipam {
        self.v6 = v6.map(|(subnet, gateway)| Ipam6::new(subnet, gateway));
        self
    }

    /// The IPv6 side, on a dual-stack network.
    pub fn v6(&self) -> Option<&Ipam6> {
        self.v6.as_ref()
    }

    /// The IPv6 side, writable.
    pub fn v6_mut(&mut self) -> Option<&mut Ipam6> {
        self.v6.as_mut()
    }

    /// Hands out automatic addresses from `range` only (planning checked it lies inside the
    /// subnet); explicit ones may still be anywhere in the subnet, as with Docker.
    pub fn with_range(mut self, range: Option<Ipv4Net>) -> Ipam {
        self.range = range.filter(|r| self.subnet.contains(r));
        // Just before the range, so its first address (a host address when the range is
        // smaller than the subnet) comes first.
        if let Some(r) = self.range {
            self.cursor = u32::from(r.network()).saturating_sub(1);
        }
        self
    }

    /// The block automatic addresses come from.
    fn pool(&self) -> Ipv4Net {
        self.range.unwrap_or(self.subnet)
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// Checks that `ip` could be taken, without taking it.
    pub fn check(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        if !self.subnet.contains(&ip) {
            return Err(IpamError::OutsideSubnet {
                ip,
                subnet: self.subnet,
            });
        }
        if ip == self.gateway {
            return Err(IpamError::Gateway(ip));
        }
        if self.subnet.prefix_len() < 31
            && (ip == self.subnet.network() || ip == self.subnet.broadcast())
        {
            return Err(IpamError::Reserved(ip));
        }
        if self.used.contains(&ip) {
            return Err(IpamError::InUse(ip));
        }
        Ok(())
    }

    /// Takes a specific address.
    pub fn take(&mut self, ip: Ipv4Addr) -> Result<Ipv4Addr, IpamError> {
        self.check(ip)?;
        self.used.insert(ip);
        Ok(ip)
    }

    /// Takes the next free address after the last one handed out.
    pub fn next_free(&mut self) -> Result<Ipv4Addr, IpamError> {
        let ip = self.peek_free()?;
        self.used.insert(ip);
        self.advance(ip);
        Ok(ip)
    }

    /// The address [`Ipam::next_free`] would hand out, without taking it or moving on.
    pub fn peek_free(&self) -> Result<Ipv4Addr, IpamError> {
        self.peek_free_except(&BTreeSet::new())
    }

    /// Like [`Ipam::peek_free`], also skipping `skip` (addresses claimed elsewhere).
    pub fn peek_free_except(&self, skip: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        let pool = self.pool();
        let first = u32::from(pool.network());
        let size = 1u64 << (32 - u32::from(pool.prefix_len()));
        let mut cand = self.cursor;
        for _ in 0..size {
            cand = if cand < first || u64::from(cand - first) + 1 >= size {
                first
            } else {
                cand + 1
            };
            let ip = Ipv4Addr::from(cand);
            if self.check(ip).is_ok() && !skip.contains(&ip) {
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted(pool))
    }

    /// Moves the cursor to `ip`, an address just handed out for good (an attach that
    /// succeeded): the next automatic address comes after it. A failed attach does not call
    /// this, so it leaves the next attach the same address. An address outside the range
    /// (only an explicit `--ip` can be) leaves the cursor where it was; an explicit address
    /// inside it moves the cursor as an automatic one does, in both families
    /// ([`Ipam6::advance`]): a cluster's automatic address, claimed in etcd first, reaches
    /// the attach as an explicit one (`cluster.rs`), and must not be handed out again at once
    /// after its release.
    pub fn advance(&mut self, ip: Ipv4Addr) {
        if self.pool().contains(&ip) {
            self.cursor = u32::from(ip);
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

/// Private /24s netyard picks from when a network is created without `--subnet`, in order:
/// 10.89.0.0/16 first (Podman's default range), then 172.29.0.0/16, split into /24s.
pub fn default_pool() -> impl Iterator<Item = Ipv4Net> {
    let pools = [
        Ipv4Net::new(Ipv4Addr::new(10, 89, 0, 0), 16),
        Ipv4Net::new(Ipv4Addr::new(172, 29, 0, 0), 16),
    ];
    pools
        .into_iter()
        .flatten()
        .flat_map(|p| p.subnets(24).into_iter().flatten())
}

/// The first pool subnet that overlaps none of `taken` (host routes and other networks).
pub fn pick_free_subnet(taken: &[IpNet]) -> Option<Ipv4Net> {
    default_pool().find(|cand| {
        let c = IpNet::V4(*cand);
        !taken
            .iter()
            .any(|t| t.contains(&c.network()) || c.contains(&t.network()))
    })
}

/// Why an IPv6 address cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ipam6Error {
    #[error("address {ip} is outside the network's IPv6 prefix {subnet}")]
    OutsideSubnet { ip: Ipv6Addr, subnet: Ipv6Net },
    #[error("address {0} is the network's IPv6 gateway")]
    Gateway(Ipv6Addr),
    #[error("address {0} is the prefix's subnet-router anycast address (all zeros)")]
    Reserved(Ipv6Addr),
    #[error("address {0} is already in use on this network")]
    InUse(Ipv6Addr),
    #[error("no free address left in {0}")]
    Exhausted(Ipv6Net),
}

/// IPv6 address management for a dual-stack network: as [`Ipam`], addresses in order after the
/// last one given, skipping the prefix's all-zeros address (the subnet-router anycast address
/// every router answers, RFC 4291 section 2.6.1), the gateway and anything in use. A /64 is
/// never exhausted in practice; the walk looks at most [`IPAM6_PROBE`] candidates.
#[derive(Debug, Clone)]
pub struct Ipam6 {
    subnet: Ipv6Net,
    gateway: Ipv6Addr,
    used: BTreeSet<Ipv6Addr>,
    cursor: u128,
}

/// Candidates [`Ipam6::peek_free`] looks at before calling the prefix exhausted.
pub const IPAM6_PROBE: u32 = 1 << 20;

impl Ipam6 {
    pub fn new(subnet: Ipv6Net, gateway: Ipv6Addr) -> Ipam6 {
        Ipam6 {
            subnet,
            gateway,
            used: BTreeSet::new(),
            cursor: u128::from(subnet.network()),
        }
    }

    pub fn subnet(&self) -> Ipv6Net {
        self.subnet
    }

    /// Checks that `ip` could be taken, without taking it.
    pub fn check(&self, ip: Ipv6Addr) -> Result<(), Ipam6Error> {
        if !self.subnet.contains(&ip) {
            return Err(Ipam6Error::OutsideSubnet {
                ip,
                subnet: self.subnet,
            });
        }
        if ip == self.gateway {
            return Err(Ipam6Error::Gateway(ip));
        }
        if ip == self.subnet.network() {
            return Err(Ipam6Error::Reserved(ip));
        }
        if self.used.contains(&ip) {
            return Err(Ipam6Error::InUse(ip));
        }
        Ok(())
    }

    /// Takes a specific address.
    pub fn take(&mut self, ip: Ipv6Addr) -> Result<Ipv6Addr, Ipam6Error> {
        self.check(ip)?;
        self.used.insert(ip);
        Ok(ip)
    }

    /// The address the next automatic attach gets, without taking it or moving on.
    pub fn peek_free(&self) -> Result<Ipv6Addr, Ipam6Error> {
        let first = u128::from(self.subnet.network());
        let bits = 128 - u32::from(self.subnet.prefix_len());
        // Offsets within the prefix; a /0 cannot be asked for (planning caps at /64).
        let size: u128 = if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        };
        let mut off = self.cursor.wrapping_sub(first);
        for _ in 0..IPAM6_PROBE.min(u32::try_from(size).unwrap_or(u32::MAX)) {
            off = if off.saturating_add(1) >= size {
                0
            } else {
                off + 1
            };
            let ip = Ipv6Addr::from(first + off);
            if self.check(ip).is_ok() {
                return Ok(ip);
            }
        }
        Err(Ipam6Error::Exhausted(self.subnet))
    }

    /// Moves the cursor to `ip`, an address just handed out for good, explicit or automatic,
    /// as [`Ipam::advance`] does inside its pool (here the whole prefix: IPv6 has no range).
    pub fn advance(&mut self, ip: Ipv6Addr) {
        if self.subnet.contains(&ip) {
            self.cursor = u128::from(ip);
        }
    }

    pub fn release(&mut self, ip: Ipv6Addr) {
        self.used.remove(&ip);
    }
}

/// fd00::/8, the locally assigned half of the unique local addresses (RFC 4193).
pub const ULA_POOL: &str = "fd00::/8";

/// A /64 of fd00::/8 for a network created with `--ipv6` and no `--subnet6`: fd, then a 40-bit
/// global ID from `random` (RFC 4193 section 3.2: pseudo-random, so two sites merging rarely
/// collide), then subnet ID 0. `random` yields candidate global IDs (the low 40 bits are
/// used); the first whose /64 overlaps none of `taken` (host routes, other networks' prefixes)
/// wins. `None` after 64 candidates all overlapped (a host route covering fd00::/8).
pub fn pick_ula(taken: &[Ipv6Net], mut random: impl FnMut() -> u64) -> Option<Ipv6Net> {
    for _ in 0..64 {
        let gid = u128::from(random() & 0xff_ffff_ffff);
        let addr = (0xfdu128 << 120) | (gid << 80);
        let cand = Ipv6Net::new(Ipv6Addr::from(addr), 64).ok()?;
        let overlaps = taken
            .iter()
            .any(|t| t.contains(&cand.network()) || cand.contains(&t.network()));
        if !overlaps {
            return Some(cand);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn hands_out_in_order_skipping_gateway_and_never_twice() {
        let mut ipam = Ipam::new(net("10.1.0.0/29"), Ipv4Addr::new(10, 1, 0, 1));
        let got: Vec<Ipv4Addr> = (0..5).map(|_| ipam.next_free().unwrap()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
        assert_eq!(got, want);
        assert_eq!(
            ipam.next_free(),
            Err(IpamError::Exhausted(net("10.1.0.0/29")))
        );
        ipam.release(Ipv4Addr::new(10, 1, 0, 3));
        assert_eq!(ipam.next_free().unwrap(), Ipv4Addr::new(10, 1, 0, 3));
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut ipam = Ipam::new(net("10.1.0.0/24"), Ipv4Addr::new(10, 1, 0, 1));
        let a = ipam.next_free().unwrap();
        ipam.release(a);
        assert_ne!(ipam.next_free().unwrap(), a);
    }

    #[test]
    fn explicit_addresses_are_checked() {
        let mut ipam = Ipam::new(net("10.1.0.0/24"), Ipv4Addr::new(10, 1, 0, 1));
        assert!(matches!(
            ipam.take(Ipv4Addr::new(10, 2, 0, 5)),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert_eq!(
            ipam.take(Ipv4Addr::new(10, 1, 0, 1)),
            Err(IpamError::Gateway(Ipv4Addr::new(10, 1, 0, 1)))
        );
        assert!(matches!(
            ipam.take(Ipv4Addr::new(10, 1, 0, 255)),
            Err(IpamError::Reserved(_))
        ));
        ipam.take(Ipv4Addr::new(10, 1, 0, 9)).unwrap();
        assert_eq!(
            ipam.take(Ipv4Addr::new(10, 1, 0, 9)),
            Err(IpamError::InUse(Ipv4Addr::new(10, 1, 0, 9)))
        );
        // Automatic allocation skips the explicitly taken one.
        for _ in 0..7 {
            assert_ne!(ipam.next_free().unwrap(), Ipv4Addr::new(10, 1, 0, 9));
        }
    }

    #[test]
    fn a_range_bounds_automatic_addresses_but_not_explicit_ones() {
        let mut ipam = Ipam::new(net("192.168.7.0/24"), Ipv4Addr::new(192, 168, 7, 1))
            .with_range(Some(net("192.168.7.128/30")));
        let got: Vec<Ipv4Addr> = (0..4).map(|_| ipam.next_free().unwrap()).collect();
        let want: Vec<Ipv4Addr> = (128..=131).map(|i| Ipv4Addr::new(192, 168, 7, i)).collect();
        assert_eq!(got, want);
        assert_eq!(
            ipam.next_free(),
            Err(IpamError::Exhausted(net("192.168.7.128/30")))
        );
        // An explicit address outside the range but inside the subnet is fine and does not
        // move the cursor out of the range.
        ipam.take(Ipv4Addr::new(192, 168, 7, 9)).unwrap();
        ipam.advance(Ipv4Addr::new(192, 168, 7, 9));
        ipam.release(Ipv4Addr::new(192, 168, 7, 129));
        assert_eq!(ipam.next_free().unwrap(), Ipv4Addr::new(192, 168, 7, 129));
    }

    #[test]
    fn a_range_holding_the_gateway_skips_it() {
        let mut ipam = Ipam::new(net("192.168.7.0/24"), Ipv4Addr::new(192, 168, 7, 1))
            .with_range(Some(net("192.168.7.0/30")));
        assert_eq!(ipam.next_free().unwrap(), Ipv4Addr::new(192, 168, 7, 2));
        assert_eq!(ipam.next_free().unwrap(), Ipv4Addr::new(192, 168, 7, 3));
        assert!(ipam.next_free().is_err());
    }

    #[test]
    fn free_subnet_avoids_routes_and_other_networks() {
        let taken: Vec<IpNet> = vec![
            "10.89.0.0/24".parse().unwrap(),
            "10.89.1.128/25".parse().unwrap(),
            "0.0.0.0/0".parse::<IpNet>().unwrap(),
        ];
        // A default route covers everything; it must not count as an overlap of every subnet.
        let taken: Vec<IpNet> = taken.into_iter().filter(|n| n.prefix_len() > 0).collect();
        assert_eq!(pick_free_subnet(&taken), Some(net("10.89.2.0/24")));
    }

    fn net6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_hands_out_in_order_skipping_anycast_and_gateway() {
        let mut ipam = Ipam6::new(net6("fd00:1::/64"), a6("fd00:1::1"));
        let mut got = Vec::new();
        for _ in 0..3 {
            let ip = ipam.peek_free().unwrap();
            ipam.take(ip).unwrap();
            ipam.advance(ip);
            got.push(ip);
        }
        assert_eq!(got, vec![a6("fd00:1::2"), a6("fd00:1::3"), a6("fd00:1::4")]);
        assert_eq!(
            ipam.check(a6("fd00:1::")),
            Err(Ipam6Error::Reserved(a6("fd00:1::")))
        );
        assert_eq!(
            ipam.check(a6("fd00:1::1")),
            Err(Ipam6Error::Gateway(a6("fd00:1::1")))
        );
        assert_eq!(
            ipam.take(a6("fd00:1::3")),
            Err(Ipam6Error::InUse(a6("fd00:1::3")))
        );
        assert!(matches!(
            ipam.check(a6("fd00:2::3")),
            Err(Ipam6Error::OutsideSubnet { .. })
        ));
        // A released address is not reused at once; peeking does not move on.
        ipam.release(a6("fd00:1::3"));
        assert_eq!(ipam.peek_free().unwrap(), a6("fd00:1::5"));
        assert_eq!(ipam.peek_free().unwrap(), a6("fd00:1::5"));
    }

    #[test]
    fn an_explicit_address_moves_both_families_cursors_alike() {
        let mut v4 = Ipam::new(net("10.1.0.0/24"), Ipv4Addr::new(10, 1, 0, 1));
        let mut v6 = Ipam6::new(net6("fd00:1::/64"), a6("fd00:1::1"));
        v4.take(Ipv4Addr::new(10, 1, 0, 99)).unwrap();
        v4.advance(Ipv4Addr::new(10, 1, 0, 99));
        v6.take(a6("fd00:1::99")).unwrap();
        v6.advance(a6("fd00:1::99"));
        assert_eq!(
            (v4.peek_free().unwrap(), v6.peek_free().unwrap()),
            (Ipv4Addr::new(10, 1, 0, 100), a6("fd00:1::9a"))
        );
        // Released: neither family hands it out again at once.
        v4.release(Ipv4Addr::new(10, 1, 0, 99));
        v6.release(a6("fd00:1::99"));
        assert_eq!(
            (v4.peek_free().unwrap(), v6.peek_free().unwrap()),
            (Ipv4Addr::new(10, 1, 0, 100), a6("fd00:1::9a"))
        );
    }

    #[test]
    fn ipv6_small_prefix_wraps_and_exhausts() {
        let mut ipam = Ipam6::new(net6("fd00:1::/126"), a6("fd00:1::1"));
        for want in ["fd00:1::2", "fd00:1::3"] {
            let ip = ipam.peek_free().unwrap();
            assert_eq!(ip, a6(want));
            ipam.take(ip).unwrap();
            ipam.advance(ip);
        }
        assert_eq!(
            ipam.peek_free(),
            Err(Ipam6Error::Exhausted(net6("fd00:1::/126")))
        );
        ipam.release(a6("fd00:1::2"));
        assert_eq!(ipam.peek_free().unwrap(), a6("fd00:1::2"));
    }

    #[test]
    fn ula_has_the_rfc4193_shape_and_avoids_overlaps() {
        let mut ids = [0xab_cdef_0123u64, 0x12_3456_789a].into_iter();
        let got = pick_ula(&[], || ids.next().unwrap()).unwrap();
        assert_eq!(got, net6("fdab:cdef:123::/64"));
        // The first candidate overlaps a taken prefix (a host route, another network): the
        // next is taken.
        let mut ids = [0xab_cdef_0123u64, 0x12_3456_789a].into_iter();
        let taken = [net6("fdab:cdef:123::/48")];
        let got = pick_ula(&taken, || ids.next().unwrap()).unwrap();
        assert_eq!(got, net6("fd12:3456:789a::/64"));
        // Bits above the 40-bit global ID are ignored.
        let got = pick_ula(&[], || u64::MAX).unwrap();
        assert_eq!(got, net6("fdff:ffff:ffff::/64"));
        // A route covering all of fd00::/8 leaves nothing.
        assert_eq!(pick_ula(&[net6("fd00::/8")], || 7), None);
    }
}
