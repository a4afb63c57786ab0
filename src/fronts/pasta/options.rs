//! pasta(1)'s command line, parsed as getopt_long(3) parses it (long options by unique
//! prefix, `--opt=VALUE`, `-oVALUE`, bundled flags, operands anywhere), into plain data.
//! Pure: no file is opened and nothing is checked against the system here.
//!
//! Every option of pasta 2025 (and the older ones Podman 5.0-5.4 or a user's `pasta_options`
//! may still pass) is known. What each does in netyard is in the `OPTIONS` table; options
//! that make no sense for netyard's data path are accepted and listed in `Options::ignored`,
//! options whose meaning netyard cannot give are refused by `Options::check` with the reason.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::ports::{self, Ephemeral, PortMode, PortSpecError};

/// How a known option is spelled and whether it takes a value.
struct Spec {
    short: Option<char>,
    long: &'static str,
    value: bool,
}

const fn o(short: Option<char>, long: &'static str, value: bool) -> Spec {
    Spec { short, long, value }
}

/// Every option pasta knows (pasta 2025's `--help`, plus options older releases had).
const OPTIONS: &[Spec] = &[
    o(Some('d'), "debug", false),
    o(None, "trace", false),
    o(Some('q'), "quiet", false),
    o(Some('f'), "foreground", false),
    o(Some('e'), "stderr", false),
    o(Some('l'), "log-file", true),
    o(None, "log-size", true),
    o(None, "runas", true),
    o(Some('h'), "help", false),
    o(None, "version", false),
    o(Some('I'), "ns-ifname", true),
    o(Some('F'), "fd", true),
    o(Some('p'), "pcap", true),
    o(Some('P'), "pid", true),
    o(Some('m'), "mtu", true),
    o(Some('a'), "address", true),
    o(Some('n'), "netmask", true),
    o(Some('M'), "mac-addr", true),
    o(Some('g'), "gateway", true),
    o(Some('i'), "interface", true),
    o(Some('o'), "outbound", true),
    o(None, "outbound-if4", true),
    o(None, "outbound-if6", true),
    o(Some('D'), "dns", true),
    o(Some('S'), "search", true),
    o(Some('H'), "hostname", true),
    o(None, "fqdn", true),
    o(None, "dhcp-dns", false),
    o(None, "no-dhcp-dns", false),
    o(None, "dhcp-search", false),
    o(None, "no-dhcp-search", false),
    o(None, "map-host-loopback", true),
    o(None, "map-guest-addr", true),
    o(None, "dns-forward", true),
    o(None, "dns-host", true),
    o(None, "no-tcp", false),
    o(None, "no-udp", false),
    o(None, "no-icmp", false),
    o(None, "no-dhcp", false),
    o(None, "no-ndp", false),
    o(None, "no-dhcpv6", false),
    o(None, "no-ra", false),
    o(None, "freebind", false),
    o(None, "no-map-gw", false),
    o(Some('4'), "ipv4-only", false),
    o(Some('6'), "ipv6-only", false),
    o(Some('t'), "tcp-ports", true),
    o(Some('u'), "udp-ports", true),
    o(Some('T'), "tcp-ns", true),
    o(Some('U'), "udp-ns", true),
    o(None, "host-lo-to-ns-lo", false),
    o(None, "userns", true),
    o(None, "netns", true),
    o(None, "nsrun-dir", true),
    o(None, "netns-only", false),
    o(None, "no-netns-quit", false),
    o(None, "config-net", false),
    o(None, "no-copy-routes", false),
    o(None, "no-copy-addrs", false),
    o(None, "ns-mac-addr", true),
    o(None, "no-splice", false),
];

