//! Issue 18, routers between networks end to end: `netyard router create/ls/inspect/rm` and
//! `router route add/del` on a running daemon, checked with the real tools (ping,
//! traceroute, tcpdump, socat) between container namespaces.
//!
//! - a chain A-R1-B-R2-C-R3-D with static routes: ping end to end with the TTL down by
//!   three, traceroute from A shows R1, R2 and R3 by their arriving-side addresses, TTL 2
//!   gets time exceeded from R2, a prefix R2 has no route to gets net unreachable from R2;
//!   the endpoints got their routes through the routers (at attach, and when a router came);
//! - NAT on the edge router: the far side sees only the router's address (tcpdump) while
//!   ping and TCP work through it;
//! - a restart brings the routers back;
//! - bad input names the field and changes nothing;
//! - a container as router: an endpoint on two networks, `--trusted`, forwarding on.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// `ping -c 1 [-t TTL] ip` from `ns`: its output, whatever the outcome.
fn ping1(ns: &str, ip: &str, ttl: Option<u8>) -> String {
    let mut argv = vec!["ping", "-n", "-c", "1", "-W", "2"];
    let t = ttl.map(|t| t.to_string());
    if let Some(t) = &t {
        argv.extend(["-t", t.as_str()]);
    }
    argv.push(ip);
    let o = ns_cmd(ns, &argv, Duration::from_secs(20));
    show(&o)
}

