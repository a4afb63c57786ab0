//! The DNS benchmark: netyard's embedded resolver against dnsmasq, both answering the same names
//! to the same load generator (dnsperf) in one client namespace, in one run.
//!
//! Run as root: `cargo bench --bench dns -- [--json FILE] [--seconds N] [--latency-seconds N]
//! [--rate QPS]`. benches/README.md describes what is measured and how. This is a measurement,
//! never a test: nothing here asserts on a figure.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Prefix of every namespace this bench makes: `nybdns-<pid>-<role>`.
const NS_PREFIX: &str = "nybdns-";
/// Where netyard answers in every attached namespace.
const NETYARD_ADDR: &str = "127.0.0.11";
/// Where the reference dnsmasq answers, in the same client namespace.
const DNSMASQ_ADDR: &str = "127.0.0.12";
/// The upstream dnsmasq of the forwarded names, on loopback (one in the daemon's namespace for
/// netyard, one in the client's namespace for the reference dnsmasq).
const UPSTREAM_PORT: u16 = 5300;
const NETWORK: &str = "bench";
/// The network's /24 (.1 is the gateway, the client and endpoints follow).
const SUBNET: &str = "10.252.77";
const ENDPOINTS: usize = 4;
const ALIASES_PER_ENDPOINT: usize = 24;
const FORWARDED_NAMES: usize = 100;
/// TTL of local answers on both servers (netyard's default).
const LOCAL_TTL: u32 = 60;

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
// Options.

struct Opts {
    bench_flag: bool,
    json: Option<PathBuf>,
    /// Length of each saturating (queries per second) run.
    seconds: u64,
    /// Length of each fixed-rate latency run.
    latency_seconds: u64,
    /// Queries per second of the latency runs.
    rate: u64,
}

const USAGE: &str = "usage: cargo bench --bench dns -- [--json FILE] [--seconds N] \
[--latency-seconds N] [--rate QPS]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        bench_flag: false,
        json: None,
        seconds: 5,
        latency_seconds: 3,
        rate: 2000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Result<String, String> {
            match it.next() {
                Some(v) if !v.starts_with("--") => Ok(v.clone()),
                _ => Err(format!("{flag} needs a value")),
            }
        };
        let positive = |v: String, flag: &str| -> Result<u64, String> {
            v.parse()
                .ok()
                .filter(|&n: &u64| n > 0)
                .ok_or_else(|| format!("{flag} takes a positive whole number"))
        };
        match a.as_str() {
            "--bench" => o.bench_flag = true,
            "--json" => o.json = Some(PathBuf::from(value("--json")?)),
            "--seconds" => o.seconds = positive(value("--seconds")?, "--seconds")?,
            "--latency-seconds" => {
                o.latency_seconds = positive(value("--latency-seconds")?, "--latency-seconds")?
            }
            "--rate" => o.rate = positive(value("--rate")?, "--rate")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("dns bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    if !opts.bench_flag {
        // `cargo test --all-targets` runs bench targets without --bench: do nothing then.
        println!("dns bench: not run (start it with `cargo bench --bench dns`, or pass --bench)");
        return;
    }
    std::process::exit(run_bench(&opts));
}

// ---------------------------------------------------------------------------------------------
// Running children: every child gets PR_SET_PDEATHSIG (it dies with the bench), and every wait
// polls so that a timeout or an interruption can stop it.

fn guard(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only makes the raw syscall
    // prctl: async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        })
    }
}

