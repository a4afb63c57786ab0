//! Egress and published ports over IPv6: a container on a dual-stack network reaches an
//! "outside" namespace at 2001:db8:X::2 (tests/common/outside6.rs) through the daemon's host
//! sockets, and an outside client reaches the container's published port over IPv6 (on every
//! address and on a `[ADDR]:` spec) with its own address kept. Nothing is sent anywhere else:
//! 2001:db8:dead::/48, used for the unreachable cases, has no route in the host namespace.
//! Then, on an IPv4-only host: egress to another netyard network's IPv6 prefix is refused by
//! policy (administratively prohibited, counted), and IPv6 egress anywhere else fails at once
//! with "network unreachable", never a timeout.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::outside6::Outside6;
use common::{
    drops, flows_row, py, require_program, run_bounded, sha_transfer, show, wait_listening,
    wait_until, Bg, Lab, Proto, Subnet,
};
use serde_json::Value;

struct Setup {
    lab: Lab,
    out: Outside6,
    /// The container's namespace and its IPv6 address.
    ns: String,
    ip6: String,
    net: String,
}

/// A dual-stack network with one TAP container publishing `hport` -> 80 on every host
/// address and `hport + 1` -> 80 on the host's IPv6 address of the outside link only
/// (`[ADDR]:PORT:80`), and the outside namespace; waits for the container's IPv6 default route (from
/// the gateway's Router Advertisement).
fn setup(hport: u16) -> Setup {
    for (p, pkg) in [
        ("socat", "socat"),
        ("curl", "curl"),
        ("iperf3", "iperf3"),
        ("dig", "bind9-dnsutils"),
        ("dnsmasq", "dnsmasq"),
        ("python3", "python3"),
    ] {
        require_program(p, pkg);
    }
    let lab = Lab::new();
    let out = lab.outside6();
    let sub = Subnet::random();
    let net = lab.network("v6", &sub, &["--ipv6"]);
    let ns = lab.ns("c");
    // Lab namespaces start with IPv6 off (tests/common: no stray router solicitations).
    for key in ["all", "default", "lo"] {
        let kv = format!("net.ipv6.conf.{key}.disable_ipv6=0");
        lab.ns_cmd(&ns, &["sysctl", "-qw", &kv], Duration::from_secs(5));
    }
    let publish = format!("{hport}:80");
    let publish6 = format!("[{}]:{}:80", out.host_ip, hport + 1);
    let ep = lab.attach(&net, &ns, "c1", &["-p", &publish, "-p", &publish6]);
    let ip6 = ep["ip6"]
        .as_str()
        .unwrap_or_else(|| lab.fail(&format!("no ip6 in {ep}")))
        .to_string();
    let routed = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let o = lab.ns_cmd(
            &ns,
            &["ip", "-6", "route", "show", "default"],
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&o.stdout).contains("default")
    });
    if !routed {
        lab.fail("the container got no IPv6 default route");
    }
    Setup {
        lab,
        out,
        ns,
        ip6,
        net,
    }
}

impl Setup {
    fn sh(&self, ns: &str, script: &str, secs: u64) -> std::process::Output {
        run_bounded(
            Command::new("ip").args(["netns", "exec", ns, "bash", "-c", script]),
            Duration::from_secs(secs),
        )
    }

