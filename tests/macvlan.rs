//! macvlan networks end to end, in real namespaces: the daemon in a test-made "host"
//! namespace whose interface `lan0` (a veth) is the parent; its peer is a port of a kernel
//! bridge in a "lan" namespace, which holds the LAN's router address (the bridge itself) and
//! a LAN host in a namespace of its own on another bridge port. The dual-stack test gives the
//! LAN a prefix of 2001:db8::/32 too (router ::1, host ::50).
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
    /// The namespace of the LAN's bridge `br0`, which is also the LAN's router.
    router: String,
    server: String,
}

const PARENT: &str = "lan0";

/// `ip -n NS ARGS`, which must succeed.
fn ip(ns: &str, args: &[&str]) -> String {
    cmd_ok(&[&["ip", "-n", ns], args].concat())
}

fn lan(lab: &Lab) -> Lan {
    let sub = Subnet::random();
    let l = lab.ns("l");
    let server = lab.ns("s");
    let host = lab.host.name.as_str();
    ip(&l, &["link", "add", "br0", "type", "bridge"]);
    ip(
        &l,
        &["addr", "add", &format!("{}/24", sub.ip(1)), "dev", "br0"],
    );
    ip(&l, &["link", "set", "br0", "up"]);
    // The host's interface on the LAN, with an address of its own as a real host has.
    veth_from(host, PARENT, &format!("{}/24", sub.ip(254)), &l, "lanup");
    ip(&l, &["link", "set", "lanup", "master", "br0", "up"]);
    ip(
        &l,
        &[
            "link", "add", "lanp", "type", "veth", "peer", "name", "eth0", "netns", &server,
        ],
    );
    ip(&l, &["link", "set", "lanp", "master", "br0", "up"]);
    ip(
        &server,
        &["addr", "add", &format!("{}/24", sub.ip(50)), "dev", "eth0"],
    );
    ip(&server, &["link", "set", "eth0", "up"]);
    Lan {
        sub,
        router: l,
        server,
    }
}

/// The LAN's IPv6 prefix, a random /64 of 2001:db8::/32.
struct Prefix6(String);

impl Prefix6 {
    fn cidr(&self) -> String {
        format!("{}/64", self.0)
    }

    fn ip(&self, host: u16) -> String {
        format!("{}{host:x}", self.0)
    }
}

/// Gives the LAN IPv6: the prefix on the router's bridge (::1) and the LAN host (::50),
/// without duplicate address detection so both answer at once.
fn lan6(l: &Lan) -> Prefix6 {
    let p = Prefix6(format!("2001:db8:{:x}::", rand::random::<u16>() | 1));
    for (ns, dev, host) in [(&l.router, "br0", 1), (&l.server, "eth0", 0x50)] {
        enable_ipv6(ns);
        let cidr = format!("{}/64", p.ip(host));
        ip(ns, &["-6", "addr", "add", &cidr, "dev", dev, "nodad"]);
    }
    p
}

/// `network create NAME -d macvlan --parent PARENT --subnet CIDR EXTRA...`.
fn macvlan_args<'a>(
    name: &'a str,
    parent: &'a str,
    cidr: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "network", "create", name, "-d", "macvlan", "--parent", parent, "--subnet", cidr,
    ];
    a.extend_from_slice(extra);
    a
}

/// The MAC `ip neigh` of `ns` holds for `addr` (lowercase), if any.
fn neigh_mac(ns: &str, addr: &str) -> Option<String> {
    let out = ip(ns, &["-j", "neigh", "show", addr]);
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array()?
        .iter()
        .find_map(|n| n["lladdr"].as_str().map(str::to_lowercase))
}

fn stats_row(lab: &Lab, net: &str, endpoint: &str) -> Value {
    lab.counters(net, endpoint)
}