/// Options accepted with no effect in netyard, and why (README lists them).
pub const IGNORED: &[(&str, &str)] = &[
    ("stderr", "deprecated in pasta too"),
    ("log-size", "netyard's log file is not rotated"),
    ("runas", "netyard keeps the user it was started as"),
    ("pcap", "use tcpdump on the namespace's interface"),
    ("mac-addr", "the gateway's MAC is netyard's"),
    ("interface", "outbound traffic follows the host's routes"),
    ("outbound", "outbound traffic follows the host's routes"),
    ("outbound-if4", "outbound traffic follows the host's routes"),
    ("outbound-if6", "outbound traffic follows the host's routes"),
    (
        "dns",
        "DHCP/NDP information: --config-net writes no resolv.conf, Podman does",
    ),
    ("search", "DHCP/NDP information"),
    ("hostname", "DHCP information"),
    ("fqdn", "DHCP information"),
    ("dhcp-dns", "DHCP information"),
    ("no-dhcp-dns", "DHCP information"),
    ("dhcp-search", "DHCP information"),
    ("no-dhcp-search", "DHCP information"),
    ("no-tcp", "netyard always relays TCP"),
    ("no-udp", "netyard always relays UDP"),
    ("no-icmp", "netyard always relays ICMP echo"),
    ("no-dhcp", "netyard serves no DHCP"),
    (
        "no-ndp",
        "the gateway answers NDP for its own addresses only (-4 turns IPv6 off)",
    ),
    ("no-dhcpv6", "netyard serves no DHCPv6"),
    (
        "no-ra",
        "the gateway's Router Advertisements give the IPv6 default route (-4 turns IPv6 off)",
    ),
    ("freebind", "published ports bind as given"),
    (
        "host-lo-to-ns-lo",
        "only with -T/-U, which netyard does not forward",
    ),
    ("nsrun-dir", "NAME operands are looked up in /run/netns"),
    ("no-copy-routes", "deprecated in pasta too"),
    ("no-copy-addrs", "deprecated in pasta too"),
    ("no-splice", "netyard does not splice"),
];

