//! Issue 11 end to end: one container must not steal from its neighbours.
//!
//! - A spoofing container's forged frames (a neighbour's source IPv4 address, the neighbour's
//!   MAC, ARP replies claiming the neighbour's address) are dropped and counted on its port,
//!   while the neighbour's egress keeps working and the API keeps answering; attached
//!   `--trusted`, the same frames pass (and its flows still count against its own MAC).
//! - MAC theft: a container that takes its neighbour's MAC and address receives nothing meant
//!   for the neighbour, who keeps receiving.
//! - Another network's subnet and the host's loopback are refused locally (ICMP unreachable,
//!   counted) and nothing leaves on the host's uplink.
//! - A container router attached `--trusted` forwards for a subnet behind it (and does not
//!   when it is not trusted).
//! - `inspect` and `ps --json` show `port_security`.
//!
//! Dual stack is not tested here: netyard has no IPv6 yet (no IPv6 addresses, egress or NDP
//! towards the gateway), so there is nothing to keep working. When it comes, a test belongs
//! here: a dual-stack container's IPv6 traffic (its assigned address, link-local, DAD from
//! `::`) passing its secured port while forged IPv6 sources and NDP are `spoofed_ipv6` and
//! `spoofed_ndp`.
//!
//! Every test builds its own lab (tests/common/mod.rs): a daemon in a fresh "host" namespace,
//! container namespaces, and for egress an "outside" namespace on a veth link (198.18.X.0/24);
//! frames are only ever sent inside these namespaces. Forged frames are written with python
//! AF_PACKET sockets on the container's eth0.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    cmd, cmd_ok, drops, gateway_mac, py, py_ok_within, read_pcap, show, tcpdump_bg, wait_listening,
    wait_until, Bg, Lab, Outside, Proto, Subnet, ECHO_SERVER, UDP_CLIENT,
};
use serde_json::Value;

/// Writes forged Ethernet frames on an interface with an AF_PACKET socket. Usage:
///
/// - `forge.py IFNAME udp ETH_SRC ETH_DST IP_SRC IP_DST DPORT COUNT BASE_SPORT TAG`: COUNT
///   IPv4/UDP datagrams from source ports BASE_SPORT.., each carrying "TAG N";
/// - `forge.py IFNAME arp ETH_SRC ETH_DST SENDER_MAC SENDER_IP TARGET_MAC TARGET_IP COUNT`:
///   COUNT ARP replies "SENDER_IP is-at SENDER_MAC".
///
/// Paced (2 ms every 20 frames) so a loaded machine does not lose part of them in the TAP's
/// queue before netyard reads them: the tests count exactly. Prints the number sent.
const FORGE: &str = r#"
import socket, struct, sys, time
ifname, kind = sys.argv[1], sys.argv[2]
a = sys.argv[3:]
mac = lambda s: bytes(int(x, 16) for x in s.split(":"))
ip = socket.inet_aton

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def udp_frame(eth_src, eth_dst, src, dst, sport, dport, data):
    ulen = 8 + len(data)
    pseudo = ip(src) + ip(dst) + struct.pack("!BBH", 0, 17, ulen)
    u = struct.pack("!HHHH", sport, dport, ulen, 0)
    c = csum(pseudo + u + data) or 0xffff
    u = struct.pack("!HHHH", sport, dport, ulen, c) + data
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 0x4242, 0, 64, 17, 0, ip(src), ip(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return mac(eth_dst) + mac(eth_src) + b"\x08\x00" + h + u

def arp_reply(eth_src, eth_dst, smac, sip, tmac, tip):
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac(smac) + ip(sip) + mac(tmac) + ip(tip)
    return mac(eth_dst) + mac(eth_src) + b"\x08\x06" + body + bytes(18)

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))

def send(frame):
    for _ in range(1000):
        try:
            s.send(frame)
            return
        except OSError as e:
            if e.errno in (11, 105):  # EAGAIN, ENOBUFS: the queue is full, retry
                time.sleep(0.001)
                continue
            raise
    raise SystemExit("could not send a frame")

if kind == "udp":
    eth_src, eth_dst, src, dst = a[0:4]
    dport, count, base = int(a[4]), int(a[5]), int(a[6])
    tag = a[7]
    frames = [udp_frame(eth_src, eth_dst, src, dst, base + i, dport, ("%s %d" % (tag, i)).encode())
              for i in range(count)]
elif kind == "arp":
    eth_src, eth_dst, smac, sip, tmac, tip = a[0:6]
    frames = [arp_reply(eth_src, eth_dst, smac, sip, tmac, tip)] * int(a[6])
else:
    raise SystemExit("unknown kind " + kind)
for i, f in enumerate(frames):
    send(f)
    if (i + 1) % 20 == 0:
        time.sleep(0.002)
print(len(frames))
"#;

/// A UDP listener: prints "SOURCE_IP:PORT PAYLOAD" for every datagram on PORT.
const SINK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(65535)
    print("%s:%d %s" % (addr[0], addr[1], data.decode(errors="replace")), flush=True)
"#;

/// Tries to reach DEST: `udp PORT` (a connected UDP socket sends and waits for an answer),
/// `tcp PORT` (connect). Prints {"result": "ok" | "timeout" | errno name, "secs": elapsed}.
const PROBE: &str = r#"
import errno, json, socket, sys, time
dest, proto, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.time()
res = "ok"
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
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

