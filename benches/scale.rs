//! The scale benchmark (issues 19 and 16): an `--ephemeral` daemon with N endpoints (500 by
//! default; issue 16 asks for 1,000) on one network. How long attaching them all takes and
//! detaching them all (issue 16: under 10 s each for 1,000), how long one detach takes as the
//! API sees it, the daemon's memory per endpoint, a ping from the first endpoint to the last,
//! how long `system reset` and a SIGTERM take to remove them all, and the daemon's resident
//! memory over rounds of attaching and detaching them all ("10 rounds end within 10% of the
//! first round's RSS"). `--svg FILE` draws every figure against its target.
//!
//! Run as root: `cargo bench --bench scale -- [--endpoints N] [--rounds R] [--kind tap,veth]
//! [--json FILE]`. benches/README.md describes what is measured and how. This is a
//! measurement, never a test: nothing here asserts on a figure (tests/scale.rs checks that
//! nothing is left).
//!
//! Every API call is the bench's own HTTP request on the daemon's socket, timed in-process from
//! the connect to the end of the answer: no CLI process in the figures.

#[path = "common/chart.rs"]
mod chart;
#[path = "common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{
    can_make_namespaces, finish, interrupted, kernel_release, locate_or_build_netyard, median,
    nsexec, parse_args, percentile, scratch_dir, BaseOpts, Namespaces,
};

/// Every namespace is `nys-<pid>-<kind>-{h,e0,e1,...}`.
const NS_PREFIX: &str = "nys-";
const TMP_PREFIX: &str = "netyard-scalebench-";
const NETWORK: &str = "bench";
/// A /16, so that any `--endpoints` fits.
const SUBNET: &str = "10.246.0.0/16";
const MAX_ENDPOINTS: usize = 5000;
/// The issue's targets.
const TEARDOWN_TARGET_MS: f64 = 2000.0;
const DETACH_TARGET_MS: f64 = 10.0;
const RSS_TARGET_RATIO: f64 = 1.10;
/// Issue 16's: attaching 1,000 in under 10 s, and detaching them; scaled to N.
const ALL_TARGET_MS_PER_1000: f64 = 10_000.0;
/// Time given to the allocator to hand freed memory back, and to the background teardowns to
/// end, before the RSS after a round's detaches is read.
const SETTLE: Duration = Duration::from_secs(2);

use common::EndpointKind as Kind;

struct Opts {
    base: BaseOpts,
    endpoints: usize,
    rounds: usize,
    kinds: Vec<Kind>,
    svg: Option<PathBuf>,
    /// Also measure the live egress flows one daemon holds within its open-file limit.
    flows: bool,
    /// Also send frames from this many source MACs through a kernel VTEP (0: not).
    macs: usize,
    /// IPv6 off in every endpoint namespace before attaching (what Docker does on an
    /// IPv4-only network), to tell the cost of each new interface's IPv6 multicast.
    no_ipv6: bool,
    /// A dual-stack network (`--ipv6`): every endpoint gets IPv6, and with it the multicast
    /// the switch's MLD snooping must keep from costing O(N) per attach.
    ipv6: bool,
}

