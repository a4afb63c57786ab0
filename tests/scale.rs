//! Many endpoints (issue 19): a SIGTERM of an `--ephemeral` daemon and a `system reset` with
//! many endpoints leave nothing behind (no interface in the containers, no veth host end, no
//! socket), and the per-namespace cap on DNS-over-TCP connections closes the connection idle
//! longest instead of locking every new client out. How fast teardown is, and the memory of
//! attach/detach rounds, are figures of `cargo bench --bench scale` (benches/README.md), never
//! asserted here.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Endpoints per test (the bench does 500): half TAP, half veth, attached from a few threads at
/// once, as runtimes starting containers in parallel do.
const ENDPOINTS: usize = 120;
const ATTACH_THREADS: usize = 4;

fn kind_of(i: usize) -> &'static str {
    if i % 2 == 0 {
        "tap"
    } else {
        "veth"
    }
}

/// Makes `n` container namespaces and attaches one endpoint `eI` in each.
fn attach_many(lab: &Lab, net: &str, n: usize) -> Vec<String> {
    let namespaces: Vec<String> = (0..n).map(|i| lab.ns(&format!("e{i}"))).collect();
    std::thread::scope(|s| {
        for t in 0..ATTACH_THREADS {
            let namespaces = &namespaces;
            s.spawn(move || {
                for i in (t..n).step_by(ATTACH_THREADS) {
                    let path = format!("/run/netns/{}", namespaces[i]);
                    let name = format!("e{i}");
                    lab.ny_ok(&[
                        "attach",
                        net,
                        "--netns",
                        &path,
                        "--name",
                        &name,
                        "--kind",
                        kind_of(i),
                    ]);
                }
            });
        }
    });
    let ps = lab.ny_json(&["ps", "--json"]);
    let listed = ps.as_array().map(Vec::len).unwrap_or(0);
    if listed != n {
        lab.fail(&format!("ps lists {listed} endpoints, {n} were attached"));
    }
    namespaces
}

