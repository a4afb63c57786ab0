//! Egress of UDP and ICMP echo from containers through the daemon's host sockets.
//!
//! The daemon runs in the lab's "host" namespace; [`Lab::outside`] adds a namespace "outside"
//! on a veth link holding 198.18.X.2/24 (the host side is 198.18.X.1/24), and the servers run
//! there. Nothing is sent anywhere else: the host namespace has no other route.
//!
//! Flows and counters are read with `netyard flows --json`, which prints one object per
//! network: `{"network": NAME, "stats": EgressStats, "flows": [FlowEntry, ...]}` (the router's
//! `netyard_router::egress::EgressStats` and `netyard_router::conntrack::FlowEntry`, as serde
//! writes them).

mod common;

use std::time::{Duration, Instant};

use common::{
    cmd, cmd_ok, gateway_mac, py, py_ok, show, wait_listening, Lab, Outside, Pair, Proto, Subnet,
    ECHO_SERVER, UDP_CLIENT,
};
use serde_json::Value;

/// Asks the echo server for N bytes and checks them (the reply is fragmented on the way).
const UDP_BIG: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(2)
n = int(sys.argv[3])
want = bytes(i % 251 for i in range(n))
for _ in range(5):
    s.send(b"big:%d" % n)
    try:
        got = s.recv(65535)
    except socket.timeout:
        continue
    print("ok" if got == want else "wrong: %d bytes" % len(got))
    sys.exit(0 if got == want else 1)
print("timeout")
sys.exit(1)
"#;

/// A burst of 100 datagrams of 64 bytes on one socket, sent back to back (the gateway sends
/// such runs as UDP GSO sends): every echo must be one whole datagram that was sent, none
/// twice; prints "got N" (what a loaded machine's buffers kept).
const UDP_BURST: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.connect((sys.argv[1], int(sys.argv[2])))
sent = [(b"%08d" % i).ljust(64, b"b") for i in range(100)]
for d in sent:
    s.send(d)
s.settimeout(2)
seen = set()
while len(seen) < len(sent):
    try:
        got = s.recv(65535)
    except socket.timeout:
        break
    if got not in sent or got in seen:
        print("bad reply of %d bytes: %r" % (len(got), got[:16]))
        sys.exit(1)
    seen.add(got)
print("got %d" % len(seen))
"#;

/// One datagram to a closed port: prints "refused SECONDS", "reply" or "timeout".
const UDP_REFUSED: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(5)
t = time.time()
s.send(b"anyone there?")
try:
    s.recv(100)
    print("reply")
except ConnectionRefusedError:
    print("refused %.3f" % (time.time() - t))
except socket.timeout:
    print("timeout")
"#;

/// One datagram to each of COUNT ports from BASE, without waiting for anything.
/// Paced a little (2 ms every 20 datagrams) so that a loaded machine does not lose part of
/// the flood in the container's TAP queue before netyard sees it: the test counts exactly.
const UDP_FLOOD: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dest, base, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sent = 0
for p in range(base, base + count):
    try:
        s.sendto(b"x", (dest, p))
        sent += 1
    except OSError:
        pass
    if sent % 20 == 0:
        time.sleep(0.002)
print(sent)
"#;

/// Sends hand-made broken frames to the gateway's MAC through an AF_PACKET socket: each class
/// is the egress drop reason it must be counted under, except `forged_source` (an IPv4 source
/// outside the network, 192.0.2.77): the switch drops it as `spoofed_ipv4` on a port with port
/// security, the gateway as `bad_address` when a trusted port lets it through. A sixth argument
/// sends only that class. Prints {class: frames sent}.
const INJECT: &str = r#"
import json, socket, struct, sys
ifname, gw_mac, src_ip, dst_ip = sys.argv[1:5]
only = sys.argv[5] if len(sys.argv) > 5 else None
mac = lambda s: bytes(int(x, 16) for x in s.split(":"))
src_mac = mac(open("/sys/class/net/%s/address" % ifname).read().strip())
gw = mac(gw_mac)

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ip4(proto, payload, ttl=64, frag=0, ver_ihl=0x45, total=None, src=src_ip, bad=False):
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", ver_ihl, 0, total, 0x4242, frag, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst_ip))
    c = csum(h) ^ (0x5555 if bad else 0)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload

def udp(sport, dport, data, length=None, bad=False, src=src_ip):
    real = 8 + len(data)
    length = real if length is None else length
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst_ip) + struct.pack("!BBH", 0, 17, real)
    h = struct.pack("!HHHH", sport, dport, real, 0)
    c = (csum(pseudo + h + data) or 0xffff) ^ (0x00ff if bad else 0)
    return struct.pack("!HHHH", sport, dport, length, c) + data

