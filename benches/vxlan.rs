//! The VXLAN overlay benchmark: two "hosts" (namespaces joined by a veth underlay), an endpoint
//! behind each, connected by netyard on both hosts (a daemon per host, `--vxlan`, TAP endpoints),
//! by the Linux kernel's vxlan devices on a bridge on both hosts, or by netyard on host 1
//! talking to a kernel VTEP on host 2 (mixed), by the floor on both hosts (the cheapest
//! userspace VTEP: benches/common/floor.rs), or by the floor on host 1 talking to a kernel VTEP
//! on host 2 (the mixed path's floor), in the same run. TCP is measured both ways (A to B:
//! host 1 sends; B to A: host 2 sends), since the mixed paths differ by direction.
//!
//! Run as root: `cargo bench --bench vxlan -- [--json FILE] [--seconds N] [--runs N]`.
//! benches/README.md describes what is measured and how. This is a measurement, never a test:
//! nothing here asserts on a figure. Everything but the scenarios' setups (the underlay, then
//! the overlay) is in benches/common/link.rs, shared with the switch bench.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::floor;
use common::link::{self, Bench, Ctx, Lab, Scenario as _};
use common::{ip, ip_addr_up, Daemon};

/// Namespaces `nyv-<pid>-<run><scenario>-{h1,h2,a,b}`: host namespaces H1 and H2 (the underlay
/// veth joins them), endpoint A behind H1, B behind H2.
const BENCH: Bench<Scenario> = Bench {
    name: "vxlan",
    ns_prefix: "nyv-",
    tmp_prefix: "netyard-vxbench-",
    reference: "kernel vxlan",
    choices: &["kernel", "netyard", "mixed", "floor", "floor-mixed"],
    hosts: &["h1", "h2"],
    subnet: "10.252",
    daemon_word: "a daemon",
    reverse_tcp: true,
    setup,
};

fn main() {
    link::main(&BENCH);
}

const VNI: &str = "4242";
/// The overlay MTU both scenarios use: a 1500-byte underlay minus 50.
const MTU: &str = "1450";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Kernel,
    Netyard,
    /// netyard on host 1, the kernel's vxlan on host 2: the interop path.
    Mixed,
    /// The floor on both hosts.
    Floor,
    /// The floor on host 1, the kernel's vxlan on host 2: what any userspace VTEP with
    /// netyard's tunnel port pays against a kernel VTEP, the mixed scenario's floor.
    FloorMixed,
}

impl link::Scenario for Scenario {
    const ALL: &'static [Scenario] = &[
        Scenario::Kernel,
        Scenario::Netyard,
        Scenario::Mixed,
        Scenario::Floor,
        Scenario::FloorMixed,
    ];
    const REFERENCE: Scenario = Scenario::Kernel;

    fn name(self) -> &'static str {
        match self {
            Scenario::Kernel => "kernel-vxlan",
            Scenario::Netyard => "netyard-vxlan",
            Scenario::Mixed => "mixed-vxlan",
            Scenario::Floor => "floor-vxlan",
            Scenario::FloorMixed => "floor-mixed",
        }
    }

    fn floor(self) -> Option<Scenario> {
        match self {
            Scenario::Netyard => Some(Scenario::Floor),
            Scenario::Mixed => Some(Scenario::FloorMixed),
            _ => None,
        }
    }

    fn is_netyard(self) -> bool {
        matches!(self, Scenario::Netyard | Scenario::Mixed)
    }

    fn tag(self) -> &'static str {
        match self {
            Scenario::Kernel => "kv",
            Scenario::Netyard => "nv",
            Scenario::Mixed => "mx",
            Scenario::Floor => "fx",
            Scenario::FloorMixed => "fm",
        }
    }

    fn octet(self) -> u8 {
        match self {
            Scenario::Kernel => 1,
            Scenario::Netyard => 2,
            Scenario::Mixed => 3,
            Scenario::Floor => 4,
            Scenario::FloorMixed => 5,
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        match s {
            "kernel" | "kernel-vxlan" => Some(Scenario::Kernel),
            "netyard" | "netyard-vxlan" => Some(Scenario::Netyard),
            "mixed" | "mixed-vxlan" => Some(Scenario::Mixed),
            "floor" | "floor-vxlan" => Some(Scenario::Floor),
            "floor-mixed" => Some(Scenario::FloorMixed),
            _ => None,
        }
    }
}

/// The underlay address of host 1 or 2.
fn underlay(sc: Scenario, host: u8) -> String {
    format!("198.18.{}.{host}", sc.octet())
}

