//! The VXLAN overlay benchmark: two "hosts" (namespaces joined by a veth underlay), an endpoint
//! behind each, connected by netyard on both hosts (a daemon per host, `--vxlan`, TAP endpoints)
//! or by the Linux kernel's vxlan devices on a bridge on both hosts, in the same run.
//!
//! Run as root: `cargo bench --bench vxlan -- [--json FILE] [--seconds N] [--runs N]`.
//! benches/README.md describes what is measured and how. This is a measurement, never a test:
//! nothing here asserts on a figure. The code follows benches/switch.rs (same child handling,
//! teardown, measurements and output), with the scenarios of the overlay.

use std::fs::{self, File};
use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Prefix of every namespace this bench makes: `nyv-<pid>-<run><scenario>-<role>`.
const NS_PREFIX: &str = "nyv-";
const IPERF_PORT: u16 = 15201;
const PP_PORT: u16 = 11111;
const PP_PINNED_PORT: u16 = 11112;
const VNI: &str = "4242";
/// The overlay MTU both scenarios use: a 1500-byte underlay minus 50.
const MTU: &str = "1450";

// ---------------------------------------------------------------------------------------------
// Interruption (SIGINT/SIGTERM): remember it, stop what runs, tear down, exit 130.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn install_signal_handlers() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { signal::sigaction(sig, &action) };
    }
}

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

struct MetricDef {
    name: &'static str,
    unit: &'static str,
    decimals: usize,
    /// Latency and retransmits: a ratio above 1 means netyard is worse.
    lower_is_better: bool,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum LatencyTool {
    Sockperf,
    Rust,
}

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
                o.latency_tool = Some(match value("--latency-tool")?.as_str() {
                    "sockperf" => LatencyTool::Sockperf,
                    "rust" => LatencyTool::Rust,
                    other => return Err(format!("unknown latency tool {other:?}")),
                })
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
    if args.first().map(String::as_str) == Some("--pp-server") {
        std::process::exit(pp_server(args.get(1).map(String::as_str).unwrap_or("")));
    }
    if args.first().map(String::as_str) == Some("--pp-client") {
        let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
        std::process::exit(pp_client(
            args.get(1).map(String::as_str).unwrap_or(""),
            secs,
        ));
    }
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
// Running children: every child gets PR_SET_PDEATHSIG (it dies with the bench), optionally a
// CPU pin, and every wait polls so that a timeout or an interruption can stop it.

fn guard(cmd: &mut Command, pin: Option<CpuSet>) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only makes the raw
    // syscalls prctl and sched_setaffinity on values copied into it: async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            if let Some(set) = pin {
                sched_setaffinity(Pid::from_raw(0), &set)?;
            }
            Ok(())
        })
    }
}

/// `ip netns exec NS PROG ARGS...` (ip execs PROG, so the child's pid is PROG's).
fn nsexec(ns: &str, pin: Option<CpuSet>, prog: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(prog).args(args);
    guard(&mut cmd, pin);
    cmd
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    })
}

fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    run_child(cmd, timeout, true)
}