/// Sends forged frames with [`FORGE`] from `ns`'s eth0; returns how many were sent.
fn forge(lab: &Lab, ns: &str, args: &[&str]) -> u64 {
    let script = lab.write_file("forge.py", FORGE);
    let mut a = vec!["eth0"];
    a.extend_from_slice(args);
    let out = py_ok_within(lab, ns, &script, &a, Duration::from_secs(120));
    out.parse()
        .unwrap_or_else(|_| lab.fail(&format!("forge.py {args:?} printed {out:?}")))
}

/// A string field of a JSON value.
fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// The outside namespace with a UDP echo server on port 7 and a [`SINK`] on 9999 (its log:
/// `sink.log`).
fn outside_with_servers(lab: &Lab) -> Outside {
    let out = lab.outside();
    let echo = lab.write_file("echo_server.py", ECHO_SERVER);
    let sink = lab.write_file("sink.py", SINK);
    lab.bg_in(&out.ns, &["python3", &echo, "7"], "echo_server.log");
    lab.bg_in(&out.ns, &["python3", &sink, "9999"], "sink.log");
    for port in [7, 9999] {
        assert!(
            wait_listening(&out.ns, port, Proto::Udp),
            "the UDP server on port {port} in {} did not start",
            out.ns
        );
    }
    out
}

/// Lines of a lab file (a background process's log) containing `needle`.
fn lines_with(lab: &Lab, file: &str, needle: &str) -> usize {
    std::fs::read_to_string(lab.dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// One network's row of `flows --json`: (stats, flows).
fn egress(lab: &Lab, net: &str) -> (Value, Vec<Value>) {
    let row = common::flows_row(lab, net);
    if row.is_null() {
        lab.fail(&format!("no network {net} in flows --json"));
    }
    let flows = row["flows"].as_array().cloned().unwrap_or_default();
    (row["stats"].clone(), flows)
}

/// Starts tcpdump (`-U --immediate-mode`, then `filter`) on `ifname` in `ns` writing to
/// `DIR/<name>.pcap`. Stop it with [`Bg::stop`], then [`pcap_text`].
fn capture(lab: &Lab, ns: &str, ifname: &str, name: &str, filter: &[&str]) -> (Bg, PathBuf) {
    let file = lab.dir.join(format!("{name}.pcap"));
    let f = file.to_string_lossy();
    let mut args = vec!["-U", "--immediate-mode", "-Z", "root", "-w", &f];
    args.extend_from_slice(filter);
    let bg = tcpdump_bg(
        ns,
        ifname,
        &args,
        &lab.dir.join(format!("{name}.tcpdump.log")),
    );
    (bg, file)
}

/// A capture file as text ([`read_pcap`]), lower case.
fn pcap_text(file: &Path) -> String {
    read_pcap(file).to_lowercase()
}

/// The fdb row of `mac` on `net`: the port name that owns it, if any.
fn fdb_port(lab: &Lab, net: &str, mac: &str) -> Option<String> {
    let fdb = lab.ny_json(&["fdb", net, "--json"]);
    fdb.as_array()?
        .iter()
        .find(|r| {
            r["mac"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(mac))
        })
        .map(|r| s(r, "port"))
}

/// The counters of `name` on `net` once `reason` reached `want` (waiting up to 10 s: the last
/// frames may still be in the TAP's queue when the sender exits).
fn wait_drops(lab: &Lab, net: &str, name: &str, reason: &str, want: u64) -> Value {
    let mut c = Value::Null;
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        c = lab.counters(net, name);
        drops(&c, reason) >= want
    });
    c
}

