//! slirp4netns 1.2's command line as plain data: `[OPTION]... PID|PATH [TAPNAME]`, parsed the
//! way its getopt_long does (short options clustered or with attached values, `--long=VALUE`
//! or `--long VALUE`, options and operands in any order, `--` ends the options). Pure: the
//! tests below cover every option Podman 4.x/5.x and RootlessKit 1.x/2.x pass.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// slirp4netns's MTU ceiling (libslirp's IF_MTU_MAX).
pub const MTU_MAX: u32 = 65_521;
/// The network when `--cidr` is not given.
pub const DEFAULT_CIDR: &str = "10.0.2.0/24";

/// How the namespace operand is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsType {
    /// A process id: its `/proc/PID/ns/net` (and user namespace).
    Pid,
    /// A path to a network namespace (a bind mount or /proc/PID/ns/net).
    Path,
}

/// A parsed command line that runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `-c`: configure the interface (address .100, default route via .2, `lo` up).
    pub configure: bool,
    /// `-e FD`: exit when it reports an event (hang-up).
    pub exit_fd: Option<i32>,
    /// `-r FD`: write "1" there once ready, then close it.
    pub ready_fd: Option<i32>,
    pub mtu: u32,
    /// `-6`: dual stack, in slirp4netns's IPv6 layout ([`Layout6`]).
    pub enable_ipv6: bool,
    pub api_socket: Option<String>,
    pub cidr: Ipv4Net,
    pub disable_host_loopback: bool,
    pub netns_type: NetnsType,
    pub userns_path: Option<String>,
    /// Accepted, no effect: netyard does not pivot_root or drop capabilities.
    pub enable_sandbox: bool,
    /// Accepted, no effect: no seccomp filter.
    pub enable_seccomp: bool,
    /// Accepted; egress sockets are not bound to it (a warning says so).
    pub outbound_addr: Option<String>,
    pub outbound_addr6: Option<String>,
    /// No DNS address (.3) in the network.
    pub disable_dns: bool,
    pub macaddress: Option<String>,
    /// PID or PATH.
    pub target: String,
    pub tapname: String,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Args>),
    Help,
    Version,
}

/// A refused command line: the message slirp4netns prints (then its usage, status 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

fn err(s: impl Into<String>) -> ArgError {
    ArgError(s.into())
}

/// The options taking a value, by long name; and the short letter of each option.
const WITH_VALUE: &[&str] = &[
    "exit-fd",
    "ready-fd",
    "mtu",
    "api-socket",
    "cidr",
    "netns-type",
    "userns-path",
    "outbound-addr",
    "outbound-addr6",
    "macaddress",
    "target-type",
];
const FLAGS: &[&str] = &[
    "configure",
    "enable-ipv6",
    "disable-host-loopback",
    "enable-sandbox",
    "enable-seccomp",
    "disable-dns",
    "help",
    "version",
];

fn long_of(short: char) -> Option<&'static str> {
    Some(match short {
        'c' => "configure",
        'e' => "exit-fd",
        'r' => "ready-fd",
        'm' => "mtu",
        '6' => "enable-ipv6",
        'a' => "api-socket",
        'h' => "help",
        'v' => "version",
        _ => return None,
    })
}

