//! Endpoints follow a real runtime's container (issue 10): a root Podman container started
//! with `--network none` and attached by PID leaves `ps` when `podman stop` ends it; after
//! `podman start` it is attached again under the same name and gets the same address back;
//! `podman rm -f` leaves nothing behind.
//!
//! Podman runs as tests/common/podman.rs sets it up (private configuration, storage and mount
//! namespace). `--network none` gives each container a namespace of its own holding only `lo`:
//! the only traffic is between that namespace and the test's peer namespace, through the daemon
//! in the lab's host namespace.

mod common;

use std::time::{Duration, Instant};

use common::podman::*;
use common::*;

/// How long the endpoint of a container that went away may stay in `ps` (generous, for a
/// loaded machine; it takes milliseconds).
const GONE_BOUND: Duration = Duration::from_secs(15);

/// The container's command: a shell that exits on SIGTERM (busybox `sleep` as PID 1 would
/// ignore it, and `podman stop` would wait for its timeout).
const CONTAINER_CMD: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

/// The busybox applets the container uses.
const APPLETS: &[&str] = &["sh", "sleep", "ping", "ip", "cat"];

/// Waits (up to [`GONE_BOUND`]) until `ps --json` lists no endpoint named `name`; returns how
/// long it took.
fn wait_gone(lab: &Lab, name: &str, after: &str) -> Duration {
    let t0 = Instant::now();
    let gone = wait_until(GONE_BOUND, Duration::from_millis(20), || {
        let ps = lab.ny_json(&["ps", "--json"]);
        !ps.as_array()
            .is_some_and(|a| a.iter().any(|e| e["name"] == name))
    });
    if !gone {
        lab.fail(&format!(
            "endpoint {name} still in `ps` {GONE_BOUND:?} after {after}"
        ));
    }
    t0.elapsed()
}

/// Checks that the container's `eth0` (seen from its PID) carries `ip`.
fn check_container_address(lab: &Lab, pid: u32, ip: &str) {
    let o = cmd(
        &[
            "nsenter",
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ],
        CLI_TIMEOUT,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || !out.contains(&format!(" {ip}/")) {
        lab.fail(&format!(
            "the container (pid {pid}) has no eth0 with {ip}:\n{}",
            show(&o)
        ));
    }
}

/// Traffic both ways: the peer namespace pings the container, the container (busybox ping,
/// NET_RAW) pings the peer.
fn check_traffic(lab: &Lab, podman: &Podman, peer_ns: &str, peer_ip: &str, name: &str, ip: &str) {
    lab.assert_ping(peer_ns, ip);
    let o = podman.run(&["exec", name, "ping", "-c", "2", "-W", "3", peer_ip]);
    if !o.status.success() {
        lab.fail(&format!(
            "ping from the container {name} to the peer {peer_ip} failed:\n{}",
            show(&o)
        ));
    }
}

fn reaped(lab: &Lab, net: &str) -> u64 {
    let info = lab.ny_json(&["network", "inspect", net]);
    info["endpoints_reaped"]
        .as_u64()
        .unwrap_or_else(|| lab.fail(&format!("no endpoints_reaped in network inspect: {info}")))
}

#[test]
fn a_podman_container_is_followed_through_stop_start_and_rm() {
    require_root();
    require_podman();
    let t_test = Instant::now();

    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("n", &sub, &[]);
    let peer_ns = lab.ns("peer");
    let peer_ip = lab.attach(&net, &peer_ns, "peer", &[])["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Declared after the lab, so dropped (containers removed) before the daemon stops.
    let podman = Podman::new(&lab);
    let image = format!("nyt{}img", lab.id);
    let name = format!("nyt{}c", lab.id);
    podman.import_busybox(&lab, &image, APPLETS);
    let image = format!("localhost/{image}");

    // Run and attach by PID.
    let t = Instant::now();
    podman.run_on(
        &lab,
        "none",
        &name,
        &["--cap-add", "NET_RAW", &image, "sh", "-c", CONTAINER_CMD],
    );
    let pid1 = podman.pid(&lab, &name);
    println!("podman run took {:?}; container pid {pid1}", t.elapsed());
    assert_ne!(pid1, 0, "podman says the container does not run");
    let ns_file = std::fs::File::open(format!("/proc/{pid1}/ns/net"))
        .unwrap_or_else(|e| lab.fail(&format!("open /proc/{pid1}/ns/net: {e}")));
    lab.ny_ok(&["attach", &net, "--pid", &pid1.to_string(), "--name", &name]);
    let ip = lab.endpoint(&net, &name)["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    check_container_address(&lab, pid1, &ip);
    check_traffic(&lab, &podman, &peer_ns, &peer_ip, &name, &ip);
    println!("{name} attached as {ip}; traffic flows both ways");

    // podman stop: the endpoint leaves, the TAP releases the namespace.
    let t = Instant::now();
    podman.ok(&lab, &["stop", "--time", "10", &name]);
    let stop_took = t.elapsed();
    let gone = wait_gone(&lab, &name, "podman stop");
    println!(
        "podman stop took {stop_took:?}; the endpoint left ps {gone:?} after it returned ({:?} \
         after it was issued)",
        t.elapsed()
    );
    let released = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        !links_of(&ns_file).contains("eth0")
    });
    if !released {
        lab.fail(&format!(
            "the stopped container's namespace still holds the TAP:\n{}",
            links_of(&ns_file)
        ));
    }
    drop(ns_file);
    assert_eq!(reaped(&lab, &net), 1, "endpoints_reaped after podman stop");

    // podman start, attach again under the same name: the same address, traffic flows.
    let t = Instant::now();
    podman.ok(&lab, &["start", &name]);
    let pid2 = podman.pid(&lab, &name);
    println!("podman start took {:?}; new pid {pid2}", t.elapsed());
    assert!(
        pid2 != 0 && pid2 != pid1,
        "podman start: pid {pid2} (was {pid1})"
    );
    lab.ny_ok(&["attach", &net, "--pid", &pid2.to_string(), "--name", &name]);
    let ip2 = lab.endpoint(&net, &name)["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if ip2 != ip {
        lab.fail(&format!(
            "{name} attached again after podman start got {ip2}, had {ip}"
        ));
    }
    check_container_address(&lab, pid2, &ip);
    check_traffic(&lab, &podman, &peer_ns, &peer_ip, &name, &ip);
    println!("{name} attached again as {ip2} (the same address); traffic flows both ways");

    // podman rm -f: nothing left in ps (the peer is detached first).
    lab.ny_ok(&["detach", &net, "peer"]);
    let t = Instant::now();
    podman.ok(&lab, &["rm", "-f", &name]);
    let rm_took = t.elapsed();
    let gone = wait_gone(&lab, &name, "podman rm -f");
    println!(
        "podman rm -f took {rm_took:?}; the endpoint left ps {gone:?} after it returned ({:?} \
         after it was issued)",
        t.elapsed()
    );
    let ps = lab.ny_json(&["ps", "--json"]);
    if ps.as_array().is_none_or(|a| !a.is_empty()) {
        lab.fail(&format!("ps is not empty after podman rm -f: {ps}"));
    }
    assert_eq!(reaped(&lab, &net), 2, "endpoints_reaped after podman rm -f");
    let left = podman.ok(&lab, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(left.is_empty(), "podman still lists containers: {left}");
    println!("test body took {:?}", t_test.elapsed());
}
