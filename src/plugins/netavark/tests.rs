//! The plugin's pure parts: JSON in, netyard requests and the status block out, and every
//! field error naming its JSON path.

use std::collections::BTreeMap;

use netyard_api::model::{Counters, EndpointInfo, NetworkInfo};
use netyard_api::portspec;

use super::types::{Network, PluginExec, PortMapping, StatusBlock};
use super::*;

/// A setup input of the shape netavark sends (its test/500-plugin.bats and plugin-API.md).
const SETUP: &str = r#"{
  "container_id": "0123456789abcdef0123",
  "container_name": "web1",
  "port_mappings": [{"container_port": 80, "host_ip": "", "host_port": 8080, "protocol": "tcp", "range": 1}],
  "network": {
    "name": "lab", "id": "f00d", "driver": "netyard", "network_interface": "",
    "ipv6_enabled": false, "internal": false, "dns_enabled": true,
    "subnets": [{"subnet": "10.90.3.0/24", "gateway": "10.90.3.1", "lease_range": null}],
    "options": {"api": "/run/ny.sock", "mtu": "1400"},
    "ipam_options": {"driver": "host-local"},
    "network_dns_servers": null
  },
  "network_options": {
    "aliases": ["web1", "0123456789ab", "www"], "interface_name": "eth1",
    "static_ips": ["10.90.3.7"], "static_mac": "02:00:00:00:00:07", "options": null
  }
}"#;

fn exec() -> PluginExec {
    parse("network options", SETUP.as_bytes()).expect("the sample parses")
}

