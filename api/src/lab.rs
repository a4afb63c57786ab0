//! Nodes and labs: the JSON shapes of `/v1/nodes` (namespaces the daemon owns, each running a
//! command) and `/v1/labs` (what `netyard lab up` made, recorded under the lab's name so that
//! `lab down` removes exactly that).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/nodes`: a network namespace the daemon creates and keeps, with `command`
/// running in it until the node is removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeCreate {
    pub name: String,
    /// The lab the node belongs to (shown by `lab ls`; informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    /// The program and its arguments, run as is (no shell). Empty: nothing runs, the
    /// namespace is kept all the same.
    #[serde(default)]
    pub command: Vec<String>,
    /// Network sysctls set in the namespace before the command starts, e.g.
    /// `net.ipv4.ip_forward = "1"` (only `net.*`: the ones a network namespace owns).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// "always" (default: the command is started again, after 1 s doubling to 30 s, when it
    /// exits) or "never".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
}

/// A node as the daemon holds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<String>,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    pub restart: String,
    /// The node's holder process (in the daemon's PID namespace): its namespaces are the
    /// node's. Attach endpoints with `pid`.
    pub pid: u32,
    /// The holder's start time (`/proc/PID/stat` field 22), so a recycled pid is never taken
    /// for it.
    pub pid_start: u64,
    /// Whether the node has a user namespace of its own (made by a daemon without
    /// CAP_SYS_ADMIN): entering it means joining that first.
    #[serde(default)]
    pub userns: bool,
    /// Whether the holder process is alive.
    pub running: bool,
}

/// One endpoint a lab attached.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct LabEndpoint {
    pub network: String,
    pub name: String,
}

/// `POST /v1/labs/{name}`: what a lab made, replaced whole at every step of `lab up` so that
/// a failed or interrupted `up` is undone by `lab down` too.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LabRecord {
    pub name: String,
    /// The file it was brought up from, as given to `lab up`.
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub endpoints: Vec<LabEndpoint>,
    #[serde(default)]
    pub routers: Vec<String>,
    /// False while `up` is still creating (or failed half-way).
    #[serde(default)]
    pub complete: bool,
}

/// `POST /v1/nodes/{name}/routes`: a static route in the node's namespace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeRoute {
    /// Destination prefix, e.g. 10.20.3.0/24 (0.0.0.0/0 replaces nothing: the first
    /// network's default route stays, so use a more specific prefix).
    pub to: String,
    /// Next hop, on one of the node's networks.
    pub via: String,
}
