//! Docker's requests -> netyard's: pure functions, unit-tested with requests as Docker 20.10
//! sends them. Names are derived from Docker's ids, so the plugin keeps no table of its own
//! (a restarted plugin serves the networks and endpoints it made before):
//!
//! - a network is named by the first 12 characters of Docker's network id (what `docker
//!   network ls` shows);
//! - an endpoint by the first 12 of its endpoint id; the veth end Docker moves into the
//!   container is `nyd` and those 12 (15 bytes, Linux's limit).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netyard_api::model::{EndpointCreate, EndpointInfo, NetworkCreate};

use super::wire::{
    CreateEndpoint, CreateNetwork, Interface, IpamData, PortBinding, ENABLE_IPV6, GENERIC,
    INTERNAL, PORT_MAP,
};

/// A request netyard cannot serve: the field at fault (as Docker's JSON names it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub field: String,
    pub reason: String,
}

impl Fault {
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Fault {
        Fault {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netyard: {}: {}", self.field, self.reason)
    }
}

/// The first 12 characters of a Docker id (64 hex digits).
fn short_id(field: &str, id: &str) -> Result<String, Fault> {
    if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Fault::new(
            field,
            format!("{id:?} is not a Docker id (at least 12 letters and digits)"),
        ));
    }
    Ok(id[..12].to_ascii_lowercase())
}

/// The netyard network of a Docker network.
pub fn network_name(network_id: &str) -> Result<String, Fault> {
    short_id("NetworkID", network_id)
}

/// The netyard endpoint of a Docker endpoint.
pub fn endpoint_name(endpoint_id: &str) -> Result<String, Fault> {
    short_id("EndpointID", endpoint_id)
}

/// The veth end Docker moves into the container (named in Join's answer).
pub fn peer_name(endpoint_id: &str) -> Result<String, Fault> {
    Ok(format!("nyd{}", endpoint_name(endpoint_id)?))
}

/// The `-o KEY=VALUE` driver options netyard reads, with the network field each sets.
pub const DRIVER_OPTIONS: &[&str] = &[
    "netyard.mtu",
    "com.docker.network.driver.mtu",
    "netyard.host_loopback",
    "netyard.port_security",
    "com.docker.network.bridge.enable_icc",
    "netyard.max_flows",
    "netyard.max_flows_per_endpoint",
    "netyard.aging",
    "netyard.max_macs_per_port",
];

