//! Published ports, the control plane: SPECs, binding host ports in the daemon's namespace
//! (all or nothing), `ps`/`inspect` output, unpublish, detach, and the network options
//! `--host-loopback` and the flow caps. No traffic goes through a published port here (that
//! is the data plane's test); ports are checked by binding them from the daemon's ("host")
//! namespace.

mod common;

use std::time::Duration;

use common::{assert_one_line_error, links, ns_sh, show, wait_until, Lab, Subnet};
use serde_json::Value;

/// Holds PROTO PORT on 0.0.0.0 in the namespace it runs in (a listener for tcp) until killed.
const HOLD: &str = r#"
import socket, sys, time
proto, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(16)
print("ready", flush=True)
time.sleep(3600)
"#;

/// Exits 0 if PROTO PORT can be bound on 0.0.0.0 (and listened on, for tcp), 1 if it is in use.
const TRY_BIND: &str = r#"
import errno, socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
try:
    s.bind(("0.0.0.0", port))
    if proto == "tcp":
        s.listen(1)
except OSError as e:
    print(e)
    sys.exit(1 if e.errno == errno.EADDRINUSE else 2)
"#;

/// A random host port below the ephemeral range (the host namespace is the lab's own).
fn random_port() -> u16 {
    20_000 + rand::random::<u16>() % 10_000
}

/// Network "n" on a random subnet and a fresh namespace (tag `a`): the network's name and the
/// namespace's path, for [`attach_args`].
fn net_and_netns(lab: &Lab) -> (String, String) {
    let net = lab.network("n", &Subnet::random(), &[]);
    let ns = lab.ns("a");
    (net, format!("/run/netns/{ns}"))
}

/// Occupies PROTO PORT in the lab's host namespace until the lab ends.
fn hold(lab: &Lab, proto: &str, port: u16) {
    let script = lab.write_file("hold.py", HOLD);
    let log = format!("hold-{proto}-{port}.log");
    lab.bg_in(
        &lab.host.name,
        &["python3", &script, proto, &port.to_string()],
        &log,
    );
    let path = lab.dir.join(&log);
    let ready = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("ready")
    });
    if !ready {
        lab.fail(&format!(
            "could not hold {port}/{proto} in the host namespace: {}",
            std::fs::read_to_string(&path).unwrap_or_default()
        ));
    }
}

/// Can PROTO PORT be bound in the host namespace right now?
fn can_bind(lab: &Lab, proto: &str, port: u16) -> bool {
    let script = lab.write_file("try_bind.py", TRY_BIND);
    let o = ns_sh(
        &lab.host.name,
        &format!("python3 {script} {proto} {port}"),
        Duration::from_secs(20),
    );
    match o.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => lab.fail(&format!("try_bind {port}/{proto}: {}", show(&o))),
    }
}

/// Waits (up to 5 s) for PROTO PORT to be free in the host namespace: the gateway closes an
/// unpublished rule's sockets as it processes the request, just after the API answered.
fn assert_freed(lab: &Lab, proto: &str, port: u16, what: &str) {
    let freed = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        can_bind(lab, proto, port)
    });
    if !freed {
        lab.fail(&format!("{what}: host port {port}/{proto} is still in use"));
    }
}

