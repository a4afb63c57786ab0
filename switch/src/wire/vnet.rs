//! The legacy virtio-net header (`struct virtio_net_hdr`, 10 bytes) that TAP (IFF_VNET_HDR)
//! and AF_PACKET (PACKET_VNET_HDR) exchange with each frame. Fields are in native byte order.
// HELPER-1 fills this in.

/// Length of the legacy virtio-net header.
pub const VNET_HDR_LEN: usize = 10;
