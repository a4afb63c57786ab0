//! Docker's published-port SPEC: `[HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp]`.
//!
//! Pure parsing and formatting, shared by the CLI and the daemon (which parses the SPECs an
//! API request carries, so the config file and the API accept the same strings).
//!
//! Semantics, as Docker's:
//! - no host port (`80`, `:80`, `127.0.0.1::80`): an ephemeral host port;
//! - a host range with a single container port (`8000-8010:80`): one free port of the range;
//! - equal-length ranges (`8080-8081:80-81`) map pairwise; any other pair of ranges is refused;
//! - no host IP: every address of the host, IPv4 and IPv6;
//! - an IPv6 host IP goes in brackets (`[::1]:8080:80`);
//! - the protocol defaults to tcp.
//!
//! Ports are 1 to 65535 (0 is refused: leave the host port out for an ephemeral one).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::model::PortMapping;

/// Transport protocol of a published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = Reason;
    fn from_str(s: &str) -> Result<Proto, Reason> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "" => Err(Reason::EmptyProto),
            _ => Err(Reason::BadProto(s.to_string())),
        }
    }
}

/// An inclusive port range (`start == end` for a single port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(p: u16) -> PortRange {
        PortRange { start: p, end: p }
    }

    /// Number of ports in the range.
    pub fn count(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    pub fn is_single(&self) -> bool {
        self.start == self.end
    }

    pub fn contains(&self, p: u16) -> bool {
        (self.start..=self.end).contains(&p)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A parsed SPEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// None: every address of the host.
    pub host_ip: Option<IpAddr>,
    /// None: an ephemeral port for each container port.
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub proto: Proto,
}

/// Which host port one container port gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPort {
    /// The kernel picks one.
    Ephemeral,
    Exact(u16),
    /// The first free port of the range.
    AnyOf(PortRange),
}

/// One container port to publish, as a SPEC expands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: Option<IpAddr>,
    pub host_port: HostPort,
    pub container_port: u16,
    pub proto: Proto,
}

/// Why a SPEC does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("empty")]
    Empty,
    #[error("contains whitespace")]
    Whitespace,
    #[error("empty protocol after '/' (tcp or udp)")]
    EmptyProto,
    #[error("protocol {0:?} is not supported (tcp or udp)")]
    BadProto(String),
    #[error("missing container port")]
    NoContainerPort,
    #[error("{which} port {value:?} is not a number")]
    NotANumber { which: &'static str, value: String },
    #[error("{which} port {value} out of range (1 to 65535)")]
    OutOfRange { which: &'static str, value: u64 },
    #[error("{which} port range {start}-{end} is reversed")]
    Reversed {
        which: &'static str,
        start: u16,
        end: u16,
    },
    #[error(
        "host ports {host} and container ports {container} differ in length (give equal-length \
         ranges, or one container port for any free port of the host range)"
    )]
    RangeMismatch {
        host: PortRange,
        container: PortRange,
    },
    #[error("host IP {0:?} is not an IP address")]
    BadIp(String),
    #[error("empty host IP (leave it out, with its ':', for every address)")]
    EmptyIp,
    #[error("host IP {0:?}: only IPv6 addresses go in brackets")]
    BracketedV4(String),
    #[error("unclosed '[' in the host IP")]
    Unclosed,
    #[error("an IPv6 host IP must be in brackets, e.g. [::1]:8080:80")]
    BareV6,
    #[error("expected [HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp]")]
    Shape,
}

/// A SPEC that does not parse: the SPEC and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec:?}: {reason}")]
pub struct PortSpecError {
    pub spec: String,
    pub reason: Reason,
}

/// Parses one SPEC.
pub fn parse(spec: &str) -> Result<PortSpec, PortSpecError> {
    parse_inner(spec).map_err(|reason| PortSpecError {
        spec: spec.to_string(),
        reason,
    })
}