def icmp(t, code, rest):
    h = struct.pack("!BBH", t, code, 0) + rest
    return struct.pack("!BBH", t, code, csum(h)) + rest

cases = {
    "malformed": [
        ip4(17, udp(4000, 7, b"x"), total=300),
        ip4(17, udp(4000, 7, b"x"), ver_ihl=0x43),
        ip4(17, udp(4000, 7, b"x"), ver_ihl=0x65),
        ip4(17, b"\x0f\xa0\x00\x07"),
        ip4(17, udp(4000, 7, b"abc", length=200)),
        ip4(17, udp(4000, 7, b"abc", length=3)),
        ip4(1, b"\x08\x00"),
    ],
    "bad_checksum": [
        ip4(17, udp(4000, 7, b"x"), bad=True),
        ip4(17, udp(4000, 7, b"x", bad=True)),
        ip4(1, icmp(8, 0, b"\x00\x01\x00\x01abc")[:-1] + b"d"),
    ],
    "fragment": [
        ip4(17, udp(4000, 7, b"x" * 16), frag=0x2000),
        ip4(17, b"y" * 16, frag=0x0010),
    ],
    "unsupported": [
        ip4(253, b"junk"),
        ip4(1, icmp(13, 0, b"\x00" * 16)),
    ],
    "forged_source": [
        ip4(17, udp(4000, 7, b"x", src="192.0.2.77"), src="192.0.2.77"),
    ],
    "bad_address": [
        ip4(17, udp(4000, 0, b"x")),
    ],
    "ttl_expired": [
        ip4(17, udp(4000, 7, b"x"), ttl=1),
    ],
}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
sent = {}
for reason, frames in cases.items():
    if only is not None and reason != only:
        continue
    for _ in range(5):
        for f in frames:
            s.send(gw + src_mac + b"\x08\x00" + f)
            sent[reason] = sent.get(reason, 0) + 1
print(json.dumps(sent))
"#;

/// One network's egress state from `netyard flows --json`: (stats, flows).
fn egress(lab: &Lab, net: &str) -> (Value, Vec<Value>) {
    let v = lab.ny_json(&["flows", "--json"]);
    let row = v
        .as_array()
        .and_then(|a| a.iter().find(|r| r["network"] == net))
        .cloned()
        .unwrap_or_else(|| lab.fail(&format!("no network {net} in flows --json: {v}")));
    let flows = row["flows"].as_array().cloned().unwrap_or_default();
    (row["stats"].clone(), flows)
}

fn drop_count(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

/// Flows of `proto` from endpoint address `ip`.
fn flows_of<'a>(flows: &'a [Value], proto: &str, ip: &str) -> Vec<&'a Value> {
    flows
        .iter()
        .filter(|f| {
            f["protocol"] == proto
                && f["endpoint"]
                    .as_str()
                    .is_some_and(|e| e.split(':').next() == Some(ip))
        })
        .collect()
}

/// The outside namespace with a UDP echo server on `port`, waiting until it listens.
fn outside_with_echo(lab: &Lab, port: u16) -> Outside {
    let out = lab.outside();
    let server = lab.write_file("echo_server.py", ECHO_SERVER);
    let p = port.to_string();
    lab.bg_in(&out.ns, &["python3", &server, &p], "echo_server.log");
    let ready = wait_listening(&out.ns, port, Proto::Udp);
    assert!(ready, "the echo server in {} did not start", out.ns);
    out
}

fn allow_ping_sockets(lab: &Lab) {
    lab.set_ping_group_range("0 2147483647");
}

