//! The switch and vxlan benches but their setups: two endpoints, A (the clients) and B (the
//! servers), joined either by the kernel's own forwarding (the reference) or by netyard, and the
//! same measurements over them (iperf3 TCP and 64-byte UDP, round trips unpinned and pinned),
//! medians over runs and each netyard figure as a ratio to the reference. A bench names its
//! scenarios (`Scenario`) and says how one is set up (`Bench::setup`); benches/README.md
//! describes both benches.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use nix::sched::{sched_getaffinity, CpuSet};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::floor::{self, FloorIo, FloorProc, VxlanFloor};
use super::{
    all_cpus_count, bench_main, bench_name, can_make_namespaces, cpu_seconds_of, each_run,
    figure_line, finish, interrupted, iperf_client, keep_notes, kernel_drops, kernel_release,
    lowest_cpu, measure_rtt, median_of, netyard_if, parse_args, pp_child_mode, print_summary,
    run_timed, scratch_dir, tcp_run, udp_run, which, BaseOpts, Daemon, LatencyTool, MetricDef,
    Namespaces, RttTest, Run, Servers,
};

const IPERF_PORT: u16 = 15201;
const PP_PORT: u16 = 11111;
const PP_PINNED_PORT: u16 = 11112;

/// The scenarios of a bench.
pub trait Scenario: Copy + PartialEq + 'static {
    /// Every scenario, in the order they run and are reported: the reference first.
    const ALL: &'static [Self];
    /// The kernel's own forwarding, which netyard's figures are divided by.
    const REFERENCE: Self;
    /// How reports name it ("kernel-bridge").
    fn name(self) -> &'static str;
    /// The floor of the same port kind (benches/common/floor.rs), which this scenario's figures
    /// are divided by too; None for the reference and the floors themselves.
    fn floor(self) -> Option<Self> {
        None
    }
    /// Whether the scenario runs netyard (the reference and the floors do not).
    fn is_netyard(self) -> bool {
        self != Self::REFERENCE
    }
    /// Its short tag in namespace and directory names ("br").
    fn tag(self) -> &'static str;
    /// The third octet of its addresses, so that no two scenarios share a subnet.
    fn octet(self) -> u8;
    /// From a name `--scenarios` takes.
    fn parse(s: &str) -> Option<Self>;
}

