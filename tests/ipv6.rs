//! IPv6 dual stack (issue 15), the core, in real namespaces: `network create --ipv6`, IPv6
//! addresses on TAP and veth endpoints, ping -6 between them and to the gateway, the gateway's
//! Router Advertisement seen as the containers' default route (and no SLAAC address), AAAA,
//! ip6.arpa PTR and NODATA/NXDOMAIN through the embedded resolver (at 127.0.0.11 and at the
//! gateway's IPv6 address, forwarding to a dnsmasq on ::1), dual-stack `getent ahosts`,
//! `--internal` and `--icc=false` for IPv6, a restart keeping the addresses, and bad input.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The upstream dnsmasq's port on the host namespace's ::1.
const UPSTREAM_PORT: u16 = 5391;
/// What the upstream answers: one name with an IPv6 address.
const UP_NAME: &str = "www.zone6.test";
const UP_ADDR: &str = "2001:db8::80";

/// Starts dnsmasq on [::1]:UPSTREAM_PORT in the lab's host namespace (NXDOMAIN for anything
/// but `UP_NAME`) and the daemon forwarding to it, over IPv6.
fn v6_lab() -> Lab {
    require_program("dnsmasq", "dnsmasq-base");
    require_program("dig", "dnsutils");
    require_program("ping", "iputils-ping");
    let mut lab = Lab::bare();
    enable_ipv6(&lab.host.name);
    let log: PathBuf = lab.dir.join("dnsmasq.out");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name, "dnsmasq"]).args([
        "--conf-file=/dev/null",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--pid-file",
        "--user=root",
        &format!("--port={UPSTREAM_PORT}"),
        "--listen-address=::1",
        "--bind-interfaces",
        "--domain-needed",
        "--bogus-priv",
        "--local=/zone6.test/",
        &format!("--host-record={UP_NAME},{UP_ADDR}"),
    ]);
    lab.keep(Bg::spawn(&mut c, &log));
    let up = format!("[::1]:{UPSTREAM_PORT}");
    let p = UPSTREAM_PORT.to_string();
    let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let o = ns_cmd(
            &lab.host.name,
            &[
                "dig", "@::1", "-p", &p, "+time=1", "+tries=1", "AAAA", UP_NAME,
            ],
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&o.stdout).contains(UP_ADDR)
    });
    if !ready {
        lab.fail("dnsmasq on [::1] did not answer within 10 s");
    }
    lab.start_daemon(&["--dns-upstream", &up]);
    lab
}

