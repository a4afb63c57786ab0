//! The seam between the daemon and a cluster registry (today etcd, `src/cluster.rs`), owned by
//! the daemon so neither side names the other:
//!
//! - [`Registry`] is what the daemon asks of a registry: its operations that may span hosts
//!   (creating, removing, attaching to and detaching from a network), and what it tells the
//!   registry (a rename, an endpoint re-adopted after a restart, the daemon stopping).
//! - [`RegistryHost`] is what a registry needs of the daemon: the operations on this host only
//!   (`*_local`), and the hooks through which it programs what the other hosts registered
//!   (flood peers, static remote entries, remote names, addresses held elsewhere).
//!
//! The daemon (`src/state.rs`) implements [`RegistryHost`] and holds an `Arc<dyn Registry>`:
//! [`Local`] for one host, or the etcd registry `cluster::start` returns. A registry gets the
//! host by reference on each operation; one that keeps working in the background (the etcd
//! watcher) holds a `Weak<dyn RegistryHost>`, so the daemon and its registry are no cycle.
//!
//! Both traits return boxed futures: they are used as trait objects.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures::future::BoxFuture;
use netyard_api::model::{EndpointCreate, EndpointInfo, NetworkCreate, NetworkInfo};
use netyard_switch::MacAddr;

use crate::error::DaemonError;

/// What the daemon asks of a registry. Each operation gets the daemon as `host` and does its
/// local part through it (`host.create_network_local`, ...), before or after what it does in
/// the registry.
pub trait Registry: Send + Sync {
    /// `network create`.
    fn create_network<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        req: NetworkCreate,
    ) -> BoxFuture<'a, Result<NetworkInfo, DaemonError>>;

    /// `network rm`.
    fn remove_network<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>>;

    /// `attach` (the address may be claimed in the registry first).
    fn attach<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        network: &'a str,
        req: EndpointCreate,
    ) -> BoxFuture<'a, Result<EndpointInfo, DaemonError>>;

    /// `detach`.
    fn detach<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>>;

    /// An endpoint of this host was renamed (`info` is the new one).
    fn renamed<'a>(&'a self, network: &'a str, info: &'a EndpointInfo) -> BoxFuture<'a, ()>;

    /// An endpoint this host re-adopted after a restart.
    fn readopt<'a>(&'a self, info: &'a EndpointInfo) -> BoxFuture<'a, ()>;

    /// The daemon stops: end the background work and withdraw this host.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// What a registry needs of the daemon. Each call takes the daemon's state lock briefly.
pub trait RegistryHost: Send + Sync {
    /// Creates a network on this host only (not published).
    fn create_network_local(
        &self,
        req: NetworkCreate,
    ) -> BoxFuture<'_, Result<NetworkInfo, DaemonError>>;

    /// Removes this host's instance of a network (refused while it has endpoints).
    fn remove_network_local<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DaemonError>>;

    /// Attaches on this host only, with the address as `req` gives it.
    fn attach_local<'a>(
        &'a self,
        network: &'a str,
        req: EndpointCreate,
    ) -> BoxFuture<'a, Result<EndpointInfo, DaemonError>>;

    /// Detaches on this host only.
    fn detach_local<'a>(
        &'a self,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>>;

    /// A network of this host.
    fn network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<NetworkInfo, DaemonError>>;

    /// Does this host have endpoints (or attaches in progress) on `network`?
    fn has_endpoints<'a>(&'a self, network: &'a str) -> BoxFuture<'a, bool>;

    /// An endpoint's address and MAC.
    fn endpoint_addr<'a>(
        &'a self,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Option<(Ipv4Addr, MacAddr)>>;

    /// The next address the network's IPAM would hand out that is not in `skip` (not taken:
    /// the registry claims it, then attaches with it).
    fn next_free<'a>(
        &'a self,
        network: &'a str,
        skip: &'a BTreeSet<Ipv4Addr>,
    ) -> BoxFuture<'a, Result<Ipv4Addr, DaemonError>>;

    /// Marks an address another host claimed as in use here. False if the network is unknown.
    fn ipam_hold_remote<'a>(&'a self, network: &'a str, ip: Ipv4Addr) -> BoxFuture<'a, bool>;

    /// Frees an address another host released, unless a local endpoint holds it.
    fn ipam_release_remote<'a>(&'a self, network: &'a str, ip: Ipv4Addr) -> BoxFuture<'a, ()>;

    /// A static remote entry: `mac` lives behind `vtep`. Refused (false) when the network has
    /// no tunnel or the MAC is local.
    fn set_remote_static<'a>(
        &'a self,
        network: &'a str,
        mac: MacAddr,
        vtep: Ipv4Addr,
    ) -> BoxFuture<'a, bool>;

    /// Removes a static remote entry the registry put there.
    fn clear_remote_static<'a>(&'a self, network: &'a str, mac: MacAddr) -> BoxFuture<'a, ()>;

    /// Sets the tunnel's flood list to its `--vxlan-peer`s plus `extra` (the other hosts'
    /// VTEPs). False if the network has no tunnel.
    fn set_flood_peers<'a>(
        &'a self,
        network: &'a str,
        extra: &'a [Ipv4Addr],
    ) -> BoxFuture<'a, bool>;

    /// Sets the names of the endpoints other hosts hold on `network`, answered by this host's
    /// resolver. False if there is no such network here.
    fn set_remote_names<'a>(
        &'a self,
        network: &'a str,
        entries: Vec<netyard_dns::Entry>,
    ) -> BoxFuture<'a, bool>;
}

