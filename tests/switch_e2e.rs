//! The switch end to end, in real namespaces: reachability with TAP, veth and mixed ports,
//! isolation between networks, MAC learning, ageing and moves, and bad frames on the data path.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Attaches one namespace per kind to one network and pings every ordered pair.
fn ping_all_pairs(kinds: &[&str]) {
    let lab = Lab::new();
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let mut eps: Vec<(String, Value)> = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let ns = lab.ns(&format!("c{i}"));
        let ep = lab.attach(&net, &ns, &format!("e{i}"), &["--kind", kind]);
        assert_eq!(ep["kind"], *kind, "endpoint kind: {ep}");
        eps.push((ns, ep));
    }
    for (a, _) in &eps {
        for (b, ep) in &eps {
            if a != b {
                lab.assert_ping(a, ep["ip"].as_str().unwrap());
            }
        }
    }
    // Every endpoint's MAC was learned on its own port.
    let fdb = lab.ny_json(&["fdb", &net, "--json"]);
    for (_, ep) in &eps {
        let row = fdb_row(&fdb, ep["mac"].as_str().unwrap());
        match row {
            Some(r) if r["port"] == ep["name"] => {}
            _ => lab.fail(&format!(
                "fdb lacks {} on port {}: {fdb}",
                ep["mac"], ep["name"]
            )),
        }
    }
    // Every port moved frames both ways, and a quiet healthy network drops nothing.
    for (_, ep) in &eps {
        let c = lab.counters(&net, ep["name"].as_str().unwrap());
        if num(&c, "rx_packets") == 0 || num(&c, "tx_packets") == 0 || num(&c, "drops_total") != 0 {
            lab.fail(&format!(
                "port {}: expected rx and tx traffic and no drops, got {c}",
                ep["name"]
            ));
        }
    }
}

#[test]
fn three_tap_endpoints_ping_each_other() {
    ping_all_pairs(&["tap", "tap", "tap"]);
}

#[test]
fn three_veth_endpoints_ping_each_other() {
    ping_all_pairs(&["veth", "veth", "veth"]);
}

#[test]
fn tap_and_veth_endpoints_mix_on_one_network() {
    ping_all_pairs(&["tap", "veth", "tap", "veth"]);
}

/// The fdb row of `mac` (case-insensitive), if any.
fn fdb_row<'a>(fdb: &'a Value, mac: &str) -> Option<&'a Value> {
    fdb.as_array()?.iter().find(|r| {
        r["mac"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    })
}

/// Starts a packet capture on `ifname` in `ns` writing to `file` (read it with [`read_pcap`]).
fn capture(ns: &str, ifname: &str, file: &std::path::Path) -> Bg {
    let f = file.to_string_lossy();
    tcpdump_bg(
        ns,
        ifname,
        &["-U", "-Z", "root", "-w", &f],
        &file.with_extension("log"),
    )
}

