//! macvlan networks end to end, in real namespaces: the daemon in a test-made "host"
//! namespace whose interface `lan0` (a veth) is the parent; its peer is a port of a kernel
//! bridge in a "lan" namespace, which holds the LAN's router address (the bridge itself) and
//! a LAN host in a namespace of its own on another bridge port.
//!
//! ```text
//!  host ns (daemon)           lan ns                          server ns
//!  lan0 .254 ===veth=== lanup -- br0 (.1, the LAN's router) -- lanp ===veth=== eth0 .50
//!   ^ uplink (AF_PACKET)
//!  c1 (TAP), c2 (veth) on the macvlan network: .2, .3 (or from --ip-range)
//! ```

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The LAN: the lan and server namespaces and the parent `lan0` in the host namespace.
struct Lan {
    sub: Subnet,
    server: String,
}

const PARENT: &str = "lan0";

fn lan(lab: &Lab) -> Lan {
    let sub = Subnet::random();
    let l = lab.ns("l");
    let server = lab.ns("s");
    let host = lab.host.name.as_str();
    cmd_ok(&["ip", "-n", &l, "link", "add", "br0", "type", "bridge"]);
    cmd_ok(&[
        "ip",
        "-n",
        &l,
        "addr",
        "add",
        &format!("{}/24", sub.ip(1)),
        "dev",
        "br0",
    ]);
    cmd_ok(&["ip", "-n", &l, "link", "set", "br0", "up"]);
    // The host's interface on the LAN, with an address of its own as a real host has.
    veth_from(host, PARENT, &format!("{}/24", sub.ip(254)), &l, "lanup");
    cmd_ok(&[
        "ip", "-n", &l, "link", "set", "lanup", "master", "br0", "up",
    ]);
    cmd_ok(&[
        "ip", "-n", &l, "link", "add", "lanp", "type", "veth", "peer", "name", "eth0", "netns",
        &server,
    ]);
    cmd_ok(&["ip", "-n", &l, "link", "set", "lanp", "master", "br0", "up"]);
    cmd_ok(&[
        "ip",
        "-n",
        &server,
        "addr",
        "add",
        &format!("{}/24", sub.ip(50)),
        "dev",
        "eth0",
    ]);
    cmd_ok(&["ip", "-n", &server, "link", "set", "eth0", "up"]);
    Lan { sub, server }
}

fn create_args<'a>(name: &'a str, cidr: &'a str, gw: &'a str) -> Vec<&'a str> {
    vec![
        "network",
        "create",
        name,
        "-d",
        "macvlan",
        "--parent",
        PARENT,
        "--subnet",
        cidr,
        "--gateway",
        gw,
    ]
}

/// The MAC `ip neigh` of `ns` holds for `ip` (lowercase), if any.
fn neigh_mac(ns: &str, ip: &str) -> Option<String> {
    let out = cmd_ok(&["ip", "-n", ns, "-j", "neigh", "show", ip]);
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array()?
        .iter()
        .find_map(|n| n["lladdr"].as_str().map(str::to_lowercase))
}

fn stats_row(lab: &Lab, net: &str, endpoint: &str) -> Value {
    lab.counters(net, endpoint)
}