/// `ip -s link show eth0` in `ns`, for failure messages (a TAP's queue drops show there).
fn link_stats(ns: &str) -> String {
    let o = cmd(
        &["ip", "-n", ns, "-s", "link", "show", "dev", "eth0"],
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs the UDP client from `ns` to the outside echo server with `n` flows; fails the test
/// unless every one was answered.
fn udp_exchange(lab: &Lab, ns: &str, out: &Outside, n: u32, when: &str) {
    let client = lab.write_file("udp_client.py", UDP_CLIENT);
    let o = py(
        ns,
        &client,
        &[&out.ip, "7", &n.to_string()],
        Duration::from_secs(60),
    );
    if !o.status.success() {
        lab.fail(&format!(
            "{when}: {n} UDP flows from {ns} to the outside echo server did not all get \
             their replies:\n{}\nflows: {}",
            show(&o),
            lab.ny_ok(&["flows", "--json"])
        ));
    }
}

const SPOOF_REASONS: [&str; 6] = [
    "spoofed_mac",
    "spoofed_ipv4",
    "spoofed_arp",
    "spoofed_ipv6",
    "spoofed_ndp",
    "vlan_tagged",
];

/// What one round of the attack sends (see [`attack_round`]).
const FORGED_IP_DATAGRAMS: u64 = 600;
const FORGED_MAC_DATAGRAMS: u64 = 50;
const FORGED_MAC_ARPS: u64 = 20;
const FORGED_ARPS: u64 = 30;

/// Everything the attacker needs to know about its victim.
struct Target {
    attacker_mac: String,
    victim_mac: String,
    victim_ip: String,
    gw_mac: String,
    gw_ip: String,
    sink_ip: String,
}

/// Counts of forged frames sent, by the drop reason a secured port files them under.
#[derive(Default, Debug, Clone, Copy)]
struct Sent {
    spoofed_ipv4: u64,
    spoofed_mac: u64,
    spoofed_arp: u64,
}

/// One round of the spoofing container's attack from `ns`, tagging its datagrams with `tag`:
/// (a) 600 UDP datagrams to the sink with the victim's source address (distinct source ports,
/// the flow-cap starvation attack: each would be a flow); (b) 50 datagrams and 20 broadcast
/// ARP replies from the victim's MAC (what would move the victim's MAC to the attacker's
/// port); (c) 30 ARP replies from the attacker's MAC claiming the victim's address, half
/// broadcast (gratuitous), half to the gateway.
fn attack_round(lab: &Lab, ns: &str, t: &Target, tag: &str) -> Sent {
    let bcast = "ff:ff:ff:ff:ff:ff";
    let zero = "00:00:00:00:00:00";
    let n = |x: u64| x.to_string();
    let mut sent = Sent::default();
    sent.spoofed_ipv4 += forge(
        lab,
        ns,
        &[
            "udp",
            &t.attacker_mac,
            &t.gw_mac,
            &t.victim_ip,
            &t.sink_ip,
            "9999",
            &n(FORGED_IP_DATAGRAMS),
            "20000",
            &format!("{tag}-ip"),
        ],
    );
    sent.spoofed_mac += forge(
        lab,
        ns,
        &[
            "udp",
            &t.victim_mac,
            &t.gw_mac,
            &t.victim_ip,
            &t.sink_ip,
            "9999",
            &n(FORGED_MAC_DATAGRAMS),
            "30000",
            &format!("{tag}-mac"),
        ],
    );
    sent.spoofed_mac += forge(
        lab,
        ns,
        &[
            "arp",
            &t.victim_mac,
            bcast,
            &t.victim_mac,
            &t.victim_ip,
            zero,
            &t.victim_ip,
            &n(FORGED_MAC_ARPS),
        ],
    );
    let half = FORGED_ARPS / 2;
    sent.spoofed_arp += forge(
        lab,
        ns,
        &[
            "arp",
            &t.attacker_mac,
            bcast,
            &t.attacker_mac,
            &t.victim_ip,
            zero,
            &t.victim_ip,
            &n(half),
        ],
    );
    sent.spoofed_arp += forge(
        lab,
        ns,
        &[
            "arp",
            &t.attacker_mac,
            &t.gw_mac,
            &t.attacker_mac,
            &t.victim_ip,
            &t.gw_mac,
            &t.gw_ip,
            &n(FORGED_ARPS - half),
        ],
    );
    sent
}

#[test]
fn a_spoofing_container_is_dropped_and_counted_and_cannot_starve_its_neighbour() {
    let lab = Lab::new();
    let out = outside_with_servers(&lab);
    let sub = Subnet::random();
    let net = lab.network("sec", &sub, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ea = lab.attach(&net, &na, "mallory", &[]);
    let eb = lab.attach(&net, &nb, "victim", &["--kind", "veth"]);
    for e in [&ea, &eb] {
        assert_eq!(e["port_security"], true, "secured by default: {e}");
    }
    let t = Target {
        attacker_mac: s(&ea, "mac").to_lowercase(),
        victim_mac: s(&eb, "mac").to_lowercase(),
        victim_ip: s(&eb, "ip"),
        gw_mac: gateway_mac(&sub.ip(1)),
        gw_ip: sub.ip(1),
        sink_ip: out.ip.clone(),
    };

    // The victim works before the attack.
    udp_exchange(&lab, &nb, &out, 5, "before the attack");
    let (stats0, _) = egress(&lab, &net);

    // The victim's side of the link: any ARP reply that claims its address reaches it there.
    let (mut cap_b, pcap_b) = capture(&lab, &nb, "eth0", "victim", &["arp"]);

    // The attack (three rounds, ~4 s), while the victim opens flows and the API is asked
    // every 100 ms how it is.
    let rounds = 3;
    let attacking = AtomicBool::new(true);
    let mut sent = Sent::default();
    let mut api_worst = Duration::ZERO;
    let mut api_calls = 0;
    std::thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            let mut total = Sent::default();
            for r in 0..rounds {
                let s = attack_round(&lab, &na, &t, &format!("forged{r}"));
                total.spoofed_ipv4 += s.spoofed_ipv4;
                total.spoofed_mac += s.spoofed_mac;
                total.spoofed_arp += s.spoofed_arp;
                std::thread::sleep(Duration::from_millis(300));
            }
            attacking.store(false, Ordering::SeqCst);
            total
        });
        let api = scope.spawn(|| {
            let (mut worst, mut calls) = (Duration::ZERO, 0);
            while attacking.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                let o = lab.ny(&["ps"]);
                let took = t0.elapsed();
                if !o.status.success() {
                    return Err(format!(
                        "`netyard ps` failed during the attack:\n{}",
                        show(&o)
                    ));
                }
                worst = worst.max(took);
                calls += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok((worst, calls))
        });
        // During the attack: the victim's neighbour cache is emptied (its ARP for the gateway
        // then shows the capture works) and it opens 50 flows, all answered.
        std::thread::sleep(Duration::from_millis(200));
        cmd_ok(&["ip", "-n", &nb, "neigh", "flush", "all"]);
        udp_exchange(&lab, &nb, &out, 50, "during the attack");
        sent = attacker.join().expect("the attacker thread");
        match api.join().expect("the API thread") {
            Ok((w, c)) => (api_worst, api_calls) = (w, c),
            Err(e) => lab.fail(&e),
        }
    });
    eprintln!("attack sent {sent:?}; `netyard ps` answered {api_calls} times, worst {api_worst:?}");
    assert!(api_calls > 0);
    if api_worst > Duration::from_secs(3) {
        lab.fail(&format!(
            "`netyard ps` took {api_worst:?} during the attack"
        ));
    }
    assert_eq!(
        sent.spoofed_ipv4,
        rounds * FORGED_IP_DATAGRAMS,
        "the forger's count"
    );

    // Every forged frame was dropped on the attacker's port and counted by reason.
    let mut c = Value::Null;
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        c = lab.counters(&net, "mallory");
        drops(&c, "spoofed_ipv4") >= sent.spoofed_ipv4
            && drops(&c, "spoofed_mac") >= sent.spoofed_mac
            && drops(&c, "spoofed_arp") >= sent.spoofed_arp
    });
    for (reason, n) in [
        ("spoofed_ipv4", sent.spoofed_ipv4),
        ("spoofed_mac", sent.spoofed_mac),
        ("spoofed_arp", sent.spoofed_arp),
    ] {
        if drops(&c, reason) != n {
            lab.fail(&format!(
                "mallory sent {n} frames for {reason}, its port counted {}: {c}\n\
                 its eth0: {}",
                drops(&c, reason),
                link_stats(&na)
            ));
        }
    }
    let cb = lab.counters(&net, "victim");
    for reason in SPOOF_REASONS {
        assert_eq!(drops(&cb, reason), 0, "the victim's port: {cb}");
    }

    // The victim still works, with a quota of its own: 100 new flows, all answered.
    udp_exchange(&lab, &nb, &out, 100, "after the attack");
    let (stats, flows) = egress(&lab, &net);
    let sink = format!("{}:9999", out.ip);
    let forged_flows: Vec<&Value> = flows
        .iter()
        .filter(|f| f["destination"] == sink.as_str() || f["endpoint_mac"] == t.attacker_mac)
        .collect();
    if !forged_flows.is_empty() {
        lab.fail(&format!(
            "forged frames made flows: {forged_flows:?}\nstats: {stats}"
        ));
    }
    for reason in ["endpoint_flow_cap", "flow_table_full", "host_socket_cap"] {
        assert_eq!(
            drops(&stats, reason),
            drops(&stats0, reason),
            "{reason}: {stats}"
        );
    }
    // Nothing forged reached the outside.
    assert_eq!(
        lines_with(&lab, "sink.log", "forged"),
        0,
        "the sink received forged datagrams"
    );
    // The victim's MAC stayed on the victim's port.
    let port = fdb_port(&lab, &net, &t.victim_mac);
    if port.as_deref() != Some("victim") {
        lab.fail(&format!(
            "the victim's MAC {} is on port {port:?}, not victim",
            t.victim_mac
        ));
    }
    // No forged ARP reply reached the victim; its own ARP exchange with the gateway did (the
    // capture was working).
    wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        pcap_text(&pcap_b).contains(&format!("reply {} is-at", t.gw_ip))
    });
    cap_b.stop(Duration::from_secs(5));
    let text = pcap_text(&pcap_b);
    if !text.contains(&format!("reply {} is-at", t.gw_ip)) {
        lab.fail(&format!(
            "the capture on the victim did not even see its ARP exchange with the gateway:\n{text}"
        ));
    }
    if text.contains(&format!("reply {} is-at", t.victim_ip)) {
        lab.fail(&format!("a forged ARP reply reached the victim:\n{text}"));
    }
    assert!(lab.daemon_running());

    // The same attacker attached --trusted: the same frames pass.
    lab.ny_ok(&["detach", &net, "mallory"]);
    let ea = lab.attach(&net, &na, "mallory", &["--trusted"]);
    assert_eq!(ea["port_security"], false, "trusted: {ea}");
    assert_eq!(
        s(&ea, "mac").to_lowercase(),
        t.attacker_mac,
        "mallory came back with another MAC"
    );
    let (stats1, _) = egress(&lab, &net);
    let (mut cap_b, pcap_b) = capture(&lab, &nb, "eth0", "victim2", &["arp"]);

    // (a) first: the forged source addresses pass the switch and reach the outside, but the
    // flows count against the MAC that sent them (the attacker's), never the victim's.
    let n = forge(
        &lab,
        &na,
        &[
            "udp",
            &t.attacker_mac,
            &t.gw_mac,
            &t.victim_ip,
            &t.sink_ip,
            "9999",
            &FORGED_IP_DATAGRAMS.to_string(),
            "20000",
            "trusted-ip",
        ],
    );
    let cap = 512;
    let capped = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let (st, _) = egress(&lab, &net);
        drops(&st, "endpoint_flow_cap") >= drops(&stats1, "endpoint_flow_cap") + n - cap
    });
    let (stats, flows) = egress(&lab, &net);
    if !capped {
        lab.fail(&format!(
            "{n} forged-source datagrams from the trusted attacker: endpoint_flow_cap did not \
             grow by {}: before {stats1}, after {stats}",
            n - cap
        ));
    }
    let by_attacker: Vec<&Value> = flows
        .iter()
        .filter(|f| f["endpoint_mac"] == t.attacker_mac)
        .collect();
    assert_eq!(
        by_attacker.len() as u64,
        cap,
        "the attacker's MAC holds exactly its cap of flows: {stats}"
    );
    assert!(
        by_attacker
            .iter()
            .all(|f| s(f, "endpoint").starts_with(&format!("{}:", t.victim_ip))),
        "the attacker's flows carry the victim's address: {by_attacker:?}"
    );
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lines_with(&lab, "sink.log", "trusted-ip") as u64 >= cap
    });
    if !got {
        lab.fail(&format!(
            "the sink got {} of the trusted attacker's {cap} admitted datagrams",
            lines_with(&lab, "sink.log", "trusted-ip")
        ));
    }
    // The victim's own quota is untouched: 100 new flows.
    udp_exchange(
        &lab,
        &nb,
        &out,
        100,
        "after the trusted attacker's forged sources",
    );

    // (b) and (c): the victim's MAC and ARP replies claiming the victim's address pass too.
    let n_mac = forge(
        &lab,
        &na,
        &[
            "udp",
            &t.victim_mac,
            &t.gw_mac,
            &t.victim_ip,
            &t.sink_ip,
            "9999",
            "20",
            "31000",
            "trusted-mac",
        ],
    );
    let n_arp = forge(
        &lab,
        &na,
        &[
            "arp",
            &t.attacker_mac,
            "ff:ff:ff:ff:ff:ff",
            &t.attacker_mac,
            &t.victim_ip,
            "00:00:00:00:00:00",
            &t.victim_ip,
            "5",
        ],
    );
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lines_with(&lab, "sink.log", "trusted-mac") as u64 >= n_mac
    });
    if !got {
        lab.fail(&format!(
            "the sink got {} of the {n_mac} datagrams sent from the victim's MAC by the \
             trusted attacker",
            lines_with(&lab, "sink.log", "trusted-mac")
        ));
    }
    let claim = format!("reply {} is-at {}", t.victim_ip, t.attacker_mac);
    let seen = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        pcap_text(&pcap_b).matches(&claim).count() as u64 >= n_arp
    });
    cap_b.stop(Duration::from_secs(5));
    if !seen {
        lab.fail(&format!(
            "the trusted attacker's {n_arp} ARP replies ({claim}) did not reach the victim:\n{}",
            pcap_text(&pcap_b)
        ));
    }
    let c = lab.counters(&net, "mallory");
    for reason in SPOOF_REASONS {
        assert_eq!(
            drops(&c, reason),
            0,
            "the trusted port dropped {reason}: {c}"
        );
    }
    assert!(lab.daemon_running());
}

