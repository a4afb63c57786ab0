//! The lab file's parsing, validation and plan, without a daemon.

use super::file::{parse, Issue};
use super::plan::plan;

const GOOD: &str = r#"
name = "t1"
[networks.lan]
subnet = "10.30.1.0/24"
mtu = 1400
icc = true
[networks.wan]
subnet = "10.30.2.0/24"
internal = true
[nodes.web]
command = "nc -lk -p 80 -e echo hi"
networks = [
  { network = "lan", ip = "10.30.1.10", publish = ["8080:80"] },
  { network = "wan", ip = "10.30.2.10", aliases = ["www"] },
]
routes = [{ to = "10.40.0.0/16", via = "10.30.2.1" }]
[nodes.r]
command = ["sleep", "infinity"]
restart = "never"
sysctls = { "net.ipv4.ip_forward" = 1 }
networks = [{ network = "wan", trusted = true, kind = "veth" }]
[[links]]
network = "wan"
node = "r"
delay = "20ms"
loss = "1%"
direction = "both"
"#;

fn issues(text: &str) -> Vec<Issue> {
    let lab = parse(text, false).expect("parses");
    plan(&lab, "x.toml").expect_err("should be refused")
}

fn paths(text: &str) -> Vec<String> {
    issues(text).into_iter().map(|i| i.path).collect()
}