fn setup(ctx: &Ctx, sc: Scenario, lab: &mut Lab) -> Result<(), String> {
    // The underlay: a veth between the hosts, 198.18.N.1 and .2 (MTU 1500).
    let (h1, h2) = (&lab.hosts[0], &lab.hosts[1]);
    ip(&[
        "-n", h1, "link", "add", "ul", "type", "veth", "peer", "name", "ul", "netns", h2,
    ])?;
    for (h, u) in [(h1, underlay(sc, 1)), (h2, underlay(sc, 2))] {
        ip_addr_up(h, "ul", &u)?;
    }
    match sc {
        Scenario::Kernel => setup_kernel(lab, sc, &[0, 1]),
        Scenario::Netyard => setup_netyard(lab, &ctx.run.netyard.clone()?, sc, &[0, 1]),
        Scenario::Mixed => {
            setup_netyard(lab, &ctx.run.netyard.clone()?, sc, &[0])?;
            setup_kernel(lab, sc, &[1])
        }
        Scenario::Floor | Scenario::FloorMixed => {
            let local = [underlay(sc, 1), underlay(sc, 2)];
            let exe = &ctx.run.self_exe;
            let which: &[usize] = if sc == Scenario::Floor { &[0, 1] } else { &[0] };
            floor::setup_vxlan(
                lab,
                exe,
                ctx.floor_vxlan,
                [&local[0], &local[1]],
                MTU,
                which,
            )?;
            if sc == Scenario::FloorMixed {
                setup_kernel(lab, sc, &[1])?;
            }
            Ok(())
        }
    }
}

/// Hosts `which` (0: host 1 with A, 1: host 2 with B): `vx0` (VNI 4242, port 4789, learning,
/// remote = the other host) and a veth to its endpoint on bridge `br0`; MTU 1450 on the
/// overlay side. The kernel's defaults otherwise (offloads on).
fn setup_kernel(lab: &Lab, sc: Scenario, which: &[usize]) -> Result<(), String> {
    let sides = [
        (
            &lab.hosts[0],
            &lab.a,
            underlay(sc, 1),
            underlay(sc, 2),
            &lab.ip_a,
        ),
        (
            &lab.hosts[1],
            &lab.b,
            underlay(sc, 2),
            underlay(sc, 1),
            &lab.ip_b,
        ),
    ];
    for &i in which {
        let (h, ns, local, remote, addr) = &sides[i];
        ip(&[
            "-n", h, "link", "add", "vx0", "type", "vxlan", "id", VNI, "dstport", "4789", "local",
            local, "remote", remote,
        ])?;
        ip(&["-n", h, "link", "set", "vx0", "mtu", MTU])?;
        ip(&["-n", h, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", h, "link", "set", "vx0", "master", "br0"])?;
        ip(&[
            "-n", h, "link", "add", "ve", "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", h, "link", "set", "ve", "mtu", MTU])?;
        ip(&["-n", h, "link", "set", "ve", "master", "br0"])?;
        for dev in ["vx0", "ve", "br0"] {
            ip(&["-n", h, "link", "set", dev, "up"])?;
        }
        ip(&["-n", ns, "link", "set", "eth0", "mtu", MTU])?;
        ip_addr_up(ns, "eth0", addr)?;
    }
    Ok(())
}

/// A daemon in each host namespace of `which` (0: host 1 with A, 1: host 2 with B); on each
/// one network with `--vxlan` and the other host as its peer (the MTU comes out as the
/// underlay's 1500 minus 50), one TAP endpoint.
fn setup_netyard(lab: &mut Lab, bin: &Path, sc: Scenario, which: &[usize]) -> Result<(), String> {
    let all = [
        (lab.a.clone(), "a", lab.ip_a.clone(), underlay(sc, 2)),
        (lab.b.clone(), "b", lab.ip_b.clone(), underlay(sc, 1)),
    ];
    let hosts: Vec<_> = which.iter().map(|&i| all[i].clone()).collect();
    for &i in which {
        let h = &lab.hosts[i];
        let daemon = Daemon::spawn(
            bin,
            h,
            &lab.dir.join(format!("api{i}.sock")),
            &lab.dir.join(format!("state{i}")),
            &lab.dir.join(format!("daemon{i}.log")),
            &[],
            &[],
            &format!("daemon {}", i + 1),
        )?;
        lab.daemons.push(daemon);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0..lab.daemons.len() {
        // A dead peer is reported even while this one is still starting.
        lab.daemon_alive()?;
        lab.daemons[i].wait_ready(deadline)?;
    }
    let subnet = format!("10.252.{}.0/24", sc.octet());
    for (d, (ns, name, addr, peer)) in lab.daemons.iter().zip(&hosts) {
        d.cli(&[
            "network",
            "create",
            "bench",
            "--subnet",
            &subnet,
            "--vxlan",
            VNI,
            "--vxlan-peer",
            peer,
        ])?;
        let path = format!("/run/netns/{ns}");
        d.cli(&[
            "attach", "bench", "--netns", &path, "--name", name, "--ip", addr, "--kind", "tap",
        ])?;
    }
    Ok(())
}
