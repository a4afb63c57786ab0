//! IPv6 on an endpoint's interface follows its network (issue 16): on an IPv4-only network
//! netyard turns it off on the interface it creates, before bringing it up, as Docker does (so
//! a new container sends no duplicate address detection, MLD report or router solicitation
//! that the switch would have to carry), and leaves the rest of the namespace alone; on an
//! IPv6 network it turns it on, even in a namespace whose default has it off. TAP and veth.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// `/proc/sys/net/ipv6/conf/IFNAME/disable_ipv6` inside `ns`.
fn disable_ipv6(lab: &Lab, ns: &str, ifname: &str) -> String {
    let o = ns_sh(
        ns,
        &format!("cat /proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        Duration::from_secs(10),
    );
    if !o.status.success() {
        lab.fail(&format!(
            "reading disable_ipv6 of {ifname} in {ns}: {}",
            show(&o)
        ));
    }
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `ip -6 -o addr show dev IFNAME` inside `ns`.
fn addrs6(ns: &str, ifname: &str) -> String {
    cmd_ok(&["ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname])
}

#[test]
fn an_ipv4_network_turns_ipv6_off_on_the_interface_only() {
    let lab = Lab::new();
    let sn = Subnet::random();
    let net = lab.network(&format!("v4{}", lab.id), &sn, &[]);
    let mut eps: Vec<(String, Value)> = Vec::new();
    for (i, kind) in ["tap", "veth"].into_iter().enumerate() {
        let ns = lab.ns(&format!("c{i}"));
        let ep = lab.attach(&net, &ns, &format!("c{i}"), &["--kind", kind]);
        eps.push((ns, ep));
    }
    for (ns, ep) in &eps {
        let kind = ep["kind"].as_str().unwrap_or_default();
        let v = disable_ipv6(&lab, ns, "eth0");
        if v != "1" {
            lab.fail(&format!(
                "{kind} endpoint in {ns}: eth0's disable_ipv6 is {v:?} on an IPv4-only network"
            ));
        }
        let a = addrs6(ns, "eth0");
        if !a.trim().is_empty() {
            lab.fail(&format!(
                "{kind} endpoint in {ns}: eth0 has IPv6 addresses on an IPv4-only network: {a}"
            ));
        }
        // The namespace keeps its own defaults: only the endpoint's interface changed.
        let d = disable_ipv6(&lab, ns, "default");
        if d != "0" {
            lab.fail(&format!(
                "{ns}: the namespace's default disable_ipv6 became {d:?}"
            ));
        }
    }
    // IPv4 still works between them.
    let ip1 = eps[1].1["ip"].as_str().unwrap_or_default().to_string();
    lab.assert_ping(&eps[0].0, &ip1);
}

#[test]
fn an_ipv6_network_turns_ipv6_on_even_where_the_namespace_default_is_off() {
    let lab = Lab::new();
    let sn = Subnet::random();
    let net = lab.network(&format!("v6{}", lab.id), &sn, &["--ipv6"]);
    for (i, kind) in ["tap", "veth"].into_iter().enumerate() {
        let ns = lab.ns(&format!("d{i}"));
        let o = ns_sh(
            &ns,
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; \
             echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
            Duration::from_secs(10),
        );
        if !o.status.success() {
            lab.fail(&format!("turning IPv6 off in {ns}: {}", show(&o)));
        }
        let ep = lab.attach(&net, &ns, &format!("d{i}"), &["--kind", kind]);
        let v = disable_ipv6(&lab, &ns, "eth0");
        if v != "0" {
            lab.fail(&format!(
                "{kind} endpoint in {ns}: eth0's disable_ipv6 is {v:?} on an IPv6 network"
            ));
        }
        let ip6 = ep["ip6"].as_str().unwrap_or_default().to_string();
        if ip6.is_empty() {
            lab.fail(&format!("{kind} endpoint in {ns} has no ip6: {ep}"));
        }
        let a = addrs6(&ns, "eth0");
        if !a.contains(&format!(" {ip6}/")) {
            lab.fail(&format!(
                "{kind} endpoint in {ns}: eth0 lacks its address {ip6}: {a}"
            ));
        }
    }
}
