//! Issue 18, labs end to end: `netyard lab up/down/ls/graph` with the example labs of
//! examples/ on one local (ephemeral) daemon, `netyard exec` in the nodes, `capture NETWORK
//! ENDPOINT -w -` read by tcpdump, and lab files with errors that create nothing.
//!
//! Each example: after `up` the nodes reach each other as the example says (exec ping and
//! socat), `graph` renders in the three formats, `down` leaves no network, endpoint, node,
//! holder process or lab record behind.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::vtep::{kernel_vtep, underlay};
use common::*;
use serde_json::Value;

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

/// A lab with an ephemeral daemon: its nodes end with it whatever the test does.
fn new_lab() -> Lab {
    require_program("socat", "socat");
    let mut lab = Lab::bare();
    lab.start_daemon(&["--ephemeral"]);
    lab
}

/// Runs `lab down NAME` when dropped (a failing test leaves nothing either).
struct Down<'a>(&'a Lab, String);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.ny(&["lab", "down", &self.1]);
    }
}

/// `lab up FILE`; returns the holder pids of the lab's nodes.
fn up<'a>(lab: &'a Lab, file: &str, name: &str) -> (Down<'a>, Vec<u32>) {
    lab.ny_ok(&["lab", "up", file]);
    up_listed(lab, name)
}

/// The lab `name` as `lab ls` lists it: complete, every node running; returns its holder pids.
fn up_listed<'a>(lab: &'a Lab, name: &str) -> (Down<'a>, Vec<u32>) {
    let guard = Down(lab, name.to_string());
    let ls = lab.ny_json(&["lab", "ls", "--json"]);
    let me = ls
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| lab.fail(&format!("lab {name} not listed: {ls}")));
    assert_eq!(me["complete"], true, "{me}");
    let pids: Vec<u32> = me["node_details"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    assert_eq!(n["running"], true, "{n}");
                    num(n, "pid") as u32
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        pids.len(),
        me["nodes"].as_array().map(Vec::len).unwrap_or(0),
        "{me}"
    );
    (guard, pids)
}

fn exec(lab: &Lab, node: &str, argv: &[&str]) -> std::process::Output {
    let mut a = vec!["exec", node, "--"];
    a.extend_from_slice(argv);
    lab.ny(&a)
}

