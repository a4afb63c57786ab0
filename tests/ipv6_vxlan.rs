//! IPv6 inner traffic over the VXLAN overlay (issue 15), in real namespaces. Two "hosts" are
//! namespaces joined by a veth (the IPv4 underlay, 198.18.X.1/24 and .2/24, made for the test;
//! no traffic leaves them), as in tests/vxlan_e2e.rs, with a dual-stack network on top:
//!
//! - netyard to netyard: a daemon in each host namespace, static peers, one prefix on both
//!   sides; ping -6 across both ways (neighbour discovery flooded through the tunnel), each
//!   gateway answering locally, and a TCP transfer over IPv6 byte-identical.
//! - interop: host B has the Linux kernel's vxlan device on a bridge with a namespace behind it
//!   (offloads at their defaults: partial inner TCPv6 checksums and TSO6 super-packets cross the
//!   underlay); ping -6 both ways, and TCP over IPv6 both ways byte-identical.
//!
//! Every namespace that carries IPv6 turns it on itself (tests/common starts them with it off).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::vtep::{kernel_vtep, underlay};
use common::*;
use serde_json::Value;

/// The transfers run one at a time (the machine is shared).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A container namespace with IPv6 on.
fn ns6(lab: &Lab, tag: &str) -> String {
    let ns = lab.ns(tag);
    enable_ipv6(&ns);
    ns
}

/// A random /64 of fd00::/8 and the address `host` in it.
struct Prefix6(String);

impl Prefix6 {
    fn random() -> Prefix6 {
        Prefix6(format!(
            "fd{:02x}:{:x}:{:x}:{:x}",
            rand::random::<u8>(),
            rand::random::<u16>(),
            rand::random::<u16>(),
            rand::random::<u16>()
        ))
    }
    fn cidr(&self) -> String {
        format!("{}::/64", self.0)
    }
    fn ip(&self, host: u16) -> String {
        format!("{}::{host:x}", self.0)
    }
}

/// `ping -6` from `ns` to `ip`, failing the test (with the lab's diagnostics) unless it
/// answers. Neighbour discovery crosses the tunnel first, so it gets a few tries.
fn assert_ping6(lab: &Lab, ns: &str, ip: &str) {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let o = cmd(
            &[
                "ip", "netns", "exec", ns, "ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2",
                ip,
            ],
            Duration::from_secs(30),
        );
        let good = o.status.success();
        last = Some(o);
        good
    });
    if !ok {
        let text = last.as_ref().map(show).unwrap_or_default();
        lab.fail(&format!("ping -6 from {ns} to {ip} failed:\n{text}"));
    }
}

