//! `netyard pasta` (or netyard run as `pasta`): the command line Podman 5 runs its network
//! helper with, served by netyard's engine.
//!
//! Podman 5 runs `pasta --config-net [-t|-u SPEC]... [-T none] [-U none] --dns-forward
//! 169.254.1.1 --no-map-gw --quiet --netns PATH [--map-guest-addr 169.254.1.2] [--pid FILE]`,
//! waits for it to exit 0 (pasta forks once the namespace is ready) and expects it to quit
//! on its own when the namespace goes away. This front does the same: it parses pasta's
//! options (`options`, `ports`), chooses the namespace's addresses (`layout`), forks
//! (`background`), and the child runs one network with one endpoint, the namespace's TAP, on
//! the daemon's engine (`crate::fronts::engine`), publishes the `-t`/`-u` ports there (the
//! container sees each client's own address), and quits when the namespace's path (or the
//! PID's process) is gone.

pub mod background;
pub mod help;
pub mod layout;
pub mod options;
pub mod ports;
mod serve;

use std::ffi::OsString;

use options::{Parsed, UsageError};
use ports::Ephemeral;

/// Runs the front with the arguments after the name it was invoked by; returns the process
/// exit status (pasta's: 0, or 1 for any error).
pub fn main(args: Vec<OsString>) -> i32 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| Ephemeral::parse(&t))
        .unwrap_or_default();
    let opts = match options::parse(args, ephemeral) {
        Ok(Parsed::Help) => {
            print!("{}", help::usage("pasta"));
            return 0;
        }
        Ok(Parsed::Version) => {
            print!("{}", help::version());
            return 0;
        }
        Ok(Parsed::Run(o)) => o,
        Err(e) => return usage_error(&e),
    };
    if let Err(e) = opts.check() {
        return usage_error(&e);
    }
    serve::run(*opts)
}

/// Prints a refused command line as pasta does: getopt's errors with the program name and
/// the usage after them, the others alone; status 1.
fn usage_error(e: &UsageError) -> i32 {
    if e.shows_usage() {
        eprintln!("pasta: {e}");
        eprint!("{}", help::usage("pasta"));
    } else {
        eprintln!("{e}");
    }
    1
}