fn exec_ok(lab: &Lab, node: &str, argv: &[&str]) -> String {
    let o = exec(lab, node, argv);
    if !o.status.success() {
        lab.fail(&format!("exec {node} {argv:?} failed:\n{}", show(&o)));
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A TCP request through socat, tried a few times (a lossy link may eat the handshake).
fn fetch(lab: &Lab, node: &str, target: &str) -> String {
    let addr = format!("TCP:{target}");
    for _ in 0..5 {
        let o = exec(lab, node, &["socat", "-T", "5", "-", &addr]);
        if o.status.success() && !o.stdout.is_empty() {
            return String::from_utf8_lossy(&o.stdout).trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    lab.fail(&format!("{node} could not fetch from {target}"));
}

fn graphs(lab: &Lab, file: &str, nodes: &[&str]) {
    let dot = lab.ny_ok(&["lab", "graph", file]);
    let mermaid = lab.ny_ok(&["lab", "graph", file, "--format", "mermaid"]);
    let svg = lab.ny_ok(&["lab", "graph", file, "--format", "svg"]);
    assert!(dot.starts_with("graph "), "{dot}");
    assert!(mermaid.starts_with("graph LR"), "{mermaid}");
    assert!(
        svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    for n in nodes {
        assert!(dot.contains(&format!("label=\"{n}\"")), "{n} not in\n{dot}");
        assert!(
            mermaid.contains(&format!("\"{n}\"")),
            "{n} not in\n{mermaid}"
        );
        assert!(svg.contains(&format!(">{n}</text>")), "{n} not in\n{svg}");
    }
}

/// `lab down` removed everything: no lab, node, network or endpoint, no holder process.
fn down_leaves_nothing(lab: &Lab, name: &str, pids: &[u32], guard: Down<'_>) {
    lab.ny_ok(&["lab", "down", name]);
    std::mem::forget(guard);
    for (what, path) in [
        ("labs", "lab ls"),
        ("networks", "network ls"),
        ("endpoints", "ps"),
        ("routers", "router ls"),
    ] {
        let mut args: Vec<&str> = path.split(' ').collect();
        args.push("--json");
        let v = lab.ny_json(&args);
        assert_eq!(v.as_array().map(Vec::len), Some(0), "{what} left: {v}");
    }
    for p in pids {
        assert!(
            gone_soon(|| !process_alive(*p)),
            "node process {p} still exists"
        );
    }
    let o = lab.ny(&["lab", "down", name]);
    assert!(
        !o.status.success(),
        "a second down should fail: {}",
        show(&o)
    );
}

#[test]
fn three_router_chain_forwards_through_each_router() {
    require_program("traceroute", "traceroute");
    let lab = new_lab();
    let file = example("three-router-chain.toml");
    let (guard, pids) = up(&lab, &file, "chain");
    assert_eq!(pids.len(), 5);
    // Three routers: the reply's TTL is 64 less three.
    let out = exec_ok(&lab, "h1", &["ping", "-c", "2", "-W", "5", "10.61.4.10"]);
    assert!(out.contains("ttl=61"), "{out}");
    let back = exec_ok(&lab, "h2", &["ping", "-c", "1", "-W", "5", "10.61.1.10"]);
    assert!(back.contains("ttl=61"), "{back}");
    let t = exec_ok(
        &lab,
        "h1",
        &["traceroute", "-n", "-q", "1", "-w", "2", "10.61.4.10"],
    );
    println!("{t}");
    for hop in ["10.61.1.2", "10.61.2.3", "10.61.3.4"] {
        assert!(t.contains(hop), "{hop} not in\n{t}");
    }
    // The routers are trusted (they send other hosts' addresses), the hosts are not.
    let ps = lab.ny_json(&["ps", "--json"]);
    let r1 = find_endpoint(&ps, "b", "r1").expect("r1 on b");
    assert_eq!(r1["port_security"], false, "{r1}");
    graphs(&lab, &file, &["h1", "r1", "r2", "r3", "h2"]);
    down_leaves_nothing(&lab, "chain", &pids, guard);
}

/// The routed lab: netyard routers r1, r2 and edge (NAT on wan) between h1 and far, lan's
/// gateway router r1. h1 reaches far through its default route alone (nothing announces wan
/// to it), traceroute shows each router, far sees only edge's address; `network update
/// --gateway-router` refuses bad input and moves h1's default route both ways; `router rm`
/// refuses the gateway router; `lab down` leaves no router.
#[test]
fn routed_lab_with_netyard_routers_nat_and_a_gateway_router() {
    require_program("tcpdump", "tcpdump");
    require_program("traceroute", "traceroute");
    let lab = new_lab();
    let file = example("routed-lab.toml");
    let (guard, pids) = up(&lab, &file, "routed");
    assert_eq!(pids.len(), 2);
    let routers = lab.ny_json(&["router", "ls", "--json"]);
    assert_eq!(routers.as_array().map(Vec::len), Some(3), "{routers}");
    // h1's default route is r1's address on lan; no route to wan was added by anyone.
    let routes = exec_ok(&lab, "h1", &["ip", "-4", "route"]);
    println!("h1's routes:\n{routes}");
    assert!(routes.contains("default via 10.67.1.254"), "{routes}");
    assert!(!routes.contains("10.67.4.0/24"), "{routes}");
    // Three routers: far's reply arrives with TTL 64 - 3.
    let out = exec_ok(&lab, "h1", &["ping", "-c", "2", "-W", "5", "10.67.4.10"]);
    assert!(out.contains("ttl=61"), "{out}");
    let t = exec_ok(
        &lab,
        "h1",
        &["traceroute", "-n", "-I", "-q", "1", "-w", "2", "10.67.4.10"],
    );
    println!("{t}");
    // The hop lines ("1  10.67.1.254  0.1 ms"; the header goes to stderr or is skipped).
    let hops: Vec<&str> = t
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .collect();
    for (i, hop) in ["10.67.1.254", "10.67.2.12", "10.67.3.13", "10.67.4.10"]
        .iter()
        .enumerate()
    {
        assert!(
            hops.get(i).is_some_and(|l| l.contains(hop)),
            "hop {} should be {hop}:\n{t}",
            i + 1
        );
    }
    // NAT on edge: far sees edge's wan address, never h1's.
    let seen = fetch(&lab, "h1", "10.67.4.10:7000");
    assert_eq!(
        seen, "hello 10.67.4.13",
        "far saw the connection from {seen}"
    );
    let api = lab.api.to_string_lossy();
    let mut cap = tcpdump_bg_under(
        &[NETYARD, "--api", &api, "exec", "far", "--"],
        "eth0",
        &["-c", "4", "icmp"],
        &lab.dir.join("far-tcpdump.txt"),
    );
    exec_ok(&lab, "h1", &["ping", "-c", "2", "-W", "5", "10.67.4.10"]);
    assert!(
        cap.wait(Duration::from_secs(20)).is_some(),
        "tcpdump saw fewer than 4 ICMP packets"
    );
    let txt = cap.log_text();
    println!("{txt}");
    assert!(txt.contains("10.67.4.13 > 10.67.4.10"), "{txt}");
    assert!(
        !txt.contains("10.67.1.10"),
        "h1's address reached far:\n{txt}"
    );
    // Bad input names the field and changes nothing.
    for (net, router, want) in [
        ("lan", "nope", "no router named \"nope\""),
        ("core", "edge", "no interface on network \"core\""),
    ] {
        let o = lab.ny(&["network", "update", net, "--gateway-router", router]);
        assert!(!o.status.success(), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("gateway_router") && err.contains(want),
            "{err}"
        );
    }
    let lan = lab.ny_json(&["network", "inspect", "lan"]);
    assert_eq!(lan["gateway_router"], "r1", "{lan}");
    assert_eq!(lan["gateway_router_ip"], "10.67.1.254", "{lan}");
    let core = lab.ny_json(&["network", "inspect", "core"]);
    assert!(core["gateway_router"].is_null(), "{core}");
    // The gateway router may not go while it is one.
    let o = lab.ny(&["router", "rm", "r1"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lan"),
        "{}",
        show(&o)
    );
    // Unset: h1's default route is netyard's gateway again (and far, another netyard
    // network, is refused there); set again: through r1.
    lab.ny_ok(&["network", "update", "lan", "--no-gateway-router"]);
    let routes = exec_ok(&lab, "h1", &["ip", "-4", "route", "show", "default"]);
    assert!(routes.contains("via 10.67.1.1 "), "{routes}");
    let o = exec(&lab, "h1", &["ping", "-c", "1", "-W", "2", "10.67.4.10"]);
    assert!(!o.status.success(), "far reached without r1: {}", show(&o));
    lab.ny_ok(&["network", "update", "lan", "--gateway-router", "r1"]);
    let routes = exec_ok(&lab, "h1", &["ip", "-4", "route", "show", "default"]);
    assert!(routes.contains("via 10.67.1.254 "), "{routes}");
    exec_ok(&lab, "h1", &["ping", "-c", "1", "-W", "5", "10.67.4.10"]);
    let edge = lab.ny_json(&["router", "inspect", "edge"]);
    println!("{edge:#}");
    graphs(&lab, &file, &["h1", "r1", "r2", "edge", "far"]);
    down_leaves_nothing(&lab, "routed", &pids, guard);
}

#[test]
fn lossy_wan_delays_the_link_between_the_sites() {
    let lab = new_lab();
    let file = example("lossy-wan.toml");
    let (guard, pids) = up(&lab, &file, "wan");
    // 40 ms each way on gw-a's WAN link: every round trip takes 80 ms more.
    let o = exec(
        &lab,
        "a1",
        &["ping", "-c", "20", "-i", "0.2", "-W", "3", "10.62.2.10"],
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    println!("{text}");
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").parse().ok())
        .collect();
    assert!(!rtts.is_empty(), "no reply across the WAN:\n{}", show(&o));
    let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "lossy WAN: {} of 20 replies, min RTT {min:.1} ms",
        rtts.len()
    );
    assert!(min >= 80.0, "RTT {min} ms below the 80 ms the link adds");
    assert_eq!(fetch(&lab, "a1", "10.62.2.10:7000"), "hello from site b");
    let links = lab.ny_json(&["link", "show", "wan", "gw-a", "--json"]);
    let s = links.to_string();
    assert!(s.contains("40ms") && s.contains("2%"), "{s}");
    graphs(&lab, &file, &["a1", "gw-a", "gw-b", "b1"]);
    let svg = lab.ny_ok(&["lab", "graph", &file, "--format", "svg"]);
    assert!(svg.contains("class=\"impaired\""), "{svg}");
    down_leaves_nothing(&lab, "wan", &pids, guard);
}

#[test]
fn dual_homed_server_in_yaml_reaches_both_sides_which_stay_apart() {
    require_program("tcpdump", "tcpdump");
    let lab = new_lab();
    let file = example("dual-homed.yaml");
    let (guard, pids) = up(&lab, &file, "dual");
    // By name, through the embedded resolver (exec gives the node its resolv.conf).
    assert_eq!(fetch(&lab, "client", "server:8080"), "hello from server");
    assert_eq!(fetch(&lab, "server", "db:5432"), "hello from db");
    // The server does not forward: the client cannot reach the back network.
    let o = exec(
        &lab,
        "client",
        &["socat", "-T", "2", "-", "TCP:10.63.2.20:5432"],
    );
    assert!(!o.status.success(), "client reached db: {}", show(&o));
    // `capture NETWORK ENDPOINT -w -` streams pcap live: tcpdump reads it from a pipe.
    let txt = lab.capture_through_tcpdump(&["front", "client"], 4, || {
        let _ = exec(
            &lab,
            "client",
            &["ping", "-c", "1", "-W", "1", "10.63.1.10"],
        );
    });
    println!("{txt}");
    assert!(txt.contains("10.63.1.20") && txt.contains("ICMP"), "{txt}");
    graphs(&lab, &file, &["client", "server", "db"]);
    down_leaves_nothing(&lab, "dual", &pids, guard);
}

#[test]
fn a_lab_file_with_errors_creates_nothing_and_names_the_path() {
    let lab = new_lab();
    let cases = [
        (
            "unknown-network.toml",
            "[networks.a]\n[nodes.web]\nnetworks = [{ network = \"a\" }, { network = \"b\" }]\n",
            "nodes.web.networks[1].network",
        ),
        (
            "duplicate.toml",
            "[networks.a]\nsubnet = \"10.64.0.0/24\"\n[nodes.m]\nnetworks = [{ network = \"a\", ip = \"10.64.0.5\" }]\n[nodes.n]\nnetworks = [{ network = \"a\", ip = \"10.64.0.5\" }]\n",
            "nodes.n.networks[0].ip",
        ),
        (
            "duration.yaml",
            "networks:\n  a: {}\nnodes:\n  m:\n    networks: [{ network: a }]\nlinks:\n  - { network: a, node: m, delay: 20 parsecs }\n",
            "links[0].delay",
        ),
        (
            "unknown-key.yaml",
            "networks:\n  a: {}\nnodes:\n  web:\n    networks:\n      - network: a\n        ipp: 10.0.0.1\n",
            "nodes.web.networks[0].ipp",
        ),
    ];
    for (name, text, path) in cases {
        let f = lab.dir.join(name);
        std::fs::write(&f, text).expect("write");
        let fs = f.display().to_string();
        let o = lab.ny(&["lab", "up", &fs]);
        assert!(!o.status.success(), "{name} accepted: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&fs) && err.contains(path),
            "{name}: the error should name {fs} and {path}:\n{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // A file that passes the CLI's checks but fails at the daemon (a MAC it refuses, on the
    // last step): everything made before is undone.
    let late = lab.dir.join("late.toml");
    std::fs::write(
        &late,
        "[networks.a]\nsubnet = \"10.65.0.0/24\"\n[networks.b]\nsubnet = \"10.66.0.0/24\"\n\
         [nodes.m]\nnetworks = [{ network = \"a\" }, { network = \"b\", mac = \"not-a-mac\" }]\n",
    )
    .expect("write");
    let o = lab.ny(&["lab", "up", &late.display().to_string()]);
    assert!(!o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nodes.m.networks[1]") && err.contains("nothing was left behind"),
        "{err}"
    );
    for args in [
        &["lab", "ls", "--json"][..],
        &["network", "ls", "--json"],
        &["ps", "--json"],
    ] {
        let v: Value = lab.ny_json(args);
        assert_eq!(v.as_array().map(Vec::len), Some(0), "{args:?}: {v}");
    }
    let nodes = lab.ny_json(&["lab", "ls", "--json"]);
    assert_eq!(nodes, serde_json::json!([]));
}

#[test]
fn exec_passes_the_exit_status_and_nodes_restart_their_command() {
    let lab = new_lab();
    let marks = lab.dir.join("starts");
    let f = lab.dir.join("restart.toml");
    std::fs::write(
        &f,
        format!(
            "name = \"rs\"\n[networks.n]\n[nodes.flaky]\ncommand = \"echo started >> {}; exit 3\"\nnetworks = [{{ network = \"n\" }}]\n",
            marks.display()
        ),
    )
    .expect("write");
    let (guard, pids) = up(&lab, &f.display().to_string(), "rs");
    let o = exec(&lab, "flaky", &["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", show(&o));
    let o = exec(&lab, "flaky", &["ip", "-br", "addr"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("eth0") && text.contains("lo"), "{text}");
    // Exits at once, started again after 1 s, then 2 s: three starts within 10 s.
    let starts = || {
        std::fs::read_to_string(&marks)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        wait_until(
            Duration::from_secs(15),
            Duration::from_millis(100),
            || starts() >= 3
        ),
        "the command was started {} times",
        starts()
    );
    // The namespace outlived every exit of the command: the endpoint is still attached.
    let ps = lab.ny_json(&["ps", "--json"]);
    assert!(find_endpoint(&ps, "n", "flaky").is_some(), "{ps}");
    let o = lab.ny(&["exec", "nobody", "--", "true"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nobody"),
        "{}",
        show(&o)
    );
    down_leaves_nothing(&lab, "rs", &pids, guard);
}

/// A lab file's VXLAN network (`vxlan = { vni, local, peers }`) reaches the Linux kernel's
/// vxlan device: the daemon's namespace and a second "host" namespace `hb` are joined by a
/// veth underlay (198.18.X.0/24, made here); `hb` has vx0 (learning, remote: the daemon's
/// side) on a bridge with namespace `k` behind it, on the lab network's subnet.
#[test]
fn a_lab_vxlan_network_reaches_a_kernel_vxlan_peer() {
    let lab = new_lab();
    let hb = lab.ns("hb");
    let k = lab.ns("k");
    let sn = Subnet::random();
    let vni = "4343";
    let u = underlay(&lab.id, &lab.host.name, &hb);
    kernel_vtep(&hb, &u, vni, &k, &format!("{}/24", sn.ip(20)), &[]);
    let (a_ip, b_ip) = (&u.a_ip, &u.b_ip);
    let f = lab.dir.join("vxlan-lab.toml");
    std::fs::write(
        &f,
        format!(
            "name = \"vx\"\n[networks.ov]\nsubnet = \"{}\"\nvxlan = {{ vni = {vni}, local = \"{a_ip}\", peers = [\"{b_ip}\"] }}\n\
             [nodes.c]\nnetworks = [{{ network = \"ov\", ip = \"{}\" }}]\n",
            sn.cidr(),
            sn.ip(11)
        ),
    )
    .expect("write");
    let (guard, pids) = up(&lab, &f.display().to_string(), "vx");
    let info = lab.ny_json(&["network", "inspect", "ov"]);
    assert_eq!(info["vxlan"]["vni"], 4343, "{info}");
    assert_eq!(info["vxlan"]["local"], a_ip.as_str(), "{info}");
    assert_eq!(info["vxlan"]["peers"], serde_json::json!([b_ip]), "{info}");
    assert_eq!(info["mtu"], 1450, "{info}");
    let out = exec_ok(&lab, "c", &["ping", "-c", "3", "-W", "5", &sn.ip(20)]);
    println!("{out}");
    assert!(out.contains(" 0% packet loss"), "{out}");
    let back = cmd_ok(&[
        "ip",
        "netns",
        "exec",
        &k,
        "ping",
        "-c",
        "2",
        "-W",
        "5",
        &sn.ip(11),
    ]);
    assert!(back.contains(" 0% packet loss"), "{back}");
    graphs(&lab, &f.display().to_string(), &["c"]);
    let dot = lab.ny_ok(&["lab", "graph", &f.display().to_string()]);
    assert!(dot.contains("vxlan 4343"), "{dot}");
    down_leaves_nothing(&lab, "vx", &pids, guard);
}

/// Ends the holders of a lab's nodes when dropped: a persistent daemon leaves its nodes running
/// when it stops, so a test that fails while its daemon is down must end them itself (SIGTERM:
/// the holder ends its command first).
struct Holders(Vec<u32>);

impl Drop for Holders {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// A persistent daemon stopped (SIGTERM) and started again keeps a lab: the nodes keep running
/// (the same holder processes, never restarted), their endpoints and the router come back, the
/// nodes still reach each other through the router, `lab ls` lists the lab whole, and `lab down`
/// after the restart removes everything `up` made.
#[test]
fn a_lab_survives_a_daemon_restart() {
    let mut lab = Lab::bare();
    lab.start_daemon(&[]);
    let [sa, sb] = Subnet::distinct();
    let f = lab.dir.join("restart-lab.toml");
    std::fs::write(
        &f,
        format!(
            "name = \"rl\"\n\
             [networks.left]\nsubnet = \"{}\"\n\
             [networks.right]\nsubnet = \"{}\"\n\
             [routers.r]\nnetworks = [{{ network = \"left\", ip = \"{}\" }}, {{ network = \"right\", ip = \"{}\" }}]\n\
             [nodes.a]\ncommand = \"sleep 100000\"\nnetworks = [{{ network = \"left\", ip = \"{}\" }}]\n\
             [nodes.b]\ncommand = \"sleep 100000\"\nnetworks = [{{ network = \"right\", ip = \"{}\" }}]\n",
            sa.cidr(),
            sb.cidr(),
            sa.ip(254),
            sb.ip(254),
            sa.ip(10),
            sb.ip(10)
        ),
    )
    .expect("write");
    let file = f.display().to_string();
    let (guard, pids) = up(&lab, &file, "rl");
    std::mem::forget(guard);
    let holders = Holders(pids.clone());
    let b_ip = sb.ip(10);
    exec_ok(&lab, "a", &["ping", "-c", "2", "-W", "2", &b_ip]);
    let ps_before = lab.ny_json(&["ps", "--json"]);

    let status = lab.stop_daemon();
    assert!(status.success(), "the daemon's exit on SIGTERM: {status}");
    for p in &pids {
        assert!(
            process_alive(*p),
            "node holder {p} ended with the persistent daemon"
        );
    }
    eprintln!("----- the first daemon's log -----\n{}", lab.daemon_log());
    lab.start_daemon(&[]);
    if !wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        lab.daemon_log().contains("netyard daemon ready")
    }) {
        lab.fail("the restarted daemon did not log \"netyard daemon ready\" within 15 s");
    }

    let (guard, pids_after) = up_listed(&lab, "rl");
    assert_eq!(pids_after, pids, "the nodes' holders after the restart");
    let ps_after = lab.ny_json(&["ps", "--json"]);
    for name in ["a", "b"] {
        let net = if name == "a" { "left" } else { "right" };
        assert!(
            find_endpoint(&ps_after, net, name).is_some(),
            "endpoint {name} on {net} not back after the restart:\nbefore {ps_before}\nafter {ps_after}"
        );
    }
    let routers = lab.ny_json(&["router", "ls", "--json"]);
    assert_eq!(routers.as_array().map(Vec::len), Some(1), "{routers}");
    let out = exec_ok(&lab, "a", &["ping", "-c", "2", "-W", "2", &b_ip]);
    assert!(out.contains("ttl=63"), "a -> b through the router:\n{out}");
    down_leaves_nothing(&lab, "rl", &pids, guard);
    drop(holders);
}

/// An ephemeral daemon's nodes end with it even when it is SIGKILLed (it cannot end them
/// itself then): each holder watches that it is still the daemon's child.
#[test]
fn an_ephemeral_daemon_killed_ends_its_nodes() {
    let lab = new_lab();
    let f = lab.dir.join("orphans.toml");
    std::fs::write(
        &f,
        "name = \"orph\"\n[networks.n]\n[nodes.x]\ncommand = \"sleep 100000\"\nnetworks = [{ network = \"n\" }]\n",
    )
    .expect("write");
    let (guard, pids) = up(&lab, &f.display().to_string(), "orph");
    std::mem::forget(guard);
    let holders = Holders(pids.clone());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.daemon_pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    for p in &pids {
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
                !process_alive(*p)
            }),
            "node holder {p} outlived its ephemeral daemon's SIGKILL by 10 s"
        );
    }
    drop(holders);
}