/// Parses the arguments after the program name.
pub fn parse<S: AsRef<str>>(argv: &[S]) -> Result<Parsed, ArgError> {
    let mut opts: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut operands: Vec<String> = Vec::new();
    let mut i = 0;
    let next = |i: &mut usize, name: &str| -> Result<String, ArgError> {
        *i += 1;
        argv.get(*i)
            .map(|s| s.as_ref().to_string())
            .ok_or_else(|| err(format!("option '{name}' requires an argument")))
    };
    while i < argv.len() {
        let a = argv[i].as_ref();
        if a == "--" {
            operands.extend(argv[i + 1..].iter().map(|s| s.as_ref().to_string()));
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            if let Some(&n) = WITH_VALUE.iter().find(|n| **n == name) {
                let v = match inline {
                    Some(v) => v,
                    None => next(&mut i, &format!("--{n}"))?,
                };
                opts.push((n, Some(v)));
            } else if let Some(&n) = FLAGS.iter().find(|n| **n == name) {
                if inline.is_some() {
                    return Err(err(format!("option '--{n}' doesn't allow an argument")));
                }
                opts.push((n, None));
            } else {
                return Err(err(format!("unrecognized option '{a}'")));
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                let Some(n) = long_of(c) else {
                    return Err(err(format!("invalid option -- '{c}'")));
                };
                if WITH_VALUE.contains(&n) {
                    let rest: String = chars[k + 1..].iter().collect();
                    let v = if rest.is_empty() {
                        next(&mut i, &format!("-{c}"))
                            .map_err(|_| err(format!("option requires an argument -- '{c}'")))?
                    } else {
                        rest
                    };
                    opts.push((n, Some(v)));
                    break;
                }
                opts.push((n, None));
                k += 1;
            }
        } else {
            operands.push(a.to_string());
        }
        i += 1;
    }
    if opts.iter().any(|(n, _)| *n == "help") {
        return Ok(Parsed::Help);
    }
    if opts.iter().any(|(n, _)| *n == "version") {
        return Ok(Parsed::Version);
    }
    let mut a = Args {
        configure: false,
        exit_fd: None,
        ready_fd: None,
        mtu: 1500,
        enable_ipv6: false,
        api_socket: None,
        cidr: DEFAULT_CIDR.parse().map_err(|_| err("bad default CIDR"))?,
        disable_host_loopback: false,
        netns_type: NetnsType::Pid,
        userns_path: None,
        enable_sandbox: false,
        enable_seccomp: false,
        outbound_addr: None,
        outbound_addr6: None,
        disable_dns: false,
        macaddress: None,
        target: String::new(),
        tapname: String::new(),
    };
    for (name, value) in opts {
        let v = value.unwrap_or_default();
        match name {
            "configure" => a.configure = true,
            "exit-fd" => a.exit_fd = Some(fd("exit-fd", &v)?),
            "ready-fd" => a.ready_fd = Some(fd("ready-fd", &v)?),
            "mtu" => {
                a.mtu = v
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=MTU_MAX).contains(m))
                    .ok_or_else(|| {
                        err(format!(
                            "MTU must be a positive integer (< {})",
                            MTU_MAX + 1
                        ))
                    })?;
            }
            "enable-ipv6" => a.enable_ipv6 = true,
            "api-socket" => a.api_socket = Some(v),
            "cidr" => a.cidr = cidr(&v)?,
            "disable-host-loopback" => a.disable_host_loopback = true,
            "netns-type" => {
                a.netns_type = match v.as_str() {
                    "pid" => NetnsType::Pid,
                    "path" => NetnsType::Path,
                    _ => return Err(err(format!("netns-type must be path or pid, got {v:?}"))),
                }
            }
            "userns-path" => a.userns_path = Some(v),
            "enable-sandbox" => a.enable_sandbox = true,
            "enable-seccomp" => a.enable_seccomp = true,
            "outbound-addr" => a.outbound_addr = Some(v),
            "outbound-addr6" => a.outbound_addr6 = Some(v),
            "disable-dns" => a.disable_dns = true,
            "macaddress" => a.macaddress = Some(mac(&v)?),
            "target-type" if v != "netns" => {
                return Err(err(format!(
                    "target-type {v:?} is not supported (netyard serves netns only)"
                )));
            }
            _ => {}
        }
    }
    match operands.as_slice() {
        [t] => {
            a.target = t.clone();
            a.tapname = "tap0".to_string();
        }
        [t, tap] => {
            a.target = t.clone();
            a.tapname = tap.clone();
        }
        [] => return Err(err("PID or PATH is missing")),
        _ => return Err(err("too many arguments")),
    }
    if a.netns_type == NetnsType::Pid && pid(&a.target).is_none() {
        return Err(err(format!(
            "PID must be a positive integer, got {:?} (use --netns-type=path for a path)",
            a.target
        )));
    }
    if a.tapname.is_empty() || a.tapname.len() > 15 || a.tapname.contains('/') {
        return Err(err(format!("bad TAPNAME {:?}", a.tapname)));
    }
    if a.macaddress.is_some() && !a.configure {
        return Err(err("--macaddress can only be used with -c"));
    }
    Ok(Parsed::Run(Box::new(a)))
}

