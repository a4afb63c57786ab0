//! The network's gateway (ARP, ping, DNS on the gateway address) and packet capture to pcap.

mod common;

use std::process::Command;

use common::{Lab, Pair};

fn ns_exec(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

#[test]
fn gateway_answers_arp_ping_and_dns() {
    let lab = Lab::new();
    let Pair { sub, net, a, b } = lab.pair("gw", &[], &["--alias", "web"]);
    let gw = sub.ip(1);

    // ARP and ICMP echo for the gateway address, from a TAP and from a veth endpoint.
    lab.assert_ping(&a, &gw);
    lab.assert_ping(&b, &gw);
    let neigh = ns_exec(&a, &["ip", "-j", "neigh", "show", &gw]);
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    let o: Vec<u8> = sub
        .ip(1)
        .split('.')
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let gw_mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert!(
        neigh.contains(&gw_mac),
        "ARP resolved the gateway to {gw_mac}: {neigh}"
    );

    // DNS on the gateway's port 53, UDP and TCP.
    for tcp in [false, true] {
        let mut args = vec!["dig", "+short", "+time=3", "+tries=1"];
        if tcp {
            args.push("+tcp");
        }
        let at = format!("@{gw}");
        args.extend([at.as_str(), "web"]);
        let out = ns_exec(&b, &args);
        let txt = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if txt != sub.ip(2) {
            lab.fail(&format!(
                "dig {args:?} answered {txt:?}, want {}",
                sub.ip(2)
            ));
        }
    }
    let out = ns_exec(
        &b,
        &[
            "dig",
            "+short",
            "+time=3",
            "+tries=1",
            &format!("@{gw}"),
            "-x",
            &sub.ip(2),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alpha.gw.");

    // The gateway is a port of the switch: it shows in fdb and stats.
    let fdb = lab.ny_json(&["fdb", &net, "--json"]);
    assert!(
        fdb.as_array().is_some_and(|r| r
            .iter()
            .any(|e| e["port"] == "gateway" && e["mac"] == gw_mac.as_str())),
        "fdb: {fdb}"
    );
    let c = lab.counters(&net, "(gateway)");
    assert!(c["rx_packets"].as_u64().unwrap_or(0) > 0, "{c}");
    assert_eq!(c["drops_total"], 0, "{c}");
}

#[test]
fn capture_writes_pcap_that_tcpdump_reads() {
    let lab = Lab::new();
    let Pair { sub, net, a, b: _ } = lab.pair("cap", &[], &[]);
    let pcap = lab.dir.join("net.pcap");
    let pcap_s = pcap.to_string_lossy().to_string();

    // A network-wide capture of a bounded number of frames while alpha pings beta.
    let mut cap = lab.ny_command(&[
        "capture",
        &net,
        "-c",
        "8",
        "--duration",
        "20",
        "-w",
        &pcap_s,
    ]);
    let child = cap.spawn().expect("start capture");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ping = ns_exec(&a, &["ping", "-c", "6", "-i", "0.2", &sub.ip(3)]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let out = child.wait_with_output().expect("capture");
    assert!(
        out.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = Command::new("tcpdump")
        .args(["-nn", "-r", &pcap_s])
        .output()
        .expect("tcpdump");
    let txt = String::from_utf8_lossy(&read.stdout).to_string();
    assert!(
        read.status.success(),
        "tcpdump could not read the file: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(txt.lines().count(), 8, "exactly -c frames: {txt}");
    assert!(
        txt.contains(&format!("{} > {}: ICMP echo request", sub.ip(2), sub.ip(3))),
        "{txt}"
    );
    assert!(
        txt.contains(&format!("{} > {}: ICMP echo reply", sub.ip(3), sub.ip(2))),
        "{txt}"
    );

    // An endpoint capture to stdout, bounded by time; an unknown endpoint is a clear error.
    let mut cap = lab.ny_command(&["capture", &net, "--endpoint", "beta", "--duration", "2"]);
    cap.stdout(std::process::Stdio::piped());
    let child = cap.spawn().expect("start capture");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = ns_exec(&a, &["ping", "-c", "2", "-i", "0.2", &sub.ip(3)]);
    let out = child.wait_with_output().expect("capture");
    assert!(out.status.success());
    assert!(out.stdout.len() > 24, "pcap header and records on stdout");
    assert_eq!(&out.stdout[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    let bad = lab.ny(&["capture", &net, "--endpoint", "nobody", "-c", "1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nobody"));
}
