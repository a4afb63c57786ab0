//! The TCP relay: endpoints' TCP connections end in netyard and continue on host sockets
//! (egress), and connections accepted on published host ports continue into endpoints.
//!
//! Why a relay of our own and not smoltcp: smoltcp handles one MTU-sized segment at a time
//! and copies through its socket buffers, which caps a connection far below what a TAP with
//! offloads delivers. The relay takes the endpoint's 64 KiB GSO super-frames as single
//! segments (one `write` to the host socket each) and sends 64 KiB GSO super-frames back,
//! which the switch hands whole to the endpoint's TAP. TCP's own machinery on the endpoint's
//! side is kept minimal because the link is virtual (see [`conn`]).
//!
//! - [`seg`]: parsing and building segments (pure).
//! - [`ring`]: the per-direction byte buffers.
//! - [`conn`]: one connection's state machine (pure: I/O through two small traits).
//! - [`relay`]: the driver on the gateway task (host sockets, epoll, published listeners).

pub mod conn;
pub(crate) mod relay;
pub mod ring;
pub mod seg;
