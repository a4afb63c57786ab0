//! The planning rules, without a kernel: each test is one rule of the API.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use netyard_api::model::{EndpointCreate, NetworkCreate};
use netyard_switch::MacAddr;

use super::*;
use crate::ipam::Ipam;
use crate::netns::NsIdentity;
use crate::spec::{EndpointSpec, NetworkSpec, PortKindName};

/// One change to a request, for the field-error tables.
type Setter<T> = Box<dyn Fn(&mut T)>;

fn net_req(name: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ..NetworkCreate::default()
    }
}

fn plan(req: &NetworkCreate, existing: &[NetworkSpec]) -> Result<NetworkSpec, DaemonError> {
    plan_network(req, existing.iter(), &[], None)
}

/// The field a planning error names.
fn field(r: Result<impl std::fmt::Debug, DaemonError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.field().unwrap_or("").to_string(),
    }
}

fn lab() -> NetworkSpec {
    let mut r = net_req("lab");
    r.subnet = Some("10.1.0.0/24".into());
    plan(&r, &[]).expect("plan lab")
}

#[test]
fn a_network_gets_every_default_resolved() {
    let n = lab();
    assert_eq!(
        n,
        NetworkSpec {
            name: "lab".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 1, 0, 1),
            ipv6: None,
            mtu: DEFAULT_MTU,
            internal: false,
            host_loopback: false,
            gateway_extra: vec![],
            gateway_extra6: vec![],
            maps: vec![],
            container_resolver: true,
            port_security: true,
            icc: true,
            max_flows_per_endpoint: 512,
            max_flows: 16384,
            aging: DEFAULT_AGING_SECS,
            max_macs_per_port: DEFAULT_MAX_MACS,
            vxlan: None,
            static_fdb: Default::default(),
            released: vec![],
            links: Default::default(),
            driver: crate::spec::Driver::Bridge,
            parent: None,
            ip_range: None,
            gateway_router: None,
        }
    );
}

fn map(guest: &str, host: &str) -> netyard_api::model::AddrMapReq {
    netyard_api::model::AddrMapReq {
        guest: guest.into(),
        host: host.into(),
    }
}

#[test]
fn extra_gateway_addresses_and_maps_are_kept_as_given() {
    let mut r = net_req("slirp");
    r.subnet = Some("10.0.2.0/24".into());
    r.gateway = Some("10.0.2.2".into());
    r.gateway_extra = vec!["10.0.2.3".into(), "169.254.1.1".into()];
    r.maps = vec![
        map("10.0.2.2", "127.0.0.1"),
        map("10.0.2.3", "127.0.0.53"),
        map("169.254.1.2", "192.0.2.1"),
    ];
    let n = plan(&r, &[]).expect("plan");
    assert_eq!(
        n.gateway_extra,
        vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(169, 254, 1, 1)]
    );
    assert_eq!(n.maps.len(), 3);
    assert_eq!(n.maps[2].guest, Ipv4Addr::new(169, 254, 1, 2));
    assert_eq!(n.maps[2].host, Ipv4Addr::new(192, 0, 2, 1));
    // A state file written before these fields loads with neither.
    let mut old = serde_json::to_value(lab()).expect("json");
    let o = old.as_object_mut().expect("object");
    assert!(!o.contains_key("gateway_extra") && !o.contains_key("maps"));
    o.remove("port_security");
    let back: NetworkSpec = serde_json::from_value(old).expect("old spec");
    assert!(back.gateway_extra.is_empty() && back.maps.is_empty());
}

#[test]
fn ipv6_extra_gateway_addresses_go_to_their_own_list() {
    let mut r = net_req("slirp6");
    r.subnet = Some("10.0.2.0/24".into());
    r.gateway = Some("10.0.2.2".into());
    r.ipv6 = true;
    r.subnet6 = Some("fd00::/64".into());
    r.gateway6 = Some("fd00::2".into());
    r.gateway_extra = vec!["10.0.2.3".into(), "fd00::3".into(), "2001:db8::53".into()];
    let n = plan(&r, &[]).expect("plan");
    assert_eq!(n.gateway_extra, vec![Ipv4Addr::new(10, 0, 2, 3)]);
    let want6: Vec<std::net::Ipv6Addr> =
        vec!["fd00::3".parse().unwrap(), "2001:db8::53".parse().unwrap()];
    assert_eq!(n.gateway_extra6, want6);
    let all: Vec<String> = n.gateway_extra_all().map(|ip| ip.to_string()).collect();
    assert_eq!(all, ["10.0.2.3", "fd00::3", "2001:db8::53"]);
    let o = serde_json::to_value(lab()).expect("json");
    assert!(o.get("gateway_extra6").is_none(), "written only when set");
    // Saved IPv4 first, the request's order is no difference in a --config file.
    r.gateway_extra.reverse();
    assert!(network_differs(&r, &n).is_empty());
    r.gateway_extra.pop();
    assert_eq!(network_differs(&r, &n), vec!["gateway_extra"]);
}

#[test]
fn icc_false_is_kept_and_only_written_when_false() {
    let mut r = net_req("iso");
    r.subnet = Some("10.1.0.0/24".into());
    r.icc = Some(false);
    let n = plan(&r, &[]).expect("plan");
    assert!(!n.icc);
    let json = serde_json::to_value(&n).expect("json");
    assert_eq!(json["icc"], false);
    let back: NetworkSpec = serde_json::from_value(json).expect("back");
    assert_eq!(back, n);
    // With isolation off (the default) the field is left out, so a state file a daemon
    // without the field wrote loads as icc=true and an older daemon can read ours.
    let old = serde_json::to_value(lab()).expect("json");
    assert!(old.get("icc").is_none());
    let back: NetworkSpec = serde_json::from_value(old).expect("old spec");
    assert!(back.icc);
    r.icc = Some(true);
    assert_eq!(network_differs(&r, &n), vec!["icc"]);
}

