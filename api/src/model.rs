//! The control API's JSON contract, shared by the daemon (server) and the CLI (client).
//!
//! Addresses and subnets travel as strings so the daemon can name the offending field when one
//! does not parse. Request types reject unknown fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `PATCH /v1/networks/{name}` (`network update`): each field given is changed, each absent
/// one kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkUpdate {
    /// The endpoints' default gateway: a router with an interface on the network (its
    /// address there), or `null` for netyard's own gateway again. Absent: unchanged.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub gateway_router: Option<Option<String>>,
}

/// A field that is present is `Some`, even when it is `null` (so `null` and absent differ).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `POST /v1/networks`, and a `[[network]]` table of the daemon's config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// IPv4 CIDR; chosen from the free private ranges when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Defaults to the subnet's first host address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Dual stack: endpoints also get an IPv6 address, the gateway sends Router
    /// Advertisements and answers on its IPv6 address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
    /// IPv6 prefix (/64 to /120) when `ipv6`; a /64 of fd00::/8 with a random global ID
    /// (RFC 4193) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// IPv6 gateway address; the prefix's first address (`::1`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// No egress and no published ports.
    #[serde(default)]
    pub internal: bool,
    /// Connections and datagrams to the gateway address (except DNS) reach the host's
    /// 127.0.0.1 (as slirp4netns maps 10.0.2.2). Refused with `internal`.
    #[serde(default)]
    pub host_loopback: bool,
    /// More addresses the gateway answers on (ARP or NDP, ICMP echo, DNS on port 53), e.g.
    /// slirp4netns's DNS addresses 10.0.2.3 and fd00::3 beside its gateway; IPv6 ones on an
    /// `ipv6` network only. One outside the subnet is reached through the endpoints' default
    /// route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_extra: Vec<String>,
    /// Destination maps: egress (TCP, UDP, ICMP echo) to `guest` leaves to `host`, replies
    /// come back from `guest`. Refused with `internal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<AddrMapReq>,
    /// The daemon serves DNS on 127.0.0.11 inside the network's containers (default true).
    /// False for networks a runtime with its own resolver there drives (Docker): the
    /// containers still reach netyard's resolver at the gateway's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resolver: Option<bool>,
    /// Endpoint ports accept only frames from the endpoint's own MAC and addresses
    /// (default true); `--trusted` endpoints are exempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// Inter-container communication (default true; Docker's
    /// `com.docker.network.bridge.enable_icc`): false lets endpoints exchange frames only with
    /// the gateway (egress, DNS, published ports), never with each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icc: Option<bool>,
    /// Most live egress flows one endpoint may have (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flows_per_endpoint: Option<u32>,
    /// Most live egress flows on the network (default 16384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flows: Option<u32>,
    /// MAC ageing time in seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aging: Option<u64>,
    /// Most MACs one port may own (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs_per_port: Option<u32>,
    /// VXLAN network identifier (0 to 16777215): the network spans hosts through a VXLAN
    /// tunnel port. The MTU then defaults to the underlay's minus 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<u32>,
    /// Local underlay IPv4 address to bind and send from (default: any, the route decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_local: Option<String>,
    /// UDP port of the tunnel, local and remote (default 4789).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u32>,
    /// Remote VTEPs (underlay IPv4 addresses) that get broadcast, multicast and unknown
    /// unicast frames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vxlan_peers: Vec<String>,
    /// `bridge` (the default: netyard's gateway relays egress, serves DNS and publishes ports) or `macvlan` (the
    /// switch's uplink is `parent`, a host interface: endpoints are on its LAN with their
    /// own MACs, the LAN's router is their gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The host interface a macvlan network's uplink is opened on (`-o parent=IFACE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// IPv4 CIDR inside the subnet that automatic addresses come from (Docker's
    /// `--ip-range`); `--ip` may still name any address of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// One destination map of a network: IPv4 addresses as strings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddrMapReq {
    /// The address endpoints send to.
    pub guest: String,
    /// The address the host socket connects to (e.g. 127.0.0.1).
    pub host: String,
}

/// The VXLAN side of a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    /// The bound local address ("0.0.0.0" for any).
    pub local: String,
    pub port: u16,
    pub peers: Vec<String>,
    /// The underlay MTU the network's default MTU was derived from, when it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_mtu: Option<u32>,
    /// Datagrams leave from a per-flow source port (false: from `port`, when the daemon may
    /// not open a raw socket).
    pub flow_source_ports: bool,
}