/// The sockets of a namespace (`ss -tuanH`: TCP and UDP, listening or not), one per line.
fn sockets(ns: &str) -> String {
    let o = ns_cmd(ns, &["ss", "-tuanH"], Duration::from_secs(10));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Nothing of netyard is left: every container namespace has only `lo` and no socket (the
/// resolver's 127.0.0.11 listeners are gone), the host namespace has no veth host end.
fn assert_nothing_left(lab: &Lab, namespaces: &[String], after: &str) {
    for ns in namespaces {
        if !gone_soon(|| links(ns) == vec!["lo".to_string()] && sockets(ns).is_empty()) {
            lab.fail(&format!(
                "{ns} still has interfaces {:?} and sockets [{}] after {after}",
                links(ns),
                sockets(ns)
            ));
        }
    }
    let host = links(&lab.host.name);
    if host.iter().any(|l| is_netyard_host_end(l)) {
        lab.fail(&format!("veth host ends left after {after}: {host:?}"));
    }
}

#[test]
fn sigterm_of_an_ephemeral_daemon_with_many_endpoints_leaves_nothing() {
    require_program("ss", "iproute2");
    let mut lab = Lab::bare();
    lab.start_daemon(&["--ephemeral"]);
    let sub = Subnet::random();
    let net = lab.network("many", &sub, &[]);
    let namespaces = attach_many(&lab, &net, ENDPOINTS);
    // They forward: a TAP endpoint reaches a veth one.
    let far = lab.endpoint(&net, &format!("e{}", ENDPOINTS - 1));
    lab.assert_ping(&namespaces[0], far["ip"].as_str().unwrap_or_default());

    let status = lab.stop_daemon();
    if !status.success() {
        lab.fail(&format!("the daemon exited with {status} on SIGTERM"));
    }
    // The daemon is gone, and it removed everything before it exited: no waiting here.
    for ns in &namespaces {
        let (l, s) = (links(ns), sockets(ns));
        if l != vec!["lo".to_string()] || !s.is_empty() {
            lab.fail(&format!(
                "{ns} still has interfaces {l:?} and sockets [{s}] after the daemon exited"
            ));
        }
    }
    assert_nothing_left(&lab, &namespaces, "SIGTERM");
}

#[test]
fn system_reset_with_many_endpoints_leaves_nothing_and_an_empty_state() {
    require_program("ss", "iproute2");
    // A daemon with a state directory: persistent TAPs, every change written.
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("many", &sub, &[]);
    let namespaces = attach_many(&lab, &net, ENDPOINTS);

    // A detach answers before its device is gone; attaching the same namespace and interface
    // name at once must still work (the attach waits for that namespace's teardown).
    for i in [0, 1] {
        let name = format!("e{i}");
        lab.ny_ok(&["detach", &net, &name]);
        lab.attach(&net, &namespaces[i], &name, &["--kind", kind_of(i)]);
    }

    let out = lab.ny_ok(&["system", "reset"]);
    assert!(
        out.contains(&ENDPOINTS.to_string()),
        "system reset printed {out:?}"
    );
    // Reset waits for every device: nothing is left when it answers (sockets close a moment
    // later on the resolver's thread).
    for ns in &namespaces {
        let l = links(ns);
        if l != vec!["lo".to_string()] {
            lab.fail(&format!("{ns} still has {l:?} when system reset returned"));
        }
    }
    assert_nothing_left(&lab, &namespaces, "system reset");
    assert_eq!(lab.ny_json(&["ps", "--json"]), Value::Array(vec![]));
    assert_eq!(
        lab.ny_json(&["network", "ls", "--json"]),
        Value::Array(vec![])
    );
    let state = std::fs::read_to_string(lab.dir.join("state").join("state.json"))
        .unwrap_or_else(|e| lab.fail(&format!("reading the state file: {e}")));
    let v: Value = serde_json::from_str(&state)
        .unwrap_or_else(|e| lab.fail(&format!("state file after reset ({e}):\n{state}")));
    assert_eq!(
        v["state"]["networks"],
        serde_json::json!({}),
        "the state after reset:\n{state}"
    );
}

/// Opens as many TCP connections to 127.0.0.11:53 as the resolver's cap (idle: no query),
/// then asks one query with dig over TCP, then says which of its own connections the server
/// closed meanwhile.
const HOLD_TCP_PY: &str = r#"
import json, socket, subprocess, sys, time
cap, name = int(sys.argv[1]), sys.argv[2]
conns = []
for i in range(cap):
    s = socket.create_connection(("127.0.0.11", 53), timeout=5)
    conns.append(s)
time.sleep(0.2)
dig = subprocess.run(["dig", "+tcp", "+tries=1", "+time=5", "+short", "@127.0.0.11", name],
                     capture_output=True, text=True)
time.sleep(0.2)
closed = []
for i, s in enumerate(conns):
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed.append(i)
    except BlockingIOError:
        pass
    except OSError:
        closed.append(i)
print(json.dumps({"dig": dig.stdout.strip(), "dig_status": dig.returncode,
                  "dig_err": dig.stderr.strip(), "closed": closed}))
"#;

#[test]
fn dns_over_tcp_at_the_cap_closes_the_oldest_idle_connection() {
    require_program("dig", "bind9-dnsutils");
    require_program("python3", "python3");
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("dnscap", &sub, &[]);
    let na = lab.ns("a");
    let a = lab.attach(&net, &na, "alpha", &[]);
    let script = lab.write_file("hold_tcp.py", HOLD_TCP_PY);
    // The resolver's cap (netyard_dns::ResolverConfig::tcp_max_connections).
    let out = py_ok(&lab, &na, &script, &["128", "alpha"]);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| lab.fail(&format!("hold_tcp.py printed no JSON ({e}): {out}")));
    let ip = a["ip"].as_str().unwrap_or_default();
    if v["dig"] != ip {
        lab.fail(&format!(
            "dig +tcp with 128 idle connections open in the namespace: expected {ip}: {v}"
        ));
    }
    // The one that gave way is the first opened (all idle, none active since).
    assert_eq!(v["closed"], serde_json::json!([0]), "{v}");
}
