//! Issue 18, link impairment and faults end to end: `netyard link set/show/reset/down/up` on a
//! running daemon, measured with the real tools (ping, iperf3, UDP through python) between
//! container namespaces. Distributions are checked loosely and the figures printed; nothing
//! is timed beyond "eventually" bounds.
//!
//! - delay and jitter: ping RTTs centre near the added delay above the unimpaired RTT;
//! - loss: 10% loses between 5% and 15% of 2,000 pings, and the port counts `impair_loss`;
//! - rate: 20mbit caps iperf3 between 15 and 22 Mbit/s;
//! - one way: 100% loss on what an endpoint sends leaves what it receives untouched;
//! - carrier: `link down` stops traffic both ways (counted `link_down`), `up` restores it;
//! - bad input names the field and changes nothing; settings survive a restart;
//! - a rootless daemon impairs its links and cuts them with `link down` (no privilege
//!   involved; tests/rootless_lab.rs does the same with a lab file and a router).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A network with two TAP endpoints a and b, each in its own namespace; returns (network,
/// ns a, ns b, ip a, ip b).
fn two(lab: &Lab, args: &[&str]) -> (String, String, String, String, String) {
    let sn = Subnet::random();
    let net = lab.network(&format!("im{}", &lab.id[..4]), &sn, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let a = lab.attach(&net, &na, "a", args);
    let b = lab.attach(&net, &nb, "b", args);
    let ip = |v: &Value| v["ip"].as_str().unwrap_or_default().to_string();
    lab.assert_ping(&na, &ip(&b));
    (net, na, nb, ip(&a), ip(&b))
}

fn link_row(lab: &Lab, net: &str, ep: &str) -> Value {
    let v = lab.ny_json(&["link", "show", net, ep, "--json"]);
    v.get(0)
        .cloned()
        .unwrap_or_else(|| lab.fail(&format!("link show {net} {ep}: {v}")))
}

#[test]
fn delay_with_jitter_centres_the_rtt_near_the_added_delay() {
    let lab = Lab::new();
    let (net, na, _nb, _ia, ib) = two(&lab, &[]);
    let base = pings(&na, &ib, 30, "0.05");
    assert!(
        base.received >= 25,
        "baseline pings lost: {}",
        base.received
    );
    let m0 = median(&base.rtts);

    let shown = lab.ny_ok(&[
        "link", "set", &net, "a", "--delay", "50ms", "--jitter", "10ms",
    ]);
    assert!(shown.contains("delay 50ms jitter 10ms"), "{shown}");
    let d = pings(&na, &ib, 40, "0.05");
    let m1 = median(&d.rtts);
    let min = d.rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = d.rtts.iter().copied().fold(0.0, f64::max);
    println!(
        "delay 50ms jitter 10ms (normal): median RTT {m1:.2} ms against {m0:.2} ms without, \
         added {:.2} ms; min {min:.2} max {max:.2}; {}/{} replies",
        m1 - m0,
        d.received,
        d.sent
    );
    assert!(
        d.received >= 35,
        "delayed pings lost: {}/{}",
        d.received,
        d.sent
    );
    let added = m1 - m0;
    if !(42.0..=62.0).contains(&added) {
        lab.fail(&format!("added delay {added:.2} ms, expected about 50 ms"));
    }
    assert!(
        max - min > 5.0,
        "jitter of 10 ms should spread the RTTs: min {min} max {max}"
    );
    let row = link_row(&lab, &net, "a");
    assert_eq!(row["out"]["delay"], "50ms", "{row}");
    assert!(row.get("in").is_none(), "only out is set: {row}");
    assert!(
        row["counters"]["out"]["delayed"].as_u64().unwrap_or(0) >= 40,
        "{row}"
    );

    // Reset: back to the plain link.
    lab.ny_ok(&["link", "reset", &net, "a"]);
    let after = pings(&na, &ib, 20, "0.05");
    let m2 = median(&after.rtts);
    println!("after reset: median RTT {m2:.2} ms");
    assert!(m2 < m0 + 25.0, "reset left delay: {m2} ms against {m0} ms");
    assert!(link_row(&lab, &net, "a").get("out").is_none());
}

#[test]
fn ten_percent_loss_loses_about_a_tenth_of_2000_pings() {
    let lab = Lab::new();
    let (net, na, _nb, _ia, ib) = two(&lab, &[]);
    lab.ny_ok(&["link", "set", &net, "a", "--loss", "10%"]);
    let p = pings(&na, &ib, 2000, "0.005");
    let lost = p.sent.saturating_sub(p.received);
    let share = lost as f64 / p.sent.max(1) as f64;
    let counted = drops(&lab.counters(&net, "a"), "impair_loss");
    println!(
        "loss 10%: {lost} of {} pings lost ({:.1}%), impair_loss counted {counted}",
        p.sent,
        share * 100.0
    );
    assert_eq!(p.sent, 2000, "ping did not send them all");
    if !(0.05..=0.15).contains(&share) {
        lab.fail(&format!(
            "lost {:.1}% of pings with --loss 10%",
            share * 100.0
        ));
    }
    // Every lost request was the link's doing (the replies are not impaired), give or take a
    // late reply ping gave up on.
    assert!(
        counted >= lost.saturating_sub(5) && counted <= lost + 5,
        "impair_loss {counted} against {lost} lost"
    );
    let row = link_row(&lab, &net, "a");
    assert_eq!(
        row["counters"]["out"]["loss"].as_u64(),
        Some(counted),
        "{row}"
    );
}

#[test]
fn a_20mbit_rate_caps_iperf3() {
    require_program("iperf3", "iperf3");
    let lab = Lab::new();
    let (net, na, nb, _ia, ib) = two(&lab, &[]);
    lab.bg_in(&nb, &["iperf3", "-s", "-p", "5201"], "iperf3-server.log");
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let o = cmd(&["ip", "netns", "exec", &nb, "ss", "-Hltn"], CLI_TIMEOUT);
        String::from_utf8_lossy(&o.stdout).contains(":5201 ")
    });
    assert!(listening, "iperf3 server did not listen");
    lab.ny_ok(&["link", "set", &net, "a", "--rate", "20mbit"]);
    let o = cmd(
        &[
            "ip", "netns", "exec", &na, "iperf3", "-c", &ib, "-p", "5201", "-t", "5", "-J",
        ],
        Duration::from_secs(60),
    );
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| lab.fail(&format!("iperf3 gave no JSON ({e}):\n{}", show(&o))));
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let mbit = bps / 1e6;
    let row = link_row(&lab, &net, "a");
    println!(
        "rate 20mbit: iperf3 received {mbit:.2} Mbit/s; link counters {}",
        row["counters"]["out"]
    );
    if !(15.0..=22.0).contains(&mbit) {
        lab.fail(&format!("iperf3 at {mbit:.2} Mbit/s through a 20mbit link"));
    }
}

