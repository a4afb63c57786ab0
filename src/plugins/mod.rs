//! Runtime plugins: the `netyard` binary speaking the contracts through which runtimes plug
//! networks in (CNI, netavark's plugin API, Docker's remote network and IPAM drivers). Each is
//! a client of the running daemon, which owns the state; `daemon` holds what they share.

pub mod cni;
pub mod daemon;
pub mod docker;
pub mod netavark;
