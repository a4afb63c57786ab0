//! Published ports, the daemon's side: parse the SPECs of a request, bind the host sockets
//! (all or nothing), hand them to the network's gateway and remember what was published.
//!
//! The daemon binds the host side itself, under the state lock, so a busy port is refused
//! before anything changes and the answer names it; the gateway (`netyard_router::publish`)
//! only serves sockets it is given. A SPEC without a host IP gets one dual-stack socket on
//! `[::]` (IPV6_V6ONLY off: IPv4 clients arrive as v4-mapped addresses), or `0.0.0.0` on a
//! host without IPv6. TCP sockets get SO_REUSEADDR (as Docker's proxy and std's listeners
//! do), so a port whose connections linger in TIME_WAIT can be published again at once;
//! another listener on the port is still refused.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use netyard_api::model::PortMapping;
use netyard_api::portspec::{self, HostPort, PortRequest, PortSpec, Proto};
use netyard_router::publish::{HostSocket, PublishId, PublishRule, Publisher};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::DaemonError;

/// Most host ports one request may publish (each one a socket, so a file descriptor).
pub const MAX_PORTS_PER_REQUEST: usize = 4096;

/// Listen backlog of a published TCP port.
const BACKLOG: i32 = 1024;

/// A published port as bound (persisted as is: an ephemeral host port is recorded as the
/// port the kernel gave, so a restart binds the same one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The host IP the SPEC named; None: every address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// Without a host IP: one dual-stack socket on `[::]` (false: `0.0.0.0` only).
    pub dual_stack: bool,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl Mapping {
    /// As the API shows it.
    pub fn info(&self) -> PortMapping {
        let host_ips = match (self.host_ip, self.dual_stack) {
            (Some(ip), _) => vec![ip.to_string()],
            (None, true) => vec!["0.0.0.0".to_string(), "::".to_string()],
            (None, false) => vec!["0.0.0.0".to_string()],
        };
        PortMapping {
            host_ips,
            host_port: self.host_port,
            container_port: self.container_port,
            protocol: self.proto.to_string(),
        }
    }

    /// Could a socket for (`ip`, `port`, `proto`) clash with this mapping's?
    fn overlaps(&self, ip: Option<IpAddr>, port: u16, proto: Proto) -> bool {
        if self.proto != proto || self.host_port != port {
            return false;
        }
        match (self.host_ip, ip) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => {
                a == b || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
            }
        }
    }
}

/// A port an endpoint publishes: its mapping and the gateway rule serving it.
#[derive(Debug)]
pub struct Published {
    pub id: PublishId,
    pub mapping: Mapping,
}

/// Host sockets bound for a request and not yet handed to the gateway: dropping it closes
/// them, which is how a failed request gives its ports back.
#[derive(Debug)]
pub struct Bound {
    mapping: Mapping,
    sockets: Vec<HostSocket>,
}

/// A port already published by some endpoint of the daemon (to refuse a clash by name).
#[derive(Debug, Clone)]
pub struct Taken {
    pub network: String,
    pub endpoint: String,
    pub mapping: Mapping,
}

/// Parses the `publish` list of a request; errors name `publish[i]`.
pub fn parse_specs(specs: &[String]) -> Result<Vec<PortSpec>, DaemonError> {
    let mut out = Vec::with_capacity(specs.len());
    let mut n = 0usize;
    for (i, s) in specs.iter().enumerate() {
        let spec =
            portspec::parse(s).map_err(|e| DaemonError::invalid(format!("publish[{i}]"), e))?;
        n += spec.count();
        out.push(spec);
    }
    if n > MAX_PORTS_PER_REQUEST {
        return Err(DaemonError::invalid(
            "publish",
            format!("{n} host ports in one request (at most {MAX_PORTS_PER_REQUEST})"),
        ));
    }
    Ok(out)
}

/// Binds every host port `specs` ask for, in order; on the first failure every socket bound
/// so far is closed and the error names the SPEC (`publish[i]`) and the port.
pub fn bind_all(specs: &[PortSpec], taken: &[Taken]) -> Result<Vec<Bound>, DaemonError> {
    let mut bound = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let field = format!("publish[{i}]");
        for req in spec.requests() {
            bound.push(bind_request(&field, &req, taken)?);
        }
    }
    Ok(bound)
}

/// Binds a mapping again exactly as it was (after a restart): the same host address, port
/// and family, so clients find it where it was. Nothing else is tried on failure.
pub fn bind_exact(m: &Mapping) -> io::Result<Bound> {
    let (socket, _) = match (m.host_ip, m.dual_stack) {
        (Some(ip), _) => open(SocketAddr::new(ip, m.host_port), m.proto, true)?,
        (None, true) => open(
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), m.host_port),
            m.proto,
            false,
        )?,
        (None, false) => open(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), m.host_port),
            m.proto,
            false,
        )?,
    };
    Ok(Bound {
        mapping: m.clone(),
        sockets: vec![socket],
    })
}