/// A PID operand.
pub fn pid(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|p| *p > 0)
}

fn fd(name: &str, s: &str) -> Result<i32, ArgError> {
    s.parse::<i32>()
        .ok()
        .filter(|f| *f >= 0)
        .ok_or_else(|| err(format!("{name} must be a non-negative integer, got {s:?}")))
}

/// slirp4netns takes an address with a prefix and uses its network; the guest's .100 must
/// fit in it.
fn cidr(s: &str) -> Result<Ipv4Net, ArgError> {
    let n: Ipv4Net = s.parse().map_err(|_| err(format!("invalid CIDR: {s}")))?;
    if !(8..=25).contains(&n.prefix_len()) {
        return Err(err(format!(
            "invalid CIDR: {s} (prefix length must be 8 to 25, so that .100 is inside)"
        )));
    }
    Ok(n.trunc())
}

fn mac(s: &str) -> Result<String, ArgError> {
    let ok = s.split(':').count() == 6
        && s.split(':')
            .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
    if !ok {
        return Err(err(format!("invalid MAC address: {s}")));
    }
    Ok(s.to_string())
}

/// The addresses of a slirp4netns network: gateway .2, DNS .3, guest .100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub guest: Ipv4Addr,
}

impl Layout {
    pub fn of(subnet: Ipv4Net) -> Layout {
        let at = |n: u32| Ipv4Addr::from(u32::from(subnet.network()) + n);
        Layout {
            subnet,
            gateway: at(2),
            dns: at(3),
            guest: at(100),
        }
    }
}

/// The IPv6 addresses of a slirp4netns network with `-6` (libslirp's as slirp4netns 1.2
/// configures it; no option changes them): the prefix fd00::/64, gateway fd00::2, DNS
/// fd00::3, and the guest fd00::100 (slirp4netns leaves the guest's address to SLAAC;
/// netyard's Router Advertisements offer none, so `-c` sets this one, as .100 for IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    pub dns: Ipv6Addr,
    pub guest: Ipv6Addr,
}

