//! Rootless runtime fronts: netyard speaking the command line of the per-container network
//! helpers that rootless Podman and RootlessKit start (slirp4netns, pasta). Each front runs
//! one network with one endpoint in its own process, on the daemon's engine (the same
//! `State`, ports and gateway), with no daemon, API socket or state directory.

pub mod engine;
pub mod pasta;
pub mod slirp4netns;
