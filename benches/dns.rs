//! The DNS benchmark: netyard's embedded resolver against dnsmasq, both answering the same names
//! to the same load generator (dnsperf) in one client namespace, in one run.
//!
//! Run as root: `cargo bench --bench dns -- [--json FILE] [--seconds N] [--latency-seconds N]
//! [--rate QPS] [--runs N] [--names local,cached] [--no-latency]`. benches/README.md describes what is
//! measured and how. This is a measurement, never a test: nothing here asserts on a figure.

#[path = "common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{
    clean_stale, cpu_seconds, exit_status, install_signal_handlers, interrupted, kernel_release,
    last_lines, locate_or_build_netyard, median, nsexec, parse_args, percentile, run_child, which,
    write_json, BaseOpts, Daemon, MetricDef, Namespaces, Servers, TempDir,
};

/// Prefix of every namespace this bench makes: `nybdns-<pid>-<role>`.
const NS_PREFIX: &str = "nybdns-";
/// Where netyard answers in every attached namespace.
const NETYARD_ADDR: &str = "127.0.0.11";
/// Where the reference dnsmasq answers, in the same client namespace.
const DNSMASQ_ADDR: &str = "127.0.0.12";
/// TTL of local answers on both servers (netyard's default).
const LOCAL_TTL: u32 = 60;
/// The upstream dnsmasq of the forwarded names, on loopback (one in the daemon's namespace for
/// netyard, one in the client's namespace for the reference dnsmasq).
const UPSTREAM_PORT: u16 = 5300;
const NETWORK: &str = "bench";
/// The network's /24 (.1 is the gateway, the client and endpoints follow).
const SUBNET: &str = "10.252.77";
const ENDPOINTS: usize = 4;
const ALIASES_PER_ENDPOINT: usize = 24;
const FORWARDED_NAMES: usize = 100;

// ---------------------------------------------------------------------------------------------
// Options.

struct Opts {
    /// `--seconds`: the length of each saturating (queries per second) run.
    base: BaseOpts,
    /// Length of each fixed-rate latency run.
    latency_seconds: u64,
    /// Queries per second of the latency runs.
    rate: u64,
    /// `--runs`: every test repeated this often (servers in turn, the order swapped each run);
    /// each figure is the median, the ratios of every run are printed as the spread.
    runs: usize,
    /// `--names`: which name sets to measure (`local`, `cached`).
    sets: Vec<&'static str>,
    /// False with `--no-latency`: the saturating runs only.
    latency: bool,
}

const USAGE: &str = "usage: cargo bench --bench dns -- [--json FILE] [--seconds N] \
[--latency-seconds N] [--rate QPS] [--runs N] [--names local,cached] [--no-latency]";