/// The hop addresses `traceroute -n` prints, in order ("*" for a silent hop).
fn trace(ns: &str, ip: &str) -> (Vec<String>, String) {
    let o = ns_cmd(
        ns,
        &["traceroute", "-n", "-q", "1", "-w", "2", "-m", "8", ip],
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let hops = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    (hops, show(&o))
}

fn routes_of(ns: &str) -> String {
    cmd_ok(&["ip", "-n", ns, "-4", "route", "show"])
}

#[test]
fn a_chain_of_three_routers_routes_traces_answers_errors_and_masquerades() {
    require_program("traceroute", "traceroute");
    require_program("tcpdump", "tcpdump");
    require_program("socat", "socat");
    let mut lab = Lab::new();
    let [sa, sb, sc, sd, unrouted] = Subnet::distinct();
    let id = &lab.id;
    let (na, nb, nc, nd) = (
        format!("a{id}"),
        format!("b{id}"),
        format!("c{id}"),
        format!("d{id}"),
    );
    for (n, s) in [(&na, &sa), (&nb, &sb), (&nc, &sc), (&nd, &sd)] {
        lab.network(n, s, &[]);
    }
    let ns_a = lab.ns("a");
    let ns_d = lab.ns("d");
    // A's endpoint is attached before the routers exist (it gets their routes when they
    // come); D's after (it gets them at attach).
    lab.attach(&na, &ns_a, "ea", &["--ip", &sa.ip(10)]);

    // Bad input: each names its field, and nothing is created.
    let bad: [(&[&str], &str); 5] = [
        (&["--network", "nosuchnet"], "interfaces[0].network"),
        (
            &["--network", &format!("{na}={}", sb.ip(5))],
            "interfaces[0].ip",
        ),
        (
            &["--network", &format!("{na}={}", sa.ip(10))],
            "interfaces[0].ip",
        ),
        (
            &[
                "--network",
                &na,
                "--route",
                &format!("{}={}", unrouted.cidr(), sd.ip(9)),
            ],
            "routes[0].via",
        ),
        (&["--network", &na, "--nat", &nb], "nat[0]"),
    ];
    for (args, field) in bad {
        let mut a = vec!["router", "create", "rbad"];
        a.extend_from_slice(args);
        let o = lab.ny(&a);
        assert_one_line_error(&format!("router create {}", args.join(" ")), &o, &[field]);
    }
    let ls = lab.ny_json(&["router", "ls", "--json"]);
    assert_eq!(ls, Value::Array(vec![]), "a refused router left something");

    let (r1a, r1b) = (sa.ip(254), sb.ip(253));
    let (r2b, r2c) = (sb.ip(252), sc.ip(254));
    let (r3c, r3d) = (sc.ip(253), sd.ip(254));
    lab.ny_ok(&[
        "router",
        "create",
        "r1",
        "--network",
        &format!("{na}={r1a}"),
        "--network",
        &format!("{nb}={r1b}"),
        "--route",
        &format!("{}={r2b}", sc.cidr()),
        "--route",
        &format!("{}={r2b}", sd.cidr()),
        // R2 has no route there: its net unreachable is what A sees.
        "--route",
        &format!("{}={r2b}", unrouted.cidr()),
    ]);
    lab.ny_ok(&[
        "router",
        "create",
        "r2",
        "--network",
        &format!("{nb}={r2b}"),
        "--network",
        &format!("{nc}={r2c}"),
        "--route",
        &format!("{}={r1b}", sa.cidr()),
    ]);
    // R2's route to D added afterwards, through the route command.
    lab.ny_ok(&["router", "route", "add", "r2", &sd.cidr(), "via", &r3c]);
    lab.ny_ok(&[
        "router",
        "create",
        "r3",
        "--network",
        &format!("{nc}={r3c}"),
        "--network",
        &format!("{nd}={r3d}"),
        "--route",
        &format!("{}={r2c}", sa.cidr()),
        "--route",
        &format!("{}={r2c}", sb.cidr()),
    ]);
    // A duplicate router, and a route through an address on none of its networks.
    let o = lab.ny(&["router", "create", "r1", "--network", &nc]);
    assert_one_line_error("a second r1", &o, &["name", "already exists"]);
    let o = lab.ny(&[
        "router",
        "route",
        "add",
        "r1",
        "10.9.9.0/24",
        "via",
        &sd.ip(7),
    ]);
    assert_one_line_error("route via a stranger", &o, &["via"]);
    let o = lab.ny(&["network", "rm", &nb]);
    assert!(
        !o.status.success(),
        "a network with routers on it was removed"
    );

    lab.attach(&nd, &ns_d, "ed", &["--ip", &sd.ip(10)]);
    let ra = routes_of(&ns_a);
    for s in [&sb, &sc, &sd, &unrouted] {
        assert!(
            ra.contains(&format!("{} via {r1a}", s.cidr())),
            "A's endpoint lacks its route to {} through r1:\n{ra}",
            s.cidr()
        );
    }
    let rd = routes_of(&ns_d);
    assert!(
        rd.contains(&format!("{} via {r3d}", sa.cidr())),
        "D's endpoint lacks its route to A through r3:\n{rd}"
    );

    // Each router answers on each of its addresses.
    lab.assert_ping(&ns_a, &r1a);
    lab.assert_ping(&ns_a, &r1b);
    // End to end, three routers: the reply's TTL is 64 less three.
    let ed = sd.ip(10);
    let out = ping1(&ns_a, &ed, None);
    assert!(
        out.contains("ttl=61"),
        "ping A -> D through three routers:\n{out}"
    );
    let out = ping1(&ns_d, &sa.ip(10), None);
    assert!(out.contains("ttl=61"), "ping D -> A:\n{out}");

    let (hops, text) = trace(&ns_a, &ed);
    println!("traceroute A -> D:\n{text}");
    assert_eq!(
        hops,
        vec![r1a.clone(), r2b.clone(), r3c.clone(), ed.clone()],
        "traceroute shows each router by its arriving-side address:\n{text}"
    );
    let out = ping1(&ns_a, &ed, Some(2));
    assert!(
        out.contains(&format!("From {r2b}")) && out.contains("Time to live exceeded"),
        "TTL 2 dies at R2, which says so from its B address:\n{out}"
    );
    let out = ping1(&ns_a, &unrouted.ip(1), None);
    assert!(
        out.contains(&format!("From {r2b}")) && out.contains("Unreachable"),
        "R2 has no route to {}: net unreachable from R2:\n{out}",
        unrouted.cidr()
    );
    let r2 = lab.ny_json(&["router", "inspect", "r2"]);
    let on_b = &r2["interfaces"][0]["counters"];
    assert!(
        num(on_b, "ttl_exceeded") >= 1 && num(on_b, "no_route") >= 1,
        "{r2}"
    );
    assert!(
        num(&r2["interfaces"][1]["counters"], "forwarded") >= 2,
        "{r2}"
    );

    // NAT on the edge: R3 again, masquerading what leaves into D. D's endpoint no longer
    // needs (or gets) a route back to A.
    lab.ny_ok(&["router", "rm", "r3"]);
    let rd = routes_of(&ns_d);
    assert!(
        !rd.contains(&sa.cidr()),
        "router rm left D's route to A:\n{rd}"
    );
    lab.ny_ok(&[
        "router",
        "create",
        "r3",
        "--network",
        &format!("{nc}={r3c}"),
        "--network",
        &format!("{nd}={r3d}"),
        "--route",
        &format!("{}={r2c}", sa.cidr()),
        "--route",
        &format!("{}={r2c}", sb.cidr()),
        "--nat",
        &nd,
    ]);
    let rd = routes_of(&ns_d);
    assert!(
        !rd.contains(&sa.cidr()),
        "a NAT interface's network got routes to the inside:\n{rd}"
    );
    let dump = tcpdump_bg(&ns_d, "eth0", &["icmp or tcp"], &lab.dir.join("d.pcap.txt"));
    lab.assert_ping(&ns_a, &ed);
    let port = 20000 + (rand::random::<u16>() % 20000);
    let got = lab.dir.join("tcp.recv");
    lab.bg_in(
        &ns_d,
        &[
            "sh",
            "-c",
            &format!(
                "exec socat -u TCP-LISTEN:{port},bind={ed},reuseaddr OPEN:{},creat",
                got.display()
            ),
        ],
        "socat.log",
    );
    std::thread::sleep(Duration::from_millis(300));
    let o = ns_cmd(
        &ns_a,
        &[
            "sh",
            "-c",
            &format!("echo through-the-nat | socat -u STDIN TCP:{ed}:{port},connect-timeout=5"),
        ],
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "TCP through the NAT:\n{}", show(&o));
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        std::fs::read_to_string(&got).is_ok_and(|s| s.contains("through-the-nat"))
    });
    assert!(ok, "the TCP data did not arrive through the NAT");
    std::thread::sleep(Duration::from_millis(500));
    let seen = dump.log_text();
    println!("tcpdump at D:\n{seen}");
    assert!(
        seen.contains(&r3d),
        "tcpdump at D saw no NAT traffic:\n{seen}"
    );
    let inside = format!("10.{}.{}.", sa.a, sa.b);
    assert!(
        !seen.contains(&inside),
        "an inside address of A ({inside}x) reached D through the NAT:\n{seen}"
    );
    let r3 = lab.ny_json(&["router", "inspect", "r3"]);
    let on_d = &r3["interfaces"][1]["counters"];
    assert!(
        num(on_d, "nat_out") >= 3 && num(on_d, "nat_new") >= 2,
        "{r3}"
    );
    assert!(
        num(&r3["interfaces"][1]["counters"], "nat_in")
            + num(&r3["interfaces"][0]["counters"], "nat_in")
            >= 3,
        "{r3}"
    );
    let stats = lab.ny_json(&["stats", "--json"]);
    assert!(
        stats.as_array().is_some_and(|a| a
            .iter()
            .any(|r| r["endpoint"] == "r3" && r["kind"] == "router")),
        "stats lists the router's ports: {stats}"
    );

    // A restart brings the routers back, routes and NAT included.
    lab.stop_daemon();
    lab.start_daemon(&[]);
    let ls = lab.ny_json(&["router", "ls", "--json"]);
    let names: Vec<&str> = ls
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["r1", "r2", "r3"], "{ls}");
    assert_eq!(ls[1]["routes"].as_array().map(Vec::len), Some(2), "{ls}");
    assert_eq!(ls[2]["interfaces"][1]["nat"], true, "{ls}");
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(&ns_a, &ed)
    });
    assert!(
        ok,
        "no ping through the restored routers:\n{}",
        lab.diagnostics()
    );

    for r in ["r1", "r2", "r3"] {
        lab.ny_ok(&["router", "rm", r]);
    }
    let ra = routes_of(&ns_a);
    assert!(
        !ra.contains(&r1a),
        "router rm left A's routes through r1:\n{ra}"
    );
    let o = lab.ny(&["router", "rm", "r1"]);
    assert!(!o.status.success(), "removing r1 twice succeeded");
}

