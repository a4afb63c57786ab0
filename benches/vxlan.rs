//! The VXLAN overlay benchmark: two "hosts" (namespaces joined by a veth underlay), an endpoint
//! behind each, connected by netyard on both hosts (a daemon per host, `--vxlan`, TAP endpoints)
//! or by the Linux kernel's vxlan devices on a bridge on both hosts, in the same run.
//!
//! Run as root: `cargo bench --bench vxlan -- [--json FILE] [--seconds N] [--runs N]`.
//! benches/README.md describes what is measured and how. This is a measurement, never a test:
//! nothing here asserts on a figure. The code follows benches/switch.rs (same child handling,
//! teardown, measurements and output), with the scenarios of the overlay.

#[path = "common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, CpuSet};
use nix::unistd::Pid;
use serde_json::{json, Value};

use common::{
    all_cpus_count, clean_stale, figure_line, install_signal_handlers, interrupted, ip,
    iperf_client, kernel_drops, locate_or_build_netyard, lowest_cpu, measure_rtt, median_of,
    run_timed, tcp_run, udp_run, which, Daemon, LatencyTool, MetricDef, Namespaces, RttTest,
    Servers, TempDir,
};

/// Prefix of every namespace this bench makes: `nyv-<pid>-<run><scenario>-<role>`.
const NS_PREFIX: &str = "nyv-";
const IPERF_PORT: u16 = 15201;
const PP_PORT: u16 = 11111;
const PP_PINNED_PORT: u16 = 11112;
const VNI: &str = "4242";
/// The overlay MTU both scenarios use: a 1500-byte underlay minus 50.
const MTU: &str = "1450";

// ---------------------------------------------------------------------------------------------
// Scenarios and metrics.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Kernel,
    Netyard,
}

impl Scenario {
    const ALL: [Scenario; 2] = [Scenario::Kernel, Scenario::Netyard];

    fn name(self) -> &'static str {
        match self {
            Scenario::Kernel => "kernel-vxlan",
            Scenario::Netyard => "netyard-vxlan",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Scenario::Kernel => "kv",
            Scenario::Netyard => "nv",
        }
    }

    fn octet(self) -> u8 {
        match self {
            Scenario::Kernel => 1,
            Scenario::Netyard => 2,
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        match s {
            "kernel" | "kernel-vxlan" => Some(Scenario::Kernel),
            "netyard" | "netyard-vxlan" => Some(Scenario::Netyard),
            _ => None,
        }
    }
}

const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "tcp_gbps",
        unit: "Gbit/s",
        decimals: 2,
        lower_is_better: false,
    },
    MetricDef {
        name: "tcp_retrans",
        unit: "segments",
        decimals: 0,
        lower_is_better: true,
    },
    MetricDef {
        name: "udp64_kpps",
        unit: "kpps delivered",
        decimals: 1,
        lower_is_better: false,
    },
    MetricDef {
        name: "udp64_sent_kpps",
        unit: "kpps sent",
        decimals: 1,
        lower_is_better: false,
    },
    MetricDef {
        name: "rtt_p50_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    MetricDef {
        name: "rtt_p99_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    MetricDef {
        name: "rtt_avg_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    MetricDef {
        name: "rtt_pinned_p50_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    MetricDef {
        name: "rtt_pinned_p99_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    MetricDef {
        name: "rtt_pinned_avg_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
];

struct Opts {
    bench_flag: bool,
    json: Option<PathBuf>,
    seconds: u64,
    runs: usize,
    scenarios: Vec<Scenario>,
    pin: bool,
    latency_tool: Option<LatencyTool>,
}

