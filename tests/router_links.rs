//! Issue 18, routers' interfaces and VXLAN tunnels as first-class links, end to end with real
//! traffic (ping, traceroute, tcpdump) between container namespaces:
//!
//! - `link set NET R --delay 50ms` on router R's interface raises the RTT through R by about
//!   50 ms; `link show` lists the interface with its counters; `link down NET R` stops
//!   traffic through R (counted `down`) and `up` restores it; `capture NET R -w -` (and
//!   `--endpoint R`) streams R's frames, read by `tcpdump -r -`;
//! - a network's VXLAN tunnel to a kernel VTEP (tests/vxlan_e2e.rs's underlay): `link set NET
//!   vxlan --loss 10%` loses about a tenth of the pings across (wide bounds), `link down NET
//!   vxlan` stops them and `up` restores them;
//! - traceroute from behind a `--nat` router shows the hops beyond it: the routers'
//!   ICMP errors about masqueraded probes are translated back (quoted header included);
//! - the routers' counters in /metrics.
//!
//! Distributions are checked loosely and the figures printed; nothing is timed beyond
//! "eventually" bounds.

mod common;

use std::time::Duration;

use common::vtep::{kernel_vtep, underlay};
use common::*;
use serde_json::Value;

fn link_rows(lab: &Lab, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["link", "show"];
    a.extend_from_slice(args);
    a.push("--json");
    let v = lab.ny_json(&a);
    v.as_array()
        .cloned()
        .unwrap_or_else(|| lab.fail(&format!("link show {args:?}: {v}")))
}

fn link_row(lab: &Lab, net: &str, port: &str) -> Value {
    link_rows(lab, &[net, port])
        .into_iter()
        .next()
        .unwrap_or_else(|| lab.fail(&format!("link show {net} {port}: no row")))
}

/// Two networks joined by router `r`, a host on each: (network a, network b, ns a, ns b,
/// host a's ip, host b's ip, r's address on a, r's address on b).
struct Routed {
    na: String,
    nb: String,
    ns_a: String,
    ns_b: String,
    ha: String,
    hb: String,
    ra: String,
}

fn routed(lab: &Lab) -> Routed {
    let sa = Subnet::random();
    let sb = sa.other();
    let id = &lab.id[..4];
    let (na, nb) = (format!("ra{id}"), format!("rb{id}"));
    lab.network(&na, &sa, &[]);
    lab.network(&nb, &sb, &[]);
    let (ra, rb) = (sa.ip(254), sb.ip(254));
    lab.ny_ok(&[
        "router",
        "create",
        "r",
        "--network",
        &format!("{na}={ra}"),
        "--network",
        &format!("{nb}={rb}"),
    ]);
    let (ns_a, ns_b) = (lab.ns("a"), lab.ns("b"));
    let (ha, hb) = (sa.ip(10), sb.ip(10));
    lab.attach(&na, &ns_a, "ha", &["--ip", &ha]);
    lab.attach(&nb, &ns_b, "hb", &["--ip", &hb]);
    lab.assert_ping(&ns_a, &hb);
    Routed {
        na,
        nb,
        ns_a,
        ns_b,
        ha,
        hb,
        ra,
    }
}

