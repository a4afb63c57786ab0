//! Bulk TCP through the switch arrives byte-identical: 1 GiB over TAP ports, 1 GiB over veth
//! ports, and 256 MiB into a TAP port without offloads (which makes the switch segment the
//! sender's GSO super-frames in software).
//!
//! The transfers run one at a time (a lock), so each gets both cores; they assert only the
//! bytes, never a speed.

mod common;

use std::sync::Mutex;

use common::*;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const GIB: u64 = 1 << 30;

/// What a transfer left behind, for the caller's own checks.
struct Done {
    lab: Lab,
    net: String,
}

/// Sends `bytes` of random data from endpoint "snd" to endpoint "rcv" with socat and compares
/// the sha256 computed on both ends.
fn transfer(snd_args: &[&str], rcv_args: &[&str], bytes: u64) -> Done {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new();
    let sn = Subnet::random();
    let net = lab.network("bulk", &sn, &[]);
    let (ns_s, ns_r) = (lab.ns("s"), lab.ns("r"));
    lab.attach(&net, &ns_s, "snd", snd_args);
    let er = lab.attach(&net, &ns_r, "rcv", rcv_args);
    let ip_r = er["ip"].as_str().unwrap().to_string();
    lab.assert_ping(&ns_s, &ip_r);

    sha_transfer(&lab, &ns_s, &ns_r, &ip_r, bytes);
    // The receiver's port carried at least the payload.
    let c = lab.counters(&net, "rcv");
    if num(&c, "tx_bytes") < bytes {
        lab.fail(&format!(
            "rcv's port sent {} bytes for a {bytes}-byte transfer: {c}",
            num(&c, "tx_bytes")
        ));
    }
    eprintln!(
        "transfer of {bytes} bytes ok; snd {}\nrcv {c}",
        lab.counters(&net, "snd")
    );
    Done { lab, net }
}

#[test]
fn one_gib_over_tap_arrives_intact() {
    transfer(&["--kind", "tap"], &["--kind", "tap"], GIB);
}

#[test]
fn one_gib_over_veth_arrives_intact() {
    transfer(&["--kind", "veth"], &["--kind", "veth"], GIB);
}

/// The sender's TAP hands the switch GSO super-frames; the receiver's TAP has no vnet header,
/// so the switch must cut them into MTU-sized frames with correct checksums.
#[test]
fn gso_frames_are_segmented_for_a_port_without_offloads() {
    let done = transfer(
        &["--kind", "tap"],
        &["--kind", "tap", "--no-offload"],
        256 << 20,
    );
    let (lab, net) = (&done.lab, &done.net);
    let ep = lab.endpoint(net, "rcv");
    assert_eq!(ep["offload"], Value::Bool(false), "rcv endpoint: {ep}");
    let c = lab.counters(net, "rcv");
    if num(&c, "tx_segmented") == 0 {
        lab.fail(&format!(
            "no frame was segmented in software for the no-offload port: rcv {c}\nsnd {}",
            lab.counters(net, "snd")
        ));
    }
    let s = lab.counters(net, "snd");
    if num(&s, "rx_gso") == 0 {
        lab.fail(&format!(
            "the sender's TAP never delivered a GSO frame (offloads off?): snd {s}"
        ));
    }
}
