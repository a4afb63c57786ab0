//! The lab file as written: TOML, or YAML for a file named `*.yaml`/`*.yml` (containerlab
//! users write YAML). Every table refuses keys it does not know, and a parse error names the
//! path in the file (`nodes.web.networks[1].ipp`) through serde_path_to_error, whichever the
//! format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole lab.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    /// The lab's name (default: the file's name without its extension).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkDecl>,
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeDecl>,
    /// netyard routers (`netyard router create`), created after the networks.
    #[serde(default)]
    pub routers: BTreeMap<String, RouterDecl>,
    /// Link impairments: a node's link on a network, as `netyard link set`.
    #[serde(default)]
    pub links: Vec<LinkDecl>,
}

/// A network: what `netyard network create` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkDecl {
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub icc: Option<bool>,
    #[serde(default)]
    pub host_loopback: bool,
    #[serde(default)]
    pub port_security: Option<bool>,
    #[serde(default)]
    pub vxlan: Option<VxlanDecl>,
    /// A router of the file's `routers` (with an interface on this network) that is the
    /// endpoints' default gateway instead of netyard's (`network update --gateway-router`).
    #[serde(default)]
    pub gateway_router: Option<String>,
}

/// A netyard router: `netyard router create NAME --network A[=IP] ... [--nat B] [--route ...]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouterDecl {
    /// One interface per network, in order.
    pub networks: Vec<RouterIfaceDecl>,
    /// The network whose interface masquerades what leaves through it.
    #[serde(default)]
    pub nat: Option<String>,
    /// Static routes, each with its next hop on one of the router's networks.
    #[serde(default)]
    pub routes: Vec<RouterRouteDecl>,
}

/// A router's interface: written as a node's (`{ network = "a", ip = "10.1.0.254" }`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouterIfaceDecl {
    pub network: String,
    /// Picked by `lab up` when absent: the lowest address of the subnet no one else in the
    /// file names.
    #[serde(default)]
    pub ip: Option<String>,
}

/// A router's static route (`to` is accepted for `prefix`, as a node's routes write it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouterRouteDecl {
    #[serde(alias = "to")]
    pub prefix: String,
    pub via: String,
}

/// A network spanning hosts (`--vxlan VNI --vxlan-local --vxlan-port --vxlan-peer`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VxlanDecl {
    pub vni: u32,
    #[serde(default)]
    pub local: Option<String>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub peers: Vec<String>,
}

/// A command: a string run by `/bin/sh -c`, or a list run as is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CommandDecl {
    Shell(String),
    Argv(Vec<String>),
}

/// A sysctl value: TOML and YAML users write `1` as often as `"1"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SysctlValue {
    Int(i64),
    Text(String),
}

impl SysctlValue {
    pub fn text(&self) -> String {
        match self {
            SysctlValue::Int(i) => i.to_string(),
            SysctlValue::Text(s) => s.clone(),
        }
    }
}

/// A node: a namespace of the daemon's with its command and its networks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// Default: nothing runs (the namespace is kept; `netyard exec` runs commands in it).
    #[serde(default)]
    pub command: Option<CommandDecl>,
    /// "always" (default) or "never".
    #[serde(default)]
    pub restart: Option<String>,
    /// Network sysctls, e.g. `net.ipv4.ip_forward = 1` for a router.
    #[serde(default)]
    pub sysctls: BTreeMap<String, SysctlValue>,
    /// Its interfaces, eth0, eth1, ... in this order (the first one's gateway is its default
    /// route).
    #[serde(default)]
    pub networks: Vec<AttachDecl>,
    /// Static routes in the node.
    #[serde(default)]
    pub routes: Vec<RouteDecl>,
}

/// A node's interface on a network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttachDecl {
    pub network: String,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    /// tap (default) or veth.
    #[serde(default)]
    pub kind: Option<String>,
    /// No port security: the node sends other hosts' addresses (a router).
    #[serde(default)]
    pub trusted: bool,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Published ports, Docker's SPECs.
    #[serde(default)]
    pub publish: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteDecl {
    #[serde(alias = "prefix")]
    pub to: String,
    pub via: String,
}

/// `netyard link set NETWORK NODE ...`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkDecl {
    pub network: String,
    /// The node or router whose link on `network` it is (or `vxlan`, the network's tunnel).
    pub node: String,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub distribution: Option<String>,
    #[serde(default)]
    pub loss: Option<String>,
    #[serde(default)]
    pub loss_burst: Option<String>,
    #[serde(default)]
    pub duplicate: Option<String>,
    #[serde(default)]
    pub corrupt: Option<String>,
    #[serde(default)]
    pub reorder: Option<String>,
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub seed: Option<u64>,
}

/// What is wrong at one place of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The path in the file: `nodes.web.networks[1].ip`; empty for the file as a whole.
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Is `file` YAML (by its name)?
pub fn is_yaml(file: &str) -> bool {
    let l = file.to_ascii_lowercase();
    l.ends_with(".yaml") || l.ends_with(".yml")
}

/// Parses a lab file's text; `yaml` picks the format.
pub fn parse(text: &str, yaml: bool) -> Result<LabFile, Issue> {
    let issue = |path: String, msg: String| {
        let path = if path == "." { String::new() } else { path };
        // Serde's messages end with the position for TOML; keep them whole, one line.
        Issue {
            path,
            reason: msg.replace('\n', " ").trim().to_string(),
        }
    };
    if yaml {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            issue(path, e.into_inner().to_string())
        })
    } else {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            issue(path, e.into_inner().message().to_string())
        })
    }
}
