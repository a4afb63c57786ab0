//! Kernel-backed ports. Every `unsafe` call of the switch crate lives under this module.
// HELPER-2 fills this in: tap.rs (TapPort), packet.rs (PacketPort), mem.rs (socketpair test port).
