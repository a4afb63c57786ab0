//! netyard's L2 data plane: one learning switch per network.
//!
//! Layering (see docs/ARCHITECTURE.md):
//! - [`wire`]: typed views over frame bytes (virtio-net header, Ethernet, VXLAN). No I/O.
//! - [`gso`]: software segmentation of GSO super-frames and checksum completion, for egress
//!   ports that cannot take offloaded frames. No I/O.
//! - [`fdb`] and [`bridge`]: MAC learning/ageing and the forwarding decision, pure functions of
//!   (frame, now) over the table.
//! - [`mld`]: MLD snooping, the pure classification of IPv6 multicast and the table of who
//!   listens to which group, so that IPv6 multicast reaches its listeners, not every port.
//! - [`security`]: port security, the pure check of a frame's source MAC and addresses against
//!   the endpoint's ([`PortSecurity`]), which the bridge runs before learning.
//! - [`overlay`]: the VXLAN tunnel's remote MAC table (MAC -> VTEP, with ageing), flood list and
//!   flow hash. No I/O.
//! - [`impair`]: link impairment (netem's delay, loss, rate..., carrier off) per port and
//!   direction: a pure model, and the hooks and release task the driver uses.
//! - [`port`]: the one `Port` trait every port kind implements; [`sys`] holds the kernel-backed
//!   ones (TAP, AF_PACKET, VXLAN) and owns every `unsafe` call.
//! - [`handoff`]: an in-process port whose frames are handed to a consumer in this process
//!   (the router's gateway) as buffers, without a syscall or a copy.
//! - [`driver`]: the tokio tasks that move bytes: drain a ready port until EAGAIN within a
//!   budget, ask the bridge for a verdict, write to the egress port(s).
//!
//! Every frame inside the switch carries a 10-byte virtio-net header in front of the Ethernet
//! frame ([`wire::vnet::VNET_HDR_LEN`]); ports without offloads read/write a zeroed one.

pub mod batch_floor;
pub mod bridge;
pub mod busy_poll;
pub mod capture;
pub mod counters;
pub mod driver;
pub mod fdb;
pub mod fuzzing;
pub mod gso;
pub mod handoff;
pub mod impair;
pub mod mld;
pub mod overlay;
pub mod port;
pub mod security;
pub mod sys;
pub mod wire;

pub use bridge::{Switch, SwitchConfig, SwitchPort, Verdict};
pub use counters::{DropReason, PortCounters, PortStats};
pub use fdb::{Fdb, FdbEntry};
pub use port::{Port, PortCaps, PortId};
pub use security::PortSecurity;
pub use wire::ethernet::MacAddr;