#[test]
fn without_a_subnet_the_first_free_pool_subnet_is_taken() {
    let routes: Vec<IpNet> = vec!["10.89.0.0/24".parse().unwrap()];
    let mut first = plan_network(&net_req("a"), [].iter(), &routes, None).unwrap();
    assert_eq!(first.subnet, "10.89.1.0/24".parse::<Ipv4Net>().unwrap());
    first.name = "a".into();
    let second = plan_network(&net_req("b"), [first].iter(), &routes, None).unwrap();
    assert_eq!(second.subnet, "10.89.2.0/24".parse::<Ipv4Net>().unwrap());
}

#[test]
fn network_field_errors_name_their_field() {
    let existing = vec![lab()];
    let cases: Vec<(&str, Setter<NetworkCreate>)> = vec![
        ("name", Box::new(|r| r.name = "".into())),
        ("name", Box::new(|r| r.name = "-x".into())),
        ("name", Box::new(|r| r.name = "lab".into())),
        ("subnet", Box::new(|r| r.subnet = Some("10.1.0.0".into()))),
        ("subnet", Box::new(|r| r.subnet = Some("fd00::/64".into()))),
        (
            "subnet",
            Box::new(|r| r.subnet = Some("10.0.0.0/31".into())),
        ),
        (
            "subnet",
            Box::new(|r| r.subnet = Some("10.1.0.128/25".into())),
        ),
        ("gateway", Box::new(|r| r.gateway = Some("x".into()))),
        ("gateway", Box::new(|r| r.gateway = Some("10.9.0.1".into()))),
        ("gateway", Box::new(|r| r.gateway = Some("10.2.0.0".into()))),
        ("mtu", Box::new(|r| r.mtu = Some(100))),
        ("mtu", Box::new(|r| r.mtu = Some(70_000))),
        ("aging", Box::new(|r| r.aging = Some(0))),
        (
            "max_macs_per_port",
            Box::new(|r| r.max_macs_per_port = Some(0)),
        ),
        ("max_flows", Box::new(|r| r.max_flows = Some(0))),
        (
            "max_flows_per_endpoint",
            Box::new(|r| r.max_flows_per_endpoint = Some(MAX_FLOWS + 1)),
        ),
        (
            "host_loopback",
            Box::new(|r| {
                r.internal = true;
                r.host_loopback = true;
            }),
        ),
        (
            "gateway_extra[0]",
            Box::new(|r| r.gateway_extra = vec!["x".into()]),
        ),
        (
            "gateway_extra[0]",
            Box::new(|r| r.gateway_extra = vec!["10.2.0.1".into()]),
        ),
        (
            "gateway_extra[0]",
            Box::new(|r| r.gateway_extra = vec!["10.2.0.255".into()]),
        ),
        (
            "gateway_extra[1]",
            Box::new(|r| r.gateway_extra = vec!["10.2.0.3".into(), "10.2.0.3".into()]),
        ),
        (
            "gateway_extra",
            Box::new(|r| r.gateway_extra = (2..10).map(|i| format!("10.2.0.{i}")).collect()),
        ),
        (
            "gateway_extra[0]",
            Box::new(|r| r.gateway_extra = vec!["fd00::3".into()]),
        ),
        (
            "gateway_extra[1]",
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("fd00::/64".into());
                r.gateway6 = Some("fd00::2".into());
                r.gateway_extra = vec!["10.2.0.3".into(), "fd00::2".into()];
            }),
        ),
        (
            "gateway_extra[0]",
            Box::new(|r| {
                r.ipv6 = true;
                r.gateway_extra = vec!["fe80::3".into()];
            }),
        ),
        (
            "gateway_extra",
            Box::new(|r| {
                r.ipv6 = true;
                r.gateway_extra = (2..8).map(|i| format!("10.2.0.{i}")).collect();
            }),
        ),
        (
            "maps[0].guest",
            Box::new(|r| r.maps = vec![map("y", "127.0.0.1")]),
        ),
        (
            "maps[0].host",
            Box::new(|r| r.maps = vec![map("10.2.0.1", "0.0.0.0")]),
        ),
        (
            "maps[0].guest",
            Box::new(|r| r.maps = vec![map("10.2.0.9", "127.0.0.1")]),
        ),
        (
            "maps[1].guest",
            Box::new(|r| {
                r.maps = vec![
                    map("169.254.1.2", "127.0.0.1"),
                    map("169.254.1.2", "192.0.2.1"),
                ]
            }),
        ),
        (
            "maps",
            Box::new(|r| {
                r.internal = true;
                r.maps = vec![map("10.2.0.1", "127.0.0.1")];
            }),
        ),
        ("vxlan_port", Box::new(|r| r.vxlan_port = Some(4789))),
        ("vxlan", Box::new(|r| r.vxlan = Some(1 << 24))),
        (
            "vxlan_local",
            Box::new(|r| {
                r.vxlan = Some(5);
                r.vxlan_local = Some("224.0.0.1".into());
            }),
        ),
        (
            "vxlan_peers[1]",
            Box::new(|r| {
                r.vxlan = Some(5);
                r.vxlan_peers = vec!["10.0.0.2".into(), "0.0.0.0".into()];
            }),
        ),
    ];
    for (want, set) in cases {
        let mut r = net_req("other");
        r.subnet = Some("10.2.0.0/24".into());
        set(&mut r);
        assert_eq!(field(plan(&r, &existing)), want, "{r:?}");
    }
}