#[test]
fn a_routers_interface_is_a_link_delay_down_up_and_capture() {
    require_program("tcpdump", "tcpdump");
    let lab = Lab::new();
    let t = routed(&lab);
    let base = pings(&t.ns_a, &t.hb, 30, "0.05");
    assert!(
        base.received >= 25,
        "baseline pings lost: {}",
        base.received
    );
    let m0 = median(&base.rtts);

    // The router's interface on A, what it sends into A: every reply to A crosses it once.
    let shown = lab.ny_ok(&["link", "set", &t.na, "r", "--delay", "50ms"]);
    assert!(shown.contains("delay 50ms"), "{shown}");
    let d = pings(&t.ns_a, &t.hb, 30, "0.05");
    let m1 = median(&d.rtts);
    println!(
        "router interface, delay 50ms: median RTT {m1:.2} ms against {m0:.2} ms without, added \
         {:.2} ms; {}/{} replies",
        m1 - m0,
        d.received,
        d.sent
    );
    assert!(
        d.received >= 25,
        "delayed pings lost: {}/{}",
        d.received,
        d.sent
    );
    let added = m1 - m0;
    if !(40.0..=65.0).contains(&added) {
        lab.fail(&format!(
            "added delay {added:.2} ms through r, expected about 50"
        ));
    }
    let row = link_row(&lab, &t.na, "r");
    assert_eq!(row["kind"], "router", "{row}");
    assert_eq!(row["out"]["delay"], "50ms", "{row}");
    assert!(
        row["counters"]["out"]["delayed"].as_u64().unwrap_or(0) >= 25,
        "{row}"
    );
    // `link show NET` lists the router's interface beside the endpoints; the other network's
    // interface is untouched.
    let all = link_rows(&lab, &[&t.na]);
    assert!(
        all.iter()
            .any(|r| r["port"] == "r" && r["kind"] == "router")
            && all.iter().any(|r| r["port"] == "ha"),
        "link show {}: {all:?}",
        t.na
    );
    let other = link_row(&lab, &t.nb, "r");
    assert!(
        other.get("out").is_none() && other["down"] == false,
        "{other}"
    );
    let everything = link_rows(&lab, &[]);
    assert_eq!(
        everything.iter().filter(|r| r["kind"] == "router").count(),
        2,
        "link show: {everything:?}"
    );
    lab.ny_ok(&["link", "reset", &t.na, "r"]);
    let after = pings(&t.ns_a, &t.hb, 20, "0.05");
    let m2 = median(&after.rtts);
    println!("after reset: median RTT {m2:.2} ms");
    assert!(
        m2 < m0 + 25.0,
        "reset left delay on r: {m2} ms against {m0} ms"
    );

    // Capture on the router's interface, both spellings: the pings cross it both ways.
    for args in [
        vec![t.nb.as_str(), "r"],
        vec![t.nb.as_str(), "--endpoint", "r"],
    ] {
        let txt = lab.capture_through_tcpdump(&args, 6, || {
            let _ = cmd(
                &[
                    "ip", "netns", "exec", &t.ns_a, "ping", "-n", "-c", "1", "-W", "1", &t.hb,
                ],
                Duration::from_secs(10),
            );
        });
        println!("capture {args:?}:\n{txt}");
        assert!(
            txt.contains(&format!("{} > {}: ICMP echo request", t.ha, t.hb))
                && txt.contains(&format!("{} > {}: ICMP echo reply", t.hb, t.ha)),
            "capture {args:?} lacks the pings through r:\n{txt}"
        );
    }

    // Carrier off: nothing crosses r either way, counted; on again: traffic flows.
    let shown = lab.ny_ok(&["link", "down", &t.na, "r"]);
    assert!(shown.contains("down"), "{shown}");
    let p = pings(&t.ns_a, &t.hb, 5, "0.2");
    assert_eq!(p.received, 0, "pings crossed r while its link was down");
    let p = pings(&t.ns_b, &t.ha, 5, "0.2");
    assert_eq!(
        p.received, 0,
        "pings crossed r from B while its link on A was down"
    );
    let row = link_row(&lab, &t.na, "r");
    let (din, dout) = (
        row["counters"]["in"]["down"].as_u64().unwrap_or(0),
        row["counters"]["out"]["down"].as_u64().unwrap_or(0),
    );
    println!("link down on r: down counted in {din}, out {dout}");
    assert_eq!(row["down"], true, "{row}");
    assert!(din >= 5 && dout >= 5, "{row}");
    // A ping to the router's own A address is lost too: the interface is cut.
    assert!(
        !lab.ping(&t.ns_a, &t.ra),
        "r answered on a link that is down"
    );
    lab.ny_ok(&["link", "up", &t.na, "r"]);
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(&t.ns_a, &t.hb)
    });
    assert!(back, "no traffic through r after link up");
    assert_eq!(link_row(&lab, &t.na, "r")["down"], false);
}

// --- VXLAN: the tunnel to a kernel VTEP (as tests/vxlan_e2e.rs builds it). ---

const VNI: &str = "4343";