#[test]
fn udp_and_ping_reach_outside_and_closed_ports_fail_fast() {
    let lab = Lab::new();
    let out = outside_with_echo(&lab, 7);
    allow_ping_sockets(&lab);
    let Pair { sub, net, a, b } = lab.pair("eg", &[], &[]);
    let client = lab.write_file("udp_client.py", UDP_CLIENT);
    let big = lab.write_file("udp_big.py", UDP_BIG);
    let refused = lab.write_file("udp_refused.py", UDP_REFUSED);

    // One exchange from each endpoint (TAP and veth).
    py_ok(&lab, &a, &client, &[&out.ip, "7", "1"]);
    py_ok(&lab, &b, &client, &[&out.ip, "7", "1"]);

    // 200 flows from one endpoint, all answered, all in the table, assured. The 200 sockets are
    // open at once, so their ports are distinct; the earlier single exchange's port may be
    // reused by one of them (the kernel picks ephemeral ports at random), so count 200, not 201.
    let r = py_ok(&lab, &a, &client, &[&out.ip, "7", "200"]);
    let r: Value = serde_json::from_str(&r).unwrap_or(Value::Null);
    assert_eq!(r["ok"], 200, "{r}");
    let (stats, flows) = egress(&lab, &net);
    let mine = flows_of(&flows, "udp", &sub.ip(2));
    let dest = format!("{}:7", out.ip);
    let assured = mine
        .iter()
        .filter(|f| f["destination"] == dest.as_str() && f["state"] == "assured")
        .count();
    if assured < 200 {
        lab.fail(&format!(
            "expected at least 200 assured UDP flows of alpha to {dest}, found {assured}: \
             {stats}\n{flows:?}"
        ));
    }
    for f in &mine {
        assert!(num(f, "bytes_out") > 0 && num(f, "bytes_in") > 0, "{f}");
        assert!(num(f, "packets_in") >= 1, "{f}");
    }
    assert!(num(&stats, "flows_created") >= 201, "{stats}");
    assert_eq!(stats["enabled"], true, "{stats}");
    assert_eq!(stats["max_flows_per_endpoint"], 512, "{stats}");

    // A burst of same-sized datagrams of one flow (one UDP GSO send per run) arrives as the
    // same datagrams: every echo whole, none merged or repeated, most of them back.
    let burst = lab.write_file("udp_burst.py", UDP_BURST);
    let got = py_ok(&lab, &a, &burst, &[&out.ip, "7"]);
    let n: u32 = got
        .strip_prefix("got ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= 50, "a burst of 100 datagrams: {got}");

    // A reply larger than the MTU comes back fragmented and whole.
    assert_eq!(py_ok(&lab, &b, &big, &[&out.ip, "7", "5000"]), "ok");

    // ping through unprivileged ICMP sockets, from both kinds of endpoint.
    lab.assert_ping(&a, &out.ip);
    lab.assert_ping(&b, &out.ip);
    let (_, flows) = egress(&lab, &net);
    let pings = flows_of(&flows, "icmp", &sub.ip(3));
    assert!(
        pings
            .iter()
            .any(|f| f["destination"] == format!("{}:0", out.ip).as_str()
                && f["state"] == "assured"
                && num(f, "packets_in") >= 3),
        "{pings:?}"
    );

    // A closed port fails fast with ECONNREFUSED (ICMP port unreachable relayed).
    let o = py(&b, &refused, &[&out.ip, "9"], Duration::from_secs(20));
    let txt = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let secs: f64 = txt
        .strip_prefix("refused ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| lab.fail(&format!("UDP to a closed port: {}", show(&o))));
    assert!(secs < 2.0, "refused only after {secs} s");
    let (stats, _) = egress(&lab, &net);
    assert!(num(&stats, "icmp_errors_sent") >= 1, "{stats}");

    // A host nobody answers ARP for: ping tells the truth (unreachable), it does not hang.
    let t = Instant::now();
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &a,
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "8",
            &out.absent_ip,
        ],
        Duration::from_secs(30),
    );
    let txt = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!o.status.success(), "nobody holds {}: {txt}", out.absent_ip);
    assert!(
        txt.contains("Unreachable"),
        "ping to an absent host should report it unreachable:\n{}",
        show(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(8));

    // Nothing was dropped for a bad reason along the way.
    let (stats, _) = egress(&lab, &net);
    for reason in [
        "malformed",
        "bad_checksum",
        "fragment",
        "bad_address",
        "endpoint_flow_cap",
        "flow_table_full",
        "icmp_not_permitted",
        "host_socket_error",
        "reply_queue_full",
    ] {
        assert_eq!(drop_count(&stats, reason), 0, "{reason}: {stats}");
    }
    assert!(lab.daemon_running());
}

#[test]
fn internal_network_has_no_egress() {
    let lab = Lab::new();
    let out = outside_with_echo(&lab, 7);
    allow_ping_sockets(&lab);
    let sub = Subnet::random();
    let net = lab.network("inner", &sub, &["--internal"]);
    let a = lab.ns("a");
    lab.attach(&net, &a, "alpha", &[]);
    let client = lab.write_file("udp_client.py", UDP_CLIENT);

    // The gateway itself still answers.
    lab.assert_ping(&a, &sub.ip(1));
    let o = py(&a, &client, &[&out.ip, "7", "1"], Duration::from_secs(30));
    assert!(
        !o.status.success(),
        "UDP left an internal network: {}",
        show(&o)
    );
    assert!(!lab.ping(&a, &out.ip), "ping left an internal network");

    let (stats, flows) = egress(&lab, &net);
    assert_eq!(stats["enabled"], false, "{stats}");
    assert!(flows.is_empty(), "{flows:?}");
    // At least 10 UDP tries (one a second) and 3 pings.
    assert!(drop_count(&stats, "egress_disabled") >= 13, "{stats}");
    assert_eq!(num(&stats, "packets_out"), 0, "{stats}");
}

