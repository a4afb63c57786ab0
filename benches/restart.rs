//! The restart benchmark: how fast a `netyard daemon` that keeps its state (`--state-dir`) takes
//! back N attached containers after `kill -9` and after SIGTERM, and how soon they forward again
//! (issue 9: "the restore time with 100 endpoints is a benchmark figure"; "the new daemon
//! forwards again within about 1 s of its start").
//!
//! Run as root: `cargo bench --bench restart -- [--endpoints N] [--runs R] [--kind tap,veth]
//! [--timeout S] [--json FILE]`. benches/README.md describes what is measured and how. This is a
//! measurement, never a test: nothing here asserts on a figure.
//!
//! The probes are the bench's own UDP sockets, made inside the endpoints' namespaces by a thread
//! that entered the namespace (`setns`) just to create them: the bench times them in-process,
//! to the millisecond, against the instant it started the daemon.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use common::{
    can_make_namespaces, each_run, finish, interrupted, ip, kernel_release,
    locate_or_build_netyard, median_of, parse_args, print_summary, run_setup, scratch_dir,
    BaseOpts, Daemon, Namespaces,
};

/// Every namespace is `nyr-<pid>-<run><kind>-{h,e1,e2,...}`.
const NS_PREFIX: &str = "nyr-";
/// The run's scratch directory (state directories, API sockets, logs): `<TMP_PREFIX><pid>`.
const TMP_PREFIX: &str = "netyard-restartbench-";
const NETWORK: &str = "bench";
/// A /16, so that any `--endpoints` fits: endpoint i (from 0) is 10.247.(i / 200).(10 + i % 200).
const SUBNET: &str = "10.247.0.0/16";
const PROBE_PORT: u16 = 17001;
/// How often a probe goes out: the resolution of the forwarding figures.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// The target: "the new daemon forwards again within about 1 s of its start".
const TARGET_MS: f64 = 1000.0;
const MAX_ENDPOINTS: usize = 10_000;

fn endpoint_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 247, (i / 200) as u8, (10 + i % 200) as u8)
}

// ---------------------------------------------------------------------------------------------
// Options.

use common::EndpointKind as Kind;

/// The bench's scenario name for a kind of endpoint.
fn scenario(kind: Kind) -> &'static str {
    match kind {
        Kind::Tap => "netyard-tap",
        Kind::Veth => "netyard-veth",
    }
}

struct Opts {
    base: BaseOpts,
    endpoints: usize,
    runs: usize,
    kinds: Vec<Kind>,
    /// How long each restart may take to list and forward again.
    timeout: Duration,
}