/// Hands bound sockets to the gateway: each becomes a rule forwarding to `ip`'s port.
pub fn hand_over(
    publisher: Option<&Publisher>,
    bound: Vec<Bound>,
    ip: Ipv4Addr,
    ip6: Option<std::net::Ipv6Addr>,
    mac: [u8; 6],
) -> Vec<Published> {
    // No gateway (a macvlan network, which refuses publishing before binding): nothing to
    // serve the sockets, which close here.
    let Some(publisher) = publisher else {
        return Vec::new();
    };
    bound
        .into_iter()
        .map(|b| {
            let id = publisher.publish(PublishRule {
                sockets: b.sockets,
                container: SocketAddrV4::new(ip, b.mapping.container_port),
                // IPv6 clients reach the endpoint's IPv6 address when it has one.
                container6: ip6
                    .map(|a| std::net::SocketAddrV6::new(a, b.mapping.container_port, 0, 0)),
                container_mac: mac,
            });
            Published {
                id,
                mapping: b.mapping,
            }
        })
        .collect()
}

/// Stops the gateway's rules of `published` (it closes their sockets).
pub fn withdraw(publisher: Option<&Publisher>, published: &[Published]) {
    let Some(publisher) = publisher else { return };
    for p in published {
        publisher.unpublish(p.id);
    }
}

/// `8080/tcp`, or `127.0.0.1:8080/tcp` with a host IP, for messages.
fn port_name(ip: Option<IpAddr>, port: impl std::fmt::Display, proto: Proto) -> String {
    match ip {
        Some(IpAddr::V6(v6)) => format!("[{v6}]:{port}/{proto}"),
        Some(v4) => format!("{v4}:{port}/{proto}"),
        None => format!("{port}/{proto}"),
    }
}

fn check_taken(
    field: &str,
    req: &PortRequest,
    port: u16,
    taken: &[Taken],
) -> Result<(), DaemonError> {
    match taken
        .iter()
        .find(|t| t.mapping.overlaps(req.host_ip, port, req.proto))
    {
        Some(t) => Err(DaemonError::conflict(
            Some(field),
            format!(
                "host port {} is already in use (published by endpoint {:?} on network {:?})",
                port_name(req.host_ip, port, req.proto),
                t.endpoint,
                t.network
            ),
        )),
        None => Ok(()),
    }
}

fn bind_request(field: &str, req: &PortRequest, taken: &[Taken]) -> Result<Bound, DaemonError> {
    let port = match req.host_port {
        HostPort::Ephemeral => 0,
        HostPort::Exact(p) => {
            check_taken(field, req, p, taken)?;
            p
        }
        HostPort::AnyOf(range) => {
            for p in range.start..=range.end {
                if check_taken(field, req, p, taken).is_err() {
                    continue;
                }
                match bind_port(req, p) {
                    Ok(b) => return Ok(b),
                    Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
                    Err(e) => return Err(bind_error(field, req, p, e)),
                }
            }
            return Err(DaemonError::conflict(
                Some(field),
                format!(
                    "no free host port in {}",
                    port_name(req.host_ip, range, req.proto)
                ),
            ));
        }
    };
    bind_port(req, port).map_err(|e| bind_error(field, req, port, e))
}

fn bind_error(field: &str, req: &PortRequest, port: u16, e: io::Error) -> DaemonError {
    let name = if port == 0 {
        format!("an ephemeral {} port", req.proto)
    } else {
        format!("host port {}", port_name(req.host_ip, port, req.proto))
    };
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            DaemonError::conflict(Some(field), format!("{name} is already in use"))
        }
        Some(libc::EADDRNOTAVAIL) => DaemonError::invalid(
            field,
            format!(
                "{} is not an address of this host",
                req.host_ip
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "the host IP".into())
            ),
        ),
        Some(libc::EACCES) => DaemonError::invalid(
            field,
            format!(
                "{name}: permission denied (ports below net.ipv4.ip_unprivileged_port_start \
                 need CAP_NET_BIND_SERVICE)"
            ),
        ),
        _ => DaemonError::Io {
            context: format!("{field}: binding {name}"),
            source: e,
        },
    }
}

/// Binds the socket(s) of one host port (`0`: ephemeral).
fn bind_port(req: &PortRequest, port: u16) -> io::Result<Bound> {
    let (socket, host_port, dual_stack) = match req.host_ip {
        Some(ip) => {
            let (s, p) = open(SocketAddr::new(ip, port), req.proto, true)?;
            (s, p, false)
        }
        None => {
            let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match open(any6, req.proto, false) {
                Ok((s, p)) => (s, p, true),
                // No IPv6 on this host: IPv4 only.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                    ) =>
                {
                    let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    let (s, p) = open(any4, req.proto, false)?;
                    (s, p, false)
                }
                Err(e) => return Err(e),
            }
        }
    };
    Ok(Bound {
        mapping: Mapping {
            host_ip: req.host_ip,
            dual_stack,
            host_port,
            container_port: req.container_port,
            proto: req.proto,
        },
        sockets: vec![socket],
    })
}

