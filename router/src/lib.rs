//! Router: each network's gateway, served in userspace.
//!
//! [`gateway`] attaches a gateway port to a network's switch: a smoltcp interface holding the
//! gateway address, which answers ARP and ICMP echo for it, and serves DNS on port 53 (UDP and
//! TCP) through a [`gateway::DnsService`] the daemon provides. Packets for addresses outside
//! the network go to [`egress`]: UDP and ICMP echo leave through host sockets of the daemon's
//! namespace, tracked by [`conntrack`]'s flow table (capped per endpoint MAC and in total);
//! [`packet`] parses and builds them, and refuses destinations in other netyard networks or
//! the host's loopback ([`packet::refusal`]). TCP (egress and published ports) goes through
//! [`tcp`]'s relay; [`limits`] caps the host sockets both open, process-wide; [`publish`]
//! carries the bound host sockets of published ports to the gateway task; [`uplink`] is how
//! the gateway's frames reach the switch. Below the engines, so that no module imports
//! another in a circle: [`egress::EgressDrop`] (the drop reasons, in `drops`), the counters and
//! flow table the engines share (`counters`) and the frame sink they write to (`sink`).

mod batch;
pub mod conntrack;
mod counters;
mod drops;
pub mod egress;
mod epoll;
pub mod fuzzing;
pub mod gateway;
pub mod l3;
pub mod limits;
pub mod ndp;
pub mod packet;
pub mod packet6;
pub mod publish;
mod rawicmp;
mod sink;
pub mod tcp;
pub mod uplink;
