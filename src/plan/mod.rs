//! Planning: a request and the existing specs in, a new spec (or the field at fault and why)
//! out. Pure functions: no I/O, no clock, no kernel, so every rule of the API is unit-tested
//! here, as `Switch::decide` is for forwarding. What needs the kernel (host routes, the
//! underlay's MTU, a namespace's identity) is read by the caller and passed in.

mod config;
mod endpoint;
mod network;

#[cfg(test)]
mod tests;

pub use config::{endpoint_differs, network_differs};
pub use endpoint::{docker_mac, plan_endpoint, EndpointPlan, NsRequest, Taken};
pub use network::{parse_vtep, plan_network};

use crate::error::DaemonError;

pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_AGING_SECS: u64 = 300;
pub const DEFAULT_MAX_MACS: u32 = 1024;
/// Upper bound of `max_flows` and `max_flows_per_endpoint` (each flow may hold a socket).
pub const MAX_FLOWS: u32 = 1_048_576;

/// A network or endpoint name: what Docker accepts for container names.
pub fn valid_name(field: &str, s: &str) -> Result<(), DaemonError> {
    let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if s.is_empty() || s.len() > 64 || !ok_first || !ok_rest {
        return Err(DaemonError::invalid(
            field,
            format!("{s:?} is not a valid name (1-64 characters: letters, digits, '_', '.', '-'; starting with a letter or digit)"),
        ));
    }
    Ok(())
}

/// A DNS name as an alias: dot-separated labels of letters, digits, '-' and '_'.
pub fn valid_dns_name(field: &str, s: &str) -> Result<(), DaemonError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !ok {
        return Err(DaemonError::invalid(
            field,
            format!("{s:?} is not a valid DNS name (labels of letters, digits, '-', '_')"),
        ));
    }
    Ok(())
}
