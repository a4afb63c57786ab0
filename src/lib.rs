//! netyard daemon library: owns state and the control API, and wires the data plane crates
//! (switch, router, dns) into one tokio process. `main.rs` only parses flags and dispatches.

pub mod api;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dnsd;
pub mod error;
pub mod ipam;
pub mod netns;
pub mod plan;
pub mod ports;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod store;

pub use error::DaemonError;