#[test]
fn a_container_is_a_router_with_trusted_ports_and_forwarding_on() {
    let lab = Lab::new();
    let sa = Subnet::random();
    let sb = sa.other();
    let id = &lab.id;
    let (na, nb) = (format!("a{id}"), format!("b{id}"));
    lab.network(&na, &sa, &[]);
    lab.network(&nb, &sb, &[]);
    let (ns_a, ns_r, ns_b) = (lab.ns("a"), lab.ns("r"), lab.ns("b"));
    lab.attach(&na, &ns_a, "ha", &["--ip", &sa.ip(10)]);
    lab.attach(&nb, &ns_b, "hb", &["--ip", &sb.ip(10)]);
    lab.attach(&na, &ns_r, "rt", &["--ip", &sa.ip(2), "--trusted"]);
    lab.attach(
        &nb,
        &ns_r,
        "rt",
        &["--ip", &sb.ip(2), "--trusted", "--ifname", "eth1"],
    );
    cmd_ok(&[
        "ip",
        "netns",
        "exec",
        &ns_r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    cmd_ok(&[
        "ip",
        "-n",
        &ns_a,
        "route",
        "add",
        &sb.cidr(),
        "via",
        &sa.ip(2),
    ]);
    cmd_ok(&[
        "ip",
        "-n",
        &ns_b,
        "route",
        "add",
        &sa.cidr(),
        "via",
        &sb.ip(2),
    ]);
    let out = ping1(&ns_a, &sb.ip(10), None);
    assert!(
        out.contains("ttl=63"),
        "A -> B through the container router (its kernel decrements the TTL):\n{out}"
    );
}
