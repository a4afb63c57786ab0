//! Lifecycle end to end: networks without a subnet, inspect, detach, `netyard run`, a config
//! file that declares endpoints, and a shutdown that leaves nothing behind.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn cidr(v: &Value) -> (Ipv4Addr, u8) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a CIDR string: {v}"));
    let (a, p) = s
        .split_once('/')
        .unwrap_or_else(|| panic!("not a CIDR: {s}"));
    (a.parse().unwrap(), p.parse().unwrap())
}

fn is_private(a: Ipv4Addr) -> bool {
    a.is_private()
}

fn overlap(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = |p: u8| {
        if p == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(p))
        }
    };
    let p = a.1.min(b.1);
    u32::from(a.0) & m(p) == u32::from(b.0) & m(p)
}

#[test]
fn empty_ls_auto_subnet_inspect_and_rm() {
    let lab = Lab::new();
    // An empty daemon lists nothing, successfully, as text and JSON; NETYARD_API works too.
    let text = lab.ny_ok(&["network", "ls"]);
    assert!(
        text.lines().count() <= 1,
        "empty `network ls` printed rows:\n{text}"
    );
    assert_eq!(
        lab.ny_json(&["network", "ls", "--json"]),
        Value::Array(vec![])
    );
    assert_eq!(lab.ny_json(&["ps", "--json"]), Value::Array(vec![]));
    assert_eq!(lab.ny_json(&["stats", "--json"]), Value::Array(vec![]));
    let o = run_bounded(
        std::process::Command::new(NETYARD)
            .env("NETYARD_API", &lab.api)
            .args(["network", "ls", "--json"]),
        CLI_TIMEOUT,
    );
    assert!(o.status.success(), "NETYARD_API: {}", show(&o));

    // Without --subnet: a private /24 that overlaps nothing, gateway its first address.
    lab.ny_ok(&["network", "create", "auto1"]);
    let n1 = lab.ny_json(&["network", "inspect", "auto1"]);
    let s1 = cidr(&n1["subnet"]);
    assert_eq!(s1.1, 24, "auto subnet is not a /24: {n1}");
    assert!(is_private(s1.0), "auto subnet is not private: {n1}");
    let gw: Ipv4Addr = n1["gateway"].as_str().unwrap().parse().unwrap();
    assert_eq!(u32::from(gw), u32::from(s1.0) + 1, "gateway: {n1}");
    lab.ny_ok(&["network", "create", "auto2"]);
    let n2 = lab.ny_json(&["network", "inspect", "auto2"]);
    let s2 = cidr(&n2["subnet"]);
    assert_eq!(s2.1, 24, "{n2}");
    assert!(!overlap(s1, s2), "two auto subnets overlap: {n1} {n2}");

    // A subnet routed in the host namespace is never chosen: route auto1's subnet on the
    // host's lo, free it, and ask again.
    lab.ny_ok(&["network", "rm", "auto1"]);
    let host_addr = format!("{}/24", Ipv4Addr::from(u32::from(s1.0) + 254));
    cmd_ok(&[
        "ip",
        "-n",
        &lab.host.name,
        "addr",
        "add",
        &host_addr,
        "dev",
        "lo",
    ]);
    lab.ny_ok(&["network", "create", "auto3"]);
    let n3 = lab.ny_json(&["network", "inspect", "auto3"]);
    let s3 = cidr(&n3["subnet"]);
    assert!(
        !overlap(s1, s3) && !overlap(s2, s3),
        "auto subnet {n3} overlaps the host route {host_addr} or network auto2 {n2}"
    );

    // IPAM hands out addresses in order after the gateway; inspect shows the endpoints.
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ea = lab.attach("auto3", &na, "a", &[]);
    let eb = lab.attach("auto3", &nb, "b", &["--kind", "veth"]);
    let first: Ipv4Addr = ea["ip"].as_str().unwrap().parse().unwrap();
    let second: Ipv4Addr = eb["ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(u32::from(first), u32::from(s3.0) + 2, "first address: {ea}");
    assert_eq!(
        u32::from(second),
        u32::from(s3.0) + 3,
        "second address: {eb}"
    );
    lab.assert_ping(&na, &second.to_string());
    let n3 = lab.ny_json(&["network", "inspect", "auto3"]);
    assert_eq!(
        n3["endpoints"],
        serde_json::json!(["a", "b"]),
        "inspect: {n3}"
    );
    let details = n3["endpoint_details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (name, ip) in [("a", first), ("b", second)] {
        let d = details.iter().find(|d| d["name"] == name);
        match d {
            Some(d) if d["ip"] == ip.to_string().as_str() => {}
            _ => lab.fail(&format!("inspect lacks endpoint {name} with ip {ip}: {n3}")),
        }
    }
    let ls = lab.ny_json(&["network", "ls", "--json"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, vec!["auto2", "auto3"], "ls: {ls}");

    // Detach both, then rm works and ls is back to what it was.
    lab.ny_ok(&["detach", "auto3", "a"]);
    lab.ny_ok(&["detach", "auto3", "b"]);
    lab.ny_ok(&["network", "rm", "auto3"]);
    lab.ny_ok(&["network", "rm", "auto2"]);
    assert_eq!(
        lab.ny_json(&["network", "ls", "--json"]),
        Value::Array(vec![])
    );
}

#[test]
fn detach_removes_the_interface() {
    let lab = Lab::new();
    let s1 = Subnet::random();
    let s2 = s1.other();
    lab.network("one", &s1, &[]);
    lab.network("two", &s2, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ea = lab.attach("one", &na, "a", &[]);
    let eb = lab.attach("one", &nb, "b", &["--kind", "veth"]);
    // b is on both networks (as `docker network connect` does), eth1 on the second.
    let eb2 = lab.attach("two", &nb, "b2", &["--ifname", "eth1"]);
    assert_eq!(eb2["ifname"], "eth1");
    lab.assert_ping(&na, eb["ip"].as_str().unwrap());
    let host_end = eb["host_ifname"].as_str().unwrap_or_default().to_string();
    assert!(
        is_netyard_host_end(&host_end) && links(&lab.host.name).contains(&host_end),
        "veth endpoint b: host end {host_end:?} not in the host namespace ({:?}): {eb}",
        links(&lab.host.name)
    );

    // Detaching b's second network leaves its first one working.
    lab.ny_ok(&["detach", "two", "b2"]);
    // A detach answers once the state changed; the device goes right after (in the
    // background, runtime/teardown.rs).
    if !gone_soon(|| link_json(&nb, "eth1").is_none()) {
        lab.fail(&format!(
            "eth1 still in {nb} after detach: {:?}",
            links(&nb)
        ));
    }
    lab.assert_ping(&nb, ea["ip"].as_str().unwrap());

    lab.ny_ok(&["detach", "one", "a"]);
    lab.ny_ok(&["detach", "one", "b"]);
    for ns in [&na, &nb] {
        if !gone_soon(|| links(ns) == vec!["lo".to_string()]) {
            lab.fail(&format!("{ns} still has {:?} after detach", links(ns)));
        }
    }
    let host = links(&lab.host.name);
    if !gone_soon(|| !links(&lab.host.name).iter().any(|l| is_netyard_host_end(l))) {
        lab.fail(&format!(
            "a veth host end is left in the host namespace: {host:?}"
        ));
    }
    assert_eq!(lab.ny_json(&["ps", "--json"]), Value::Array(vec![]));
    // Detach is not idempotent by accident: a second one says what is missing.
    let o = lab.ny(&["detach", "one", "a"]);
    assert_one_line_error("detaching twice", &o, &["a"]);
    // The freed names can be attached again.
    let ea = lab.attach("one", &na, "a", &[]);
    lab.attach("one", &nb, "b", &["--kind", "veth"]);
    lab.assert_ping(&nb, ea["ip"].as_str().unwrap());
}

/// An `--ephemeral` daemon removes everything on SIGTERM (a persistent one leaves the
/// endpoints for its next start: tests/restart.rs).
#[test]
fn shutdown_removes_everything() {
    let mut lab = Lab::with_daemon_args(&["--ephemeral"]);
    let s1 = Subnet::random();
    let s2 = s1.other();
    lab.network("one", &s1, &[]);
    lab.network("two", &s2, &[]);
    let (na, nb, nc) = (lab.ns("a"), lab.ns("b"), lab.ns("c"));
    lab.attach("one", &na, "a", &[]);
    let eb = lab.attach("one", &nb, "b", &["--kind", "veth"]);
    lab.attach("two", &nc, "c", &["--kind", "veth"]);
    lab.attach("two", &na, "a2", &["--ifname", "eth1", "--kind", "veth"]);
    lab.assert_ping(&na, eb["ip"].as_str().unwrap());
    let host_before = links(&lab.host.name);
    let ends = host_before
        .iter()
        .filter(|l| is_netyard_host_end(l))
        .count();
    assert_eq!(
        ends, 3,
        "expected 3 veth host ends in the host namespace: {host_before:?}"
    );

    let status = lab.stop_daemon();
    let log = lab.daemon_log();
    assert_eq!(
        status.code(),
        Some(0),
        "daemon exit after SIGTERM: {status}\n{log}"
    );
    for ns in [&na, &nb, &nc] {
        let l = links(ns);
        assert_eq!(
            l,
            vec!["lo".to_string()],
            "{ns} still has interfaces after shutdown\n{log}"
        );
    }
    let host = links(&lab.host.name);
    assert!(
        !host.iter().any(|l| is_netyard_host_end(l)),
        "veth host ends left in the host namespace after shutdown: {host:?}\n{log}"
    );
    assert!(
        !lab.api.exists(),
        "the API socket {} is still there after shutdown\n{log}",
        lab.api.display()
    );
}

/// `netyard run` in the host namespace (so a veth host end lives there), against a daemon.
fn run_in_host(lab: &Lab, args: &[&str]) -> std::process::Output {
    let api = lab.api.to_string_lossy().into_owned();
    let mut a = vec![
        "ip",
        "netns",
        "exec",
        &lab.host.name,
        NETYARD,
        "--api",
        &api,
        "run",
    ];
    a.extend_from_slice(args);
    cmd(&a, Duration::from_secs(60))
}

#[test]
fn run_returns_the_commands_exit_code() {
    let lab = Lab::new();
    let sn = Subnet::random();
    lab.network("lan", &sn, &[]);
    let na = lab.ns("a");
    let ea = lab.attach("lan", &na, "a", &[]);
    let ip_a = ea["ip"].as_str().unwrap().to_string();

    let o = run_in_host(
        &lab,
        &[
            "--network",
            "lan",
            "--name",
            "x",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    if o.status.code() != Some(7) {
        lab.fail(&format!(
            "`run -- sh -c 'exit 7'` did not return 7:\n{}",
            show(&o)
        ));
    }
    for kind in ["tap", "veth"] {
        let o = run_in_host(
            &lab,
            &[
                "--network",
                "lan",
                "--name",
                "x",
                "--kind",
                kind,
                "--",
                "ping",
                "-n",
                "-c",
                "1",
                "-W",
                "5",
                &ip_a,
            ],
        );
        if o.status.code() != Some(0) {
            lab.fail(&format!(
                "`run --kind {kind} -- ping -c1 {ip_a}` failed:\n{}",
                show(&o)
            ));
        }
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("1 received"),
            "run did not pass ping's stdout through:\n{}",
            show(&o)
        );
    }
    // The command sees its own eth0 with an address of the network.
    let o = run_in_host(
        &lab,
        &[
            "--network",
            "lan",
            "--name",
            "y",
            "--ip",
            &sn.ip(77),
            "--",
            "ip",
            "-4",
            "-o",
            "addr",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let want = format!("inet {}/24", sn.ip(77));
    if !o.status.success()
        || !out
            .lines()
            .any(|l| l.contains(" eth0 ") && l.contains(&want))
    {
        lab.fail(&format!(
            "`run -- ip addr` did not show eth0 with {}:\n{}",
            sn.ip(77),
            show(&o)
        ));
    }
    // Every run detached its endpoint and left no veth behind.
    let ps = lab.ny_json(&["ps", "--json"]);
    let names: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a"], "endpoints left by run: {ps}");
    let host = links(&lab.host.name);
    assert!(
        !host.iter().any(|l| is_netyard_host_end(l)),
        "run left a veth host end: {host:?}"
    );
}

#[test]
fn config_file_declares_a_network_and_an_endpoint() {
    let mut lab = Lab::bare();
    let sn = Subnet::random();
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let cfg = lab.dir.join("netyard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[network]]\nname = \"lab\"\nsubnet = \"{}\"\naging = 60\n\n\
             [[endpoint]]\nnetwork = \"lab\"\nname = \"a\"\nnetns = \"/run/netns/{na}\"\n\
             ip = \"{}\"\nkind = \"veth\"\n",
            sn.cidr(),
            sn.ip(10)
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    lab.start_daemon(&["--config", &cfg_s]);
    let ea = lab.endpoint("lab", "a");
    assert_eq!(ea["ip"], sn.ip(10).as_str(), "{ea}");
    assert_eq!(ea["kind"], "veth", "{ea}");
    lab.check_interface(&na, "eth0", &ea);
    let info = lab.ny_json(&["network", "inspect", "lab"]);
    assert_eq!(info["aging"], 60, "{info}");
    let eb = lab.attach("lab", &nb, "b", &[]);
    lab.assert_ping(&nb, &sn.ip(10));
    lab.assert_ping(&na, eb["ip"].as_str().unwrap());
}
