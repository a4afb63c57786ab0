//! The CNI plugin's pure parts: environment, configuration, names, results, CHECK.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use super::config::{self, endpoint_name, fallback_name, parse_conf, parse_env, Command, Version};
use super::error::{CniError, Code};
use super::result::{self, Attachment, Dns, Observed};

fn env_of(pairs: &[(&str, &str)]) -> Result<config::Env, CniError> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_env(|k| m.get(k).cloned())
}

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "abc123"),
    ("CNI_NETNS", "/run/netns/x"),
    ("CNI_IFNAME", "eth0"),
];

fn with(
    base: &[(&'static str, &'static str)],
    k: &'static str,
    v: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = base.iter().copied().filter(|(x, _)| *x != k).collect();
    out.push((k, v));
    out
}

fn without(base: &[(&'static str, &'static str)], k: &str) -> Vec<(&'static str, &'static str)> {
    base.iter().copied().filter(|(x, _)| *x != k).collect()
}

#[test]
fn the_environment_is_read_with_the_variable_at_fault_named() {
    let e = env_of(ADD).unwrap();
    assert_eq!(e.command, Command::Add);
    assert_eq!(e.netns.as_deref(), Some("/run/netns/x"));
    assert_eq!(e.pod_name, None);
    let e = env_of(&with(
        ADD,
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=d",
    ))
    .unwrap();
    assert_eq!(e.pod_name.as_deref(), Some("web"));

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (without(ADD, "CNI_COMMAND"), "CNI_COMMAND"),
        (with(ADD, "CNI_COMMAND", "ATTACH"), "CNI_COMMAND"),
        (without(ADD, "CNI_CONTAINERID"), "CNI_CONTAINERID"),
        (with(ADD, "CNI_CONTAINERID", "-x"), "CNI_CONTAINERID"),
        (without(ADD, "CNI_NETNS"), "CNI_NETNS"),
        (without(ADD, "CNI_IFNAME"), "CNI_IFNAME"),
        (with(ADD, "CNI_IFNAME", "a/b"), "CNI_IFNAME"),
        (with(ADD, "CNI_IFNAME", "sixteen-chars-xx"), "CNI_IFNAME"),
        (with(ADD, "CNI_ARGS", "K8S_POD_NAME"), "CNI_ARGS"),
    ];
    for (vars, name) in cases {
        let e = env_of(&vars).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment, "{name}: {e}");
        assert!(e.msg.contains(name), "{name}: {e}");
    }
    // DEL may come without a namespace; VERSION, STATUS and GC need nothing but the command.
    let d = env_of(&without(&with(ADD, "CNI_COMMAND", "DEL"), "CNI_NETNS")).unwrap();
    assert_eq!((d.command, d.netns), (Command::Del, None));
    assert_eq!(
        env_of(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
        Command::Version
    );
    assert_eq!(
        env_of(&[("CNI_COMMAND", "GC")]).unwrap().command,
        Command::Gc
    );
}

fn conf(v: Value) -> Result<config::NetConf, CniError> {
    parse_conf(v.to_string().as_bytes())
}

fn base() -> Value {
    json!({"cniVersion": "1.0.0", "name": "lab", "type": "netyard", "network": "lab"})
}