const USAGE: &str = "usage: cargo bench --bench vxlan -- [--json FILE] [--seconds N] [--runs N] \
[--scenarios kernel,netyard] [--no-pin] [--latency-tool sockperf|rust]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        bench_flag: false,
        json: None,
        seconds: 5,
        runs: 1,
        scenarios: Scenario::ALL.to_vec(),
        pin: true,
        latency_tool: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<String, String> {
            match it.next() {
                Some(v) if !v.starts_with("--") => Ok(v.clone()),
                _ => Err(format!("{flag} needs a value")),
            }
        };
        match a.as_str() {
            "--bench" => o.bench_flag = true,
            "--json" => o.json = Some(PathBuf::from(value("--json")?)),
            "--seconds" => {
                o.seconds = value("--seconds")?
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or("--seconds takes a positive whole number")?
            }
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or("--runs takes a positive whole number")?
            }
            "--scenarios" => {
                let v = value("--scenarios")?;
                let mut list = Vec::new();
                for s in v.split(',').filter(|s| !s.is_empty()) {
                    let sc = Scenario::parse(s)
                        .ok_or_else(|| format!("unknown scenario {s:?} (kernel, netyard)"))?;
                    if !list.contains(&sc) {
                        list.push(sc);
                    }
                }
                // Always in the canonical order, so the kernel (the reference) comes first.
                o.scenarios = Scenario::ALL
                    .into_iter()
                    .filter(|s| list.contains(s))
                    .collect();
            }
            "--no-pin" => o.pin = false,
            "--latency-tool" => {
                o.latency_tool = Some(LatencyTool::parse(&value("--latency-tool")?)?)
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.scenarios.is_empty() {
        return Err("no scenario selected".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Hidden child modes: the fallback UDP ping-pong, started inside a namespace by
    // `ip netns exec NS <this executable> --pp-server|--pp-client ...`.
    if let Some(code) = common::pp_child_mode(&args) {
        std::process::exit(code);
    }
    common::set_bench_name("vxlan");
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("vxlan bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    if !opts.bench_flag {
        // `cargo test --all-targets` runs bench targets without --bench: do nothing then.
        println!(
            "vxlan bench: not run (start it with `cargo bench --bench vxlan`, or pass --bench)"
        );
        return;
    }
    std::process::exit(run_bench(&opts));
}

// ---------------------------------------------------------------------------------------------
// A lab: the namespaces and processes of one scenario in one run, torn down on drop.

struct Ctx {
    pid: u32,
    dir: PathBuf,
    seconds: u64,
    netyard: Result<PathBuf, String>,
    self_exe: PathBuf,
    latency_tool: LatencyTool,
    pin: bool,
    /// The lowest CPU the bench may run on: where pinned runs go.
    pin_cpu: CpuSet,
    /// The bench's own affinity: what a pinned daemon is given back.
    all_cpus: CpuSet,
}

struct Lab {
    sc: Scenario,
    /// Host namespaces (the underlay veth joins them) and the endpoint behind each.
    h1: String,
    h2: String,
    a: String,
    b: String,
    dir: PathBuf,
    /// netyard: one daemon per host.
    daemons: Vec<Daemon>,
    servers: Servers,
    namespaces: Namespaces,
}

impl Lab {
    fn new(ctx: &Ctx, sc: Scenario, run: usize) -> Result<Lab, String> {
        let base = format!("{NS_PREFIX}{}-{run}{}", ctx.pid, sc.tag());
        let dir = ctx.dir.join(format!("{run}-{}", sc.tag()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut lab = Lab {
            sc,
            h1: format!("{base}-h1"),
            h2: format!("{base}-h2"),
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            servers: Servers::new(&dir),
            dir,
            daemons: Vec::new(),
            namespaces: Namespaces::default(),
        };
        for ns in [lab.h1.clone(), lab.h2.clone(), lab.a.clone(), lab.b.clone()] {
            lab.namespaces.add(&ns)?;
        }
        // The underlay: a veth between the hosts, 198.18.N.1 and .2 (MTU 1500).
        let (h1, h2) = (lab.h1.clone(), lab.h2.clone());
        ip(&[
            "-n", &h1, "link", "add", "ul", "type", "veth", "peer", "name", "ul", "netns", &h2,
        ])?;
        for (h, u) in [(&h1, lab.underlay(1)), (&h2, lab.underlay(2))] {
            ip(&["-n", h, "addr", "add", &format!("{u}/24"), "dev", "ul"])?;
            ip(&["-n", h, "link", "set", "ul", "up"])?;
        }
        match sc {
            Scenario::Kernel => lab.setup_kernel()?,
            Scenario::Netyard => {
                let bin = ctx.netyard.clone()?;
                lab.setup_netyard(&bin)?;
            }
        }
        lab.check_connectivity()?;
        Ok(lab)
    }

    fn underlay(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.sc.octet())
    }

    fn ip_of(&self, last: u8) -> String {
        format!("10.252.{}.{last}", self.sc.octet())
    }

    fn ip_a(&self) -> String {
        self.ip_of(2)
    }

    fn ip_b(&self) -> String {
        self.ip_of(3)
    }

    /// Each host: `vx0` (VNI 4242, port 4789, learning, remote = the other host) and a veth to
    /// its endpoint on bridge `br0`; MTU 1450 on the overlay side.
    fn setup_kernel(&mut self) -> Result<(), String> {
        for (h, ns, local, remote, addr) in [
            (
                self.h1.clone(),
                self.a.clone(),
                self.underlay(1),
                self.underlay(2),
                self.ip_a(),
            ),
            (
                self.h2.clone(),
                self.b.clone(),
                self.underlay(2),
                self.underlay(1),
                self.ip_b(),
            ),
        ] {
            ip(&[
                "-n", &h, "link", "add", "vx0", "type", "vxlan", "id", VNI, "dstport", "4789",
                "local", &local, "remote", &remote,
            ])?;
            ip(&["-n", &h, "link", "set", "vx0", "mtu", MTU])?;
            ip(&["-n", &h, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &h, "link", "set", "vx0", "master", "br0"])?;
            ip(&[
                "-n", &h, "link", "add", "ve", "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["-n", &h, "link", "set", "ve", "mtu", MTU])?;
            ip(&["-n", &h, "link", "set", "ve", "master", "br0"])?;
            for dev in ["vx0", "ve", "br0"] {
                ip(&["-n", &h, "link", "set", dev, "up"])?;
            }
            ip(&["-n", &ns, "link", "set", "eth0", "mtu", MTU])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    fn daemon_alive(&mut self) -> Result<(), String> {
        for d in &mut self.daemons {
            d.check_alive()?;
        }
        Ok(())
    }

    /// A daemon in each host namespace; on each one network with `--vxlan` and the other host
    /// as its peer (the MTU comes out as the underlay's 1500 minus 50), one TAP endpoint.
    fn setup_netyard(&mut self, bin: &Path) -> Result<(), String> {
        let hosts = [
            (
                self.h1.clone(),
                self.a.clone(),
                "a",
                self.ip_a(),
                self.underlay(2),
            ),
            (
                self.h2.clone(),
                self.b.clone(),
                "b",
                self.ip_b(),
                self.underlay(1),
            ),
        ];
        for (i, (h, ..)) in hosts.iter().enumerate() {
            let daemon = Daemon::spawn(
                bin,
                h,
                &self.dir.join(format!("api{i}.sock")),
                &self.dir.join(format!("state{i}")),
                &self.dir.join(format!("daemon{i}.log")),
                &[],
                &[],
                &format!("daemon {}", i + 1),
            )?;
            self.daemons.push(daemon);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0..self.daemons.len() {
            // A dead peer is reported even while this one is still starting.
            self.daemon_alive()?;
            self.daemons[i].wait_ready(deadline)?;
        }
        let subnet = format!("10.252.{}.0/24", self.sc.octet());
        for (i, (_, ns, name, addr, peer)) in hosts.iter().enumerate() {
            let d = &self.daemons[i];
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

    /// Pings both ways (ARP resolved, MACs learned) before anything is measured.
    fn check_connectivity(&mut self) -> Result<(), String> {
        if which("ping").is_none() {
            return Ok(());
        }
        for (from, to) in [(self.a.clone(), self.ip_b()), (self.b.clone(), self.ip_a())] {
            let mut ok = false;
            for _ in 0..10 {
                if interrupted() {
                    return Err("interrupted".into());
                }
                let out = run_timed(
                    Command::new("ip").args([
                        "netns", "exec", &from, "ping", "-c", "1", "-W", "1", "-q", &to,
                    ]),
                    Duration::from_secs(5),
                )?;
                if out.status.success() {
                    ok = true;
                    break;
                }
                thread::sleep(Duration::from_millis(200));
            }
            if !ok {
                return Err(format!("no connectivity: {from} cannot ping {to}"));
            }
        }
        Ok(())
    }

    /// Both daemons' `stats` rows, each tagged with its host.
    fn port_stats(&self) -> Option<Value> {
        let mut rows = Vec::new();
        for (i, d) in self.daemons.iter().enumerate() {
            let out = d.cli(&["stats", "--json"]).ok()?;
            let v: Value = serde_json::from_str(&out).ok()?;
            for mut r in v.as_array().cloned().unwrap_or_default() {
                if let Some(o) = r.as_object_mut() {
                    o.insert("host".into(), json!(i + 1));
                }
                rows.push(r);
            }
        }
        Some(Value::Array(rows))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.stop_all();
        for mut d in self.daemons.drain(..) {
            if !d.stop(Duration::from_secs(10)) {
                eprintln!(
                    "vxlan bench: {}: a daemon did not exit within 10 s of SIGTERM (killed)",
                    self.sc.name()
                );
            }
        }
        self.namespaces.delete_all();
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

#[derive(Default)]
struct Outcome {
    figures: Vec<(&'static str, f64)>,
    errors: Vec<String>,
    notes: Vec<String>,
    stats: Option<Value>,
    kernel_drops: Option<String>,
}

fn measure_tcp(lab: &Lab, ctx: &Ctx, iperf: &Path, o: &mut Outcome) -> Result<(), String> {
    let v = iperf_client(&lab.a, iperf, &lab.ip_b(), IPERF_PORT, ctx.seconds, &[])?;
    let t = tcp_run(&v)?;
    o.figures.push(("tcp_gbps", t.bps / 1e9));
    if let Some(r) = t.retrans {
        o.figures.push(("tcp_retrans", r));
    }
    o.notes.extend(t.stall);
    Ok(())
}

fn measure_udp(lab: &Lab, ctx: &Ctx, iperf: &Path, o: &mut Outcome) -> Result<(), String> {
    let v = iperf_client(
        &lab.a,
        iperf,
        &lab.ip_b(),
        IPERF_PORT,
        ctx.seconds,
        &["-u", "-l", "64", "-b", "0"],
    )?;
    let u = udp_run(&v, ctx.seconds)?;
    o.figures.push(("udp64_kpps", u.delivered_pps / 1e3));
    if let Some(sent) = u.sent_pps {
        o.figures.push(("udp64_sent_kpps", sent / 1e3));
    }
    Ok(())
}

fn measure_latency(lab: &mut Lab, ctx: &Ctx, pinned: bool, o: &mut Outcome) -> Result<(), String> {
    let ipb = lab.ip_b();
    let test = RttTest {
        tool: ctx.latency_tool,
        self_exe: &ctx.self_exe,
        server_ns: &lab.b,
        client_ns: &lab.a,
        server_ip: &ipb,
        port: if pinned { PP_PINNED_PORT } else { PP_PORT },
        seconds: ctx.seconds,
        pin: pinned.then_some(ctx.pin_cpu),
        unpin: ctx.all_cpus,
    };
    let daemons: Vec<&Daemon> = lab.daemons.iter().collect();
    let rtt = measure_rtt(&test, &mut lab.servers, &daemons)?;
    let names: [&'static str; 3] = if pinned {
        [
            "rtt_pinned_p50_us",
            "rtt_pinned_p99_us",
            "rtt_pinned_avg_us",
        ]
    } else {
        ["rtt_p50_us", "rtt_p99_us", "rtt_avg_us"]
    };
    o.figures.push((names[0], rtt.p50));
    o.figures.push((names[1], rtt.p99));
    o.figures.push((names[2], rtt.avg));
    Ok(())
}

fn run_scenario(ctx: &Ctx, sc: Scenario, run: usize) -> Result<Outcome, String> {
    let mut lab = Lab::new(ctx, sc, run).map_err(|e| format!("setup failed: {e}"))?;
    let mut o = Outcome::default();
    let iperf = which("iperf3");
    let step =
        |lab: &mut Lab, what: &str, o: &mut Outcome, r: Result<(), String>| -> Result<(), String> {
            if let Err(e) = r {
                if interrupted() {
                    return Err("interrupted".into());
                }
                o.errors.push(format!("{what}: {e}"));
                eprintln!("  {}: {what}: {e}", sc.name());
            }
            // A dead daemon ends the scenario: nothing after it would measure anything.
            lab.daemon_alive()
        };
    match &iperf {
        Some(iperf) => {
            let b = lab.b.clone();
            let srv = lab.servers.start(
                &b,
                iperf,
                &["-s", "-p", &IPERF_PORT.to_string()],
                None,
                "tcp",
                IPERF_PORT,
            );
            match srv {
                Ok(idx) => {
                    let r = measure_tcp(&lab, ctx, iperf, &mut o);
                    step(&mut lab, "tcp", &mut o, r)?;
                    let before = kernel_drops(&lab.a, &lab.b);
                    let r = measure_udp(&lab, ctx, iperf, &mut o);
                    let after = kernel_drops(&lab.a, &lab.b);
                    let lost: Vec<String> = after
                        .iter()
                        .zip(&before)
                        .filter(|(a, b)| a.1 > b.1)
                        .map(|(a, b)| format!("{} {}", a.0, a.1 - b.1))
                        .collect();
                    if r.is_ok() && !lost.is_empty() {
                        let n = format!("udp64 losses outside netyard: {}", lost.join(", "));
                        eprintln!("  {}: {n}", sc.name());
                        o.kernel_drops = Some(n);
                    }
                    step(&mut lab, "udp64", &mut o, r)?;
                    lab.servers.stop(idx);
                }
                Err(e) => step(&mut lab, "iperf3", &mut o, Err(e))?,
            }
        }
        None => step(
            &mut lab,
            "tcp/udp64",
            &mut o,
            Err("iperf3 not installed".into()),
        )?,
    }
    let r = measure_latency(&mut lab, ctx, false, &mut o);
    step(&mut lab, "rtt", &mut o, r)?;
    if ctx.pin {
        let r = measure_latency(&mut lab, ctx, true, &mut o);
        step(&mut lab, "rtt pinned", &mut o, r)?;
    }
    if interrupted() {
        return Err("interrupted".into());
    }
    if sc != Scenario::Kernel {
        o.stats = lab.port_stats();
        if let Some(rows) = o.stats.as_ref().and_then(Value::as_array) {
            for r in rows {
                let c = &r["counters"];
                // Only the reasons that counted something.
                let drops: Vec<String> = c
                    .get("drops")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                            .map(|(k, n)| format!("{k}={n}"))
                            .collect()
                    })
                    .unwrap_or_default();
                let drops = drops.join(" ");
                eprintln!(
                    "  {} host {} port {}: rx {} tx {} pkts, rx_gso {}, tx_segmented {}, drops {} {}",
                    sc.name(),
                    r["host"],
                    r["endpoint"].as_str().unwrap_or("?"),
                    c["rx_packets"],
                    c["tx_packets"],
                    c["rx_gso"],
                    c["tx_segmented"],
                    c["drops_total"],
                    drops
                );
            }
        }
    }
    drop(lab);
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// The run: scenarios in turn, `runs` times, fresh setup each time; medians and ratios.

fn run_bench(opts: &Opts) -> i32 {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("vxlan bench: must run as root (it makes network namespaces); nothing was run");
        return 1;
    }
    if which("ip").is_none() {
        eprintln!("vxlan bench: `ip` (iproute2) not found; nothing was run");
        return 1;
    }
    install_signal_handlers();
    clean_stale(NS_PREFIX, "netyard-vxbench-");
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("netyard-vxbench-{pid}"));
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("vxlan bench: creating {}: {e}", dir.display());
        return 1;
    }
    let dir_guard = TempDir(dir.clone());
    let latency_tool = opts.latency_tool.unwrap_or_else(LatencyTool::detect);
    let needs_netyard = opts.scenarios.contains(&Scenario::Netyard);
    let netyard = if needs_netyard {
        locate_or_build_netyard()
    } else {
        Err("not needed".into())
    };
    if let (true, Err(e)) = (needs_netyard, &netyard) {
        eprintln!("vxlan bench: the netyard scenarios will be skipped: {e}");
    }
    let all_cpus = sched_getaffinity(Pid::from_raw(0)).unwrap_or_else(|_| CpuSet::new());
    let ctx = Ctx {
        pid,
        dir: dir.clone(),
        seconds: opts.seconds,
        netyard,
        self_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
        latency_tool,
        pin: opts.pin,
        pin_cpu: lowest_cpu(&all_cpus),
        all_cpus,
    };
    if let Ok(bin) = &ctx.netyard {
        eprintln!("vxlan bench: netyard binary {}", bin.display());
    }

    let mut samples: Vec<(Scenario, &'static str, f64)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut stats: Vec<Value> = Vec::new();
    'runs: for run in 1..=opts.runs {
        for &sc in &opts.scenarios {
            if interrupted() {
                break 'runs;
            }
            eprintln!("[run {run}/{}] {} ...", opts.runs, sc.name());
            let t0 = Instant::now();
            match run_scenario(&ctx, sc, run) {
                Ok(o) => {
                    let summary: Vec<String> = o
                        .figures
                        .iter()
                        .map(|(m, v)| format!("{m}={v:.2}"))
                        .collect();
                    eprintln!(
                        "  {} ({:.0} s): {}",
                        sc.name(),
                        t0.elapsed().as_secs_f64(),
                        summary.join(" ")
                    );
                    samples.extend(o.figures.iter().map(|&(m, v)| (sc, m, v)));
                    errors.extend(
                        o.errors
                            .into_iter()
                            .map(|e| format!("{} run {run}: {e}", sc.name())),
                    );
                    for n in o.notes {
                        eprintln!("  {}: {n}", sc.name());
                        notes.push(format!("{} run {run}: {n}", sc.name()));
                    }
                    if o.stats.is_some() || o.kernel_drops.is_some() {
                        stats.push(json!({
                            "scenario": sc.name(),
                            "run": run,
                            "ports": o.stats,
                            "udp64_kernel_drops": o.kernel_drops,
                        }));
                    }
                }
                Err(e) => {
                    eprintln!("  {}: {e}", sc.name());
                    if !interrupted() {
                        errors.push(format!("{} run {run}: {e}", sc.name()));
                    }
                }
            }
        }
    }
    drop(dir_guard);

    // Medians and ratios to the kernel's vxlan.
    let tool = latency_tool.describe();
    println!(
        "# netyard vxlan bench: {} s per test, median of {} run(s); ratios are netyard / kernel \
         vxlan in the same run (higher is better for gbps/kpps, lower for rtt); rtt by {tool}",
        opts.seconds, opts.runs
    );
    let mut results = Vec::new();
    for &sc in &opts.scenarios {
        for m in METRICS {
            let Some((value, all)) = median_of(&samples, &sc, m.name) else {
                continue;
            };
            let base = median_of(&samples, &Scenario::Kernel, m.name)
                .map(|b| b.0)
                .filter(|&b| b > 0.0);
            let ratio = base.map(|b| value / b);
            let shown = format!("{value:.*}", m.decimals);
            let shown_ratio = match sc {
                Scenario::Kernel => None,
                _ => ratio.map(|r| (r, "kernel vxlan")),
            };
            println!("{}", figure_line(sc.name(), m.name, &shown, shown_ratio));
            results.push(json!({
                "scenario": sc.name(),
                "metric": m.name,
                "value": value,
                "ratio": ratio,
                "unit": m.unit,
                "lower_is_better": m.lower_is_better,
                "samples": all,
            }));
        }
    }
    for n in &notes {
        println!("# note: {n}");
    }
    for e in &errors {
        println!("# error: {e}");
    }
    if let Some(path) = &opts.json {
        let doc = json!({
            "bench": "netyard vxlan",
            "seconds": opts.seconds,
            "runs": opts.runs,
            "pinned": opts.pin,
            "latency_tool": tool,
            "kernel": common::kernel_release(),
            "cpus": all_cpus_count(&ctx.all_cpus),
            "results": results,
            "notes": notes,
            "errors": errors,
            "port_stats": stats,
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        match fs::write(path, text + "\n") {
            Ok(()) => eprintln!("vxlan bench: results written to {}", path.display()),
            Err(e) => {
                eprintln!("vxlan bench: writing {}: {e}", path.display());
                return 1;
            }
        }
    }
    if interrupted() {
        eprintln!("vxlan bench: interrupted; everything it set up was removed");
        130
    } else if errors.is_empty() {
        0
    } else {
        1
    }
}