const USAGE: &str = "usage: cargo bench --bench scale -- [--endpoints N (500)] [--rounds R (10)] \
[--kind tap|veth|tap,veth (tap)] [--flows] [--macs N] [--no-ipv6] [--ipv6] [--json FILE] [--svg FILE]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let (mut endpoints, mut rounds) = (500usize, 10usize);
    let mut kinds = vec![Kind::Tap];
    let mut svg = None;
    let mut flows = false;
    let mut macs = 0usize;
    let mut no_ipv6 = false;
    let mut ipv6 = false;
    let base = parse_args(args, |flag, it| {
        match flag {
            "--endpoints" => endpoints = it.positive(flag)?,
            "--rounds" => rounds = it.positive(flag)?,
            "--kind" => kinds = Kind::parse_list(&it.value(flag)?)?,
            "--svg" => svg = Some(PathBuf::from(it.value(flag)?)),
            "--flows" => flows = true,
            "--macs" => macs = it.positive(flag)?,
            "--no-ipv6" => no_ipv6 = true,
            "--ipv6" => ipv6 = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !(2..=MAX_ENDPOINTS).contains(&endpoints) {
        return Err(format!("--endpoints takes 2 to {MAX_ENDPOINTS}"));
    }
    if ipv6 && no_ipv6 {
        return Err("--ipv6 and --no-ipv6 exclude each other".into());
    }
    Ok(Opts {
        base,
        endpoints,
        rounds,
        kinds,
        svg,
        flows,
        macs,
        no_ipv6,
        ipv6,
    })
}

fn main() {
    common::bench_main("scale", USAGE, |_| None, parse_opts, run_bench);
}

// ---------------------------------------------------------------------------------------------
// The API, spoken directly.

/// `METHOD path` with an optional JSON body on the API socket (HTTP/1.0: the answer ends with
/// the connection). Returns the status, the body and the time from connect to the answer's end.
fn api(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String, f64), String> {
    let t0 = Instant::now();
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connecting: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: netyard\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("reading: {e}"))?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string(), ms))
}

/// `api` that must answer 2xx; the time it took.
fn api_ok(sock: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<f64, String> {
    let (status, text, ms) = api(sock, method, path, body)?;
    if !(200..300).contains(&status) {
        return Err(format!("{method} {path}: HTTP {status}: {}", text.trim()));
    }
    Ok(ms)
}

/// The daemon's resident set (VmRSS), in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// One kind.

struct Setup {
    ns: Namespaces,
    host: String,
    endpoints: Vec<String>,
    daemon: Child,
    api: PathBuf,
    log: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        common::stop(&mut self.daemon, Duration::from_secs(20));
        self.ns.delete_all();
    }
}