fn set(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

#[test]
fn a_minimal_configuration_and_every_option() {
    let c = conf(base()).unwrap();
    assert_eq!(c.version, Version::V100);
    assert_eq!(c.network.name, "lab");
    assert_eq!(c.network.subnet, None);
    assert_eq!(c.api, None);
    let full = json!({
        "cniVersion": "0.4.0", "name": "lab", "type": "netyard", "network": "web",
        "subnet": "10.1.2.0/24", "gateway": "10.1.2.1", "mtu": 1400, "internal": false,
        "host_loopback": true, "port_security": false, "aging": 60, "api": "/run/ny.sock",
        "kind": "veth",
        "capabilities": {"portMappings": true, "aliases": true, "ips": true, "mac": true},
        "runtimeConfig": {
            "portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
                {"hostPort": 9000, "containerPort": 90, "hostIP": "::1"}
            ],
            "ips": ["10.1.2.9/24"], "mac": "02:00:00:00:00:09",
            "aliases": {"lab": ["www", "api"]}
        },
        "prevResult": {"cniVersion": "0.4.0", "interfaces": []}
    });
    let c = conf(full).unwrap();
    assert_eq!(c.version, Version::V040);
    assert_eq!(c.network.name, "web");
    assert_eq!(c.network.subnet.as_deref(), Some("10.1.2.0/24"));
    assert_eq!(c.network.mtu, Some(1400));
    assert!(c.network.host_loopback);
    assert_eq!(c.network.port_security, Some(false));
    assert_eq!(c.api.as_deref(), Some("/run/ny.sock"));
    assert_eq!(c.kind.as_deref(), Some("veth"));
    assert_eq!(
        c.runtime,
        config::RuntimeConfig {
            ip: Some(Ipv4Addr::new(10, 1, 2, 9)),
            ip6: None,
            mac: Some("02:00:00:00:00:09".into()),
            aliases: vec!["www".into(), "api".into()],
            publish: vec![
                "8080:80/tcp".into(),
                "127.0.0.1:5353:53/udp".into(),
                "[::1]:9000:90/tcp".into()
            ],
        }
    );
    assert!(c.prev_result.is_some());
    // Aliases as a plain list, and keyed by the netyard network's name.
    let c = conf(set(base(), "runtimeConfig", json!({"aliases": ["a"]}))).unwrap();
    assert_eq!(c.runtime.aliases, vec!["a".to_string()]);
    let v = set(
        set(base(), "network", json!("other")),
        "runtimeConfig",
        json!({"aliases": {"other": ["b"]}}),
    );
    assert_eq!(conf(v).unwrap().runtime.aliases, vec!["b".to_string()]);
}

#[test]
fn a_dual_stack_configuration_and_an_address_of_each_family() {
    let v = set(
        set(
            set(base(), "ipv6", json!(true)),
            "subnet6",
            json!("fd00:1:2::/64"),
        ),
        "runtimeConfig",
        json!({"ips": ["10.1.2.9/24", "fd00:1:2::9/64"]}),
    );
    let c = conf(set(v, "gateway6", json!("fd00:1:2::fe"))).unwrap();
    assert!(c.network.ipv6);
    assert_eq!(c.network.subnet6.as_deref(), Some("fd00:1:2::/64"));
    assert_eq!(c.network.gateway6.as_deref(), Some("fd00:1:2::fe"));
    assert_eq!(c.runtime.ip, Some(Ipv4Addr::new(10, 1, 2, 9)));
    assert_eq!(c.runtime.ip6, Some("fd00:1:2::9".parse().unwrap()));
    // An IPv6 address alone (IPv4 from netyard's IPAM); the prefix is the daemon's to check.
    let c = conf(set(base(), "runtimeConfig", json!({"ips": ["fd00:9::9"]}))).unwrap();
    assert_eq!(
        (c.runtime.ip, c.runtime.ip6),
        (None, Some("fd00:9::9".parse().unwrap()))
    );
}

