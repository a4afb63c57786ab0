//! What a CNI call gives the plugin: the `CNI_*` environment ([`Env`]) and the network
//! configuration on stdin ([`NetConf`]), checked here with errors naming the variable or the
//! field. Pure: unit-tested without a daemon.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netyard_api::model::NetworkCreate;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{CniError, Code};

/// The spec versions the plugin speaks (results in each one's shape).
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A spec version, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V030,
    V031,
    V040,
    V100,
    V110,
}

impl Version {
    pub const LATEST: Version = Version::V110;

    pub fn parse(s: &str) -> Option<Version> {
        Some(match s {
            "0.3.0" => Version::V030,
            "0.3.1" => Version::V031,
            "0.4.0" => Version::V040,
            "1.0.0" => Version::V100,
            "1.1.0" => Version::V110,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V030 => "0.3.0",
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// The `CNI_*` environment of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS, GC).
    pub container_id: String,
    /// `CNI_NETNS`: required by ADD and CHECK, optional for DEL.
    pub netns: Option<String>,
    /// `CNI_IFNAME` (empty for VERSION, STATUS, GC).
    pub ifname: String,
    /// `K8S_POD_NAME` from `CNI_ARGS` (Podman passes the container's name there).
    pub pod_name: Option<String>,
}

/// Reads the environment through `get` (`std::env::var` in the plugin, a map in tests).
pub fn parse_env(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let command = match get("CNI_COMMAND").as_deref() {
        Some("ADD") => Command::Add,
        Some("DEL") => Command::Del,
        Some("CHECK") => Command::Check,
        Some("VERSION") => Command::Version,
        Some("STATUS") => Command::Status,
        Some("GC") => Command::Gc,
        Some(other) => {
            return Err(CniError::env(
                "CNI_COMMAND",
                format!("{other:?} is not a CNI command (ADD, DEL, CHECK, VERSION, STATUS, GC)"),
            ))
        }
        None => return Err(CniError::env("CNI_COMMAND", "missing")),
    };
    let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
    let mut env = Env {
        command,
        container_id: String::new(),
        netns: None,
        ifname: String::new(),
        pod_name: None,
    };
    if !per_container {
        return Ok(env);
    }
    let cid = get("CNI_CONTAINERID").unwrap_or_default();
    let ok_first = cid
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = cid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_first || !ok_rest {
        return Err(CniError::env(
            "CNI_CONTAINERID",
            format!(
                "{cid:?}: missing or not a container id (a letter or digit, then letters, digits, \
                 '_', '.', '-')"
            ),
        ));
    }
    env.container_id = cid;
    env.netns = get("CNI_NETNS").filter(|n| !n.is_empty());
    if env.netns.is_none() && command != Command::Del {
        return Err(CniError::env(
            "CNI_NETNS",
            "missing (the container's namespace path)",
        ));
    }
    let ifname = get("CNI_IFNAME").unwrap_or_default();
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname == "."
        || ifname == ".."
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(CniError::env(
            "CNI_IFNAME",
            format!("{ifname:?}: missing or not an interface name (1-15 characters, no '/', ':' or spaces)"),
        ));
    }
    env.ifname = ifname;
    if let Some(args) = get("CNI_ARGS").filter(|a| !a.is_empty()) {
        for pair in args.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::env(
                    "CNI_ARGS",
                    format!("{pair:?} is not KEY=VALUE (pairs are separated by ';')"),
                ));
            };
            // Other keys (IgnoreUnknown, K8S_POD_NAMESPACE, ...) carry nothing netyard uses.
            if k == "K8S_POD_NAME" && !v.is_empty() {
                env.pod_name = Some(v.to_string());
            }
        }
    }
    Ok(env)
}

/// One published port as the `portMappings` capability gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// What the runtime put in `runtimeConfig` for the capabilities netyard declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `ips`: the addresses asked for, at most one per family (the IPv6 one needs a
    /// dual-stack network, and the daemon checks it against the prefix).
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    /// `mac`.
    pub mac: Option<String>,
    /// `aliases`: extra DNS names of the container on this network.
    pub aliases: Vec<String>,
    /// `portMappings`, as Docker SPECs for the daemon (`[HOSTIP:]HOSTPORT:CPORT/PROTO`).
    pub publish: Vec<String>,
}

