//! Egress and published ports over IPv6: a container on a dual-stack network reaches an
//! "outside" namespace at 2001:db8:X::2 (tests/common/outside6.rs) through the daemon's host
//! sockets, and an outside client reaches the container's published port over IPv6 with its
//! own address kept. Nothing is sent anywhere else: 2001:db8:dead::/48, used for the
//! unreachable cases, has no route in the host namespace.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::outside6::Outside6;
use common::{
    require_program, run_bounded, sha_transfer, show, wait_listening, wait_until, Bg, Lab, Proto,
    Subnet,
};

struct Setup {
    lab: Lab,
    out: Outside6,
    /// The container's namespace and its IPv6 address.
    ns: String,
    ip6: String,
    net: String,
}

/// A dual-stack network with one TAP container publishing `hport` -> 80 on every host
/// address, and the outside namespace; waits for the container's IPv6 default route (from
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
    let ep = lab.attach(&net, &ns, "c1", &["-p", &publish]);
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
    let hport = 20000 + rand::random::<u16>() % 20000;
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