#[test]
fn a_mac_thief_receives_nothing_meant_for_its_victim() {
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("theft", &sub, &[]);
    let (na, nb, nc) = (lab.ns("a"), lab.ns("b"), lab.ns("c"));
    let ea = lab.attach(&net, &na, "thief", &[]);
    let eb = lab.attach(&net, &nb, "victim", &[]);
    let ec = lab.attach(&net, &nc, "sender", &["--kind", "veth"]);
    let (mac_b, ip_b) = (s(&eb, "mac").to_lowercase(), s(&eb, "ip"));
    let (mac_c, ip_c) = (s(&ec, "mac").to_lowercase(), s(&ec, "ip"));
    assert_eq!(
        ea["port_security"], true,
        "the thief's port is secured: {ea}"
    );
    lab.assert_ping(&nc, &ip_b);

    // UDP listeners on port 5555 in the thief and the victim.
    let sink = lab.write_file("sink.py", SINK);
    lab.bg_in(&na, &["python3", &sink, "5555"], "thief_sink.log");
    lab.bg_in(&nb, &["python3", &sink, "5555"], "victim_sink.log");
    for ns in [&na, &nb] {
        assert!(wait_listening(ns, 5555, Proto::Udp), "listener in {ns}");
    }

    // The thief takes the victim's MAC and address.
    cmd_ok(&["ip", "-n", &na, "link", "set", "eth0", "address", &mac_b]);
    cmd_ok(&["ip", "-n", &na, "addr", "flush", "dev", "eth0"]);
    let cidr_b = format!("{ip_b}/{}", eb["prefix_len"]);
    cmd_ok(&["ip", "-n", &na, "addr", "add", &cidr_b, "dev", "eth0"]);
    let (mut cap, pcap) = capture(&lab, &na, "eth0", "thief", &[]);
    let before = lab.counters(&net, "thief");

    // Five rounds: the thief announces itself (gratuitous ARP from the victim's MAC, a ping
    // that makes its kernel ARP for the sender), the sender forgets its neighbours and sends
    // the victim 4 datagrams and a ping.
    let mut pings_ok = 0;
    for round in 0..5 {
        forge(
            &lab,
            &na,
            &[
                "arp",
                &mac_b,
                "ff:ff:ff:ff:ff:ff",
                &mac_b,
                &ip_b,
                "00:00:00:00:00:00",
                &ip_b,
                "10",
            ],
        );
        let _ = cmd(
            &[
                "ip", "netns", "exec", &na, "ping", "-n", "-c", "1", "-W", "1", &ip_c,
            ],
            Duration::from_secs(10),
        );
        cmd_ok(&["ip", "-n", &nc, "neigh", "flush", "all"]);
        let send = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range(4):\n    s.sendto(b'for-victim {round}-%d' % i, ('{ip_b}', 5555))\n"
        );
        let o = cmd(
            &["ip", "netns", "exec", &nc, "python3", "-c", &send],
            Duration::from_secs(20),
        );
        assert!(o.status.success(), "{}", show(&o));
        if lab.ping(&nc, &ip_b) {
            pings_ok += 1;
        }
    }
    // The victim kept receiving: every datagram, and the pings.
    let all = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        lines_with(&lab, "victim_sink.log", "for-victim") >= 20
    });
    if !all || pings_ok < 5 {
        lab.fail(&format!(
            "the victim got {} of 20 datagrams and {pings_ok} of 5 pings while its MAC was \
             stolen",
            lines_with(&lab, "victim_sink.log", "for-victim")
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
    cap.stop(Duration::from_secs(5));
    // The thief got nothing meant for the victim: no datagram, and no IPv4 frame to the
    // victim's address from anyone but itself in its capture. It did see the sender's ARP
    // requests for the victim's address (broadcast: the capture worked).
    assert_eq!(
        lines_with(&lab, "thief_sink.log", "for-victim"),
        0,
        "the thief's listener received the victim's datagrams"
    );
    let text = pcap_text(&pcap);
    let stolen: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("ethertype ipv4")
                && !l.starts_with(&mac_b)
                && (l.contains(&format!("> {ip_b}:")) || l.contains(&format!("> {ip_b}.")))
        })
        .collect();
    if !stolen.is_empty() {
        lab.fail(&format!(
            "the thief received traffic for the victim:\n{}",
            stolen.join("\n")
        ));
    }
    let who_has = format!("who-has {ip_b} tell {ip_c}");
    if !text.contains(&who_has) || !text.contains(&mac_c) {
        lab.fail(&format!(
            "the thief's capture did not see the sender's broadcast ARP ({who_has}): it is \
             not a proof:\n{text}"
        ));
    }
    // Its port counted its frames as spoofed, and the MAC stayed with the victim.
    let after = lab.counters(&net, "thief");
    let n = drops(&after, "spoofed_mac") - drops(&before, "spoofed_mac");
    assert!(
        n >= 50,
        "the thief's 50 forged ARPs and its own frames: {after}"
    );
    let port = fdb_port(&lab, &net, &mac_b);
    if port.as_deref() != Some("victim") {
        lab.fail(&format!("the victim's MAC {mac_b} is on port {port:?}"));
    }
}