/// `ip netns exec NS PROG ARGS...` (ip execs PROG, so the child's pid is PROG's).
fn nsexec(ns: &str, prog: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(prog).args(args);
    guard(&mut cmd);
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

/// Runs `ip ARGS` (the bench's own setup). Not interruptible: teardown relies on it.
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

/// Removes namespaces and temp dirs left by earlier runs that were killed with SIGKILL: those
/// whose owning pid no longer exists.
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
                eprintln!("dns bench: removing namespace {name} left by an earlier run");
                kill_ns_pids(&name);
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
    if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("netyard-dnsbench-") {
                if pid.parse::<u32>().is_ok() && !alive(pid) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finding the netyard binary (as the switch bench does).

fn find_netyard() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NETYARD_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_netyard") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
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
    eprintln!("dns bench: netyard binary not found; running `cargo build --release --bin netyard`");
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
// The lab: namespaces, the daemon and the dnsmasq servers, torn down on drop.

struct Tools {
    netyard: PathBuf,
    dnsmasq: PathBuf,
    dnsperf: PathBuf,
    dig: PathBuf,
}

struct Lab {
    dir: PathBuf,
    api: PathBuf,
    netyard: PathBuf,
    /// The daemon's namespace.
    h: String,
    /// The client's namespace: dnsperf, netyard's resolver sockets, the reference dnsmasq.
    c: String,
    created: Vec<String>,
    daemon: Option<Child>,
    servers: Vec<(String, Child)>,
}

impl Lab {
    fn new(pid: u32, dir: &Path, netyard: &Path) -> Result<Lab, String> {
        let mut lab = Lab {
            dir: dir.to_path_buf(),
            api: dir.join("api.sock"),
            netyard: netyard.to_path_buf(),
            h: format!("{NS_PREFIX}{pid}-h"),
            c: format!("{NS_PREFIX}{pid}-c"),
            created: Vec::new(),
            daemon: None,
            servers: Vec::new(),
        };
        let mut all = vec![lab.h.clone(), lab.c.clone()];
        all.extend((0..ENDPOINTS).map(|i| format!("{NS_PREFIX}{pid}-e{i}")));
        for ns in all {
            ip(&["netns", "add", &ns])?;
            lab.created.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn endpoint_ns(&self, i: usize) -> &str {
        &self.created[2 + i]
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = run_child(
            Command::new(&self.netyard)
                .arg("--api")
                .arg(&self.api)
                .args(args),
            Duration::from_secs(30),
            true,
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

    fn daemon_log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn start_daemon(&mut self) -> Result<(), String> {
        let log = File::create(self.dir.join("daemon.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let api = self.api.to_string_lossy().into_owned();
        let state = self.dir.join("state").to_string_lossy().into_owned();
        let upstream = format!("127.0.0.1:{UPSTREAM_PORT}");
        let mut cmd = nsexec(
            &self.h,
            &self.netyard.clone(),
            &[
                "--api",
                &api,
                "daemon",
                "--state-dir",
                &state,
                "--dns-upstream",
                &upstream,
            ],
        );
        // Warnings only: a log line per query would measure the logger.
        cmd.env("NETYARD_LOG", "warn").env("NO_COLOR", "1");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        self.daemon = Some(
            cmd.spawn()
                .map_err(|e| format!("starting the daemon: {e}"))?,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "the daemon exited ({st}); its log ends: {}",
                    last_lines(&self.daemon_log(), 3)
                ));
            }
            if interrupted() {
                return Err("interrupted".into());
            }
            if self.api.exists() && self.cli(&["network", "ls"]).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the daemon's API did not answer within 15 s; its log ends: {}",
                    last_lines(&self.daemon_log(), 3)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a dnsmasq in `ns` on ADDR:PORT with `extra` options, and waits until it answers.
    fn start_dnsmasq(
        &mut self,
        tools: &Tools,
        tag: &str,
        ns: &str,
        addr: &str,
        port: u16,
        extra: &[String],
    ) -> Result<(), String> {
        let mut args: Vec<String> = vec![
            "--conf-file=/dev/null".into(),
            "--keep-in-foreground".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--pid-file".into(),
            "--user=root".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={addr}"),
            format!("--port={port}"),
        ];
        args.extend(extra.iter().cloned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let log_path = self.dir.join(format!("dnsmasq-{tag}.log"));
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = nsexec(ns, &tools.dnsmasq, &argv);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting dnsmasq ({tag}): {e}"))?;
        self.servers.push((tag.to_string(), child));
        let deadline = Instant::now() + Duration::from_secs(10);
        let p = port.to_string();
        loop {
            let out = run_child(
                &mut nsexec(
                    ns,
                    &tools.dig,
                    &[
                        &format!("@{addr}"),
                        "-p",
                        &p,
                        "+time=1",
                        "+tries=1",
                        "probe.invalid",
                    ],
                ),
                Duration::from_secs(5),
                true,
            )?;
            if out.status.success() {
                return Ok(());
            }
            if let Some((_, c)) = self.servers.last_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!(
                        "dnsmasq ({tag}) exited ({st}): {}",
                        last_lines(&fs::read_to_string(&log_path).unwrap_or_default(), 3)
                    ));
                }
            }
            if interrupted() {
                return Err("interrupted".into());
            }
            if Instant::now() >= deadline {
                return Err(format!("dnsmasq ({tag}) did not answer within 10 s"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.servers {
            stop(c, Duration::from_secs(2));
        }
        if let Some(mut d) = self.daemon.take() {
            if !stop(&mut d, Duration::from_secs(10)) {
                eprintln!("dns bench: the daemon did not exit within 10 s of SIGTERM (killed)");
            }
        }
        for ns in self.created.drain(..).rev() {
            kill_ns_pids(&ns);
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("dns bench: {e}");
            }
        }
    }
}

/// The run's scratch directory, removed even when unwinding.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Names.

/// The local names (each endpoint's name, its aliases, `NAME.NETWORK`) with their addresses,
/// and the forwarded names with theirs.
struct Names {
    local: Vec<(String, String)>,
    forwarded: Vec<(String, String)>,
    /// (endpoint name, address, aliases) for the attach calls and the hosts file.
    endpoints: Vec<(String, String, Vec<String>)>,
}

fn names() -> Names {
    let mut local = Vec::new();
    let mut endpoints = Vec::new();
    for i in 0..ENDPOINTS {
        let name = format!("srv{i}");
        let addr = format!("{SUBNET}.{}", 10 + i);
        let aliases: Vec<String> = (0..ALIASES_PER_ENDPOINT)
            .map(|j| format!("a{i}-{j}"))
            .collect();
        local.push((name.clone(), addr.clone()));
        local.push((format!("{name}.{NETWORK}"), addr.clone()));
        for a in &aliases {
            local.push((a.clone(), addr.clone()));
        }
        endpoints.push((name, addr, aliases));
    }
    let forwarded = (0..FORWARDED_NAMES)
        .map(|i| (format!("f{i}.fwd.test"), format!("198.18.3.{}", i + 1)))
        .collect();
    Names {
        local,
        forwarded,
        endpoints,
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// dnsperf's input: `NAME A` per line.
fn query_file(path: &Path, names: &[(String, String)]) -> Result<(), String> {
    let text: String = names.iter().map(|(n, _)| format!("{n} A\n")).collect();
    write_file(path, &text)
}

/// `dig +short` for every name in one run: warms caches and checks each server answers what
/// it should (one A record per name, the expected address).
fn check_answers(
    tools: &Tools,
    ns: &str,
    server: &str,
    names: &[(String, String)],
) -> Result<(), String> {
    let at = format!("@{server}");
    let mut argv: Vec<&str> = vec![&at, "+short", "+time=2", "+tries=2"];
    argv.extend(names.iter().map(|(n, _)| n.as_str()));
    let out = run_child(
        &mut nsexec(ns, &tools.dig, &argv),
        Duration::from_secs(60),
        true,
    )?;
    let got: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    let want: Vec<&str> = names.iter().map(|(_, a)| a.as_str()).collect();
    if got != want {
        let bad = names
            .iter()
            .zip(got.iter().map(Some).chain(std::iter::repeat(None)))
            .find(|((_, a), g)| *g != Some(&a.as_str()))
            .map(|((n, a), g)| format!("{n}: expected {a}, got {g:?}"))
            .unwrap_or_default();
        return Err(format!(
            "{server} does not answer the bench's names as expected ({bad}); dig said: {}",
            last_lines(&format!("{}\n{}", out.stdout, out.stderr), 3)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// dnsperf.

/// A saturating run: dnsperf's summary.
struct RateRun {
    qps: f64,
    sent: u64,
    completed: u64,
    lost: u64,
    avg_us: f64,
    codes: String,
}

/// A fixed-rate run: per-query latencies.
struct LatencyRun {
    p50_us: f64,
    p99_us: f64,
    answered: usize,
    lost: u64,
    not_noerror: usize,
}

fn summary_number(out: &str, label: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.trim_start().starts_with(label))?;
    line.split_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn dnsperf(
    tools: &Tools,
    ns: &str,
    server: &str,
    file: &Path,
    extra: &[&str],
    seconds: u64,
) -> Result<String, String> {
    let file = file.to_string_lossy().into_owned();
    let secs = seconds.to_string();
    let mut argv = vec!["-s", server, "-d", &file, "-l", &secs, "-c", "1", "-T", "1"];
    argv.extend_from_slice(extra);
    let out = run_child(
        &mut nsexec(ns, &tools.dnsperf, &argv),
        Duration::from_secs(seconds + 30),
        true,
    )?;
    if !out.status.success() || !out.stdout.contains("Queries per second") {
        return Err(format!(
            "dnsperf against {server} failed ({}): {}",
            out.status,
            last_lines(&format!("{}\n{}", out.stdout, out.stderr), 3)
        ));
    }
    Ok(out.stdout)
}

fn rate_run(
    tools: &Tools,
    ns: &str,
    server: &str,
    file: &Path,
    seconds: u64,
) -> Result<RateRun, String> {
    // 100 queries in flight (dnsperf's default), one socket, one thread.
    let out = dnsperf(tools, ns, server, file, &["-q", "100"], seconds)?;
    let n = |label: &str| summary_number(&out, label);
    Ok(RateRun {
        qps: n("Queries per second").ok_or("dnsperf printed no rate")?,
        sent: n("Queries sent").unwrap_or(0.0) as u64,
        completed: n("Queries completed").unwrap_or(0.0) as u64,
        lost: n("Queries lost").unwrap_or(0.0) as u64,
        avg_us: n("Average Latency (s)").unwrap_or(f64::NAN) * 1e6,
        codes: out
            .lines()
            .find(|l| l.trim_start().starts_with("Response codes:"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, r)| r.trim().to_string())
            .unwrap_or_default(),
    })
}

fn latency_run(
    tools: &Tools,
    ns: &str,
    server: &str,
    file: &Path,
    seconds: u64,
    rate: u64,
) -> Result<LatencyRun, String> {
    let q = rate.to_string();
    // -v prints `> RCODE NAME TYPE SECONDS` per answer.
    let out = dnsperf(tools, ns, server, file, &["-Q", &q, "-v"], seconds)?;
    let mut lat = Vec::new();
    let mut not_noerror = 0;
    for l in out.lines().filter(|l| l.starts_with("> ")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"NOERROR") {
            not_noerror += 1;
        }
        if let Some(s) = f.last().and_then(|s| s.parse::<f64>().ok()) {
            lat.push(s * 1e6);
        }
    }
    if lat.is_empty() {
        return Err(format!("dnsperf -v against {server} printed no latencies"));
    }
    lat.sort_by(f64::total_cmp);
    Ok(LatencyRun {
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
        answered: lat.len(),
        lost: summary_number(&out, "Queries lost").unwrap_or(0.0) as u64,
        not_noerror,
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn tool_version(prog: &Path, arg: &str) -> String {
    run_child(Command::new(prog).arg(arg), Duration::from_secs(10), false)
        .map(|o| {
            let text = format!("{}\n{}", o.stdout, o.stderr);
            text.lines()
                .find(|l| l.contains("ersion"))
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Metric {
    name: &'static str,
    unit: &'static str,
    decimals: usize,
    lower_is_better: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "qps",
        unit: "queries/s",
        decimals: 0,
        lower_is_better: false,
    },
    Metric {
        name: "avg_us_saturated",
        unit: "us",
        decimals: 0,
        lower_is_better: true,
    },
    Metric {
        name: "p50_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    Metric {
        name: "p99_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
];

fn setup(lab: &mut Lab, tools: &Tools, names: &Names) -> Result<(), String> {
    let dir = lab.dir.clone();
    // The forwarded names' upstream: a hosts file, one dnsmasq in the daemon's namespace
    // (netyard forwards there) and one in the client's namespace (the reference dnsmasq
    // forwards there). Their answers live an hour, so both caches keep them for the run.
    let fwd_hosts = dir.join("forwarded.hosts");
    write_file(
        &fwd_hosts,
        &names
            .forwarded
            .iter()
            .map(|(n, a)| format!("{a} {n}\n"))
            .collect::<String>(),
    )?;
    let upstream_args = vec![
        format!("--addn-hosts={}", fwd_hosts.display()),
        "--local=/fwd.test/".to_string(),
        "--local-ttl=3600".to_string(),
    ];
    let (h, c) = (lab.h.clone(), lab.c.clone());
    lab.start_dnsmasq(
        tools,
        "upstream-h",
        &h,
        "127.0.0.1",
        UPSTREAM_PORT,
        &upstream_args,
    )?;
    lab.start_dnsmasq(
        tools,
        "upstream-c",
        &c,
        "127.0.0.1",
        UPSTREAM_PORT,
        &upstream_args,
    )?;

    // netyard: the daemon, one network, the endpoints with their aliases, the client.
    lab.start_daemon()?;
    lab.cli(&[
        "network",
        "create",
        NETWORK,
        "--subnet",
        &format!("{SUBNET}.0/24"),
    ])?;
    for (i, (name, addr, aliases)) in names.endpoints.iter().enumerate() {
        let ns = format!("/run/netns/{}", lab.endpoint_ns(i));
        let mut args = vec![
            "attach", NETWORK, "--netns", &ns, "--name", name, "--ip", addr,
        ];
        for a in aliases {
            args.push("--alias");
            args.push(a);
        }
        lab.cli(&args)?;
    }
    let client_ns = format!("/run/netns/{c}");
    lab.cli(&["attach", NETWORK, "--netns", &client_ns, "--name", "client"])?;

    // The reference: dnsmasq in the client's namespace, the same local names from a hosts file
    // (same TTL), forwarding the rest to its own upstream with a cache.
    let local_hosts = dir.join("local.hosts");
    let mut hosts = String::new();
    for (name, addr, aliases) in &names.endpoints {
        hosts.push_str(&format!("{addr} {name} {name}.{NETWORK}"));
        for a in aliases {
            hosts.push_str(&format!(" {a}"));
        }
        hosts.push('\n');
    }
    write_file(&local_hosts, &hosts)?;
    lab.start_dnsmasq(
        tools,
        "reference",
        &c,
        DNSMASQ_ADDR,
        53,
        &[
            format!("--addn-hosts={}", local_hosts.display()),
            format!("--local-ttl={LOCAL_TTL}"),
            format!("--server=127.0.0.1#{UPSTREAM_PORT}"),
            "--cache-size=10000".to_string(),
        ],
    )?;

    // Both answer every name right; the forwarded ones are now in both caches.
    for server in [NETYARD_ADDR, DNSMASQ_ADDR] {
        check_answers(tools, &c, server, &names.local)?;
        check_answers(tools, &c, server, &names.forwarded)?;
    }
    Ok(())
}

fn run_bench(opts: &Opts) -> i32 {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("dns bench: must run as root (it creates network namespaces)");
        return 1;
    }
    install_signal_handlers();
    clean_stale();
    let mut missing = Vec::new();
    let mut find = |prog: &str, package: &str| {
        which(prog).unwrap_or_else(|| {
            missing.push(format!("{prog} (apt-get install {package})"));
            PathBuf::new()
        })
    };
    let (dnsmasq, dnsperf_bin, dig) = (
        find("dnsmasq", "dnsmasq-base"),
        find("dnsperf", "dnsperf"),
        find("dig", "dnsutils"),
    );
    let _ = find("ip", "iproute2");
    if !missing.is_empty() {
        eprintln!("# error: missing tools: {}", missing.join(", "));
        return 1;
    }
    let netyard = match locate_or_build_netyard() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("# error: {e}");
            return 1;
        }
    };
    let tools = Tools {
        netyard,
        dnsmasq,
        dnsperf: dnsperf_bin,
        dig,
    };
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("netyard-dnsbench-{pid}"));
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("# error: creating {}: {e}", dir.display());
        return 1;
    }
    let _tmp = TempDir(dir.clone());
    let names = names();
    let local_file = dir.join("local.queries");
    let fwd_file = dir.join("forwarded.queries");
    if let Err(e) =
        query_file(&local_file, &names.local).and_then(|()| query_file(&fwd_file, &names.forwarded))
    {
        eprintln!("# error: {e}");
        return 1;
    }

    let dnsperf_version = tool_version(&tools.dnsperf, "-h");
    let dnsmasq_version = tool_version(&tools.dnsmasq, "--version");
    println!(
        "# dns bench: {} local names, {} forwarded names (cached); dnsperf ({dnsperf_version}) \
         in one client namespace, 1 socket, 100 queries in flight, {} s per rate test; latency \
         at {} queries/s for {} s; reference: {dnsmasq_version}",
        names.local.len(),
        names.forwarded.len(),
        opts.seconds,
        opts.rate,
        opts.latency_seconds
    );

    let mut errors: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // (server, names) -> metric values in METRICS order.
    let mut results: Vec<(&str, &str, Vec<f64>)> = Vec::new();
    let mut raw: Vec<Value> = Vec::new();
    {
        let mut lab = match Lab::new(pid, &dir, &tools.netyard) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("# error: setting up: {e}");
                return 1;
            }
        };
        if let Err(e) = setup(&mut lab, &tools, &names) {
            eprintln!("# error: setting up: {e}");
            return if interrupted() { 130 } else { 1 };
        }
        let client = lab.c.clone();
        'cases: for (set, file) in [("local", &local_file), ("cached", &fwd_file)] {
            // Interleaved, so a slow drift of the machine's load affects both alike.
            for (server_name, addr) in [("netyard", NETYARD_ADDR), ("dnsmasq", DNSMASQ_ADDR)] {
                if interrupted() {
                    break 'cases;
                }
                let label = format!("{server_name}-{set}");
                let rate = rate_run(&tools, &client, addr, file, opts.seconds);
                let lat = latency_run(&tools, &client, addr, file, opts.latency_seconds, opts.rate);
                match (rate, lat) {
                    (Ok(r), Ok(l)) => {
                        if r.lost > 0 || l.lost > 0 || l.not_noerror > 0 {
                            notes.push(format!(
                                "{label}: {} lost at full rate, {} lost and {} not NOERROR at \
                                 {} q/s (codes: {})",
                                r.lost, l.lost, l.not_noerror, opts.rate, r.codes
                            ));
                        }
                        raw.push(json!({
                            "scenario": label, "sent": r.sent, "completed": r.completed,
                            "lost": r.lost, "response_codes": r.codes,
                            "latency_answers": l.answered, "latency_lost": l.lost,
                        }));
                        results.push((server_name, set, vec![r.qps, r.avg_us, l.p50_us, l.p99_us]));
                    }
                    (Err(e), _) | (_, Err(e)) => errors.push(format!("{label}: {e}")),
                }
            }
        }
        if lab
            .daemon
            .as_mut()
            .is_some_and(|d| matches!(d.try_wait(), Ok(Some(_))))
        {
            errors.push(format!(
                "the daemon exited during the run; its log ends: {}",
                last_lines(&lab.daemon_log(), 3)
            ));
        }
    }

    // Report: every figure, netyard's also as a ratio to dnsmasq's for the same names.
    let mut json_results = Vec::new();
    for (server, set, values) in &results {
        let reference = results
            .iter()
            .find(|(s, n, _)| *s == "dnsmasq" && n == set)
            .map(|(_, _, v)| v);
        for (i, m) in METRICS.iter().enumerate() {
            let v = values[i];
            let ratio = reference.map(|r| v / r[i]).filter(|r| r.is_finite());
            let tail = match (server, ratio) {
                (&"dnsmasq", _) => String::new(),
                (_, Some(r)) => format!("  ({r:.2}x dnsmasq)"),
                _ => String::new(),
            };
            let line = format!(
                "{:<16} {:<18} {:>10.*} {:<9}{tail}",
                format!("{server}-{set}"),
                m.name,
                m.decimals,
                v,
                m.unit
            );
            println!("{}", line.trim_end());
            json_results.push(json!({
                "scenario": format!("{server}-{set}"), "server": server, "names": set,
                "metric": m.name, "value": v, "unit": m.unit,
                "ratio": if *server == "dnsmasq" { Some(1.0) } else { ratio },
                "lower_is_better": m.lower_is_better,
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
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let doc = json!({
            "results": json_results,
            "runs": raw,
            "notes": notes,
            "errors": errors,
            "kernel": kernel,
            "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "dnsperf": dnsperf_version,
            "dnsmasq": dnsmasq_version,
            "options": {
                "seconds": opts.seconds, "latency_seconds": opts.latency_seconds,
                "rate": opts.rate, "local_names": names.local.len(),
                "forwarded_names": names.forwarded.len(),
            },
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = fs::write(path, text + "\n") {
            eprintln!("# error: writing {}: {e}", path.display());
            return 1;
        }
    }
    if interrupted() {
        130
    } else if errors.is_empty() {
        0
    } else {
        1
    }
}
