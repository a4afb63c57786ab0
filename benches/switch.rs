//! The switch benchmark: netyard (TAP ports, veth/AF_PACKET ports) against the Linux kernel
//! bridge and against the floor of each port kind (the cheapest userspace forwarder,
//! benches/common/floor.rs), each in namespaces made for the run and removed afterwards.
//!
//! Run as root: `cargo bench --bench switch -- [--json FILE] [--seconds N] [--runs N]`.
//! benches/README.md describes what is measured and how. This is a measurement, never a test:
//! nothing here asserts on a figure. Everything but the scenarios' setups is in
//! benches/common/link.rs, shared with the vxlan bench.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::floor::{self, FloorKind};
use common::link::{self, Bench, Ctx, Lab, Scenario as _};
use common::{ip, ip_addr_up, Daemon};

/// Namespaces `nyb-<pid>-<run><scenario>-{h,a,b}`: the host (H) and the endpoints A and B.
const BENCH: Bench<Scenario> = Bench {
    name: "switch",
    ns_prefix: "nyb-",
    tmp_prefix: "netyard-bench-",
    reference: "kernel bridge",
    choices: &["bridge", "tap", "veth", "floor-tap", "floor-veth"],
    hosts: &["h"],
    subnet: "10.251",
    daemon_word: "the daemon",
    reverse_tcp: false,
    setup,
};

fn main() {
    link::main(&BENCH);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Bridge,
    Tap,
    Veth,
    FloorTap,
    FloorVeth,
}

impl link::Scenario for Scenario {
    const ALL: &'static [Scenario] = &[
        Scenario::Bridge,
        Scenario::Tap,
        Scenario::Veth,
        Scenario::FloorTap,
        Scenario::FloorVeth,
    ];
    const REFERENCE: Scenario = Scenario::Bridge;

    fn name(self) -> &'static str {
        match self {
            Scenario::Bridge => "kernel-bridge",
            Scenario::Tap => "netyard-tap",
            Scenario::Veth => "netyard-veth",
            Scenario::FloorTap => "floor-tap",
            Scenario::FloorVeth => "floor-veth",
        }
    }

    fn floor(self) -> Option<Scenario> {
        match self {
            Scenario::Tap => Some(Scenario::FloorTap),
            Scenario::Veth => Some(Scenario::FloorVeth),
            _ => None,
        }
    }

    fn is_netyard(self) -> bool {
        matches!(self, Scenario::Tap | Scenario::Veth)
    }

    fn tag(self) -> &'static str {
        match self {
            Scenario::Bridge => "br",
            Scenario::Tap => "tap",
            Scenario::Veth => "veth",
            Scenario::FloorTap => "ft",
            Scenario::FloorVeth => "fv",
        }
    }

    fn octet(self) -> u8 {
        match self {
            Scenario::Bridge => 1,
            Scenario::Tap => 2,
            Scenario::Veth => 3,
            Scenario::FloorTap => 4,
            Scenario::FloorVeth => 5,
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        match s {
            "bridge" | "br" | "kernel-bridge" => Some(Scenario::Bridge),
            "tap" | "netyard-tap" => Some(Scenario::Tap),
            "veth" | "netyard-veth" => Some(Scenario::Veth),
            "floor-tap" => Some(Scenario::FloorTap),
            "floor-veth" => Some(Scenario::FloorVeth),
            _ => None,
        }
    }
}

fn setup(ctx: &Ctx, sc: Scenario, lab: &mut Lab) -> Result<(), String> {
    match sc {
        Scenario::Bridge => setup_bridge(lab),
        Scenario::Tap => setup_netyard(lab, &ctx.run.netyard.clone()?, sc, "tap"),
        Scenario::Veth => setup_netyard(lab, &ctx.run.netyard.clone()?, sc, "veth"),
        Scenario::FloorTap => floor::setup(lab, &ctx.run.self_exe, FloorKind::Tap, ctx.floor_io),
        Scenario::FloorVeth => floor::setup(lab, &ctx.run.self_exe, FloorKind::Veth, ctx.floor_io),
    }
}

/// A and B each joined by a veth pair to the Linux bridge `br0` in H.
fn setup_bridge(lab: &Lab) -> Result<(), String> {
    let h = &lab.hosts[0];
    ip(&["-n", h, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", h, "link", "set", "br0", "up"])?;
    for (ns, port, addr) in [(&lab.a, "va", &lab.ip_a), (&lab.b, "vb", &lab.ip_b)] {
        ip(&[
            "-n", h, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", h, "link", "set", port, "master", "br0"])?;
        ip(&["-n", h, "link", "set", port, "up"])?;
        ip_addr_up(ns, "eth0", addr)?;
    }
    Ok(())
}

/// `netyard daemon` in H, one network, A and B attached with `--kind KIND`.
fn setup_netyard(lab: &mut Lab, bin: &Path, sc: Scenario, kind: &str) -> Result<(), String> {
    let daemon = Daemon::spawn(
        bin,
        &lab.hosts[0],
        &lab.dir.join("api.sock"),
        &lab.dir.join("state"),
        &lab.dir.join("daemon.log"),
        &[],
        &[],
        "the daemon",
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    lab.daemons.push(daemon);
    let d = &mut lab.daemons[0];
    d.wait_ready(deadline)?;
    let subnet = format!("10.251.{}.0/24", sc.octet());
    d.cli(&["network", "create", "bench", "--subnet", &subnet])?;
    for (ns, name, addr) in [(&lab.a, "a", &lab.ip_a), (&lab.b, "b", &lab.ip_b)] {
        let path = format!("/run/netns/{ns}");
        d.cli(&[
            "attach", "bench", "--netns", &path, "--name", name, "--ip", addr, "--kind", kind,
        ])?;
    }
    Ok(())
}