#[test]
fn a_good_file_plans_networks_nodes_interfaces_routes_and_links_in_order() {
    let lab = parse(GOOD, false).expect("parse");
    let p = plan(&lab, "dir/whatever.toml").expect("plan");
    assert_eq!(p.name, "t1");
    let nets: Vec<_> = p
        .networks
        .iter()
        .map(|n| (n.name.as_str(), n.subnet.as_deref(), n.mtu, n.internal))
        .collect();
    assert_eq!(
        nets,
        vec![
            ("lan", Some("10.30.1.0/24"), Some(1400), false),
            ("wan", Some("10.30.2.0/24"), None, true)
        ]
    );
    let nodes: Vec<_> = p
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.command.clone(), n.restart.clone()))
        .collect();
    assert_eq!(
        nodes,
        vec![
            (
                "r",
                vec!["sleep".to_string(), "infinity".into()],
                Some("never".to_string())
            ),
            (
                "web",
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "nc -lk -p 80 -e echo hi".into()
                ],
                None
            ),
        ]
    );
    assert_eq!(
        p.nodes[0]
            .sysctls
            .get("net.ipv4.ip_forward")
            .map(String::as_str),
        Some("1")
    );
    assert!(p.nodes.iter().all(|n| n.lab.as_deref() == Some("t1")));
    let att: Vec<_> = p
        .attaches
        .iter()
        .map(|a| {
            (
                a.network.as_str(),
                a.endpoint.name.as_str(),
                a.endpoint.ifname.as_deref(),
                a.endpoint.ip.as_deref(),
                a.endpoint.trusted,
                a.endpoint.kind.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        att,
        vec![
            ("wan", "r", Some("eth0"), None, true, Some("veth")),
            (
                "lan",
                "web",
                Some("eth0"),
                Some("10.30.1.10"),
                false,
                Some("tap")
            ),
            (
                "wan",
                "web",
                Some("eth1"),
                Some("10.30.2.10"),
                false,
                Some("tap")
            ),
        ]
    );
    assert_eq!(p.attaches[1].endpoint.publish, vec!["8080:80".to_string()]);
    assert_eq!(p.attaches[2].endpoint.aliases, vec!["www".to_string()]);
    assert!(
        p.attaches.iter().all(|a| a.endpoint.pid.is_none()),
        "pids come at apply time"
    );
    assert_eq!(p.routes.len(), 1);
    assert_eq!(
        (p.routes[0].0.as_str(), p.routes[0].1.via.as_str()),
        ("web", "10.30.2.1")
    );
    assert_eq!(p.links.len(), 1);
    assert_eq!(
        (p.links[0].network.as_str(), p.links[0].endpoint.as_str()),
        ("wan", "r")
    );
    assert_eq!(p.links[0].settings.delay.as_deref(), Some("20ms"));
}

#[test]
fn the_name_defaults_to_the_file_name() {
    let lab = parse("[networks.a]\n", false).expect("parse");
    assert_eq!(
        plan(&lab, "/x/y/wan-lab.yaml").expect("plan").name,
        "wan-lab"
    );
}

#[test]
fn an_unknown_network_is_named_by_its_path() {
    let p = paths(
        r#"
[networks.a]
[nodes.web]
networks = [{ network = "a" }, { network = "nope" }]
"#,
    );
    assert_eq!(p, vec!["nodes.web.networks[1].network"]);
}

#[test]
fn a_duplicate_address_names_both_places() {
    let i = issues(
        r#"
[networks.a]
subnet = "10.9.0.0/24"
[nodes.m]
networks = [{ network = "a", ip = "10.9.0.5" }]
[nodes.n]
networks = [{ network = "a", ip = "10.9.0.5" }]
"#,
    );
    assert_eq!(i.len(), 1, "{i:?}");
    assert_eq!(i[0].path, "nodes.n.networks[0].ip");
    assert!(
        i[0].reason.contains("nodes.m.networks[0].ip"),
        "{}",
        i[0].reason
    );
}

#[test]
fn addresses_outside_the_subnet_or_on_the_gateway_are_refused() {
    let p = paths(
        r#"
[networks.a]
subnet = "10.9.0.0/24"
[nodes.m]
networks = [{ network = "a", ip = "10.9.1.5" }]
[nodes.n]
networks = [{ network = "a", ip = "10.9.0.1" }]
[nodes.o]
networks = [{ network = "a", ip = "ten" }]
"#,
    );
    assert_eq!(
        p,
        vec![
            "nodes.m.networks[0].ip",
            "nodes.n.networks[0].ip",
            "nodes.o.networks[0].ip"
        ]
    );
}

#[test]
fn bad_link_values_name_the_link_and_the_field() {
    let i = issues(
        r#"
[networks.a]
[nodes.m]
networks = [{ network = "a" }]
[[links]]
network = "a"
node = "m"
delay = "20 parsecs"
loss = "150%"
rate = "10"
direction = "sideways"
"#,
    );
    let p: Vec<_> = i.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        p,
        vec![
            "links[0].direction",
            "links[0].delay",
            "links[0].loss",
            "links[0].rate"
        ]
    );
    assert!(i[1].reason.contains("parsecs"), "{}", i[1].reason);
}

#[test]
fn links_must_name_a_node_on_that_network() {
    let p = paths(
        r#"
[networks.a]
[networks.b]
[nodes.m]
networks = [{ network = "a" }]
[[links]]
network = "b"
node = "m"
[[links]]
network = "a"
node = "ghost"
[[links]]
network = "zz"
node = "m"
[[links]]
network = "a"
node = "vxlan"
"#,
    );
    assert_eq!(
        p,
        vec![
            "links[0].node",
            "links[1].node",
            "links[2].network",
            "links[3].node"
        ]
    );
}

#[test]
fn an_unknown_key_is_a_parse_error_at_its_path_in_toml_and_yaml() {
    let toml_err = parse(
        "[networks.a]\n[nodes.web]\nnetworks = [{ network = \"a\" }, { network = \"a\", ipp = \"1\" }]\n",
        false,
    )
    .expect_err("unknown key");
    assert!(
        toml_err.path.starts_with("nodes.web.networks[1]"),
        "{}",
        toml_err.path
    );
    assert!(toml_err.reason.contains("ipp"), "{}", toml_err.reason);
    let yaml_err = parse(
        "networks:\n  a: {}\nnodes:\n  web:\n    networks:\n      - network: a\n      - network: a\n        ipp: x\n",
        true,
    )
    .expect_err("unknown key");
    assert!(
        yaml_err.path.starts_with("nodes.web.networks[1]"),
        "{}",
        yaml_err.path
    );
    assert!(yaml_err.reason.contains("ipp"), "{}", yaml_err.reason);
    let top = parse("colour = 1\n", false).expect_err("unknown top key");
    assert!(top.reason.contains("colour"), "{}", top.reason);
}

