//! netyard daemon library: owns state and the control API, and wires the data plane crates
//! (switch, router, dns) into one tokio process. `main.rs` only parses flags and dispatches.

pub mod api;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dnsd;
pub mod error;
pub mod fronts;
pub mod fuzzing;
pub mod ipam;
pub mod joins;
pub mod lab;
pub mod metrics;
pub mod netns;
pub mod plan;
pub mod plugins;
pub mod ports;
pub mod registry;
pub mod runtime;
pub mod service;
pub mod spec;
pub mod state;
pub mod store;

pub use error::DaemonError;

/// Which runtime contract the process was started under, if any: `slirp4netns`/`pasta` as
/// the program name (a link) or the first argument, `CNI_COMMAND` in the environment (a CNI
/// plugin), netavark's plugin subcommands (`create`, `setup`, `teardown`, `info`: netavark
/// runs its plugin `DRIVER` as `DRIVER setup NETNS`), or `docker-plugin`. Returns the exit
/// status when one of them ran, `None` for netyard's own command line.
pub fn front_door(argv: Vec<std::ffi::OsString>) -> Option<i32> {
    let program = argv
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("netyard")
        .to_string();
    let first = argv
        .get(1)
        .and_then(|a| a.to_str())
        .unwrap_or("")
        .to_string();
    let rest = |skip: usize| argv.iter().skip(skip).cloned().collect::<Vec<_>>();
    match (program.as_str(), first.as_str()) {
        ("slirp4netns", _) => return Some(fronts::slirp4netns::main(rest(1))),
        ("pasta", _) | ("passt", _) => return Some(fronts::pasta::main(rest(1))),
        (_, "slirp4netns") => return Some(fronts::slirp4netns::main(rest(2))),
        (_, "pasta") => return Some(fronts::pasta::main(rest(2))),
        _ => {}
    }
    if std::env::var_os("CNI_COMMAND").is_some() {
        return Some(plugins::cni::main(rest(1)));
    }
    match first.as_str() {
        "create" | "setup" | "teardown" | "info" => Some(plugins::netavark::main(rest(1))),
        "docker-plugin" => Some(plugins::docker::main(rest(2))),
        // A node's holder process, started by the daemon (`lab::init`).
        "node-init" => Some(lab::init::main(rest(2))),
        _ => None,
    }
}
