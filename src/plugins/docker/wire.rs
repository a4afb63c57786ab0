//! The JSON of libnetwork's remote network driver and IPAM driver protocols (moby's
//! libnetwork docs/remote.md and docs/ipam.md; the Go types of `drivers/remote/api` and
//! `ipams/remote/api`), as much of it as netyard reads or answers. Unknown fields are
//! ignored: Docker versions add some.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol's content type, in every answer.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// `Options` key of CreateNetwork holding the `-o KEY=VALUE` driver options.
pub const GENERIC: &str = "com.docker.network.generic";
/// `Options` key of CreateNetwork set for `--internal`.
pub const INTERNAL: &str = "com.docker.network.internal";
/// `Options` key of CreateNetwork set for `--ipv6`.
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
/// `Options` key of ProgramExternalConnectivity holding the port bindings (`-p`).
pub const PORT_MAP: &str = "com.docker.network.portmap";
/// `Options` key of RequestAddress telling a gateway's request from a container's.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
/// Its value for the network's gateway.
pub const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

/// A map or list Docker may send as `null` (Go's nil map): read as empty.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `/Plugin.Activate`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activate {
    pub implements: Vec<&'static str>,
}

/// `/NetworkDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    pub scope: &'static str,
    pub connectivity_scope: &'static str,
}

/// One pool of CreateNetwork's `IPv4Data`/`IPv6Data` (`IPv6Data` only with `--ipv6`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    pub address_space: String,
    /// CIDR.
    pub pool: String,
    /// Address with prefix ("10.1.0.1/24").
    pub gateway: String,
    #[serde(deserialize_with = "nullable")]
    pub aux_addresses: BTreeMap<String, String>,
}

/// `/NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "IPv4Data", deserialize_with = "nullable")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", deserialize_with = "nullable")]
    pub ipv6_data: Vec<IpamData>,
}

/// `/NetworkDriver.DeleteNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// An endpoint's interface, asked (CreateEndpoint's request) or given (its answer).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Interface {
    /// IPv4 address with prefix ("10.1.0.7/24").
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// IPv6 address with prefix ("fd00:1::7/64"), on a dual-stack network.
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `/NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, serde_json::Value>,
    pub interface: Option<Interface>,
}

/// CreateEndpoint's answer: only what Docker did not give (libnetwork refuses a value it
/// gave coming back changed).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
}

/// DeleteEndpoint, EndpointOperInfo, Leave, RevokeExternalConnectivity; also Join and
/// ProgramExternalConnectivity, whose `Options` and `SandboxKey` are read separately.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub sandbox_key: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, serde_json::Value>,
}

/// Join's `InterfaceName`: the interface Docker moves into the container.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    pub src_name: String,
    pub dst_prefix: String,
}

/// Join's answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct JoinReply {
    pub interface_name: InterfaceName,
    pub gateway: String,
    /// The network's IPv6 gateway on a dual-stack network (Docker's default IPv6 route).
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
    /// Docker adds the default routes through `Gateway` and `GatewayIPv6` itself; none needed.
    pub static_routes: Vec<serde_json::Value>,
    pub disable_gateway_service: bool,
}

/// One `-p` binding of ProgramExternalConnectivity (libnetwork's `types.PortBinding`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// IANA protocol number: 6 tcp, 17 udp, 132 sctp.
    pub proto: u8,
    /// The container's address (empty from the daemon).
    #[serde(rename = "IP")]
    pub ip: String,
    pub port: u16,
    /// Empty for every address.
    #[serde(rename = "HostIP")]
    pub host_ip: String,
    /// 0 for an ephemeral port.
    pub host_port: u16,
    /// Equal to `host_port` unless a range was given.
    pub host_port_end: u16,
}

/// `/IpamDriver.GetDefaultAddressSpaces`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpaces {
    pub local_default_address_space: &'static str,
    pub global_default_address_space: &'static str,
}

/// `/IpamDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamCapabilities {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
}

/// `/IpamDriver.RequestPool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestPool {
    pub address_space: String,
    pub pool: String,
    pub sub_pool: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "V6")]
    pub v6: bool,
}

/// RequestPool's answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PoolReply {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub pool: String,
    pub data: BTreeMap<String, String>,
}

/// `/IpamDriver.ReleasePool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PoolRef {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `/IpamDriver.RequestAddress` and `/IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The preferred address (no prefix), empty for any.
    pub address: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
}

/// RequestAddress's answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AddressReply {
    /// With the pool's prefix ("10.1.0.7/24", "fd00:1::7/64").
    pub address: String,
    pub data: BTreeMap<String, String>,
}

/// Every failure: `{"Err": "..."}`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrReply {
    #[serde(rename = "Err")]
    pub err: String,
}