fn parse_inner(s: &str) -> Result<PortSpec, Reason> {
    if s.is_empty() {
        return Err(Reason::Empty);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(Reason::Whitespace);
    }
    let (ports, proto) = match s.rsplit_once('/') {
        Some((p, proto)) => (p, proto.parse::<Proto>()?),
        None => (s, Proto::Tcp),
    };
    let (host_ip, rest) = split_ip(ports)?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (host, container) = match (host_ip.is_some(), parts.as_slice()) {
        (true, [h, c]) => (*h, *c),
        (true, _) => return Err(Reason::Shape),
        (false, [c]) => ("", *c),
        (false, [h, c]) => (*h, *c),
        (false, [ip, h, c]) => {
            if ip.is_empty() {
                return Err(Reason::EmptyIp);
            }
            let ip: IpAddr = ip.parse().map_err(|_| Reason::BadIp(ip.to_string()))?;
            return finish(Some(ip), h, c, proto);
        }
        (false, _) => {
            // More than two colons outside brackets: most likely a bare IPv6 address.
            let head = rest.rsplitn(3, ':').nth(2).unwrap_or("");
            if head.parse::<std::net::Ipv6Addr>().is_ok() || head.contains("::") {
                return Err(Reason::BareV6);
            }
            return Err(Reason::Shape);
        }
    };
    finish(host_ip, host, container, proto)
}

/// Splits a leading `[IPv6]:` off; returns the address and the rest after the ':'.
fn split_ip(s: &str) -> Result<(Option<IpAddr>, &str), Reason> {
    let Some(inner) = s.strip_prefix('[') else {
        return Ok((None, s));
    };
    let (ip, rest) = inner.split_once(']').ok_or(Reason::Unclosed)?;
    if ip.is_empty() {
        return Err(Reason::EmptyIp);
    }
    let addr: IpAddr = ip.parse().map_err(|_| Reason::BadIp(ip.to_string()))?;
    if addr.is_ipv4() {
        return Err(Reason::BracketedV4(ip.to_string()));
    }
    let rest = rest.strip_prefix(':').ok_or(Reason::Shape)?;
    Ok((Some(addr), rest))
}

fn finish(
    host_ip: Option<IpAddr>,
    host: &str,
    container: &str,
    proto: Proto,
) -> Result<PortSpec, Reason> {
    if container.is_empty() {
        return Err(Reason::NoContainerPort);
    }
    let container_ports = parse_range("container", container)?;
    let host_ports = if host.is_empty() {
        None
    } else {
        Some(parse_range("host", host)?)
    };
    if let Some(h) = host_ports {
        if h.count() != container_ports.count() && !container_ports.is_single() {
            return Err(Reason::RangeMismatch {
                host: h,
                container: container_ports,
            });
        }
    }
    Ok(PortSpec {
        host_ip,
        host_ports,
        container_ports,
        proto,
    })
}

fn parse_range(which: &'static str, s: &str) -> Result<PortRange, Reason> {
    match s.split_once('-') {
        None => Ok(PortRange::single(parse_port(which, s)?)),
        Some((a, b)) => {
            let start = parse_port(which, a)?;
            let end = parse_port(which, b)?;
            if start > end {
                return Err(Reason::Reversed { which, start, end });
            }
            Ok(PortRange { start, end })
        }
    }
}

fn parse_port(which: &'static str, s: &str) -> Result<u16, Reason> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::NotANumber {
            which,
            value: s.to_string(),
        });
    }
    let v: u64 = s.parse().unwrap_or(u64::MAX);
    match u16::try_from(v) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Reason::OutOfRange { which, value: v }),
    }
}

impl PortSpec {
    /// Number of container ports (and so of host ports) the SPEC publishes.
    pub fn count(&self) -> usize {
        self.container_ports.count()
    }

    /// One request per container port.
    pub fn requests(&self) -> Vec<PortRequest> {
        (self.container_ports.start..=self.container_ports.end)
            .map(|c| {
                let host_port = match self.host_ports {
                    None => HostPort::Ephemeral,
                    Some(h) if self.container_ports.is_single() && !h.is_single() => {
                        HostPort::AnyOf(h)
                    }
                    // Equal lengths (checked by the parser): pairwise.
                    Some(h) => HostPort::Exact(h.start + (c - self.container_ports.start)),
                };
                PortRequest {
                    host_ip: self.host_ip,
                    host_port,
                    container_port: c,
                    proto: self.proto,
                }
            })
            .collect()
    }

