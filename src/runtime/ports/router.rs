//! Port kind `router`: a router's interfaces (issue 18), one in-process port on each of its
//! networks' switches, served by one task per router (`netyard_router::l3::task`). Like
//! the gateway it lives in the daemon's process: after a restart it is made again from its
//! spec; its ARP cache, NAT mappings and counters start empty.
//!
//! A router spans switches, so it is not one network's [`super::PortKind`]: `setup` takes
//! every network's switch at once, and the state code (`src/state/routers.rs`) calls these
//! functions as it calls a kind's.

use std::sync::Arc;

use netyard_router::l3::task::{self, Link, Shared};
use netyard_router::l3::{Config, Iface, Route};
use netyard_switch::handoff::HandoffPort;
use netyard_switch::{driver, Switch, SwitchPort};
use tokio::task::JoinHandle;

use super::Description;
use crate::error::DaemonError;
use crate::spec::{NetworkSpec, RouterSpec};

pub const NAME: &str = "router";

/// A running router.
pub struct RouterLive {
    /// Interface `i`'s switch and port (the spec's `interfaces[i]`).
    pub ports: Vec<(Arc<Switch>, Arc<SwitchPort>)>,
    pub shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// The data plane's configuration of a router: its interfaces (with each network's subnet
/// and MTU) and static routes, each resolved to the interface its next hop is on.
pub fn config(spec: &RouterSpec, nets: &[&NetworkSpec]) -> Config {
    let ifaces: Vec<Iface> = spec
        .interfaces
        .iter()
        .zip(nets)
        .map(|(f, n)| Iface {
            ip: f.ip,
            net: n.subnet,
            mac: f.mac,
            mtu: n.mtu,
            nat: f.nat,
        })
        .collect();
    let routes = spec
        .routes
        .iter()
        .filter_map(|r| {
            let iface = ifaces.iter().position(|f| f.net.contains(&r.via))?;
            Some(Route {
                prefix: r.prefix,
                via: r.via,
                iface,
            })
        })
        .collect();
    Config { ifaces, routes }
}

/// Puts the router's port on each network's switch (`nets[i]` and `switches[i]` are those
/// of `spec.interfaces[i]`) and starts its task. On failure nothing is left.
pub fn setup(
    spec: &RouterSpec,
    nets: &[&NetworkSpec],
    switches: &[Arc<Switch>],
) -> Result<RouterLive, DaemonError> {
    // TCP super-frames are taken whole and forwarded whole (the egress port segments them
    // if it must); UDP GSO frames are cut by the switch first, as for the gateway.
    let caps = netyard_switch::PortCaps {
        vnet_hdr: true,
        gso_tcp: true,
        gso_udp: false,
    };
    let mut ports = Vec::with_capacity(switches.len());
    let mut links = Vec::with_capacity(switches.len());
    for (i, sw) in switches.iter().enumerate() {
        let (port, rx) = HandoffPort::pair(caps, driver::RX_BUF_LEN);
        let sp = sw.add_port(spec.name.clone(), Box::new(port));
        if let Some(f) = spec.interfaces.get(i) {
            crate::state::restore_link(sw, &sp, &f.link, &spec.name);
        }
        ports.push((sw.clone(), sp.clone()));
        links.push(Link {
            rx,
            direct: netyard_router::uplink::Direct {
                switch: sw.clone(),
                port: sp,
            },
        });
    }
    let shared = Shared::new(config(spec, nets));
    match task::start(shared.clone(), links) {
        Ok(task) => Ok(RouterLive {
            ports,
            shared,
            task,
        }),
        Err(e) => {
            for (sw, sp) in &ports {
                sw.remove_port(sp.id);
            }
            Err(DaemonError::Io {
                context: format!("starting router {:?}", spec.name),
                source: e,
            })
        }
    }
}

/// Takes the router's ports off their switches and stops its task.
pub fn teardown(live: RouterLive) {
    live.task.abort();
    for (sw, sp) in &live.ports {
        sw.remove_port(sp.id);
    }
}

pub fn describe() -> Description {
    Description {
        kind: NAME,
        host_ifname: None,
    }
}
