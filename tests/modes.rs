//! Issue 14: Docker's network modes for `netyard run` (`none`, `host`, `container:NAME`,
//! several `--network`s) and inter-container isolation (`network create --icc=false`), in real
//! namespaces against a real daemon.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `GET PATH` on the API socket; the body.
fn api_get(lab: &Lab, path: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(&lab.api)
        .unwrap_or_else(|e| lab.fail(&format!("connect {}: {e}", lab.api.display())));
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: netyard\r\n\r\n")
        .unwrap_or_else(|e| lab.fail(&format!("write request: {e}")));
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .unwrap_or_else(|e| lab.fail(&format!("read answer: {e}")));
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// `dig +short NAME @SERVER` inside `ns`: the answer's addresses.
fn dig(ns: &str, server: &str, name: &str) -> String {
    let at = format!("@{server}");
    let o = ns_cmd(
        ns,
        &["dig", "+short", "+time=2", "+tries=2", &at, name],
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn icc_false_keeps_endpoints_apart_but_not_from_the_gateway() {
    require_program("dig", "dnsutils");
    require_program("socat", "socat");
    let lab = Lab::new();
    let out = lab.outside();
    let sub = Subnet::random();
    let net = lab.network("iso", &sub, &["--icc=false"]);
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["icc"], false, "network inspect: {info}");
    let gw = s(&info, "gateway");

    let na = lab.ns("a");
    let nb = lab.ns("b");
    let a = lab.attach(&net, &na, "alpha", &[]);
    let b = lab.attach(&net, &nb, "beta", &["--kind", "veth", "-p", "8080"]);
    let (ip_a, ip_b) = (s(&a, "ip"), s(&b, "ip"));

    // The gateway answers both; egress leaves through it.
    lab.assert_ping(&na, &gw);
    lab.assert_ping(&nb, &gw);
    lab.assert_ping(&na, &out.ip);

    // An ARP request for the other endpoint reaches the gateway only: nobody answers it.
    if lab.ping(&na, &ip_b) || lab.ping(&nb, &ip_a) {
        lab.fail("endpoints of an icc=false network pinged each other");
    }
    // With the neighbour entry forced, the frames themselves are dropped and counted.
    let before = drops(&lab.counters(&net, "alpha"), "icc_blocked");
    cmd_ok(&[
        "ip",
        "-n",
        &na,
        "neigh",
        "replace",
        &ip_b,
        "lladdr",
        &s(&b, "mac"),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    if lab.ping(&na, &ip_b) {
        lab.fail("a ping to a forced neighbour crossed an icc=false network");
    }
    let after = drops(&lab.counters(&net, "alpha"), "icc_blocked");
    if after < before + 3 {
        lab.fail(&format!(
            "icc_blocked went {before} -> {after} for 3 echo requests"
        ));
    }
    let metrics = api_get(&lab, "/metrics");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("netyard_port_drops_total")
                && l.contains("endpoint=\"alpha\"")
                && l.contains("reason=\"icc_blocked\"")
        })
        .unwrap_or_else(|| lab.fail("no icc_blocked line for alpha in /metrics"));
    let n: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(n >= after, "/metrics says {n}, stats {after}: {line}");

    // DNS still answers, in the namespace and at the gateway.
    assert_eq!(dig(&na, "127.0.0.11", "beta"), ip_b);
    assert_eq!(dig(&na, &gw, "beta"), ip_b);

    // A published port of beta is reached from the host through the gateway.
    lab.bg_in(
        &nb,
        &[
            "socat",
            "TCP-LISTEN:8080,reuseaddr,fork",
            "SYSTEM:echo isolated-hello",
        ],
        "socat-b.log",
    );
    if !wait_listening(&nb, 8080, Proto::Tcp) {
        lab.fail("socat never listened in beta");
    }
    let host_port = lab.endpoint(&net, "beta")["ports"][0]["host_port"]
        .as_u64()
        .unwrap_or_else(|| lab.fail("beta has no published port"));
    let target = format!("TCP:127.0.0.1:{host_port}");
    let o = ns_cmd(
        &lab.host.name,
        &["socat", "-T", "5", "-", &target],
        Duration::from_secs(20),
    );
    if !String::from_utf8_lossy(&o.stdout).contains("isolated-hello") {
        lab.fail(&format!(
            "the published port of beta did not answer:\n{}",
            show(&o)
        ));
    }

    // A network without the flag is not isolated.
    let open = lab.network("open", &sub.other(), &[]);
    assert_eq!(lab.ny_json(&["network", "inspect", &open])["icc"], true);

    // Bad input names the flag and creates nothing.
    // (clap's own message: the flag, the value and the values it takes.)
    let o = lab.ny(&["network", "create", "bad", "--icc=maybe"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--icc") && err.contains("maybe"),
        "--icc=maybe: {}",
        show(&o)
    );
    let o = lab.ny(&["network", "inspect", "bad"]);
    assert!(!o.status.success(), "network bad was created: {}", show(&o));
}