#[test]
fn bad_input_and_flow_caps_leave_other_flows_working() {
    let lab = Lab::new();
    let out = outside_with_echo(&lab, 7);
    // ping_group_range is left at the namespace's default ("1 0": nobody).
    let sub = Subnet::random();
    let net = lab.network("rough", &sub, &[]);
    let a = lab.ns("a");
    let b = lab.ns("b");
    let t = lab.ns("t");
    let ep = lab.attach(&net, &a, "alpha", &[]);
    lab.attach(&net, &b, "beta", &[]);
    // A trusted endpoint (no port security) gets a forged source past the switch, so the
    // gateway's own check of it stays covered.
    let ept = lab.attach(&net, &t, "trusty", &["--trusted"]);
    let client = lab.write_file("udp_client.py", UDP_CLIENT);
    let inject = lab.write_file("inject.py", INJECT);
    let flood = lab.write_file("udp_flood.py", UDP_FLOOD);

    // A flow of alpha's that must survive everything below.
    py_ok(&lab, &a, &client, &[&out.ip, "7", "1", "40000"]);

    // Broken frames: each counted under its reason, nothing else disturbed. The forged source
    // never reaches the gateway from alpha's port: the switch counts it as spoofed_ipv4.
    let ifname = ep["ifname"].as_str().unwrap_or("eth0").to_string();
    let gw_mac = gateway_mac(&sub.ip(1));
    let spoofed_before = common::drops(&lab.counters(&net, "alpha"), "spoofed_ipv4");
    let sent = py_ok(&lab, &a, &inject, &[&ifname, &gw_mac, &sub.ip(2), &out.ip]);
    let sent: Value = serde_json::from_str(&sent).unwrap_or(Value::Null);
    let (stats, _) = egress(&lab, &net);
    let sent = sent.as_object().cloned().unwrap_or_default();
    for (reason, n) in &sent {
        let n = n.as_u64().unwrap_or(0);
        if reason == "forged_source" {
            let n = n + spoofed_before;
            let mut got = 0;
            common::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
                got = common::drops(&lab.counters(&net, "alpha"), "spoofed_ipv4");
                got >= n
            });
            if got != n {
                lab.fail(&format!(
                    "alpha's port counted {got} spoofed_ipv4, {n} expected (it had \
                     {spoofed_before} before the frames with a forged IPv4 source)"
                ));
            }
            continue;
        }
        let got = drop_count(&stats, reason);
        if got < n {
            lab.fail(&format!(
                "sent {n} frames for {reason}, counted {got}: {stats}"
            ));
        }
    }
    // Only the frame with destination port 0 was the gateway's bad_address: the forged ones
    // never got there.
    let bad_from_alpha = sent.get("bad_address").and_then(Value::as_u64).unwrap_or(0);
    assert_eq!(drop_count(&stats, "bad_address"), bad_from_alpha, "{stats}");
    // From the trusted port the forged source passes the switch and the gateway drops it.
    let ifname_t = ept["ifname"].as_str().unwrap_or("eth0").to_string();
    let ip_t = ept["ip"].as_str().unwrap_or_default().to_string();
    let sent_t = py_ok(
        &lab,
        &t,
        &inject,
        &[&ifname_t, &gw_mac, &ip_t, &out.ip, "forged_source"],
    );
    let sent_t: Value = serde_json::from_str(&sent_t).unwrap_or(Value::Null);
    let n_t = sent_t["forged_source"].as_u64().unwrap_or(0);
    assert!(n_t > 0, "{sent_t}");
    let counted = common::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        drop_count(&egress(&lab, &net).0, "bad_address") >= bad_from_alpha + n_t
    });
    let (stats, _) = egress(&lab, &net);
    if !counted {
        lab.fail(&format!(
            "{n_t} forged-source frames from the trusted port: bad_address is not \
             {bad_from_alpha} + {n_t}: {stats}"
        ));
    }
    let tc = lab.counters(&net, "trusty");
    assert_eq!(common::drops(&tc, "spoofed_ipv4"), 0, "trusted port: {tc}");
    assert!(lab.daemon_running(), "the daemon died on malformed input");
    py_ok(&lab, &a, &client, &[&out.ip, "7", "1", "40000"]);
    py_ok(&lab, &b, &client, &[&out.ip, "7", "3"]);

    // ICMP datagram sockets are refused (the namespace's default ping_group_range): the daemon,
    // root here, pings through a raw socket instead, from both endpoints at once (each flow
    // has its own echo identifier on the raw socket). Without CAP_NET_RAW the ping is a
    // counted drop: tests/rootless.rs.
    std::thread::scope(|s| {
        let pa = s.spawn(|| lab.ping(&a, &out.ip));
        let pb = s.spawn(|| lab.ping(&b, &out.ip));
        let (ra, rb) = (pa.join().unwrap_or(false), pb.join().unwrap_or(false));
        if !(ra && rb) {
            lab.fail(&format!(
                "ping through the raw ICMP socket: alpha {ra}, beta {rb}"
            ));
        }
    });
    let (stats, flows) = egress(&lab, &net);
    assert_eq!(drop_count(&stats, "icmp_not_permitted"), 0, "{stats}");
    for ip in [sub.ip(2), sub.ip(3)] {
        assert!(!flows_of(&flows, "icmp", &ip).is_empty(), "{ip}: {flows:?}");
    }

    // A flood to 1000 ports: alpha reaches its cap (512 flows), the rest is counted.
    let before = drop_count(&stats, "endpoint_flow_cap");
    let n = py_ok(&lab, &a, &flood, &[&out.ip, "20000", "1000"]);
    assert_eq!(n, "1000");
    let capped = common::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let (stats, _) = egress(&lab, &net);
        drop_count(&stats, "endpoint_flow_cap") >= before + 1000 - 512
    });
    let (stats, flows) = egress(&lab, &net);
    assert!(capped, "the per-endpoint cap was not counted: {stats}");
    // Its cap counts every protocol: the UDP flows and the ping's ICMP flow above.
    assert_eq!(
        flows_of(&flows, "udp", &sub.ip(2)).len() + flows_of(&flows, "icmp", &sub.ip(2)).len(),
        512,
        "alpha holds exactly its cap of flows: {stats}"
    );
    assert!(lab.daemon_running(), "the daemon died in the flood");

    // Alpha's established flow and beta's new ones still work.
    py_ok(&lab, &a, &client, &[&out.ip, "7", "1", "40000"]);
    let r = py_ok(&lab, &b, &client, &[&out.ip, "7", "20"]);
    assert!(r.contains("\"ok\": 20"), "{r}");
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