/// The registry of a daemon on its own: every operation is the host's local one, and there is
/// nothing to tell anyone.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Registry for Local {
    fn create_network<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        req: NetworkCreate,
    ) -> BoxFuture<'a, Result<NetworkInfo, DaemonError>> {
        host.create_network_local(req)
    }

    fn remove_network<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>> {
        host.remove_network_local(name)
    }

    fn attach<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        network: &'a str,
        req: EndpointCreate,
    ) -> BoxFuture<'a, Result<EndpointInfo, DaemonError>> {
        host.attach_local(network, req)
    }

    fn detach<'a>(
        &'a self,
        host: &'a dyn RegistryHost,
        network: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), DaemonError>> {
        host.detach_local(network, name)
    }

    fn renamed<'a>(&'a self, _network: &'a str, _info: &'a EndpointInfo) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn readopt<'a>(&'a self, _info: &'a EndpointInfo) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use netyard_api::model::Counters;

    use super::*;

    /// A host that records the calls it gets and has no network at all.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn note(&self, call: String) {
            self.0.lock().unwrap().push(call);
        }

        fn calls(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    fn none<T: Send + 'static>(name: &str) -> BoxFuture<'static, Result<T, DaemonError>> {
        let e = DaemonError::NoNetwork(name.to_string());
        Box::pin(async move { Err(e) })
    }

    impl RegistryHost for Recorder {
        fn create_network_local(
            &self,
            req: NetworkCreate,
        ) -> BoxFuture<'_, Result<NetworkInfo, DaemonError>> {
            self.note(format!("create {}", req.name));
            none(&req.name)
        }
        fn remove_network_local<'a>(
            &'a self,
            name: &'a str,
        ) -> BoxFuture<'a, Result<(), DaemonError>> {
            self.note(format!("remove {name}"));
            none(name)
        }
        fn attach_local<'a>(
            &'a self,
            network: &'a str,
            req: EndpointCreate,
        ) -> BoxFuture<'a, Result<EndpointInfo, DaemonError>> {
            self.note(format!("attach {network} {}", req.name));
            none(network)
        }
        fn detach_local<'a>(
            &'a self,
            network: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<(), DaemonError>> {
            self.note(format!("detach {network} {name}"));
            none(network)
        }
        fn network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<NetworkInfo, DaemonError>> {
            none(name)
        }
        fn has_endpoints<'a>(&'a self, _: &'a str) -> BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
        fn endpoint_addr<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Option<(Ipv4Addr, MacAddr)>> {
            Box::pin(async { None })
        }
        fn next_free<'a>(
            &'a self,
            network: &'a str,
            _: &'a BTreeSet<Ipv4Addr>,
        ) -> BoxFuture<'a, Result<Ipv4Addr, DaemonError>> {
            none(network)
        }
        fn ipam_hold_remote<'a>(&'a self, _: &'a str, _: Ipv4Addr) -> BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
        fn ipam_release_remote<'a>(&'a self, _: &'a str, _: Ipv4Addr) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn set_remote_static<'a>(
            &'a self,
            _: &'a str,
            _: MacAddr,
            _: Ipv4Addr,
        ) -> BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
        fn clear_remote_static<'a>(&'a self, _: &'a str, _: MacAddr) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn set_flood_peers<'a>(&'a self, _: &'a str, _: &'a [Ipv4Addr]) -> BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
        fn set_remote_names<'a>(
            &'a self,
            _: &'a str,
            _: Vec<netyard_dns::Entry>,
        ) -> BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
    }

    /// On one host every operation is the host's local one, with its answer, and the
    /// notifications reach nobody.
    #[test]
    fn local_is_the_host_alone() {
        let host = Recorder::default();
        let r: &dyn Registry = &Local;
        let net = NetworkCreate {
            name: "a".into(),
            vxlan: Some(42),
            ..Default::default()
        };
        let ep = EndpointCreate {
            name: "c1".into(),
            ..Default::default()
        };
        // From JSON, so fields added later with a default need no change here.
        let info: EndpointInfo = serde_json::from_value(serde_json::json!({
            "name": "c1", "network": "a", "kind": "tap", "ip": "10.0.0.2", "prefix_len": 24,
            "gateway": "10.0.0.1", "mac": "02:00:00:00:00:02", "ifname": "eth0", "netns": "",
            "offload": true, "port": 1, "counters": Counters::default(),
        }))
        .unwrap();
        futures::executor::block_on(async {
            let no = |r: Result<(), DaemonError>| matches!(r, Err(DaemonError::NoNetwork(_)));
            assert!(no(r.create_network(&host, net).await.map(drop)));
            assert!(no(r.remove_network(&host, "a").await));
            assert!(no(r.attach(&host, "a", ep).await.map(drop)));
            assert!(no(r.detach(&host, "a", "c1").await));
            r.renamed("a", &info).await;
            r.readopt(&info).await;
            r.stop().await;
        });
        assert_eq!(
            host.calls(),
            ["create a", "remove a", "attach a c1", "detach a c1"]
        );
    }
}