    fn ok(&self, ns: &str, script: &str, secs: u64) -> String {
        let o = self.sh(ns, script, secs);
        if !o.status.success() {
            self.lab
                .fail(&format!("`{script}` in {ns} failed:\n{}", show(&o)));
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn bg(&self, ns: &str, script: &str, log: &str) {
        self.lab.bg_in(ns, &["bash", "-c", script], log);
    }
}

#[test]
fn a_container_reaches_the_outside_over_ipv6_and_is_reached_on_its_published_port() {
    let hport = 20000 + rand::random::<u16>() % 20000 * 2;
    let s = setup(hport);
    let (o6, ons) = (s.out.ip.clone(), s.out.v4.ns.clone());
    let d = s.lab.dir.display().to_string();

    // ICMPv6 echo out and back.
    s.ok(&s.ns, &format!("ping -6 -c 2 -W 5 {o6}"), 30);

    // curl -6 a page from an outside web server.
    std::fs::create_dir_all(format!("{d}/www")).expect("www");
    std::fs::write(format!("{d}/www/page.txt"), "served over IPv6\n").expect("page");
    s.bg(
        &ons,
        &format!("cd {d}/www && exec python3 -m http.server 8080 --bind {o6}"),
        "http.log",
    );
    assert!(wait_listening(&ons, 8080, Proto::Tcp), "http server");
    let page = s.ok(
        &s.ns,
        &format!("curl -6 -sSf --max-time 20 http://[{o6}]:8080/page.txt"),
        30,
    );
    assert_eq!(page, "served over IPv6\n");

    // UDP: a DNS query to a dnsmasq outside, over IPv6.
    s.bg(
        &ons,
        &format!(
            "exec dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
             --bind-interfaces --listen-address={o6} --port 5353 --pid-file={d}/dnsmasq.pid \
             --address=/outside.test/192.0.2.77"
        ),
        "dnsmasq.log",
    );
    assert!(wait_listening(&ons, 5353, Proto::Udp), "dnsmasq");
    let a = s.ok(
        &s.ns,
        &format!("dig -6 @{o6} -p 5353 +short +time=5 +tries=2 outside.test A"),
        30,
    );
    assert_eq!(a.trim(), "192.0.2.77");

    // An address the host has no route to: the container hears at once (ICMPv6 from the
    // gateway), TCP and ping alike; and a hop limit of 1 is answered "time exceeded".
    let t0 = Instant::now();
    let o = s.sh(
        &s.ns,
        "curl -6 -sS --max-time 20 http://[2001:db8:dead::1]:80/",
        30,
    );
    assert!(!o.status.success(), "curl to an unrouted address succeeded");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "curl took {:?} to fail: {}",
        t0.elapsed(),
        show(&o)
    );
    let o = s.sh(&s.ns, "ping -6 -c 1 -W 5 2001:db8:dead::1", 30);
    let text = show(&o).to_lowercase();
    assert!(
        !o.status.success() && text.contains("unreachable"),
        "ping to an unrouted address: {text}"
    );
    let o = s.sh(&s.ns, &format!("ping -6 -c 1 -W 5 -t 1 {o6}"), 30);
    let text = show(&o).to_lowercase();
    assert!(text.contains("exceeded"), "ping with hop limit 1: {text}");

    // iperf3 -6 both ways (loosely: it transfers).
    s.bg(
        &ons,
        &format!("exec iperf3 -s -B {o6} -p 5201"),
        "iperf3.log",
    );
    assert!(wait_listening(&ons, 5201, Proto::Tcp), "iperf3 server");
    for dir in ["", "-R"] {
        let r = s.ok(
            &s.ns,
            &format!("iperf3 -6 -c {o6} -p 5201 -t 2 {dir} -J"),
            60,
        );
        let v: serde_json::Value = serde_json::from_str(&r).expect("iperf3 json");
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        println!("iperf3 -6 {dir}: {:.2} Gbit/s", bps / 1e9);
        assert!(bps > 0.0, "iperf3 {dir} moved nothing: {r}");
    }

    // 1 GiB each way, byte-identical: up to an outside receiver, and down from an outside
    // sender on a connection the container opens.
    let gib: u64 = 1 << 30;
    sha_transfer(&s.lab, &s.ns, &ons, &format!("[{o6}]"), gib);
    let send = format!(
        "set -euo pipefail; mkfifo {d}/down.fifo; sha256sum < {d}/down.fifo > {d}/down.sent & \
         head -c {gib} /dev/urandom | tee {d}/down.fifo | \
         socat -u -b 262144 STDIN TCP6-LISTEN:5300,bind=[{o6}],reuseaddr; wait"
    );
    let mut sender = Bg::spawn(
        Command::new("ip").args(["netns", "exec", &ons, "bash", "-c", &send]),
        &s.lab.dir.join("down.log"),
    );
    assert!(
        wait_listening(&ons, 5300, Proto::Tcp),
        "the sender never listened"
    );
    s.ok(
        &s.ns,
        &format!("socat -u -b 262144 TCP6:[{o6}]:5300 STDOUT | sha256sum > {d}/down.recv"),
        600,
    );
    match sender.wait(Duration::from_secs(60)) {
        Some(st) if st.success() => {}
        st => s
            .lab
            .fail(&format!("the sender ended {st:?}: {}", sender.log_text())),
    }
    let sent = std::fs::read_to_string(format!("{d}/down.sent")).expect("sent");
    let recv = std::fs::read_to_string(format!("{d}/down.recv")).expect("recv");
    assert_eq!(sent, recv, "1 GiB down over IPv6 arrived changed");

    // The flows are listed with IPv6 addresses.
    let flows = s.lab.ny_ok(&["flows", "--json"]);
    assert!(flows.contains(&s.ip6), "no flow of {} in {flows}", s.ip6);

    // Published port over IPv6: the container's server sees the outside client's address.
    s.bg(
        &s.ns,
        "exec socat TCP6-LISTEN:80,fork,reuseaddr SYSTEM:'echo \"peer $SOCAT_PEERADDR\"'",
        "pub.log",
    );
    assert!(
        wait_listening(&s.ns, 80, Proto::Tcp),
        "the container's server"
    );
    let h6 = s.out.host_ip.clone();
    let got = s.ok(
        &ons,
        &format!("socat -T 10 - TCP6:[{h6}]:{hport} </dev/null"),
        30,
    );
    // socat prints the address uncompressed: compare addresses, not text.
    let seen: Option<std::net::Ipv6Addr> = got
        .trim()
        .strip_prefix("peer [")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|a| a.parse().ok());
    let want: std::net::Ipv6Addr = o6.parse().expect("outside address");
    assert_eq!(
        seen,
        Some(want),
        "the container sees the IPv6 client's own address: {got}"
    );
    // The `[ADDR]:` spec: the same, on the one host address it names.
    let got = s.ok(
        &ons,
        &format!("socat -T 10 - TCP6:[{h6}]:{} </dev/null", hport + 1),
        30,
    );
    let seen: Option<std::net::Ipv6Addr> = got
        .trim()
        .strip_prefix("peer [")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|a| a.parse().ok());
    assert_eq!(
        seen,
        Some(want),
        "[{h6}]:{}: the container sees the IPv6 client's own address: {got}",
        hport + 1
    );
    // IPv4 clients keep reaching the IPv4 address, shown as themselves.
    let h4 = s.out.v4.host_ip.clone();
    let o4 = s.out.v4.ip.clone();
    // (The container's dual-stack listener shows it as an IPv4-mapped address.)
    let got = s.ok(
        &ons,
        &format!("socat -T 10 - TCP4:{h4}:{hport} </dev/null"),
        30,
    );
    let seen4 = got
        .trim()
        .strip_prefix("peer [")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
        .and_then(|a| a.to_ipv4_mapped());
    let want4: std::net::Ipv4Addr = o4.parse().expect("outside IPv4 address");
    assert_eq!(seen4, Some(want4), "an IPv4 client is seen as {got}");
    // And IPv4 egress still works beside it.
    s.ok(&s.ns, &format!("ping -4 -c 1 -W 5 {o4}"), 30);
    let _ = &s.net;
}