/// One non-blocking socket bound to `addr` (listening, for TCP); returns it and its port.
fn open(addr: SocketAddr, proto: Proto, v6only: bool) -> io::Result<(HostSocket, u16)> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(p))?;
    if addr.is_ipv6() {
        s.set_only_v6(v6only)?;
    }
    if proto == Proto::Tcp {
        s.set_reuse_address(true)?;
    }
    s.bind(&addr.into())?;
    if proto == Proto::Tcp {
        s.listen(BACKLOG)?;
    }
    s.set_nonblocking(true)?;
    let port = s
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
    let hs = match proto {
        Proto::Tcp => HostSocket::Tcp(s.into()),
        Proto::Udp => HostSocket::Udp(s.into()),
    };
    Ok((hs, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ip: Option<&str>, port: u16, proto: Proto) -> Mapping {
        Mapping {
            host_ip: ip.map(|s| s.parse().unwrap()),
            dual_stack: ip.is_none(),
            host_port: port,
            container_port: 80,
            proto,
        }
    }

    #[test]
    fn overlap_rules() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let all = m(None, 8080, Proto::Tcp);
        assert!(all.overlaps(ip("127.0.0.1"), 8080, Proto::Tcp));
        assert!(all.overlaps(None, 8080, Proto::Tcp));
        assert!(!all.overlaps(None, 8080, Proto::Udp));
        assert!(!all.overlaps(None, 8081, Proto::Tcp));
        let lo = m(Some("127.0.0.1"), 8080, Proto::Tcp);
        assert!(lo.overlaps(ip("127.0.0.1"), 8080, Proto::Tcp));
        assert!(!lo.overlaps(ip("127.0.0.2"), 8080, Proto::Tcp));
        assert!(lo.overlaps(ip("0.0.0.0"), 8080, Proto::Tcp));
        assert!(!lo.overlaps(ip("::"), 8080, Proto::Tcp));
        assert!(lo.overlaps(None, 8080, Proto::Tcp));
    }

    #[test]
    fn info_lists_host_addresses() {
        let mut a = m(None, 8080, Proto::Udp);
        assert_eq!(a.info().host_ips, vec!["0.0.0.0", "::"]);
        assert_eq!(a.info().protocol, "udp");
        a.dual_stack = false;
        assert_eq!(a.info().host_ips, vec!["0.0.0.0"]);
        assert_eq!(m(Some("::1"), 1, Proto::Tcp).info().host_ips, vec!["::1"]);
    }

    #[test]
    fn spec_errors_name_the_index() {
        let e = parse_specs(&["80".into(), "0".into()]).unwrap_err();
        assert_eq!(e.field(), Some("publish[1]"));
        assert!(
            e.to_string().contains("container port 0 out of range"),
            "{e}"
        );
        let e = parse_specs(&["1-5000".into()]).unwrap_err();
        assert_eq!(e.field(), Some("publish"));
    }

    #[test]
    fn binds_ephemeral_and_refuses_busy() {
        // Loopback in whatever namespace the unit tests run in; ephemeral ports only.
        let specs = parse_specs(&["127.0.0.1::80".into(), "127.0.0.1::53/udp".into()]).unwrap();
        let bound = bind_all(&specs, &[]).unwrap();
        assert_eq!(bound.len(), 2);
        let tcp = bound[0].mapping.host_port;
        assert_ne!(tcp, 0);
        // The same port again, in the same process: refused, named.
        let again = parse_specs(&[format!("127.0.0.1:{tcp}:81")]).unwrap();
        let e = bind_all(&again, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("publish[0]: host port 127.0.0.1:{tcp}/tcp is already in use")
        );
        // Taken by another endpoint (the registry answers first, naming it).
        let taken = vec![Taken {
            network: "lab".into(),
            endpoint: "web".into(),
            mapping: bound[0].mapping.clone(),
        }];
        let e = bind_all(&again, &taken).unwrap_err();
        assert!(
            e.to_string().contains("published by endpoint \"web\""),
            "{e}"
        );
        drop(bound);
        // Closed with the request: free again.
        bind_all(&again, &[]).unwrap();
    }

    #[test]
    fn range_takes_a_free_port() {
        let first = bind_all(&parse_specs(&["127.0.0.1::80".into()]).unwrap(), &[]).unwrap();
        let p = first[0].mapping.host_port;
        if p == u16::MAX {
            return;
        }
        let spec = format!("127.0.0.1:{p}-{}:80", p + 1);
        let b = bind_all(&parse_specs(&[spec]).unwrap(), &[]);
        // p is busy; p+1 is free unless something else holds it.
        if let Ok(b) = b {
            assert_eq!(b[0].mapping.host_port, p + 1);
        }
    }
}