#[test]
fn another_networks_subnet_and_the_hosts_loopback_are_refused_locally() {
    let lab = Lab::new();
    let out = outside_with_servers(&lab);
    // A default route in the daemon's namespace towards the outside: without the local
    // refusal, traffic for another network would leave that way.
    cmd_ok(&[
        "ip",
        "-n",
        &lab.host.name,
        "route",
        "add",
        "default",
        "via",
        &out.ip,
    ]);
    let s1 = Subnet::random();
    let s2 = s1.other();
    let n1 = lab.network("n1", &s1, &[]);
    let n2 = lab.network("n2", &s2, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ea = lab.attach(&n1, &na, "alpha", &[]);
    let eb = lab.attach(&n2, &nb, "beta", &[]);
    let ip_b = s(&eb, "ip");
    let ip_a = s(&ea, "ip");
    // The host's routes would send beta's address out on the uplink.
    let route = cmd_ok(&["ip", "-n", &lab.host.name, "route", "get", &ip_b]);
    assert!(
        route.contains(&format!("via {} dev nyhout", out.ip)),
        "the host namespace's route to {ip_b}: {route}"
    );

    // Everything the host namespace sends to n2's subnet, to the loopback port the forged
    // frame uses below, or to the outside (the capture's proof of life).
    let filter = format!("net {} or udp port 47999 or host {}", s2.cidr(), out.ip);
    let (mut cap, pcap) = capture(&lab, &lab.host.name, "any", "uplink", &[&filter]);
    udp_exchange(&lab, &na, &out, 1, "egress to the outside");
    let (stats0, _) = egress(&lab, &n1);

    // UDP, TCP and ping to beta's address: each refused at once with an ICMP error.
    let probe = lab.write_file("probe.py", PROBE);
    for (proto, port) in [("udp", "9"), ("tcp", "80"), ("tcp", "22")] {
        let o = py(&na, &probe, &[&ip_b, proto, port], Duration::from_secs(30));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        let secs = r["secs"].as_f64().unwrap_or(99.0);
        if r["result"] != "EHOSTUNREACH" || secs > 2.0 {
            lab.fail(&format!(
                "{proto} to {ip_b}:{port} (network n2) from n1: expected EHOSTUNREACH at once, \
                 got {r} ({})",
                show(&o)
            ));
        }
    }
    let t0 = Instant::now();
    let o = cmd(
        &[
            "ip", "netns", "exec", &na, "ping", "-n", "-c", "1", "-W", "5", &ip_b,
        ],
        Duration::from_secs(30),
    );
    let txt = String::from_utf8_lossy(&o.stdout).to_string();
    if o.status.success()
        || !txt.contains(&format!("From {}", s1.ip(1)))
        || t0.elapsed() > Duration::from_secs(3)
    {
        lab.fail(&format!(
            "ping from n1 to n2's {ip_b}: expected an ICMP error from the gateway {} at once \
             (took {:?}):\n{}",
            s1.ip(1),
            t0.elapsed(),
            show(&o)
        ));
    }
    // The host's loopback: a datagram to 127.0.0.1 through the gateway (a container routes
    // 127/8 to its own lo, so the frame is forged: its own MAC and address).
    let n_lo = forge(
        &lab,
        &na,
        &[
            "udp",
            &s(&ea, "mac").to_lowercase(),
            &gateway_mac(&s1.ip(1)),
            &ip_a,
            "127.0.0.1",
            "47999",
            "3",
            "47000",
            "loopback",
        ],
    );

    let counted = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let (st, _) = egress(&lab, &n1);
        drops(&st, "refused_local_network") >= drops(&stats0, "refused_local_network") + 4
            && drops(&st, "refused_loopback") >= drops(&stats0, "refused_loopback") + n_lo
    });
    let (stats, flows) = egress(&lab, &n1);
    if !counted {
        lab.fail(&format!(
            "expected 4 refused_local_network (UDP, 2 TCP, ping) and {n_lo} refused_loopback: \
             before {stats0}, after {stats}"
        ));
    }
    let to_n2: Vec<&Value> = flows
        .iter()
        .filter(|f| {
            let d = s(f, "destination");
            d.starts_with(&format!("{ip_b}:")) || d.starts_with("127.")
        })
        .collect();
    assert!(to_n2.is_empty(), "refused traffic made flows: {to_n2:?}");
    for reason in ["host_socket_error", "host_send_error", "unreachable"] {
        assert_eq!(
            drops(&stats, reason),
            drops(&stats0, reason),
            "{reason}: {stats}"
        );
    }

    // Nothing of it was seen in the host namespace; the outside exchange was.
    wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        pcap_text(&pcap).contains(&out.ip)
    });
    std::thread::sleep(Duration::from_millis(300));
    cap.stop(Duration::from_secs(5));
    let text = pcap_text(&pcap);
    if !text.contains(&out.ip) {
        lab.fail(&format!(
            "the capture in the host namespace did not see the exchange with the outside: it \
             is not a proof:\n{text}\ntcpdump: {}",
            cap.log_text()
        ));
    }
    let prefix = format!("10.{}.{}.", s2.a, s2.b);
    let leaked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&prefix) || l.contains(".47999"))
        .collect();
    if !leaked.is_empty() {
        lab.fail(&format!(
            "traffic for another network or the loopback reached the host's interfaces:\n{}",
            leaked.join("\n")
        ));
    }
    // Beta itself is fine, and n1 still reaches the outside.
    lab.assert_ping(&nb, &s2.ip(1));
    udp_exchange(&lab, &na, &out, 3, "after the refusals");
}