/// The plugin's network configuration (one entry of a conflist's `plugins`, with the list's
/// `name` and `cniVersion` inserted by the runtime).
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub version: Version,
    /// The CNI network's name (the conflist's).
    pub name: String,
    /// The netyard network (created on first use from the options below).
    pub network: NetworkCreate,
    /// The daemon's socket (`api`), when given.
    pub api: Option<String>,
    /// The endpoint kind (`kind`: tap, the default, or veth).
    pub kind: Option<String>,
    pub runtime: RuntimeConfig,
    pub prev_result: Option<Value>,
    /// GC's `cni.dev/valid-attachments`: (container id, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
}

/// Fields the spec or the runtimes put in a plugin's configuration: accepted, and ignored
/// unless listed in [`OURS`] or read below.
const CNI_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "args",
    "capabilities",
    "runtimeConfig",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "disableCheck",
    "disableGC",
    "dns",
];

/// netyard's own fields: `network`, `api`, `kind` and `network create`'s options.
const OURS: &[&str] = &[
    "network",
    "api",
    "kind",
    "subnet",
    "gateway",
    "ipv6",
    "subnet6",
    "gateway6",
    "mtu",
    "internal",
    "host_loopback",
    "port_security",
    "max_flows_per_endpoint",
    "max_flows",
    "aging",
    "max_macs_per_port",
];

#[derive(Deserialize)]
struct Typed {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    #[serde(default)]
    name: String,
    network: Option<String>,
    api: Option<String>,
    kind: Option<String>,
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(default)]
    ipv6: bool,
    subnet6: Option<String>,
    gateway6: Option<String>,
    mtu: Option<u32>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    host_loopback: bool,
    port_security: Option<bool>,
    max_flows_per_endpoint: Option<u32>,
    max_flows: Option<u32>,
    aging: Option<u64>,
    max_macs_per_port: Option<u32>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<RawRuntime>,
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRuntime {
    #[serde(default)]
    ips: Vec<String>,
    mac: Option<String>,
    aliases: Option<Aliases>,
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
}

/// Podman passes `{"NETWORK": ["alias", ...]}`; a plain list is taken too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Aliases {
    List(Vec<String>),
    ByNetwork(BTreeMap<String, Vec<String>>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The `cniVersion` VERSION is asked in: the one on stdin when it is one the plugin speaks,
/// else the latest (VERSION answers whatever it is asked in; stdin may even be empty).
pub fn version_asked(stdin: &[u8]) -> Version {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(Version::parse))
        .unwrap_or(Version::LATEST)
}