/// The namespace pasta serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `--netns PATH|NAME` or a PATH/NAME operand: a bound namespace (NAME: /run/netns/NAME).
    Path(PathBuf),
    /// A PID operand: that process's namespaces.
    Pid(u32),
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub quiet: bool,
    pub debug: bool,
    pub foreground: bool,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub fd: Option<String>,
    pub ns_ifname: Option<String>,
    /// `-m`: 0 leaves the interface's MTU alone (pasta: "disables assignment").
    pub mtu: Option<u32>,
    pub address: Option<Ipv4Addr>,
    pub netmask: Option<u8>,
    pub gateway: Option<Ipv4Addr>,
    pub ns_mac: Option<[u8; 6]>,
    pub dns_forward: Vec<Ipv4Addr>,
    /// `--dns-forward` with an IPv6 address.
    pub dns_forward6: Vec<Ipv6Addr>,
    pub dns_host: Vec<Ipv4Addr>,
    pub map_host_loopback: Vec<Ipv4Addr>,
    pub map_guest_addr: Vec<Ipv4Addr>,
    pub no_map_gw: bool,
    pub ipv4_only: bool,
    pub ipv6_only: bool,
    pub tcp: PortMode,
    pub udp: PortMode,
    pub tcp_ns: PortMode,
    pub udp_ns: PortMode,
    pub userns: Option<PathBuf>,
    pub netns_only: bool,
    pub no_netns_quit: bool,
    pub config_net: bool,
    pub target: Option<Target>,
    /// Operands after the target (a command to run, which netyard does not do).
    pub command: Vec<OsString>,
    /// Accepted options without effect, as given (for one log line).
    pub ignored: Vec<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// A command line pasta would refuse, worded as pasta (or getopt) words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// getopt's own errors, which print the usage after them.
    #[error("unrecognized option '{0}'")]
    Unrecognized(String),
    #[error("invalid option -- '{0}'")]
    InvalidShort(char),
    #[error("option '--{0}' is ambiguous; possibilities: {1}")]
    Ambiguous(String, String),
    #[error("option '--{0}' requires an argument")]
    LongNeedsValue(&'static str),
    #[error("option requires an argument -- '{0}'")]
    ShortNeedsValue(char),
    #[error("option '--{0}' doesn't allow an argument")]
    NoValueAllowed(&'static str),
    /// A value pasta would not take.
    #[error("Invalid {what}: {value}")]
    BadValue { what: &'static str, value: String },
    #[error("{0}")]
    Port(#[from] PortSpecError),
    /// Something pasta does that netyard does not.
    #[error("netyard pasta: {0}")]
    Unsupported(String),
}

impl UsageError {
    /// getopt's errors print pasta's usage after the message.
    pub fn shows_usage(&self) -> bool {
        matches!(
            self,
            UsageError::Unrecognized(_)
                | UsageError::InvalidShort(_)
                | UsageError::Ambiguous(..)
                | UsageError::LongNeedsValue(_)
                | UsageError::ShortNeedsValue(_)
                | UsageError::NoValueAllowed(_)
        )
    }
}

/// Finds a long option by its full name or a unique prefix (getopt_long's rule).
fn find_long(name: &str) -> Result<&'static Spec, UsageError> {
    if let Some(s) = OPTIONS.iter().find(|s| s.long == name) {
        return Ok(s);
    }
    let hits: Vec<&Spec> = OPTIONS
        .iter()
        .filter(|s| s.long.starts_with(name))
        .collect();
    match hits.as_slice() {
        [one] if !name.is_empty() => Ok(one),
        [] | [_] => Err(UsageError::Unrecognized(format!("--{name}"))),
        many => Err(UsageError::Ambiguous(
            name.to_string(),
            many.iter()
                .map(|s| format!("'--{}'", s.long))
                .collect::<Vec<_>>()
                .join(" "),
        )),
    }
}

/// Parses pasta's arguments (without the program name).
pub fn parse(args: Vec<OsString>, ephemeral: Ephemeral) -> Result<Parsed, UsageError> {
    let mut p = lexopt::Parser::from_args(args);
    // getopt takes `-t=80` as the value "=80": so do we.
    p.set_short_equals(false);
    let mut o = Options::default();
    loop {
        let arg = match p.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(lexopt::Error::UnexpectedValue { option, .. }) => {
                let name = option.trim_start_matches('-');
                let spec = find_long(name)?;
                return Err(UsageError::NoValueAllowed(spec.long));
            }
            Err(e) => return Err(UsageError::Unrecognized(e.to_string())),
        };
        let spec = match arg {
            lexopt::Arg::Value(v) => {
                operand(&mut o, v)?;
                if !o.command.is_empty() {
                    // A command ends the options: what follows is its own.
                    if let Ok(raw) = p.raw_args() {
                        o.command.extend(raw);
                    }
                    break;
                }
                continue;
            }
            lexopt::Arg::Short(c) => OPTIONS
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or(UsageError::InvalidShort(c))?,
            lexopt::Arg::Long(name) => find_long(name)?,
        };
        let value = if spec.value {
            let v = p.value().map_err(|e| match (e, spec.short) {
                // getopt names the option as the user spelled it.
                (lexopt::Error::MissingValue { option: Some(o) }, Some(c))
                    if !o.starts_with("--") =>
                {
                    UsageError::ShortNeedsValue(c)
                }
                _ => UsageError::LongNeedsValue(spec.long),
            })?;
            Some(v.to_string_lossy().into_owned())
        } else {
            None
        };
        match apply(&mut o, spec, value, ephemeral)? {
            Some(done) => return Ok(done),
            None => continue,
        }
    }
    Ok(Parsed::Run(Box::new(o)))
}

/// An operand: the target (PID, PATH or NAME) first, then a command.
fn operand(o: &mut Options, v: OsString) -> Result<(), UsageError> {
    if o.target.is_some() || !o.command.is_empty() {
        o.command.push(v);
        return Ok(());
    }
    let s = v.to_string_lossy();
    if let Ok(pid) = s.parse::<u32>() {
        o.target = Some(Target::Pid(pid));
    } else if s.contains('/') {
        o.target = Some(Target::Path(PathBuf::from(&v)));
    } else {
        // pasta tries a NAME in /run/netns only when no such command exists; netyard runs no
        // command, so a bare word is a command (refused by `check`).
        o.command.push(v);
    }
    Ok(())
}

/// Applies one option; Some when it ends parsing (`--help`, `--version`).
fn apply(
    o: &mut Options,
    spec: &Spec,
    value: Option<String>,
    ephemeral: Ephemeral,
) -> Result<Option<Parsed>, UsageError> {
    let v = value.unwrap_or_default();
    match spec.long {
        "help" => return Ok(Some(Parsed::Help)),
        "version" => return Ok(Some(Parsed::Version)),
        "debug" | "trace" => o.debug = true,
        "quiet" => o.quiet = true,
        "foreground" => o.foreground = true,
        "log-file" => o.log_file = Some(PathBuf::from(v)),
        "pid" => o.pid_file = Some(PathBuf::from(v)),
        "fd" => o.fd = Some(v),
        "ns-ifname" => {
            if v.is_empty() || v.len() > 15 || v.contains('/') || v.contains(char::is_whitespace) {
                return Err(bad("interface name", v));
            }
            o.ns_ifname = Some(v);
        }
        "mtu" => {
            let mtu = v.parse::<u32>().map_err(|_| bad("MTU", v.clone()))?;
            // pasta's bounds: 0 (leave alone), or 68 to 65520.
            if mtu != 0 && !(68..=65520).contains(&mtu) {
                return Err(bad("MTU", v));
            }
            o.mtu = Some(mtu);
        }
        "address" => match v.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !a.is_unspecified() && !a.is_broadcast() => o.address = Some(a),
            // pasta takes an IPv6 address too; the namespace's IPv6 is a ULA /64 of
            // netyard's choosing (`layout::plan6`).
            Ok(IpAddr::V6(_)) => o.ignored.push(format!("--address {v}")),
            _ => return Err(bad("address", v)),
        },
        "netmask" => o.netmask = Some(netmask(&v).ok_or_else(|| bad("netmask", v.clone()))?),
        "gateway" => match v.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !a.is_unspecified() => o.gateway = Some(a),
            Ok(IpAddr::V6(_)) => o.ignored.push(format!("--gateway {v}")),
            _ => return Err(bad("gateway address", v)),
        },
        "ns-mac-addr" => o.ns_mac = Some(mac(&v).ok_or_else(|| bad("MAC address", v.clone()))?),
        "dns-forward" => push_addr(
            (&mut o.dns_forward, Some(&mut o.dns_forward6)),
            &mut o.ignored,
            spec,
            v,
            "DNS forwarding address",
        )?,
        "dns-host" => push_addr(
            (&mut o.dns_host, None),
            &mut o.ignored,
            spec,
            v,
            "host nameserver address",
        )?,
        "map-host-loopback" => push_addr(
            (&mut o.map_host_loopback, None),
            &mut o.ignored,
            spec,
            v,
            "address to map host loopback",
        )?,
        "map-guest-addr" => push_addr(
            (&mut o.map_guest_addr, None),
            &mut o.ignored,
            spec,
            v,
            "address to map to guest",
        )?,
        "no-map-gw" => o.no_map_gw = true,
        "ipv4-only" => o.ipv4_only = true,
        "ipv6-only" => o.ipv6_only = true,
        "tcp-ports" => ports::add(&mut o.tcp, 't', &v, ephemeral)?,
        "udp-ports" => ports::add(&mut o.udp, 'u', &v, ephemeral)?,
        "tcp-ns" => ports::add(&mut o.tcp_ns, 'T', &v, ephemeral)?,
        "udp-ns" => ports::add(&mut o.udp_ns, 'U', &v, ephemeral)?,
        "userns" => o.userns = Some(PathBuf::from(v)),
        "netns" => {
            if v.is_empty() {
                return Err(bad("network namespace", v));
            }
            // A NAME (no slash) is one of `ip netns`'s.
            let path = if v.contains('/') {
                PathBuf::from(v)
            } else {
                PathBuf::from("/run/netns").join(v)
            };
            o.target = Some(Target::Path(path));
        }
        "netns-only" => o.netns_only = true,
        "no-netns-quit" => o.no_netns_quit = true,
        "config-net" => o.config_net = true,
        other => {
            debug_assert!(
                IGNORED.iter().any(|(n, _)| *n == other),
                "{other} unhandled"
            );
            o.ignored.push(if spec.value {
                format!("--{other} {v}")
            } else {
                format!("--{other}")
            });
        }
    }
    Ok(None)
}