/// The endpoint's `ports` from `ps --json`.
fn ports(lab: &Lab, net: &str, name: &str) -> Vec<Value> {
    lab.endpoint(net, name)["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn port_of(m: &Value) -> u16 {
    m["host_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

fn attach_args<'a>(path: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["attach", "n", "--netns", path, "--name", name];
    a.extend_from_slice(extra);
    a
}

#[test]
fn busy_host_port_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    let net = lab.network("n", &Subnet::random(), &[]);
    let busy = random_port();
    let free = busy + 1;
    hold(&lab, "tcp", busy);
    hold(&lab, "udp", busy);

    // attach with a busy port: refused, nothing attached, no interface in the namespace.
    let ns = lab.ns("a");
    let path = format!("/run/netns/{ns}");
    let o = lab.ny(&attach_args(&path, "a", &["-p", &format!("{busy}:80")]));
    assert_one_line_error(
        "attach -p busy",
        &o,
        &[
            "publish[0]",
            &format!("host port {busy}/tcp is already in use"),
        ],
    );
    let ps = lab.ny_json(&["ps", "--json"]);
    assert_eq!(ps, Value::Array(vec![]), "a failed attach left an endpoint");
    assert!(
        !links(&ns).contains(&"eth0".to_string()),
        "a failed attach left eth0 in {ns}: {:?}",
        links(&ns)
    );
    // A free port before the busy one: bound, then given back when the attach fails.
    let o = lab.ny(&attach_args(
        &path,
        "a",
        &["-p", &format!("{free}:80"), "-p", &format!("{busy}:53/udp")],
    ));
    assert_one_line_error(
        "attach -p free -p busy/udp",
        &o,
        &[
            "publish[1]",
            &format!("host port {busy}/udp is already in use"),
        ],
    );
    assert!(
        can_bind(&lab, "tcp", free),
        "the free port was not given back"
    );
    assert_eq!(lab.ny_json(&["ps", "--json"]), Value::Array(vec![]));

    // The same attach without the busy port works.
    lab.ny_ok(&attach_args(&path, "a", &["-p", &format!("{free}:80")]));
    let ep = lab.endpoint(&net, "a");
    lab.check_interface(&ns, "eth0", &ep);
    let before = ports(&lab, &net, "a");
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(port_of(&before[0]), free);

    // publish on the running endpoint: all or nothing too.
    let o = lab.ny(&[
        "publish",
        &net,
        "a",
        &format!("{}:81", free + 1),
        &format!("{busy}:82"),
    ]);
    assert_one_line_error(
        "publish free busy",
        &o,
        &[
            "publish[1]",
            &format!("host port {busy}/tcp is already in use"),
        ],
    );
    assert_eq!(
        ports(&lab, &net, "a"),
        before,
        "a failed publish changed the ports"
    );
    assert!(can_bind(&lab, "tcp", free + 1), "free+1 was not given back");

    // A host port another endpoint publishes: refused, naming that endpoint.
    let ns_b = lab.ns("b");
    let path_b = format!("/run/netns/{ns_b}");
    let o = lab.ny(&attach_args(&path_b, "b", &["-p", &format!("{free}:80")]));
    assert_one_line_error(
        "attach -p taken",
        &o,
        &[&format!("host port {free}/tcp is already in use"), "\"a\""],
    );
    lab.ny_ok(&attach_args(&path_b, "b", &[]));
    let o = lab.ny(&["publish", &net, "b", &format!("{free}:80")]);
    assert_one_line_error("publish taken", &o, &["already in use", "\"a\""]);
    // The same port on UDP is another port.
    lab.ny_ok(&["publish", &net, "b", &format!("{free}:80/udp")]);
    // A range with a single container port takes a free port of it.
    let out = lab.ny_ok(&["publish", &net, "b", &format!("{free}-{}:8080", free + 2)]);
    assert!(
        out.contains(&format!(":{}->8080/tcp", free + 1)),
        "range publish: {out}"
    );
}

#[test]
fn internal_network_refuses_publishing() {
    let lab = Lab::new();
    let net = lab.network("n", &Subnet::random(), &["--internal"]);
    let ns = lab.ns("a");
    let path = format!("/run/netns/{ns}");
    let o = lab.ny(&attach_args(&path, "a", &["-p", "8080:80"]));
    assert_one_line_error(
        "attach -p on internal",
        &o,
        &["publish", "internal", "no published ports"],
    );
    assert_eq!(lab.ny_json(&["ps", "--json"]), Value::Array(vec![]));
    lab.ny_ok(&attach_args(&path, "a", &[]));
    let o = lab.ny(&["publish", &net, "a", "8080:80"]);
    assert_one_line_error("publish on internal", &o, &["publish", "internal"]);
    assert!(ports(&lab, &net, "a").is_empty());
    assert!(can_bind(&lab, "tcp", 8080));
    // Host loopback needs egress.
    let o = lab.ny(&[
        "network",
        "create",
        "m",
        "--internal",
        "--host-loopback",
        "--subnet",
        &Subnet::random().cidr(),
    ]);
    assert_one_line_error(
        "--internal --host-loopback",
        &o,
        &["host_loopback", "internal"],
    );
}

#[test]
fn bad_specs_and_options_give_clear_errors() {
    let lab = Lab::new();
    let (net, path) = net_and_netns(&lab);
    lab.ny_ok(&attach_args(&path, "a", &[]));
    for (spec, needles) in [
        ("0", &["container port 0 out of range"][..]),
        ("0:80", &["host port 0 out of range"]),
        ("65536:80", &["host port 65536 out of range"]),
        ("81-80", &["container port range 81-80 is reversed"]),
        ("9000-8000:80", &["host port range 9000-8000 is reversed"]),
        ("8080-8082:80-81", &["differ in length"]),
        ("8080:80-81", &["differ in length"]),
        ("80/sctp", &["\"sctp\"", "tcp or udp"]),
        ("80/", &["empty protocol"]),
        ("http", &["\"http\" is not a number"]),
        ("localhost:8080:80", &["\"localhost\" is not an ip address"]),
        ("::1:8080:80", &["in brackets"]),
        ("[::1:8080:80", &["unclosed"]),
        ("[1.2.3.4]:8080:80", &["only ipv6"]),
    ] {
        let o = lab.ny(&["publish", &net, "a", spec]);
        let mut all = vec!["publish[0]", spec];
        all.extend_from_slice(needles);
        assert_one_line_error(&format!("publish {spec:?}"), &o, &all);
    }
    // The index names the SPEC at fault; nothing was published.
    let o = lab.ny(&["publish", &net, "a", "8080:80", "1-2-3"]);
    assert_one_line_error("second spec bad", &o, &["publish[1]", "1-2-3"]);
    assert!(ports(&lab, &net, "a").is_empty());
    assert!(can_bind(&lab, "tcp", 8080));
    // Not an address of the host.
    let o = lab.ny(&["publish", &net, "a", "198.51.100.7:8080:80"]);
    assert_one_line_error(
        "foreign host ip",
        &o,
        &["publish[0]", "198.51.100.7 is not an address of this host"],
    );
    // attach: same messages, nothing attached.
    let ns_b = lab.ns("b");
    let path_b = format!("/run/netns/{ns_b}");
    let o = lab.ny(&attach_args(&path_b, "b", &["-p", "80", "-p", "80/xdp"]));
    assert_one_line_error("attach bad spec", &o, &["publish[1]", "xdp"]);
    assert!(lab.ny_json(&["ps", "--json"]).as_array().map(Vec::len) == Some(1));
    // unpublish: the SPEC is the field; a SPEC naming nothing published is refused.
    let o = lab.ny(&["unpublish", &net, "a", "0"]);
    assert_one_line_error("unpublish bad", &o, &["spec", "container port 0"]);
    let o = lab.ny(&["unpublish", &net, "a", "80"]);
    assert_one_line_error("unpublish nothing", &o, &["spec", "no port", "80/tcp"]);
    let o = lab.ny(&["publish", &net, "nobody", "80"]);
    assert_one_line_error("publish on unknown endpoint", &o, &["nobody"]);

    // Network options: validated, shown by inspect.
    for (flag, field) in [
        ("--max-flows", "max_flows"),
        ("--max-flows-per-endpoint", "max_flows_per_endpoint"),
    ] {
        let o = lab.ny(&[
            "network",
            "create",
            "bad",
            flag,
            "0",
            "--subnet",
            &Subnet::random().cidr(),
        ]);
        assert_one_line_error(flag, &o, &[field, "out of range"]);
    }
    let o = lab.ny(&["network", "create", "bad", "--max-flows", "-3"]);
    assert!(!o.status.success(), "{}", show(&o));
    lab.ny_ok(&[
        "network",
        "create",
        "opts",
        "--subnet",
        &Subnet::random().cidr(),
        "--host-loopback",
        "--max-flows",
        "1000",
        "--max-flows-per-endpoint",
        "10",
    ]);
    let v = lab.ny_json(&["network", "inspect", "opts"]);
    assert_eq!(v["host_loopback"], true, "{v}");
    assert_eq!(v["max_flows"], 1000, "{v}");
    assert_eq!(v["max_flows_per_endpoint"], 10, "{v}");
    let v = lab.ny_json(&["network", "inspect", "n"]);
    assert_eq!(v["host_loopback"], false, "{v}");
    assert_eq!(v["max_flows"], 16384, "{v}");
    assert_eq!(v["max_flows_per_endpoint"], 512, "{v}");
}

#[test]
fn ephemeral_ports_shown_unpublish_and_detach_free_them() {
    let lab = Lab::new();
    let (net, path) = net_and_netns(&lab);
    let fixed = random_port();
    lab.ny_ok(&attach_args(
        &path,
        "a",
        &[
            "-p",
            "80",
            "--publish",
            "127.0.0.1::53/udp",
            "-p",
            &format!("{fixed}-{}:90-91", fixed + 1),
        ],
    ));
    let ps = ports(&lab, &net, "a");
    assert_eq!(ps.len(), 4, "{ps:?}");
    let eph = ps
        .iter()
        .find(|m| m["container_port"] == 80)
        .cloned()
        .unwrap_or_else(|| lab.fail("no mapping for 80"));
    let eph_port = port_of(&eph);
    assert_ne!(eph_port, 0, "{eph}");
    assert_eq!(eph["protocol"], "tcp");
    // No host IP: every address, IPv4 and IPv6 (one dual-stack socket).
    assert_eq!(
        eph["host_ips"],
        serde_json::json!(["0.0.0.0", "::"]),
        "{eph}"
    );
    let udp = ps
        .iter()
        .find(|m| m["protocol"] == "udp")
        .cloned()
        .unwrap_or_else(|| lab.fail("no udp mapping"));
    assert_eq!(udp["host_ips"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(udp["container_port"], 53);
    let udp_port = port_of(&udp);
    assert_ne!(udp_port, 0);
    for (c, h) in [(90, fixed), (91, fixed + 1)] {
        assert!(
            ps.iter()
                .any(|m| m["container_port"] == c && port_of(m) == h),
            "{c} -> {h} missing: {ps:?}"
        );
    }
    // The text form, as docker ps writes it.
    let text = lab.ny_ok(&["ps"]);
    for want in [
        format!("0.0.0.0:{eph_port}->80/tcp, :::{eph_port}->80/tcp"),
        format!("127.0.0.1:{udp_port}->53/udp"),
        format!("0.0.0.0:{fixed}->90/tcp"),
    ] {
        assert!(text.contains(&want), "ps lacks {want:?}:\n{text}");
    }
    assert!(
        text.lines().next().unwrap_or("").contains("PORTS"),
        "{text}"
    );
    // inspect carries them too.
    let insp = lab.ny_json(&["inspect", "a"]);
    assert_eq!(insp[0]["ports"].as_array().map(Vec::len), Some(4), "{insp}");
    // The daemon holds the ports.
    assert!(
        !can_bind(&lab, "tcp", eph_port),
        "{eph_port}/tcp is not held"
    );
    assert!(!can_bind(&lab, "tcp", fixed), "{fixed}/tcp is not held");

    // Rename keeps them.
    lab.ny_ok(&["rename", &net, "a", "web"]);
    assert_eq!(ports(&lab, &net, "web").len(), 4);

    // unpublish by container port: that mapping only; the port is free again.
    let out = lab.ny_ok(&["unpublish", &net, "web", "80"]);
    assert!(!out.contains("->80/tcp"), "{out}");
    assert_eq!(ports(&lab, &net, "web").len(), 3);
    assert_freed(&lab, "tcp", eph_port, "unpublish 80");
    // ... and can be published again at once, by number.
    lab.ny_ok(&["publish", &net, "web", &format!("{eph_port}:80")]);
    assert!(!can_bind(&lab, "tcp", eph_port));
    // A host port that does not match the mapping's: refused, nothing removed.
    let o = lab.ny(&["unpublish", &net, "web", &format!("{}:90", fixed + 5)]);
    assert_one_line_error("unpublish other host port", &o, &["spec"]);
    assert_eq!(ports(&lab, &net, "web").len(), 4);
    // One of a pairwise range.
    lab.ny_ok(&["unpublish", &net, "web", &format!("{}:91", fixed + 1)]);
    assert_freed(&lab, "tcp", fixed + 1, "unpublish FIXED+1:91");
    assert!(
        !can_bind(&lab, "tcp", fixed),
        "unpublishing :91 freed :90's port"
    );

    // detach frees every port.
    lab.ny_ok(&["detach", &net, "web"]);
    assert_freed(&lab, "tcp", eph_port, "detach");
    assert_freed(&lab, "tcp", fixed, "detach");
    assert_freed(&lab, "udp", udp_port, "detach");
}

#[test]
fn daemon_shutdown_frees_published_ports() {
    let mut lab = Lab::new();
    let (net, path) = net_and_netns(&lab);
    let port = random_port();
    lab.ny_ok(&attach_args(
        &path,
        "a",
        &["-p", &format!("{port}:80"), "-p", &format!("{port}:80/udp")],
    ));
    assert_eq!(ports(&lab, &net, "a").len(), 2);
    assert!(!can_bind(&lab, "tcp", port));
    assert!(!can_bind(&lab, "udp", port));
    let status = lab.stop_daemon();
    assert!(status.success(), "daemon exit: {status}");
    assert!(can_bind(&lab, "tcp", port), "tcp port held after shutdown");
    assert!(can_bind(&lab, "udp", port), "udp port held after shutdown");
}