/// CreateNetwork -> `network create`: the subnet and gateway Docker's IPAM gave (netyard's
/// own or another), with `--ipv6` the IPv6 prefix and gateway too (a dual-stack network),
/// `--internal`, the `-o netyard.*` options. 127.0.0.11 is left to Docker's resolver
/// (`container_resolver: false`).
pub fn network_request(req: &CreateNetwork) -> Result<NetworkCreate, Fault> {
    let name = network_name(&req.network_id)?;
    let pool = match req.ipv4_data.as_slice() {
        [one] => one,
        [] => {
            return Err(Fault::new(
                "IPv4Data",
                "no IPv4 pool: give --subnet or use --ipam-driver netyard",
            ))
        }
        _ => {
            return Err(Fault::new(
                "IPv4Data",
                "netyard networks have one subnet: give one --subnet",
            ))
        }
    };
    let (subnet, gateway) = ipam_pool("IPv4Data", pool, false)?;
    let enable_ipv6 = bool_option(&req.options, ENABLE_IPV6)?;
    // Docker asks its IPAM for an IPv6 pool only with --ipv6; a pool without it is refused
    // rather than dropped, so the user does not lose a prefix silently.
    let (subnet6, gateway6) = match req.ipv6_data.as_slice() {
        [] => (None, None),
        _ if !enable_ipv6 => {
            return Err(Fault::new(
                "IPv6Data",
                format!("an IPv6 pool without --ipv6 ({ENABLE_IPV6} is not true)"),
            ))
        }
        [one] => {
            let (v6, gw) = ipam_pool("IPv6Data", one, true)?;
            (Some(v6), gw)
        }
        _ => {
            return Err(Fault::new(
                "IPv6Data",
                "netyard networks have at most one IPv6 prefix: give one IPv6 --subnet",
            ))
        }
    };
    let internal = bool_option(&req.options, INTERNAL)?;
    let mut out = NetworkCreate {
        name,
        subnet: Some(subnet),
        gateway,
        // --ipv6 without a pool (an IPAM that gave none): netyard picks a ULA /64.
        ipv6: enable_ipv6,
        subnet6,
        gateway6,
        internal,
        container_resolver: Some(false),
        ..NetworkCreate::default()
    };
    let generic: BTreeMap<String, String> = match req.options.get(GENERIC) {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            Fault::new(
                format!("Options.{GENERIC}"),
                "driver options must be KEY=VALUE strings",
            )
        })?,
    };
    for (k, v) in &generic {
        let field = || format!("Options.{GENERIC}.{k}");
        let num = |max: u64| -> Result<u64, Fault> {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| Fault::new(field(), format!("{v:?} is not a number")))
        };
        let boolean = || -> Result<bool, Fault> {
            v.parse::<bool>()
                .map_err(|_| Fault::new(field(), format!("{v:?} is not true or false")))
        };
        let small = |max: u64| -> Result<u32, Fault> {
            num(max).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        match k.as_str() {
            "netyard.mtu" | "com.docker.network.driver.mtu" => {
                out.mtu = Some(small(u64::from(u32::MAX))?)
            }
            "netyard.host_loopback" => out.host_loopback = boolean()?,
            "netyard.port_security" => out.port_security = Some(boolean()?),
            // Docker's bridge driver option, honoured the same way by netyard's switch.
            "com.docker.network.bridge.enable_icc" => out.icc = Some(boolean()?),
            "netyard.max_flows" => out.max_flows = Some(small(u64::from(u32::MAX))?),
            "netyard.max_flows_per_endpoint" => {
                out.max_flows_per_endpoint = Some(small(u64::from(u32::MAX))?)
            }
            "netyard.aging" => out.aging = Some(num(u64::MAX)?),
            "netyard.max_macs_per_port" => {
                out.max_macs_per_port = Some(small(u64::from(u32::MAX))?)
            }
            other if other.starts_with("netyard.") => {
                return Err(Fault::new(
                    field(),
                    format!(
                        "not a netyard option (known: {})",
                        DRIVER_OPTIONS.join(", ")
                    ),
                ))
            }
            // Another driver's or Docker's own: not ours to refuse.
            _ => {}
        }
    }
    Ok(out)
}

/// A boolean option as Docker sends it (a JSON boolean or its string); absent is false.
fn bool_option(options: &BTreeMap<String, serde_json::Value>, key: &str) -> Result<bool, Fault> {
    match options.get(key) {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(v) => v
            .as_bool()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                Fault::new(
                    format!("Options.{key}"),
                    format!("{v} is not true or false"),
                )
            }),
    }
}

/// One pool of `IPv4Data`/`IPv6Data` (`list` names it), of the family `v6` says: its CIDR
/// (truncated) and its gateway ("ADDR/LEN" or "ADDR"), if given.
fn ipam_pool(list: &str, pool: &IpamData, v6: bool) -> Result<(String, Option<String>), Fault> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let subnet = pool
        .pool
        .parse::<IpNet>()
        .ok()
        .filter(|n| matches!(n, IpNet::V6(_)) == v6)
        .ok_or_else(|| {
            Fault::new(
                format!("{list}[0].Pool"),
                format!("{:?} is not an {family} CIDR", pool.pool),
            )
        })?;
    let gateway = match pool.gateway.as_str() {
        "" => None,
        g => Some(address(&format!("{list}[0].Gateway"), g, v6)?.to_string()),
    };
    Ok((subnet.trunc().to_string(), gateway))
}

/// An address as Docker sends it ("ADDR/LEN" or "ADDR"), of the family `v6` says.
fn address(field: &str, s: &str, v6: bool) -> Result<IpAddr, Fault> {
    s.parse::<IpNet>()
        .map(|n| n.addr())
        .or_else(|_| s.parse::<IpAddr>())
        .ok()
        .filter(|ip| ip.is_ipv6() == v6)
        .ok_or_else(|| {
            let family = if v6 { "IPv6" } else { "IPv4" };
            Fault::new(field, format!("{s:?} is not an {family} address"))
        })
}