#[test]
fn networks_are_isolated() {
    let lab = Lab::new();
    let s1 = Subnet::random();
    let s2 = s1.other();
    lab.network("red", &s1, &[]);
    lab.network("blue", &s2, &[]);
    let (a1, a2) = (lab.ns("a1"), lab.ns("a2"));
    let (b1, b2) = (lab.ns("b1"), lab.ns("b2"));
    let ea1 = lab.attach("red", &a1, "a1", &[]);
    let ea2 = lab.attach("red", &a2, "a2", &["--kind", "veth"]);
    let eb1 = lab.attach("blue", &b1, "b1", &[]);
    let eb2 = lab.attach("blue", &b2, "b2", &["--kind", "veth"]);
    let ip = |e: &Value| e["ip"].as_str().unwrap().to_string();
    let mac = |e: &Value| e["mac"].as_str().unwrap().to_lowercase();

    // Make each side believe the other network is on its own link, so its ARP requests for
    // the other side's addresses really go out on its own switch: only isolation stops them.
    cmd_ok(&["ip", "-n", &a1, "route", "add", &s2.cidr(), "dev", "eth0"]);
    cmd_ok(&["ip", "-n", &b1, "route", "add", &s1.cidr(), "dev", "eth0"]);

    let cap_b1 = lab.dir.join("b1.pcap");
    let cap_b2 = lab.dir.join("b2.pcap");
    let mut t1 = capture(&b1, "eth0", &cap_b1);
    let mut t2 = capture(&b2, "eth0", &cap_b2);

    // Red traffic: unicast, broadcast (ARP for blue's addresses, a broadcast ping).
    lab.assert_ping(&a1, &ip(&ea2));
    lab.assert_ping(&a2, &ip(&ea1));
    for target in [ip(&eb1), ip(&eb2)] {
        let o = lab.ping_output(&a1, &target);
        if o.status.success() {
            lab.fail(&format!("red a1 reached blue {target}:\n{}", show(&o)));
        }
    }
    let o = lab.ping_output(&b1, &ip(&ea1));
    if o.status.success() {
        lab.fail(&format!("blue b1 reached red {}:\n{}", ip(&ea1), show(&o)));
    }
    let bcast = s1.ip(255);
    let _ = cmd(
        &[
            "ip", "netns", "exec", &a1, "ping", "-n", "-b", "-c", "3", "-i", "0.2", "-W", "1",
            &bcast,
        ],
        Duration::from_secs(20),
    );
    // Blue traffic, so the captures demonstrably saw something.
    lab.assert_ping(&b1, &ip(&eb2));

    // Wait (bounded) until both captures hold blue's ping before stopping them: under load
    // tcpdump may write the last packets a moment after the ping returned.
    let (mb1, mb2) = (mac(&eb1), mac(&eb2));
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        read_pcap(&cap_b1).to_lowercase().contains(&mb2)
            && read_pcap(&cap_b2).to_lowercase().contains(&mb1)
    });
    std::thread::sleep(Duration::from_millis(300));
    t1.stop(Duration::from_secs(5));
    t2.stop(Duration::from_secs(5));
    let text1 = read_pcap(&cap_b1);
    let text2 = read_pcap(&cap_b2);
    // Every frame either capture saw comes from a blue endpoint: blue's own ARP requests for
    // red's addresses are fine, a red source (or a red frame's broadcast) is a leak.
    let blue_macs = [mac(&eb1), mac(&eb2)];
    let red = [mac(&ea1), mac(&ea2)];
    for (who, text) in [("b1", &text1), ("b2", &text2)] {
        let low = text.to_lowercase();
        for line in low.lines() {
            let src = line.split_whitespace().nth(1).unwrap_or_default();
            if !blue_macs.iter().any(|m| m == src) || red.iter().any(|m| line.contains(m)) {
                lab.fail(&format!(
                    "the capture on blue {who} saw a frame not from blue:\n{line}\n\
                     whole capture:\n{text}"
                ));
            }
        }
        let peer = if who == "b1" { mac(&eb2) } else { mac(&eb1) };
        if !low.contains(&peer) {
            lab.fail(&format!(
                "the capture on blue {who} did not even see blue's own ping (no {peer}); \
                 it is not a proof of isolation:\n{text}"
            ));
        }
    }
    // Neither MAC table holds the other network's addresses.
    let fdb_blue = lab.ny_json(&["fdb", "blue", "--json"]);
    let fdb_red = lab.ny_json(&["fdb", "red", "--json"]);
    for m in [mac(&ea1), mac(&ea2)] {
        if fdb_row(&fdb_blue, &m).is_some() {
            lab.fail(&format!("blue's fdb learned red's {m}: {fdb_blue}"));
        }
    }
    for m in [mac(&eb1), mac(&eb2)] {
        if fdb_row(&fdb_red, &m).is_some() {
            lab.fail(&format!("red's fdb learned blue's {m}: {fdb_red}"));
        }
    }
}

#[test]
fn fdb_learns_then_ages_out() {
    let lab = Lab::new();
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &["--aging", "2"]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ea = lab.attach(&net, &na, "a", &[]);
    let eb = lab.attach(&net, &nb, "b", &["--kind", "veth"]);
    let mac_a = ea["mac"].as_str().unwrap().to_string();
    let mac_b = eb["mac"].as_str().unwrap().to_string();
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["aging"], 2, "network inspect: {info}");

    // While a ping runs, both MACs are learned on their own ports.
    let mut ping = Bg::spawn(
        Command::new("ip").args([
            "netns",
            "exec",
            &na,
            "ping",
            "-n",
            "-i",
            "0.2",
            "-w",
            "30",
            eb["ip"].as_str().unwrap(),
        ]),
        &lab.dir.join("ping.log"),
    );
    let mut last = Value::Null;
    let learned = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        last = lab.ny_json(&["fdb", &net, "--json"]);
        matches!(fdb_row(&last, &mac_a), Some(r) if r["port"] == "a" && r["static"] == false)
            && matches!(fdb_row(&last, &mac_b), Some(r) if r["port"] == "b" && r["static"] == false)
    });
    if !learned {
        lab.fail(&format!(
            "fdb did not show {mac_a} on a and {mac_b} on b while pinging: {last}\nping: {}",
            ping.log_text()
        ));
    }
    for m in [&mac_a, &mac_b] {
        let age = fdb_row(&last, m).unwrap()["age"].as_f64().unwrap_or(-1.0);
        if !(0.0..=3.0).contains(&age) {
            lab.fail(&format!("fdb age of {m} is {age} during traffic: {last}"));
        }
    }
    // The table is also readable as text.
    let text = lab.ny_ok(&["fdb", &net]);
    assert!(
        text.to_lowercase().contains(&mac_a),
        "fdb text lacks {mac_a}:\n{text}"
    );
    ping.stop(Duration::from_secs(3));

    // Idle for longer than the ageing time: both entries go.
    let gone = wait_until(Duration::from_secs(10), Duration::from_millis(250), || {
        last = lab.ny_json(&["fdb", &net, "--json"]);
        fdb_row(&last, &mac_a).is_none() && fdb_row(&last, &mac_b).is_none()
    });
    if !gone {
        lab.fail(&format!(
            "entries did not age out within 10 s of idling (aging 2 s): {last}"
        ));
    }
    // And traffic relearns them.
    lab.assert_ping(&nb, ea["ip"].as_str().unwrap());
    let fdb = lab.ny_json(&["fdb", &net, "--json"]);
    if fdb_row(&fdb, &mac_a).is_none() {
        lab.fail(&format!("{mac_a} not relearned after a new ping: {fdb}"));
    }
}