#[test]
fn a_vxlan_network_takes_the_underlay_mtu_minus_the_encapsulation() {
    let mut r = net_req("ov");
    r.subnet = Some("10.3.0.0/24".into());
    r.vxlan = Some(42);
    let n = plan_network(&r, [].iter(), &[], Some(1500)).unwrap();
    assert_eq!(n.mtu, 1450);
    assert_eq!(
        n.vxlan.as_ref().map(|v| (v.vni, v.port, v.underlay_mtu)),
        Some((42, 4789, Some(1500)))
    );
    r.mtu = Some(1500);
    assert_eq!(field(plan_network(&r, [].iter(), &[], Some(1500))), "mtu");
    // Another network on the same VNI is refused.
    r.mtu = None;
    r.name = "ov2".into();
    r.subnet = Some("10.4.0.0/24".into());
    assert_eq!(
        field(plan_network(&r, [n].iter(), &[], Some(1500))),
        "vxlan"
    );
}

fn ep_req(name: &str) -> EndpointCreate {
    EndpointCreate {
        name: name.into(),
        netns: Some("/run/netns/x".into()),
        ..EndpointCreate::default()
    }
}

#[test]
fn an_endpoint_gets_the_next_address_and_dockers_mac() {
    let n = lab();
    let ipam = Ipam::new(n.subnet, n.gateway);
    let p = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(
        p,
        EndpointPlan {
            name: "c1".into(),
            ns: NsRequest::Path {
                netns: "/run/netns/x".into(),
                userns: None
            },
            ip: Ipv4Addr::new(10, 1, 0, 2),
            ip6: None,
            mac: MacAddr([2, 0x42, 10, 1, 0, 2]),
            ifname: "eth0".into(),
            kind: PortKindName::Tap,
            offload: true,
            trusted: false,
            aliases: vec![],
            owner: None,
        }
    );
}

#[test]
fn an_owner_is_kept_as_given_and_checked() {
    let n = lab();
    let ipam = Ipam::new(n.subnet, n.gateway);
    let mut r = ep_req("c1");
    r.owner = Some("cni:abc:eth0".into());
    let p = plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.owner.as_deref(), Some("cni:abc:eth0"));
    for bad in ["", "a\nb", &"x".repeat(257)] {
        r.owner = Some(bad.to_string());
        let e = plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap_err();
        assert_eq!(e.field(), Some("owner"), "{bad:?}: {e}");
    }
}

#[test]
fn a_peer_for_the_runtime_is_a_veth_with_no_namespace_and_the_address_given() {
    let n = lab();
    let ipam = Ipam::new(n.subnet, n.gateway);
    let mut r = ep_req("4f1c2a9e0b7d");
    r.netns = None;
    r.peer = Some("nyd4f1c2a9e0b7d".into());
    r.ip = Some("10.1.0.7".into());
    let p = plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(
        p,
        EndpointPlan {
            name: "4f1c2a9e0b7d".into(),
            ns: NsRequest::HandOver {
                peer: "nyd4f1c2a9e0b7d".into()
            },
            ip: Ipv4Addr::new(10, 1, 0, 7),
            ip6: None,
            mac: MacAddr([2, 0x42, 10, 1, 0, 7]),
            ifname: "eth0".into(),
            kind: PortKindName::Veth,
            offload: true,
            trusted: false,
            aliases: vec![],
            owner: None,
        }
    );
    assert_eq!(p.ns.label(), "", "no namespace to show");
}

#[test]
fn a_network_may_leave_127_0_0_11_to_the_runtime() {
    assert!(lab().container_resolver, "served by default");
    let mut r = net_req("docker");
    r.container_resolver = Some(false);
    let n = plan(&r, &[]).unwrap();
    assert!(!n.container_resolver);
    assert_eq!(network_differs(&r, &lab()), vec!["container_resolver"]);
}