/// A bench: what differs between switch and vxlan.
pub struct Bench<S> {
    /// "switch": messages start `switch bench: `.
    pub name: &'static str,
    /// Every namespace is `<ns_prefix><pid>-<run><tag>-<role>`.
    pub ns_prefix: &'static str,
    /// The run's scratch directory is `<tmp_prefix><pid>`.
    pub tmp_prefix: &'static str,
    /// How ratios name the reference ("kernel bridge").
    pub reference: &'static str,
    /// The names `--scenarios` takes, as the usage lists them.
    pub choices: &'static [&'static str],
    /// The roles of the namespaces made before the endpoints' ("h"; "h1", "h2").
    pub hosts: &'static [&'static str],
    /// The endpoints' /24 is `<subnet>.<octet>.0/24`: A is .2, B is .3.
    pub subnet: &'static str,
    /// How the teardown names a daemon that had to be killed ("the daemon", "a daemon").
    pub daemon_word: &'static str,
    /// Whether TCP is measured from B to A too (`iperf3 -R`, the `tcp_rev_` figures): where
    /// the two ends differ (netyard on one host, the kernel on the other) each direction takes
    /// another path.
    pub reverse_tcp: bool,
    /// Sets up a scenario in the namespaces `Lab::new` made: connects A and B.
    pub setup: fn(&Ctx, S, &mut Lab) -> Result<(), String>,
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
        name: "tcp_cpu_s_per_gb",
        unit: "CPU s/GB",
        decimals: 3,
        lower_is_better: true,
    },
    MetricDef {
        name: "tcp_rev_gbps",
        unit: "Gbit/s",
        decimals: 2,
        lower_is_better: false,
    },
    MetricDef {
        name: "tcp_rev_retrans",
        unit: "segments",
        decimals: 0,
        lower_is_better: true,
    },
    MetricDef {
        name: "tcp_rev_cpu_s_per_gb",
        unit: "CPU s/GB",
        decimals: 3,
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
        name: "udp64_cpu_us_per_frame",
        unit: "CPU us/frame",
        decimals: 2,
        lower_is_better: true,
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

// ---------------------------------------------------------------------------------------------
// Options and `main`.

pub struct Opts<S> {
    base: BaseOpts,
    runs: usize,
    scenarios: Vec<S>,
    pin: bool,
    latency_tool: Option<LatencyTool>,
    floor_io: FloorIo,
    floor_vxlan: VxlanFloor,
}

fn parse_opts<S: Scenario>(args: &[String], choices: &[&str]) -> Result<Opts<S>, String> {
    let (mut runs, mut pin, mut latency_tool) = (1, true, None);
    let mut floor_io = FloorIo::Batch;
    let mut floor_vxlan = VxlanFloor::Port;
    let mut scenarios = S::ALL.to_vec();
    let base = parse_args(args, |flag, it| {
        match flag {
            "--runs" => runs = it.positive("--runs")?,
            "--scenarios" => {
                let v = it.value("--scenarios")?;
                let mut list = Vec::new();
                for s in v.split(',').filter(|s| !s.is_empty()) {
                    list.push(S::parse(s).ok_or_else(|| {
                        format!("unknown scenario {s:?} ({})", choices.join(", "))
                    })?);
                }
                // Always in the canonical order, so the reference comes first.
                scenarios = S::ALL
                    .iter()
                    .copied()
                    .filter(|s| list.contains(s))
                    .collect();
            }
            "--no-pin" => pin = false,
            "--latency-tool" => {
                latency_tool = Some(LatencyTool::parse(&it.value("--latency-tool")?)?)
            }
            "--floor-io" => floor_io = FloorIo::parse(&it.value("--floor-io")?)?,
            "--floor-vxlan" => floor_vxlan = VxlanFloor::parse(&it.value("--floor-vxlan")?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if scenarios.is_empty() {
        return Err("no scenario selected".into());
    }
    Ok(Opts {
        base,
        runs,
        scenarios,
        pin,
        latency_tool,
        floor_io,
        floor_vxlan,
    })
}

/// The `main` of the bench; its hidden child modes are the fallback UDP ping-pong's.
pub fn main<S: Scenario>(bench: &Bench<S>) {
    let usage = format!(
        "usage: cargo bench --bench {} -- [--json FILE] [--seconds N] [--runs N] \
         [--scenarios {}] [--no-pin] [--latency-tool sockperf|rust] [--floor-io batch|one|each|ring3|ring2|mq] [--floor-vxlan port|plain]",
        bench.name,
        bench.choices.join(",")
    );
    bench_main(
        bench.name,
        &usage,
        |args| pp_child_mode(args).or_else(|| floor::child_mode(args)),
        |args| parse_opts(args, bench.choices),
        |opts| run_bench(bench, opts),
    );
}

// ---------------------------------------------------------------------------------------------
// A lab: the namespaces and processes of one scenario in one run, torn down on drop.

pub struct Ctx {
    pub run: Run,
    pub latency_tool: LatencyTool,
    pub pin: bool,
    /// The lowest CPU the bench may run on: where pinned runs go.
    pub pin_cpu: CpuSet,
    /// The bench's own affinity: what a pinned daemon is given back.
    pub all_cpus: CpuSet,
    /// How the floor scenarios' forwarder moves frames.
    pub floor_io: FloorIo,
    /// Which VXLAN floor the vxlan bench runs.
    pub floor_vxlan: VxlanFloor,
}

pub struct Lab {
    /// The scenario's name, for messages.
    pub scenario: &'static str,
    /// Its scratch directory (API sockets, logs).
    pub dir: PathBuf,
    /// The host namespaces, in the order of `Bench::hosts`.
    pub hosts: Vec<String>,
    /// The endpoints' namespaces and the addresses of their `eth0`.
    pub a: String,
    pub b: String,
    pub ip_a: String,
    pub ip_b: String,
    /// netyard's daemons (none for the reference and the floors).
    pub daemons: Vec<Daemon>,
    /// The floor forwarders of a floor scenario (among `servers`), A's side first.
    pub floors: Vec<FloorProc>,
    daemon_word: &'static str,
    pub servers: Servers,
    pub namespaces: Namespaces,
}

impl Lab {
    /// The scratch directory `<run>-<tag>` and the namespaces: the hosts, then A and B.
    fn new<S: Scenario>(bench: &Bench<S>, ctx: &Ctx, sc: S, run: usize) -> Result<Lab, String> {
        let base = format!("{}{}-{run}{}", bench.ns_prefix, ctx.run.pid, sc.tag());
        let dir = ctx.run.dir.join(format!("{run}-{}", sc.tag()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let subnet = format!("{}.{}", bench.subnet, sc.octet());
        let mut lab = Lab {
            scenario: sc.name(),
            hosts: bench.hosts.iter().map(|h| format!("{base}-{h}")).collect(),
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            ip_a: format!("{subnet}.2"),
            ip_b: format!("{subnet}.3"),
            servers: Servers::new(&dir),
            dir,
            daemons: Vec::new(),
            floors: Vec::new(),
            daemon_word: bench.daemon_word,
            namespaces: Namespaces::default(),
        };
        let mut all = lab.hosts.clone();
        all.extend([lab.a.clone(), lab.b.clone()]);
        for ns in all {
            lab.namespaces.add(&ns)?;
        }
        Ok(lab)
    }

    /// Err once a daemon or the floor has exited.
    pub fn daemon_alive(&mut self) -> Result<(), String> {
        for d in &mut self.daemons {
            d.check_alive()?;
        }
        for f in &self.floors {
            if let Some(Ok(Some(st))) = self.servers.child(f.idx).map(|c| c.try_wait()) {
                return Err(format!("the floor exited ({st})"));
            }
        }
        Ok(())
    }

    /// The processes that forward frames: netyard's daemons, or the floors.
    fn forwarders(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.daemons.iter().map(|d| d.child.id()).collect();
        pids.extend(self.floors.iter().map(|f| f.pid));
        pids
    }

    /// Pings both ways (ARP resolved, MACs learned) before anything is measured.
    fn check_connectivity(&mut self) -> Result<(), String> {
        if which("ping").is_none() {
            return Ok(());
        }
        for (from, to) in [(&self.a, &self.ip_b), (&self.b, &self.ip_a)] {
            let mut ok = false;
            for _ in 0..10 {
                if interrupted() {
                    return Err("interrupted".into());
                }
                let out = run_timed(
                    Command::new("ip").args([
                        "netns", "exec", from, "ping", "-c", "1", "-W", "1", "-q", to,
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

    /// CPU seconds (user + system) the forwarders have used so far, together; `None` for the
    /// reference, which has none.
    fn forwarders_cpu(&self) -> Option<f64> {
        let pids = self.forwarders();
        (!pids.is_empty()).then(|| cpu_seconds_of(&pids)).flatten()
    }

    /// Frames the first daemon (or the floor) has read from endpoint A's port so far.
    fn a_rx_frames(&self) -> Option<u64> {
        if let Some(f) = self.floors.first() {
            return f.a_rx_frames();
        }
        let out = self.daemons.first()?.cli(&["stats", "--json"]).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.iter().find(|r| r["endpoint"] == "a")?["counters"]["rx_packets"].as_u64()
    }

    /// Every daemon's `stats` rows; with more than one daemon, each tagged with its host (1, 2).
    fn port_stats(&self) -> Option<Value> {
        let mut rows = Vec::new();
        for (i, d) in self.daemons.iter().enumerate() {
            let out = d.cli(&["stats", "--json"]).ok()?;
            let v: Value = serde_json::from_str(&out).ok()?;
            for mut r in v.as_array().cloned().unwrap_or_default() {
                if let (true, Some(o)) = (self.daemons.len() > 1, r.as_object_mut()) {
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
                    "{} bench: {}: {} did not exit within 10 s of SIGTERM (killed)",
                    bench_name(),
                    self.scenario,
                    self.daemon_word
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

/// The forwarders' CPU time (from `cpu0`) per unit of work done: the path's cost in netyard's
/// own processes (or the floor's), which the machine's other load skews less than throughput.
fn cpu_per(lab: &Lab, cpu0: Option<f64>, units: f64) -> Option<f64> {
    let used = lab.forwarders_cpu()? - cpu0?;
    (units > 0.0 && used >= 0.0).then(|| used / units)
}

/// TCP from A to B, or (`reverse`: `iperf3 -R`, the `tcp_rev_` figures) from B to A.
fn measure_tcp(
    lab: &Lab,
    ctx: &Ctx,
    iperf: &Path,
    reverse: bool,
    o: &mut Outcome,
) -> Result<(), String> {
    let [gbps, cpu, retrans] = if reverse {
        ["tcp_rev_gbps", "tcp_rev_cpu_s_per_gb", "tcp_rev_retrans"]
    } else {
        ["tcp_gbps", "tcp_cpu_s_per_gb", "tcp_retrans"]
    };
    let extra: &[&str] = if reverse { &["-R"] } else { &[] };
    let cpu0 = lab.forwarders_cpu();
    let v = iperf_client(&lab.a, iperf, &lab.ip_b, IPERF_PORT, ctx.run.seconds, extra)?;
    let t = tcp_run(&v)?;
    o.figures.push((gbps, t.bps / 1e9));
    let gb = t.bps * ctx.run.seconds as f64 / 8e9;
    if let Some(c) = cpu_per(lab, cpu0, gb) {
        o.figures.push((cpu, c));
    }
    if let Some(r) = t.retrans {
        o.figures.push((retrans, r));
    }
    o.notes.extend(
        t.stall
            .map(|n| if reverse { format!("B to A: {n}") } else { n }),
    );
    Ok(())
}

fn measure_udp(lab: &Lab, ctx: &Ctx, iperf: &Path, o: &mut Outcome) -> Result<(), String> {
    let (cpu0, frames0) = (lab.forwarders_cpu(), lab.a_rx_frames());
    let v = iperf_client(
        &lab.a,
        iperf,
        &lab.ip_b,
        IPERF_PORT,
        ctx.run.seconds,
        &["-u", "-l", "64", "-b", "0"],
    )?;
    let u = udp_run(&v, ctx.run.seconds)?;
    o.figures.push(("udp64_kpps", u.delivered_pps / 1e3));
    if let Some(sent) = u.sent_pps {
        o.figures.push(("udp64_sent_kpps", sent / 1e3));
    }
    // Per frame netyard read from A (the TAP queue's overflow never reached it).
    let frames = frames0
        .zip(lab.a_rx_frames())
        .map_or(0.0, |(a, b)| b.saturating_sub(a) as f64);
    if let Some(c) = cpu_per(lab, cpu0, frames / 1e6) {
        o.figures.push(("udp64_cpu_us_per_frame", c));
    }
    Ok(())
}

fn measure_latency(lab: &mut Lab, ctx: &Ctx, pinned: bool, o: &mut Outcome) -> Result<(), String> {
    let test = RttTest {
        tool: ctx.latency_tool,
        self_exe: &ctx.run.self_exe,
        server_ns: &lab.b,
        client_ns: &lab.a,
        server_ip: &lab.ip_b,
        port: if pinned { PP_PINNED_PORT } else { PP_PORT },
        seconds: ctx.run.seconds,
        pin: pinned.then_some(ctx.pin_cpu),
        unpin: ctx.all_cpus,
    };
    let pids = lab.forwarders();
    let rtt = measure_rtt(&test, &mut lab.servers, &pids)?;
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

fn run_scenario<S: Scenario>(
    bench: &Bench<S>,
    ctx: &Ctx,
    sc: S,
    run: usize,
) -> Result<Outcome, String> {
    let setup = |lab: &mut Lab| -> Result<(), String> {
        (bench.setup)(ctx, sc, lab)?;
        lab.check_connectivity()
    };
    let mut lab = Lab::new(bench, ctx, sc, run)
        .and_then(|mut lab| setup(&mut lab).map(|()| lab))
        .map_err(|e| format!("setup failed: {e}"))?;
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
                    let r = measure_tcp(&lab, ctx, iperf, false, &mut o);
                    step(&mut lab, "tcp", &mut o, r)?;
                    if bench.reverse_tcp {
                        let r = measure_tcp(&lab, ctx, iperf, true, &mut o);
                        step(&mut lab, "tcp reverse", &mut o, r)?;
                    }
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
    if sc.is_netyard() {
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
                let host = r.get("host").map(|h| format!(" host {h}"));
                eprintln!(
                    "  {}{} port {}: rx {} tx {} pkts, rx_gso {}, tx_segmented {}, drops {} {}",
                    sc.name(),
                    host.unwrap_or_default(),
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

fn run_bench<S: Scenario>(bench: &Bench<S>, opts: &Opts<S>) -> i32 {
    if !can_make_namespaces() {
        return 1;
    }
    let Some(dir_guard) = scratch_dir(bench.ns_prefix, bench.tmp_prefix) else {
        return 1;
    };
    let latency_tool = opts.latency_tool.unwrap_or_else(LatencyTool::detect);
    let needs_netyard = opts.scenarios.iter().any(|s| s.is_netyard());
    let netyard = netyard_if(needs_netyard);
    if let (true, Err(e)) = (needs_netyard, &netyard) {
        eprintln!(
            "{} bench: the netyard scenarios will be skipped: {e}",
            bench.name
        );
    }
    let all_cpus = sched_getaffinity(Pid::from_raw(0)).unwrap_or_else(|_| CpuSet::new());
    let ctx = Ctx {
        run: Run::new(&dir_guard, opts.base.seconds, netyard),
        latency_tool,
        pin: opts.pin,
        pin_cpu: lowest_cpu(&all_cpus),
        all_cpus,
        floor_io: opts.floor_io,
        floor_vxlan: opts.floor_vxlan,
    };
    if let Ok(bin) = &ctx.run.netyard {
        eprintln!("{} bench: netyard binary {}", bench.name, bin.display());
    }

    let mut samples: Vec<(S, &'static str, f64)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut stats: Vec<Value> = Vec::new();
    let name = |sc: S| sc.name().to_string();
    each_run(
        opts.runs,
        &opts.scenarios,
        name,
        |sc, run, t0| match run_scenario(bench, &ctx, sc, run) {
            Ok(o) => {
                print_summary(sc.name(), t0, &o.figures);
                samples.extend(o.figures.iter().map(|&(m, v)| (sc, m, v)));
                errors.extend(
                    o.errors
                        .into_iter()
                        .map(|e| format!("{} run {run}: {e}", sc.name())),
                );
                keep_notes(sc.name(), run, o.notes, &mut notes);
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
        },
    );
    drop(dir_guard);

    // Medians and ratios to the reference.
    let tool = latency_tool.describe();
    println!(
        "# netyard {} bench: {} s per test, median of {} run(s); ratios are netyard / {} in the \
         same run (higher is better for gbps/kpps, lower for rtt); rtt by {tool}",
        bench.name, opts.base.seconds, opts.runs, bench.reference
    );
    let mut results = Vec::new();
    let mut floor_lines = Vec::new();
    for &sc in &opts.scenarios {
        for m in METRICS {
            let Some((value, all)) = median_of(&samples, &sc, m.name) else {
                continue;
            };
            let base = median_of(&samples, &S::REFERENCE, m.name)
                .map(|b| b.0)
                .filter(|&b| b > 0.0);
            let ratio = base.map(|b| value / b);
            let shown = format!("{value:.*}", m.decimals);
            let shown_ratio = ratio
                .filter(|_| sc != S::REFERENCE)
                .map(|r| (r, bench.reference));
            println!("{}", figure_line(sc.name(), m.name, &shown, shown_ratio));
            let mut entry = json!({
                "scenario": sc.name(),
                "metric": m.name,
                "value": value,
                "ratio": ratio,
                "unit": m.unit,
                "lower_is_better": m.lower_is_better,
                "samples": all,
            });
            // A floor over the reference: the part of the gap any userspace forwarder pays.
            let floor_of = S::ALL.iter().find(|s| s.floor() == Some(sc));
            if let (Some(of), Some(obj)) = (floor_of, entry.as_object_mut()) {
                obj.insert("floor_of".into(), json!(of.name()));
                if let Some(r) = ratio {
                    floor_lines.push(format!(
                        "# floor: {:<27} {:<22} {r:>6.2}x",
                        format!("{} / {}", sc.name(), S::REFERENCE.name()),
                        m.name
                    ));
                }
            }
            if let (Some(f), Some(obj)) = (sc.floor(), entry.as_object_mut()) {
                let r = median_of(&samples, &f, m.name)
                    .map(|b| b.0)
                    .filter(|&b| b > 0.0)
                    .map(|b| value / b);
                obj.insert("floor".into(), json!(f.name()));
                obj.insert("ratio_floor".into(), json!(r));
                if let Some(r) = r {
                    floor_lines.push(format!(
                        "# floor: {:<27} {:<22} {r:>6.2}x",
                        format!("{} / {}", sc.name(), f.name()),
                        m.name
                    ));
                }
            }
            results.push(entry);
        }
    }
    // The floors over the reference, and netyard over the floor of its port kind: the part of
    // the gap that is netyard's own.
    if !floor_lines.is_empty() {
        println!(
            "# floor: ratios are a floor / {} and netyard / the floor of the same port kind in \
             the same run (benches/common/floor.rs: the cheapest userspace forwarder; {})",
            S::REFERENCE.name(),
            if bench.name == "vxlan" {
                format!("VXLAN floor {}", opts.floor_vxlan.arg())
            } else {
                format!("I/O {}", opts.floor_io.arg())
            }
        );
    }
    for l in &floor_lines {
        println!("{l}");
    }
    for n in &notes {
        println!("# note: {n}");
    }
    for e in &errors {
        println!("# error: {e}");
    }
    let doc = json!({
        "bench": format!("netyard {}", bench.name),
        "seconds": opts.base.seconds,
        "runs": opts.runs,
        "pinned": opts.pin,
        "floor_io": opts.floor_io.arg(),
        "floor_vxlan": opts.floor_vxlan.arg(),
        "latency_tool": tool,
        "kernel": kernel_release(),
        "cpus": all_cpus_count(&ctx.all_cpus),
        "results": results,
        "notes": notes,
        "errors": errors,
        "port_stats": stats,
    });
    finish(opts.base.json.as_deref(), &doc, !errors.is_empty())
}