fn bad(what: &'static str, value: String) -> UsageError {
    UsageError::BadValue { what, value }
}

/// An address for a repeatable address option, into the list of its family; an IPv6 one
/// for an option without an IPv6 list is accepted and ignored (destination maps are IPv4
/// only in netyard). pasta takes at most one of each family.
fn push_addr(
    (list, list6): (&mut Vec<Ipv4Addr>, Option<&mut Vec<Ipv6Addr>>),
    ignored: &mut Vec<String>,
    spec: &Spec,
    v: String,
    what: &'static str,
) -> Result<(), UsageError> {
    match v.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if !a.is_unspecified() => {
            if !list.is_empty() {
                return Err(bad(what, v));
            }
            list.push(a);
        }
        Ok(IpAddr::V6(a)) => match list6 {
            Some(l6) if !a.is_unspecified() && !a.is_multicast() => {
                if !l6.is_empty() {
                    return Err(bad(what, v));
                }
                l6.push(a);
            }
            Some(_) => return Err(bad(what, v)),
            None => ignored.push(format!("--{} {v}", spec.long)),
        },
        _ => return Err(bad(what, v)),
    }
    Ok(())
}

/// `255.255.255.0` or `24`.
fn netmask(s: &str) -> Option<u8> {
    if let Ok(bits) = s.parse::<u8>() {
        return (bits <= 32).then_some(bits);
    }
    let m = u32::from(s.parse::<Ipv4Addr>().ok()?);
    let bits = m.leading_ones();
    // contiguous ones only
    (m.checked_shl(bits).unwrap_or(0) == 0).then(|| u8::try_from(bits).unwrap_or(32))
}