#[test]
fn fdb_relearns_a_mac_that_moves_to_another_port() {
    let lab = Lab::new();
    let sn = Subnet::random();
    // A MAC moving to another endpoint's port is what port security forbids (tests/
    // port_security.rs: the thief gets nothing); on a network without it the switch follows
    // the MAC, as a migrating VM or a failover needs.
    let net = lab.network("lan", &sn, &["--port-security=false"]);
    let (na, nb, nc) = (lab.ns("a"), lab.ns("b"), lab.ns("c"));
    let ea = lab.attach(&net, &na, "a", &[]);
    lab.attach(&net, &nb, "b", &[]);
    let ec = lab.attach(&net, &nc, "c", &["--kind", "veth"]);
    let ip_c = ec["ip"].as_str().unwrap().to_string();
    let mac_a = ea["mac"].as_str().unwrap().to_lowercase();
    lab.assert_ping(&na, &ip_c);
    lab.assert_ping(&nb, &ip_c);
    let fdb = lab.ny_json(&["fdb", &net, "--json"]);
    match fdb_row(&fdb, &mac_a) {
        Some(r) if r["port"] == "a" => {}
        _ => lab.fail(&format!("{mac_a} not learned on a: {fdb}")),
    }

    // A's address moves to B's interface (as when a VM or container migrates): A takes a new
    // MAC, B takes A's old one, and every ARP cache forgets.
    let new_a = format!(
        "02:aa:{}:{}:{}:01",
        &lab.id[0..2],
        &lab.id[2..4],
        &lab.id[4..6]
    );
    cmd_ok(&["ip", "-n", &na, "link", "set", "eth0", "address", &new_a]);
    cmd_ok(&["ip", "-n", &nb, "link", "set", "eth0", "address", &mac_a]);
    for ns in [&na, &nb, &nc] {
        cmd_ok(&["ip", "-n", ns, "neigh", "flush", "all"]);
    }
    // B's ARP request now carries A's old MAC: the switch must move it to port b, or C's
    // reply goes to port a and this ping fails.
    lab.assert_ping(&nb, &ip_c);
    let fdb = lab.ny_json(&["fdb", &net, "--json"]);
    match fdb_row(&fdb, &mac_a) {
        Some(r) if r["port"] == "b" => {}
        _ => lab.fail(&format!(
            "{mac_a} was not relearned on port b after moving there: {fdb}"
        )),
    }
    // And A still works with its new MAC.
    lab.assert_ping(&na, &ip_c);
    let fdb = lab.ny_json(&["fdb", &net, "--json"]);
    match fdb_row(&fdb, &new_a) {
        Some(r) if r["port"] == "a" => {}
        _ => lab.fail(&format!("{new_a} not learned on a: {fdb}")),
    }
}

/// The frames the injector sends, by kind, and how many of each.
const N_MCAST_SRC: u64 = 50;
const N_ZERO_SRC: u64 = 50;
const N_GARBAGE: u64 = 200;
const N_OVER_MTU: u64 = 20;

/// Sends bad frames with an AF_PACKET socket on eth0 (run inside the injector's namespace).
/// argv: own MAC (hex, no colons), counts of multicast-source, zero-source, garbage and
/// over-MTU frames.
const INJECT_PY: &str = r#"
import os, random, socket, sys, time
own = bytes.fromhex(sys.argv[1])
n_mc, n_zero, n_garbage, n_big = (int(x) for x in sys.argv[2:6])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
bcast = b"\xff" * 6
ipv4 = b"\x08\x00"
def send(frame):
    for _ in range(100):
        try:
            s.send(frame)
            return
        except BlockingIOError:
            time.sleep(0.001)
        except OSError as e:
            if e.errno == 105:  # ENOBUFS: the queue is full, retry
                time.sleep(0.001)
                continue
            raise
    raise SystemExit("could not send a frame")
