//! Upstream servers from a resolv.conf file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::error::DnsError;

/// At most this many upstream servers are used (glibc's MAXNS, and Docker's limit).
pub const MAX_UPSTREAMS: usize = 3;

/// Where systemd-resolved writes the real upstream servers when /etc/resolv.conf only points at
/// its stub (127.0.0.53).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

const SYSTEMD_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));

/// The `nameserver` addresses of resolv.conf text, in order, at most [`MAX_UPSTREAMS`], port 53.
///
/// Comments (`#`, `;`) and other options are ignored, as are addresses that do not parse
/// (including IPv6 link-local addresses with a `%zone`, which would need the host's interface
/// index; such a server is skipped with a warning).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let server = SocketAddr::new(ip, 53);
                if !servers.contains(&server) {
                    servers.push(server);
                }
            }
            Err(_) => tracing::warn!(%addr, "skipping unusable nameserver in resolv.conf"),
        }
        if servers.len() == MAX_UPSTREAMS {
            break;
        }
    }
    servers
}

/// The upstream servers of the host: the nameservers of `path` (normally /etc/resolv.conf).
///
/// If it names only systemd-resolved's stub (127.0.0.53), the servers of
/// [`SYSTEMD_RESOLV_CONF`] are used instead, as Docker does; if that file is missing or names no
/// server, the stub itself is kept (it is reachable: upstream queries leave from the daemon's
/// namespace). An empty list means no upstream: non-local names get SERVFAIL.
pub fn upstreams_from_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, DnsError> {
    upstreams_from_resolv_conf_with(path, Path::new(SYSTEMD_RESOLV_CONF))
}

/// [`upstreams_from_resolv_conf`] with the systemd-resolved file named (for tests).
pub fn upstreams_from_resolv_conf_with(
    path: &Path,
    systemd_resolv_conf: &Path,
) -> Result<Vec<SocketAddr>, DnsError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| DnsError::ReadResolvConf {
            path: p.to_path_buf(),
            source,
        })
    };
    let servers = parse_resolv_conf(&read(path)?);
    if servers.len() == 1 && servers[0].ip() == SYSTEMD_STUB {
        match read(systemd_resolv_conf) {
            Ok(text) => {
                let real = parse_resolv_conf(&text);
                if !real.is_empty() {
                    return Ok(real);
                }
                tracing::warn!(path = %systemd_resolv_conf.display(),
                    "no nameserver in systemd-resolved's resolv.conf; using its stub");
            }
            Err(e) => tracing::warn!(error = %e, "using systemd-resolved's stub 127.0.0.53"),
        }
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v: &[&str]) -> Vec<SocketAddr> {
        v.iter().map(|s| s.parse().expect("addr")).collect()
    }

    #[test]
    fn parses_nameservers_max_three() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.1\n\
                    nameserver   2001:db8::1 # trailing\n;nameserver 192.0.2.9\n\
                    nameserver fe80::1%eth0\nnameserver bogus\nnameserver 192.0.2.1\n\
                    options ndots:0\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n";
        assert_eq!(
            parse_resolv_conf(text),
            addrs(&["192.0.2.1:53", "[2001:db8::1]:53", "192.0.2.2:53"])
        );
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("nameserver\n").is_empty());
    }

    #[test]
    fn systemd_stub_is_replaced() {
        let dir = std::env::temp_dir().join(format!("netyard-dns-rc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let etc = dir.join("resolv.conf");
        let systemd = dir.join("systemd-resolv.conf");
        std::fs::write(&etc, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").expect("write");
        std::fs::write(&systemd, "nameserver 192.0.2.53\nnameserver 192.0.2.54\n").expect("write");
        assert_eq!(
            upstreams_from_resolv_conf_with(&etc, &systemd).expect("read"),
            addrs(&["192.0.2.53:53", "192.0.2.54:53"])
        );
        // systemd's file missing: keep the stub.
        let missing = dir.join("missing");
        assert_eq!(
            upstreams_from_resolv_conf_with(&etc, &missing).expect("read"),
            addrs(&["127.0.0.53:53"])
        );
        // The stub next to another server is used as is.
        std::fs::write(&etc, "nameserver 127.0.0.53\nnameserver 192.0.2.1\n").expect("write");
        assert_eq!(
            upstreams_from_resolv_conf_with(&etc, &systemd).expect("read"),
            addrs(&["127.0.0.53:53", "192.0.2.1:53"])
        );
        assert!(matches!(
            upstreams_from_resolv_conf_with(&missing, &systemd),
            Err(DnsError::ReadResolvConf { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