/// `aa:bb:cc:dd:ee:ff`, unicast.
fn mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n == 6 || part.len() != 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6 && out[0] & 1 == 0).then_some(out)
}

impl Options {
    /// Refuses what pasta does and netyard does not, naming the option and the reason.
    pub fn check(&self) -> Result<(), UsageError> {
        let no = |s: &str| Err(UsageError::Unsupported(s.to_string()));
        if self.ipv6_only {
            return no(
                "--ipv6-only: netyard's namespace always has IPv4 beside IPv6 (its gateway and \
                 DNS are IPv4 first)",
            );
        }
        if self.fd.is_some() {
            return no("--fd: netyard creates the namespace's TAP itself");
        }
        if !self.command.is_empty() {
            return no(&format!(
                "running a command ({}) in new namespaces is not supported: give --netns PATH or a PID",
                self.command[0].to_string_lossy()
            ));
        }
        if self.target.is_none() {
            return no("no namespace: give --netns PATH|NAME or a PID");
        }
        if self.userns.is_some() && self.netns_only {
            return Err(UsageError::Unsupported(
                "Both --userns and --netns-only given".to_string(),
            ));
        }
        for (letter, mode) in [('t', &self.tcp), ('u', &self.udp)] {
            if *mode == PortMode::Auto {
                return no(&format!(
                    "-{letter} auto: netyard does not follow the namespace's bound ports; \
                     give the ports (or none)"
                ));
            }
        }
        for (letter, mode) in [('T', &self.tcp_ns), ('U', &self.udp_ns)] {
            if matches!(mode, PortMode::Auto | PortMode::Spec(_)) {
                return no(&format!(
                    "-{letter}: forwarding ports from the namespace to the host is not \
                     supported; give -{letter} none"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
