//! The JSON netavark and Podman exchange with a plugin (netavark's `src/network/types.rs` and
//! `docs/plugin-API.md`), as serde types of our own: netavark is an application crate with a
//! large dependency tree (nftables, zbus, netlink), too much to pull in for seven structs.
//!
//! Reading is lenient where netavark is (an `Option` may be missing or null) and where Podman
//! may add fields later: unknown fields are ignored, except on [`Network`], which keeps them
//! (`extra`) so that `create` hands Podman back everything it sent (`created`, `labels`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The API version netavark's plugin interface defines (the only one so far).
pub const API_VERSION: &str = "1.0.0";

/// A network's configuration: the input and output of `create`, and part of `setup`'s input.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub name: String,
    #[serde(default)]
    pub id: String,
    pub driver: String,
    #[serde(default)]
    pub network_interface: Option<String>,
    #[serde(default)]
    pub subnets: Option<Vec<Subnet>>,
    #[serde(default)]
    pub routes: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub ipv6_enabled: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub dns_enabled: bool,
    #[serde(default)]
    pub network_dns_servers: Option<Vec<IpAddr>>,
    /// The driver options (`podman network create -o KEY=VALUE`).
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub ipam_options: Option<BTreeMap<String, String>>,
    /// Fields netavark's type lacks (Podman's `created`, `labels`), handed back unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subnet {
    pub subnet: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub lease_range: Option<LeaseRange>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRange {
    #[serde(default)]
    pub start_ip: Option<String>,
    #[serde(default)]
    pub end_ip: Option<String>,
}

/// `setup` and `teardown`'s input (netavark's `NetworkPluginExec`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginExec {
    pub container_id: String,
    pub container_name: String,
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    pub network: Network,
    pub network_options: PerNetworkOptions,
}

/// What the container asks of this one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PerNetworkOptions {
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    pub interface_name: String,
    #[serde(default)]
    pub static_ips: Option<Vec<IpAddr>>,
    #[serde(default)]
    pub static_mac: Option<String>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

/// One published port (or `range` consecutive ones).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortMapping {
    pub container_port: u16,
    /// Empty: every address.
    #[serde(default)]
    pub host_ip: String,
    pub host_port: u16,
    /// "tcp", "udp", "sctp" or a comma-separated combination; empty is tcp.
    #[serde(default)]
    pub protocol: String,
    /// How many consecutive ports, from `host_port` and `container_port` (0 is taken as 1).
    #[serde(default)]
    pub range: u16,
}

/// `setup`'s answer: what Podman shows in `inspect` and writes to resolv.conf.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusBlock {
    pub dns_search_domains: Option<Vec<String>>,
    pub dns_server_ips: Option<Vec<IpAddr>>,
    pub interfaces: Option<BTreeMap<String, NetInterface>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetInterface {
    pub mac_address: String,
    pub subnets: Option<Vec<NetAddress>>,
}

/// The interface's address with its prefix (`10.88.0.5/24`), and the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetAddress {
    pub ipnet: IpNet,
    pub gateway: Option<IpAddr>,
}

/// `info`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub api_version: String,
}

/// What a plugin prints on stdout when it fails (with a non-zero exit).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JsonError {
    pub error: String,
}