#[test]
fn planning_an_endpoint_consumes_no_address() {
    let n = lab();
    let mut ipam = Ipam::new(n.subnet, n.gateway);
    let a = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    let b = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(
        a.ip, b.ip,
        "a refused or failed attach leaves the same next address"
    );
    // Taken for good and advanced: the next plan gets the following address.
    ipam.take(a.ip).unwrap();
    ipam.advance(a.ip);
    let c = plan_endpoint(&ep_req("c2"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(c.ip, Ipv4Addr::new(10, 1, 0, 3));
    // Taken but not advanced (an attach in progress): skipped, not reused.
    let d = plan_endpoint(&ep_req("c3"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(d.ip, c.ip);
}

#[test]
fn endpoint_field_errors_name_their_field() {
    let n = lab();
    let mut ipam = Ipam::new(n.subnet, n.gateway);
    ipam.take(Ipv4Addr::new(10, 1, 0, 9)).unwrap();
    let taken = Taken {
        names: BTreeSet::from(["c0".to_string()]),
        macs: BTreeSet::from([MacAddr([2, 0x42, 10, 1, 0, 1])]),
        remote_static: vec![(MacAddr([2, 0, 0, 0, 0, 7]), Ipv4Addr::new(192, 0, 2, 1))],
    };
    let cases: Vec<(&str, Setter<EndpointCreate>)> = vec![
        ("name", Box::new(|r| r.name = "".into())),
        ("name", Box::new(|r| r.name = "a b".into())),
        ("name", Box::new(|r| r.name = "c0".into())),
        ("netns", Box::new(|r| r.netns = None)),
        ("netns", Box::new(|r| r.pid = Some(5))),
        ("netns", Box::new(|r| r.netns = Some("".into()))),
        (
            "pid",
            Box::new(|r| {
                r.netns = None;
                r.pid = Some(0);
            }),
        ),
        (
            "pid",
            Box::new(|r| {
                r.netns = None;
                r.pid = Some(-3);
            }),
        ),
        (
            "userns",
            Box::new(|r| {
                r.netns = None;
                r.pid = Some(3);
                r.userns = Some("/proc/3/ns/user".into());
            }),
        ),
        ("ifname", Box::new(|r| r.ifname = Some("a/b".into()))),
        ("ifname", Box::new(|r| r.ifname = Some("x".repeat(16)))),
        ("kind", Box::new(|r| r.kind = Some("macvtap".into()))),
        ("ip", Box::new(|r| r.ip = Some("10.1.0".into()))),
        ("ip", Box::new(|r| r.ip = Some("10.2.0.5".into()))),
        ("ip", Box::new(|r| r.ip = Some("10.1.0.1".into()))),
        ("ip", Box::new(|r| r.ip = Some("10.1.0.255".into()))),
        ("ip", Box::new(|r| r.ip = Some("10.1.0.9".into()))),
        ("mac", Box::new(|r| r.mac = Some("02:42".into()))),
        (
            "mac",
            Box::new(|r| r.mac = Some("01:00:5e:00:00:01".into())),
        ),
        (
            "mac",
            Box::new(|r| r.mac = Some("02:42:0a:01:00:01".into())),
        ),
        (
            "mac",
            Box::new(|r| r.mac = Some("02:00:00:00:00:07".into())),
        ),
        (
            "aliases[1]",
            Box::new(|r| r.aliases = vec!["ok".into(), "no..dots".into()]),
        ),
        ("peer", Box::new(|r| r.peer = Some("nyd0".into()))),
        (
            "peer",
            Box::new(|r| {
                r.netns = None;
                r.peer = Some("x".repeat(16));
            }),
        ),
        (
            "kind",
            Box::new(|r| {
                r.netns = None;
                r.peer = Some("nyd0".into());
                r.kind = Some("tap".into());
            }),
        ),
        (
            "userns",
            Box::new(|r| {
                r.netns = None;
                r.peer = Some("nyd0".into());
                r.userns = Some("/proc/3/ns/user".into());
            }),
        ),
    ];
    for (want, set) in cases {
        let mut r = ep_req("c1");
        set(&mut r);
        assert_eq!(field(plan_endpoint(&r, &n, &ipam, &taken)), want, "{r:?}");
    }
}

#[test]
fn aliases_drop_duplicates_and_the_endpoints_own_name() {
    let n = lab();
    let ipam = Ipam::new(n.subnet, n.gateway);
    let mut r = ep_req("web");
    r.aliases = vec!["api".into(), "web".into(), "api".into(), "www".into()];
    let p = plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.aliases, vec!["api".to_string(), "www".to_string()]);
}

#[test]
fn a_config_entry_differs_only_in_the_fields_it_sets() {
    let n = lab();
    let mut r = net_req("lab");
    assert!(
        network_differs(&r, &n).is_empty(),
        "defaults match what they became"
    );
    r.subnet = Some("10.1.0.0/24".into());
    r.mtu = Some(1500);
    assert!(network_differs(&r, &n).is_empty());
    r.subnet = Some("10.7.0.0/24".into());
    r.internal = true;
    assert_eq!(network_differs(&r, &n), vec!["subnet", "internal"]);

    let e = EndpointSpec {
        name: "c1".into(),
        kind: PortKindName::Tap,
        ip: Ipv4Addr::new(10, 1, 0, 2),
        ip6: None,
        mac: MacAddr([2, 0x42, 10, 1, 0, 2]),
        ifname: "eth0".into(),
        netns: "/run/netns/x".into(),
        userns: None,
        pid: None,
        identity: NsIdentity {
            dev: 4,
            ino: 4026532000,
            pid: None,
            pid_start: None,
        },
        host_ifname: None,
        peer: None,
        offload: true,
        trusted: false,
        aliases: vec!["web".into()],
        published: vec![],
        owner: None,
        link: Default::default(),
    };
    let mut q = ep_req("c1");
    q.aliases = vec!["web".into()];
    assert!(endpoint_differs(&q, &e).is_empty());
    q.ip = Some("10.1.0.3".into());
    q.kind = Some("veth".into());
    q.aliases = vec![];
    assert_eq!(endpoint_differs(&q, &e), vec!["ip", "kind", "aliases"]);
}

#[test]
fn a_name_attached_again_gets_its_old_address_while_it_is_free() {
    let mut n = lab();
    let mut ipam = Ipam::new(n.subnet, n.gateway);
    // c1 had .7 and was detached; .2 is the next free address.
    n.remember_address("c1", Ipv4Addr::new(10, 1, 0, 7));
    let p = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.ip, Ipv4Addr::new(10, 1, 0, 7));
    // Another name gets the next free one.
    let q = plan_endpoint(&ep_req("c2"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(q.ip, Ipv4Addr::new(10, 1, 0, 2));
    // Taken meanwhile: the next free one.
    ipam.take(Ipv4Addr::new(10, 1, 0, 7)).unwrap();
    let r = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(r.ip, Ipv4Addr::new(10, 1, 0, 2));
    // An explicit --ip wins.
    let mut req = ep_req("c1");
    req.ip = Some("10.1.0.9".into());
    assert_eq!(
        plan_endpoint(&req, &n, &ipam, &Taken::default())
            .unwrap()
            .ip,
        Ipv4Addr::new(10, 1, 0, 9)
    );
}

#[test]
fn remembered_addresses_are_bounded_and_the_latest_wins() {
    let mut n = lab();
    n.remember_address("c1", Ipv4Addr::new(10, 1, 0, 7));
    n.remember_address("c1", Ipv4Addr::new(10, 1, 0, 8));
    assert_eq!(n.released_address("c1"), Some(Ipv4Addr::new(10, 1, 0, 8)));
    assert_eq!(n.released.len(), 1);
    for i in 0..(crate::spec::RELEASED_MAX + 5) {
        n.remember_address(&format!("e{i}"), Ipv4Addr::new(10, 1, 0, 9));
    }
    assert_eq!(n.released.len(), crate::spec::RELEASED_MAX);
    assert_eq!(n.released_address("c1"), None, "the oldest are forgotten");
    n.forget_address("e1000");
    assert_eq!(n.released_address("e1000"), None);
}

/// The error text of a planning failure.
fn reason(r: Result<impl std::fmt::Debug, DaemonError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unusable_subnets_are_refused_naming_the_subnet() {
    for (cidr, what) in [
        ("127.0.0.0/8", "loopback"),
        ("127.5.0.0/24", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("239.1.0.0/16", "multicast"),
        ("0.0.0.0/8", "this network"),
        ("0.1.2.0/24", "this network"),
        ("255.255.255.0/24", "broadcast"),
        ("240.0.0.0/8", "reserved"),
        ("232.0.0.0/8", "multicast"),
    ] {
        let mut r = net_req("n");
        r.subnet = Some(cidr.into());
        let e = plan(&r, &[]).unwrap_err();
        assert_eq!(e.field(), Some("subnet"), "{cidr}");
        let msg = e.to_string();
        let net: Ipv4Net = cidr.parse::<Ipv4Net>().unwrap().trunc();
        assert!(msg.contains(&net.to_string()), "{cidr}: {msg}");
        assert!(msg.contains(what), "{cidr}: {msg}");
    }
    // Next to the blocks is fine.
    for cidr in ["1.0.0.0/24", "126.255.255.0/24", "223.255.255.0/24"] {
        let mut r = net_req("n");
        r.subnet = Some(cidr.into());
        plan(&r, &[]).unwrap_or_else(|e| panic!("{cidr}: {e}"));
    }
}

#[test]
fn names_are_bounded_and_quoted_only_in_part() {
    let huge = "a".repeat(1_500_000);
    let long_net = "n".repeat(65);
    for (name, why) in [
        (huge.as_str(), "1500000 bytes long, at most 64"),
        (long_net.as_str(), "65 bytes long, at most 64"),
        ("", "empty"),
        ("-x", "must start with a letter or digit"),
        ("a b", "character ' ' is not allowed"),
        ("caf\u{e9}", "character '\u{e9}' is not allowed"),
    ] {
        let msg = reason(plan(&net_req(name), &[]));
        assert!(msg.starts_with("name: "), "{msg}");
        assert!(msg.contains(why), "{msg}");
        assert!(
            msg.len() < 300,
            "the error quotes the whole name: {} bytes",
            msg.len()
        );
    }
    plan(&net_req(&"n".repeat(64)), &[]).unwrap();

    let n = lab();
    let ipam = Ipam::new(n.subnet, n.gateway);
    let mut r = ep_req("c1");
    r.aliases = vec!["ok".into(), "x".repeat(254)];
    let msg = reason(plan_endpoint(&r, &n, &ipam, &Taken::default()));
    assert!(msg.starts_with("aliases[1]: "), "{msg}");
    assert!(msg.contains("254 bytes long, at most 253"), "{msg}");
    assert!(msg.len() < 300, "{msg}");
    r.aliases = vec!["a..b".into()];
    assert!(reason(plan_endpoint(&r, &n, &ipam, &Taken::default())).contains("labels are 1-63"));
    r.aliases = vec![format!("{}.{}", "a".repeat(63), "b".repeat(63))];
    plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap();
}

#[test]
fn ifname_errors_say_why() {
    let n = lab();
    let ipam = Ipam::new(n.subnet, n.gateway);
    for (ifname, why) in [
        ("lo", "loopback interface \"lo\" already"),
        ("abcdefghijklmnop", "16 bytes long, at most 15"),
        ("a/b", "character '/' is not allowed"),
        ("a b", "character ' ' is not allowed"),
        ("", "empty"),
        ("..", "not a file name"),
    ] {
        let mut r = ep_req("c1");
        r.ifname = Some(ifname.into());
        let msg = reason(plan_endpoint(&r, &n, &ipam, &Taken::default()));
        assert!(msg.starts_with("ifname: "), "{msg}");
        assert!(msg.contains(why), "{ifname:?}: {msg}");
    }
}

fn running_endpoint(name: &str, published: Vec<crate::ports::Mapping>) -> EndpointSpec {
    EndpointSpec {
        name: name.into(),
        kind: PortKindName::Tap,
        ip: Ipv4Addr::new(10, 1, 0, 2),
        ip6: None,
        mac: MacAddr([2, 0x42, 10, 1, 0, 2]),
        ifname: "eth0".into(),
        netns: "/run/netns/x".into(),
        userns: None,
        pid: None,
        identity: NsIdentity {
            dev: 4,
            ino: 4026532000,
            pid: None,
            pid_start: None,
        },
        host_ifname: None,
        peer: None,
        offload: true,
        trusted: false,
        aliases: vec![],
        published,
        owner: None,
        link: Default::default(),
    }
}

fn tcp(host_port: u16, container_port: u16) -> crate::ports::Mapping {
    crate::ports::Mapping {
        host_ip: None,
        dual_stack: true,
        host_port,
        container_port,
        proto: netyard_api::portspec::Proto::Tcp,
    }
}

/// A running state: network "lab" with endpoint "c1" publishing 8080->80 and an ephemeral
/// host port (40000) for 443.
fn running() -> crate::spec::StateSpec {
    let mut endpoints = std::collections::BTreeMap::new();
    endpoints.insert(
        "c1".to_string(),
        running_endpoint("c1", vec![tcp(8080, 80), tcp(40000, 443)]),
    );
    let mut networks = std::collections::BTreeMap::new();
    networks.insert(
        "lab".to_string(),
        crate::spec::SavedNetwork {
            network: lab(),
            endpoints,
        },
    );
    crate::spec::StateSpec {
        networks,
        routers: Default::default(),
    }
}

fn config(text: &str) -> crate::config::Config {
    crate::config::Config::parse(text).expect("config parses")
}

#[test]
fn the_same_config_again_changes_nothing() {
    let cfg = config(
        r#"
        [[network]]
        name = "lab"
        subnet = "10.1.0.0/24"
        [[endpoint]]
        network = "lab"
        name = "c1"
        netns = "/run/netns/x"
        publish = ["8080:80", "443"]
        "#,
    );
    let plan = plan_config(&cfg, &running()).unwrap();
    assert_eq!(
        plan,
        ConfigPlan {
            unchanged: 2,
            ..ConfigPlan::default()
        }
    );
}

#[test]
fn a_config_adds_what_is_new_and_keeps_what_cannot_change_live() {
    let cfg = config(
        r#"
        [[network]]
        name = "lab"
        subnet = "10.1.0.0/24"
        mtu = 9000
        [[network]]
        name = "new"
        [[endpoint]]
        network = "lab"
        name = "c1"
        netns = "/run/netns/x"
        ip = "10.1.0.9"
        publish = ["8080:80", "9090:90/udp", "127.0.0.1:8081:81"]
        [[endpoint]]
        network = "new"
        name = "c2"
        netns = "/run/netns/y"
        "#,
    );
    let plan = plan_config(&cfg, &running()).unwrap();
    assert_eq!(
        plan,
        ConfigPlan {
            networks: vec![(1, cfg.network[1].clone())],
            endpoints: vec![(1, cfg.endpoint[1].clone())],
            publish: vec![NewPorts {
                index: 0,
                network: "lab".into(),
                endpoint: "c1".into(),
                specs: vec![(1, "9090:90/udp".into()), (2, "127.0.0.1:8081:81".into())],
            }],
            kept: vec![
                Kept {
                    network: "lab".into(),
                    endpoint: None,
                    fields: vec!["mtu"],
                },
                Kept {
                    network: "lab".into(),
                    endpoint: Some("c1".into()),
                    fields: vec!["ip"],
                },
            ],
            unchanged: 0,
        }
    );
}

#[test]
fn a_port_published_on_another_host_port_is_new() {
    let cfg = config(
        r#"
        [[endpoint]]
        network = "lab"
        name = "c1"
        netns = "/run/netns/x"
        publish = ["8081:80", "8080-8081:80"]
        "#,
    );
    let plan = plan_config(&cfg, &running()).unwrap();
    // 8081:80 is not what runs (8080:80); a range containing the bound port is.
    assert_eq!(plan.publish[0].specs, vec![(0, "8081:80".to_string())]);
}

#[test]
fn a_bad_spec_in_the_config_names_its_field() {
    let cfg = config(
        r#"
        [[endpoint]]
        network = "lab"
        name = "c1"
        netns = "/run/netns/x"
        publish = ["80", "70000:80"]
        "#,
    );
    assert_eq!(
        field(plan_config(&cfg, &running())),
        "endpoint[0].publish[1]"
    );
}

// ---- macvlan networks and ip ranges ----

fn macvlan_req(name: &str, parent: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        driver: Some("macvlan".into()),
        parent: Some(parent.into()),
        subnet: Some("192.168.7.0/24".into()),
        gateway: Some("192.168.7.254".into()),
        ..NetworkCreate::default()
    }
}

const UP_9000: Option<ParentLink> = Some(ParentLink::Found {
    up: true,
    mtu: 9000,
});

fn plan_on(
    req: &NetworkCreate,
    existing: &[NetworkSpec],
    parent: Option<ParentLink>,
) -> Result<NetworkSpec, DaemonError> {
    plan_network_on(req, existing.iter(), &[], None, parent)
}

#[test]
fn a_macvlan_network_keeps_its_parent_and_takes_its_mtu() {
    let n = plan_on(&macvlan_req("lan", "eth0"), &[], UP_9000).unwrap();
    assert_eq!(n.driver, crate::spec::Driver::Macvlan);
    assert_eq!(n.parent.as_deref(), Some("eth0"));
    assert_eq!(n.gateway, Ipv4Addr::new(192, 168, 7, 254));
    assert_eq!(n.mtu, 9000);
    let mut r = macvlan_req("lan", "eth0");
    r.mtu = Some(1500);
    assert_eq!(plan_on(&r, &[], UP_9000).unwrap().mtu, 1500);
    r.mtu = Some(9001);
    assert_eq!(field(plan_on(&r, &[], UP_9000)), "mtu");
    // A bridge network keeps the default driver and has no parent.
    assert_eq!(lab().driver, crate::spec::Driver::Bridge);
    assert_eq!(lab().parent, None);
}

#[test]
fn macvlan_field_errors_name_their_field() {
    let up = UP_9000;
    let cases: Vec<(&str, Setter<NetworkCreate>, Option<ParentLink>)> = vec![
        ("driver", Box::new(|r| r.driver = Some("ipvlan".into())), up),
        ("parent", Box::new(|r| r.parent = None), up),
        ("parent", Box::new(|r| r.parent = Some("a/b".into())), up),
        ("parent", Box::new(|_| {}), Some(ParentLink::Missing)),
        (
            "parent",
            Box::new(|_| {}),
            Some(ParentLink::Found {
                up: false,
                mtu: 1500,
            }),
        ),
        ("subnet", Box::new(|r| r.subnet = None), up),
        ("internal", Box::new(|r| r.internal = true), up),
        ("host_loopback", Box::new(|r| r.host_loopback = true), up),
        (
            "gateway_extra",
            Box::new(|r| r.gateway_extra = vec!["192.168.7.9".into()]),
            up,
        ),
        (
            "maps",
            Box::new(|r| r.maps = vec![map("192.168.7.9", "127.0.0.1")]),
            up,
        ),
        ("vxlan", Box::new(|r| r.vxlan = Some(7)), up),
        ("icc", Box::new(|r| r.icc = Some(false)), up),
        (
            "container_resolver",
            Box::new(|r| r.container_resolver = Some(false)),
            up,
        ),
        (
            "ip_range",
            Box::new(|r| r.ip_range = Some("10.9.9.0/28".into())),
            up,
        ),
    ];
    for (want, set, parent) in cases {
        let mut r = macvlan_req("lan", "eth0");
        set(&mut r);
        assert_eq!(field(plan_on(&r, &[], parent)), want, "{r:?}");
    }
    // A parent on a bridge network is refused too.
    let mut r = net_req("br");
    r.parent = Some("eth0".into());
    assert_eq!(field(plan(&r, &[])), "parent");
}

#[test]
fn one_macvlan_network_per_parent() {
    let first = plan_on(&macvlan_req("lan", "eth0"), &[], UP_9000).unwrap();
    let mut second = macvlan_req("lan2", "eth0");
    second.subnet = Some("192.168.8.0/24".into());
    second.gateway = None;
    let e = plan_on(&second, std::slice::from_ref(&first), UP_9000).unwrap_err();
    assert_eq!(e.field(), Some("parent"));
    assert!(e.to_string().contains("\"lan\""), "{e}");
    assert!(e.to_string().contains("eth0.10"), "{e}");
    // A VLAN sub-interface is another parent.
    second.parent = Some("eth0.10".into());
    assert!(plan_on(&second, &[first], UP_9000).is_ok());
}

#[test]
fn ip_ranges_lie_inside_the_subnet_and_hold_an_address() {
    let mut r = net_req("r");
    r.subnet = Some("10.1.0.0/24".into());
    r.ip_range = Some("10.1.0.129/25".into());
    assert_eq!(
        plan(&r, &[]).unwrap().ip_range,
        Some("10.1.0.128/25".parse().unwrap())
    );
    for bad in [
        "10.1.0.0/23",
        "10.2.0.0/28",
        "nonsense",
        "fd00::/64",
        "10.1.0.1/32",
    ] {
        r.ip_range = Some(bad.into());
        assert_eq!(field(plan(&r, &[])), "ip_range", "{bad}");
    }
}

#[test]
fn a_macvlan_network_publishes_nothing() {
    let n = plan_on(&macvlan_req("lan", "eth0"), &[], UP_9000).unwrap();
    let ipam = Ipam::new(n.subnet, n.gateway);
    let mut r = ep_req("c1");
    r.publish = vec!["8080:80".into()];
    let e = plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap_err();
    assert_eq!(e.field(), Some("publish"));
    assert!(e.to_string().contains("macvlan"), "{e}");
    r.publish.clear();
    let p = plan_endpoint(&r, &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.ip, Ipv4Addr::new(192, 168, 7, 1));
}

#[test]
fn a_dual_stack_macvlan_network_takes_the_lans_prefix_and_router() {
    let mut r = macvlan_req("lan", "eth0");
    r.ipv6 = true;
    r.subnet6 = Some("2001:db8:7::/64".into());
    r.gateway6 = Some("2001:db8:7::fe".into());
    let n = plan_on(&r, &[], UP_9000).expect("plan");
    let v6 = n.ipv6.expect("ipv6");
    assert_eq!(v6.subnet, "2001:db8:7::/64".parse().unwrap());
    assert_eq!(v6.gateway, "2001:db8:7::fe".parse::<Ipv6Addr>().unwrap());
    // The endpoints' default route is that router (no netyard gateway sends them RAs);
    // on a bridge network it comes from the gateway's RAs instead.
    assert_eq!(n.default_gateway6(), Some(v6.gateway));
    r.gateway6 = None;
    let n = plan_on(&r, &[], UP_9000).expect("plan");
    assert_eq!(
        n.ipv6.map(|v| v.gateway),
        Some("2001:db8:7::1".parse().unwrap()),
        "the prefix's first address by default, as for IPv4"
    );
    let mut b = net_req("v6");
    b.ipv6 = true;
    assert_eq!(plan(&b, &[]).expect("plan").default_gateway6(), None);
    // Endpoints get addresses of the prefix, never the router's.
    let ipam = Ipam::new(n.subnet, n.gateway).with_ipv6(n.ipv6.map(|v| (v.subnet, v.gateway)));
    let p = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.ip6, Some("2001:db8:7::2".parse().unwrap()));
}

#[test]
fn a_dual_stack_macvlan_network_needs_the_lans_prefix() {
    let mut r = macvlan_req("lan", "eth0");
    r.ipv6 = true;
    let e = plan_on(&r, &[], UP_9000).unwrap_err();
    assert_eq!(e.field(), Some("subnet6"), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    for (subnet6, gateway6, want) in [
        ("2001:db8:7::/64", Some("2001:db8:8::1"), "gateway6"),
        ("2001:db8:7::/64", Some("2001:db8:7::"), "gateway6"),
        ("fe80::/64", None, "subnet6"),
        ("2001:db8:7::/32", None, "subnet6"),
    ] {
        r.subnet6 = Some(subnet6.into());
        r.gateway6 = gateway6.map(Into::into);
        assert_eq!(field(plan_on(&r, &[], UP_9000)), want, "{r:?}");
    }
}

#[test]
fn a_config_entry_differs_in_driver_parent_and_range() {
    let n = plan_on(&macvlan_req("lan", "eth0"), &[], UP_9000).unwrap();
    assert!(network_differs(&macvlan_req("lan", "eth0"), &n).is_empty());
    let mut r = macvlan_req("lan", "eth1");
    r.ip_range = Some("192.168.7.0/25".into());
    assert_eq!(network_differs(&r, &n), vec!["parent", "ip_range"]);
    r.driver = None;
    r.parent = None;
    r.ip_range = None;
    assert_eq!(network_differs(&r, &n), vec!["driver", "parent"]);
}

#[test]
fn a_dual_stack_network_gets_a_ula_prefix_and_its_first_address_as_gateway() {
    let mut r = net_req("v6");
    r.subnet = Some("10.6.0.0/24".into());
    r.ipv6 = true;
    let n = plan(&r, &[]).expect("plan");
    let v6 = n.ipv6.expect("ipv6");
    assert_eq!(v6.subnet.prefix_len(), 64);
    assert_eq!(v6.subnet.network().segments()[0] >> 8, 0xfd, "{v6:?}");
    assert_eq!(v6.subnet.network().segments()[3], 0, "subnet ID 0");
    assert_eq!(
        v6.gateway,
        std::net::Ipv6Addr::from(u128::from(v6.subnet.network()) + 1)
    );
    // Given explicitly, with a gateway of its own.
    r.subnet6 = Some("fd00:ab::/64".into());
    r.gateway6 = Some("fd00:ab::fe".into());
    let n = plan(&r, &[]).expect("plan");
    let v6 = n.ipv6.expect("ipv6");
    assert_eq!(v6.subnet, "fd00:ab::/64".parse().unwrap());
    assert_eq!(
        v6.gateway,
        "fd00:ab::fe".parse::<std::net::Ipv6Addr>().unwrap()
    );
}

#[test]
fn ipv6_bad_input_names_the_field() {
    let mut other = net_req("other");
    other.subnet = Some("10.7.0.0/24".into());
    other.ipv6 = true;
    other.subnet6 = Some("fd00:ab::/64".into());
    let existing = plan(&other, &[]).expect("plan other");
    let base = || {
        let mut r = net_req("v6");
        r.subnet = Some("10.6.0.0/24".into());
        r
    };
    let cases: Vec<(Setter<NetworkCreate>, &str)> = vec![
        (
            Box::new(|r| r.subnet6 = Some("fd00:1::/64".into())),
            "subnet6",
        ),
        (
            Box::new(|r| r.gateway6 = Some("fd00:1::1".into())),
            "gateway6",
        ),
        (
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("fd00:ab:0:0:1::/80".into());
            }),
            "subnet6",
        ),
        (
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("nope".into());
            }),
            "subnet6",
        ),
        (
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("fe80::/64".into());
            }),
            "subnet6",
        ),
        (
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("fd00:1::/32".into());
            }),
            "subnet6",
        ),
        (
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("fd00:1::/64".into());
                r.gateway6 = Some("fd00:2::1".into());
            }),
            "gateway6",
        ),
        (
            Box::new(|r| {
                r.ipv6 = true;
                r.subnet6 = Some("fd00:1::/64".into());
                r.gateway6 = Some("fd00:1::".into());
            }),
            "gateway6",
        ),
    ];
    for (edit, want) in cases {
        let mut r = base();
        edit(&mut r);
        assert_eq!(
            field(plan(&r, std::slice::from_ref(&existing))),
            want,
            "{r:?}"
        );
    }
}