/// CreateEndpoint -> attach: a veth whose container end waits in the daemon's namespace for
/// Docker, with the addresses Docker's IPAM gave (the daemon must honour them: the IPv6 one
/// on a dual-stack network, where the daemon checks it against the prefix) and Docker's MAC
/// when it gave one.
pub fn endpoint_request(req: &CreateEndpoint) -> Result<EndpointCreate, Fault> {
    let name = endpoint_name(&req.endpoint_id)?;
    let iface = req.interface.clone().unwrap_or_default();
    let ip6 = match iface.address_ipv6.as_str() {
        "" => None,
        a => Some(address("Interface.AddressIPv6", a, true)?.to_string()),
    };
    let ip = match iface.address.as_str() {
        "" => {
            return Err(Fault::new(
                "Interface.Address",
                "missing: Docker's IPAM gave the endpoint no IPv4 address",
            ))
        }
        a => address("Interface.Address", a, false)?,
    };
    Ok(EndpointCreate {
        name,
        peer: Some(peer_name(&req.endpoint_id)?),
        kind: Some("veth".into()),
        ip: Some(ip.to_string()),
        ip6,
        mac: (!iface.mac_address.is_empty()).then(|| iface.mac_address.clone()),
        ..EndpointCreate::default()
    })
}

/// CreateEndpoint's answer: what Docker did not give and the daemon chose (libnetwork refuses
/// a value it gave coming back): the MAC, and the IPv6 address on a dual-stack network whose
/// pool Docker's IPAM did not serve (`--ipv6` with an IPAM that gave no IPv6 pool: netyard
/// picked the prefix and the address).
pub fn endpoint_reply(given: Option<&Interface>, info: &EndpointInfo) -> Option<Interface> {
    let given = given.cloned().unwrap_or_default();
    let mut out = Interface::default();
    if given.mac_address.is_empty() {
        out.mac_address = info.mac.clone();
    }
    if given.address_ipv6.is_empty() {
        if let (Some(ip6), Some(len)) = (&info.ip6, info.prefix_len6) {
            out.address_ipv6 = format!("{ip6}/{len}");
        }
    }
    (out != Interface::default()).then_some(out)
}

/// ProgramExternalConnectivity's `-p` bindings -> netyard's published-port SPECs
/// (`[HOSTIP:][HOSTPORT[-END]:]CPORT/PROTO`, the same grammar). Exposed ports without a
/// binding publish nothing, as with Docker's bridge.
pub fn port_specs(options: &BTreeMap<String, serde_json::Value>) -> Result<Vec<String>, Fault> {
    let bindings: Vec<PortBinding> = match options.get(PORT_MAP) {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            Fault::new(
                format!("Options.{PORT_MAP}"),
                format!("not a list of port bindings: {e}"),
            )
        })?,
    };
    let mut specs = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        let field = |f: &str| format!("Options.{PORT_MAP}[{i}].{f}");
        let proto = match b.proto {
            6 => "tcp",
            17 => "udp",
            p => {
                return Err(Fault::new(
                    field("Proto"),
                    format!("protocol {p} cannot be published (tcp and udp can)"),
                ))
            }
        };
        if b.port == 0 {
            return Err(Fault::new(field("Port"), "0 is not a container port"));
        }
        let host_ip = match b.host_ip.as_str() {
            "" => String::new(),
            ip => match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(v4)) => format!("{v4}:"),
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:"),
                Err(_) => {
                    return Err(Fault::new(
                        field("HostIP"),
                        format!("{ip:?} is not an IP address"),
                    ))
                }
            },
        };
        let host_ports = match (b.host_port, b.host_port_end) {
            (0, _) => String::new(),
            (start, end) if end <= start => start.to_string(),
            (start, end) => format!("{start}-{end}"),
        };
        specs.push(match (host_ip.is_empty(), host_ports.is_empty()) {
            (true, true) => format!("{}/{proto}", b.port),
            (false, true) => format!("{host_ip}:{}/{proto}", b.port),
            _ => format!("{host_ip}{host_ports}:{}/{proto}", b.port),
        });
    }
    Ok(specs)
}

/// The prefix lengths a pool may have: IPv4 as `network create --subnet`, IPv6 as
/// `--subnet6`.
const PREFIX4: std::ops::RangeInclusive<u8> = 8..=30;
const PREFIX6: std::ops::RangeInclusive<u8> = crate::plan::PREFIX6_MIN..=crate::plan::PREFIX6_MAX;