/// Counts UDP datagrams arriving on port argv[1] for argv[2] seconds of silence.
const UDP_COUNT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
s.settimeout(float(sys.argv[2]))
n = 0
try:
    while True:
        s.recv(2048)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
"#;

/// Sends argv[3] datagrams to argv[1]:argv[2], 5 ms apart.
const UDP_SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"x%d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.005)
"#;

/// Sends 50 datagrams from `from` to `to_ip` and returns how many arrived in `to`.
fn udp_through(lab: &Lab, from: &str, to: &str, to_ip: &str) -> u64 {
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", to, "python3", "-c", UDP_COUNT, "9500", "2"]);
    let log = lab.dir.join(format!("udp-{to}.log"));
    let mut rx = Bg::spawn(&mut c, &log);
    let ready = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rx.log_text().contains("ready")
    });
    assert!(ready, "UDP counter did not start: {}", rx.log_text());
    let o = cmd(
        &[
            "ip", "netns", "exec", from, "python3", "-c", UDP_SEND, to_ip, "9500", "50",
        ],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "UDP sender: {}", show(&o));
    rx.wait(Duration::from_secs(30));
    rx.log_text()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| lab.fail(&format!("UDP counter printed no count: {}", rx.log_text())))
}

#[test]
fn a_one_way_impairment_leaves_the_other_way_alone() {
    let lab = Lab::new();
    let (net, na, nb, ia, ib) = two(&lab, &[]);
    // Neighbours pinned both ways: ARP would otherwise be lost too, and on a loaded machine
    // an entry learned by a ping goes stale and is probed again within the test (a reply
    // lost to `--direction in` then left a unable to send anything).
    for (ns, peer_ns, peer_ip) in [(&na, &nb, &ib), (&nb, &na, &ia)] {
        let o = ns_sh(peer_ns, "cat /sys/class/net/eth0/address", CLI_TIMEOUT);
        let mac = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if mac.is_empty() {
            lab.fail(&format!("eth0's MAC in {peer_ns}: {}", show(&o)));
        }
        cmd_ok(&[
            "ip",
            "-n",
            ns,
            "neigh",
            "replace",
            peer_ip,
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    lab.ny_ok(&["link", "set", &net, "a", "--loss", "100%"]);
    let a_to_b = udp_through(&lab, &na, &nb, &ib);
    let b_to_a = udp_through(&lab, &nb, &na, &ia);
    println!("loss 100% out on a: a->b {a_to_b}/50, b->a {b_to_a}/50");
    assert_eq!(a_to_b, 0, "a's own frames must all be lost");
    assert_eq!(b_to_a, 50, "what a receives is not impaired");

    // The other direction: b -> a lost, a -> b through.
    lab.ny_ok(&[
        "link",
        "set",
        &net,
        "a",
        "--direction",
        "in",
        "--loss",
        "100%",
    ]);
    lab.ny_ok(&[
        "link",
        "set",
        &net,
        "a",
        "--direction",
        "out",
        "--delay",
        "1ms",
    ]);
    let a_to_b = udp_through(&lab, &na, &nb, &ib);
    let b_to_a = udp_through(&lab, &nb, &na, &ia);
    println!("loss 100% in on a: a->b {a_to_b}/50, b->a {b_to_a}/50");
    assert_eq!(b_to_a, 0);
    assert_eq!(a_to_b, 50);
    let row = link_row(&lab, &net, "a");
    assert_eq!(row["in"]["loss"], "100%", "{row}");
    assert_eq!(row["out"]["delay"], "1ms", "{row}");
    assert!(row["out"].get("loss").is_none(), "a set replaces: {row}");
}

#[test]
fn link_down_stops_traffic_both_ways_and_up_restores_it() {
    let lab = Lab::new();
    let (net, na, nb, ia, ib) = two(&lab, &["--kind", "veth"]);
    let shown = lab.ny_ok(&["link", "down", &net, "b"]);
    assert!(shown.contains("down"), "{shown}");
    let p = pings(&na, &ib, 5, "0.2");
    assert_eq!(p.received, 0, "pings crossed a link that is down");
    let p = pings(&nb, &ia, 5, "0.2");
    assert_eq!(p.received, 0, "pings left a link that is down");
    let c = lab.counters(&net, "b");
    let down = drops(&c, "link_down");
    println!("link down: link_down counted {down}");
    assert!(down >= 10, "link_down {down}: {c}");
    let row = link_row(&lab, &net, "b");
    assert_eq!(row["down"], true);
    assert!(
        row["counters"]["in"]["down"].as_u64().unwrap_or(0) >= 5,
        "{row}"
    );
    assert!(
        row["counters"]["out"]["down"].as_u64().unwrap_or(0) >= 5,
        "{row}"
    );

    lab.ny_ok(&["link", "up", &net, "b"]);
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(&na, &ib)
    });
    assert!(back, "no traffic after link up");
    assert_eq!(link_row(&lab, &net, "b")["down"], false);
}

#[test]
fn bad_input_names_the_field_and_changes_nothing_and_a_restart_keeps_the_settings() {
    let mut lab = Lab::new();
    let (net, na, _nb, _ia, ib) = two(&lab, &[]);
    lab.ny_ok(&["link", "set", &net, "a", "--delay", "30ms", "--loss", "1%"]);
    let before = link_row(&lab, &net, "a");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--loss", "120%"], &["loss", "120%", "above 100%"]),
        (&["--delay", "-3ms"], &["delay", "-3ms", "negative"]),
        (&["--rate", "10parsecs"], &["rate", "10parsecs", "unit"]),
        (
            &["--direction", "sideways", "--delay", "1ms"],
            &["direction", "sideways"],
        ),
        (&["--reorder", "5%"], &["reorder", "needs a delay"]),
        (&[], &["nothing to set"]),
    ];
    for (args, needles) in cases {
        let mut a = vec!["link", "set", net.as_str(), "a"];
        a.extend_from_slice(args);
        let o = lab.ny(&a);
        assert_one_line_error(&format!("link set {}", args.join(" ")), &o, needles);
    }
    let o = lab.ny(&["link", "set", &net, "nosuch", "--delay", "1ms"]);
    assert_one_line_error("unknown endpoint", &o, &["nosuch"]);
    let o = lab.ny(&["link", "set", &net, "vxlan", "--delay", "1ms"]);
    assert_one_line_error("no tunnel", &o, &["no VXLAN tunnel"]);
    let o = lab.ny(&["link", "down", "nosuchnet", "a"]);
    assert_one_line_error("unknown network", &o, &["nosuchnet"]);
    let after = link_row(&lab, &net, "a");
    assert_eq!(
        before["out"], after["out"],
        "a refused set changed the link"
    );

    // A restart keeps the settings and applies them again.
    lab.ny_ok(&["link", "down", &net, "a"]);
    lab.stop_daemon();
    lab.start_daemon(&[]);
    let row = link_row(&lab, &net, "a");
    assert_eq!(row["out"], before["out"], "{row}");
    assert_eq!(row["down"], true, "{row}");
    assert_eq!(
        pings(&na, &ib, 3, "0.2").received,
        0,
        "down after the restart"
    );
    lab.ny_ok(&["link", "up", &net, "a"]);
    // The neighbour entry went stale while the link was down: let ARP settle first.
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        pings(&na, &ib, 1, "0.2").received == 1
    });
    assert!(back, "no traffic after link up following the restart");
    let d = pings(&na, &ib, 10, "0.1");
    let m = median(&d.rtts);
    println!(
        "after restart: median RTT {m:.2} ms with delay 30ms, {}/10: {:?}",
        d.received, d.rtts
    );
    assert!(m >= 25.0, "the saved delay was not applied again: {m} ms");
}

