//! Endpoints follow their container (issue 10): a `--pid` endpoint leaves when its process
//! exits, a `--netns` endpoint when its namespace is deleted; the name is free at once and
//! gets its address back; a failed attach leaves IPAM as it was.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Waits (up to 15 s, a generous bound for a loaded machine) until `ps` no longer lists
/// `name` on `net`; returns how long it took.
fn wait_gone(lab: &Lab, net: &str, name: &str) -> Duration {
    let t0 = Instant::now();
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        let ps = lab.ny_json(&["ps", "--json"]);
        find_endpoint(&ps, net, name).is_none()
    });
    if !gone {
        lab.fail(&format!(
            "{name} still listed 15 s after its container went away"
        ));
    }
    t0.elapsed()
}

/// `dig +short @127.0.0.11 NAME` from namespace `ns`: the addresses it answered.
fn resolve(lab: &Lab, ns: &str, name: &str) -> String {
    let o = lab.ns_cmd(
        ns,
        &["dig", "+short", "+time=2", "+tries=1", "@127.0.0.11", name],
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Is TCP `port` free in the lab's host namespace (the daemon's)?
fn tcp_port_free(lab: &Lab, port: u16) -> bool {
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\ntry:\n    s.bind(('::', {port}))\nexcept OSError:\n    sys.exit(1)\n"
    );
    let o = ns_cmd(
        &lab.host.name,
        &["python3", "-c", &script],
        Duration::from_secs(10),
    );
    o.status.success()
}

/// A process in a network namespace of its own (`unshare -n sleep`).
fn container(lab: &Lab, tag: &str) -> Bg {
    let mut c = Command::new("unshare");
    c.args(["--net", "sleep", "300"]);
    let bg = Bg::spawn(&mut c, &lab.dir.join(format!("{tag}.log")));
    // unshare execs sleep once the namespace exists.
    let pid = bg.pid();
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.to_string_lossy().contains("sleep"))
    });
    if !ok {
        lab.fail("unshare -n sleep did not start");
    }
    bg
}

#[test]
fn a_pid_endpoint_leaves_when_its_process_exits_and_its_name_gets_the_same_address() {
    require_program("dig", "dnsutils");
    require_program("unshare", "util-linux");
    require_program("nsenter", "util-linux");
    let lab = Lab::new();
    let s = Subnet::random();
    lab.network("n", &s, &[]);
    let peer_ns = lab.ns("peer");
    lab.attach("n", &peer_ns, "peer", &[]);
    let port = 20_000 + rand::random::<u16>() % 10_000;

    let proc1 = container(&lab, "c1");
    let pid = proc1.pid().to_string();
    let ns_file = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open the netns");
    lab.ny_ok(&[
        "attach",
        "n",
        "--pid",
        &pid,
        "--name",
        "c1",
        "-p",
        &format!("{port}:80"),
    ]);
    let ep = lab.endpoint("n", "c1");
    let ip = ep["ip"].as_str().unwrap_or_default().to_string();
    assert_eq!(resolve(&lab, &peer_ns, "c1"), ip);
    assert!(!tcp_port_free(&lab, port), "the published port is bound");
    assert!(links_of(&ns_file).contains("eth0"));

    proc1.signal(nix::sys::signal::Signal::SIGKILL);
    let took = wait_gone(&lab, "n", "c1");
    println!("--pid endpoint detached {took:?} after its process was killed");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            tcp_port_free(&lab, port)
        }),
        "published port {port} still bound after the process exited"
    );
    assert_eq!(resolve(&lab, &peer_ns, "c1"), "", "c1 still resolves");
    // The daemon's TAP descriptor no longer holds the namespace: its TAP is gone.
    let left = links_of(&ns_file);
    assert!(
        !left.contains("eth0"),
        "the TAP is still in the dead container's namespace: {left}"
    );
    let log = lab.daemon_log();
    assert!(
        log.contains("container gone"),
        "no log line for the detach:\n{log}"
    );
    let info = lab.ny_json(&["network", "inspect", "n"]);
    assert_eq!(info["endpoints_reaped"], 1, "{info}");

    // The restarted container (a new process) gets the same address under the same name.
    let proc2 = container(&lab, "c1b");
    let pid2 = proc2.pid().to_string();
    lab.ny_ok(&["attach", "n", "--pid", &pid2, "--name", "c1"]);
    assert_eq!(
        lab.endpoint("n", "c1")["ip"].as_str().unwrap_or_default(),
        ip
    );
    lab.assert_ping(&peer_ns, &ip);
    drop(proc2);
}

#[test]
fn a_netns_endpoint_leaves_when_its_namespace_is_deleted() {
    require_program("dig", "dnsutils");
    let lab = Lab::new();
    let s = Subnet::random();
    lab.network("n", &s, &[]);
    let peer_ns = lab.ns("peer");
    lab.attach("n", &peer_ns, "peer", &[]);
    let name = format!("nyf-{}", suffix());
    cmd_ok(&["ip", "netns", "add", &name]);
    let path = format!("/run/netns/{name}");
    lab.ny_ok(&[
        "attach", "n", "--netns", &path, "--name", "c2", "--kind", "veth",
    ]);
    let ip = lab.endpoint("n", "c2")["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    cmd_ok(&["ip", "netns", "del", &name]);
    let took = wait_gone(&lab, "n", "c2");
    println!("--netns endpoint detached {took:?} after ip netns del");
    assert_eq!(resolve(&lab, &peer_ns, "c2"), "");
    // The kernel removes a veth whose namespace died in its own time (cleanup_net).
    let host_ends = || netyard_host_ends(&lab.host.name);
    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        host_ends().is_empty()
    });
    assert!(gone, "veth host end left 5 s after: {:?}", host_ends());

    // Attached again under the same name (a new namespace): the same address.
    cmd_ok(&["ip", "netns", "add", &name]);
    let again = lab.ny(&["attach", "n", "--netns", &path, "--name", "c2"]);
    let ip2 = lab.endpoint("n", "c2")["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let _ = cmd(&["ip", "netns", "del", &name], Duration::from_secs(10));
    assert!(again.status.success(), "attach again: {}", show(&again));
    assert_eq!(ip2, ip);
}

#[test]
fn a_failed_attach_leaves_the_next_attach_the_same_address() {
    let lab = Lab::new();
    let s = Subnet::random();
    lab.network("n", &s, &[]);
    let a = lab.ns("a");
    let path = format!("/run/netns/{a}");
    let failures: [&[&str]; 4] = [
        &["--mac", "ff:ff:ff:ff:ff:ff"],
        &["--netns", "/run/netns/nyf-does-not-exist"],
        // Fails after the address was reserved: `lo` exists and is no TAP.
        &["--ifname", "lo"],
        &["--kind", "veth", "--ifname", "lo"],
    ];
    for extra in failures {
        let mut args = vec!["attach", "n", "--name", "x"];
        if !extra.contains(&"--netns") {
            args.extend(["--netns", &path]);
        }
        args.extend_from_slice(extra);
        let o = lab.ny(&args);
        assert!(
            !o.status.success(),
            "attach {extra:?} should fail: {}",
            show(&o)
        );
    }
    let ep = lab.attach("n", &a, "x", &[]);
    assert_eq!(
        ep["ip"].as_str().unwrap_or_default(),
        s.ip(2),
        "failed attaches consumed addresses"
    );
}