fn setup(bin: &Path, dir: &Path, kind: Kind, n: usize, opts: &Opts) -> Result<Setup, String> {
    let no_ipv6 = opts.no_ipv6;
    let tag = format!("{NS_PREFIX}{}-{}", std::process::id(), kind.arg());
    let mut ns = Namespaces::default();
    let host = ns.add(&format!("{tag}-h"))?;
    let mut endpoints = Vec::with_capacity(n);
    for i in 0..n {
        if interrupted() {
            return Err("interrupted".into());
        }
        let e = ns.add(&format!("{tag}-e{i}"))?;
        if no_ipv6 {
            // Interfaces made or moved here later take the namespace's default.
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", &e, "sysctl", "-q", "-w"])
                .arg("net.ipv6.conf.default.disable_ipv6=1")
                .status()
                .is_ok_and(|st| st.success());
            if !ok {
                return Err(format!("could not turn IPv6 off in {e}"));
            }
        }
        endpoints.push(e);
    }
    let api = dir.join(format!("{}.sock", kind.arg()));
    let log = dir.join(format!("{}.log", kind.arg()));
    let logf = File::create(&log).map_err(|e| e.to_string())?;
    let log2 = logf.try_clone().map_err(|e| e.to_string())?;
    let apis = api.to_string_lossy().into_owned();
    let daemon = nsexec(&host, None, bin, &["--api", &apis, "daemon", "--ephemeral"])
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("starting the daemon: {e}"))?;
    let mut s = Setup {
        ns,
        host,
        endpoints,
        daemon,
        api,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while api_ok(&s.api, "GET", "/v1/networks", None).is_err() {
        if Instant::now() > deadline || s.daemon.try_wait().ok().flatten().is_some() {
            return Err(format!(
                "the daemon did not answer; its log ends: {}",
                common::last_lines(&fs::read_to_string(&s.log).unwrap_or_default(), 3)
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    api_ok(
        &s.api,
        "POST",
        "/v1/networks",
        Some(&json!({"name": NETWORK, "subnet": SUBNET, "ipv6": opts.ipv6})),
    )?;
    Ok(s)
}

/// Attaches every endpoint, one request after another as a runtime starting containers would;
/// the total in ms, the last endpoint's address and each request's time in ms (in order: whether
/// an attach costs more as the network grows).
fn attach_all(s: &Setup, kind: Kind) -> Result<(f64, String, Vec<f64>), String> {
    let t0 = Instant::now();
    let mut last_ip = String::new();
    let mut each = Vec::with_capacity(s.endpoints.len());
    for (i, ns) in s.endpoints.iter().enumerate() {
        if interrupted() {
            return Err("interrupted".into());
        }
        let req = json!({"name": format!("e{i}"), "netns": format!("/run/netns/{ns}"), "kind": kind.arg()});
        let path = format!("/v1/networks/{NETWORK}/endpoints");
        let (status, text, ms) = api(&s.api, "POST", &path, Some(&req))?;
        each.push(ms);
        if !(200..300).contains(&status) {
            return Err(format!("POST {path}: HTTP {status}: {}", text.trim()));
        }
        if i + 1 == s.endpoints.len() {
            last_ip = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["ip"].as_str().map(str::to_string))
                .unwrap_or_default();
        }
    }
    Ok((t0.elapsed().as_secs_f64() * 1000.0, last_ip, each))
}

/// Pings the last endpoint from the first (3 tries of 3 echoes, 1 s apart at most); whether one
/// came back.
fn ping_first_last(s: &Setup, last_ip: &str) -> bool {
    let Some(first) = s.endpoints.first() else {
        return false;
    };
    (0..3).any(|_| {
        std::process::Command::new("ip")
            .args([
                "netns", "exec", first, "ping", "-c", "3", "-i", "0.2", "-W", "1",
            ])
            .arg(last_ip)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    })
}

/// Detaches every endpoint one after another; each detach's time as the API answered it.
fn detach_all(s: &Setup) -> Result<Vec<f64>, String> {
    let mut v = Vec::with_capacity(s.endpoints.len());
    for i in 0..s.endpoints.len() {
        v.push(api_ok(
            &s.api,
            "DELETE",
            &format!("/v1/networks/{NETWORK}/endpoints/e{i}"),
            None,
        )?);
    }
    Ok(v)
}

/// Interfaces other than `lo` left in the endpoints' namespaces, and host ends in the host's.
fn leftovers(s: &Setup) -> usize {
    let count = |ns: &str| {
        std::process::Command::new("ip")
            .args(["-n", ns, "-o", "link", "show"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.contains(": lo:"))
                    .count()
            })
            .unwrap_or(0)
    };
    s.endpoints.iter().map(|ns| count(ns)).sum::<usize>() + count(&s.host)
}

struct KindResult {
    figures: Vec<(&'static str, f64, &'static str)>,
    rss: Vec<(f64, f64)>,
    notes: Vec<String>,
}

fn one_kind(bin: &Path, dir: &Path, kind: Kind, opts: &Opts) -> Result<KindResult, String> {
    let n = opts.endpoints;
    eprintln!("[{}] {n} namespaces and a daemon ...", kind.arg());
    let mut s = setup(bin, dir, kind, n, opts)?;
    let pid = s.daemon.id();
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let mut rss = Vec::new();
    let mut detaches = Vec::new();
    let mut attaches = Vec::new();
    let mut detach_totals = Vec::new();
    let start_rss = rss_mib(pid).unwrap_or(0.0);
    for round in 1..=opts.rounds {
        let (a, last_ip, each) = attach_all(&s, kind)?;
        if round == 1 {
            // The first and the last tenth's median: equal when an attach costs the same at N
            // as at 1 (it cost O(N) while IPv6 multicast was flooded).
            let tenth = (n / 10).max(1);
            let mut first: Vec<f64> = each.iter().take(tenth).copied().collect();
            let mut last: Vec<f64> = each.iter().rev().take(tenth).copied().collect();
            first.sort_by(f64::total_cmp);
            last.sort_by(f64::total_cmp);
            figures.push(("attach_first_tenth_median_ms", median(&first), "ms"));
            figures.push(("attach_last_tenth_median_ms", median(&last), "ms"));
        }
        attaches.push(a);
        let attached = rss_mib(pid).unwrap_or(0.0);
        if round == 1 {
            // Memory per endpoint: the first round's growth over the idle daemon.
            figures.push((
                "rss_per_endpoint_kib",
                (attached - start_rss) * 1024.0 / n as f64,
                "KiB",
            ));
            let ok = ping_first_last(&s, &last_ip);
            figures.push(("ping_first_to_last_ok", if ok { 1.0 } else { 0.0 }, "bool"));
            if !ok {
                notes.push(format!("e0 could not ping e{} ({last_ip})", n - 1));
            }
        }
        let t_detach = Instant::now();
        let d = detach_all(&s)?;
        detach_totals.push(t_detach.elapsed().as_secs_f64() * 1000.0);
        thread::sleep(SETTLE);
        let detached = rss_mib(pid).unwrap_or(0.0);
        let mut sorted = d.clone();
        sorted.sort_by(f64::total_cmp);
        eprintln!(
            "  round {round}: attach {:.0} ms ({:.1} ms each), detach median {:.2} ms p90 {:.2} ms, \
             RSS {attached:.1} MiB attached, {detached:.1} MiB after",
            a,
            a / n as f64,
            median(&sorted),
            percentile(&sorted, 90.0)
        );
        detaches.extend(d);
        rss.push((attached, detached));
    }
    detaches.sort_by(f64::total_cmp);
    attaches.sort_by(f64::total_cmp);
    detach_totals.sort_by(f64::total_cmp);
    figures.push(("detach_all_ms", median(&detach_totals), "ms"));
    figures.push(("attach_all_ms", median(&attaches), "ms"));
    figures.push(("attach_per_endpoint_ms", median(&attaches) / n as f64, "ms"));
    figures.push(("detach_median_ms", median(&detaches), "ms"));
    figures.push(("detach_p90_ms", percentile(&detaches, 90.0), "ms"));
    figures.push((
        "detach_max_ms",
        detaches.last().copied().unwrap_or(0.0),
        "ms",
    ));
    figures.push(("rss_start_mib", start_rss, "MiB"));
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        figures.push(("rss_attached_first_mib", first.0, "MiB"));
        figures.push(("rss_attached_last_mib", last.0, "MiB"));
        figures.push(("rss_detached_first_mib", first.1, "MiB"));
        figures.push(("rss_detached_last_mib", last.1, "MiB"));
        figures.push(("rss_attached_last_over_first", last.0 / first.0, "x"));
        figures.push(("rss_detached_last_over_first", last.1 / first.1, "x"));
    }

    // system reset of all of them.
    attach_all(&s, kind)?;
    let reset = api_ok(&s.api, "POST", "/v1/system/reset", None)?;
    figures.push(("reset_ms", reset, "ms"));
    let left = leftovers(&s);
    if left > 0 {
        notes.push(format!("{left} interface(s) left right after system reset"));
    }
    api_ok(
        &s.api,
        "POST",
        "/v1/networks",
        Some(&json!({"name": NETWORK, "subnet": SUBNET})),
    )?;

    // SIGTERM with all of them attached.
    attach_all(&s, kind)?;
    let t0 = Instant::now();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = t0 + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(st)) = s.daemon.try_wait() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(2));
    };
    let took = t0.elapsed().as_secs_f64() * 1000.0;
    match status {
        Some(st) if st.success() => figures.push(("sigterm_ms", took, "ms")),
        Some(st) => return Err(format!("the daemon exited with {st} on SIGTERM")),
        None => return Err("the daemon did not exit within 60 s of SIGTERM".into()),
    }
    let left = leftovers(&s);
    if left > 0 {
        notes.push(format!("{left} interface(s) left after the daemon exited"));
    }
    s.ns.delete_all();
    Ok(KindResult {
        figures,
        rss,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// Live egress flows within the daemon's open-file limit.

/// Python run in the container: one UDP datagram from each of `count` source ports (from
/// 1024 on) to `dst:9`, through a raw socket, so that the container itself holds no socket
/// per port; 200 at a time, 20 ms apart (faster, the TAP queue overflows while the daemon
/// opens a socket per new flow), and everything twice (a flow whose first datagram was lost
/// is opened by the second).
const FLOWS_PY: &str = r#"
import socket, struct, sys, time
dst, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
for _ in range(2):
    for i in range(count):
        sport = 1024 + i % 64000
        s.sendto(struct.pack('!HHHH', sport, 9, 12, 0) + b'flow', (dst, 0))
        if i % 200 == 199:
            time.sleep(0.02)
"#;

/// A daemon in `h` whose network's flow caps are the largest allowed, one container `c`, an
/// outside namespace `o` (198.19.0.2) behind a veth: the container sends from `count` source
/// ports to o; returns the daemon's open-file limit, the live flows and its open descriptors
/// once the table stops growing.
fn egress_flows(bin: &Path, dir: &Path, count: usize) -> Result<(u64, u64, u64), String> {
    let tag = format!("{NS_PREFIX}{}-fl", std::process::id());
    let mut ns = Namespaces::default();
    let h = ns.add(&format!("{tag}-h"))?;
    let o = ns.add(&format!("{tag}-o"))?;
    let c = ns.add(&format!("{tag}-c"))?;
    common::ip(&[
        "-n", &h, "link", "add", "out0", "type", "veth", "peer", "name", "out0", "netns", &o,
    ])?;
    common::ip_addr_up(&h, "out0", "198.19.0.1")?;
    common::ip_addr_up(&o, "out0", "198.19.0.2")?;
    let sock = dir.join("flows.sock");
    let log = dir.join("flows.log");
    let logf = File::create(&log).map_err(|e| e.to_string())?;
    let log2 = logf.try_clone().map_err(|e| e.to_string())?;
    let apis = sock.to_string_lossy().into_owned();
    let daemon = nsexec(&h, None, bin, &["--api", &apis, "daemon", "--ephemeral"])
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("starting the daemon: {e}"))?;
    let mut s = Setup {
        ns,
        host: h,
        endpoints: vec![c.clone()],
        daemon,
        api: sock,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while api_ok(&s.api, "GET", "/v1/networks", None).is_err() {
        if Instant::now() > deadline {
            return Err("the daemon did not answer".into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    api_ok(
        &s.api,
        "POST",
        "/v1/networks",
        Some(&json!({"name": "flows", "subnet": "10.245.0.0/24",
            "max_flows": 1_048_576, "max_flows_per_endpoint": 1_048_576})),
    )?;
    api_ok(
        &s.api,
        "POST",
        "/v1/networks/flows/endpoints",
        Some(&json!({"name": "c", "netns": format!("/run/netns/{c}"), "kind": "tap"})),
    )?;
    // A sink in o, so that nothing answers "port unreachable".
    let mut sink = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &o,
            "python3",
            "-c",
            "import socket,time\ns=socket.socket(2,2)\ns.bind(('0.0.0.0',9))\ntime.sleep(300)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the sink: {e}"))?;
    let pid = s.daemon.id();
    let limit = fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| x.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &c, "python3", "-c", FLOWS_PY, "198.19.0.2"])
        .arg(count.to_string())
        .output()
        .map_err(|e| format!("the sender: {e}"))?;
    if !out.status.success() {
        let _ = sink.kill();
        let _ = sink.wait();
        return Err(format!(
            "the sender failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // The table is full when two readings 1 s apart agree.
    let live = || -> u64 {
        api(&s.api, "GET", "/v1/flows", None)
            .ok()
            .and_then(|(_, b, _)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v[0]["flows"].as_array().map(|a| a.len() as u64))
            .unwrap_or(0)
    };
    let mut last = live();
    for _ in 0..20 {
        thread::sleep(Duration::from_secs(1));
        let now = live();
        if now == last {
            break;
        }
        last = now;
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let _ = sink.kill();
    let _ = sink.wait();
    s.endpoints.clear();
    Ok((limit, last, fds))
}

// ---------------------------------------------------------------------------------------------
// Many source MACs through a VXLAN tunnel port.

/// Python run behind the kernel VTEP: `count` frames (EtherType 0x88b5, local experimental),
/// each from its own source MAC, to `dst` (the container's MAC), in `batches` equal batches;
/// waits for a line on stdin before each batch and prints one when it is sent.
const MACS_PY: &str = r#"
import socket, struct, sys
dst, count, batches = bytes.fromhex(sys.argv[1].replace(':', '')), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
per = count // batches
for b in range(batches):
    sys.stdin.readline()
    for i in range(b * per, (b + 1) * per):
        src = b'\x02\x5a' + struct.pack('!I', i)
        s.send(dst + src + b'\x88\xb5' + b'\0' * 46)
    print('sent', flush=True)
"#;

/// The daemon's CPU time in ns, over all its threads (`schedstat`'s first field: ns on the
/// CPU; `stat`'s ticks are 10 ms, too coarse for a batch).
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|t| fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// A daemon in `h` with a VXLAN network (MAC cap `count + 1000` per port) and one container;
/// host `b` has the kernel's vxlan on a bridge with namespace `k` behind it. `k` sends frames
/// from `count` source MACs to the container in 10 batches; per batch, the daemon's CPU time
/// per frame it took (ns), the MACs in its table, and the frames the tunnel port took. Returns
/// those rows.
fn macs_through_vtep(
    bin: &Path,
    dir: &Path,
    count: usize,
) -> Result<Vec<(usize, f64, u64)>, String> {
    let tag = format!("{NS_PREFIX}{}-mac", std::process::id());
    let mut ns = Namespaces::default();
    let h = ns.add(&format!("{tag}-h"))?;
    let b = ns.add(&format!("{tag}-b"))?;
    let k = ns.add(&format!("{tag}-k"))?;
    let c = ns.add(&format!("{tag}-c"))?;
    common::ip(&[
        "-n", &h, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", &b,
    ])?;
    common::ip_addr_up(&h, "u0", "198.19.1.1")?;
    common::ip_addr_up(&b, "u0", "198.19.1.2")?;
    for args in [
        &[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "4242",
            "dstport",
            "4789",
            "local",
            "198.19.1.2",
            "remote",
            "198.19.1.1",
        ][..],
        &["link", "set", "vx0", "mtu", "1450"],
        &["link", "add", "br0", "type", "bridge"],
        &["link", "set", "vx0", "master", "br0"],
        &[
            "link", "add", "vb0", "type", "veth", "peer", "name", "eth0", "netns", &k,
        ],
        &["link", "set", "vb0", "mtu", "1450"],
        &["link", "set", "vb0", "master", "br0"],
        &["link", "set", "vx0", "up"],
        &["link", "set", "vb0", "up"],
        &["link", "set", "br0", "up"],
    ] {
        let mut a = vec!["-n", b.as_str()];
        a.extend_from_slice(args);
        common::ip(&a)?;
    }
    common::ip(&["-n", &k, "link", "set", "eth0", "mtu", "1450", "up"])?;
    let sock = dir.join("macs.sock");
    let log = dir.join("macs.log");
    let logf = File::create(&log).map_err(|e| e.to_string())?;
    let log2 = logf.try_clone().map_err(|e| e.to_string())?;
    let apis = sock.to_string_lossy().into_owned();
    let daemon = nsexec(&h, None, bin, &["--api", &apis, "daemon", "--ephemeral"])
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("starting the daemon: {e}"))?;
    let s = Setup {
        ns,
        host: h,
        endpoints: vec![],
        daemon,
        api: sock,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while api_ok(&s.api, "GET", "/v1/networks", None).is_err() {
        if Instant::now() > deadline {
            return Err("the daemon did not answer".into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    api_ok(
        &s.api,
        "POST",
        "/v1/networks",
        Some(&json!({"name": "macs", "subnet": "10.244.0.0/24",
            "max_macs_per_port": count + 1000,
            "vxlan": 4242, "vxlan_peers": ["198.19.1.2"]})),
    )?;
    let path = "/v1/networks/macs/endpoints";
    let (status, text, _) = api(
        &s.api,
        "POST",
        path,
        Some(&json!({"name": "c", "netns": format!("/run/netns/{c}"), "kind": "tap"})),
    )?;
    if !(200..300).contains(&status) {
        return Err(format!("POST {path}: HTTP {status}: {}", text.trim()));
    }
    let mac = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["mac"].as_str().map(str::to_string))
        .ok_or("no MAC in the attach answer")?;
    let batches = 10;
    let mut sender = std::process::Command::new("ip")
        .args(["netns", "exec", &k, "python3", "-c", MACS_PY, &mac])
        .arg(count.to_string())
        .arg(batches.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("the sender: {e}"))?;
    let pid = s.daemon.id();
    let fdb_len = || -> usize {
        api(&s.api, "GET", "/v1/networks/macs/fdb", None)
            .ok()
            .and_then(|(_, b, _)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    };
    // Frames the tunnel port took (the kernel drops what its socket buffer cannot hold).
    let vxlan_rx = || -> u64 {
        api(&s.api, "GET", "/v1/stats", None)
            .ok()
            .and_then(|(_, b, _)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|r| r["network"] == "macs" && r["endpoint"] == "(vxlan)")
                    .and_then(|r| r["counters"]["rx_packets"].as_u64())
            })
            .unwrap_or(0)
    };
    let mut rows = Vec::new();
    let (mut stdin, stdout) = (sender.stdin.take(), sender.stdout.take());
    let mut lines = stdout.map(|o| std::io::BufRead::lines(std::io::BufReader::new(o)));
    for _ in 0..batches {
        let rx0 = vxlan_rx();
        let before = cpu_ns(pid).unwrap_or(0);
        let go = stdin
            .as_mut()
            .map(|i| i.write_all(b"go\n").and_then(|_| i.flush()));
        if !matches!(go, Some(Ok(()))) {
            break;
        }
        if !matches!(lines.as_mut().and_then(Iterator::next), Some(Ok(_))) {
            break;
        }
        // Let the daemon drain what the kernel queued, then read its CPU time.
        thread::sleep(Duration::from_millis(500));
        let ns = cpu_ns(pid).unwrap_or(0).saturating_sub(before);
        let frames = vxlan_rx().saturating_sub(rx0).max(1);
        let per = ns as f64 / frames as f64;
        rows.push((fdb_len(), per, frames));
    }
    drop(stdin);
    let _ = sender.kill();
    let _ = sender.wait();
    Ok(rows)
}

/// The unit of figure `m`.
fn unit_of(figures: &[(&'static str, f64, &'static str)], m: &str) -> &'static str {
    figures.iter().find(|f| f.0 == m).map_or("", |f| f.2)
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
    let n = opts.endpoints;
    println!(
        "# scale bench: {n} endpoints on one network of an --ephemeral daemon; {} round(s) of \
         attach all + detach all, then system reset of {n}, then SIGTERM with {n}",
        opts.rounds
    );
    let mut results = Vec::new();
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut chart = Vec::new();
    for &kind in &opts.kinds {
        if interrupted() {
            break;
        }
        let scenario = format!("netyard-{}", kind.arg());
        match one_kind(&bin, &scratch.0, kind, opts) {
            Ok(r) => {
                for (i, (a, d)) in r.rss.iter().enumerate() {
                    println!(
                        "{scenario:<13} rss_round_{:<2}              {a:>8.1} MiB attached  {d:>8.1} MiB after detaching all",
                        i + 1
                    );
                }
                for (metric, value, unit) in &r.figures {
                    println!("{scenario:<13} {metric:<28} {value:>9.2} {unit}");
                    results.push(json!({"scenario": scenario, "metric": metric, "value": value, "unit": unit}));
                }
                let get = |m: &str| r.figures.iter().find(|f| f.0 == m).map(|f| f.1);
                let all_target = ALL_TARGET_MS_PER_1000 * n as f64 / 1000.0;
                for (m, target, what) in [
                    (
                        "attach_all_ms",
                        all_target,
                        "the issue's 10 s per 1,000 attaches",
                    ),
                    (
                        "detach_all_ms",
                        all_target,
                        "the issue's 10 s per 1,000 detaches",
                    ),
                    (
                        "sigterm_ms",
                        TEARDOWN_TARGET_MS,
                        "the issue's 2 s for a SIGTERM",
                    ),
                    (
                        "reset_ms",
                        TEARDOWN_TARGET_MS,
                        "the issue's 2 s for a reset",
                    ),
                    (
                        "detach_median_ms",
                        DETACH_TARGET_MS,
                        "the issue's 10 ms per detach",
                    ),
                    (
                        "rss_detached_last_over_first",
                        RSS_TARGET_RATIO,
                        "the issue's 1.10 (last round's RSS within 10% of the first's)",
                    ),
                    (
                        "rss_attached_last_over_first",
                        RSS_TARGET_RATIO,
                        "the issue's 1.10, with all N attached",
                    ),
                ] {
                    if let Some(v) = get(m) {
                        println!("{scenario:<13} {m:<28} {:>9.2}x {what}", v / target);
                        chart.push(chart::Bar {
                            label: format!("{scenario} {m}"),
                            value: v,
                            target,
                            unit: unit_of(&r.figures, m),
                        });
                    }
                }
                for note in r.notes {
                    println!("# {scenario}: {note}");
                    notes.push(format!("{scenario}: {note}"));
                }
                results.push(json!({"scenario": scenario, "metric": "rss_rounds_mib",
                    "attached": r.rss.iter().map(|x| x.0).collect::<Vec<_>>(),
                    "detached": r.rss.iter().map(|x| x.1).collect::<Vec<_>>()}));
            }
            Err(e) => {
                println!("# error: {scenario}: {e}");
                if !interrupted() {
                    errors.push(format!("{scenario}: {e}"));
                }
            }
        }
    }
    if let Some(path) = &opts.svg {
        let title =
            format!("netyard scale bench: {n} endpoints, figure / target (lower is better)");
        if let Err(e) = fs::write(path, chart::svg(&title, &chart)) {
            println!("# error: writing {}: {e}", path.display());
            errors.push(format!("writing {}: {e}", path.display()));
        }
    }
    if opts.flows && !interrupted() {
        let count = 40_000;
        match egress_flows(&bin, &scratch.0, count) {
            Ok((limit, flows, fds)) => {
                println!(
                    "netyard       egress_flows_live            {flows:>9} flows of {count} \
                     source ports sent, open-file limit {limit}, {fds} descriptors open"
                );
                results.push(
                    json!({"scenario": "netyard-egress", "metric": "egress_flows_live",
                    "value": flows, "sent": count, "nofile_limit": limit, "fds_open": fds}),
                );
            }
            Err(e) => {
                println!("# error: egress flows: {e}");
                errors.push(format!("egress flows: {e}"));
            }
        }
    }
    if opts.macs > 0 && !interrupted() {
        match macs_through_vtep(&bin, &scratch.0, opts.macs) {
            Ok(rows) => {
                for (macs, ns, frames) in &rows {
                    println!(
                        "netyard-vxlan mac_table_{macs:<8}           {ns:>9.0} ns daemon CPU per frame \
                         ({frames} of a batch of {} frames from new source MACs reached it)",
                        opts.macs / 10
                    );
                }
                results.push(json!({"scenario": "netyard-vxlan", "metric": "cpu_ns_per_frame_by_table_size",
                    "rows": rows.iter().map(|r| json!({"macs": r.0, "ns_per_frame": r.1, "frames": r.2})).collect::<Vec<_>>()}));
            }
            Err(e) => {
                println!("# error: MACs through a kernel VTEP: {e}");
                errors.push(format!("macs: {e}"));
            }
        }
    }
    let doc = json!({
        "bench": "scale",
        "kernel": kernel_release(),
        "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "options": {"endpoints": n, "rounds": opts.rounds,
                    "kinds": opts.kinds.iter().map(|k| k.arg()).collect::<Vec<_>>()},
        "results": results,
        "notes": notes,
        "errors": errors,
    });
    finish(opts.base.json.as_deref(), &doc, !errors.is_empty())
}