#[test]
fn an_endpoint_of_a_dual_stack_network_gets_an_ipv6_address() {
    let mut r = net_req("v6");
    r.subnet = Some("10.6.0.0/24".into());
    r.ipv6 = true;
    r.subnet6 = Some("fd00:ab::/64".into());
    let n = plan(&r, &[]).expect("plan");
    let v6 = n.ipv6.expect("ipv6");
    let ipam = Ipam::new(n.subnet, n.gateway).with_ipv6(Some((v6.subnet, v6.gateway)));
    let p = plan_endpoint(&ep_req("c1"), &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.ip6, Some("fd00:ab::2".parse().unwrap()));
    let mut e = ep_req("c1");
    e.ip6 = Some("fd00:ab::99".into());
    let p = plan_endpoint(&e, &n, &ipam, &Taken::default()).unwrap();
    assert_eq!(p.ip6, Some("fd00:ab::99".parse().unwrap()));
    for bad in ["fd00:cd::5", "fd00:ab::1", "10.6.0.9", "fd00:ab::"] {
        e.ip6 = Some(bad.into());
        assert_eq!(
            field(plan_endpoint(&e, &n, &ipam, &Taken::default())),
            "ip6",
            "{bad}"
        );
    }
    // --ip6 on an IPv4-only network.
    let v4 = lab();
    let ipam = Ipam::new(v4.subnet, v4.gateway);
    e.ip6 = Some("fd00:ab::5".into());
    assert_eq!(
        field(plan_endpoint(&e, &v4, &ipam, &Taken::default())),
        "ip6"
    );
}