/// A network as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub subnet: String,
    pub gateway: String,
    /// The IPv6 prefix of a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// The gateway's IPv6 address, and its link-local address (the containers' default
    /// IPv6 route goes through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6_link_local: Option<String>,
    pub mtu: u32,
    pub internal: bool,
    #[serde(default)]
    pub host_loopback: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_extra: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<AddrMapReq>,
    /// Does the daemon serve DNS on 127.0.0.11 inside the network's containers?
    #[serde(default = "yes")]
    pub container_resolver: bool,
    /// Port security on the network's endpoint ports.
    #[serde(default)]
    pub port_security: bool,
    /// Inter-container communication: false when endpoints reach only the gateway.
    #[serde(default = "yes")]
    pub icc: bool,
    #[serde(default)]
    pub max_flows_per_endpoint: u32,
    #[serde(default)]
    pub max_flows: u32,
    pub aging: u64,
    pub max_macs_per_port: u32,
    /// The router whose address on the network is the endpoints' default gateway
    /// (`network update --gateway-router`), and that address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_router: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_router_ip: Option<String>,
    pub endpoints: Vec<String>,
    /// Endpoints detached because their container went away (process exited, namespace
    /// deleted, device vanished).
    #[serde(default)]
    pub endpoints_reaped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanInfo>,
    /// `bridge` or `macvlan`.
    #[serde(default = "bridge")]
    pub driver: String,
    /// A macvlan network's host interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    /// What a user of the network should know about how it behaves (a macvlan network: the
    /// host cannot reach its containers through the parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn bridge() -> String {
    "bridge".to_string()
}

/// `POST /v1/networks/{network}/endpoints`, and an `[[endpoint]]` table of the config file
/// (where `network` is required).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub name: String,
    /// Path of the network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// A process whose network (and, if different from the daemon's, user) namespace to join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The user namespace that owns `netns` (rootless containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The IPv6 address on a dual-stack network (IPAM's next when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Interface name inside the namespace (default eth0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// "tap" (default) or "veth".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A veth whose container end stays in the daemon's namespace under this name, for a
    /// runtime to move into its container (Docker's remote network drivers), instead of
    /// `netns`/`pid`. The runtime configures that end (address, routes); netyard serves the
    /// host end. Implies kind "veth".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Enable the virtio-net header and offloads on the port (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<bool>,
    /// The endpoint may send from any MAC and address (a router or a bridge in a lab): no
    /// port security on its port.
    #[serde(default)]
    pub trusted: bool,
    /// Extra DNS names of the endpoint on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Published ports, Docker's SPECs: `[HOSTIP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp]`
    /// (see `netyard_cli::portspec`). All or nothing: one busy host port fails the attach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Who attached the endpoint, for a runtime plugin to find it again by its own key (the
    /// CNI plugin: `cni:CONTAINERID:IFNAME`): an opaque string of at most 256 printable
    /// characters, kept and shown as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /v1/networks/{network}/endpoints/{ep}/ports`: publish more ports of a running
/// endpoint (all or nothing).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub publish: Vec<String>,
}

/// One published port: a host port forwarded to a container port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMapping {
    /// The host addresses it listens on: "0.0.0.0" and "::" when the SPEC named none (only
    /// "0.0.0.0" on a host without IPv6).
    pub host_ips: Vec<String>,
    /// The bound host port (the kernel's choice for an ephemeral one).
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
}

fn yes() -> bool {
    true
}

/// Per-port counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_gso: u64,
    pub tx_segmented: u64,
    pub learn_cap_hits: u64,
    pub drops_total: u64,
    pub drops: BTreeMap<String, u64>,
}

/// An endpoint as `ps` and `inspect` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointInfo {
    pub name: String,
    pub network: String,
    pub kind: String,
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    /// The IPv6 address on a dual-stack network, with its prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len6: Option<u8>,
    /// The network's IPv6 gateway, on a dual-stack network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    pub mac: String,
    pub ifname: String,
    pub netns: String,
    /// The daemon-side interface (veth host end), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    pub offload: bool,
    /// Is the endpoint's port checked (only its own MAC and addresses pass)?
    #[serde(default)]
    pub port_security: bool,
    pub port: u32,
    pub counters: Counters,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What the container's /etc/resolv.conf should hold to use the embedded resolver.
    #[serde(default)]
    pub resolv_conf: String,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Who attached it (`EndpointCreate::owner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Kind "container": the endpoint whose namespace this run joined (`netyard run
    /// --network container:NAME`); the addresses and counters shown are that endpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `POST /v1/joins`: a `netyard run --network container:TARGET` registers itself while it
/// runs in TARGET's namespace. The daemon forgets it on `DELETE /v1/joins/{name}` or when the
/// process that asked (the API connection's peer) exits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinCreate {
    /// The run's name (`--name`), listed by `ps` with kind "container".
    pub name: String,
    /// The endpoint whose network namespace the run joins.
    pub target: String,
}

/// The answer of `POST /v1/joins`: where the target's namespace is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinInfo {
    pub name: String,
    pub target: String,
    /// The namespace's path as the daemon sees it (its mount namespace).
    pub netns: String,
    /// The namespace file's device and inode: what the client checks it opened.
    pub netns_dev: u64,
    pub netns_ino: u64,
    /// The target's resolv.conf (of its first network).
    pub resolv_conf: String,
}

/// One row of `fdb`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdbRow {
    pub mac: String,
    /// Endpoint name owning the port.
    pub port: String,
    pub port_id: u32,
    /// Seconds since the MAC was last seen.
    pub age: f64,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// For a MAC behind the VXLAN port: the remote VTEP's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// `POST /v1/networks/{network}/fdb`: a static remote entry on a VXLAN network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FdbAdd {
    pub mac: String,
    /// The VTEP (underlay IPv4 address) behind which the MAC lives.
    pub remote: String,
}