#[test]
fn a_rootless_daemon_impairs_its_links() {
    require_root();
    let (lab, run_as) = Lab::rootless();
    let sn = Subnet::random();
    lab.network("rli", &sn, &[]);
    let p1 = rootless_container(&lab, &run_as, "c1");
    let p2 = rootless_container(&lab, &run_as, "c2");
    let mut ips = Vec::new();
    for (name, pid) in [("c1", p1), ("c2", p2)] {
        lab.ny_ok(&["attach", "rli", "--pid", &pid.to_string(), "--name", name]);
        ips.push(
            lab.endpoint("rli", name)["ip"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let ping = |count: &str| {
        let mut c = std::process::Command::new(&run_as.prefix()[0]);
        c.args(&run_as.prefix()[1..]).args([
            "nsenter",
            "--preserve-credentials",
            "--target",
            &p1.to_string(),
            "--user",
            "--net",
            "ping",
            "-n",
            "-c",
            count,
            "-i",
            "0.2",
            "-W",
            "2",
            &ips[1],
        ]);
        let o = run_bounded(&mut c, Duration::from_secs(30));
        let rtts: Vec<f64> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1))
            .filter_map(|t| t.split_whitespace().next()?.parse().ok())
            .collect();
        rtts
    };
    assert!(!ping("2").is_empty(), "rootless pings before impairment");
    lab.ny_ok(&[
        "link",
        "set",
        "rli",
        "c2",
        "--direction",
        "both",
        "--delay",
        "40ms",
    ]);
    let rtts = ping("5");
    // The fastest reply: a loaded machine only adds to an RTT (a CI run saw a median of
    // 225 ms at load 11), while the delay applied once each way puts a floor of 80 ms under
    // every reply and applied twice would put one of 160 ms.
    let fastest = fastest(&rtts);
    println!(
        "rootless, delay 40ms both ways on c2: fastest RTT {fastest:.2} ms, median {:.2}",
        median(&rtts)
    );
    assert!(rtts.len() >= 4, "rootless delayed pings lost: {rtts:?}");
    assert!(
        (75.0..155.0).contains(&fastest),
        "fastest RTT {fastest} ms, expected about 80: {rtts:?}"
    );

    // Carrier off on c2: the pings stop (counted), and come back with `up`.
    lab.ny_ok(&["link", "down", "rli", "c2"]);
    let cut = ping("3");
    assert!(
        cut.is_empty(),
        "rootless pings crossed a link that is down: {cut:?}"
    );
    let row = lab.ny_json(&["link", "show", "rli", "c2", "--json"]);
    println!("rootless, link down on c2: {}", row[0]["counters"]);
    assert_eq!(row[0]["down"], true, "{row}");
    assert!(num(&row[0]["counters"]["in"], "down") >= 3, "{row}");
    lab.ny_ok(&["link", "up", "rli", "c2"]);
    let back = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        !ping("1").is_empty()
    });
    assert!(back, "no rootless pings after link up");
}
