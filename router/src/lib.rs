//! Router: each network's gateway, served in userspace.
//!
//! [`gateway`] attaches a gateway port to a network's switch: a smoltcp interface holding the
//! gateway address, which answers ARP and ICMP echo for it, and serves DNS on port 53 (UDP and
//! TCP) through a [`gateway::DnsService`] the daemon provides. Routing between networks, NAT,
//! egress through host sockets and published ports are the router issue's remaining work.

pub mod gateway;