impl Layout6 {
    pub const SLIRP: Layout6 = Layout6 {
        subnet: Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64),
        gateway: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        dns: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3),
        guest: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Args {
        match parse(argv) {
            Ok(Parsed::Run(a)) => *a,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    fn refused(argv: &[&str]) -> String {
        match parse(argv) {
            Err(e) => e.0,
            other => panic!("{argv:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn podman_4_3s_command_line() {
        let a = run(&[
            "--disable-host-loopback",
            "--mtu=65520",
            "--enable-sandbox",
            "--enable-seccomp",
            "--enable-ipv6",
            "-c",
            "-e",
            "3",
            "-r",
            "4",
            "--api-socket",
            "/run/user/1000/libpod/tmp/abc.net",
            "--netns-type=path",
            "/run/user/1000/netns/netns-1234",
            "tap0",
        ]);
        assert!(a.configure && a.disable_host_loopback && a.enable_ipv6);
        assert!(a.enable_sandbox && a.enable_seccomp);
        assert_eq!((a.exit_fd, a.ready_fd, a.mtu), (Some(3), Some(4), 65520));
        assert_eq!(
            a.api_socket.as_deref(),
            Some("/run/user/1000/libpod/tmp/abc.net")
        );
        assert_eq!(a.netns_type, NetnsType::Path);
        assert_eq!(a.target, "/run/user/1000/netns/netns-1234");
        assert_eq!(a.tapname, "tap0");
        assert_eq!(a.cidr, DEFAULT_CIDR.parse::<Ipv4Net>().unwrap());
    }

    #[test]
    fn podman_4_6_swaps_the_fds_and_rootlesskit_passes_a_pid() {
        let a = run(&[
            "-c",
            "-r",
            "3",
            "-e",
            "4",
            "--netns-type=path",
            "/x",
            "tap0",
        ]);
        assert_eq!((a.exit_fd, a.ready_fd), (Some(4), Some(3)));
        let a = run(&[
            "--mtu",
            "65520",
            "-r",
            "3",
            "--disable-host-loopback",
            "--cidr",
            "10.0.3.0/24",
            "--api-socket",
            "/tmp/s",
            "--enable-sandbox",
            "--enable-seccomp",
            "1234",
            "tap0",
        ]);
        assert_eq!(a.netns_type, NetnsType::Pid);
        assert_eq!((a.target.as_str(), a.mtu, a.exit_fd), ("1234", 65520, None));
        assert_eq!(a.cidr, "10.0.3.0/24".parse::<Ipv4Net>().unwrap());
        assert!(!a.configure);
    }

    #[test]
    fn getopt_forms_clusters_attached_values_and_permuted_operands() {
        let a = run(&[
            "-ce3",
            "-r4",
            "-m1400",
            "77",
            "--userns-path=/proc/77/ns/user",
        ]);
        assert!(a.configure);
        assert_eq!((a.exit_fd, a.ready_fd, a.mtu), (Some(3), Some(4), 1400));
        assert_eq!(a.userns_path.as_deref(), Some("/proc/77/ns/user"));
        assert_eq!((a.target.as_str(), a.tapname.as_str()), ("77", "tap0"));
        let a = run(&["--netns-type=path", "-c", "--", "-odd-path"]);
        assert_eq!(a.target, "-odd-path");
        assert_eq!(parse(&["--help"]), Ok(Parsed::Help));
        assert!(parse(&["-h", "--bogus-after"]).is_err());
        assert_eq!(parse(&["-v"]), Ok(Parsed::Version));
        assert_eq!(parse(&["1", "--version"]), Ok(Parsed::Version));
    }

    #[test]
    fn options_without_effect_are_accepted() {
        let a = run(&[
            "-c",
            "--outbound-addr=10.1.1.1",
            "--outbound-addr6=fd00::1",
            "--disable-dns",
            "--macaddress=02:00:00:00:00:01",
            "--target-type=netns",
            "5",
            "tun11",
        ]);
        assert_eq!(a.outbound_addr.as_deref(), Some("10.1.1.1"));
        assert!(a.disable_dns);
        assert_eq!(a.macaddress.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(a.tapname, "tun11");
    }

    #[test]
    fn bad_command_lines_say_why() {
        assert_eq!(refused(&["--bogus", "1"]), "unrecognized option '--bogus'");
        assert_eq!(refused(&["-x", "1"]), "invalid option -- 'x'");
        assert_eq!(refused(&["-e"]), "option requires an argument -- 'e'");
        assert_eq!(refused(&["--mtu"]), "option '--mtu' requires an argument");
        assert_eq!(
            refused(&["--configure=1", "1"]),
            "option '--configure' doesn't allow an argument"
        );
        for m in ["0", "65522", "x", "-1"] {
            assert_eq!(
                refused(&["-m", m, "1"]),
                "MTU must be a positive integer (< 65522)"
            );
        }
        assert_eq!(run(&["-m", "65521", "1"]).mtu, 65521);
        assert_eq!(refused(&["--cidr=foo", "1"]), "invalid CIDR: foo");
        assert!(refused(&["--cidr=10.0.0.0/28", "1"]).starts_with("invalid CIDR"));
        assert!(refused(&["--netns-type=ip", "1"]).contains("path or pid"));
        assert!(refused(&["notapid", "tap0"]).contains("PID must be"));
        assert!(refused(&[]).contains("missing"));
        assert!(refused(&["1", "tap0", "x"]).contains("too many"));
        assert!(refused(&["-e", "x", "1"]).contains("exit-fd"));
        assert!(refused(&["--target-type=bess", "1"]).contains("bess"));
        assert!(refused(&["--macaddress=02:00:00:00:00:01", "1"]).contains("-c"));
        assert!(refused(&["-c", "--macaddress=zz", "1"]).contains("MAC"));
        assert!(refused(&["1", "a-very-long-tap-name"]).contains("TAPNAME"));
    }

    #[test]
    fn the_layout_is_2_3_and_100_of_the_network() {
        let l = Layout::of("10.0.3.0/24".parse().unwrap());
        assert_eq!(l.gateway, Ipv4Addr::new(10, 0, 3, 2));
        assert_eq!(l.dns, Ipv4Addr::new(10, 0, 3, 3));
        assert_eq!(l.guest, Ipv4Addr::new(10, 0, 3, 100));
        assert_eq!(cidr("10.0.2.5/24"), Ok("10.0.2.0/24".parse().unwrap()));
    }
}
