//! The netyard daemon's control API as plain data: the JSON request and response types
//! (`model`) and Docker's published-port SPEC (`portspec`). The daemon (server) and the CLI
//! (client) both depend on this crate and on nothing of each other.

pub mod lab;
pub mod model;
pub mod portspec;
pub mod router;