/// Connects from inside a namespace and reports how it ended: `{"result": "ok" | "timeout" |
/// errno name, "secs": ...}` (UDP: connect, send, wait for an answer or an error; with
/// IPV6_RECVERR, as Linux reports a soft error such as "no route" to a UDP socket only then,
/// whoever sends the ICMPv6).
const PROBE6: &str = r#"
import errno, json, socket, sys, time
dest, proto, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.time()
res = "ok"
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, 25, 1)  # IPV6_RECVERR
        s.connect((dest, port))
        s.settimeout(8)
        s.send(b"anyone there?")
        s.recv(100)
    else:
        s = socket.create_connection((dest, port), timeout=8)
except socket.timeout:
    res = "timeout"
except OSError as e:
    res = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({"result": res, "secs": round(time.time() - t, 3)}))
"#;

/// `PROBE6` from `ns` to `[dest]:port`: its result and how long it took.
fn probe6(lab: &Lab, ns: &str, dest: &str, proto: &str, port: &str) -> (String, f64) {
    let script = lab.write_file("probe6.py", PROBE6);
    let o = py(ns, &script, &[dest, proto, port], Duration::from_secs(30));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    match (r["result"].as_str(), r["secs"].as_f64()) {
        (Some(res), Some(secs)) => (res.to_string(), secs),
        _ => lab.fail(&format!("probe {proto} [{dest}]:{port}: {}", show(&o))),
    }
}

/// The egress stats of `net`: its `flows --json` row's counters and flows.
fn egress(lab: &Lab, net: &str) -> (Value, Vec<Value>) {
    let row = flows_row(lab, net);
    if row.is_null() {
        lab.fail(&format!("no network {net} in flows --json"));
    }
    let flows = row["flows"].as_array().cloned().unwrap_or_default();
    (row["stats"].clone(), flows)
}

/// A container namespace with IPv6 on (Lab namespaces start with it off).
fn ns6(lab: &Lab, tag: &str) -> String {
    let ns = lab.ns(tag);
    for key in ["all", "default", "lo"] {
        let kv = format!("net.ipv6.conf.{key}.disable_ipv6=0");
        lab.ns_cmd(&ns, &["sysctl", "-qw", &kv], Duration::from_secs(5));
    }
    ns
}