#[test]
fn a_trusted_container_router_forwards_for_the_subnet_behind_it() {
    let lab = Lab::new();
    let sub = Subnet::random();
    let behind = sub.other();
    let net = lab.network("lab", &sub, &[]);
    let (nr, nz, nc) = (lab.ns("r"), lab.ns("z"), lab.ns("c"));
    let ec = lab.attach(&net, &nc, "client", &[]);
    let ip_c = s(&ec, "ip");
    let ip_r = sub.ip(10);
    let ip_z = behind.ip(2);

    // Z sits behind R on a veth, R forwards.
    common::veth_from(&nr, "rz", &format!("{}/24", behind.ip(1)), &nz, "eth0");
    cmd_ok(&[
        "ip",
        "-n",
        &nz,
        "addr",
        "add",
        &format!("{ip_z}/24"),
        "dev",
        "eth0",
    ]);
    cmd_ok(&["ip", "-n", &nz, "link", "set", "eth0", "up"]);
    cmd_ok(&[
        "ip",
        "-n",
        &nz,
        "route",
        "add",
        "default",
        "via",
        &behind.ip(1),
    ]);
    cmd_ok(&[
        "ip",
        "netns",
        "exec",
        &nr,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);

    let setup_router = |args: &[&str]| {
        let mut a = vec!["--ip", ip_r.as_str()];
        a.extend_from_slice(args);
        let er = lab.attach(&net, &nr, "router", &a);
        cmd_ok(&["ip", "-n", &nc, "neigh", "flush", "all"]);
        er
    };
    cmd_ok(&[
        "ip",
        "-n",
        &nc,
        "route",
        "add",
        &behind.cidr(),
        "via",
        &ip_r,
    ]);

    // Not trusted: R's forwarded replies carry Z's source address, which its port refuses.
    let er = setup_router(&[]);
    assert_eq!(er["port_security"], true, "{er}");
    let o = lab.ping_output(&nc, &ip_z);
    if o.status.success() {
        lab.fail(&format!(
            "a secured router forwarded Z's replies:\n{}",
            show(&o)
        ));
    }
    let c = wait_drops(&lab, &net, "router", "spoofed_ipv4", 1);
    if drops(&c, "spoofed_ipv4") == 0 {
        lab.fail(&format!(
            "the secured router's forwarded frames were not counted spoofed_ipv4: {c}"
        ));
    }
    lab.ny_ok(&["detach", &net, "router"]);

    // Trusted: it forwards, both ways, ping and TCP.
    let er = setup_router(&["--trusted"]);
    assert_eq!(er["port_security"], false, "{er}");
    lab.assert_ping(&nc, &ip_z);
    lab.assert_ping(&nz, &ip_c);
    let port = 5000 + (rand::random::<u16>() % 1000);
    let listen = format!("TCP-LISTEN:{port},reuseaddr");
    lab.bg_in(
        &nz,
        &["socat", &listen, "SYSTEM:echo hello-from-behind"],
        "behind_server.log",
    );
    assert!(wait_listening(&nz, port, Proto::Tcp), "the server behind R");
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &nc,
            "socat",
            "-u",
            "-T",
            "5",
            &format!("TCP:{ip_z}:{port},connect-timeout=5"),
            "-",
        ],
        Duration::from_secs(20),
    );
    if !String::from_utf8_lossy(&o.stdout).contains("hello-from-behind") {
        lab.fail(&format!(
            "TCP from the client through the trusted router to {ip_z}:{port}:\n{}",
            show(&o)
        ));
    }
    let c = lab.counters(&net, "router");
    for reason in SPOOF_REASONS {
        assert_eq!(drops(&c, reason), 0, "the trusted router's port: {c}");
    }
    assert!(
        common::num(&c, "rx_packets") > 0,
        "the router's port carried the forwarded traffic: {c}"
    );
}

