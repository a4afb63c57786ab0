//! Planning: a request and the existing specs in, a new spec (or the field at fault and why)
//! out. Pure functions: no I/O, no clock, no kernel, so every rule of the API is unit-tested
//! here, as `Switch::decide` is for forwarding. What needs the kernel (host routes, the
//! underlay's MTU, a namespace's identity) is read by the caller and passed in.

mod config;
mod endpoint;
pub mod gateway_router;
pub mod link;
mod network;
pub mod router;

#[cfg(test)]
mod tests;

pub use config::{endpoint_differs, network_differs, plan_config, ConfigPlan, Kept, NewPorts};
pub use endpoint::{
    docker_mac, no_publish_on_macvlan, plan_endpoint, EndpointPlan, NsRequest, Taken,
};
pub use network::{
    parse_vtep, plan_network, plan_network_on, ParentLink, PREFIX6_MAX, PREFIX6_MIN,
};

use crate::error::DaemonError;

pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_AGING_SECS: u64 = 300;
pub const DEFAULT_MAX_MACS: u32 = 1024;
/// Upper bound of `max_flows` and `max_flows_per_endpoint` (each flow may hold a socket).
pub const MAX_FLOWS: u32 = 1_048_576;

/// How much of a bad value an error quotes: enough to recognise it, never the whole of a huge
/// one (a 1.5 MB name must not come back in full).
pub const QUOTE_MAX: usize = 40;

/// `s` in quotes, cut at [`QUOTE_MAX`] characters with its full length said when longer.
pub fn quoted(s: &str) -> String {
    let n = s.chars().count();
    if n <= QUOTE_MAX {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(QUOTE_MAX).collect();
    format!("{head:?}... ({} bytes)", s.len())
}

/// The first character of `s` that `ok` refuses, described for an error.
fn bad_char(s: &str, ok: impl Fn(char) -> bool) -> Option<String> {
    s.chars()
        .find(|c| !ok(*c))
        .map(|c| format!("character {c:?} is not allowed"))
}

/// Longest network or endpoint name (Docker's bound for network names).
pub const NAME_MAX: usize = 64;
/// Longest DNS name.
pub const DNS_NAME_MAX: usize = 253;

/// A network or endpoint name: what Docker accepts for container names.
pub fn valid_name(field: &str, s: &str) -> Result<(), DaemonError> {
    let why = if s.is_empty() {
        Some("empty".to_string())
    } else if s.len() > NAME_MAX {
        Some(format!("{} bytes long, at most {NAME_MAX}", s.len()))
    } else if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("must start with a letter or digit".to_string())
    } else {
        bad_char(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
        })
    };
    match why {
        Some(why) => Err(DaemonError::invalid(
            field,
            format!("{} is not a valid name: {why} (1-{NAME_MAX} characters: letters, digits, '_', '.', '-'; starting with a letter or digit)", quoted(s)),
        )),
        None => Ok(()),
    }
}

/// A DNS name as an alias: dot-separated labels of letters, digits, '-' and '_'.
pub fn valid_dns_name(field: &str, s: &str) -> Result<(), DaemonError> {
    let why = if s.is_empty() {
        Some("empty".to_string())
    } else if s.len() > DNS_NAME_MAX {
        Some(format!("{} bytes long, at most {DNS_NAME_MAX}", s.len()))
    } else if s.split('.').any(|l| l.is_empty() || l.len() > 63) {
        Some("labels are 1-63 characters".to_string())
    } else {
        bad_char(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
        })
    };
    match why {
        Some(why) => Err(DaemonError::invalid(
            field,
            format!(
                "{} is not a valid DNS name: {why} (labels of letters, digits, '-', '_')",
                quoted(s)
            ),
        )),
        None => Ok(()),
    }
}

/// An interface name inside a namespace, with the reason when the kernel would refuse it or
/// it names what every namespace already has.
pub fn valid_ifname(field: &str, s: &str) -> Result<(), DaemonError> {
    let why = if s.is_empty() {
        Some("empty".to_string())
    } else if s.len() > 15 {
        Some(format!("{} bytes long, at most 15 (IFNAMSIZ)", s.len()))
    } else if s == "." || s == ".." {
        Some("not a file name the kernel accepts".to_string())
    } else if s == "lo" {
        Some("every namespace has its loopback interface \"lo\" already".to_string())
    } else {
        bad_char(s, |c| {
            c != '/' && c != ':' && !c.is_whitespace() && !c.is_control()
        })
    };
    match why {
        Some(why) => Err(DaemonError::invalid(
            field,
            format!(
                "{} is not a valid interface name: {why} (1-15 characters, no '/', ':' or spaces)",
                quoted(s)
            ),
        )),
        None => Ok(()),
    }
}