#[test]
fn other_networks_prefixes_are_refused_and_an_ipv4_only_host_answers_unreachable_at_once() {
    require_program("python3", "python3");
    require_program("ping", "iputils-ping");
    let lab = Lab::new();
    // The daemon's host has no IPv6 at all: no address, no route, not even ::1.
    for key in ["all", "default", "lo"] {
        let kv = format!("net.ipv6.conf.{key}.disable_ipv6=1");
        lab.ns_cmd(
            &lab.host.name,
            &["sysctl", "-qw", &kv],
            Duration::from_secs(5),
        );
    }
    let sub = Subnet::random();
    let n1 = lab.network("v6a", &sub, &["--ipv6"]);
    let n2 = lab.network("v6b", &sub.other(), &["--ipv6"]);
    let (na, nb) = (ns6(&lab, "a"), ns6(&lab, "b"));
    let ea = lab.attach(&n1, &na, "alpha", &[]);
    let eb = lab.attach(&n2, &nb, "beta", &[]);
    let (ip_a, ip_b) = (
        ea["ip6"].as_str().unwrap_or_default().to_string(),
        eb["ip6"].as_str().unwrap_or_default().to_string(),
    );
    if ip_a.is_empty() || ip_b.is_empty() {
        lab.fail(&format!("no IPv6 addresses: {ea} {eb}"));
    }
    let routed = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let o = lab.ns_cmd(
            &na,
            &["ip", "-6", "route", "show", "default"],
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&o.stdout).contains("default")
    });
    if !routed {
        lab.fail("alpha got no IPv6 default route");
    }
    let (stats0, _) = egress(&lab, &n1);

    // Another netyard network's prefix: refused by the gateway before any host socket
    // (administratively prohibited: EACCES), whatever the host's routes say. Without the
    // prefix in the shared list this would go to a host socket and end ENETUNREACH here.
    for (proto, port) in [("udp", "9"), ("tcp", "80")] {
        let (res, secs) = probe6(&lab, &na, &ip_b, proto, port);
        if res != "EACCES" || secs > 3.0 {
            lab.fail(&format!(
                "{proto} to [{ip_b}]:{port} (network {n2}) from {n1}: expected EACCES at once, \
                 got {res} after {secs} s"
            ));
        }
    }
    let o = lab.ns_cmd(
        &na,
        &["ping", "-6", "-n", "-c", "1", "-W", "5", &ip_b],
        Duration::from_secs(30),
    );
    let text = show(&o);
    if o.status.success() || !text.to_lowercase().contains("administratively prohibited") {
        lab.fail(&format!("ping -6 from {n1} to {n2}'s {ip_b}:\n{text}"));
    }
    let counted = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let (st, _) = egress(&lab, &n1);
        drops(&st, "refused_local_network") >= drops(&stats0, "refused_local_network") + 3
    });
    let (stats, flows) = egress(&lab, &n1);
    if !counted {
        lab.fail(&format!(
            "expected 3 refused_local_network (UDP, TCP, ping): before {stats0}, after {stats}"
        ));
    }
    let to_b: Vec<&Value> = flows
        .iter()
        .filter(|f| f["destination"].as_str().is_some_and(|d| d.contains(&ip_b)))
        .collect();
    assert!(to_b.is_empty(), "refused traffic made flows: {to_b:?}");

    // Anywhere else over IPv6 from an IPv4-only host: the host socket cannot connect, and the
    // container hears it at once as ICMPv6 "no route" (ENETUNREACH), TCP, UDP and ping alike.
    for (proto, port) in [("tcp", "80"), ("udp", "53")] {
        let (res, secs) = probe6(&lab, &na, "2001:db8:1::1", proto, port);
        if !["ENETUNREACH", "EHOSTUNREACH"].contains(&res.as_str()) || secs > 3.0 {
            lab.fail(&format!(
                "{proto} to [2001:db8:1::1]:{port} from an IPv4-only host: expected \
                 ENETUNREACH at once, got {res} after {secs} s"
            ));
        }
    }
    let o = lab.ns_cmd(
        &na,
        &["ping", "-6", "-n", "-c", "1", "-W", "5", "2001:db8:1::1"],
        Duration::from_secs(30),
    );
    let text = show(&o);
    if o.status.success() || !text.to_lowercase().contains("unreachable") {
        lab.fail(&format!(
            "ping -6 2001:db8:1::1 from an IPv4-only host:\n{text}"
        ));
    }
    // IPv4 egress is not affected: the gateway still answers its IPv4 address.
    lab.assert_ping(&na, &sub.ip(1));
}