fn vxlan_drops_ok(lab: &Lab, net: &str) {
    let c = lab.counters(net, "(vxlan)");
    if num(&c, "rx_packets") == 0 || num(&c, "tx_packets") == 0 || num(&c, "drops_total") != 0 {
        lab.fail(&format!("{net}: (vxlan) counters after IPv6 traffic: {c}"));
    }
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

#[test]
fn netyard_to_netyard_carries_ipv6_ping_and_tcp() {
    require_program("ping", "iputils-ping");
    require_program("socat", "socat");
    let _serial = serial();
    let a = Lab::new();
    let b = Lab::new();
    let u = underlay(&a.id, &a.host.name, &b.host.name);
    let sn = Subnet::random();
    let p6 = Prefix6::random();
    let v6 = ["--ipv6", "--subnet6", &p6.cidr()];
    let mut args_a = vec![
        "--vxlan",
        "77",
        "--vxlan-local",
        &u.a_ip,
        "--vxlan-peer",
        &u.b_ip,
    ];
    args_a.extend_from_slice(&v6);
    let mut args_b = vec!["--vxlan", "77", "--vxlan-peer", &u.a_ip];
    args_b.extend_from_slice(&v6);
    let net_a = a.network("ov", &sn, &args_a);
    let net_b = b.network("ov", &sn, &args_b);
    let (ca, cb) = (ns6(&a, "ca"), ns6(&b, "cb"));
    let (ip_a, ip_b) = (p6.ip(0x11), p6.ip(0x12));
    let ea = a.attach(&net_a, &ca, "ca", &["--ip", &sn.ip(11), "--ip6", &ip_a]);
    let eb = b.attach(
        &net_b,
        &cb,
        "cb",
        &["--ip", &sn.ip(12), "--ip6", &ip_b, "--kind", "veth"],
    );
    if s(&ea, "ip6") != ip_a || s(&eb, "ip6") != ip_b {
        a.fail(&format!(
            "endpoints without their IPv6 addresses: {ea} {eb}"
        ));
    }
    // Across the tunnel both ways, and each gateway locally (the same address on both hosts).
    assert_ping6(&a, &ca, &ip_b);
    assert_ping6(&b, &cb, &ip_a);
    assert_ping6(&a, &ca, &p6.ip(1));
    assert_ping6(&b, &cb, &p6.ip(1));
    // B's MAC learned behind A's tunnel from IPv6 traffic alone (no IPv4 was sent).
    let fdb = a.ny_json(&["fdb", &net_a, "--json"]);
    let mac_b = s(&eb, "mac");
    let learned = fdb.as_array().is_some_and(|rows| {
        rows.iter().any(|r| {
            r["mac"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(&mac_b))
                && r["port"] == "vxlan"
                && r["remote"] == u.b_ip.as_str()
        })
    });
    if !learned {
        a.fail(&format!(
            "A did not learn cb ({mac_b}) behind {}: {fdb}",
            u.b_ip
        ));
    }
    // TCP over IPv6 through the tunnel, both ways, byte-identical.
    sha_transfer(&a, &ca, &cb, &format!("[{ip_b}]"), 64 << 20);
    sha_transfer(&b, &cb, &ca, &format!("[{ip_a}]"), 64 << 20);
    vxlan_drops_ok(&a, &net_a);
    vxlan_drops_ok(&b, &net_b);
}

#[test]
fn interop_with_the_kernel_vxlan_carries_ipv6_ping_and_tcp_both_ways() {
    require_program("ping", "iputils-ping");
    require_program("socat", "socat");
    let _serial = serial();
    let lab = Lab::new();
    let hb = lab.ns("hb");
    let u = underlay(&lab.id, &lab.host.name, &hb);
    let sn = Subnet::random();
    let p6 = Prefix6::random();
    let net = lab.network(
        "ov",
        &sn,
        &[
            "--vxlan",
            "4242",
            "--vxlan-peer",
            &u.b_ip,
            "--ipv6",
            "--subnet6",
            &p6.cidr(),
        ],
    );
    let (c1, c2, k1) = (ns6(&lab, "c1"), ns6(&lab, "c2"), lab.ns("k1"));
    let (ip1, ip2, ipk) = (p6.ip(0x11), p6.ip(0x12), p6.ip(0x20));
    lab.attach(&net, &c1, "c1", &["--ip6", &ip1]);
    lab.attach(&net, &c2, "c2", &["--ip6", &ip2, "--kind", "veth"]);
    enable_ipv6(&k1);
    kernel_vtep(&hb, &u, "4242", &k1, &format!("{ipk}/64"), &["nodad"]);
    assert_ping6(&lab, &c1, &ipk);
    assert_ping6(&lab, &k1, &ip1);
    assert_ping6(&lab, &k1, &ip2);
    assert_ping6(&lab, &k1, &p6.ip(1));
    // The kernel learned c1 behind A from IPv6 traffic alone.
    let mac1 = s(&lab.endpoint(&net, "c1"), "mac").to_lowercase();
    let kfdb = cmd_ok(&["bridge", "-n", &hb, "fdb", "show", "dev", "vx0"]);
    if !kfdb
        .lines()
        .any(|l| l.to_lowercase().starts_with(&mac1) && l.contains(&u.a_ip))
    {
        lab.fail(&format!("the kernel did not learn c1 ({mac1}): {kfdb}"));
    }
    // TCP over IPv6 both ways: the kernel's side sends TSO6 super-packets with partial
    // checksums through the tunnel, netyard's TAP and veth endpoints send theirs.
    sha_transfer(&lab, &c1, &k1, &format!("[{ipk}]"), 256 << 20);
    sha_transfer(&lab, &k1, &c1, &format!("[{ip1}]"), 256 << 20);
    sha_transfer(&lab, &k1, &c2, &format!("[{ip2}]"), 64 << 20);
    let c = lab.counters(&net, "(vxlan)");
    for reason in ["vxlan_truncated", "vxlan_bad_inner_checksum", "over_mtu"] {
        if drops(&c, reason) != 0 {
            lab.fail(&format!("(vxlan) dropped {reason}: {c}"));
        }
    }
}