/// `dig +short` at the embedded resolver of `ns`, for `query` (a name, or a type and a name).
fn dig_short(lab: &Lab, ns: &str, query: &[&str]) -> String {
    let mut argv = vec!["dig", "+short", "+time=2", "+tries=2", "@127.0.0.11"];
    argv.extend_from_slice(query);
    let o = lab.ns_cmd(ns, &argv, Duration::from_secs(20));
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

/// The networks and endpoints, to check that a refused request changed neither.
fn snapshot(lab: &Lab) -> (Vec<String>, Vec<String>) {
    (network_names(lab), endpoint_names(lab))
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
    let out = lab.ny_ok(&macvlan_args(
        &net,
        PARENT,
        &cidr,
        &["--gateway", &gw, "--ip-range", &range],
    ));
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
    let routes = ip(&n1, &["-4", "route", "show", "default"]);
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
    assert_eq!(dig_short(&lab, &n1, &["c2"]), ip2, "c1 resolving c2");
    assert_eq!(dig_short(&lab, &n2, &["c1"]), ip1, "c2 resolving c1");

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
    let before = snapshot(&lab);
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
    let bad = |parent: &str, extra: &[&str]| lab.ny(&macvlan_args("mvbad", parent, &ocidr, extra));
    let o = bad("nosuch0", &["--gateway", &ogw]);
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
    ip(
        &lab.host.name,
        &[
            "link", "add", "down0", "type", "veth", "peer", "name", "down1",
        ],
    );
    let o = bad("down0", &[]);
    assert_one_line_error("parent down", &o, &["parent", "down0", "down"]);
    let o = bad("down0", &["--internal"]);
    assert_one_line_error("internal macvlan", &o, &["internal", "macvlan"]);
    let o = bad("down0", &["--icc=false"]);
    assert_one_line_error("icc on macvlan", &o, &["icc", "macvlan"]);
    let o = lab.ny(&["network", "create", "mvbad", "-d", "ipvlan"]);
    assert_one_line_error("unknown driver", &o, &["driver", "ipvlan"]);
    assert_eq!(
        snapshot(&lab),
        before,
        "a refused request changed the networks or endpoints"
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
        dig_short(&lab, &n1, &["c2"]),
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
    let out = ip(ns, &["-d", "-j", "link", "show", "dev", ifname]);
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
    let o = lab.ny(&macvlan_args(&net, PARENT, &cidr, &["--gateway", &gw]));
    assert_one_line_error("no CAP_NET_RAW", &o, &["parent", "CAP_NET_RAW", PARENT]);
    assert!(
        network_names(&lab).is_empty(),
        "the refused network exists anyway"
    );
}

/// Sends three Router Advertisements from `ifname` (python3, a raw ICMPv6 socket; the kernel
/// sums it): router lifetime 1800 s and the /64 `prefix` on-link and autonomous (L=1, A=1),
/// as a home router's RAs are, which would give every listening host a SLAAC address.
const SEND_RA: &str = r#"
import socket, struct, sys, time
ifname, prefix = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
pio = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0)
pio += socket.inet_pton(socket.AF_INET6, prefix)
for _ in range(3):
    s.sendto(ra + pio, ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))
    time.sleep(0.2)
"#;

/// The default IPv6 routes of `ns`.
fn default6(ns: &str) -> String {
    ip(ns, &["-6", "route", "show", "default"])
}