    /// Whether a published mapping is one this SPEC names (for `unpublish`): same protocol,
    /// container port in the SPEC's range and, when the SPEC gives them, the same host IP (as
    /// it was requested: `None` for every address) and a host port the SPEC covers (pairwise
    /// for equal-length ranges). What the SPEC leaves out matches anything.
    pub fn matches(
        &self,
        host_ip: Option<IpAddr>,
        host_port: u16,
        container_port: u16,
        proto: Proto,
    ) -> bool {
        if proto != self.proto || !self.container_ports.contains(container_port) {
            return false;
        }
        if self.host_ip.is_some() && self.host_ip != host_ip {
            return false;
        }
        match self.host_ports {
            None => true,
            Some(h) if self.container_ports.is_single() => h.contains(host_port),
            Some(h) => {
                u32::from(host_port)
                    == u32::from(h.start) + u32::from(container_port)
                        - u32::from(self.container_ports.start)
            }
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match (self.host_ports, self.host_ip) {
            (Some(h), _) => write!(f, "{h}:")?,
            (None, Some(_)) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container_ports, self.proto)
    }
}

/// `0.0.0.0:8080->80/tcp`: one host address of a mapping, as `docker ps` shows it (`::` as
/// `:::8080`, like Docker; other IPv6 addresses in brackets).
fn format_one(ip: &str, m: &PortMapping) -> String {
    let host = match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if !v6.is_unspecified() => format!("[{v6}]"),
        _ => ip.to_string(),
    };
    format!(
        "{host}:{}->{}/{}",
        m.host_port, m.container_port, m.protocol
    )
}