/// Runs a child to completion or `timeout`; an interruption stops it too when `interruptible`
/// (teardown commands are not: they must run after Ctrl-C).
fn run_child(cmd: &mut Command, timeout: Duration, interruptible: bool) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for {cmd:?}: {e}")),
        }
        if interruptible && interrupted() {
            break Err("interrupted".to_string());
        }
        if Instant::now() >= deadline {
            break Err(format!("timed out after {} s", timeout.as_secs()));
        }
        thread::sleep(Duration::from_millis(20));
    };
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Output {
        status: status?,
        stdout,
        stderr,
    })
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Runs `ip ARGS` (the bench's own setup; the product never runs `ip`). Quick, so not
/// interruptible: teardown relies on it after Ctrl-C.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = run_child(
        Command::new("ip").args(args),
        Duration::from_secs(20),
        false,
    )?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            first_line(&out.stderr)
        ))
    }
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns whether it exited in time.
fn stop(child: &mut Child, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    let _ = signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Kills whatever still runs in a namespace (SIGKILL), by `ip netns pids`.
fn kill_ns_pids(ns: &str) {
    if let Ok(out) = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Removes namespaces (and temp dirs) left by earlier runs of this bench that were killed
/// with SIGKILL: those whose owning pid no longer exists.
fn clean_stale() {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    if let Ok(dir) = fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !alive(pid) {
                eprintln!("vxlan bench: removing namespace {name} left by an earlier run");
                kill_ns_pids(&name);
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
    if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("netyard-vxbench-") {
                if pid.parse::<u32>().is_ok() && !alive(pid) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finding the netyard binary.

fn find_netyard() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NETYARD_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_netyard") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/release/deps/vxlan-HASH: try release/, then every ancestor's release/.
        for dir in exe.ancestors().skip(1) {
            candidates.push(dir.join("netyard"));
            candidates.push(dir.join("release").join("netyard"));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("release").join("netyard"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/netyard"));
    candidates.into_iter().find(|p| p.is_file())
}

fn locate_or_build_netyard() -> Result<PathBuf, String> {
    if let Some(p) = find_netyard() {
        return Ok(p);
    }
    eprintln!(
        "vxlan bench: netyard binary not found; running `cargo build --release --bin netyard`"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "netyard"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release --bin netyard` failed ({status})"
        ));
    }
    find_netyard().ok_or_else(|| "netyard binary still not found after building it".into())
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
    created: Vec<String>,
    dir: PathBuf,
    bin: Option<PathBuf>,
    /// netyard: one daemon per host, each with its API socket.
    daemons: Vec<(Child, PathBuf)>,
    servers: Vec<Child>,
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
            created: Vec::new(),
            dir,
            bin: None,
            daemons: Vec::new(),
            servers: Vec::new(),
        };
        for ns in [lab.h1.clone(), lab.h2.clone(), lab.a.clone(), lab.b.clone()] {
            ip(&["netns", "add", &ns])?;
            lab.created.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
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
                lab.bin = Some(ctx.netyard.clone()?);
                lab.setup_netyard()?;
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

    fn cli(&self, api: &Path, args: &[&str]) -> Result<String, String> {
        let bin = self.bin.as_ref().ok_or("no netyard binary")?;
        let out = run_timed(
            Command::new(bin).arg("--api").arg(api).args(args),
            Duration::from_secs(30),
        )?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "`netyard {}` ({}): {}",
                args.join(" "),
                out.status,
                first_line(&out.stderr)
            ))
        }
    }

    fn daemon_log(&self, i: usize) -> String {
        fs::read_to_string(self.dir.join(format!("daemon{i}.log"))).unwrap_or_default()
    }

    fn daemon_alive(&mut self) -> Result<(), String> {
        let mut dead = None;
        for (i, (d, _)) in self.daemons.iter_mut().enumerate() {
            if let Ok(Some(st)) = d.try_wait() {
                dead = Some((i, st));
            }
        }
        match dead {
            Some((i, st)) => Err(format!(
                "daemon {} exited ({st}); its log ends: {}",
                i + 1,
                last_lines(&self.daemon_log(i), 3)
            )),
            None => Ok(()),
        }
    }

    /// A daemon in each host namespace; on each one network with `--vxlan` and the other host
    /// as its peer (the MTU comes out as the underlay's 1500 minus 50), one TAP endpoint.
    fn setup_netyard(&mut self) -> Result<(), String> {
        let bin = self.bin.clone().ok_or("no netyard binary")?;
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
            let log =
                File::create(self.dir.join(format!("daemon{i}.log"))).map_err(|e| e.to_string())?;
            let log2 = log.try_clone().map_err(|e| e.to_string())?;
            let api = self.dir.join(format!("api{i}.sock"));
            let state = self.dir.join(format!("state{i}"));
            let (apis, states) = (
                api.to_string_lossy().into_owned(),
                state.to_string_lossy().into_owned(),
            );
            let mut cmd = nsexec(
                h,
                None,
                &bin,
                &["--api", &apis, "daemon", "--state-dir", &states],
            );
            cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
            let child = cmd
                .spawn()
                .map_err(|e| format!("starting the daemon in {h}: {e}"))?;
            self.daemons.push((child, api));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0..self.daemons.len() {
            loop {
                self.daemon_alive()?;
                if interrupted() {
                    return Err("interrupted".into());
                }
                let api = self.daemons[i].1.clone();
                if api.exists() && self.cli(&api, &["network", "ls"]).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "daemon {}'s API did not answer within 15 s; its log ends: {}",
                        i + 1,
                        last_lines(&self.daemon_log(i), 3)
                    ));
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        let subnet = format!("10.252.{}.0/24", self.sc.octet());
        for (i, (_, ns, name, addr, peer)) in hosts.iter().enumerate() {
            let api = self.daemons[i].1.clone();
            self.cli(
                &api,
                &[
                    "network",
                    "create",
                    "bench",
                    "--subnet",
                    &subnet,
                    "--vxlan",
                    VNI,
                    "--vxlan-peer",
                    peer,
                ],
            )?;
            let path = format!("/run/netns/{ns}");
            self.cli(
                &api,
                &[
                    "attach", "bench", "--netns", &path, "--name", name, "--ip", addr, "--kind",
                    "tap",
                ],
            )?;
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

    /// Starts a server in namespace B and waits until it listens on `port`.
    fn start_server(
        &mut self,
        prog: &Path,
        args: &[&str],
        pin: Option<CpuSet>,
        proto: &str,
        port: u16,
    ) -> Result<usize, String> {
        let name = prog
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let log =
            File::create(self.dir.join(format!("{name}-{port}.log"))).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = nsexec(&self.b, pin, prog, args);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        self.servers.push(child);
        let idx = self.servers.len() - 1;
        let res = wait_listening(&mut self.servers[idx], proto, port, Duration::from_secs(10));
        res.map_err(|e| format!("{name} server: {e}"))?;
        Ok(idx)
    }

    fn stop_server(&mut self, idx: usize) {
        if let Some(c) = self.servers.get_mut(idx) {
            stop(c, Duration::from_secs(2));
        }
    }

    fn pin_daemon(&self, set: &CpuSet) -> Result<(), String> {
        for (d, _) in &self.daemons {
            let pid = d.id();
            let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                .map_err(|e| format!("daemon threads: {e}"))?;
            for t in tasks.flatten() {
                if let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() {
                    // A thread may have exited meanwhile: ignore those.
                    let _ = sched_setaffinity(Pid::from_raw(tid), set);
                }
            }
        }
        Ok(())
    }

    /// Kernel-side drop counters of the endpoints: eth0 rx/tx dropped in A and B, and B's
    /// UDP receive-buffer overflows. Diagnostic only (where the undelivered UDP went).
    fn kernel_drops(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for (role, ns) in [("A", &self.a), ("B", &self.b)] {
            let out = Command::new("ip")
                .args(["-n", ns, "-s", "-j", "link", "show", "eth0"])
                .stderr(Stdio::null())
                .output();
            let j: Value = out
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                .unwrap_or(Value::Null);
            for dir in ["rx", "tx"] {
                let n = j[0]["stats64"][dir]["dropped"].as_u64().unwrap_or(0);
                v.push((format!("{role} eth0 {dir}_dropped"), n));
            }
        }
        let snmp = Command::new("ip")
            .args(["netns", "exec", &self.b, "cat", "/proc/net/snmp"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let udp: Vec<Vec<&str>> = snmp
            .lines()
            .filter(|l| l.starts_with("Udp:"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        if let [names, values] = udp.as_slice() {
            if let Some(i) = names.iter().position(|n| *n == "RcvbufErrors") {
                let n = values.get(i).and_then(|x| x.parse().ok()).unwrap_or(0);
                v.push(("B udp RcvbufErrors".to_string(), n));
            }
        }
        v
    }

    /// Both daemons' `stats` rows, each tagged with its host.
    fn port_stats(&self) -> Option<Value> {
        let mut rows = Vec::new();
        for (i, (_, api)) in self.daemons.iter().enumerate() {
            let out = self.cli(api, &["stats", "--json"]).ok()?;
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
        for c in &mut self.servers {
            stop(c, Duration::from_secs(2));
        }
        for (mut d, _) in self.daemons.drain(..) {
            if !stop(&mut d, Duration::from_secs(10)) {
                eprintln!(
                    "vxlan bench: {}: a daemon did not exit within 10 s of SIGTERM (killed)",
                    self.sc.name()
                );
            }
        }
        for ns in self.created.drain(..).rev() {
            kill_ns_pids(&ns);
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("vxlan bench: {e}");
            }
        }
    }
}

fn wait_listening(
    child: &mut Child,
    proto: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    let pid = child.id();
    let hex = format!(":{port:04X}");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("exited at start ({st})"));
        }
        if interrupted() {
            return Err("interrupted".into());
        }
        // Until `ip netns exec` has exec'd the server, /proc/PID/net is the wrong namespace.
        let execd = fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.file_name().is_some_and(|n| n != "ip"))
            .unwrap_or(false);
        if execd {
            for table in [proto.to_string(), format!("{proto}6")] {
                let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
                    continue;
                };
                let listening = text.lines().skip(1).any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[1].ends_with(&hex) && (proto == "udp" || cols[3] == "0A")
                });
                if listening {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not listening on port {port} after {} s",
                timeout.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(20));
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

fn iperf_client(lab: &Lab, ctx: &Ctx, iperf: &Path, extra: &[&str]) -> Result<Value, String> {
    let secs = ctx.seconds.to_string();
    let port = IPERF_PORT.to_string();
    let ipb = lab.ip_b();
    let mut args = vec!["-c", &ipb, "-p", &port, "-t", &secs, "-J"];
    args.extend_from_slice(extra);
    let timeout = Duration::from_secs(ctx.seconds + 30);
    let out = run_timed(&mut nsexec(&lab.a, None, iperf, &args), timeout)?;
    let v: Value = serde_json::from_str(&out.stdout).map_err(|_| {
        format!(
            "iperf3 gave no JSON ({}): {}",
            out.status,
            first_line(&format!("{}\n{}", out.stderr, out.stdout))
        )
    })?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {e}"));
    }
    Ok(v)
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

fn measure_tcp(lab: &Lab, ctx: &Ctx, iperf: &Path, o: &mut Outcome) -> Result<(), String> {
    let v = iperf_client(lab, ctx, iperf, &[])?;
    let bps = f(&v, &["end", "sum_received", "bits_per_second"])
        .ok_or("iperf3 JSON lacks end.sum_received")?;
    o.figures.push(("tcp_gbps", bps / 1e9));
    if let Some(r) = f(&v, &["end", "sum_sent", "retransmits"]) {
        o.figures.push(("tcp_retrans", r));
    }
    // Stalls: 1-s intervals far below the typical one.
    let mut iv: Vec<f64> = v
        .get("intervals")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| f(i, &["sum", "bits_per_second"]))
                .collect()
        })
        .unwrap_or_default();
    if iv.len() >= 2 {
        iv.sort_by(f64::total_cmp);
        let med = median(&iv);
        let slow = iv.iter().filter(|&&x| x < 0.1 * med).count();
        if slow > 0 {
            o.notes.push(format!(
                "TCP stalled: {slow} of {} 1-s intervals under 10% of the median ({:.2} Gbit/s; slowest {:.3})",
                iv.len(),
                med / 1e9,
                iv[0] / 1e9
            ));
        }
    }
    Ok(())
}

fn measure_udp(lab: &Lab, ctx: &Ctx, iperf: &Path, o: &mut Outcome) -> Result<(), String> {
    let v = iperf_client(lab, ctx, iperf, &["-u", "-l", "64", "-b", "0"])?;
    let end = v.get("end").ok_or("iperf3 JSON lacks end")?;
    // Receiver side: iperf3 >= 3.12 has end.sum_received; older ones carry the receiver's
    // packets/lost in end.sum.
    let recv = end
        .get("sum_received")
        .or_else(|| end.get("sum"))
        .ok_or("no UDP summary")?;
    let packets = f(recv, &["packets"]).ok_or("no packet count")?;
    let lost = f(recv, &["lost_packets"]).unwrap_or(0.0);
    let secs = f(recv, &["seconds"])
        .filter(|&s| s > 0.0)
        .unwrap_or(ctx.seconds as f64);
    let delivered = (packets - lost).max(0.0) / secs;
    o.figures.push(("udp64_kpps", delivered / 1e3));
    if let Some(sent) = end.get("sum_sent").and_then(|s| f(s, &["packets"])) {
        let ssecs = end
            .get("sum_sent")
            .and_then(|s| f(s, &["seconds"]))
            .filter(|&s| s > 0.0)
            .unwrap_or(secs);
        o.figures.push(("udp64_sent_kpps", sent / ssecs / 1e3));
    }
    Ok(())
}

struct Rtt {
    avg: f64,
    p50: f64,
    p99: f64,
}

fn parse_sockperf(out: &str) -> Result<Rtt, String> {
    let num_after_eq = |key: &str| -> Option<f64> {
        out.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|s| s.trim().parse().ok())
    };
    let avg = out.lines().find(|l| l.contains("Summary:")).and_then(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "usec")?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    });
    match (
        avg,
        num_after_eq("percentile 50.000"),
        num_after_eq("percentile 99.000"),
    ) {
        (Some(avg), Some(p50), Some(p99)) => Ok(Rtt { avg, p50, p99 }),
        _ => Err(format!(
            "could not parse sockperf's output: {}",
            last_lines(out, 2)
        )),
    }
}

fn parse_rust_pp(out: &str) -> Result<Rtt, String> {
    let line = out
        .lines()
        .find(|l| l.starts_with("pp "))
        .ok_or("the ping-pong client printed nothing")?;
    let get = |k: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    match (get("avg="), get("p50="), get("p99="), get("n=")) {
        (Some(avg), Some(p50), Some(p99), Some(n)) if n > 0.0 => Ok(Rtt { avg, p50, p99 }),
        _ => Err(format!("ping-pong got no replies: {line}")),
    }
}

fn measure_rtt(lab: &mut Lab, ctx: &Ctx, pinned: bool, o: &mut Outcome) -> Result<(), String> {
    let pin = pinned.then_some(ctx.pin_cpu);
    let port = if pinned { PP_PINNED_PORT } else { PP_PORT };
    let ports = port.to_string();
    let ipb = lab.ip_b();
    let addr = format!("{ipb}:{port}");
    let secs = ctx.seconds.to_string();
    let (server_prog, server_args, client_prog, client_args): (
        PathBuf,
        Vec<&str>,
        PathBuf,
        Vec<&str>,
    ) = match ctx.latency_tool {
        LatencyTool::Sockperf => {
            let sp = which("sockperf").ok_or("sockperf not found")?;
            (
                sp.clone(),
                vec!["sr", "-i", &ipb, "-p", &ports],
                sp,
                vec![
                    "pp",
                    "-i",
                    &ipb,
                    "-p",
                    &ports,
                    "-m",
                    "64",
                    "-t",
                    &secs,
                    "--full-rtt",
                ],
            )
        }
        LatencyTool::Rust => (
            ctx.self_exe.clone(),
            vec!["--pp-server", &addr],
            ctx.self_exe.clone(),
            vec!["--pp-client", &addr, &secs],
        ),
    };
    let idx = lab.start_server(&server_prog, &server_args, pin, "udp", port)?;
    if pinned {
        lab.pin_daemon(&ctx.pin_cpu)?;
    }
    let res = run_timed(
        &mut nsexec(&lab.a, pin, &client_prog, &client_args),
        Duration::from_secs(ctx.seconds + 30),
    );
    if pinned {
        let _ = lab.pin_daemon(&ctx.all_cpus);
    }
    lab.stop_server(idx);
    let out = res?;
    let rtt = match ctx.latency_tool {
        LatencyTool::Sockperf => parse_sockperf(&out.stdout)?,
        LatencyTool::Rust => parse_rust_pp(&out.stdout)?,
    };
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
            let srv = lab.start_server(
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
                    let before = lab.kernel_drops();
                    let r = measure_udp(&lab, ctx, iperf, &mut o);
                    let after = lab.kernel_drops();
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
                    lab.stop_server(idx);
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
    let r = measure_rtt(&mut lab, ctx, false, &mut o);
    step(&mut lab, "rtt", &mut o, r)?;
    if ctx.pin {
        let r = measure_rtt(&mut lab, ctx, true, &mut o);
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
// The fallback UDP ping-pong (when sockperf is missing or --latency-tool rust).

fn pp_server(addr: &str) -> i32 {
    let sock = match UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pp-server: bind {addr}: {e}");
            return 1;
        }
    };
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    }
}

fn pp_client(addr: &str, seconds: u64) -> i32 {
    let sock = match UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(addr).map(|_| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pp-client: {addr}: {e}");
            return 1;
        }
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let start = Instant::now();
    let warmup = Duration::from_millis(300);
    let end = start + Duration::from_secs(seconds);
    let mut msg = [0u8; 64];
    let mut buf = [0u8; 2048];
    let mut rtts: Vec<f64> = Vec::with_capacity(1 << 20);
    let (mut seq, mut lost) = (0u64, 0u64);
    while Instant::now() < end {
        seq += 1;
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        let t0 = Instant::now();
        if sock.send(&msg).is_err() {
            lost += 1;
            continue;
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[..8] == msg[..8] => {
                    if t0 - start >= warmup {
                        rtts.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    break;
                }
                Ok(_) => continue, // a late reply to an earlier probe
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    rtts.sort_by(f64::total_cmp);
    let avg = if rtts.is_empty() {
        0.0
    } else {
        rtts.iter().sum::<f64>() / rtts.len() as f64
    };
    println!(
        "pp n={} lost={lost} avg={avg:.3} p50={:.3} p99={:.3}",
        rtts.len(),
        percentile(&rtts, 50.0),
        percentile(&rtts, 99.0)
    );
    0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// The run: scenarios in turn, `runs` times, fresh setup each time; medians and ratios.

/// The run's scratch directory (API sockets, logs), removed even when unwinding.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn lowest_cpu(set: &CpuSet) -> CpuSet {
    let mut one = CpuSet::new();
    let cpu = (0..CpuSet::count())
        .find(|&c| set.is_set(c).unwrap_or(false))
        .unwrap_or(0);
    let _ = one.set(cpu);
    one
}

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
    clean_stale();
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("netyard-vxbench-{pid}"));
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("vxlan bench: creating {}: {e}", dir.display());
        return 1;
    }
    let dir_guard = TempDir(dir.clone());
    let latency_tool = opts.latency_tool.unwrap_or(if which("sockperf").is_some() {
        LatencyTool::Sockperf
    } else {
        LatencyTool::Rust
    });
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
    let med = |sc: Scenario, m: &str| -> Option<(f64, Vec<f64>)> {
        // Samples in run order; the median from a sorted copy.
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == sc && s.1 == m)
            .map(|s| s.2)
            .collect();
        if v.is_empty() {
            return None;
        }
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        Some((median(&sorted), v))
    };
    let tool = match latency_tool {
        LatencyTool::Sockperf => "sockperf pp --full-rtt",
        LatencyTool::Rust => "the bench's own UDP ping-pong",
    };
    println!(
        "# netyard vxlan bench: {} s per test, median of {} run(s); ratios are netyard / kernel \
         vxlan in the same run (higher is better for gbps/kpps, lower for rtt); rtt by {tool}",
        opts.seconds, opts.runs
    );
    let mut results = Vec::new();
    for &sc in &opts.scenarios {
        for m in METRICS {
            let Some((value, all)) = med(sc, m.name) else {
                continue;
            };
            let base = med(Scenario::Kernel, m.name)
                .map(|b| b.0)
                .filter(|&b| b > 0.0);
            let ratio = base.map(|b| value / b);
            let shown = format!("{value:.*}", m.decimals);
            match (sc, ratio) {
                (Scenario::Kernel, _) | (_, None) => {
                    println!("{:<14} {:<18} {:>9}", sc.name(), m.name, shown)
                }
                (_, Some(r)) => println!(
                    "{:<14} {:<18} {:>9}  ({r:.2}x kernel vxlan)",
                    sc.name(),
                    m.name,
                    shown
                ),
            }
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
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let doc = json!({
            "bench": "netyard vxlan",
            "seconds": opts.seconds,
            "runs": opts.runs,
            "pinned": opts.pin,
            "latency_tool": tool,
            "kernel": kernel.trim(),
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

fn all_cpus_count(set: &CpuSet) -> usize {
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .count()
}