#[test]
fn inspect_and_ps_show_port_security() {
    let lab = Lab::new();
    let s1 = Subnet::random();
    let s2 = s1.other();
    let on = lab.network("secure", &s1, &[]);
    let off = lab.network("open", &s2, &["--port-security=false"]);
    let (np, nt, nx, ny) = (lab.ns("p"), lab.ns("t"), lab.ns("x"), lab.ns("y"));
    let ep = lab.attach(&on, &np, "plain", &[]);
    lab.attach(&on, &nt, "trusted", &["--trusted", "--kind", "veth"]);
    lab.attach(&off, &nx, "x", &[]);
    let ey = lab.attach(&off, &ny, "y", &["--kind", "veth"]);

    let inspect = |n: &str| lab.ny_json(&["network", "inspect", n]);
    assert_eq!(inspect(&on)["port_security"], true, "{}", inspect(&on));
    assert_eq!(inspect(&off)["port_security"], false, "{}", inspect(&off));
    let ps = lab.ny_json(&["ps", "--json"]);
    for (n, name, want) in [
        (&on, "plain", true),
        (&on, "trusted", false),
        (&off, "x", false),
        (&off, "y", false),
    ] {
        let e = common::find_endpoint(&ps, n, name)
            .unwrap_or_else(|| lab.fail(&format!("{n}/{name} not in ps --json: {ps}")));
        assert_eq!(e["port_security"], want, "ps --json, {n}/{name}: {e}");
        let i = lab.ny_json(&["inspect", name]);
        let shown = match &i {
            Value::Array(a) => a.iter().find(|e| e["network"] == n.as_str()).cloned(),
            v => Some(v.clone()),
        }
        .unwrap_or(Value::Null);
        assert_eq!(shown["port_security"], want, "inspect {name}: {i}");
    }

    // What it means: a secured endpoint that changes its MAC is cut off (and counted) until
    // it takes its own back; on the open network the switch follows the new MAC.
    let new_mac = |tag: &str| {
        format!(
            "02:aa:{}:{}:{}:{tag}",
            &lab.id[0..2],
            &lab.id[2..4],
            &lab.id[4..6]
        )
    };
    let gw1 = s1.ip(1);
    lab.assert_ping(&np, &gw1);
    cmd_ok(&[
        "ip",
        "-n",
        &np,
        "link",
        "set",
        "eth0",
        "address",
        &new_mac("01"),
    ]);
    cmd_ok(&["ip", "-n", &np, "neigh", "flush", "all"]);
    assert!(
        !lab.ping(&np, &gw1),
        "a secured endpoint talked with a MAC not its own"
    );
    let c = wait_drops(&lab, &on, "plain", "spoofed_mac", 1);
    assert!(drops(&c, "spoofed_mac") >= 1, "{c}");
    cmd_ok(&[
        "ip",
        "-n",
        &np,
        "link",
        "set",
        "eth0",
        "address",
        &s(&ep, "mac"),
    ]);
    lab.assert_ping(&np, &gw1);

    cmd_ok(&[
        "ip",
        "-n",
        &nx,
        "link",
        "set",
        "eth0",
        "address",
        &new_mac("02"),
    ]);
    cmd_ok(&["ip", "-n", &ny, "neigh", "flush", "all"]);
    lab.assert_ping(&nx, &s(&ey, "ip"));
    lab.assert_ping(&ny, &s2.ip(1));
    assert_eq!(
        fdb_port(&lab, &off, &new_mac("02")).as_deref(),
        Some("x"),
        "the open network learned x's new MAC"
    );
    let c = lab.counters(&off, "x");
    for reason in SPOOF_REASONS {
        assert_eq!(drops(&c, reason), 0, "open network: {c}");
    }
}