#[test]
fn bad_configurations_name_their_field() {
    let cases: Vec<(Value, Code, &str)> = vec![
        (
            json!({"cniVersion": "1.0.0", "name": "lab", "type": "netyard"}),
            Code::InvalidConfig,
            "network",
        ),
        (
            set(base(), "network", json!("bad name")),
            Code::InvalidConfig,
            "network",
        ),
        (
            set(base(), "cniVersion", json!("0.2.0")),
            Code::IncompatibleVersion,
            "0.2.0",
        ),
        (
            set(base(), "cniVersion", json!(null)),
            Code::InvalidConfig,
            "cniVersion",
        ),
        (
            set(base(), "subnet", json!("10.1.0.0")),
            Code::InvalidConfig,
            "subnet",
        ),
        (
            set(base(), "subnet", json!("fd00::/64")),
            Code::InvalidConfig,
            "subnet",
        ),
        (
            set(base(), "gateway", json!("x")),
            Code::InvalidConfig,
            "gateway",
        ),
        (set(base(), "mtu", json!("big")), Code::InvalidConfig, "mtu"),
        (
            set(base(), "internal", json!(1)),
            Code::InvalidConfig,
            "internal",
        ),
        (
            set(base(), "kind", json!("macvlan")),
            Code::InvalidConfig,
            "kind",
        ),
        (set(base(), "api", json!("")), Code::InvalidConfig, "api"),
        (
            set(base(), "ipam", json!({"type": "host-local"})),
            Code::UnsupportedField,
            "ipam",
        ),
        (
            set(base(), "subnett", json!("10.0.0.0/24")),
            Code::UnsupportedField,
            "subnett",
        ),
        (
            set(
                base(),
                "runtimeConfig",
                json!({"ips": ["fd00::5/64", "fd00::6/64"]}),
            ),
            Code::UnsupportedField,
            "runtimeConfig.ips[1]",
        ),
        (
            set(base(), "subnet6", json!("fd00::/64")),
            Code::InvalidConfig,
            "subnet6",
        ),
        (
            set(
                set(base(), "ipv6", json!(true)),
                "subnet6",
                json!("10.0.0.0/24"),
            ),
            Code::InvalidConfig,
            "subnet6",
        ),
        (
            set(
                set(base(), "ipv6", json!(true)),
                "gateway6",
                json!("10.0.0.1"),
            ),
            Code::InvalidConfig,
            "gateway6",
        ),
        (
            set(base(), "ipv6", json!("yes")),
            Code::InvalidConfig,
            "ipv6",
        ),
        (
            set(base(), "runtimeConfig", json!({"ips": ["nope"]})),
            Code::InvalidConfig,
            "runtimeConfig.ips[0]",
        ),
        (
            set(
                base(),
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
            ),
            Code::InvalidConfig,
            "runtimeConfig.portMappings[0].hostPort",
        ),
        (
            set(
                base(),
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 1, "containerPort": 70000}]}),
            ),
            Code::InvalidConfig,
            "runtimeConfig.portMappings[0].containerPort",
        ),
        (
            set(
                base(),
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "sctp"}]}),
            ),
            Code::UnsupportedField,
            "runtimeConfig.portMappings[0].protocol",
        ),
        (
            set(
                base(),
                "runtimeConfig",
                json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "hostIP": "h"}]}),
            ),
            Code::InvalidConfig,
            "runtimeConfig.portMappings[0].hostIP",
        ),
        (
            set(
                base(),
                "runtimeConfig",
                json!({"portMappings": [{"containerPort": 2}]}),
            ),
            Code::InvalidConfig,
            "runtimeConfig.portMappings[0]",
        ),
    ];
    for (v, code, field) in cases {
        let e = conf(v.clone()).unwrap_err();
        assert_eq!(e.code, code, "{v}: {e}");
        assert!(
            e.to_string().contains(field),
            "{v}: {e:?} does not name {field}"
        );
    }
    let e = parse_conf(b"{not json").unwrap_err();
    assert_eq!(e.code, Code::DecodingFailure);
    let e = parse_conf(b"[1]").unwrap_err();
    assert_eq!(e.code, Code::DecodingFailure);
}

#[test]
fn the_error_json_has_the_specs_fields() {
    let e = CniError::config("subnet", "\"x\" is not an IPv4 CIDR");
    assert_eq!(
        e.to_json("1.0.0"),
        json!({"cniVersion": "1.0.0", "code": 7, "msg": "invalid subnet", "details": "\"x\" is not an IPv4 CIDR"})
    );
    let e = CniError::new(Code::NotAvailable, "down", "");
    assert_eq!(
        e.to_json("1.1.0"),
        json!({"cniVersion": "1.1.0", "code": 50, "msg": "down"})
    );
}