#[test]
fn a_vxlan_tunnel_is_a_link_loss_and_down_up() {
    let lab = Lab::new();
    let hb = lab.ns("hb");
    let u = underlay(&lab.id, &lab.host.name, &hb);
    let sn = Subnet::random();
    let net = lab.network("ov", &sn, &["--vxlan", VNI, "--vxlan-peer", &u.b_ip]);
    let (c1, k1) = (lab.ns("c1"), lab.ns("k1"));
    lab.attach(&net, &c1, "c1", &["--ip", &sn.ip(11)]);
    kernel_vtep(&hb, &u, VNI, &k1, &format!("{}/24", sn.ip(20)), &[]);
    let far = sn.ip(20);
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(&c1, &far)
    });
    assert!(up, "no ping across the tunnel:\n{}", lab.diagnostics());

    // What the tunnel sends into the switch (the replies from B) loses a tenth.
    lab.ny_ok(&["link", "set", &net, "vxlan", "--loss", "10%"]);
    let p = pings(&c1, &far, 1000, "0.005");
    let lost = p.sent.saturating_sub(p.received);
    let share = lost as f64 / p.sent.max(1) as f64;
    let row = link_row(&lab, &net, "vxlan");
    let counted = row["counters"]["out"]["loss"].as_u64().unwrap_or(0);
    println!(
        "vxlan loss 10%: {lost} of {} pings lost ({:.1}%), the tunnel's link counted {counted}",
        p.sent,
        share * 100.0
    );
    assert_eq!(p.sent, 1000, "ping did not send them all");
    if !(0.05..=0.16).contains(&share) {
        lab.fail(&format!(
            "lost {:.1}% of pings with --loss 10% on the tunnel",
            share * 100.0
        ));
    }
    assert!(
        counted >= lost.saturating_sub(5) && counted <= lost + 5,
        "the tunnel's loss counter {counted} against {lost} lost: {row}"
    );
    assert_eq!(row["kind"], "vxlan", "{row}");
    assert_eq!(row["out"]["loss"], "10%", "{row}");
    lab.ny_ok(&["link", "reset", &net, "vxlan"]);

    lab.ny_ok(&["link", "down", &net, "vxlan"]);
    let p = pings(&c1, &far, 5, "0.2");
    assert_eq!(p.received, 0, "pings crossed a tunnel that is down");
    let row = link_row(&lab, &net, "vxlan");
    println!("vxlan down: {}", row["counters"]);
    assert_eq!(row["down"], true, "{row}");
    assert!(
        row["counters"]["in"]["down"].as_u64().unwrap_or(0) >= 5,
        "{row}"
    );
    lab.ny_ok(&["link", "up", &net, "vxlan"]);
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(&c1, &far)
    });
    assert!(back, "no ping across the tunnel after link up");
}

// --- NAT: traceroute from behind the NAT router. ---