/// IPv6 on a macvlan network (issue 15): the LAN's prefix and router given at create, an
/// address each (IPAM and --ip6) with the LAN's router as default route, ping -6 with the LAN
/// and between the containers, TCP over IPv6 both ways with the LAN host, AAAA, the LAN
/// router's RAs taken for routes but never for a second address, bad input, a restart.
#[test]
fn containers_on_a_dual_stack_macvlan_network_speak_ipv6_with_the_lan() {
    require_program("ping", "iputils-ping");
    require_program("socat", "socat");
    require_program("python3", "python3");
    require_program("dig", "dnsutils");
    let mut lab = Lab::new();
    let l = lan(&lab);
    let p6 = lan6(&l);
    let net = format!("mv6{}", lab.id);
    let (cidr, gw) = (l.sub.cidr(), l.sub.ip(1));
    let (subnet6, gw6, lan_host6) = (p6.cidr(), p6.ip(1), p6.ip(0x50));

    // Bad input names the field and creates nothing: the LAN's prefix is required (a random
    // ULA would be routed by nobody there), the router must be inside it.
    let before = snapshot(&lab);
    let o = lab.ny(&macvlan_args(&net, PARENT, &cidr, &["--ipv6"]));
    assert_one_line_error("--ipv6 without --subnet6", &o, &["subnet6", "missing"]);
    let outside = format!("2001:db8:{:x}::1", rand::random::<u16>() & 0xfffe);
    let o = lab.ny(&macvlan_args(
        &net,
        PARENT,
        &cidr,
        &["--ipv6", "--subnet6", &subnet6, "--gateway6", &outside],
    ));
    assert_one_line_error("--gateway6 outside the prefix", &o, &["gateway6", &subnet6]);
    assert_eq!(snapshot(&lab), before, "a refused create changed something");

    lab.ny_ok(&macvlan_args(
        &net,
        PARENT,
        &cidr,
        &[
            "--gateway",
            &gw,
            "--ipv6",
            "--subnet6",
            &subnet6,
            "--gateway6",
            &gw6,
        ],
    ));
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["subnet6"], subnet6.as_str(), "{info}");
    assert_eq!(info["gateway6"], gw6.as_str(), "{info}");
    assert!(
        info["gateway6_link_local"].is_null(),
        "a macvlan network has no netyard gateway: {info}"
    );

    let (n1, n2) = (lab.ns("c1"), lab.ns("c2"));
    for ns in [&n1, &n2] {
        enable_ipv6(ns);
    }
    let c1 = lab.attach(&net, &n1, "c1", &[]);
    let c2 = lab.attach(&net, &n2, "c2", &["--kind", "veth", "--ip6", &p6.ip(0x99)]);
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_lowercase();
    let (ip1, ip2) = (text(&c1, "ip6"), text(&c2, "ip6"));
    assert_eq!(
        (ip1.as_str(), ip2.as_str()),
        (p6.ip(2).as_str(), p6.ip(0x99).as_str())
    );
    // Each has exactly its address, usable at once (no DAD, as on bridge networks), IPv6
    // address autoconfiguration off, and the LAN's router as its IPv6 default route.
    let check_addresses = |lab: &Lab, when: &str| {
        for (ns, ip6) in [(&n1, &ip1), (&n2, &ip2)] {
            let (addrs, tentative) = global6(ns, "eth0");
            if addrs != [format!("{ip6}/64")] || tentative {
                lab.fail(&format!(
                    "{when}: {ns} should hold exactly {ip6}/64, not tentative: {addrs:?} \
                     tentative={tentative}"
                ));
            }
            let routes = default6(ns);
            if !routes.contains(&format!("default via {gw6} dev eth0")) {
                lab.fail(&format!("{when}: {ns}'s IPv6 default route: {routes}"));
            }
        }
    };
    check_addresses(&lab, "after attach");
    let autoconf = ns_sh(
        &n1,
        "cat /proc/sys/net/ipv6/conf/eth0/autoconf",
        Duration::from_secs(10),
    );
    assert_eq!(
        String::from_utf8_lossy(&autoconf.stdout).trim(),
        "0",
        "c1's autoconf"
    );

    // ping -6: the LAN host, the LAN's router, each other; the LAN host reaches both at their
    // own MACs (its neighbour solicitations crossed the uplink to their solicited-node groups).
    assert_ping6(&lab, &n1, &lan_host6);
    assert_ping6(&lab, &n2, &gw6);
    assert_ping6(&lab, &n1, &ip2);
    assert_ping6(&lab, &n2, &ip1);
    assert_ping6(&lab, &l.server, &ip1);
    assert_ping6(&lab, &l.server, &ip2);
    for (ip6, ep) in [(&ip1, &c1), (&ip2, &c2)] {
        assert_eq!(
            neigh_mac(&l.server, ip6),
            Some(text(ep, "mac")),
            "the LAN host's neighbour entry for {ip6}"
        );
    }
    assert_eq!(
        dig_short(&lab, &n1, &["AAAA", "c2"]),
        ip2,
        "c1 resolving c2's AAAA"
    );

    // TCP over IPv6 with the LAN host, both ways (the uplink passes the containers' TCPv6
    // super-frames whole to the parent).
    sha_transfer(&lab, &n1, &l.server, &format!("[{lan_host6}]"), 32 << 20);
    sha_transfer(&lab, &l.server, &n2, &format!("[{ip2}]"), 32 << 20);

    // The LAN's router advertises the prefix as autonomous: the containers take its route
    // (proof that the RA reached them) but no SLAAC address beside netyard's.
    let br0_ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        !ip(
            &l.router,
            &[
                "-6",
                "addr",
                "show",
                "dev",
                "br0",
                "scope",
                "link",
                "-tentative",
            ],
        )
        .trim()
        .is_empty()
    });
    assert!(br0_ready, "br0 never got a usable link-local address");
    let script = lab.write_file("send_ra.py", SEND_RA);
    py_ok(&lab, &l.router, &script, &["br0", &p6.0]);
    for ns in [&n1, &n2] {
        if !wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            default6(ns).contains("proto ra")
        }) {
            lab.fail(&format!(
                "{ns} never took the LAN router's RA: {}",
                default6(ns)
            ));
        }
    }
    check_addresses(&lab, "after the LAN router's RA");

    // An address outside the prefix is refused naming the field; nothing changes.
    let before = snapshot(&lab);
    let n3 = lab.ns("c3");
    let p3 = format!("/run/netns/{n3}");
    let o = lab.ny(&[
        "attach", &net, "--netns", &p3, "--name", "c3", "--ip6", &outside,
    ]);
    assert_one_line_error("--ip6 outside the prefix", &o, &["ip6", &subnet6]);
    assert_eq!(snapshot(&lab), before, "a refused attach changed something");
    assert!(
        link_json(&n3, "eth0").is_none(),
        "the refused attach left an interface in {n3}"
    );

    // A restart keeps the addresses and the routes, and IPv6 works again both ways.
    let status = lab.stop_daemon();
    assert!(status.success(), "daemon stop: {status}");
    lab.start_daemon(&[]);
    assert_eq!(
        text(&lab.endpoint(&net, "c1"), "ip6"),
        ip1,
        "c1 after the restart"
    );
    assert_eq!(
        text(&lab.endpoint(&net, "c2"), "ip6"),
        ip2,
        "c2 after the restart"
    );
    check_addresses(&lab, "after the restart");
    assert_ping6(&lab, &n1, &lan_host6);
    assert_ping6(&lab, &l.server, &ip2);
    assert_ping6(&lab, &n2, &ip1);
}