#[test]
fn idle_flows_expire_and_close_their_sockets() {
    let lab = Lab::new();
    let out = lab.outside();
    allow_ping_sockets(&lab);
    let sub = Subnet::random();
    let net = lab.network("idle", &sub, &[]);
    let a = lab.ns("a");
    lab.attach(&net, &a, "alpha", &[]);
    let refused = lab.write_file("udp_refused.py", UDP_REFUSED);

    // An unreplied UDP flow (a closed port answers only with ICMP) and an ICMP flow: both
    // expire after 30 s idle.
    let o = py(&a, &refused, &[&out.ip, "9"], Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("refused"),
        "{}",
        show(&o)
    );
    lab.assert_ping(&a, &out.ip);
    let started = Instant::now();
    let (_, flows) = egress(&lab, &net);
    let udp = flows_of(&flows, "udp", &sub.ip(2));
    assert_eq!(udp.len(), 1, "{flows:?}");
    assert_eq!(udp[0]["state"], "unreplied", "{flows:?}");
    assert!(num(udp[0], "expires_in_secs") <= 30, "{flows:?}");
    assert_eq!(flows_of(&flows, "icmp", &sub.ip(2)).len(), 1, "{flows:?}");
    let host_sockets = || {
        cmd_ok(&["ip", "netns", "exec", &lab.host.name, "ss", "-Huan"])
            .lines()
            .filter(|l| l.contains(&format!("{}:9", out.ip)))
            .count()
    };
    assert_eq!(host_sockets(), 1, "the flow's host socket");

    let gone = common::wait_until(Duration::from_secs(45), Duration::from_millis(500), || {
        egress(&lab, &net).1.is_empty()
    });
    let (stats, flows) = egress(&lab, &net);
    assert!(gone, "flows still there after 45 s: {flows:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(28),
        "flows expired early ({:?})",
        started.elapsed()
    );
    assert_eq!(num(&stats, "flows_expired"), 2, "{stats}");
    assert_eq!(num(&stats, "flows"), 0, "{stats}");
    assert!(
        common::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            host_sockets() == 0
        }),
        "the expired flow's host socket is still open"
    );
}