fn dig_short(lab: &Lab, ns: &str, name: &str) -> String {
    let o = lab.ns_cmd(
        ns,
        &["dig", "+short", "+time=2", "+tries=2", "@127.0.0.11", name],
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Networks as `network ls --json` lists them, by name.
fn network_names(lab: &Lab) -> Vec<String> {
    let v = lab.ny_json(&["network", "ls", "--json"]);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn endpoint_names(lab: &Lab) -> Vec<String> {
    let v = lab.ny_json(&["ps", "--json"]);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything a user does with a macvlan network, then a restart.
#[test]
fn containers_on_a_macvlan_network_are_hosts_of_the_lan() {
    require_program("dig", "dnsutils");
    let mut lab = Lab::new();
    let l = lan(&lab);
    let net = format!("mv{}", lab.id);
    let cidr = l.sub.cidr();
    let gw = l.sub.ip(1);
    let range = format!("10.{}.{}.128/25", l.sub.a, l.sub.b);
    let mut a = create_args(&net, &cidr, &gw);
    a.extend(["--ip-range", &range]);
    let out = lab.ny_ok(&a);
    assert!(out.contains("macvlan on lan0"), "create printed: {out}");

    // inspect: driver, parent, range, the note that the host cannot reach the containers.
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["driver"], "macvlan", "{info}");
    assert_eq!(info["parent"], PARENT, "{info}");
    assert_eq!(info["ip_range"], range.as_str(), "{info}");
    assert_eq!(info["gateway"], gw.as_str(), "{info}");
    let note = info["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("host itself cannot reach them through lan0"),
        "inspect's note: {info}"
    );
    assert!(
        promiscuous(&lab.host.name, PARENT),
        "the uplink left {PARENT} not promiscuous"
    );
    let ls = lab.ny_ok(&["network", "ls"]);
    assert!(
        ls.lines().next().unwrap_or_default().contains("DRIVER")
            && ls
                .lines()
                .any(|r| r.contains(&net) && r.contains("macvlan")),
        "network ls:\n{ls}"
    );

    let (n1, n2) = (lab.ns("c1"), lab.ns("c2"));
    let c1 = lab.attach(&net, &n1, "c1", &[]);
    let c2 = lab.attach(&net, &n2, "c2", &["--kind", "veth"]);
    let ip1 = c1["ip"].as_str().unwrap_or_default().to_string();
    let ip2 = c2["ip"].as_str().unwrap_or_default().to_string();
    let mac1 = c1["mac"].as_str().unwrap_or_default().to_lowercase();
    let mac2 = c2["mac"].as_str().unwrap_or_default().to_lowercase();
    let first = format!("10.{}.{}.128", l.sub.a, l.sub.b);
    let second = format!("10.{}.{}.129", l.sub.a, l.sub.b);
    assert_eq!(
        (ip1.as_str(), ip2.as_str()),
        (first.as_str(), second.as_str())
    );
    // The default route is the LAN's router, not netyard's.
    let routes = cmd_ok(&["ip", "-n", &n1, "-4", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via {gw}")),
        "c1's default route: {routes}"
    );

    // Containers reach the LAN host and the LAN's router directly, and each other.
    lab.assert_ping(&n1, &l.sub.ip(50));
    lab.assert_ping(&n2, &gw);
    lab.assert_ping(&n1, &ip2);
    // The LAN host reaches each container at its own MAC.
    lab.assert_ping(&l.server, &ip1);
    lab.assert_ping(&l.server, &ip2);
    assert_eq!(
        neigh_mac(&l.server, &ip1).as_deref(),
        Some(mac1.as_str()),
        "the LAN host's neighbour entry for c1"
    );
    assert_eq!(
        neigh_mac(&l.server, &ip2).as_deref(),
        Some(mac2.as_str()),
        "the LAN host's neighbour entry for c2"
    );

    // Names resolve through 127.0.0.11 inside the containers.
    assert_eq!(dig_short(&lab, &n1, "c2"), ip2, "c1 resolving c2");
    assert_eq!(dig_short(&lab, &n2, "c1"), ip1, "c2 resolving c1");

    // The host cannot reach a container through the parent (as with Docker's macvlan) ...
    assert!(
        !lab.ping(&lab.host.name, &ip1),
        "the host namespace reached c1 through the parent; a macvlan network cannot"
    );
    // ... while its own traffic with the LAN works and never floods into the containers:
    // the uplink sees the replies to the host's MAC and refuses them.
    let before = drops(&stats_row(&lab, &net, "(uplink)"), "uplink_not_ours");
    let c1_tx_before = num(&stats_row(&lab, &net, "c1"), "tx_packets");
    lab.assert_ping(&lab.host.name, &l.sub.ip(50));
    let after = drops(&stats_row(&lab, &net, "(uplink)"), "uplink_not_ours");
    let c1_tx_after = num(&stats_row(&lab, &net, "c1"), "tx_packets");
    assert!(
        after >= before + 3,
        "the uplink refused {} of the LAN host's 3 replies to the host (uplink_not_ours \
         {before} -> {after})",
        after - before
    );
    assert!(
        c1_tx_after < c1_tx_before + 3,
        "frames of the host's pings reached c1 (its port sent {c1_tx_before} -> {c1_tx_after})"
    );

    // Bad input names the field and changes nothing.
    let nets = network_names(&lab);
    let eps = endpoint_names(&lab);
    let n3 = lab.ns("c3");
    let p3 = format!("/run/netns/{n3}");
    let o = lab.ny(&[
        "attach", &net, "--netns", &p3, "--name", "c3", "-p", "8080:80",
    ]);
    assert_one_line_error("-p on macvlan", &o, &["publish", "macvlan"]);
    let o = lab.ny(&["publish", &net, "c1", "8080:80"]);
    assert_one_line_error("publish on macvlan", &o, &["publish", "macvlan"]);
    let other = l.sub.other();
    let (ocidr, ogw) = (other.cidr(), other.ip(1));
    let o = lab.ny(&[
        "network",
        "create",
        "mvbad",
        "-d",
        "macvlan",
        "--parent",
        "nosuch0",
        "--subnet",
        &ocidr,
        "--gateway",
        &ogw,
    ]);
    assert_one_line_error("missing parent", &o, &["parent", "nosuch0"]);
    let o = lab.ny(&[
        "network", "create", "mvbad", "-d", "macvlan", "--subnet", &ocidr,
    ]);
    assert_one_line_error("no parent", &o, &["parent", "missing"]);
    let o = lab.ny(&[
        "network",
        "create",
        "mvbad",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        &ocidr,
        "--gateway",
        &ogw,
    ]);
    assert_one_line_error("parent in use", &o, &["parent", &net]);
    let o = lab.ny(&[
        "network",
        "create",
        "mvbad",
        "--subnet",
        &ocidr,
        "--ip-range",
        "10.9.9.0/28",
    ]);
    assert_one_line_error(
        "ip-range outside the subnet",
        &o,
        &["ip_range", "not inside"],
    );
    // A new veth pair is down until set up.
    cmd_ok(&[
        "ip",
        "-n",
        &lab.host.name,
        "link",
        "add",
        "down0",
        "type",
        "veth",
        "peer",
        "name",
        "down1",
    ]);
    let o = lab.ny(&[
        "network", "create", "mvbad", "-d", "macvlan", "--parent", "down0", "--subnet", &ocidr,
    ]);
    assert_one_line_error("parent down", &o, &["parent", "down0", "down"]);
    let o = lab.ny(&[
        "network",
        "create",
        "mvbad",
        "-d",
        "macvlan",
        "--parent",
        "down0",
        "--subnet",
        &ocidr,
        "--internal",
    ]);
    assert_one_line_error("internal macvlan", &o, &["internal", "macvlan"]);
    let o = lab.ny(&[
        "network",
        "create",
        "mvbad",
        "-d",
        "macvlan",
        "--parent",
        "down0",
        "--subnet",
        &ocidr,
        "--icc=false",
    ]);
    assert_one_line_error("icc on macvlan", &o, &["icc", "macvlan"]);
    let o = lab.ny(&["network", "create", "mvbad", "-d", "ipvlan"]);
    assert_one_line_error("unknown driver", &o, &["driver", "ipvlan"]);
    assert_eq!(
        network_names(&lab),
        nets,
        "a refused request changed the networks"
    );
    assert_eq!(
        endpoint_names(&lab),
        eps,
        "a refused request changed the endpoints"
    );

    // A restart re-adopts the network: the uplink is opened again and everything works.
    let status = lab.stop_daemon();
    assert!(status.success(), "daemon stop: {status}");
    lab.start_daemon(&[]);
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["driver"], "macvlan", "after the restart: {info}");
    assert_eq!(info["parent"], PARENT, "after the restart: {info}");
    lab.assert_ping(&n1, &l.sub.ip(50));
    lab.assert_ping(&l.server, &ip2);
    lab.assert_ping(&n2, &ip1);
    assert_eq!(
        dig_short(&lab, &n1, "c2"),
        ip2,
        "c1 resolving c2 after the restart"
    );

    // Teardown: detach both, remove the network; the parent stays and leaves promiscuous
    // mode with the socket.
    lab.ny_ok(&["detach", &net, "c1"]);
    lab.ny_ok(&["detach", &net, "c2"]);
    lab.ny_ok(&["network", "rm", &net]);
    assert!(
        gone_soon(|| !promiscuous(&lab.host.name, PARENT)),
        "{PARENT} is still promiscuous after network rm"
    );
    assert!(
        link_json(&lab.host.name, PARENT).is_some(),
        "network rm removed the parent interface"
    );
}

/// Whether `ifname` of `ns` is promiscuous: its promiscuity count (`ip -d link`; a packet
/// socket's membership counts there, not in the flags `ip link` shows, which are the user's).
fn promiscuous(ns: &str, ifname: &str) -> bool {
    let out = cmd_ok(&["ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["promiscuity"].as_u64().unwrap_or(0) > 0
}

/// A daemon without CAP_NET_RAW cannot open the uplink: refused, naming the capability and
/// the interface, nothing created.
#[test]
fn a_daemon_without_cap_net_raw_is_refused_naming_it() {
    require_program("setpriv", "util-linux");
    let lab = Lab::bare();
    let l = lan(&lab);
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name])
        .args(["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"])
        .arg(NETYARD)
        .arg("daemon")
        .arg("--api")
        .arg(&lab.api)
        .arg("--state-dir")
        .arg(lab.dir.join("state"))
        .env("NETYARD_LOG", "info")
        .env("NO_COLOR", "1");
    let bg = Bg::spawn(&mut c, &lab.dir.join("daemon.log"));
    lab.keep(bg);
    let api = lab.api.clone();
    if !wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        std::os::unix::net::UnixStream::connect(&api).is_ok()
    }) {
        lab.fail("the daemon without CAP_NET_RAW did not serve its API within 15 s");
    }
    let net = format!("mv{}", lab.id);
    let (cidr, gw) = (l.sub.cidr(), l.sub.ip(1));
    let o = lab.ny(&create_args(&net, &cidr, &gw));
    assert_one_line_error("no CAP_NET_RAW", &o, &["parent", "CAP_NET_RAW", PARENT]);
    assert!(
        network_names(&lab).is_empty(),
        "the refused network exists anyway"
    );
}