/// Parses and checks the configuration on stdin.
pub fn parse_conf(stdin: &[u8]) -> Result<NetConf, CniError> {
    let v: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            Code::DecodingFailure,
            "the network configuration on stdin is not JSON",
            e.to_string(),
        )
    })?;
    let Value::Object(obj) = &v else {
        return Err(CniError::new(
            Code::DecodingFailure,
            "the network configuration on stdin is not a JSON object",
            "",
        ));
    };
    check_keys(obj)?;
    let t: Typed = serde_path_to_error::deserialize(&v).map_err(|e| {
        let path = e.path().to_string();
        CniError::config(&path, e.into_inner().to_string())
    })?;
    let version = match t.cni_version.as_deref() {
        None | Some("") => return Err(CniError::config("cniVersion", "missing")),
        Some(s) => Version::parse(s).ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!("cniVersion {s:?} is not supported"),
                format!("netyard speaks {}", SUPPORTED.join(", ")),
            )
        })?,
    };
    let network = match t.network.as_deref() {
        None | Some("") => {
            return Err(CniError::config(
                "network",
                "missing: the netyard network to attach to (created on first use)",
            ))
        }
        Some(n) => n.to_string(),
    };
    crate::plan::valid_name("network", &network)
        .map_err(|e| CniError::config("network", e.to_string()))?;
    check_parses::<ipnet::Ipv4Net>("subnet", &t.subnet, "an IPv4 CIDR")?;
    check_parses::<Ipv4Addr>("gateway", &t.gateway, "an IPv4 address")?;
    check_parses::<ipnet::Ipv6Net>("subnet6", &t.subnet6, "an IPv6 CIDR")?;
    check_parses::<Ipv6Addr>("gateway6", &t.gateway6, "an IPv6 address")?;
    for (field, set) in [
        ("subnet6", t.subnet6.is_some()),
        ("gateway6", t.gateway6.is_some()),
    ] {
        if set && !t.ipv6 {
            return Err(CniError::config(
                field,
                "needs \"ipv6\": true (the network is IPv4-only without it)",
            ));
        }
    }
    if let Some(k) = &t.kind {
        if k != "tap" && k != "veth" {
            return Err(CniError::config(
                "kind",
                format!("{k:?} is not tap or veth"),
            ));
        }
    }
    if t.api.as_deref() == Some("") {
        return Err(CniError::config(
            "api",
            "empty: give the daemon's socket or leave it out",
        ));
    }
    let runtime = runtime_config(t.runtime_config.unwrap_or_default(), &t.name, &network)?;
    let valid_attachments = t.valid_attachments.map(|v| {
        v.into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect::<Vec<_>>()
    });
    Ok(NetConf {
        version,
        name: t.name,
        network: NetworkCreate {
            name: network,
            subnet: t.subnet,
            gateway: t.gateway,
            ipv6: t.ipv6,
            subnet6: t.subnet6,
            gateway6: t.gateway6,
            mtu: t.mtu,
            internal: t.internal,
            host_loopback: t.host_loopback,
            port_security: t.port_security,
            max_flows_per_endpoint: t.max_flows_per_endpoint,
            max_flows: t.max_flows,
            aging: t.aging,
            max_macs_per_port: t.max_macs_per_port,
            ..NetworkCreate::default()
        },
        api: t.api,
        kind: t.kind,
        runtime,
        prev_result: t.prev_result,
        valid_attachments,
    })
}

/// `value`, when given, parses as a `T` (`what`); the error names `field`.
fn check_parses<T: std::str::FromStr>(
    field: &str,
    value: &Option<String>,
    what: &str,
) -> Result<(), CniError> {
    match value {
        Some(v) if v.parse::<T>().is_err() => {
            Err(CniError::config(field, format!("{v:?} is not {what}")))
        }
        _ => Ok(()),
    }
}

fn check_keys(obj: &Map<String, Value>) -> Result<(), CniError> {
    for k in obj.keys() {
        if CNI_KEYS.contains(&k.as_str()) || OURS.contains(&k.as_str()) {
            continue;
        }
        let why = match k.as_str() {
            "ipam" => {
                "netyard assigns addresses itself: give `subnet` (and `gateway`) instead of an \
                       IPAM plugin"
                    .to_string()
            }
            "ipMasq" => {
                "netyard networks reach the outside through the daemon's own sockets: there \
                         is no masquerading to configure"
                    .to_string()
            }
            _ => format!(
                "not a netyard field (netyard takes {}; the runtime's {})",
                OURS.join(", "),
                CNI_KEYS.join(", ")
            ),
        };
        return Err(CniError::new(
            Code::UnsupportedField,
            format!("unsupported field {k:?}"),
            why,
        ));
    }
    Ok(())
}

