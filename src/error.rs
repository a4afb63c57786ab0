//! The daemon's error type. Each variant maps to one HTTP status in the API.

use crate::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A field of a request or config is invalid.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("no network named {0:?}")]
    NoNetwork(String),
    #[error("no router named {0:?}")]
    NoRouter(String),
    #[error("no endpoint named {name:?} on network {network:?}")]
    NoEndpoint { network: String, name: String },
    /// The request clashes with existing state.
    #[error("{}{reason}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Conflict {
        field: Option<String>,
        reason: String,
    },
    #[error("attaching {name:?}: {source}")]
    Namespace { name: String, source: NetnsError },
    #[error("attaching {name:?}: {source}")]
    Port {
        name: String,
        source: netyard_switch::sys::SysError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
}

impl DaemonError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> DaemonError {
        DaemonError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub fn conflict(field: Option<&str>, reason: impl std::fmt::Display) -> DaemonError {
        DaemonError::Conflict {
            field: field.map(str::to_string),
            reason: reason.to_string(),
        }
    }

    /// The request field at fault, if there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DaemonError::Invalid { field, .. } => Some(field),
            DaemonError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The same error naming `field` instead (an error about one item of a list, raised by
    /// a call that saw only that item).
    pub fn at(self, field: String) -> DaemonError {
        match self {
            DaemonError::Invalid { reason, .. } => DaemonError::Invalid { field, reason },
            DaemonError::Conflict { reason, .. } => DaemonError::Conflict {
                field: Some(field),
                reason,
            },
            other => other,
        }
    }

    /// Prefixes the field with a location (e.g. `endpoint[2].`), for config files.
    pub fn within(self, prefix: &str) -> DaemonError {
        match self {
            DaemonError::Invalid { field, reason } => DaemonError::Invalid {
                field: format!("{prefix}{field}"),
                reason,
            },
            DaemonError::Conflict {
                field: Some(field),
                reason,
            } => DaemonError::Conflict {
                field: Some(format!("{prefix}{field}")),
                reason,
            },
            other => other,
        }
    }
}