const USAGE: &str = "usage: cargo bench --bench restart -- [--endpoints N (100)] [--runs R (3)] \
[--kind tap|veth|tap,veth (both)] [--timeout SECS (30)] [--json FILE]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let (mut endpoints, mut runs, mut timeout) = (100usize, 3usize, 30u64);
    let mut kinds = vec![Kind::Tap, Kind::Veth];
    let base = parse_args(args, |flag, it| {
        match flag {
            "--endpoints" => endpoints = it.positive(flag)?,
            "--runs" => runs = it.positive(flag)?,
            "--timeout" => timeout = it.positive(flag)?,
            "--kind" => kinds = Kind::parse_list(&it.value(flag)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !(2..=MAX_ENDPOINTS).contains(&endpoints) {
        return Err(format!("--endpoints takes 2 to {MAX_ENDPOINTS}"));
    }
    Ok(Opts {
        base,
        endpoints,
        runs,
        kinds,
        timeout: Duration::from_secs(timeout),
    })
}

fn main() {
    common::bench_main("restart", USAGE, |_| None, parse_opts, run_bench);
}

// ---------------------------------------------------------------------------------------------
// Sockets inside the endpoints' namespaces.

/// A non-blocking UDP socket on 0.0.0.0:`port` inside the namespace `ns`, made by a thread
/// that enters it (a socket stays in the namespace it was made in; the bench's own threads
/// never change theirs).
fn udp_in(ns: &str, port: u16) -> Result<UdpSocket, String> {
    let path = format!("/run/netns/{ns}");
    let made = thread::scope(|s| {
        s.spawn(|| -> Result<UdpSocket, String> {
            let f = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("entering {path}: {e}"))?;
            let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                .map_err(|e| format!("binding UDP port {port} in {ns}: {e}"))?;
            sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(sock)
        })
        .join()
    });
    made.unwrap_or_else(|_| Err(format!("the thread making a socket in {ns} panicked")))
}

/// Waits until one of `socks` is readable or `wait` passes; the readable ones' indexes.
fn readable(socks: &[&UdpSocket], wait: Duration) -> Vec<usize> {
    let mut fds: Vec<PollFd> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
    if poll(&mut fds, PollTimeout::from(ms.max(1))).unwrap_or(0) <= 0 {
        return Vec::new();
    }
    fds.iter()
        .enumerate()
        .filter(|(_, f)| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
        .map(|(i, _)| i)
        .collect()
}

/// UDP echo servers on PROBE_PORT in every endpoint but the first, served by one thread until
/// dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Echo {
    fn start(namespaces: &[String]) -> Result<Echo, String> {
        let socks = namespaces
            .iter()
            .map(|ns| udp_in(ns, PROBE_PORT))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let refs: Vec<&UdpSocket> = socks.iter().collect();
            let mut buf = [0u8; 256];
            while !flag.load(Ordering::Relaxed) {
                for i in readable(&refs, Duration::from_millis(100)) {
                    while let Ok((n, from)) = socks[i].recv_from(&mut buf) {
                        let _ = socks[i].send_to(&buf[..n], from);
                    }
                }
            }
        });
        Ok(Echo {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The prober: a socket in endpoint 1 that probes the echo servers of endpoints 2..N (their
/// neighbour entries pinned both ways, so no ARP is involved: it sees the daemon's forwarding
/// alone), and one in endpoint 2 that probes endpoint 3 with the kernel's own ARP (what a
/// container whose neighbour entries were flushed sees).
struct Probe {
    sock: UdpSocket,
    /// Endpoints 2..N: their addresses; the last one is endpoint N.
    targets: Vec<SocketAddrV4>,
    arp: Option<(UdpSocket, SocketAddrV4)>,
    /// Each call of `run` is a phase: replies to an earlier phase's probes are ignored.
    phase: u64,
}

/// When the probes of one `run` were first answered.
struct Answers {
    /// Endpoint N (from endpoint 1).
    last: Option<Instant>,
    /// Every endpoint 2..N: the latest of their first answers.
    all: Option<Instant>,
    /// Endpoints that never answered (numbered from 1).
    missing: Vec<usize>,
    /// Endpoint 3 from endpoint 2, through ARP (None also when there is no such pair).
    arp: Option<Instant>,
}

const ARP_TAG: u32 = u32::MAX;

impl Probe {
    fn new(namespaces: &[String]) -> Result<Probe, String> {
        let sock = udp_in(&namespaces[0], 0)?;
        let targets = (1..namespaces.len())
            .map(|i| SocketAddrV4::new(endpoint_ip(i), PROBE_PORT))
            .collect();
        let arp = if namespaces.len() >= 3 {
            Some((
                udp_in(&namespaces[1], 0)?,
                SocketAddrV4::new(endpoint_ip(2), PROBE_PORT),
            ))
        } else {
            None
        };
        Ok(Probe {
            sock,
            targets,
            arp,
            phase: 0,
        })
    }

    fn message(&self, tag: u32) -> [u8; 12] {
        let mut m = [0u8; 12];
        m[..8].copy_from_slice(&self.phase.to_le_bytes());
        m[8..].copy_from_slice(&tag.to_le_bytes());
        m
    }

    /// Probes every PROBE_EVERY until everything answered, `deadline`, `stop` or an
    /// interruption. Endpoint N alone until it answers (a probe to every endpoint while the
    /// daemon is down would load the restore it measures), then every endpoint not heard from.
    fn run(&mut self, deadline: Instant, stop: &AtomicBool) -> Answers {
        self.phase += 1;
        let n = self.targets.len();
        let mut first: Vec<Option<Instant>> = vec![None; n];
        let mut arp: Option<Instant> = None;
        let mut next = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            let done = first.iter().all(Option::is_some) && (arp.is_some() || self.arp.is_none());
            if done || Instant::now() >= deadline || stop.load(Ordering::Relaxed) || interrupted() {
                break;
            }
            if Instant::now() >= next {
                let pending: Vec<usize> = if first[n - 1].is_none() {
                    vec![n - 1]
                } else {
                    (0..n).filter(|&i| first[i].is_none()).collect()
                };
                for i in pending {
                    let _ = self.sock.send_to(&self.message(i as u32), self.targets[i]);
                }
                if let (Some((s, to)), None) = (&self.arp, arp) {
                    let _ = s.send_to(&self.message(ARP_TAG), to);
                }
                next += PROBE_EVERY;
                if next < Instant::now() {
                    next = Instant::now() + PROBE_EVERY;
                }
            }
            let mut socks = vec![&self.sock];
            if let Some((s, _)) = &self.arp {
                socks.push(s);
            }
            let ready = readable(&socks, next.saturating_duration_since(Instant::now()));
            for i in ready {
                while let Ok(len) = socks[i].recv(&mut buf) {
                    if len != 12 || buf[..8] != self.phase.to_le_bytes() {
                        continue;
                    }
                    let tag = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    let now = Instant::now();
                    if tag == ARP_TAG {
                        arp.get_or_insert(now);
                    } else if let Some(f) = first.get_mut(tag as usize) {
                        f.get_or_insert(now);
                    }
                }
            }
        }
        Answers {
            last: first[n - 1],
            all: first
                .iter()
                .copied()
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().max()),
            missing: (0..n)
                .filter(|&i| first[i].is_none())
                .map(|i| i + 2)
                .collect(),
            arp,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API, asked directly (the instant it answers is measured to the millisecond; the CLI is
// used for the setup and to check the result).

/// `GET path` on the daemon's API socket (HTTP/1.0: the answer ends with the connection); the
/// JSON body of a 200 answer.
fn api_get(api: &Path, path: &str, timeout: Duration) -> Result<Value, String> {
    let mut s = UnixStream::connect(api).map_err(|e| format!("connecting: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: netyard\r\n\r\n").as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("reading: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))
}

/// Polls `ask` until it returns Some, the daemon dies, `deadline` passes or an interruption.
fn wait_for<T>(
    d: &mut Daemon,
    what: &str,
    deadline: Instant,
    every: Duration,
    mut ask: impl FnMut(Duration) -> Result<Option<T>, String>,
) -> Result<T, String> {
    let mut last = String::from("no answer");
    loop {
        d.check_alive()?;
        if interrupted() {
            return Err("interrupted".into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{what}: not within the timeout ({last})"));
        }
        match ask(left) {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        thread::sleep(every);
    }
}

/// The endpoints of the bench's network in a `GET /v1/endpoints` (or `ps --json`) answer.
fn listed(v: &Value) -> usize {
    v.as_array()
        .map(|a| a.iter().filter(|e| e["network"] == NETWORK).count())
        .unwrap_or(0)
}

/// The daemon's `state restored ... ms=NNN` line (src/daemon.rs): (ms, endpoints, dropped).
fn restored_line(log: &Path) -> Option<(f64, u64, u64)> {
    let text = fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("state restored"))?;
    let field = |k: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    Some((
        field("ms=")?,
        field("endpoints=").unwrap_or(0.0) as u64,
        field("dropped=").unwrap_or(0.0) as u64,
    ))
}

// ---------------------------------------------------------------------------------------------
// The lab: a host namespace for the daemon and N container namespaces, torn down on drop.

struct Lab {
    dir: PathBuf,
    bin: PathBuf,
    kind: Kind,
    /// The daemon's namespace.
    h: String,
    /// The endpoints' namespaces, endpoint 1 first.
    eps: Vec<String>,
    namespaces: Namespaces,
    daemon: Option<Daemon>,
    /// Daemons started so far (for the logs' names).
    starts: usize,
}

impl Lab {
    fn new(
        pid: u32,
        run: usize,
        kind: Kind,
        dir: &Path,
        bin: &Path,
        n: usize,
    ) -> Result<Lab, String> {
        let base = format!("{NS_PREFIX}{pid}-{run}{}", kind.arg());
        let mut lab = Lab {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            kind,
            h: format!("{base}-h"),
            eps: (1..=n).map(|i| format!("{base}-e{i}")).collect(),
            namespaces: Namespaces::default(),
            daemon: None,
            starts: 0,
        };
        let all: Vec<String> = std::iter::once(lab.h.clone())
            .chain(lab.eps.iter().cloned())
            .collect();
        for ns in all {
            if interrupted() {
                return Err("interrupted".into());
            }
            lab.namespaces.add(&ns)?;
        }
        Ok(lab)
    }

    fn daemon(&self) -> Result<&Daemon, String> {
        self.daemon.as_ref().ok_or_else(|| "no daemon".to_string())
    }

    /// `netyard daemon --state-dir DIR/state` in H, output to `daemon-K-WHY.log`.
    fn spawn(&mut self, why: &str) -> Result<&mut Daemon, String> {
        self.starts += 1;
        let log = self.dir.join(format!("daemon-{}-{why}.log", self.starts));
        let d = Daemon::spawn(
            &self.bin,
            &self.h,
            &self.dir.join("api.sock"),
            &self.dir.join("state"),
            &log,
            &[],
            &[("NO_COLOR", "1")],
            "the daemon",
        )?;
        Ok(self.daemon.insert(d))
    }

    /// Attaches every endpoint, one `netyard attach` after the other; how long that took.
    fn attach_all(&self) -> Result<Duration, String> {
        let d = self.daemon()?;
        let t0 = Instant::now();
        for (i, ns) in self.eps.iter().enumerate() {
            if interrupted() {
                return Err("interrupted".into());
            }
            let (path, name, addr) = (
                format!("/run/netns/{ns}"),
                format!("e{}", i + 1),
                endpoint_ip(i).to_string(),
            );
            d.cli(&[
                "attach",
                NETWORK,
                "--netns",
                &path,
                "--name",
                &name,
                "--ip",
                &addr,
                "--kind",
                self.kind.arg(),
            ])?;
        }
        Ok(t0.elapsed())
    }

    /// Pins the neighbour entries between endpoint 1 and every other one (both ways), from
    /// the MACs `ps --json` gives.
    fn pin_neighbours(&self) -> Result<(), String> {
        let ps: Value = serde_json::from_str(&self.daemon()?.cli(&["ps", "--json"])?)
            .map_err(|e| format!("`netyard ps --json`: {e}"))?;
        let macs: HashMap<String, String> = ps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["mac"].as_str()?.into())))
            .collect();
        let mac = |i: usize| {
            macs.get(&format!("e{}", i + 1))
                .cloned()
                .ok_or_else(|| format!("`netyard ps --json` does not list e{}", i + 1))
        };
        let batch = self.dir.join("neighbours.batch");
        let mut lines = String::new();
        for i in 1..self.eps.len() {
            lines.push_str(&format!(
                "neigh replace {} lladdr {} dev eth0 nud permanent\n",
                endpoint_ip(i),
                mac(i)?
            ));
        }
        fs::write(&batch, lines).map_err(|e| format!("writing {}: {e}", batch.display()))?;
        let batch_s = batch.to_string_lossy().into_owned();
        run_setup(
            std::process::Command::new("ip").args(["-n", &self.eps[0], "-batch", &batch_s]),
            Duration::from_secs(60),
            || format!("`ip -n {} -batch {batch_s}`", self.eps[0]),
        )?;
        let (ip1, mac1) = (endpoint_ip(0).to_string(), mac(0)?);
        for ns in &self.eps[1..] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &ip1,
                "lladdr",
                &mac1,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            if !d.stop(Duration::from_secs(10)) {
                eprintln!("restart bench: the daemon did not exit within 10 s of SIGTERM (killed)");
            }
        }
        self.namespaces.delete_all();
    }
}

// ---------------------------------------------------------------------------------------------
// One restart.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

impl Stop {
    fn tag(self) -> &'static str {
        match self {
            Stop::Kill => "kill",
            Stop::Term => "term",
        }
    }

    /// The suffix of its figures' names.
    fn suffix(self) -> &'static str {
        match self {
            Stop::Kill => "",
            Stop::Term => "_graceful",
        }
    }
}

/// What one restart measured, in ms from the new daemon's start (`outage_ms`: from the signal
/// to the old one; `exit_ms`, `stop_ms_graceful`: from the signal until the old one exited).
#[derive(Default)]
struct Restart {
    figures: Vec<(&'static str, f64)>,
    notes: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Stops the daemon (`kill -9` or SIGTERM), starts it again on the same state directory and
/// measures when its API answers, when it lists every endpoint and when they forward again.
fn restart(
    lab: &mut Lab,
    probe: &mut Probe,
    how: Stop,
    timeout: Duration,
) -> Result<Restart, String> {
    let n = lab.eps.len();
    let mut r = Restart::default();
    let mut d = lab.daemon.take().ok_or("no daemon")?;
    let t_down = Instant::now();
    match how {
        Stop::Kill => {
            signal::kill(Pid::from_raw(d.child.id() as i32), Signal::SIGKILL)
                .map_err(|e| format!("kill -9 of the daemon: {e}"))?;
            let _ = d.child.wait();
            r.figures.push(("exit_ms", ms(t_down.elapsed())));
        }
        Stop::Term => {
            if !d.stop(Duration::from_secs(30)) {
                return Err("the daemon did not exit within 30 s of SIGTERM (killed)".into());
            }
            r.figures.push(("stop_ms_graceful", ms(t_down.elapsed())));
        }
    }
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let (api, all_listed, answers) = thread::scope(|s| {
        let prober = s.spawn(|| probe.run(deadline, &stop));
        let waited = (|| -> Result<(Instant, Instant), String> {
            let d = lab.spawn(how.tag())?;
            let api = d.api.clone();
            let ready = wait_for(d, "the API", deadline, Duration::from_millis(2), |left| {
                api_get(&api, "/v1/networks", left).map(|_| Some(Instant::now()))
            })?;
            let all = wait_for(
                d,
                "listing every endpoint",
                deadline,
                Duration::from_millis(5),
                |left| {
                    let v = api_get(&api, "/v1/endpoints", left)?;
                    let k = listed(&v);
                    if k >= n {
                        Ok(Some(Instant::now()))
                    } else {
                        Err(format!("{k} of {n} listed"))
                    }
                },
            )?;
            Ok((ready, all))
        })();
        if waited.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let answers = prober.join();
        waited.and_then(|(a, l)| {
            answers
                .map(|ans| (a, l, ans))
                .map_err(|_| "the probe thread panicked".to_string())
        })
    })?;
    let name = |m: &str| metric_name(&format!("{m}{}", how.suffix()));
    r.figures.push((name("api_ready_ms"), ms(api - t0)));
    let log = lab.daemon()?.log.clone();
    match restored_line(&log) {
        Some((restore_ms, eps, dropped)) => {
            r.figures.push((name("restore_ms"), restore_ms));
            if eps != n as u64 || dropped > 0 {
                r.notes.push(format!(
                    "after {}: the daemon restored {eps} endpoints of {n}, dropped {dropped}",
                    how.tag()
                ));
            }
        }
        None => r.notes.push(format!(
            "after {}: no `state restored ... ms=` line in {}",
            how.tag(),
            log.display()
        )),
    }
    r.figures.push((name("all_listed_ms"), ms(all_listed - t0)));
    match answers.last {
        Some(t) => {
            r.figures.push((name("forwarding_ms"), ms(t - t0)));
            r.figures.push((name("outage_ms"), ms(t - t_down)));
        }
        None => {
            return Err(format!(
                "after {}: endpoint 1 -> endpoint {n} did not forward within {} s",
                how.tag(),
                timeout.as_secs()
            ))
        }
    }
    match answers.all {
        Some(t) => r.figures.push((name("all_forwarding_ms"), ms(t - t0))),
        None => {
            return Err(format!(
                "after {}: {} endpoints did not answer endpoint 1 within {} s (e.g. {:?})",
                how.tag(),
                answers.missing.len(),
                timeout.as_secs(),
                &answers.missing[..answers.missing.len().min(5)]
            ))
        }
    }
    match (answers.arp, &probe.arp) {
        (Some(t), _) => {
            r.figures.push((name("forwarding_arp_ms"), ms(t - t0)));
            if let Some(pinned) = answers
                .last
                .filter(|&p| ms(t.saturating_duration_since(p)) > 500.0)
            {
                r.notes.push(format!(
                    "after {}: endpoint 2 -> endpoint 3 through ARP answered {:.0} ms after the \
                     pinned path (the container's first ARP request was lost while the daemon \
                     was down; the kernel retries after 1 s)",
                    how.tag(),
                    ms(t - pinned)
                ));
            }
        }
        (None, Some(_)) => r.notes.push(format!(
            "after {}: endpoint 2 -> endpoint 3 (through ARP) did not answer within {} s",
            how.tag(),
            timeout.as_secs()
        )),
        (None, None) => {}
    }
    // The CLI agrees.
    let ps: Value = serde_json::from_str(&lab.daemon()?.cli(&["ps", "--json"])?)
        .map_err(|e| format!("`netyard ps --json`: {e}"))?;
    if listed(&ps) != n {
        return Err(format!(
            "after {}: `netyard ps --json` lists {} endpoints of {n}",
            how.tag(),
            listed(&ps)
        ));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// One run of one kind: set up, attach all, kill -9 and restart, SIGTERM and restart.

struct Ctx<'a> {
    pid: u32,
    dir: &'a Path,
    bin: &'a Path,
    opts: &'a Opts,
}

fn one_run(ctx: &Ctx, kind: Kind, run: usize) -> Result<Restart, String> {
    let n = ctx.opts.endpoints;
    let dir = ctx.dir.join(format!("{run}{}", kind.arg()));
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut lab = Lab::new(ctx.pid, run, kind, &dir, ctx.bin, n)?;
    let d = lab.spawn("first")?;
    d.wait_ready(Instant::now() + Duration::from_secs(15))?;
    d.cli(&["network", "create", NETWORK, "--subnet", SUBNET])?;
    let attach = lab.attach_all()?;
    let mut out = Restart::default();
    out.figures.push(("attach_all_ms", ms(attach)));
    out.figures
        .push(("attach_per_endpoint_ms", ms(attach) / n as f64));
    lab.pin_neighbours()?;
    let _echo = Echo::start(&lab.eps[1..])?;
    let mut probe = Probe::new(&lab.eps)?;
    // Before any restart: every endpoint answers (and the ARP pair has resolved).
    let before = probe.run(
        Instant::now() + Duration::from_secs(15),
        &AtomicBool::new(false),
    );
    if before.all.is_none() || (before.arp.is_none() && probe.arp.is_some()) {
        return Err(format!(
            "no connectivity before the restart: endpoints {:?} do not answer endpoint 1{}",
            &before.missing[..before.missing.len().min(5)],
            if before.arp.is_none() && probe.arp.is_some() {
                "; endpoint 3 does not answer endpoint 2"
            } else {
                ""
            }
        ));
    }
    for how in [Stop::Kill, Stop::Term] {
        if interrupted() {
            return Err("interrupted".into());
        }
        let r = restart(&mut lab, &mut probe, how, ctx.opts.timeout)?;
        out.figures.extend(r.figures);
        out.notes.extend(r.notes);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The run and its report.

/// Every figure in the order it is reported, with its unit.
const METRICS: &[(&str, &str)] = &[
    ("attach_all_ms", "ms"),
    ("attach_per_endpoint_ms", "ms"),
    ("api_ready_ms", "ms"),
    ("restore_ms", "ms"),
    ("all_listed_ms", "ms"),
    ("forwarding_ms", "ms"),
    ("all_forwarding_ms", "ms"),
    ("forwarding_arp_ms", "ms"),
    ("outage_ms", "ms"),
    ("exit_ms", "ms"),
    ("stop_ms_graceful", "ms"),
    ("api_ready_ms_graceful", "ms"),
    ("restore_ms_graceful", "ms"),
    ("all_listed_ms_graceful", "ms"),
    ("forwarding_ms_graceful", "ms"),
    ("all_forwarding_ms_graceful", "ms"),
    ("forwarding_arp_ms_graceful", "ms"),
    ("outage_ms_graceful", "ms"),
];

/// The name in METRICS spelt `m` (every figure a restart records is listed there).
fn metric_name(m: &str) -> &'static str {
    METRICS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| *name == m)
        .unwrap_or("unknown")
}

/// Raises the soft limit on open files to the hard one: one echo socket per endpoint.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn run_bench(opts: &Opts) -> i32 {
    if !can_make_namespaces() {
        return 1;
    }
    let Some(scratch) = scratch_dir(NS_PREFIX, TMP_PREFIX) else {
        return 1;
    };
    let bin = match locate_or_build_netyard() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("# error: {e}");
            return 1;
        }
    };
    raise_nofile_limit();
    let n = opts.endpoints;
    println!(
        "# restart bench: {n} endpoints on one network ({SUBNET}), kind {}; {} run(s); each run: \
         attach all, kill -9 + start, SIGTERM + start on the same --state-dir; probes every {} ms",
        opts.kinds
            .iter()
            .map(|k| k.arg())
            .collect::<Vec<_>>()
            .join(","),
        opts.runs,
        PROBE_EVERY.as_millis()
    );
    let ctx = Ctx {
        pid: std::process::id(),
        dir: &scratch.0,
        bin: &bin,
        opts,
    };
    let mut samples: Vec<(Kind, &'static str, f64)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    each_run(
        opts.runs,
        &opts.kinds,
        |k| format!("{} with {n} endpoints", scenario(k)),
        |kind, run, t0| match one_run(&ctx, kind, run) {
            Ok(r) => {
                print_summary(scenario(kind), t0, &r.figures);
                common::keep_notes(scenario(kind), run, r.notes, &mut notes);
                samples.extend(r.figures.into_iter().map(|(m, v)| (kind, m, v)));
            }
            Err(e) => {
                eprintln!("  {}: {e}", scenario(kind));
                if !interrupted() {
                    errors.push(format!("{} run {run}: {e}", scenario(kind)));
                }
            }
        },
    );

    let mut results = Vec::new();
    for &kind in &opts.kinds {
        for &(metric, unit) in METRICS {
            let Some((med, v)) = median_of(&samples, &kind, metric) else {
                continue;
            };
            let runs: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
            println!(
                "{:<14} {metric:<28} {med:>9.1} {unit}  (runs: {})",
                scenario(kind),
                runs.join(" ")
            );
            results.push(json!({
                "scenario": scenario(kind), "kind": kind.arg(), "metric": metric,
                "value": med, "unit": unit, "lower_is_better": true, "samples": v,
            }));
        }
        for suffix in ["", "_graceful"] {
            if let Some((med, _)) = median_of(&samples, &kind, &format!("forwarding_ms{suffix}")) {
                println!(
                    "{:<14} {:<28} {:>9.2}x the issue's 1 s (\"the new daemon forwards again \
                     within about 1 s of its start\")",
                    scenario(kind),
                    format!("forwarding_ms{suffix} / 1 s"),
                    med / TARGET_MS
                );
            }
        }
    }
    for n in &notes {
        println!("# note: {n}");
    }
    for e in &errors {
        println!("# error: {e}");
    }
    let doc = json!({
        "results": results,
        "target_forwarding_ms": TARGET_MS,
        "notes": notes,
        "errors": errors,
        "kernel": kernel_release(),
        "cpus": thread::available_parallelism().map(|c| c.get()).unwrap_or(0),
        "options": {
            "endpoints": n, "runs": opts.runs,
            "kinds": opts.kinds.iter().map(|k| k.arg()).collect::<Vec<_>>(),
            "timeout_s": opts.timeout.as_secs(), "probe_every_ms": PROBE_EVERY.as_millis() as u64,
            "subnet": SUBNET,
        },
    });
    finish(opts.base.json.as_deref(), &doc, !errors.is_empty())
}
