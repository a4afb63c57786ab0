//! Errors of the DNS crate: one variant per failing operation, with the context a user needs.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Reading a resolv.conf file failed.
    #[error("reading {path}: {source}")]
    ReadResolvConf {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Talking to an upstream server failed (bind, connect, send or receive).
    #[error("upstream {server}: {source}")]
    Upstream {
        /// The upstream server.
        server: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// An upstream server's reply was unusable.
    #[error("upstream {server}: {reason}")]
    UpstreamReply {
        /// The upstream server.
        server: SocketAddr,
        /// What was wrong with it.
        reason: String,
    },
}