for i in range(n_mc):
    # Source 01:00:5e:00:00:xx, a group address.
    send(bcast + bytes([1, 0, 0x5e, 0, 0, i % 256]) + ipv4 + bytes(46))
for i in range(n_zero):
    send(bcast + bytes(6) + ipv4 + bytes(46))
rnd = random.Random(7)
for i in range(n_garbage):
    # Random bytes from 14 (the kernel refuses less on an Ethernet device) to 300.
    send(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(14, 300))))
for i in range(n_big):
    # 4000 bytes from our own unicast MAC: over the network's 1500-byte MTU.
    send(bcast + own + ipv4 + bytes(4000 - 14))
    time.sleep(0.002)
print("sent", n_mc, n_zero, n_garbage, n_big)
"#;

/// Bad frames injected into one port are dropped and counted by reason, while two other
/// endpoints keep talking and the daemon stays up.
///
/// Runts (shorter than an Ethernet header) cannot be sent through a kernel interface: AF_PACKET
/// refuses frames under 14 bytes on Ethernet devices. They are covered by the switch crate's
/// unit tests, which feed an in-memory port.
#[test]
fn bad_frames_are_dropped_and_counted_while_traffic_flows() {
    let lab = Lab::new();
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let (nx, na, nb) = (lab.ns("x"), lab.ns("a"), lab.ns("b"));
    let ex = lab.attach(&net, &nx, "x", &[]);
    let ea = lab.attach(&net, &na, "a", &[]);
    let eb = lab.attach(&net, &nb, "b", &["--kind", "veth"]);
    let ip_b = eb["ip"].as_str().unwrap().to_string();
    lab.assert_ping(&na, &ip_b);
    let before = lab.counters(&net, "x");

    // The injector's own interface must let a 4000-byte frame out: only the switch enforces
    // the network's MTU.
    cmd_ok(&["ip", "-n", &nx, "link", "set", "eth0", "mtu", "9000"]);

    let count = 40;
    let mut ping = Bg::spawn(
        Command::new("ip").args([
            "netns",
            "exec",
            &na,
            "ping",
            "-n",
            "-i",
            "0.2",
            "-W",
            "2",
            "-c",
            &count.to_string(),
            &ip_b,
        ]),
        &lab.dir.join("ping.log"),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let own = ex["mac"].as_str().unwrap().replace(':', "");
    let script = lab.dir.join("inject.py");
    std::fs::write(&script, INJECT_PY).unwrap();
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &nx,
            "python3",
            &script.to_string_lossy(),
            &own,
            &N_MCAST_SRC.to_string(),
            &N_ZERO_SRC.to_string(),
            &N_GARBAGE.to_string(),
            &N_OVER_MTU.to_string(),
        ],
        Duration::from_secs(60),
    );
    if !o.status.success() {
        lab.fail(&format!("the injector failed:\n{}", show(&o)));
    }

    // The ping that ran through the injection got (almost) all its replies.
    let status = ping.wait(Duration::from_secs(60));
    let log = ping.log_text();
    let received = log
        .lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if status.is_none_or(|s| !s.success()) || received * 10 < count * 8 {
        lab.fail(&format!(
            "ping between a and b suffered during the injection ({received}/{count} \
             replies, status {status:?}):\n{log}"
        ));
    }

    let mut after = Value::Null;
    let counted = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        after = lab.counters(&net, "x");
        drops(&after, "multicast_source") >= drops(&before, "multicast_source") + N_MCAST_SRC
            && drops(&after, "zero_source") >= drops(&before, "zero_source") + N_ZERO_SRC
            && drops(&after, "over_mtu") >= drops(&before, "over_mtu") + N_OVER_MTU
    });
    if !counted {
        lab.fail(&format!(
            "x's drop counters did not grow by at least {N_MCAST_SRC} multicast_source, \
             {N_ZERO_SRC} zero_source and {N_OVER_MTU} over_mtu:\nbefore {before}\nafter {after}"
        ));
    }
    // Still up, still forwarding, in both directions.
    if !lab.daemon_running() {
        lab.fail("the daemon died during the injection");
    }
    lab.ny_ok(&["network", "ls"]);
    lab.assert_ping(&na, &ip_b);
    lab.assert_ping(&nb, ea["ip"].as_str().unwrap());
    // The injector's port itself still works once its MTU is back to the network's.
    cmd_ok(&["ip", "-n", &nx, "link", "set", "eth0", "mtu", "1500"]);
    lab.assert_ping(&nx, &ip_b);
}