/// A PoolID (netyard's are the pool's CIDR), of either family.
pub fn parse_pool(field: &str, pool: &str) -> Result<IpNet, Fault> {
    let net: IpNet = pool
        .parse()
        .map_err(|_| Fault::new(field, format!("{pool:?} is not a CIDR")))?;
    let range = match net {
        IpNet::V4(_) => PREFIX4,
        IpNet::V6(_) => PREFIX6,
    };
    if !range.contains(&net.prefix_len()) {
        return Err(Fault::new(
            field,
            format!(
                "prefix /{} out of range ({} to {})",
                net.prefix_len(),
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(net.trunc())
}

/// RequestPool: the pool asked for (`None`: netyard picks a free one, an IPv4 /24 or, with
/// `V6`, a ULA /64), of the family `V6` says.
pub fn requested_pool(req: &super::wire::RequestPool) -> Result<Option<IpNet>, Fault> {
    if !req.sub_pool.is_empty() {
        return Err(Fault::new(
            "SubPool",
            "--ip-range is not supported: netyard hands out the whole subnet",
        ));
    }
    match req.pool.as_str() {
        "" => Ok(None),
        p => {
            let net = parse_pool("Pool", p)?;
            if matches!(net, IpNet::V6(_)) != req.v6 {
                let want = if req.v6 {
                    "IPv6 (V6 is true)"
                } else {
                    "IPv4 (V6 is false)"
                };
                return Err(Fault::new("Pool", format!("{net} is not {want}")));
            }
            Ok(Some(net))
        }
    }
}

/// An address of `pool` as RequestAddress answers it: with the pool's prefix.
pub fn with_prefix(ip: IpAddr, pool: IpNet) -> String {
    format!("{ip}/{}", pool.prefix_len())
}

/// A host address of `pool`: inside it, not its network address (IPv6's subnet-router
/// anycast) and, for IPv4, not its broadcast address.
pub fn host_address(field: &str, s: &str, pool: IpNet) -> Result<IpAddr, Fault> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| Fault::new(field, format!("{s:?} is not an IP address")))?;
    let broadcast = matches!(pool, IpNet::V4(_)) && ip == pool.broadcast();
    if !pool.contains(&ip) || ip == pool.network() || broadcast {
        return Err(Fault::new(
            field,
            format!("{ip} is not a host address of {pool}"),
        ));
    }
    Ok(ip)
}

/// The gateway netyard gives a network without `--gateway`/`--gateway6`: the pool's first
/// address after the network address (as `network create`).
pub fn default_gateway(pool: IpNet) -> IpAddr {
    nth_address(pool, 1).unwrap_or_else(|| pool.network())
}

/// The address `n` after `pool`'s network address, if inside the pool.
fn nth_address(pool: IpNet, n: u128) -> Option<IpAddr> {
    let ip = match pool.network() {
        IpAddr::V4(a) => u32::try_from(n)
            .ok()
            .and_then(|n| u32::from(a).checked_add(n))
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        IpAddr::V6(a) => u128::from(a)
            .checked_add(n)
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    }?;
    pool.contains(&ip).then_some(ip)
}

/// The first host address of `pool` that is neither the gateway nor in `taken`. Only the
/// first `taken.len() + 2` candidates need looking at, so an IPv6 /64 costs no more than a /24.
pub fn free_address(
    pool: IpNet,
    gateway: IpAddr,
    taken: &std::collections::BTreeSet<IpAddr>,
) -> Option<IpAddr> {
    let bound = u128::try_from(taken.len())
        .unwrap_or(u128::MAX)
        .saturating_add(2);
    (1..=bound)
        .map_while(|n| nth_address(pool, n))
        .filter(|ip| !(matches!(pool, IpNet::V4(_)) && *ip == pool.broadcast()))
        .find(|ip| *ip != gateway && !taken.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::super::wire::{Interface, IpamData, RequestPool};
    use super::*;
    use serde_json::json;

    /// One change to a request, for the field-error tables.
    type Setter<T> = Box<dyn Fn(&mut T)>;

    const NET: &str = "3b1f2c0d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
    const EP: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";

    /// CreateNetwork as Docker 20.10 sends it for `docker network create -d netyard
    /// --ipam-driver netyard --subnet 10.77.0.0/24 --internal -o netyard.mtu=1400`.
    fn create_network() -> CreateNetwork {
        serde_json::from_value(json!({
            "NetworkID": NET,
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {"netyard.mtu": "1400"},
                "com.docker.network.internal": true
            },
            "IPv4Data": [{"AddressSpace": "netyard-local", "Gateway": "10.77.0.1/24",
                          "Pool": "10.77.0.0/24"}],
            "IPv6Data": []
        }))
        .unwrap()
    }

    #[test]
    fn create_network_maps_pool_gateway_internal_and_options() {
        let r = network_request(&create_network()).unwrap();
        assert_eq!(
            r,
            NetworkCreate {
                name: "3b1f2c0d9e8a".into(),
                subnet: Some("10.77.0.0/24".into()),
                gateway: Some("10.77.0.1".into()),
                mtu: Some(1400),
                internal: true,
                container_resolver: Some(false),
                ..NetworkCreate::default()
            }
        );
    }

    #[test]
    fn create_network_errors_name_their_field() {
        let cases: Vec<(&str, Setter<CreateNetwork>)> = vec![
            ("NetworkID", Box::new(|r| r.network_id = "abc".into())),
            (
                "NetworkID",
                Box::new(|r| r.network_id = "../../etc/passwd".into()),
            ),
            ("IPv6Data", Box::new(|r| r.ipv6_data = vec![v6_pool()])),
            (
                "IPv6Data",
                Box::new(|r| with_v6(r, &[v6_pool(), v6_pool()])),
            ),
            (
                "IPv6Data[0].Pool",
                Box::new(|r| {
                    let pool = "10.78.0.0/24".into();
                    with_v6(r, &[IpamData { pool, ..v6_pool() }])
                }),
            ),
            (
                "IPv6Data[0].Gateway",
                Box::new(|r| {
                    let gateway = "10.77.0.1/24".into();
                    with_v6(
                        r,
                        &[IpamData {
                            gateway,
                            ..v6_pool()
                        }],
                    )
                }),
            ),
            (
                "Options.com.docker.network.enable_ipv6",
                Box::new(|r| {
                    r.options.insert(ENABLE_IPV6.into(), json!("maybe"));
                }),
            ),
            ("IPv4Data", Box::new(|r| r.ipv4_data.clear())),
            (
                "IPv4Data",
                Box::new(|r| r.ipv4_data.push(IpamData::default())),
            ),
            (
                "IPv4Data[0].Pool",
                Box::new(|r| r.ipv4_data[0].pool = "fd00::/64".into()),
            ),
            (
                "IPv4Data[0].Gateway",
                Box::new(|r| r.ipv4_data[0].gateway = "gw".into()),
            ),
            (
                "Options.com.docker.network.internal",
                Box::new(|r| {
                    r.options.insert(INTERNAL.into(), json!(7));
                }),
            ),
            (
                "Options.com.docker.network.generic.netyard.mtu",
                Box::new(|r| {
                    r.options
                        .insert(GENERIC.into(), json!({"netyard.mtu": "big"}));
                }),
            ),
            (
                "Options.com.docker.network.generic.netyard.color",
                Box::new(|r| {
                    r.options
                        .insert(GENERIC.into(), json!({"netyard.color": "red"}));
                }),
            ),
            (
                "Options.com.docker.network.generic",
                Box::new(|r| {
                    r.options.insert(GENERIC.into(), json!(["x"]));
                }),
            ),
        ];
        for (want, set) in cases {
            let mut r = create_network();
            set(&mut r);
            let e = network_request(&r).expect_err(want);
            assert_eq!(e.field, want, "{e}");
            assert!(e.to_string().starts_with(&format!("netyard: {want}: ")));
        }
    }

    /// The IPv6 pool Docker 20.10 sends for `--ipv6 --subnet fd00:77::/64`.
    fn v6_pool() -> IpamData {
        IpamData {
            address_space: "netyard-local".into(),
            pool: "fd00:77::/64".into(),
            gateway: "fd00:77::1/64".into(),
            ..IpamData::default()
        }
    }

    /// `--ipv6` with these IPv6 pools.
    fn with_v6(r: &mut CreateNetwork, pools: &[IpamData]) {
        r.options.insert(ENABLE_IPV6.into(), json!(true));
        r.ipv6_data = pools.to_vec();
    }

    #[test]
    fn ipv6_makes_a_dual_stack_network_with_dockers_prefix_and_gateway() {
        let mut r = create_network();
        with_v6(&mut r, &[v6_pool()]);
        let got = network_request(&r).unwrap();
        assert_eq!(
            (got.ipv6, got.subnet6.as_deref(), got.gateway6.as_deref()),
            (true, Some("fd00:77::/64"), Some("fd00:77::1"))
        );
        assert_eq!(got.subnet.as_deref(), Some("10.77.0.0/24"));
        // Docker's own IPAM gives the pool without a gateway when it has none to give; a
        // pool not at its network address is truncated as IPv4's is.
        r.ipv6_data = vec![IpamData {
            pool: "fd00:77::9/64".into(),
            gateway: String::new(),
            ..v6_pool()
        }];
        let got = network_request(&r).unwrap();
        assert_eq!(
            (got.subnet6.as_deref(), got.gateway6),
            (Some("fd00:77::/64"), None)
        );
        // --ipv6 and no IPv6 pool (an IPAM that gave none): netyard picks a ULA /64.
        r.ipv6_data.clear();
        let got = network_request(&r).unwrap();
        assert_eq!((got.ipv6, got.subnet6), (true, None));
        // The option as a string, as some clients send it.
        r.options.insert(ENABLE_IPV6.into(), json!("false"));
        assert!(!network_request(&r).unwrap().ipv6);
    }

    #[test]
    fn other_drivers_options_are_left_alone() {
        let mut r = create_network();
        r.options.insert(
            GENERIC.into(),
            json!({"com.docker.network.bridge.name": "x", "com.docker.network.driver.mtu": "9000"}),
        );
        assert_eq!(network_request(&r).unwrap().mtu, Some(9000));
    }

    #[test]
    fn dockers_enable_icc_option_turns_isolation_on() {
        let mut r = create_network();
        r.options.insert(
            GENERIC.into(),
            json!({"com.docker.network.bridge.enable_icc": "false"}),
        );
        assert_eq!(network_request(&r).unwrap().icc, Some(false));
        r.options.insert(
            GENERIC.into(),
            json!({"com.docker.network.bridge.enable_icc": "maybe"}),
        );
        let e = network_request(&r).expect_err("maybe");
        assert_eq!(
            e.field,
            "Options.com.docker.network.generic.com.docker.network.bridge.enable_icc"
        );
    }

    #[test]
    fn create_endpoint_is_a_veth_left_for_docker_with_dockers_address() {
        let r: CreateEndpoint = serde_json::from_value(json!({
            "NetworkID": NET, "EndpointID": EP,
            "Interface": {"Address": "10.77.0.2/24", "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
                        "com.docker.network.portmap": []}
        }))
        .unwrap();
        assert_eq!(
            endpoint_request(&r).unwrap(),
            EndpointCreate {
                name: "9e8d7c6b5a4f".into(),
                peer: Some("nyd9e8d7c6b5a4f".into()),
                kind: Some("veth".into()),
                ip: Some("10.77.0.2".into()),
                ..EndpointCreate::default()
            }
        );
        assert_eq!(peer_name(EP).unwrap().len(), 15, "Linux's longest name");
        let mut with_mac = r.clone();
        with_mac.interface = Some(Interface {
            address: "10.77.0.2/24".into(),
            mac_address: "02:42:0a:4d:00:09".into(),
            ..Interface::default()
        });
        assert_eq!(
            endpoint_request(&with_mac).unwrap().mac.as_deref(),
            Some("02:42:0a:4d:00:09")
        );
        let mut dual = r.clone();
        dual.interface = Some(Interface {
            address: "10.77.0.2/24".into(),
            address_ipv6: "fd00:77::2/64".into(),
            ..Interface::default()
        });
        let got = endpoint_request(&dual).unwrap();
        assert_eq!(
            (got.ip.as_deref(), got.ip6.as_deref()),
            (Some("10.77.0.2"), Some("fd00:77::2"))
        );
        for (want, iface) in [
            ("Interface.Address", None),
            (
                "Interface.Address",
                Some(Interface {
                    address: "ten".into(),
                    ..Interface::default()
                }),
            ),
            (
                "Interface.AddressIPv6",
                Some(Interface {
                    address: "10.77.0.2/24".into(),
                    address_ipv6: "10.77.0.3/24".into(),
                    ..Interface::default()
                }),
            ),
        ] {
            let mut bad = r.clone();
            bad.interface = iface;
            assert_eq!(endpoint_request(&bad).unwrap_err().field, want);
        }
    }

    #[test]
    fn create_endpoint_answers_only_what_docker_did_not_give() {
        let info: EndpointInfo = serde_json::from_value(json!({
            "name": "9e8d7c6b5a4f", "network": "3b1f2c0d9e8a", "kind": "veth",
            "ip": "10.77.0.2", "prefix_len": 24, "gateway": "10.77.0.1",
            "ip6": "fd00:77::2", "prefix_len6": 64, "gateway6": "fd00:77::1",
            "mac": "02:aa:bb:cc:dd:ee", "ifname": "eth0", "netns": "", "offload": true,
            "port": 3, "counters": netyard_api::model::Counters::default()
        }))
        .unwrap();
        let asked = |mac: &str, ip6: &str| Interface {
            address: "10.77.0.2/24".into(),
            address_ipv6: ip6.into(),
            mac_address: mac.into(),
        };
        assert_eq!(
            endpoint_reply(Some(&asked("", "")), &info),
            Some(Interface {
                mac_address: "02:aa:bb:cc:dd:ee".into(),
                address_ipv6: "fd00:77::2/64".into(),
                ..Interface::default()
            }),
            "netyard's MAC and the IPv6 address of a prefix netyard picked"
        );
        assert_eq!(
            endpoint_reply(Some(&asked("02:42:0a:4d:00:09", "fd00:77::2/64")), &info),
            None,
            "everything came from Docker"
        );
        let mut v4_only = info.clone();
        (v4_only.ip6, v4_only.prefix_len6) = (None, None);
        assert_eq!(
            endpoint_reply(None, &v4_only),
            Some(Interface {
                mac_address: "02:aa:bb:cc:dd:ee".into(),
                ..Interface::default()
            })
        );
    }

    #[test]
    fn port_bindings_become_specs_keeping_host_ip_and_ranges() {
        let opts: BTreeMap<String, serde_json::Value> = serde_json::from_value(json!({
            "com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
                {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 0, "HostPortEnd": 0},
                {"Proto": 6, "IP": "", "Port": 22, "HostIP": "::1", "HostPort": 2200, "HostPortEnd": 2210},
                {"Proto": 6, "IP": "", "Port": 443, "HostIP": "", "HostPort": 0, "HostPortEnd": 0}
            ]
        }))
        .unwrap();
        let specs = port_specs(&opts).unwrap();
        assert_eq!(
            specs,
            vec![
                "8080:80/tcp",
                "127.0.0.1::53/udp",
                "[::1]:2200-2210:22/tcp",
                "443/tcp"
            ]
        );
        for s in &specs {
            netyard_api::portspec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        assert!(port_specs(&BTreeMap::new()).unwrap().is_empty());
        let sctp: BTreeMap<String, serde_json::Value> = serde_json::from_value(
            json!({"com.docker.network.portmap": [{"Proto": 132, "Port": 9}]}),
        )
        .unwrap();
        assert_eq!(
            port_specs(&sctp).unwrap_err().field,
            "Options.com.docker.network.portmap[0].Proto"
        );
    }

    #[test]
    fn pools_are_cidrs_of_the_family_asked_without_sub_pools() {
        let mut r = RequestPool {
            address_space: "netyard-local".into(),
            pool: "10.77.0.9/24".into(),
            ..RequestPool::default()
        };
        assert_eq!(
            requested_pool(&r).unwrap(),
            Some("10.77.0.0/24".parse().unwrap())
        );
        r.pool.clear();
        assert_eq!(requested_pool(&r).unwrap(), None);
        let mut v6 = RequestPool {
            v6: true,
            ..r.clone()
        };
        assert_eq!(
            requested_pool(&v6).unwrap(),
            None,
            "netyard picks a ULA /64"
        );
        v6.pool = "fd00:77::9/64".into();
        assert_eq!(
            requested_pool(&v6).unwrap(),
            Some("fd00:77::/64".parse().unwrap())
        );
        for (want, set) in [
            (
                "Pool",
                Box::new(|r: &mut RequestPool| r.pool = "fd00:77::/64".into())
                    as Setter<RequestPool>,
            ),
            (
                "Pool",
                Box::new(|r| {
                    r.v6 = true;
                    r.pool = "10.77.0.0/24".into();
                }),
            ),
            (
                "Pool",
                Box::new(|r| {
                    r.v6 = true;
                    r.pool = "fd00::/40".into();
                }),
            ),
            (
                "SubPool",
                Box::new(|r| {
                    r.pool = "10.77.0.0/24".into();
                    r.sub_pool = "10.77.0.128/25".into();
                }),
            ),
            ("Pool", Box::new(|r| r.pool = "10.77.0.0/31".into())),
            ("Pool", Box::new(|r| r.pool = "nope".into())),
        ] {
            let mut b = r.clone();
            set(&mut b);
            assert_eq!(requested_pool(&b).unwrap_err().field, want);
        }
    }

    #[test]
    fn null_maps_from_docker_read_as_empty() {
        // As Docker 20.10 sends a container's RequestAddress (Go's nil map).
        let r: super::super::wire::RequestAddress = serde_json::from_value(
            json!({"PoolID": "10.77.0.0/24", "Address": "", "Options": null}),
        )
        .unwrap();
        assert!(r.options.is_empty());
        let n: CreateNetwork = serde_json::from_value(
            json!({"NetworkID": NET, "Options": null, "IPv4Data": null, "IPv6Data": null}),
        )
        .unwrap();
        assert_eq!(network_request(&n).unwrap_err().field, "IPv4Data");
    }

    #[test]
    fn addresses_skip_the_gateway_and_what_is_taken() {
        let pool: IpNet = "10.77.0.0/29".parse().unwrap();
        let gw = default_gateway(pool);
        let v4 = |h| IpAddr::V4(Ipv4Addr::new(10, 77, 0, h));
        assert_eq!(gw, v4(1));
        let mut taken = std::collections::BTreeSet::new();
        assert_eq!(free_address(pool, gw, &taken), Some(v4(2)));
        taken.extend((2..=6).map(v4));
        assert_eq!(free_address(pool, gw, &taken), None, "full");
        assert_eq!(with_prefix(gw, pool), "10.77.0.1/29");
        assert_eq!(
            host_address("Address", "10.77.0.7", pool)
                .unwrap_err()
                .field,
            "Address"
        );
        assert!(host_address("Address", "10.77.0.6", pool).is_ok());
    }

    #[test]
    fn ipv6_addresses_skip_the_gateway_and_stay_inside_the_prefix() {
        let pool: IpNet = "fd00:77::/64".parse().unwrap();
        let gw = default_gateway(pool);
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(gw, v6("fd00:77::1"));
        let mut taken = std::collections::BTreeSet::from([v6("fd00:77::2"), v6("fd00:77::4")]);
        assert_eq!(free_address(pool, gw, &taken), Some(v6("fd00:77::3")));
        taken.insert(v6("fd00:77::3"));
        assert_eq!(free_address(pool, gw, &taken), Some(v6("fd00:77::5")));
        assert_eq!(with_prefix(gw, pool), "fd00:77::1/64");
        for bad in ["fd00:78::2", "fd00:77::", "10.77.0.2", "fd00:77::zz"] {
            assert_eq!(
                host_address("Address", bad, pool).unwrap_err().field,
                "Address",
                "{bad}"
            );
        }
        assert_eq!(
            host_address("Address", "fd00:77::ffff:ffff:ffff:ffff", pool).unwrap(),
            v6("fd00:77::ffff:ffff:ffff:ffff"),
            "IPv6 has no broadcast address"
        );
        // The last address of a /124 is a host; past it there is nothing.
        let small: IpNet = "fd00:77::/124".parse().unwrap();
        let all: std::collections::BTreeSet<IpAddr> =
            (2..=15).map(|h| v6(&format!("fd00:77::{h:x}"))).collect();
        assert_eq!(free_address(small, default_gateway(small), &all), None);
    }
}