/// The hop addresses `traceroute -n` prints, in order ("*" for a silent hop).
fn trace(ns: &str, ip: &str, extra: &[&str]) -> (Vec<String>, String) {
    let mut argv = vec!["traceroute", "-n", "-q", "1", "-w", "2", "-m", "8"];
    argv.extend_from_slice(extra);
    argv.push(ip);
    let o = ns_cmd(ns, &argv, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let hops = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    (hops, show(&o))
}

/// The value of the metric line starting with `prefix` (name and labels), if present.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn traceroute_from_behind_a_nat_router_shows_the_hops_beyond_and_metrics_count_it() {
    require_program("traceroute", "traceroute");
    require_program("tcpdump", "tcpdump");
    let lab = Lab::new();
    // A --r1 (NAT on B)-- B --r2-- C --r3-- D: the host on A traces to the host on D.
    let [sa, sb, sc, sd] = Subnet::distinct();
    let id = &lab.id[..4];
    let (na, nb, nc, nd) = (
        format!("na{id}"),
        format!("nb{id}"),
        format!("nc{id}"),
        format!("nd{id}"),
    );
    for (n, s) in [(&na, &sa), (&nb, &sb), (&nc, &sc), (&nd, &sd)] {
        lab.network(n, s, &[]);
    }
    let (r1a, r1b) = (sa.ip(254), sb.ip(254));
    let (r2b, r2c) = (sb.ip(253), sc.ip(254));
    let (r3c, r3d) = (sc.ip(253), sd.ip(254));
    // Beyond the NAT nobody knows A: r2 and r3 route B, C and D only.
    lab.ny_ok(&[
        "router",
        "create",
        "r1",
        "--network",
        &format!("{na}={r1a}"),
        "--network",
        &format!("{nb}={r1b}"),
        "--nat",
        &nb,
        "--route",
        &format!("{}={r2b}", sc.cidr()),
        "--route",
        &format!("{}={r2b}", sd.cidr()),
    ]);
    lab.ny_ok(&[
        "router",
        "create",
        "r2",
        "--network",
        &format!("{nb}={r2b}"),
        "--network",
        &format!("{nc}={r2c}"),
        "--route",
        &format!("{}={r3c}", sd.cidr()),
    ]);
    lab.ny_ok(&[
        "router",
        "create",
        "r3",
        "--network",
        &format!("{nc}={r3c}"),
        "--network",
        &format!("{nd}={r3d}"),
        "--route",
        &format!("{}={r2c}", sb.cidr()),
    ]);
    let (ns_a, ns_d) = (lab.ns("a"), lab.ns("d"));
    let (ha, hd) = (sa.ip(10), sd.ip(10));
    lab.attach(&na, &ns_a, "ha", &["--ip", &ha]);
    lab.attach(&nd, &ns_d, "hd", &["--ip", &hd]);
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        lab.ping(&ns_a, &hd)
    });
    assert!(
        ok,
        "no ping from behind the NAT to D:\n{}",
        lab.diagnostics()
    );

    // The far side sees only r1's outside address, the time-exceeded of r2 and r3 go to it.
    let dump = tcpdump_bg(&ns_d, "eth0", &["icmp or udp"], &lab.dir.join("d.pcap.txt"));

    // UDP probes (traceroute's default), then ICMP echo probes (-I): each hop beyond the
    // NAT answers, and the last one (D's port unreachable, or its echo reply) ends it.
    let want = vec![r1a.clone(), r2b.clone(), r3c.clone(), hd.clone()];
    let (hops, text) = trace(&ns_a, &hd, &[]);
    println!("traceroute (UDP) from behind the NAT:\n{text}");
    assert_eq!(hops, want, "traceroute from behind the NAT:\n{text}");
    let (hops, text) = trace(&ns_a, &hd, &["-I"]);
    println!("traceroute -I from behind the NAT:\n{text}");
    assert_eq!(hops, want, "traceroute -I from behind the NAT:\n{text}");
    std::thread::sleep(Duration::from_millis(500));
    let seen = dump.log_text();
    let inside = format!("10.{}.{}.", sa.a, sa.b);
    assert!(
        seen.contains(&r1b) && !seen.contains(&inside),
        "D saw an inside address of A ({inside}x) or no NAT traffic:\n{seen}"
    );

    // r1 translated r2's and r3's errors back; r2 and r3 counted what they sent.
    let r1 = lab.ny_json(&["router", "inspect", "r1"]);
    let r1_b = &r1["interfaces"][1]["counters"];
    assert!(num(r1_b, "nat_out") >= 6, "{r1}");
    let r2 = lab.ny_json(&["router", "inspect", "r2"]);
    assert!(
        num(&r2["interfaces"][0]["counters"], "sent_time_exceeded") >= 2,
        "{r2}"
    );
    println!(
        "r1 on B: {r1_b}; r1 nat_entries {}; r2 on B sent_time_exceeded {}",
        r1["nat_entries"], r2["interfaces"][0]["counters"]["sent_time_exceeded"]
    );
    assert!(num(&r1, "nat_entries") >= 1, "{r1}");

    // /metrics: the same counters per router and interface.
    let text = lab.api_get("/metrics");
    let get = |p: String| metric(&text, &p);
    let fwd = get(format!(
        "netyard_router_forwarded_packets_total{{router=\"r2\",network=\"{nc}\"}}"
    ));
    let ttl = get(format!(
        "netyard_router_icmp_errors_sent_total{{router=\"r2\",network=\"{nb}\",type=\"time_exceeded\",code=\"ttl\"}}"
    ));
    let ttl_r1 = get(format!(
        "netyard_router_icmp_errors_sent_total{{router=\"r1\",network=\"{na}\",type=\"time_exceeded\",code=\"ttl\"}}"
    ));
    let drops = get(format!(
        "netyard_router_drops_total{{router=\"r2\",network=\"{nb}\",reason=\"ttl_exceeded\"}}"
    ));
    let nat_in = get(format!(
        "netyard_router_nat_packets_total{{router=\"r1\",network=\"{nb}\",direction=\"in\"}}"
    ));
    let entries = get("netyard_router_nat_entries{router=\"r1\"}".to_string());
    let port_rx = get(format!(
        "netyard_port_receive_packets_total{{network=\"{na}\",endpoint=\"r1\",kind=\"router\"}}"
    ));
    println!(
        "metrics: r2 forwarded into C {fwd:?}, r2 time exceeded on B {ttl:?} (drops \
         {drops:?}), r1 time exceeded on A {ttl_r1:?}, r1 nat in {nat_in:?}, r1 nat entries \
         {entries:?}, r1's port on A received {port_rx:?}"
    );
    let at_least = |v: Option<f64>, n: f64, what: &str| {
        if !v.is_some_and(|v| v >= n) {
            lab.fail(&format!("/metrics: {what} = {v:?}, want >= {n}:\n{text}"));
        }
    };
    at_least(fwd, 4.0, "r2's forwarded packets into C");
    at_least(ttl, 2.0, "r2's time exceeded on B");
    at_least(drops, 2.0, "r2's ttl_exceeded drops on B");
    at_least(ttl_r1, 2.0, "r1's time exceeded on A");
    at_least(nat_in, 6.0, "r1's translated packets in");
    at_least(entries, 1.0, "r1's NAT entries");
    at_least(port_rx, 6.0, "r1's switch port on A");
}