#[test]
fn version_is_answered_in_the_version_asked() {
    assert_eq!(
        config::version_asked(br#"{"cniVersion":"0.4.0"}"#),
        Version::V040
    );
    assert_eq!(config::version_asked(b""), Version::V110);
    assert_eq!(
        config::version_asked(br#"{"cniVersion":"9.9.9"}"#),
        Version::V110
    );
}

#[test]
fn endpoint_names_are_valid_stable_and_distinct() {
    assert_eq!(endpoint_name(Some("web"), "abc"), "web");
    assert_eq!(endpoint_name(None, "abc123"), "abc123");
    let id = "f".repeat(64);
    assert_eq!(
        endpoint_name(None, &id),
        id,
        "a 64-hex id is a valid name as it is"
    );
    // Changed names get a hash of the original: valid, stable, and distinct where the
    // originals differ only in what was replaced.
    let a = endpoint_name(Some("_web:1"), "x");
    let b = endpoint_name(Some("_web/1"), "x");
    assert!(
        a.starts_with("web-1-") && b.starts_with("web-1-"),
        "{a} {b}"
    );
    assert_ne!(a, b);
    assert_eq!(a, endpoint_name(Some("_web:1"), "y"));
    let long = endpoint_name(None, &"a".repeat(100));
    assert!(long.len() <= 64, "{long}");
    for n in [
        a,
        b,
        long,
        fallback_name(&id),
        fallback_name("abc"),
        endpoint_name(Some("..."), "x"),
    ] {
        crate::plan::valid_name("name", &n).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    assert_eq!(fallback_name("abc"), "cni-abc");
    assert_eq!(
        config::parse_owner(&config::owner_key("abc", "eth0")),
        Some(("abc", "eth0"))
    );
    assert_eq!(config::parse_owner("docker:x"), None);
}

fn attachment() -> Attachment {
    Attachment {
        ifname: "eth0".into(),
        mac: "02:42:0a:01:00:02".into(),
        sandbox: "/run/netns/x".into(),
        mtu: 1500,
        ip: Ipv4Addr::new(10, 1, 0, 2),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        default_route: true,
        ip6: None,
        gateway6: None,
        default_route6: false,
        dns: Dns::from_resolv_conf("nameserver 127.0.0.11\noptions ndots:0\n"),
    }
}

#[test]
fn results_take_each_versions_shape() {
    let a = attachment();
    let r040 = result::build(Version::V040, &a, None);
    assert_eq!(
        r040,
        json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "02:42:0a:01:00:02", "sandbox": "/run/netns/x"}],
            "ips": [{"version": "4", "address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
            "dns": {"nameservers": ["127.0.0.11"], "options": ["ndots:0"]}
        })
    );
    let r100 = result::build(Version::V100, &a, None);
    assert_eq!(r100["cniVersion"], "1.0.0");
    assert!(
        r100["ips"][0].get("version").is_none(),
        "1.0.0 has no ip version"
    );
    assert!(r100["interfaces"][0].get("mtu").is_none());
    let r110 = result::build(Version::V110, &a, None);
    assert_eq!(r110["interfaces"][0]["mtu"], 1500);
    let no_route = Attachment {
        default_route: false,
        ..attachment()
    };
    assert_eq!(
        result::build(Version::V100, &no_route, None)["routes"],
        json!([])
    );
}

fn dual() -> Attachment {
    Attachment {
        ip6: Some(("fd00:1::2".parse().unwrap(), 64)),
        gateway6: Some("fd00:1::1".parse().unwrap()),
        default_route6: true,
        ..attachment()
    }
}

#[test]
fn a_dual_stack_result_has_both_addresses_and_both_default_routes() {
    let r040 = result::build(Version::V040, &dual(), None);
    assert_eq!(
        (&r040["ips"], &r040["routes"]),
        (
            &json!([
                {"version": "4", "address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0},
                {"version": "6", "address": "fd00:1::2/64", "gateway": "fd00:1::1", "interface": 0}
            ]),
            &json!([
                {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                {"dst": "::/0", "gw": "fd00:1::1"}
            ])
        )
    );
    let r100 = result::build(Version::V100, &dual(), None);
    assert_eq!(
        r100["ips"][1],
        json!({"address": "fd00:1::2/64", "gateway": "fd00:1::1", "interface": 0})
    );
    // An internal network (no IPv6 default route) and a namespace whose default route is
    // another network's.
    let internal = Attachment {
        default_route6: false,
        ..dual()
    };
    assert_eq!(
        result::build(Version::V100, &internal, None)["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}])
    );
    let second = Attachment {
        default_route: false,
        default_route6: false,
        ..dual()
    };
    assert_eq!(
        result::build(Version::V100, &second, None)["routes"],
        json!([])
    );
}

#[test]
fn a_prev_result_comes_first_and_indexes_shift() {
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "192.168.9.2/24", "interface": 0}],
        "routes": [{"dst": "192.168.0.0/16"}],
        "dns": {"nameservers": ["192.168.9.1", "127.0.0.11"], "domain": "lan"}
    });
    let r = result::build(Version::V100, &attachment(), Some(&prev));
    assert_eq!(r["interfaces"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["ips"][1]["interface"], 1);
    assert_eq!(r["ips"][1]["address"], "10.1.0.2/24");
    assert_eq!(r["routes"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        r["dns"]["nameservers"],
        json!(["127.0.0.11", "192.168.9.1"])
    );
    assert_eq!(r["dns"]["domain"], "lan");
}

fn observed() -> Observed {
    Observed {
        present: true,
        up: true,
        mac: "02:42:0a:01:00:02".into(),
        addrs: vec![(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)), 24)],
        routes: vec![
            ("10.1.0.0/24".into(), None),
            (
                "0.0.0.0/0".into(),
                Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1))),
            ),
        ],
    }
}

