//! CNI errors: the spec's error JSON (`cniVersion`, `code`, `msg`, `details`) with its
//! well-known codes, and how a refusal of the daemon maps onto them.

use netyard_cli::ClientError;
use serde::Serialize;

/// The spec's well-known error codes (1-99 are reserved to the spec; 100 and up are the
/// plugin's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the configuration's cniVersion is not one the plugin speaks.
    IncompatibleVersion,
    /// 2: a field of the network configuration the plugin does not support.
    UnsupportedField,
    /// 3: the container (its namespace) is unknown or gone: no cleanup needed.
    UnknownContainer,
    /// 4: a required CNI_* environment variable is missing or invalid.
    InvalidEnvironment,
    /// 5: an I/O failure.
    IoFailure,
    /// 6: stdin could not be decoded (not JSON).
    DecodingFailure,
    /// 7: the network configuration is invalid.
    InvalidConfig,
    /// 11: a transient condition (the daemon is not reachable): try again later.
    TryAgainLater,
    /// 50 (STATUS, spec 1.1): the plugin cannot serve ADD now.
    NotAvailable,
    /// 100: the daemon refused the request (an address, MAC, name or host port in use).
    Refused,
    /// 101: CHECK found the container's networking not as ADD left it.
    CheckFailed,
}

impl Code {
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::IoFailure => 5,
            Code::DecodingFailure => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::Refused => 100,
            Code::CheckFailed => 101,
        }
    }
}

/// A failed CNI command: printed on stdout as the spec's error JSON, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if .details.is_empty() { String::new() } else { format!(": {}", .details) })]
pub struct CniError {
    pub code: Code,
    /// What failed, naming the field or variable at fault.
    pub msg: String,
    /// Why (the daemon's or the system's words).
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A bad field of the network configuration (code 7), named by its JSON path.
    pub fn config(field: &str, reason: impl Into<String>) -> CniError {
        CniError::new(Code::InvalidConfig, format!("invalid {field}"), reason)
    }

    /// A missing or bad environment variable (code 4).
    pub fn env(var: &str, reason: impl Into<String>) -> CniError {
        CniError::new(Code::InvalidEnvironment, format!("invalid {var}"), reason)
    }

    /// The spec's error JSON, in `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire {
            cni_version,
            code: self.code.number(),
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_default()
    }

    /// A failed call to the daemon during `what` ("ADD" ...). The daemon's field names are
    /// the configuration's (subnet, gateway, mtu ...) or the runtime's (netns -> CNI_NETNS,
    /// ifname -> CNI_IFNAME, ip/mac/publish -> runtimeConfig), so the message names the one
    /// the user can fix.
    pub fn from_daemon(what: &str, e: &ClientError) -> CniError {
        match e {
            ClientError::Connect { .. } => CniError::new(
                Code::TryAgainLater,
                format!("{what}: the netyard daemon is not reachable"),
                e.to_string(),
            ),
            ClientError::Protocol { .. } => CniError::new(
                Code::IoFailure,
                format!("{what}: talking to the daemon"),
                e.to_string(),
            ),
            ClientError::Api(err, status) => {
                let field = err.field.as_deref().unwrap_or("");
                let (code, named) = match field {
                    "netns" | "pid" => (Code::UnknownContainer, "CNI_NETNS".to_string()),
                    "ifname" => (Code::InvalidEnvironment, "CNI_IFNAME".to_string()),
                    "name" if status.as_u16() == 409 => (Code::Refused, "endpoint name".into()),
                    "name" => (Code::InvalidConfig, "network".to_string()),
                    "ip" | "ip6" => (Code::Refused, "runtimeConfig.ips".to_string()),
                    "mac" => (Code::Refused, "runtimeConfig.mac".to_string()),
                    f if f.starts_with("aliases") => {
                        (Code::InvalidConfig, format!("runtimeConfig.{f}"))
                    }
                    f if f.starts_with("publish") => (
                        Code::Refused,
                        format!(
                            "runtimeConfig.portMappings{}",
                            f.trim_start_matches("publish")
                        ),
                    ),
                    "" if status.is_server_error() => (Code::IoFailure, String::new()),
                    "" => (Code::Refused, String::new()),
                    f if status.as_u16() == 409 => (Code::Refused, f.to_string()),
                    f => (Code::InvalidConfig, f.to_string()),
                };
                let msg = if named.is_empty() {
                    format!("{what}: the netyard daemon refused")
                } else {
                    format!("{what}: invalid {named}")
                };
                CniError::new(code, msg, err.error.clone())
            }
        }
    }
}
