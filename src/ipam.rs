//! IPv4 address management for one network, and choosing a free subnet for a new one.
//!
//! Addresses are handed out in order after the last one given, wrapping around, skipping the
//! network address, the broadcast address, the gateway and anything in use: an address is
//! never given to two live endpoints, and a just-released address is not reused at once (so a
//! peer's stale ARP entry has time to expire).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

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
}

impl Ipam {
    pub fn new(subnet: Ipv4Net, gateway: Ipv4Addr) -> Ipam {
        Ipam {
            subnet,
            gateway,
            range: None,
            used: BTreeSet::new(),
            cursor: u32::from(subnet.network()),
        }
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
    /// (an explicit `--ip`) leaves the cursor where it was.
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
}
