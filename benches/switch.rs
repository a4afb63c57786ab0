//! The switch benchmark: netyard (TAP ports, veth/AF_PACKET ports) against the Linux kernel
//! bridge, each in namespaces made for the run and removed afterwards.
//!
//! Run as root: `cargo bench --bench switch -- [--json FILE] [--seconds N] [--runs N]`.
//! benches/README.md describes what is measured and how. This is a measurement, never a test:
//! nothing here asserts on a figure.

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

/// Prefix of every namespace this bench makes: `nyb-<pid>-<run><scenario>-<role>`.
const NS_PREFIX: &str = "nyb-";
const IPERF_PORT: u16 = 15201;
const PP_PORT: u16 = 11111;
const PP_PINNED_PORT: u16 = 11112;

// ---------------------------------------------------------------------------------------------
// Scenarios and metrics.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Bridge,
    Tap,
    Veth,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Bridge, Scenario::Tap, Scenario::Veth];

    fn name(self) -> &'static str {
        match self {
            Scenario::Bridge => "kernel-bridge",
            Scenario::Tap => "netyard-tap",
            Scenario::Veth => "netyard-veth",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Scenario::Bridge => "br",
            Scenario::Tap => "tap",
            Scenario::Veth => "veth",
        }
    }

    fn octet(self) -> u8 {
        match self {
            Scenario::Bridge => 1,
            Scenario::Tap => 2,
            Scenario::Veth => 3,
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        match s {
            "bridge" | "br" | "kernel-bridge" => Some(Scenario::Bridge),
            "tap" | "netyard-tap" => Some(Scenario::Tap),
            "veth" | "netyard-veth" => Some(Scenario::Veth),
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

const USAGE: &str = "usage: cargo bench --bench switch -- [--json FILE] [--seconds N] [--runs N] \
[--scenarios bridge,tap,veth] [--no-pin] [--latency-tool sockperf|rust]";

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
                        .ok_or_else(|| format!("unknown scenario {s:?} (bridge, tap, veth)"))?;
                    if !list.contains(&sc) {
                        list.push(sc);
                    }
                }
                // Always in the canonical order, so the bridge (the reference) comes first.
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
    common::set_bench_name("switch");
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("switch bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    if !opts.bench_flag {
        // `cargo test --all-targets` runs bench targets without --bench: do nothing then.
        println!(
            "switch bench: not run (start it with `cargo bench --bench switch`, or pass --bench)"
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
    h: String,
    a: String,
    b: String,
    dir: PathBuf,
    daemon: Option<Daemon>,
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
            h: format!("{base}-h"),
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            servers: Servers::new(&dir),
            dir,
            daemon: None,
            namespaces: Namespaces::default(),
        };
        for ns in [lab.h.clone(), lab.a.clone(), lab.b.clone()] {
            lab.namespaces.add(&ns)?;
        }
        match sc {
            Scenario::Bridge => lab.setup_bridge()?,
            Scenario::Tap | Scenario::Veth => {
                let bin = ctx.netyard.clone()?;
                lab.setup_netyard(&bin)?;
            }
        }
        lab.check_connectivity()?;
        Ok(lab)
    }

    fn ip_of(&self, last: u8) -> String {
        format!("10.251.{}.{last}", self.sc.octet())
    }

    fn ip_a(&self) -> String {
        self.ip_of(2)
    }

    fn ip_b(&self) -> String {
        self.ip_of(3)
    }

    fn setup_bridge(&mut self) -> Result<(), String> {
        let h = self.h.clone();
        ip(&["-n", &h, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &h, "link", "set", "br0", "up"])?;
        for (ns, port, addr) in [
            (self.a.clone(), "va", self.ip_a()),
            (self.b.clone(), "vb", self.ip_b()),
        ] {
            ip(&[
                "-n", &h, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["-n", &h, "link", "set", port, "master", "br0"])?;
            ip(&["-n", &h, "link", "set", port, "up"])?;
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

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        self.daemon.as_ref().ok_or("no netyard binary")?.cli(args)
    }

    fn daemon_alive(&mut self) -> Result<(), String> {
        match self.daemon.as_mut() {
            Some(d) => d.check_alive(),
            None => Ok(()),
        }
    }

    fn setup_netyard(&mut self, bin: &Path) -> Result<(), String> {
        let daemon = Daemon::spawn(
            bin,
            &self.h,
            &self.dir.join("api.sock"),
            &self.dir.join("state"),
            &self.dir.join("daemon.log"),
            &[],
            &[],
            "the daemon",
        )?;
        let deadline = Instant::now() + Duration::from_secs(15);
        self.daemon.insert(daemon).wait_ready(deadline)?;
        let subnet = format!("10.251.{}.0/24", self.sc.octet());
        self.cli(&["network", "create", "bench", "--subnet", &subnet])?;
        let kind = if self.sc == Scenario::Tap {
            "tap"
        } else {
            "veth"
        };
        for (ns, name, addr) in [
            (self.a.clone(), "a", self.ip_a()),
            (self.b.clone(), "b", self.ip_b()),
        ] {
            let path = format!("/run/netns/{ns}");
            self.cli(&[
                "attach", "bench", "--netns", &path, "--name", name, "--ip", &addr, "--kind", kind,
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

    fn port_stats(&self) -> Option<Value> {
        let out = self.cli(&["stats", "--json"]).ok()?;
        serde_json::from_str(&out).ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.stop_all();
        if let Some(mut d) = self.daemon.take() {
            if !d.stop(Duration::from_secs(10)) {
                eprintln!(
                    "switch bench: {}: the daemon did not exit within 10 s of SIGTERM (killed)",
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
    let daemons: Vec<&Daemon> = lab.daemon.iter().collect();
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
    if sc != Scenario::Bridge {
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
                    "  {} port {}: rx {} tx {} pkts, rx_gso {}, tx_segmented {}, drops {} {}",
                    sc.name(),
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
        eprintln!("switch bench: must run as root (it makes network namespaces); nothing was run");
        return 1;
    }
    if which("ip").is_none() {
        eprintln!("switch bench: `ip` (iproute2) not found; nothing was run");
        return 1;
    }
    install_signal_handlers();
    clean_stale(NS_PREFIX, "netyard-bench-");
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("netyard-bench-{pid}"));
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("switch bench: creating {}: {e}", dir.display());
        return 1;
    }
    let dir_guard = TempDir(dir.clone());
    let latency_tool = opts.latency_tool.unwrap_or_else(LatencyTool::detect);
    let needs_netyard = opts.scenarios.iter().any(|s| *s != Scenario::Bridge);
    let netyard = if needs_netyard {
        locate_or_build_netyard()
    } else {
        Err("not needed".into())
    };
    if let (true, Err(e)) = (needs_netyard, &netyard) {
        eprintln!("switch bench: the netyard scenarios will be skipped: {e}");
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
        eprintln!("switch bench: netyard binary {}", bin.display());
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

    // Medians and ratios to the kernel bridge.
    let tool = latency_tool.describe();
    println!(
        "# netyard switch bench: {} s per test, median of {} run(s); ratios are netyard / kernel \
         bridge in the same run (higher is better for gbps/kpps, lower for rtt); rtt by {tool}",
        opts.seconds, opts.runs
    );
    let mut results = Vec::new();
    for &sc in &opts.scenarios {
        for m in METRICS {
            let Some((value, all)) = median_of(&samples, &sc, m.name) else {
                continue;
            };
            let base = median_of(&samples, &Scenario::Bridge, m.name)
                .map(|b| b.0)
                .filter(|&b| b > 0.0);
            let ratio = base.map(|b| value / b);
            let shown = format!("{value:.*}", m.decimals);
            let shown_ratio = match sc {
                Scenario::Bridge => None,
                _ => ratio.map(|r| (r, "kernel bridge")),
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
            "bench": "netyard switch",
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
            Ok(()) => eprintln!("switch bench: results written to {}", path.display()),
            Err(e) => {
                eprintln!("switch bench: writing {}: {e}", path.display());
                return 1;
            }
        }
    }
    if interrupted() {
        eprintln!("switch bench: interrupted; everything it set up was removed");
        130
    } else if errors.is_empty() {
        0
    } else {
        1
    }
}
