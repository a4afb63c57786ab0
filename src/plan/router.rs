//! Planning a router (issue 18): `router create` and `router route add` requests checked
//! against the networks and the other routers, into a [`RouterSpec`] or the field at fault.
//! Pure: the caller passes each network's spec, IPAM and endpoint names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netyard_api::router::{RouteReq, RouterCreate, RouterInterfaceReq};

use super::{docker_mac, quoted, valid_name};
use crate::error::DaemonError;
use crate::ipam::Ipam;
use crate::spec::{NetworkSpec, RouteSpec, RouterIfaceSpec, RouterSpec};

/// What planning needs of one network.
pub struct RouterNet<'a> {
    pub spec: &'a NetworkSpec,
    pub ipam: &'a Ipam,
    /// Names of its endpoints (a router's port on the switch bears the router's name, so it
    /// may not be an endpoint's).
    pub endpoints: BTreeSet<&'a str>,
}

/// Most interfaces of one router and most static routes (a lab's router, not a backbone's:
/// the route lookup is a scan).
pub const MAX_INTERFACES: usize = 32;
pub const MAX_ROUTES: usize = 256;

/// Plans `router create`.
pub fn plan_router(
    req: &RouterCreate,
    nets: &BTreeMap<String, RouterNet<'_>>,
    routers: &BTreeMap<String, RouterSpec>,
) -> Result<RouterSpec, DaemonError> {
    valid_name("name", &req.name)?;
    if routers.contains_key(&req.name) {
        return Err(DaemonError::conflict(
            Some("name"),
            format!("a router named {:?} already exists", req.name),
        ));
    }
    if req.interfaces.is_empty() {
        return Err(DaemonError::invalid(
            "interfaces",
            "a router needs at least one network (--network NAME[=IP])",
        ));
    }
    if req.interfaces.len() > MAX_INTERFACES {
        return Err(DaemonError::invalid(
            "interfaces",
            format!(
                "{} networks, at most {MAX_INTERFACES}",
                req.interfaces.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut interfaces = Vec::with_capacity(req.interfaces.len());
    for (i, r) in req.interfaces.iter().enumerate() {
        let field = |f: &str| format!("interfaces[{i}].{f}");
        let Some(net) = nets.get(&r.network) else {
            return Err(DaemonError::invalid(
                field("network"),
                format!("no network named {}", quoted(&r.network)),
            ));
        };
        if !seen.insert(r.network.as_str()) {
            return Err(DaemonError::invalid(
                field("network"),
                format!(
                    "network {:?} is given twice: a router has one interface per network",
                    r.network
                ),
            ));
        }
        interfaces.push(plan_iface(&field, r, net, &req.name)?);
    }
    for (i, n) in req.nat.iter().enumerate() {
        match interfaces.iter_mut().find(|f| f.network == *n) {
            Some(f) => f.nat = true,
            None => {
                return Err(DaemonError::invalid(
                    format!("nat[{i}]"),
                    format!(
                        "{} is not one of the router's networks (--network)",
                        quoted(n)
                    ),
                ))
            }
        }
    }
    let mut spec = RouterSpec {
        name: req.name.clone(),
        interfaces,
        routes: Vec::new(),
    };
    let subnets = subnets_of(nets);
    for (i, r) in req.routes.iter().enumerate() {
        let route =
            plan_route(r, &spec, &subnets).map_err(|e| e.within(&format!("routes[{i}].")))?;
        spec.routes.push(route);
    }
    Ok(spec)
}

/// One interface of router `router` on `net` (`field` names a request field): its address
/// (checked, or IPAM's next free one) and the MAC derived from it.
fn plan_iface(
    field: &dyn Fn(&str) -> String,
    r: &RouterInterfaceReq,
    net: &RouterNet<'_>,
    router: &str,
) -> Result<RouterIfaceSpec, DaemonError> {
    if !net.spec.driver.is_bridge() {
        return Err(DaemonError::invalid(
            field("network"),
            format!(
                "network {:?} is a macvlan network: its uplink admits only its endpoints' MACs, so a router cannot sit on it",
                r.network
            ),
        ));
    }
    if net.endpoints.contains(router) {
        return Err(DaemonError::conflict(
            Some("name"),
            format!(
                "network {:?} has an endpoint named {:?}: a router's interface is a port of that name",
                r.network, router
            ),
        ));
    }
    let ip = match &r.ip {
        Some(s) => {
            let ip: Ipv4Addr = s.parse().map_err(|_| {
                DaemonError::invalid(field("ip"), format!("{} is not an IPv4 address", quoted(s)))
            })?;
            net.ipam
                .check(ip)
                .map_err(|e| DaemonError::invalid(field("ip"), e))?;
            ip
        }
        None => net
            .ipam
            .peek_free()
            .map_err(|e| DaemonError::conflict(Some(&field("ip")), e))?,
    };
    Ok(RouterIfaceSpec {
        network: r.network.clone(),
        ip,
        mac: docker_mac(ip),
        nat: false,
        link: Default::default(),
    })
}

/// Plans `router connect ROUTER NETWORK[=IP]`: the router as it is plus an interface on
/// NETWORK (not one of its networks yet).
pub fn plan_connect(
    spec: &RouterSpec,
    req: &RouterInterfaceReq,
    nets: &BTreeMap<String, RouterNet<'_>>,
) -> Result<RouterSpec, DaemonError> {
    let field = |f: &str| f.to_string();
    let Some(net) = nets.get(&req.network) else {
        return Err(DaemonError::invalid(
            "network",
            format!("no network named {}", quoted(&req.network)),
        ));
    };
    if spec.interfaces.iter().any(|f| f.network == req.network) {
        return Err(DaemonError::conflict(
            Some("network"),
            format!(
                "router {:?} already has an interface on network {:?}",
                spec.name, req.network
            ),
        ));
    }
    if spec.interfaces.len() >= MAX_INTERFACES {
        return Err(DaemonError::invalid(
            "network",
            format!(
                "router {:?} has {MAX_INTERFACES} interfaces, the most it may have",
                spec.name
            ),
        ));
    }
    let iface = plan_iface(&field, req, net, &spec.name)?;
    let mut out = spec.clone();
    out.interfaces.push(iface);
    Ok(out)
}

/// Plans `router disconnect ROUTER NETWORK`: refused for the router's only network and while
/// a static route goes through a neighbour on NETWORK (delete the route first).
pub fn plan_disconnect(
    spec: &RouterSpec,
    network: &str,
    subnets: &BTreeMap<String, Ipv4Net>,
) -> Result<RouterSpec, DaemonError> {
    let Some(at) = spec.interfaces.iter().position(|f| f.network == network) else {
        return Err(DaemonError::invalid(
            "network",
            format!(
                "router {:?} has no interface on network {}",
                spec.name,
                quoted(network)
            ),
        ));
    };
    if spec.interfaces.len() == 1 {
        return Err(DaemonError::conflict(
            Some("network"),
            format!(
                "{network:?} is router {:?}'s only network: `netyard router rm {}` instead",
                spec.name, spec.name
            ),
        ));
    }
    if let Some(r) = spec
        .routes
        .iter()
        .find(|r| subnets.get(network).is_some_and(|s| s.contains(&r.via)))
    {
        return Err(DaemonError::conflict(
            Some("network"),
            format!(
                "router {:?}'s route to {} goes via {} on {network:?}: `netyard router route del {} {}` first",
                spec.name, r.prefix, r.via, spec.name, r.prefix
            ),
        ));
    }
    let mut out = spec.clone();
    out.interfaces.remove(at);
    Ok(out)
}

/// Each network's subnet, by name.
pub fn subnets_of(nets: &BTreeMap<String, RouterNet<'_>>) -> BTreeMap<String, Ipv4Net> {
    nets.iter()
        .map(|(k, n)| (k.clone(), n.spec.subnet))
        .collect()
}

/// The interface (its index) whose network holds `ip`.
pub fn iface_for(
    router: &RouterSpec,
    subnets: &BTreeMap<String, Ipv4Net>,
    ip: Ipv4Addr,
) -> Option<usize> {
    router
        .interfaces
        .iter()
        .position(|f| subnets.get(&f.network).is_some_and(|s| s.contains(&ip)))
}

/// Plans `router route add`: the prefix (host bits cleared) via a next hop on one of the
/// router's networks, not the router itself, not a prefix it already routes statically.
pub fn plan_route(
    req: &RouteReq,
    router: &RouterSpec,
    subnets: &BTreeMap<String, Ipv4Net>,
) -> Result<RouteSpec, DaemonError> {
    let prefix: Ipv4Net = req.prefix.parse().map_err(|_| {
        DaemonError::invalid(
            "prefix",
            format!(
                "{} is not an IPv4 CIDR such as 10.1.0.0/24",
                quoted(&req.prefix)
            ),
        )
    })?;
    let prefix = prefix.trunc();
    let via: Ipv4Addr = req.via.parse().map_err(|_| {
        DaemonError::invalid(
            "via",
            format!("{} is not an IPv4 address", quoted(&req.via)),
        )
    })?;
    if iface_for(router, subnets, via).is_none() {
        return Err(DaemonError::invalid(
            "via",
            format!(
                "{via} is on none of router {:?}'s networks ({})",
                router.name,
                router
                    .interfaces
                    .iter()
                    .map(|f| format!(
                        "{} {}",
                        f.network,
                        subnets
                            .get(&f.network)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if router.interfaces.iter().any(|f| f.ip == via) {
        return Err(DaemonError::invalid(
            "via",
            format!("{via} is router {:?}'s own address", router.name),
        ));
    }
    if router.routes.iter().any(|r| r.prefix == prefix) {
        return Err(DaemonError::conflict(
            Some("prefix"),
            format!("router {:?} already has a route to {prefix}", router.name),
        ));
    }
    if router.routes.len() >= MAX_ROUTES {
        return Err(DaemonError::conflict(
            Some("prefix"),
            format!(
                "router {:?} has {MAX_ROUTES} routes, the most it may have",
                router.name
            ),
        ));
    }
    Ok(RouteSpec { prefix, via })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netyard_api::router::RouterInterfaceReq;

    fn net(name: &str, subnet: &str) -> NetworkSpec {
        let subnet: Ipv4Net = subnet.parse().expect("subnet");
        let gateway = subnet.hosts().next().expect("host");
        crate::plan::plan_network(
            &netyard_api::model::NetworkCreate {
                name: name.into(),
                subnet: Some(subnet.to_string()),
                gateway: Some(gateway.to_string()),
                ..Default::default()
            },
            std::iter::empty(),
            &[],
            None,
        )
        .expect("network")
    }

    struct Fixture {
        specs: Vec<NetworkSpec>,
        ipams: Vec<Ipam>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let specs = vec![net("a", "10.1.0.0/24"), net("b", "10.2.0.0/24")];
            let mut ipams: Vec<Ipam> = specs
                .iter()
                .map(|s| Ipam::new(s.subnet, s.gateway))
                .collect();
            ipams[0]
                .take("10.1.0.2".parse().expect("ip"))
                .expect("take");
            Fixture { specs, ipams }
        }

        fn nets(&self) -> BTreeMap<String, RouterNet<'_>> {
            self.specs
                .iter()
                .zip(&self.ipams)
                .map(|(s, i)| {
                    (
                        s.name.clone(),
                        RouterNet {
                            spec: s,
                            ipam: i,
                            endpoints: ["web"].into_iter().collect(),
                        },
                    )
                })
                .collect()
        }
    }

    fn req(ifaces: &[(&str, Option<&str>)]) -> RouterCreate {
        RouterCreate {
            name: "r1".into(),
            interfaces: ifaces
                .iter()
                .map(|(n, ip)| RouterInterfaceReq {
                    network: n.to_string(),
                    ip: ip.map(str::to_string),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn field_of(r: Result<RouterSpec, DaemonError>) -> String {
        r.expect_err("refused")
            .field()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_router_gets_the_next_free_address_where_none_is_given_and_a_mac_from_it() {
        let f = Fixture::new();
        let mut r = req(&[("a", None), ("b", Some("10.2.0.254"))]);
        r.nat = vec!["b".into()];
        r.routes = vec![RouteReq {
            prefix: "10.9.0.7/16".into(),
            via: "10.2.0.9".into(),
        }];
        let s = plan_router(&r, &f.nets(), &BTreeMap::new()).expect("planned");
        assert_eq!(s.interfaces[0].ip, Ipv4Addr::new(10, 1, 0, 3));
        assert_eq!(s.interfaces[0].mac, docker_mac(Ipv4Addr::new(10, 1, 0, 3)));
        assert!(!s.interfaces[0].nat);
        assert_eq!(s.interfaces[1].ip, Ipv4Addr::new(10, 2, 0, 254));
        assert!(s.interfaces[1].nat);
        assert_eq!(
            s.routes,
            vec![RouteSpec {
                prefix: "10.9.0.0/16".parse().expect("net"),
                via: Ipv4Addr::new(10, 2, 0, 9)
            }]
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let f = Fixture::new();
        let nets = f.nets();
        let none = BTreeMap::new();
        assert_eq!(
            field_of(plan_router(&req(&[("zz", None)]), &nets, &none)),
            "interfaces[0].network"
        );
        assert_eq!(field_of(plan_router(&req(&[]), &nets, &none)), "interfaces");
        assert_eq!(
            field_of(plan_router(&req(&[("a", None), ("a", None)]), &nets, &none)),
            "interfaces[1].network"
        );
        assert_eq!(
            field_of(plan_router(&req(&[("a", Some("10.2.0.5"))]), &nets, &none)),
            "interfaces[0].ip",
            "outside the subnet"
        );
        assert_eq!(
            field_of(plan_router(&req(&[("a", Some("10.1.0.2"))]), &nets, &none)),
            "interfaces[0].ip",
            "in use"
        );
        assert_eq!(
            field_of(plan_router(&req(&[("a", Some("10.1.0.1"))]), &nets, &none)),
            "interfaces[0].ip",
            "the gateway"
        );
        assert_eq!(
            field_of(plan_router(&req(&[("a", Some("nope"))]), &nets, &none)),
            "interfaces[0].ip"
        );
        let mut r = req(&[("a", None)]);
        r.nat = vec!["b".into()];
        assert_eq!(field_of(plan_router(&r, &nets, &none)), "nat[0]");
        let mut r = req(&[("a", None)]);
        r.routes = vec![RouteReq {
            prefix: "10.9.0.0/16".into(),
            via: "10.2.0.9".into(),
        }];
        assert_eq!(field_of(plan_router(&r, &nets, &none)), "routes[0].via");
        r.routes[0].prefix = "10.9.0.0/33".into();
        assert_eq!(field_of(plan_router(&r, &nets, &none)), "routes[0].prefix");
        let mut r = req(&[("a", None)]);
        r.name = "web".into();
        assert_eq!(
            field_of(plan_router(&r, &nets, &none)),
            "name",
            "an endpoint's name"
        );
        let existing = plan_router(&req(&[("a", None)]), &nets, &none).expect("first");
        let routers = BTreeMap::from([("r1".to_string(), existing)]);
        assert_eq!(
            field_of(plan_router(&req(&[("b", None)]), &nets, &routers)),
            "name"
        );
    }

    #[test]
    fn a_router_on_a_macvlan_network_is_refused_at_create_and_connect() {
        let mut f = Fixture::new();
        f.specs[1].driver = crate::spec::Driver::Macvlan;
        let nets = f.nets();
        let none = BTreeMap::new();
        let e = plan_router(&req(&[("a", None), ("b", None)]), &nets, &none).expect_err("b");
        assert_eq!(e.field(), Some("interfaces[1].network"));
        assert!(e.to_string().contains("macvlan"), "{e}");
        let s = plan_router(&req(&[("a", None)]), &nets, &none).expect("a");
        let to_b = RouterInterfaceReq {
            network: "b".into(),
            ip: None,
        };
        let e = plan_connect(&s, &to_b, &nets).expect_err("connect b");
        assert_eq!(e.field(), Some("network"));
    }

    #[test]
    fn a_route_via_the_router_itself_or_twice_to_one_prefix_is_refused() {
        let f = Fixture::new();
        let nets = f.nets();
        let mut s = plan_router(&req(&[("a", None), ("b", None)]), &nets, &BTreeMap::new())
            .expect("planned");
        let subnets = subnets_of(&nets);
        let own = RouteReq {
            prefix: "10.9.0.0/16".into(),
            via: s.interfaces[1].ip.to_string(),
        };
        assert_eq!(
            plan_route(&own, &s, &subnets).expect_err("own").field(),
            Some("via")
        );
        let ok = RouteReq {
            prefix: "10.9.0.0/16".into(),
            via: "10.2.0.77".into(),
        };
        s.routes.push(plan_route(&ok, &s, &subnets).expect("ok"));
        assert_eq!(
            iface_for(&s, &subnets, Ipv4Addr::new(10, 2, 0, 77)),
            Some(1)
        );
        assert_eq!(
            plan_route(&ok, &s, &subnets).expect_err("twice").field(),
            Some("prefix")
        );
    }

    #[test]
    fn connect_adds_one_interface_and_disconnect_keeps_the_last_and_routes_through() {
        let f = Fixture::new();
        let nets = f.nets();
        let spec = plan_router(&req(&[("a", Some("10.1.0.254"))]), &nets, &BTreeMap::new())
            .expect("router");
        let iface = |n: &str, ip: Option<&str>| RouterInterfaceReq {
            network: n.into(),
            ip: ip.map(str::to_string),
        };
        // Connect: one more interface, the old one unchanged (same address, same MAC).
        let two = plan_connect(&spec, &iface("b", Some("10.2.0.254")), &nets).expect("connect");
        assert_eq!(two.interfaces.len(), 2);
        assert_eq!(two.interfaces[0], spec.interfaces[0]);
        assert_eq!(
            two.interfaces[1].ip,
            "10.2.0.254".parse::<Ipv4Addr>().expect("ip")
        );
        // Refused: a network it is on, an unknown one, an address outside, a taken one.
        assert_eq!(
            field_of(plan_connect(&spec, &iface("a", None), &nets)),
            "network"
        );
        assert_eq!(
            field_of(plan_connect(&spec, &iface("zz", None), &nets)),
            "network"
        );
        assert_eq!(
            field_of(plan_connect(&spec, &iface("b", Some("10.9.0.1")), &nets)),
            "ip"
        );
        assert_eq!(
            field_of(plan_connect(&spec, &iface("a", Some("10.1.0.2")), &nets)),
            "network"
        );
        // Disconnect: the only network, an unknown one, one a static route goes through.
        let subnets = subnets_of(&nets);
        assert_eq!(field_of(plan_disconnect(&spec, "a", &subnets)), "network");
        assert_eq!(field_of(plan_disconnect(&two, "zz", &subnets)), "network");
        let mut routed = two.clone();
        routed.routes.push(RouteSpec {
            prefix: "10.7.0.0/16".parse().expect("prefix"),
            via: "10.2.0.9".parse().expect("via"),
        });
        assert_eq!(field_of(plan_disconnect(&routed, "b", &subnets)), "network");
        let one = plan_disconnect(&two, "b", &subnets).expect("disconnect");
        assert_eq!(one, spec);
    }
}