/// A container namespace with IPv6 on.
fn ns6(lab: &Lab, tag: &str) -> String {
    let ns = lab.ns(tag);
    enable_ipv6(&ns);
    ns
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// `dig +short` output lines, and the status line, for `args` against `server` from `ns`.
fn dig(ns: &str, server: &str, args: &[&str]) -> (String, Vec<String>) {
    let at = format!("@{server}");
    let mut argv = vec!["dig", &at, "+time=2", "+tries=2"];
    argv.extend_from_slice(args);
    let o = ns_cmd(ns, &argv, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("")
        .to_string();
    let answers = text
        .split(";; ANSWER SECTION:\n")
        .nth(1)
        .map(|sec| {
            sec.lines()
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().last().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (status, answers)
}

fn expect_dig(lab: &Lab, ns: &str, server: &str, args: &[&str], status: &str, want: &[&str]) {
    let (st, got) = dig(ns, server, args);
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted: Vec<String> = want.iter().map(|w| w.to_string()).collect();
    want_sorted.sort();
    if st != status || got_sorted != want_sorted {
        lab.fail(&format!(
            "dig @{server} {} from {ns}: expected {status} {want:?}, got {st} {got:?}",
            args.join(" ")
        ));
    }
}

/// Waits (15 s at most) for the RA to give `ns` a default IPv6 route via `via`.
fn default_route_via(ns: &str, via: &str) -> Result<String, String> {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        last = cmd_ok(&["ip", "-n", ns, "-6", "route", "show", "default"]);
        last.contains(&format!("via {via} "))
    });
    if ok {
        Ok(last)
    } else {
        Err(last)
    }
}

#[test]
fn dual_stack_addresses_ping_router_advert_dns_and_restart() {
    let mut lab = v6_lab();
    let sn = Subnet::random();
    let net = lab.network(&format!("v6{}", lab.id), &sn, &["--ipv6"]);
    let info = lab.ny_json(&["network", "inspect", &net]);
    let (subnet6, gw6, gw_ll) = (
        s(&info, "subnet6"),
        s(&info, "gateway6"),
        s(&info, "gateway6_link_local"),
    );
    // An automatic prefix: a /64 of fd00::/8 (RFC 4193), the gateway its ::1.
    if !subnet6.starts_with("fd") || !subnet6.ends_with("::/64") || !gw6.ends_with("::1") {
        lab.fail(&format!("network inspect: unexpected IPv6 side {info}"));
    }
    if !gw_ll.starts_with("fe80::") {
        lab.fail(&format!(
            "network inspect: no gateway link-local address: {info}"
        ));
    }

    let na = ns6(&lab, "a");
    let nb = ns6(&lab, "b");
    let a = lab.attach(&net, &na, "alpha", &["--alias", "web6"]);
    let b = lab.attach(&net, &nb, "bravo", &["--kind", "veth"]);
    let (a6, b6) = (s(&a, "ip6"), s(&b, "ip6"));
    if a6.is_empty() || b6.is_empty() || a["prefix_len6"] != 64 {
        lab.fail(&format!("ps --json shows no IPv6 address: {a} {b}"));
    }
    for (ns, ip6) in [(&na, &a6), (&nb, &b6)] {
        let (addrs, tentative) = global6(ns, "eth0");
        // nodad: usable at once, never tentative.
        if addrs != vec![format!("{ip6}/64")] || tentative {
            lab.fail(&format!(
                "{ns}: expected exactly {ip6}/64 (not tentative), got {addrs:?} tentative={tentative}"
            ));
        }
    }

    // `ps` shows both addresses, `inspect` the IPv6 one and its prefix length.
    let ps = lab.ny_ok(&["ps"]);
    if !ps.contains(&format!("{}/24,{a6}/64", s(&a, "ip"))) {
        lab.fail(&format!("ps does not show alpha's {a6}/64:\n{ps}"));
    }
    let shown = lab.ny_json(&["inspect", "bravo", "--network", &net]);
    let shown = shown.as_array().and_then(|v| v.first()).unwrap_or(&shown);
    if s(shown, "ip6") != b6 || shown["prefix_len6"] != 64 {
        lab.fail(&format!("inspect bravo does not show {b6}/64: {shown}"));
    }

    // Between containers (TAP <-> veth), and to the gateway.
    assert_ping6(&lab, &na, &b6);
    assert_ping6(&lab, &nb, &a6);
    assert_ping6(&lab, &na, &gw6);
    assert_ping6(&lab, &nb, &format!("{gw_ll}%eth0"));

    // The RA: a default route via the gateway's link-local address, and still no SLAAC
    // address (A=0).
    for ns in [&na, &nb] {
        if let Err(route) = default_route_via(ns, &gw_ll) {
            lab.fail(&format!(
                "{ns}: no default IPv6 route via {gw_ll} after 15 s; ip -6 route default: {route:?}\n{}",
                cmd_ok(&["ip", "-n", ns, "-6", "route"])
            ));
        }
        let (addrs, _) = global6(ns, "eth0");
        if addrs.len() != 1 {
            lab.fail(&format!(
                "{ns}: a second global address appeared: {addrs:?}"
            ));
        }
    }

    // DNS: AAAA for names and aliases, ip6.arpa PTR, NODATA vs NXDOMAIN, at 127.0.0.11 and at
    // the gateway's IPv6 address; forwarding to the upstream on ::1.
    for server in ["127.0.0.11", gw6.as_str()] {
        expect_dig(&lab, &na, server, &["AAAA", "bravo"], "NOERROR", &[&b6]);
        expect_dig(&lab, &nb, server, &["AAAA", "web6"], "NOERROR", &[&a6]);
        expect_dig(
            &lab,
            &nb,
            server,
            &["AAAA", &format!("alpha.{net}")],
            "NOERROR",
            &[&a6],
        );
        expect_dig(
            &lab,
            &na,
            server,
            &["-x", &b6],
            "NOERROR",
            &[&format!("bravo.{net}.")],
        );
        expect_dig(&lab, &na, server, &["AAAA", "ghost"], "NXDOMAIN", &[]);
        expect_dig(&lab, &na, server, &["AAAA", UP_NAME], "NOERROR", &[UP_ADDR]);
    }
    // A name with only an IPv4 address asked AAAA: NODATA (NOERROR, empty), not NXDOMAIN.
    let sn4 = sn.other();
    let net4 = lab.network(&format!("v4{}", lab.id), &sn4, &[]);
    let nc = ns6(&lab, "c");
    lab.attach(&net4, &nc, "charlie", &[]);
    expect_dig(
        &lab,
        &nc,
        "127.0.0.11",
        &["AAAA", "charlie"],
        "NOERROR",
        &[],
    );
    expect_dig(
        &lab,
        &nc,
        "127.0.0.11",
        &["A", "charlie"],
        "NOERROR",
        &[&sn4.ip(2)],
    );

    // Dual stack through the C library: getent ahosts lists both addresses.
    let o = lab.ny(&[
        "run",
        "--network",
        &net,
        "--name",
        "runner",
        "--",
        "getent",
        "ahosts",
        "bravo",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() || !out.contains(&b6) || !out.contains(&s(&b, "ip")) {
        lab.fail(&format!(
            "getent ahosts bravo: expected {b6} and {}:\n{}",
            s(&b, "ip"),
            show(&o)
        ));
    }
    // --ip6 on run, and the address inside.
    let want6 = format!("{}99", gw6.trim_end_matches('1'));
    let o = lab.ny(&[
        "run",
        "--network",
        &net,
        "--name",
        "fixed",
        "--ip6",
        &want6,
        "--",
        "ip",
        "-6",
        "-o",
        "addr",
        "show",
        "dev",
        "eth0",
        "scope",
        "global",
    ]);
    if !o.status.success() || !String::from_utf8_lossy(&o.stdout).contains(&format!("{want6}/64")) {
        lab.fail(&format!("run --ip6 {want6}:\n{}", show(&o)));
    }

    // A restart keeps the addresses and the IPv6 side of the network.
    lab.stop_daemon();
    lab.start_daemon(&["--dns-upstream", &format!("[::1]:{UPSTREAM_PORT}")]);
    let a2 = lab.endpoint(&net, "alpha");
    let info2 = lab.ny_json(&["network", "inspect", &net]);
    if s(&a2, "ip6") != a6 || s(&info2, "subnet6") != subnet6 || s(&info2, "gateway6") != gw6 {
        lab.fail(&format!("after the restart: {a2} {info2}"));
    }
    assert_ping6(&lab, &na, &b6);
    assert_ping6(&lab, &nb, &gw6);
    expect_dig(
        &lab,
        &na,
        "127.0.0.11",
        &["AAAA", "bravo"],
        "NOERROR",
        &[&b6],
    );
    // A new endpoint does not get an address already held.
    let nd = ns6(&lab, "d");
    let d = lab.attach(&net, &nd, "delta", &[]);
    if [&a6, &b6, &want6].contains(&&s(&d, "ip6")) {
        lab.fail(&format!("delta got an address already given: {d}"));
    }
}

#[test]
fn internal_and_icc_false_apply_to_ipv6() {
    require_program("ping", "iputils-ping");
    let lab = Lab::new();
    // --internal: the gateway answers, the RA makes it no default router.
    let sn = Subnet::random();
    let int = lab.network(
        &format!("in{}", lab.id),
        &sn,
        &[
            "--ipv6",
            "--subnet6",
            &format!("fd00:{:x}:1::/64", sn.b),
            "--internal",
        ],
    );
    let info = lab.ny_json(&["network", "inspect", &int]);
    let gw6 = s(&info, "gateway6");
    let na = ns6(&lab, "a");
    let nb = ns6(&lab, "b");
    lab.attach(&int, &na, "alpha", &[]);
    let b = lab.attach(&int, &nb, "bravo", &[]);
    assert_ping6(&lab, &na, &s(&b, "ip6"));
    assert_ping6(&lab, &na, &gw6);
    // The RA arrived (the kernel keeps its sender as a neighbour flagged router) but made no
    // default route (router lifetime 0).
    let gw_ll = s(&info, "gateway6_link_local");
    let seen = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        let n = cmd_ok(&["ip", "-n", &na, "-6", "neigh", "show", "dev", "eth0"]);
        n.lines()
            .any(|l| l.starts_with(&format!("{gw_ll} ")) && l.contains("router"))
    });
    let routes = cmd_ok(&["ip", "-n", &na, "-6", "route"]);
    if !seen || routes.contains("default") {
        lab.fail(&format!(
            "--internal: expected an RA from {gw_ll} without a default route:\n{routes}\n{}",
            cmd_ok(&["ip", "-n", &na, "-6", "neigh"])
        ));
    }
    // And a container that routes through the gateway anyway still gets nowhere: the outside
    // namespace's IPv6 address (reachable from the daemon's namespace) does not answer.
    let out = lab.outside6();
    cmd_ok(&[
        "ip", "-n", &na, "-6", "route", "add", "default", "via", &gw_ll, "dev", "eth0",
    ]);
    let o = ping6(&na, &out.ip);
    if o.status.success() {
        lab.fail(&format!(
            "--internal: alpha reached the outside's {} over IPv6:\n{}",
            out.ip,
            show(&o)
        ));
    }

    // --icc=false: endpoints reach the gateway over IPv6, never each other.
    let sn2 = sn.other();
    let iso = lab.network(&format!("is{}", lab.id), &sn2, &["--ipv6", "--icc=false"]);
    let gw6 = s(&lab.ny_json(&["network", "inspect", &iso]), "gateway6");
    let nc = ns6(&lab, "c");
    let nd = ns6(&lab, "d");
    lab.attach(&iso, &nc, "charlie", &[]);
    let d = lab.attach(&iso, &nd, "delta", &[]);
    assert_ping6(&lab, &nc, &gw6);
    assert_ping6(&lab, &nd, &gw6);
    let c = lab.endpoint(&iso, "charlie");
    for (from, to, what) in [
        (&nc, s(&d, "ip6"), "charlie reached delta"),
        (&nd, s(&c, "ip6"), "delta reached charlie"),
    ] {
        let o = ping6(from, &to);
        if o.status.success() {
            lab.fail(&format!("--icc=false: {what} over IPv6:\n{}", show(&o)));
        }
    }
}

#[test]
fn ipv6_bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let lab = Lab::new();
    let sn = Subnet::random();
    let prefix = format!("fd00:{:x}:{:x}::/64", sn.a, sn.b);
    let net = lab.network(
        &format!("ok{}", lab.id),
        &sn,
        &["--ipv6", "--subnet6", &prefix],
    );
    let before = lab.ny_ok(&["network", "ls"]);
    let s2 = sn.other();
    let cidr2 = s2.cidr();
    let name2 = format!("bad{}", lab.id);
    for (args, needles) in [
        (
            vec!["--ipv6", "--subnet6", prefix.as_str()],
            vec!["subnet6", "overlaps"],
        ),
        (vec!["--subnet6", "fd00:1::/64"], vec!["subnet6", "--ipv6"]),
        (vec!["--gateway6", "fd00:1::1"], vec!["gateway6", "--ipv6"]),
        (
            vec![
                "--ipv6",
                "--subnet6",
                "fd00:2::/64",
                "--gateway6",
                "fd00:3::1",
            ],
            vec!["gateway6", "fd00:3::1"],
        ),
        (
            vec!["--ipv6", "--subnet6", "fe80::/64"],
            vec!["subnet6", "link-local"],
        ),
    ] {
        let mut a = vec![
            "network",
            "create",
            name2.as_str(),
            "--subnet",
            cidr2.as_str(),
        ];
        a.extend_from_slice(&args);
        let o = lab.ny(&a);
        assert_one_line_error(&format!("network create {args:?}"), &o, &needles);
    }
    if lab.ny_ok(&["network", "ls"]) != before {
        lab.fail("a refused network create changed the network list");
    }
    let ns = lab.ns("a");
    let path = format!("/run/netns/{ns}");
    let outside = "fd99::5";
    let o = lab.ny(&[
        "attach", &net, "--netns", &path, "--name", "x", "--ip6", outside,
    ]);
    assert_one_line_error("attach --ip6 outside the prefix", &o, &["ip6", outside]);
    // --ip6 on an IPv4-only network.
    let s3 = s2.other();
    let v4 = lab.network(&format!("v4{}", lab.id), &s3, &[]);
    let o = lab.ny(&[
        "attach", &v4, "--netns", &path, "--name", "x", "--ip6", "fd00::5",
    ]);
    assert_one_line_error(
        "attach --ip6 on an IPv4-only network",
        &o,
        &["ip6", "IPv4-only"],
    );
    // Nothing attached, nothing left in the namespace.
    let ps = lab.ny_json(&["ps", "--json"]);
    if ps.as_array().is_some_and(|a| !a.is_empty()) {
        lab.fail(&format!("a refused attach left an endpoint: {ps}"));
    }
    if links(&ns).iter().any(|l| l != "lo") {
        lab.fail(&format!(
            "a refused attach left a device in {ns}: {:?}",
            links(&ns)
        ));
    }
}