#[test]
fn check_passes_when_all_is_as_add_left_it_and_names_each_difference() {
    let prev = result::build(Version::V040, &attachment(), None);
    let ok = |seen: &Observed| {
        result::check(
            &prev,
            "eth0",
            "/run/netns/x",
            &["10.1.0.2"],
            "02:42:0a:01:00:02",
            seen,
        )
    };
    assert_eq!(ok(&observed()), Vec::<String>::new());

    let mut s = observed();
    s.addrs.clear();
    s.routes.pop();
    s.up = false;
    let p = ok(&s);
    assert!(p.iter().any(|x| x.contains("down")), "{p:?}");
    assert!(p.iter().any(|x| x.contains("lacks 10.1.0.2/24")), "{p:?}");
    assert!(
        p.iter().any(|x| x.contains("0.0.0.0/0 via 10.1.0.1")),
        "{p:?}"
    );
    let p = ok(&Observed::default());
    assert_eq!(p, vec!["eth0 is missing from /run/netns/x".to_string()]);
    let p = result::check(
        &prev,
        "eth1",
        "/run/netns/x",
        &["10.1.0.2"],
        "02:42:0a:01:00:02",
        &observed(),
    );
    assert!(p[0].contains("no interface eth1"), "{p:?}");
    let p = result::check(
        &prev,
        "eth0",
        "/run/netns/x",
        &["10.1.0.3"],
        "02:42:0a:01:00:02",
        &observed(),
    );
    assert!(
        p.iter()
            .any(|x| x.contains("daemon's endpoint has 10.1.0.3")),
        "{p:?}"
    );
}

/// [`observed`] on a dual-stack network: the IPv6 address, and the default route the
/// gateway's Router Advertisements gave (via its link-local address).
fn observed_dual() -> Observed {
    let mut seen = observed();
    seen.addrs.push(("fd00:1::2".parse().unwrap(), 64));
    seen.routes.push(("fd00:1::/64".into(), None));
    seen.routes
        .push(("::/0".into(), Some("fe80::42:aff:fe01:1".parse().unwrap())));
    seen
}

#[test]
fn check_compares_the_ipv6_address_too() {
    let prev = result::build(Version::V100, &dual(), None);
    let seen = observed_dual();
    let run = |seen: &Observed, ips: &[&str]| {
        result::check(
            &prev,
            "eth0",
            "/run/netns/x",
            ips,
            "02:42:0a:01:00:02",
            seen,
        )
    };
    assert_eq!(run(&seen, &["10.1.0.2", "fd00:1::2"]), Vec::<String>::new());
    let mut lacking = seen.clone();
    lacking.addrs.pop();
    let p = run(&lacking, &["10.1.0.2", "fd00:1::2"]);
    assert_eq!(p, vec!["eth0 lacks fd00:1::2/64".to_string()]);
    let p = run(&seen, &["10.1.0.2", "fd00:1::3"]);
    assert!(
        p.iter()
            .any(|x| x.contains("daemon's endpoint has 10.1.0.2, fd00:1::3")),
        "{p:?}"
    );
}