fn field(e: PluginError) -> String {
    match e {
        PluginError::Field { field, .. } => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

fn net_info() -> NetworkInfo {
    // From JSON, so fields the API gains later take their defaults here too.
    serde_json::from_value(serde_json::json!({
        "name": "lab", "subnet": "10.90.3.0/24", "gateway": "10.90.3.1", "mtu": 1400,
        "internal": false, "aging": 300, "max_macs_per_port": 1024, "endpoints": [],
    }))
    .expect("a NetworkInfo")
}

#[test]
fn a_network_config_maps_to_a_network_create_with_its_options() {
    let p = network_plan(&exec().network, "network.").unwrap();
    assert_eq!(p.api.as_deref(), Some("/run/ny.sock"));
    assert_eq!(p.kind, "veth");
    assert_eq!(p.create.name, "lab");
    assert_eq!(p.create.subnet.as_deref(), Some("10.90.3.0/24"));
    assert_eq!(p.create.gateway.as_deref(), Some("10.90.3.1"));
    assert_eq!(p.create.mtu, Some(1400));
    assert!(!p.create.internal);

    let mut n = exec().network;
    n.subnets = None;
    n.internal = true;
    n.options = Some(BTreeMap::from([
        ("kind".into(), "tap".into()),
        ("host_loopback".into(), "false".into()),
        ("port_security".into(), "0".into()),
        ("aging".into(), "60".into()),
        ("max_macs_per_port".into(), "8".into()),
        ("max_flows".into(), "100".into()),
        ("max_flows_per_endpoint".into(), "10".into()),
    ]));
    let p = network_plan(&n, "").unwrap();
    assert_eq!((p.kind.as_str(), p.api), ("tap", None));
    assert_eq!(p.create.subnet, None, "no subnet: the daemon chooses one");
    assert!(p.create.internal);
    assert_eq!(p.create.port_security, Some(false));
    assert_eq!(p.create.aging, Some(60));
    assert_eq!(p.create.max_macs_per_port, Some(8));
    assert_eq!(p.create.max_flows, Some(100));
    assert_eq!(p.create.max_flows_per_endpoint, Some(10));
}

#[test]
fn network_field_errors_name_their_json_path() {
    let base = exec().network;
    let case = |f: &dyn Fn(&mut Network)| {
        let mut n = base.clone();
        f(&mut n);
        field(network_plan(&n, "network.").unwrap_err())
    };
    assert_eq!(
        case(&|n| n.subnets = Some(vec![parse("s", br#"{"subnet": "fd00::/64"}"#).unwrap()])),
        "network.subnets[0].subnet"
    );
    assert_eq!(
        case(&|n| {
            let s = n.subnets.clone().unwrap()[0].clone();
            n.subnets = Some(vec![s.clone(), s]);
        }),
        "network.subnets[1]"
    );
    assert_eq!(
        case(&|n| n.routes = Some(vec![serde_json::json!({"destination": "10.0.0.0/8"})])),
        "network.routes"
    );
    assert_eq!(
        case(&|n| n.network_dns_servers = Some(vec!["10.0.0.53".parse().unwrap()])),
        "network.network_dns_servers"
    );
    assert_eq!(
        case(&|n| n.ipam_options = Some(BTreeMap::from([("driver".into(), "dhcp".into())]))),
        "network.ipam_options.driver"
    );
    assert_eq!(case(&|n| n.name = "bad name".into()), "network.name");
    for (k, v) in [
        ("mtu", "big"),
        ("kind", "macvlan"),
        ("host_loopback", "maybe"),
        ("aging", "-1"),
        ("vlan", "5"),
    ] {
        let got = case(&|n| {
            n.options = Some(BTreeMap::from([(k.to_string(), v.to_string())]));
        });
        assert_eq!(got, format!("network.options.{k}"));
    }
}

#[test]
fn bad_json_names_the_path_of_the_field() {
    let bad = SETUP.replace(
        r#""static_ips": ["10.90.3.7"]"#,
        r#""static_ips": ["10.90.3.777"]"#,
    );
    let e = parse::<PluginExec>("x", bad.as_bytes()).unwrap_err();
    assert_eq!(field(e), "network_options.static_ips[0]");
    let missing = SETUP.replace(r#""interface_name": "eth1","#, "");
    let e = parse::<PluginExec>("x", missing.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("interface_name"), "{e}");
    let e = parse::<PluginExec>("network options", b"nope").unwrap_err();
    assert!(e.to_string().contains("network options"), "{e}");
}

#[test]
fn an_existing_network_must_match_the_config() {
    let p = network_plan(&exec().network, "").unwrap();
    check_existing(&p.create, &net_info(), "").unwrap();
    let mut other = net_info();
    other.subnet = "10.90.4.0/24".into();
    assert_eq!(
        field(check_existing(&p.create, &other, "").unwrap_err()),
        "subnets[0].subnet"
    );
    let mut other = net_info();
    other.gateway = "10.90.3.254".into();
    assert_eq!(
        field(check_existing(&p.create, &other, "").unwrap_err()),
        "subnets[0].gateway"
    );
    // A config without a subnet takes the network as the daemon has it.
    let mut n = exec().network;
    n.subnets = None;
    let p = network_plan(&n, "").unwrap();
    check_existing(&p.create, &other, "").unwrap();
}

#[test]
fn create_fills_the_daemons_choices_and_keeps_everything_else() {
    let input = r#"{"name": "lab", "id": "f00d", "driver": "netyard", "created": "2026-12-06T00:00:00Z",
        "labels": {"team": "a"}, "ipv6_enabled": false, "internal": false, "dns_enabled": true,
        "subnets": [{"subnet": "10.90.3.0/24", "lease_range": {"start_ip": "10.90.3.100", "end_ip": "10.90.3.200"}}],
        "options": {"api": "/run/ny.sock"}}"#;
    let net: Network = parse("network config", input.as_bytes()).unwrap();
    let out = completed(net.clone(), &net_info()).unwrap();
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["id"].as_str(), v["driver"].as_str()),
        (Some("lab"), Some("f00d"), Some("netyard"))
    );
    assert_eq!(v["created"], "2026-12-06T00:00:00Z");
    assert_eq!(v["labels"]["team"], "a");
    assert_eq!(v["subnets"][0]["subnet"], "10.90.3.0/24");
    assert_eq!(v["subnets"][0]["gateway"], "10.90.3.1");
    assert_eq!(v["subnets"][0]["lease_range"]["start_ip"], "10.90.3.100");
    assert_eq!(v["options"]["mtu"], "1400");
    assert_eq!(v["options"]["api"], "/run/ny.sock");
    assert_eq!(v["ipam_options"]["driver"], "host-local");
    assert_eq!(v["dns_enabled"], true);
    // netavark's own type reads it back: every field it requires is there.
    for k in [
        "dns_enabled",
        "driver",
        "id",
        "internal",
        "ipv6_enabled",
        "name",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
}

#[test]
fn setup_maps_the_container_to_an_attach_request() {
    let r = endpoint_request(&exec(), "/run/netns/c1", "veth").unwrap();
    assert_eq!(r.name, "web1");
    assert_eq!(r.netns.as_deref(), Some("/run/netns/c1"));
    assert_eq!(r.ifname.as_deref(), Some("eth1"));
    assert_eq!(r.ip.as_deref(), Some("10.90.3.7"));
    assert_eq!(r.mac.as_deref(), Some("02:00:00:00:00:07"));
    assert_eq!(r.kind.as_deref(), Some("veth"));
    assert_eq!(
        r.aliases,
        vec!["0123456789ab", "www"],
        "the own name is not an alias"
    );
    assert_eq!(r.publish, vec!["8080:80/tcp"]);
    assert_eq!(r.pid, None);
    assert_eq!(
        r.owner.as_deref(),
        Some("netavark:0123456789abcdef0123:lab")
    );

    // Without static addresses netyard's IPAM chooses.
    let mut e = exec();
    e.network_options.static_ips = None;
    e.network_options.static_mac = Some(String::new());
    let r = endpoint_request(&e, "/x", "tap").unwrap();
    assert_eq!((r.ip, r.mac), (None, None));

    // A name netyard cannot take: the short ID, as Podman shows it.
    let mut e = exec();
    e.container_name = "has space".into();
    assert_eq!(endpoint_name(&e).unwrap(), "0123456789ab");
}

#[test]
fn container_field_errors_name_their_json_path() {
    let case = |f: &dyn Fn(&mut PluginExec)| {
        let mut e = exec();
        f(&mut e);
        field(endpoint_request(&e, "/x", "veth").unwrap_err())
    };
    assert_eq!(
        case(&|e| e.network_options.interface_name.clear()),
        "network_options.interface_name"
    );
    assert_eq!(
        case(&|e| e.network_options.static_ips =
            Some(vec!["fd00::7".parse().unwrap(), "fd00::8".parse().unwrap()])),
        "network_options.static_ips[1]"
    );
    assert_eq!(
        case(&|e| e.network_options.static_ips = Some(vec![
            "10.90.3.7".parse().unwrap(),
            "10.90.3.8".parse().unwrap()
        ])),
        "network_options.static_ips[1]"
    );
    assert_eq!(
        case(&|e| e.network_options.options = Some(BTreeMap::from([("x".into(), "1".into())]))),
        "network_options.options.x"
    );
    assert_eq!(
        case(&|e| {
            e.container_name = "bad name".into();
            e.container_id = "bad id!".into();
        }),
        "container_name"
    );
}

fn pm(
    host_ip: &str,
    host_port: u16,
    container_port: u16,
    protocol: &str,
    range: u16,
) -> PortMapping {
    PortMapping {
        container_port,
        host_ip: host_ip.into(),
        host_port,
        protocol: protocol.into(),
        range,
    }
}

#[test]
fn port_mappings_become_docker_specs_netyard_parses() {
    let got = publish_specs(&[
        pm("", 8080, 80, "tcp", 1),
        pm("127.0.0.1", 5353, 53, "tcp,udp", 0),
        pm("::1", 9000, 90, "", 3),
        pm("", 0, 443, "TCP", 1),
        pm("10.0.0.1", 0, 22, "tcp", 1),
    ])
    .unwrap();
    assert_eq!(
        got,
        vec![
            "8080:80/tcp",
            "127.0.0.1:5353:53/tcp",
            "127.0.0.1:5353:53/udp",
            "[::1]:9000-9002:90-92/tcp",
            "443/tcp",
            "10.0.0.1::22/tcp",
        ]
    );
    for s in &got {
        portspec::parse(s).unwrap_or_else(|e| panic!("{s} does not parse: {e}"));
    }
    assert_eq!(portspec::parse(&got[3]).unwrap().count(), 3);
}

#[test]
fn port_mapping_errors_name_their_json_path() {
    let case = |m: PortMapping| field(publish_specs(&[pm("", 1, 1, "tcp", 1), m]).unwrap_err());
    assert_eq!(
        case(pm("", 8080, 80, "sctp", 1)),
        "port_mappings[1].protocol"
    );
    assert_eq!(
        case(pm("", 8080, 80, "tcp,", 1)),
        "port_mappings[1].protocol"
    );
    assert_eq!(
        case(pm("", 8080, 0, "tcp", 1)),
        "port_mappings[1].container_port"
    );
    assert_eq!(case(pm("", 65535, 80, "tcp", 2)), "port_mappings[1].range");
    assert_eq!(case(pm("", 80, 65535, "tcp", 2)), "port_mappings[1].range");
    assert_eq!(
        case(pm("localhost", 80, 80, "tcp", 1)),
        "port_mappings[1].host_ip"
    );
}

fn ep() -> EndpointInfo {
    serde_json::from_value(serde_json::json!({
        "name": "web1", "network": "lab", "kind": "veth", "ip": "10.90.3.7", "prefix_len": 24,
        "gateway": "10.90.3.1", "mac": "02:00:00:00:00:07", "ifname": "eth1",
        "netns": "/run/netns/c1", "offload": true, "port": 2, "counters": Counters::default(),
    }))
    .expect("an EndpointInfo")
}

#[test]
fn the_status_block_names_the_interface_its_address_and_the_gateway_as_dns_server() {
    let s = status_block(&ep(), true).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "dns_search_domains": [],
            "dns_server_ips": ["10.90.3.1"],
            "interfaces": {"eth1": {
                "mac_address": "02:00:00:00:00:07",
                "subnets": [{"ipnet": "10.90.3.7/24", "gateway": "10.90.3.1"}]
            }}
        })
    );
    // It reads back as netavark's type does.
    let back: StatusBlock = parse("status", v.to_string().as_bytes()).unwrap();
    assert_eq!(back, s);
    // DNS off (podman network create --disable-dns): the host's servers stay.
    let s = status_block(&ep(), false).unwrap();
    assert_eq!(s.dns_server_ips, Some(vec![]));
}

#[test]
fn a_dual_stack_podman_network_maps_to_ipv6_and_back() {
    let mut n = exec().network;
    n.ipv6_enabled = true;
    n.subnets = Some(vec![
        parse(
            "s",
            br#"{"subnet": "10.90.3.0/24", "gateway": "10.90.3.1"}"#,
        )
        .unwrap(),
        parse(
            "s",
            br#"{"subnet": "fd00:ab::/64", "gateway": "fd00:ab::1"}"#,
        )
        .unwrap(),
    ]);
    let p = network_plan(&n, "network.").unwrap();
    assert!(p.create.ipv6);
    assert_eq!(p.create.subnet6.as_deref(), Some("fd00:ab::/64"));
    assert_eq!(p.create.gateway6.as_deref(), Some("fd00:ab::1"));
    // A second IPv6 prefix, an IPv4 gateway on it, an IPv6 prefix without ipv6_enabled.
    let mut bad = n.clone();
    bad.subnets
        .as_mut()
        .unwrap()
        .push(parse("s", br#"{"subnet": "fd00:cd::/64"}"#).unwrap());
    assert_eq!(
        field(network_plan(&bad, "network.").unwrap_err()),
        "network.subnets[2]"
    );
    let mut bad = n.clone();
    bad.subnets.as_mut().unwrap()[1].gateway = Some("10.0.0.1".parse().unwrap());
    assert_eq!(
        field(network_plan(&bad, "network.").unwrap_err()),
        "network.subnets[1].gateway"
    );
    let mut bad = n.clone();
    bad.ipv6_enabled = false;
    assert_eq!(
        field(network_plan(&bad, "network.").unwrap_err()),
        "network.subnets[1].subnet"
    );
    // The daemon's answer fills the IPv6 prefix back in.
    let mut info = net_info();
    info.subnet6 = Some("fd00:ab::/64".into());
    info.gateway6 = Some("fd00:ab::1".into());
    check_existing(&p.create, &info, "network.").unwrap();
    let done = completed(n.clone(), &info).unwrap();
    assert!(done.ipv6_enabled);
    let subs = done.subnets.unwrap();
    assert_eq!(subs[1].subnet.to_string(), "fd00:ab::/64");
    // An existing IPv4-only network does not match an IPv6 request.
    assert_eq!(
        field(check_existing(&p.create, &net_info(), "network.").unwrap_err()),
        "network.ipv6_enabled"
    );
    // A container's IPv6 address, and the status block listing it.
    let mut e = exec();
    e.network = n;
    e.network_options.static_ips = Some(vec![
        "10.90.3.7".parse().unwrap(),
        "fd00:ab::7".parse().unwrap(),
    ]);
    let req = endpoint_request(&e, "/x", "veth").unwrap();
    assert_eq!(req.ip6.as_deref(), Some("fd00:ab::7"));
    let mut ep = ep();
    ep.ip6 = Some("fd00:ab::7".into());
    ep.prefix_len6 = Some(64);
    ep.gateway6 = Some("fd00:ab::1".into());
    let v = serde_json::to_value(status_block(&ep, true).unwrap()).unwrap();
    assert_eq!(
        v["interfaces"]["eth1"]["subnets"][1],
        serde_json::json!({"ipnet": "fd00:ab::7/64", "gateway": "fd00:ab::1"})
    );
}