/// One row of `stats`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortStatsRow {
    pub network: String,
    pub endpoint: String,
    pub kind: String,
    pub counters: Counters,
}

/// `GET /v1/dns`: the embedded resolver's counters since the daemon started (the daemon sends
/// more; these are the ones clients read). Every query ends in exactly one outcome.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DnsCounters {
    pub queries_udp: u64,
    pub queries_tcp: u64,
    /// Outcome: answered from the containers' names.
    pub local_answers: u64,
    /// Outcome: a local name without a record of the asked type.
    pub nodata: u64,
    /// Outcome: answered from the cache of upstream answers.
    pub cache_hits: u64,
    /// Outcome: answered with an upstream's reply.
    pub forwarded: u64,
    /// Outcome: every upstream failed.
    pub servfail: u64,
    /// Outcome: refused (a name outside netyard asked from an internal network, or too many
    /// upstream queries at once).
    pub refused: u64,
    /// Of `cache_hits + forwarded`: the answer was NXDOMAIN.
    pub nxdomain: u64,
}

/// Every error the API returns: HTTP 4xx/5xx with this body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `POST /v1/subnets/free`: the subnet `network create` would pick now without `--subnet`
/// (for a runtime's IPAM, which picks a pool before it creates the network), avoiding
/// `exclude` too (pools it handed out that are no network yet). With `ipv6`, the IPv6 prefix
/// `network create --ipv6` would pick without `--subnet6` (a random ULA /64).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FreeSubnetRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
}

/// The answer of `POST /v1/subnets/free`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FreeSubnet {
    pub subnet: String,
}

/// The answer of `POST /v1/system/reset`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResetReport {
    pub networks_removed: usize,
    pub endpoints_removed: usize,
}

/// A link's impairment as users write it (tc's units: `20ms`, `1%`, `10mbit`): the body of
/// `POST /v1/networks/{network}/links/{port}` (`link set`), and each direction of
/// [`LinkInfo`] (where `direction` is absent and every value is in its canonical form, so a
/// shown setting can be sent back as is). A set replaces the direction's whole impairment, as
/// `tc qdisc replace ... netem` does: a value left out is off.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    /// "out" (default: what the port sends, as netem on the endpoint's own interface), "in"
    /// (what it receives) or "both".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Mean added delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Delay spread around the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// "normal" (default, the jitter is the standard deviation) or "uniform".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
    /// Independent loss per packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    /// Bursty loss (Gilbert model): "P_bad,P_good", the chances per packet of entering and of
    /// leaving the state where every packet is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_burst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    /// Share of packets sent at once while the others wait their delay (needs `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<String>,
    /// Wire rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Most packets the link holds (default 1000, netem's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Seed of the random draws, for a repeatable run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// What one direction of a link did since the daemon started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LinkWayCounters {
    /// Packets held for a later send (delay, rate).
    pub delayed: u64,
    /// Dropped by the loss model.
    pub loss: u64,
    /// Dropped because the link held `limit` packets.
    pub limit: u64,
    /// Dropped with the carrier off.
    pub down: u64,
    /// Held when the settings changed, and dropped.
    pub flushed: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    /// GSO super-frames cut into their packets (loss, duplicate or corrupt set).
    pub segmented: u64,
    /// Packets held now.
    pub held: u64,
}

/// Both directions' counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkCounters {
    pub out: LinkWayCounters,
    #[serde(rename = "in")]
    pub inbound: LinkWayCounters,
}

/// A link as `link show` reports it: a port of a network (an endpoint, or "vxlan").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkInfo {
    pub network: String,
    /// The endpoint's name, or "vxlan" for the network's tunnel.
    pub port: String,
    /// "tap", "veth", "vxlan".
    pub kind: String,
    /// Carrier off (`link down`).
    pub down: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<LinkSettings>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub inbound: Option<LinkSettings>,
    pub counters: LinkCounters,
}

#[cfg(test)]
mod tests {
    use super::NetworkUpdate;

    #[test]
    fn a_gateway_router_absent_null_or_named_are_three_different_updates() {
        let read = |s: &str| serde_json::from_str::<NetworkUpdate>(s).expect("parses");
        assert_eq!(read("{}").gateway_router, None);
        assert_eq!(
            read(r#"{"gateway_router": null}"#).gateway_router,
            Some(None)
        );
        assert_eq!(
            read(r#"{"gateway_router": "r1"}"#).gateway_router,
            Some(Some("r1".to_string()))
        );
        let unset = NetworkUpdate {
            gateway_router: Some(None),
        };
        assert_eq!(
            serde_json::to_string(&unset).expect("json"),
            r#"{"gateway_router":null}"#
        );
        assert!(serde_json::from_str::<NetworkUpdate>(r#"{"gateway": "x"}"#).is_err());
    }
}