fn runtime_config(
    raw: RawRuntime,
    cni_name: &str,
    network: &str,
) -> Result<RuntimeConfig, CniError> {
    let mut rc = RuntimeConfig {
        mac: raw.mac.filter(|m| !m.is_empty()),
        ..RuntimeConfig::default()
    };
    for (i, s) in raw.ips.iter().enumerate() {
        let field = format!("runtimeConfig.ips[{i}]");
        let addr = s.split_once('/').map_or(s.as_str(), |(a, _)| a);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CniError::config(&field, format!("{s:?} is not an IP address")))?;
        let taken = match ip {
            IpAddr::V4(v4) => rc.ip.replace(v4).is_some(),
            IpAddr::V6(v6) => rc.ip6.replace(v6).is_some(),
        };
        if taken {
            return Err(CniError::new(
                Code::UnsupportedField,
                format!("unsupported {field}"),
                "one address per family per interface",
            ));
        }
    }
    rc.aliases = match raw.aliases {
        None => Vec::new(),
        Some(Aliases::List(l)) => l,
        Some(Aliases::ByNetwork(m)) => m
            .get(cni_name)
            .or_else(|| m.get(network))
            .cloned()
            .unwrap_or_default(),
    };
    for (i, p) in raw.port_mappings.iter().enumerate() {
        rc.publish.push(port_spec(i, p)?);
    }
    Ok(rc)
}

/// One `portMappings` entry as the daemon's SPEC.
fn port_spec(i: usize, p: &PortMapping) -> Result<String, CniError> {
    let field = |f: &str| format!("runtimeConfig.portMappings[{i}].{f}");
    let port = |f: &str, n: u32| {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| CniError::config(&field(f), format!("{n} is not a port (1-65535)")))
    };
    let host = port("hostPort", p.host_port)?;
    let cport = port("containerPort", p.container_port)?;
    let proto = match p
        .protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("tcp") => "tcp",
        Some("udp") => "udp",
        Some(other) => {
            return Err(CniError::new(
                Code::UnsupportedField,
                format!("unsupported {}", field("protocol")),
                format!("{other:?}: netyard publishes tcp and udp"),
            ))
        }
    };
    let ip = match p.host_ip.as_deref().filter(|s| !s.is_empty()) {
        None => String::new(),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => format!("{a}:"),
            Ok(IpAddr::V6(a)) => format!("[{a}]:"),
            Err(_) => {
                return Err(CniError::config(
                    &field("hostIP"),
                    format!("{s:?} is not an IP address"),
                ))
            }
        },
    };
    Ok(format!("{ip}{host}:{cport}/{proto}"))
}

/// The endpoint's key for the daemon (`owner`): the spec's key of an attachment, container id
/// and interface, on the configuration's network.
pub fn owner_key(container_id: &str, ifname: &str) -> String {
    format!("cni:{container_id}:{ifname}")
}

/// The (container id, ifname) an owner key names, for GC; `None` for endpoints netyard's CNI
/// plugin did not make.
pub fn parse_owner(owner: &str) -> Option<(&str, &str)> {
    owner.strip_prefix("cni:")?.rsplit_once(':')
}

/// The endpoint's name, which is its DNS name on the network: `K8S_POD_NAME` (Podman's
/// container name) when there is one, else the container id, made a valid daemon name
/// (1-64 letters, digits, '_', '.', '-', starting with a letter or digit). A name that had to
/// be changed gets a hash of the original appended, so two ids that differ only in what was
/// replaced still get two names. Stable: the same input always gives the same name.
pub fn endpoint_name(pod_name: Option<&str>, container_id: &str) -> String {
    sanitize(pod_name.unwrap_or(container_id))
}

/// The name used when [`endpoint_name`] is taken by another container on the network (two
/// pods of one name in two Kubernetes namespaces): the container id's.
pub fn fallback_name(container_id: &str) -> String {
    let n = sanitize(container_id);
    if n.len() <= 60 {
        format!("cni-{n}")
    } else {
        format!("cni-{}", &n[..60])
    }
}

fn sanitize(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = s
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .len();
    s = s[s.len() - trimmed..].to_string();
    if s == raw && !s.is_empty() && s.len() <= 64 {
        return s;
    }
    let hash = format!("{:08x}", fnv1a(raw.as_bytes()));
    s.truncate(55);
    if s.is_empty() {
        format!("c-{hash}")
    } else {
        format!("{s}-{hash}")
    }
}

/// FNV-1a, 32 bits: a hash that is the same in every build (std's hasher may change between
/// Rust releases, and names must stay stable across upgrades); eight lines do not need a crate.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