const SETS: [&str; 2] = ["local", "cached"];

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let (mut latency_seconds, mut rate, mut runs) = (3, 2000, 1);
    let mut sets = SETS.to_vec();
    let mut latency = true;
    let base = parse_args(args, |flag, it| {
        match flag {
            "--latency-seconds" => latency_seconds = it.positive(flag)?,
            "--rate" => rate = it.positive(flag)?,
            "--runs" => runs = it.positive(flag)?,
            "--no-latency" => latency = false,
            "--names" => {
                let v = it.value(flag)?;
                sets = Vec::new();
                for name in v.split(',') {
                    let set = SETS.iter().find(|s| **s == name).ok_or_else(|| {
                        format!("--names: {name:?} is not one of {}", SETS.join(", "))
                    })?;
                    sets.push(*set);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Opts {
        base,
        latency_seconds,
        rate,
        runs,
        sets,
        latency,
    })
}

fn main() {
    common::bench_main("dns", USAGE, |_| None, parse_opts, run_bench);
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
    netyard: PathBuf,
    /// The daemon's namespace.
    h: String,
    /// The client's namespace: dnsperf, netyard's resolver sockets, the reference dnsmasq.
    c: String,
    namespaces: Namespaces,
    daemon: Option<Daemon>,
    servers: Servers,
    /// The reference dnsmasq among `servers`.
    reference: Option<usize>,
}

impl Lab {
    fn new(pid: u32, dir: &Path, netyard: &Path) -> Result<Lab, String> {
        let mut lab = Lab {
            dir: dir.to_path_buf(),
            netyard: netyard.to_path_buf(),
            h: format!("{NS_PREFIX}{pid}-h"),
            c: format!("{NS_PREFIX}{pid}-c"),
            namespaces: Namespaces::default(),
            daemon: None,
            servers: Servers::new(dir),
            reference: None,
        };
        let mut all = vec![lab.h.clone(), lab.c.clone()];
        all.extend((0..ENDPOINTS).map(|i| format!("{NS_PREFIX}{pid}-e{i}")));
        for ns in all {
            lab.namespaces.add(&ns)?;
        }
        Ok(lab)
    }

    fn endpoint_ns(&self, i: usize) -> &str {
        &self.namespaces.names()[2 + i]
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        self.daemon.as_ref().ok_or("no daemon")?.cli(args)
    }

    fn start_daemon(&mut self) -> Result<(), String> {
        let upstream = format!("127.0.0.1:{UPSTREAM_PORT}");
        let daemon = Daemon::spawn(
            &self.netyard,
            &self.h,
            &self.dir.join("api.sock"),
            &self.dir.join("state"),
            &self.dir.join("daemon.log"),
            &["--dns-upstream", &upstream],
            // Warnings only: a log line per query would measure the logger.
            &[("NETYARD_LOG", "warn"), ("NO_COLOR", "1")],
            "the daemon",
        )?;
        let deadline = Instant::now() + Duration::from_secs(15);
        self.daemon.insert(daemon).wait_ready(deadline)
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
    ) -> Result<usize, String> {
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
        let log = format!("dnsmasq-{tag}.log");
        let log_path = self.servers.log_path(&log);
        let idx = self
            .servers
            .spawn(ns, None, &tools.dnsmasq, &argv, &log)
            .map_err(|e| format!("starting dnsmasq ({tag}): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let p = port.to_string();
        loop {
            let out = run_child(
                &mut nsexec(
                    ns,
                    None,
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
                return Ok(idx);
            }
            if let Some(c) = self.servers.child(idx) {
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

impl Lab {
    /// The pid whose CPU time a server's queries cost: the daemon (every thread, not only the
    /// resolver's) or the reference dnsmasq.
    fn server_pid(&self, server: &str) -> Option<u32> {
        match server {
            "netyard" => self.daemon.as_ref().map(|d| d.child.id()),
            _ => self.reference.and_then(|i| self.servers.pid(i)),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.stop_all();
        if let Some(mut d) = self.daemon.take() {
            if !d.stop(Duration::from_secs(10)) {
                eprintln!("dns bench: the daemon did not exit within 10 s of SIGTERM (killed)");
            }
        }
        self.namespaces.delete_all();
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
        &mut nsexec(ns, None, &tools.dig, &argv),
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
        &mut nsexec(ns, None, &tools.dnsperf, &argv),
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

const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "qps",
        unit: "queries/s",
        decimals: 0,
        lower_is_better: false,
    },
    MetricDef {
        name: "cpu_us_per_query",
        unit: "CPU us",
        decimals: 2,
        lower_is_better: true,
    },
    MetricDef {
        name: "avg_us_saturated",
        unit: "us",
        decimals: 0,
        lower_is_better: true,
    },
    MetricDef {
        name: "p50_us",
        unit: "us",
        decimals: 1,
        lower_is_better: true,
    },
    MetricDef {
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
    lab.reference = Some(lab.start_dnsmasq(
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
    )?);

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
    clean_stale(NS_PREFIX, "netyard-dnsbench-");
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
         at {} queries/s for {} s; {} run(s); reference: {dnsmasq_version}",
        names.local.len(),
        names.forwarded.len(),
        opts.base.seconds,
        opts.rate,
        opts.latency_seconds,
        opts.runs
    );

    let mut errors: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // (server, names, run) -> metric values in METRICS order (NaN where not measured).
    let mut results: Vec<(&str, &str, usize, Vec<f64>)> = Vec::new();
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
        let servers = [("netyard", NETYARD_ADDR), ("dnsmasq", DNSMASQ_ADDR)];
        'cases: for run in 0..opts.runs {
            for &set in &opts.sets {
                let file = if set == "local" {
                    &local_file
                } else {
                    &fwd_file
                };
                // Interleaved, so a slow drift of the machine's load affects both alike; who
                // goes first alternates from run to run.
                let mut order = servers;
                if run % 2 == 1 {
                    order.reverse();
                }
                for (server_name, addr) in order {
                    if interrupted() {
                        break 'cases;
                    }
                    let label = format!("{server_name}-{set}");
                    let pid = lab.server_pid(server_name);
                    let cpu0 = pid.and_then(cpu_seconds);
                    let rate = rate_run(&tools, &client, addr, file, opts.base.seconds);
                    let cpu1 = pid.and_then(cpu_seconds);
                    let lat = if opts.latency {
                        latency_run(&tools, &client, addr, file, opts.latency_seconds, opts.rate)
                            .map(Some)
                    } else {
                        Ok(None)
                    };
                    match (rate, lat) {
                        (Ok(r), Ok(l)) => {
                            let (l_lost, l_bad) =
                                l.as_ref().map_or((0, 0), |l| (l.lost, l.not_noerror));
                            if r.lost > 0 || l_lost > 0 || l_bad > 0 {
                                notes.push(format!(
                                    "{label} (run {}): {} lost at full rate, {l_lost} lost and \
                                     {l_bad} not NOERROR at {} q/s (codes: {})",
                                    run + 1,
                                    r.lost,
                                    opts.rate,
                                    r.codes
                                ));
                            }
                            // CPU time of the server per answered query over the saturating
                            // run (dnsperf counts completed queries itself).
                            let cpu_us = match (cpu0, cpu1) {
                                (Some(a), Some(b)) if r.completed > 0 => {
                                    (b - a) * 1e6 / r.completed as f64
                                }
                                _ => f64::NAN,
                            };
                            raw.push(json!({
                                "scenario": label, "run": run + 1, "sent": r.sent,
                                "completed": r.completed, "lost": r.lost,
                                "response_codes": r.codes,
                                "server_cpu_s": cpu1.zip(cpu0).map(|(b, a)| b - a),
                                "latency_answers": l.as_ref().map(|l| l.answered),
                                "latency_lost": l.as_ref().map(|l| l.lost),
                            }));
                            let (p50, p99) =
                                l.map_or((f64::NAN, f64::NAN), |l| (l.p50_us, l.p99_us));
                            results.push((
                                server_name,
                                set,
                                run,
                                vec![r.qps, cpu_us, r.avg_us, p50, p99],
                            ));
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            errors.push(format!("{label} (run {}): {e}", run + 1))
                        }
                    }
                }
            }
        }
        if let Some(d) = lab.daemon.as_mut() {
            if d.check_alive().is_err() {
                errors.push(format!(
                    "the daemon exited during the run; its log ends: {}",
                    d.log_tail(3)
                ));
            }
        }
    }

    // Report: every figure (the median over runs), netyard's also as a ratio to dnsmasq's for
    // the same names; with several runs, each run's ratio (its spread).
    let mut json_results = Vec::new();
    let mut targets = Vec::new();
    for &set in &opts.sets {
        for server in ["netyard", "dnsmasq"] {
            for (i, m) in METRICS.iter().enumerate() {
                let per_run = |who: &str| -> Vec<(usize, f64)> {
                    results
                        .iter()
                        .filter(|(s, n, _, v)| *s == who && *n == set && v[i].is_finite())
                        .map(|(_, _, run, v)| (*run, v[i]))
                        .collect()
                };
                let mine = per_run(server);
                if mine.is_empty() {
                    continue;
                }
                let median_of = |xs: &[(usize, f64)]| {
                    let mut v: Vec<f64> = xs.iter().map(|x| x.1).collect();
                    v.sort_by(f64::total_cmp);
                    median(&v)
                };
                let value = median_of(&mine);
                let reference = per_run("dnsmasq");
                let ratio = (!reference.is_empty())
                    .then(|| value / median_of(&reference))
                    .filter(|r| r.is_finite());
                // The same run's ratio, run by run.
                let run_ratios: Vec<f64> = mine
                    .iter()
                    .filter_map(|(run, v)| {
                        reference.iter().find(|(r, _)| r == run).map(|(_, d)| v / d)
                    })
                    .filter(|r| r.is_finite())
                    .collect();
                let tail = match (server, ratio) {
                    ("dnsmasq", _) | (_, None) => String::new(),
                    (_, Some(r)) if run_ratios.len() > 1 => {
                        let each: Vec<String> =
                            run_ratios.iter().map(|r| format!("{r:.2}")).collect();
                        format!("  ({r:.2}x dnsmasq; runs {})", each.join(" "))
                    }
                    (_, Some(r)) => format!("  ({r:.2}x dnsmasq)"),
                };
                let line = format!(
                    "{:<16} {:<18} {:>10.*} {:<9}{tail}",
                    format!("{server}-{set}"),
                    m.name,
                    m.decimals,
                    value,
                    m.unit
                );
                println!("{}", line.trim_end());
                if server == "netyard" && set == "local" {
                    if let Some(r) = ratio {
                        match m.name {
                            "qps" => targets.push(format!(
                                "local names qps {r:.2}x dnsmasq (target at least 1.2x: {})",
                                if r >= 1.2 { "met" } else { "NOT met" }
                            )),
                            "cpu_us_per_query" => targets.push(format!(
                                "local names CPU per query {r:.2}x dnsmasq's (target at most \
                                 1.0x: {})",
                                if r <= 1.0 { "met" } else { "NOT met" }
                            )),
                            _ => {}
                        }
                    }
                }
                json_results.push(json!({
                    "scenario": format!("{server}-{set}"), "server": server, "names": set,
                    "metric": m.name, "value": value, "unit": m.unit,
                    "ratio": if server == "dnsmasq" { Some(1.0) } else { ratio },
                    "run_ratios": run_ratios,
                    "samples": mine.iter().map(|x| x.1).collect::<Vec<f64>>(),
                    "lower_is_better": m.lower_is_better,
                }));
            }
        }
    }
    for t in &targets {
        println!("# target: {t}");
    }
    for n in &notes {
        println!("# note: {n}");
    }
    for e in &errors {
        println!("# error: {e}");
    }
    if let Some(path) = &opts.base.json {
        let doc = json!({
            "results": json_results,
            "runs": raw,
            "notes": notes,
            "errors": errors,
            "kernel": kernel_release(),
            "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "dnsperf": dnsperf_version,
            "dnsmasq": dnsmasq_version,
            "options": {
                "seconds": opts.base.seconds, "latency_seconds": opts.latency_seconds,
                "rate": opts.rate, "local_names": names.local.len(),
                "forwarded_names": names.forwarded.len(), "runs": opts.runs,
                "names": opts.sets, "latency": opts.latency,
            },
        });
        if let Err(e) = write_json(path, &doc) {
            eprintln!("# error: {e}");
            return 1;
        }
    }
    exit_status(!errors.is_empty())
}