#[test]
fn yaml_and_toml_read_to_the_same_lab() {
    let yaml = r#"
name: t1
networks:
  lan: { subnet: 10.30.1.0/24, mtu: 1400, icc: true }
  wan: { subnet: 10.30.2.0/24, internal: true }
nodes:
  web:
    command: nc -lk -p 80 -e echo hi
    networks:
      - { network: lan, ip: 10.30.1.10, publish: ["8080:80"] }
      - { network: wan, ip: 10.30.2.10, aliases: [www] }
    routes: [{ to: 10.40.0.0/16, via: 10.30.2.1 }]
  r:
    command: [sleep, infinity]
    restart: never
    sysctls: { net.ipv4.ip_forward: 1 }
    networks: [{ network: wan, trusted: true, kind: veth }]
links:
  - { network: wan, node: r, delay: 20ms, loss: 1%, direction: both }
"#;
    assert_eq!(
        parse(yaml, true).expect("yaml"),
        parse(GOOD, false).expect("toml")
    );
}

#[test]
fn names_sysctls_restart_routes_and_subnets_are_checked() {
    let p = paths(
        r#"
name = "bad name"
[networks."-x"]
[networks.a]
subnet = "10.1.0.0/24"
[networks.b]
subnet = "10.1.0.128/25"
[nodes.m]
restart = "sometimes"
sysctls = { "kernel.pid_max" = 1 }
networks = [{ network = "a" }, { network = "a" }]
routes = [{ to = "nowhere", via = "10.99.0.1" }]
"#,
    );
    assert_eq!(
        p,
        vec![
            "name",
            "networks.-x",
            "networks.b.subnet",
            "nodes.m.restart",
            "nodes.m.sysctls.kernel.pid_max",
            "nodes.m.networks[1].network",
            "nodes.m.routes[0].to",
            "nodes.m.routes[0].via",
        ]
    );
}

const ROUTED: &str = r#"
[networks.lan]
subnet = "10.50.1.0/24"
gateway_router = "r1"
[networks.core]
subnet = "10.50.2.0/24"
[networks.wan]
subnet = "10.50.3.0/24"
[routers.r1]
networks = [{ network = "lan" }, { network = "core", ip = "10.50.2.2" }]
routes = [{ prefix = "10.50.3.0/24", via = "10.50.2.3" }]
[routers.edge]
networks = [{ network = "core", ip = "10.50.2.3" }, { network = "wan" }]
nat = "wan"
routes = [{ to = "10.50.1.0/24", via = "10.50.2.2" }]
[nodes.h1]
networks = [{ network = "lan", ip = "10.50.1.2" }]
[nodes.far]
networks = [{ network = "wan", ip = "10.50.3.3" }]
[[links]]
network = "core"
node = "edge"
delay = "5ms"
"#;

#[test]
fn routers_plan_into_router_creates_with_addresses_nat_and_routes() {
    let lab = parse(ROUTED, false).expect("parse");
    let p = plan(&lab, "routed.toml").expect("plan");
    let rs: Vec<_> = p
        .routers
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.interfaces
                    .iter()
                    .map(|i| (i.network.clone(), i.ip.clone().unwrap_or_default()))
                    .collect::<Vec<_>>(),
                r.nat.clone(),
                r.routes
                    .iter()
                    .map(|x| (x.prefix.clone(), x.via.clone()))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        rs,
        vec![
            (
                "edge",
                // wan: .1 is the gateway, .3 is far's: .2 is picked.
                vec![s("core", "10.50.2.3"), s("wan", "10.50.3.2")],
                vec!["wan".to_string()],
                vec![s("10.50.1.0/24", "10.50.2.2")]
            ),
            (
                "r1",
                // lan: .2 is h1's, so the router gets .3.
                vec![s("lan", "10.50.1.3"), s("core", "10.50.2.2")],
                vec![],
                vec![s("10.50.3.0/24", "10.50.2.3")]
            ),
        ]
    );
    assert_eq!(p.gateway_routers, vec![s("lan", "r1")]);
    assert_eq!(p.links.len(), 1);
}