#[test]
fn check_wants_the_ipv6_default_route_via_the_gateway_or_its_link_local_address() {
    let check = |a: &Attachment, seen: &Observed| {
        let prev = result::build(Version::V100, a, None);
        result::check(
            &prev,
            "eth0",
            "/run/netns/x",
            &["10.1.0.2", "fd00:1::2"],
            "02:42:0a:01:00:02",
            seen,
        )
    };
    let with_route6 = |gw: Option<&str>| {
        let mut seen = observed_dual();
        seen.routes.retain(|(d, _)| d != "::/0");
        if let Some(gw) = gw {
            seen.routes.push(("::/0".into(), Some(gw.parse().unwrap())));
        }
        seen
    };
    // Learned from the gateway's Router Advertisements, or set via gateway6 (a macvlan LAN).
    assert_eq!(
        check(&dual(), &with_route6(Some("fe80::1"))),
        Vec::<String>::new()
    );
    assert_eq!(
        check(&dual(), &with_route6(Some("fd00:1::1"))),
        Vec::<String>::new()
    );
    let missing = vec!["the route to ::/0 via fd00:1::1 is missing".to_string()];
    assert_eq!(check(&dual(), &with_route6(None)), missing);
    // Another global next hop is not the gateway.
    assert_eq!(check(&dual(), &with_route6(Some("fd00:1::9"))), missing);
    // An internal network's result lists no IPv6 default route: none is wanted.
    let internal = Attachment {
        default_route6: false,
        ..dual()
    };
    assert_eq!(check(&internal, &with_route6(None)), Vec::<String>::new());
}

#[test]
fn the_daemons_refusals_name_the_runtimes_field() {
    use axum::http::StatusCode;
    use netyard_api::model::ApiError;
    use netyard_cli::ClientError;
    let api = |field: Option<&str>, status: StatusCode| {
        ClientError::Api(
            ApiError {
                error: "why".into(),
                field: field.map(str::to_string),
            },
            status,
        )
    };
    let cases = [
        (
            Some("netns"),
            StatusCode::BAD_REQUEST,
            Code::UnknownContainer,
            "CNI_NETNS",
        ),
        (
            Some("ifname"),
            StatusCode::BAD_REQUEST,
            Code::InvalidEnvironment,
            "CNI_IFNAME",
        ),
        (
            Some("ip"),
            StatusCode::CONFLICT,
            Code::Refused,
            "runtimeConfig.ips",
        ),
        (
            Some("ip6"),
            StatusCode::BAD_REQUEST,
            Code::Refused,
            "runtimeConfig.ips",
        ),
        (
            Some("mac"),
            StatusCode::BAD_REQUEST,
            Code::Refused,
            "runtimeConfig.mac",
        ),
        (
            Some("publish[1]"),
            StatusCode::CONFLICT,
            Code::Refused,
            "runtimeConfig.portMappings[1]",
        ),
        (
            Some("aliases[0]"),
            StatusCode::BAD_REQUEST,
            Code::InvalidConfig,
            "runtimeConfig.aliases[0]",
        ),
        (
            Some("subnet"),
            StatusCode::BAD_REQUEST,
            Code::InvalidConfig,
            "subnet",
        ),
        (
            Some("subnet"),
            StatusCode::CONFLICT,
            Code::Refused,
            "subnet",
        ),
        (
            None,
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::IoFailure,
            "refused",
        ),
    ];
    for (field, status, code, named) in cases {
        let e = CniError::from_daemon("ADD", &api(field, status));
        assert_eq!(e.code, code, "{field:?} {status}: {e}");
        assert!(e.msg.contains(named), "{field:?}: {e}");
        assert_eq!(e.details, "why");
    }
    let gone = ClientError::Connect {
        path: "/x.sock".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    assert_eq!(
        CniError::from_daemon("DEL", &gone).code,
        Code::TryAgainLater
    );
}