/// The PORTS column of `ps`: every host address of every mapping, comma-separated, as
/// `docker ps` writes it (`0.0.0.0:8080->80/tcp, :::8080->80/tcp`).
pub fn format_ports(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .flat_map(|m| m.host_ips.iter().map(move |ip| format_one(ip, m)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PortSpec {
        parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> Reason {
        match parse(s) {
            Ok(p) => panic!("{s:?} should not parse, got {p:?}"),
            Err(e) => {
                assert_eq!(e.spec, s);
                e.reason
            }
        }
    }

    fn r(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    #[test]
    fn container_port_only() {
        let p = ok("80");
        assert_eq!(
            p,
            PortSpec {
                host_ip: None,
                host_ports: None,
                container_ports: r(80, 80),
                proto: Proto::Tcp
            }
        );
        assert_eq!(p.requests()[0].host_port, HostPort::Ephemeral);
        assert_eq!(ok("53/udp").proto, Proto::Udp);
        assert_eq!(ok("53/UDP").proto, Proto::Udp);
        assert_eq!(ok("80/tcp"), p);
        // Docker's ":80": no host port either.
        assert_eq!(ok(":80"), p);
    }

    #[test]
    fn host_and_container_port() {
        let p = ok("8080:80");
        assert_eq!(p.host_ports, Some(r(8080, 8080)));
        assert_eq!(p.container_ports, r(80, 80));
        assert_eq!(
            p.requests(),
            vec![PortRequest {
                host_ip: None,
                host_port: HostPort::Exact(8080),
                container_port: 80,
                proto: Proto::Tcp
            }]
        );
        assert_eq!(ok("65535:1/udp").host_ports, Some(r(65535, 65535)));
        // Leading zeros are decimal, as in Docker.
        assert_eq!(ok("08080:080").host_ports, Some(r(8080, 8080)));
    }

    #[test]
    fn host_ip() {
        let p = ok("127.0.0.1:8080:80");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        let p = ok("127.0.0.1::80");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.host_ports, None);
        let p = ok("[::1]:8080:80");
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(p.host_ports, Some(r(8080, 8080)));
        let p = ok("[fe80::1]::53/udp");
        assert_eq!(p.host_ports, None);
        assert_eq!(p.proto, Proto::Udp);
        let p = ok("[::]:9000-9001:90-91");
        assert_eq!(p.host_ip, Some("::".parse().unwrap()));
        assert_eq!(ok("0.0.0.0:1:2").host_ip, Some("0.0.0.0".parse().unwrap()));
    }

    #[test]
    fn ranges() {
        let p = ok("8080-8082:80-82");
        let hosts: Vec<HostPort> = p.requests().iter().map(|q| q.host_port).collect();
        assert_eq!(
            hosts,
            vec![
                HostPort::Exact(8080),
                HostPort::Exact(8081),
                HostPort::Exact(8082)
            ]
        );
        let cports: Vec<u16> = p.requests().iter().map(|q| q.container_port).collect();
        assert_eq!(cports, vec![80, 81, 82]);
        let p = ok("8000-8010:80");
        assert_eq!(p.requests().len(), 1);
        assert_eq!(p.requests()[0].host_port, HostPort::AnyOf(r(8000, 8010)));
        let p = ok("80-81/udp");
        assert_eq!(p.requests().len(), 2);
        assert!(p
            .requests()
            .iter()
            .all(|q| q.host_port == HostPort::Ephemeral));
        // A one-port range is a single port.
        assert_eq!(ok("80-80").container_ports, r(80, 80));
        assert_eq!(
            ok("8080-8080:80").requests()[0].host_port,
            HostPort::Exact(8080)
        );
    }

    #[test]
    fn bad_ports() {
        assert_eq!(
            err("0"),
            Reason::OutOfRange {
                which: "container",
                value: 0
            }
        );
        assert_eq!(
            err("0:80"),
            Reason::OutOfRange {
                which: "host",
                value: 0
            }
        );
        assert_eq!(
            err("65536:80"),
            Reason::OutOfRange {
                which: "host",
                value: 65536
            }
        );
        assert!(matches!(
            err("99999999999999999999999:80"),
            Reason::OutOfRange { which: "host", .. }
        ));
        assert!(matches!(err("http"), Reason::NotANumber { .. }));
        assert!(matches!(err("+80"), Reason::NotANumber { .. }));
        assert!(matches!(err("-80"), Reason::NotANumber { .. }));
        assert!(matches!(err("80-"), Reason::NotANumber { .. }));
        assert!(matches!(err("80-81-82"), Reason::NotANumber { .. }));
        assert_eq!(err("8080:"), Reason::NoContainerPort);
        assert_eq!(err("/tcp"), Reason::NoContainerPort);
    }

    #[test]
    fn bad_ranges() {
        assert_eq!(
            err("81-80"),
            Reason::Reversed {
                which: "container",
                start: 81,
                end: 80
            }
        );
        assert_eq!(
            err("9000-8000:80"),
            Reason::Reversed {
                which: "host",
                start: 9000,
                end: 8000
            }
        );
        assert_eq!(
            err("8080-8082:80-81"),
            Reason::RangeMismatch {
                host: r(8080, 8082),
                container: r(80, 81)
            }
        );
        // A single host port for a container range: Docker refuses it too.
        assert_eq!(
            err("8080:80-81"),
            Reason::RangeMismatch {
                host: r(8080, 8080),
                container: r(80, 81)
            }
        );
    }

    #[test]
    fn bad_proto() {
        assert_eq!(err("80/sctp"), Reason::BadProto("sctp".into()));
        assert_eq!(err("80/"), Reason::EmptyProto);
        // Split at the last '/': "80/tcp" is then no port number.
        assert_eq!(
            err("80/tcp/udp"),
            Reason::NotANumber {
                which: "container",
                value: "80/tcp".into()
            }
        );
    }

    #[test]
    fn bad_ip() {
        assert_eq!(err("localhost:8080:80"), Reason::BadIp("localhost".into()));
        assert_eq!(err("1.2.3:8080:80"), Reason::BadIp("1.2.3".into()));
        assert_eq!(
            err("[1.2.3.4]:8080:80"),
            Reason::BracketedV4("1.2.3.4".into())
        );
        assert_eq!(err("[::1:8080:80"), Reason::Unclosed);
        assert_eq!(err("[nope]:8080:80"), Reason::BadIp("nope".into()));
        assert_eq!(err("[]:8080:80"), Reason::EmptyIp);
        assert_eq!(err("::80"), Reason::EmptyIp);
        assert_eq!(err("::1:8080:80"), Reason::BareV6);
        assert_eq!(err("fe80::1:8080:80"), Reason::BareV6);
        // Brackets need the IP form's three parts.
        assert_eq!(err("[::1]:80"), Reason::Shape);
        assert_eq!(err("[::1]8080:80"), Reason::Shape);
        assert_eq!(err("1:2:3:4:5"), Reason::Shape);
    }

    #[test]
    fn junk() {
        assert_eq!(err(""), Reason::Empty);
        assert_eq!(err(" 80"), Reason::Whitespace);
        assert_eq!(err("80 :80"), Reason::Whitespace);
        assert!(matches!(err("8o"), Reason::NotANumber { .. }));
    }

    #[test]
    fn messages_name_spec_and_reason() {
        let e = parse("8080:0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"8080:0\": container port 0 out of range (1 to 65535)"
        );
        let e = parse("80/sctp").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"80/sctp\": protocol \"sctp\" is not supported (tcp or udp)"
        );
    }

    #[test]
    fn display_is_canonical() {
        for (input, want) in [
            ("80", "80/tcp"),
            ("8080:80/udp", "8080:80/udp"),
            ("127.0.0.1::80", "127.0.0.1::80/tcp"),
            ("[::1]:8080-8081:80-81", "[::1]:8080-8081:80-81/tcp"),
        ] {
            let p = ok(input);
            assert_eq!(p.to_string(), want);
            assert_eq!(ok(want), p, "{want} parses back");
        }
    }

    #[test]
    fn matching_for_unpublish() {
        let any = ok("80");
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(any.matches(None, 8080, 80, Proto::Tcp));
        assert!(any.matches(Some(v4), 32768, 80, Proto::Tcp));
        assert!(!any.matches(None, 8080, 80, Proto::Udp));
        assert!(!any.matches(None, 8080, 81, Proto::Tcp));
        let exact = ok("8080:80");
        assert!(exact.matches(None, 8080, 80, Proto::Tcp));
        assert!(!exact.matches(None, 8081, 80, Proto::Tcp));
        let with_ip = ok("127.0.0.1:8080:80");
        assert!(with_ip.matches(Some(v4), 8080, 80, Proto::Tcp));
        assert!(!with_ip.matches(None, 8080, 80, Proto::Tcp));
        let pairwise = ok("9000-9001:90-91");
        assert!(pairwise.matches(None, 9001, 91, Proto::Tcp));
        assert!(!pairwise.matches(None, 9000, 91, Proto::Tcp));
        let any_of = ok("8000-8010:80");
        assert!(any_of.matches(None, 8005, 80, Proto::Tcp));
        assert!(!any_of.matches(None, 8011, 80, Proto::Tcp));
    }

    #[test]
    fn ps_format() {
        let m = |ips: &[&str], h, c, p: &str| PortMapping {
            host_ips: ips.iter().map(|s| s.to_string()).collect(),
            host_port: h,
            container_port: c,
            protocol: p.into(),
        };
        assert_eq!(format_ports(&[]), "");
        assert_eq!(
            format_ports(&[m(&["0.0.0.0", "::"], 8080, 80, "tcp")]),
            "0.0.0.0:8080->80/tcp, :::8080->80/tcp"
        );
        assert_eq!(
            format_ports(&[
                m(&["127.0.0.1"], 5353, 53, "udp"),
                m(&["::1"], 9000, 90, "tcp")
            ]),
            "127.0.0.1:5353->53/udp, [::1]:9000->90/tcp"
        );
    }
}