#[test]
fn router_errors_name_their_path() {
    let base = "[networks.a]\nsubnet = \"10.51.1.0/24\"\n[networks.b]\nsubnet = \"10.51.2.0/24\"\n[nodes.n]\nnetworks = [{ network = \"a\", ip = \"10.51.1.9\" }]\n";
    let cases = [
        (
            "[routers.r1]\nnetworks = [{ network = \"a\" }, { network = \"zz\" }]\n",
            "routers.r1.networks[1].network",
        ),
        (
            "[routers.r1]\nnetworks = [{ network = \"a\", ip = \"10.51.2.5\" }]\n",
            "routers.r1.networks[0].ip",
        ),
        (
            "[routers.r1]\nnetworks = [{ network = \"a\", ip = \"10.51.1.1\" }]\n",
            "routers.r1.networks[0].ip",
        ),
        (
            "[routers.r1]\nnetworks = [{ network = \"a\", ip = \"10.51.1.9\" }]\n",
            "nodes.n.networks[0].ip",
        ),
        (
            "[routers.r1]\nnetworks = [{ network = \"a\" }]\nnat = \"b\"\n",
            "routers.r1.nat",
        ),
        (
            "[routers.r1]\nnetworks = [{ network = \"a\" }]\nroutes = [{ prefix = \"10.9.0.0/33\", via = \"10.51.1.7\" }]\n",
            "routers.r1.routes[0].prefix",
        ),
        (
            "[routers.r1]\nnetworks = [{ network = \"a\" }]\nroutes = [{ prefix = \"10.9.0.0/16\", via = \"10.51.1.7\" }, { prefix = \"10.8.0.0/16\", via = \"10.51.2.7\" }]\n",
            "routers.r1.routes[1].via",
        ),
        ("[routers.n]\nnetworks = [{ network = \"a\" }]\n", "nodes.n"),
        ("[routers.r1]\nnetworks = []\n", "routers.r1.networks"),
    ];
    for (extra, want) in cases {
        let text = format!("{base}{extra}");
        assert_eq!(paths(&text), vec![want.to_string()], "{text}");
    }
    let gw = format!(
        "{}[routers.r1]\nnetworks = [{{ network = \"a\" }}]\n",
        base.replace("[networks.b]\n", "[networks.b]\ngateway_router = \"r1\"\n")
    );
    assert_eq!(paths(&gw), vec!["networks.b.gateway_router"]);
    let gw2 = base.replace("[networks.b]\n", "[networks.b]\ngateway_router = \"r9\"\n");
    assert_eq!(paths(&gw2), vec!["networks.b.gateway_router"]);
    let link = format!(
        "{base}[routers.r1]\nnetworks = [{{ network = \"a\" }}]\n[[links]]\nnetwork = \"b\"\nnode = \"r1\"\ndelay = \"1ms\"\n"
    );
    assert_eq!(paths(&link), vec!["links[0].node"]);
}

#[test]
fn every_example_lab_plans() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("examples/") {
        let path = e.expect("entry").path();
        let name = path.display().to_string();
        if !(name.ends_with(".toml") || name.ends_with(".yaml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lab =
            parse(&text, super::file::is_yaml(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        plan(&lab, &name).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        n += 1;
    }
    assert!(n >= 4, "only {n} example labs in {}", dir.display());
}
