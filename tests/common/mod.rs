//! Shared helpers of netyard's end-to-end tests.
//!
//! Every test builds its own world out of real network namespaces: a fresh "host" namespace in
//! which the daemon runs (`ip netns exec HOST netyard daemon --api DIR/api.sock`), and
//! container namespaces made with `ip netns add` and attached with `--netns /run/netns/NAME`.
//! Names carry a random suffix (`nyt` + 6 hex digits + a role tag, at most 15 characters) so
//! tests run in parallel, and subnets are random 10.200-250.x.0/24.
//!
//! Teardown leaves nothing behind even when a test fails: [`Lab`]'s `Drop` prints diagnostics
//! (daemon log, `ps`, `stats`) if the test is panicking, stops the daemon (SIGTERM, then SIGKILL
//! after a bound), deletes the namespaces and removes the temporary directory. Background
//! processes run in their own process group and [`Bg`] kills the whole group.
//!
//! The tests need root: creating namespaces, entering them and capturing on their interfaces
//! all need CAP_SYS_ADMIN / CAP_NET_ADMIN / CAP_NET_RAW. Without it they fail, saying so; they
//! never skip silently.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod outside6;
pub mod podman;
pub mod vtep;

/// The binary under test.
pub const NETYARD: &str = env!("CARGO_BIN_EXE_netyard");

/// How long one CLI call may take before the test gives up on it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails the test unless it runs as root, naming the privilege that is missing.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "netyard's end-to-end tests must run as root: they create network namespaces with \
             `ip netns add` (CAP_SYS_ADMIN), configure and capture on interfaces (CAP_NET_ADMIN, \
             CAP_NET_RAW); run them as root (e.g. `sudo -E cargo test --workspace --release`)"
        );
    }
}

/// A short random hex suffix for names: 6 hex digits.
pub fn suffix() -> String {
    format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// A random /24 in 10.200.0.0-10.250.255.0.
#[derive(Debug, Clone, Copy)]
pub struct Subnet {
    pub a: u8,
    pub b: u8,
}

impl Subnet {
    pub fn random() -> Subnet {
        Subnet {
            a: 200 + (rand::random::<u8>() % 51),
            b: rand::random::<u8>(),
        }
    }

    pub fn cidr(&self) -> String {
        format!("10.{}.{}.0/24", self.a, self.b)
    }

    pub fn ip(&self, host: u8) -> String {
        format!("10.{}.{}.{}", self.a, self.b, host)
    }

    /// `N` random subnets, no two alike.
    pub fn distinct<const N: usize>() -> [Subnet; N] {
        let mut out = [Subnet::random(); N];
        for i in 1..N {
            while out[..i].iter().any(|s| (s.a, s.b) == (out[i].a, out[i].b)) {
                out[i] = Subnet::random();
            }
        }
        out
    }

    /// A different random subnet.
    pub fn other(&self) -> Subnet {
        loop {
            let s = Subnet::random();
            if (s.a, s.b) != (self.a, self.b) {
                return s;
            }
        }
    }
}

/// Polls `f` every `every` until it returns true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Whether `gone` becomes true within 5 s: a detach answers once the state changed, and the
/// endpoint's device is removed right after (runtime/teardown.rs).
pub fn gone_soon(gone: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(5), Duration::from_millis(20), gone)
}

/// Is process `pid` alive: neither gone nor a zombie (an orphan's zombie stays until its new
/// parent reaps it, which a container's pid 1 may never do).
pub fn process_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
    matches!(state, Some(Some(c)) if c != 'Z' && c != 'X')
}

/// Runs `cmd` to completion with captured output, killing its process group after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let (status, timed_out) = wait_child(&mut child, timeout);
    let stdout = t_out.join().unwrap_or_default();
    let mut stderr = t_err.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[test harness: killed after {timeout:?}: {desc}]\n").as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits for `child` up to `timeout`; then SIGKILLs its process group. Returns (status, timed out).
fn wait_child(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return (s, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                kill_group(child.id(), nix::sys::signal::Signal::SIGKILL);
                let s = child.wait().expect("wait after kill");
                return (s, true);
            }
        }
    }
}

fn kill_group(pid: u32, sig: nix::sys::signal::Signal) {
    let pid = i32::try_from(pid).expect("pid fits i32");
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Runs a command given as argv, bounded by `timeout`.
pub fn cmd(argv: &[&str], timeout: Duration) -> Output {
    let (p, a) = argv.split_first().expect("non-empty argv");
    run_bounded(Command::new(p).args(a), timeout)
}

/// Runs a command that must succeed; returns its stdout.
pub fn cmd_ok(argv: &[&str]) -> String {
    let o = cmd(argv, CLI_TIMEOUT);
    if !o.status.success() {
        panic!("{argv:?} failed ({}):\n{}", o.status, show(&o));
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's exit status and output, for failure messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout).trim_end(),
        String::from_utf8_lossy(&o.stderr).trim_end()
    )
}

/// A ping run: how many went out and came back, and each reply's RTT in ms.
pub struct Pings {
    pub sent: u64,
    pub received: u64,
    pub rtts: Vec<f64>,
}

/// `ping -n -c COUNT -i INTERVAL -W 1 IP` from `ns`, parsed (a run that fails counts what it
/// printed: a lost ping is a figure here, not an error).
pub fn pings(ns: &str, ip: &str, count: u32, interval: &str) -> Pings {
    let c = count.to_string();
    let o = cmd(
        &[
            "ip", "netns", "exec", ns, "ping", "-n", "-c", &c, "-i", interval, "-W", "1", ip,
        ],
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let nums: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    Pings {
        sent: nums.first().copied().unwrap_or(0),
        received: nums.get(1).copied().unwrap_or(0),
        rtts: ping_rtts(&text),
    }
}

/// The RTTs (ms) of the replies in ping's output.
pub fn ping_rtts(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .collect()
}

/// The smallest value (infinity when empty): for an added delay, the figure a loaded machine
/// disturbs least, since load only ever adds to a round trip.
pub fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The median (the upper one of an even count; NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Turns IPv6 on in `ns` for every interface made from now on, and for `lo`, whatever the
/// host's defaults (a new namespace copies the initial one's when
/// `net.core.devconf_inherit_init_net` asks, and some CI hosts turn IPv6 off).
pub fn enable_ipv6(ns: &str) {
    let o = ns_sh(
        ns,
        "echo 0 > /proc/sys/net/ipv6/conf/default/disable_ipv6; \
         echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
         echo 0 > /proc/sys/net/ipv6/conf/lo/disable_ipv6",
        Duration::from_secs(10),
    );
    assert!(o.status.success(), "enabling IPv6 in {ns}: {}", show(&o));
}

/// `ping ARGS` from namespace `ns`: 3 probes, 0.2 s apart, 2 s for the last reply.
fn ping_in(ns: &str, args: &[&str]) -> Output {
    let mut argv = vec![
        "ip", "netns", "exec", ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2",
    ];
    argv.extend_from_slice(args);
    cmd(&argv, Duration::from_secs(30))
}

/// `ping -6` from `ns` to `ip` (3 probes).
pub fn ping6(ns: &str, ip: &str) -> Output {
    ping_in(ns, &["-6", ip])
}

/// `ping -6` must succeed, else the test fails with the lab's diagnostics.
pub fn assert_ping6(lab: &Lab, ns: &str, ip: &str) {
    let o = ping6(ns, ip);
    if !o.status.success() {
        lab.fail(&format!("ping -6 from {ns} to {ip} failed:\n{}", show(&o)));
    }
}

/// The global IPv6 addresses of `ifname` in `ns` (`ADDR/LEN` each), and whether any is still
/// tentative (duplicate address detection running).
pub fn global6(ns: &str, ifname: &str) -> (Vec<String>, bool) {
    let out = cmd_ok(&[
        "ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname, "scope", "global",
    ]);
    let addrs = out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet6")?;
            w.next().map(str::to_string)
        })
        .collect();
    (addrs, out.contains("tentative"))
}

/// Runs `script` with `sh -c` inside namespace `ns`.
pub fn ns_sh(ns: &str, script: &str, timeout: Duration) -> Output {
    run_bounded(
        Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]),
        timeout,
    )
}

/// A network namespace made with `ip netns add`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `nyt<id><tag>` (at most 15 characters) and brings `lo` up. IPv6 stays at the
    /// kernel's defaults: netyard itself turns it off on the interface of an endpoint of an
    /// IPv4-only network (so an idle endpoint sends nothing: no router solicitation or MLD
    /// report refreshes the switch's MAC table behind the ageing test's back).
    pub fn new(id: &str, tag: &str) -> Netns {
        require_root();
        let name = format!("nyt{id}{tag}");
        assert!(name.len() <= 15, "namespace name {name:?} longer than 15");
        let o = cmd(&["ip", "netns", "add", &name], CLI_TIMEOUT);
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("Operation not permitted") || err.contains("Permission denied") {
                panic!(
                    "`ip netns add {name}` was refused ({}): the tests need CAP_SYS_ADMIN (run \
                     them as root, outside a restricted container) to create network namespaces",
                    err.trim()
                );
            }
            panic!("`ip netns add {name}` failed: {}", show(&o));
        }
        let ns = Netns { name };
        cmd_ok(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let o = cmd(&["ip", "netns", "del", &self.name], Duration::from_secs(20));
        if !o.status.success() {
            eprintln!("cleanup: ip netns del {}: {}", self.name, show(&o));
        }
    }
}

/// A background process in its own process group; the whole group is killed on drop
/// (SIGTERM, then SIGKILL after 3 s). Its stdout and stderr go to `log`.
pub struct Bg {
    pub child: Child,
    pub log: PathBuf,
    done: Option<ExitStatus>,
}

impl Bg {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Bg {
        let f = File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let f2 = f.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Bg {
            child,
            log: log.to_path_buf(),
            done: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `sleep` holding a mount namespace of its own (`unshare --mount --propagation
    /// private`, run under `prefix`, e.g. `nsenter --net=PATH`), where `script` then runs
    /// (the tmpfs mounts over a runtime's machine-wide paths, RUNTIMES.md). Mounts made there
    /// are seen only by what enters it, and go with it. Fails the test naming `what`.
    pub fn mount_holder(lab: &Lab, prefix: &[&str], log: &Path, script: &str, what: &str) -> Bg {
        let unshare = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sleep",
            "3600",
        ];
        let argv: Vec<&str> = prefix.iter().chain(unshare.iter()).copied().collect();
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        let holder = Bg::spawn(&mut c, log);
        let pid = holder.pid().to_string();
        let mnt = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
        if !wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            let m = mnt(&pid);
            m.is_some() && m != mnt("self")
        }) {
            lab.fail("`unshare --mount sleep` did not enter a mount namespace of its own");
        }
        let o = cmd(
            &["nsenter", "-t", &pid, "-m", "sh", "-c", script],
            CLI_TIMEOUT,
        );
        if !o.status.success() {
            lab.fail(&format!("{what}:\n{}", show(&o)));
        }
        holder
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.done {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.done = Some(s);
                    return Some(s);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    pub fn running(&mut self) -> bool {
        self.wait(Duration::ZERO).is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` to the process group.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        kill_group(self.child.id(), sig);
    }

    /// SIGTERM, then SIGKILL if it is still there after `grace`.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if let Some(s) = self.done {
            return s;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if let Some(s) = self.wait(grace) {
            return s;
        }
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let s = self.child.wait().expect("wait after SIGKILL");
        self.done = Some(s);
        s
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
        // Stragglers of the group (a pipeline's other members) get SIGKILL too.
        kill_group(self.child.id(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Who runs the daemon and the CLI: root, or an unprivileged user (the rootless test).
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// XDG_RUNTIME_DIR for that user.
    pub runtime_dir: PathBuf,
}

impl RunAs {
    /// The `setpriv` prefix that drops to this user with no capabilities left.
    pub fn prefix(&self) -> Vec<String> {
        vec![
            "setpriv".into(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".into(),
            "--inh-caps=-all".into(),
            "--".into(),
        ]
    }
}

/// One test's world: a temporary directory, a "host" namespace with a netyard daemon in it
/// (once started), and the container namespaces the test made.
pub struct Lab {
    /// The random part of every name this lab makes.
    pub id: String,
    pub dir: PathBuf,
    pub api: PathBuf,
    pub host: Netns,
    pub run_as: Option<RunAs>,
    /// Start the daemon in this process's mount namespace (see
    /// [`Lab::start_daemon_in_mount_ns`]).
    daemon_mnt: Option<u32>,
    daemon: Option<Bg>,
    daemon_log: PathBuf,
    /// Container namespaces, deleted after the daemon stopped.
    namespaces: Mutex<Vec<Netns>>,
    /// Background helpers of the test (pings, captures), stopped before the daemon.
    pub bgs: Mutex<Vec<Bg>>,
    /// Set once [`Lab::fail`] printed the diagnostics, so `Drop` does not print them twice.
    failed: std::sync::atomic::AtomicBool,
}

impl Lab {
    /// `GET PATH` on the API socket (HTTP/1.0): the whole answer, status line and headers
    /// included.
    pub fn api_get_raw(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.api)
            .unwrap_or_else(|e| self.fail(&format!("connect {}: {e}", self.api.display())));
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        write!(s, "GET {path} HTTP/1.0\r\nHost: netyard\r\n\r\n")
            .unwrap_or_else(|e| self.fail(&format!("write request: {e}")));
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .unwrap_or_else(|e| self.fail(&format!("read answer: {e}")));
        answer
    }

    /// The body of `GET PATH` on the API socket.
    pub fn api_get(&self, path: &str) -> String {
        let answer = self.api_get_raw(path);
        answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_else(|| self.fail(&format!("not an HTTP answer: {answer:?}")))
    }

    /// A lab with its host namespace and temporary directory, but no daemon yet.
    pub fn bare() -> Lab {
        require_root();
        let id = suffix();
        let dir = std::env::temp_dir().join(format!("nyt-{id}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let host = Netns::new(&id, "h");
        Lab {
            api: dir.join("api.sock"),
            daemon_log: dir.join("daemon.log"),
            id,
            dir,
            host,
            run_as: None,
            daemon_mnt: None,
            daemon: None,
            namespaces: Mutex::new(Vec::new()),
            bgs: Mutex::new(Vec::new()),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A lab with a daemon running and answering on its API socket.
    pub fn new() -> Lab {
        let mut lab = Lab::bare();
        lab.start_daemon(&[]);
        lab
    }

    /// The daemon command line: `ip netns exec HOST [setpriv ...] netyard daemon --api API
    /// [--state-dir DIR/state] ARGS`. The lab's own state directory keeps parallel tests apart
    /// (the default one would be shared, and locked by the first daemon); a test that gives
    /// `--state-dir` or `--ephemeral` itself gets only what it gave.
    pub fn daemon_command(&self, args: &[&str]) -> Command {
        let mut c;
        if let Some(pid) = self.daemon_mnt {
            // nsenter opens the namespace files before it enters any, so the host namespace's
            // path is resolved in the machine's mount namespace.
            c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-m"])
                .arg(format!("--net={}", self.host.path()));
        } else {
            c = Command::new("ip");
            c.args(["netns", "exec", &self.host.name]);
        }
        if let Some(r) = &self.run_as {
            c.args(r.prefix());
            c.env("XDG_RUNTIME_DIR", &r.runtime_dir);
        }
        c.arg(NETYARD).arg("daemon").arg("--api").arg(&self.api);
        let own = args
            .iter()
            .any(|a| *a == "--ephemeral" || *a == "--state-dir" || a.starts_with("--state-dir="));
        if !own {
            c.arg("--state-dir").arg(self.dir.join("state"));
        }
        c.args(args);
        c.env("NETYARD_LOG", "info").env("NO_COLOR", "1");
        c
    }

    /// Starts the daemon in the host namespace and waits (up to 15 s) until its socket accepts.
    pub fn start_daemon(&mut self, args: &[&str]) {
        assert!(self.daemon.is_none(), "daemon already started");
        let mut c = self.daemon_command(args);
        self.daemon = Some(Bg::spawn(&mut c, &self.daemon_log));
        let api = self.api.clone();
        let mut exited = None;
        let ready = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
            if let Some(s) = self.daemon.as_mut().and_then(|d| d.wait(Duration::ZERO)) {
                exited = Some(s);
                return true;
            }
            std::os::unix::net::UnixStream::connect(&api).is_ok()
        });
        if let Some(s) = exited {
            panic!(
                "the daemon exited at start-up ({s}):\n{}",
                std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
            );
        }
        if !ready {
            self.fail(&format!(
                "the daemon's API socket {} did not accept connections within 15 s",
                self.api.display()
            ));
        }
    }

    /// Starts the daemon as [`Lab::start_daemon`] does, but in the mount namespace of process
    /// `pid` (`nsenter -t PID -m --net=HOST`): a runtime that keeps its namespaces' bind mounts
    /// in a private mount namespace (tests/common/podman.rs) and the daemon that opens them by
    /// path must share it, as they share the machine's in production.
    pub fn start_daemon_in_mount_ns(&mut self, pid: u32, args: &[&str]) {
        self.daemon_mnt = Some(pid);
        self.start_daemon(args);
    }

    /// Runs the daemon with `args` expecting it to exit on its own (a bad config); returns its
    /// exit status and everything it printed. Fails the test if it is still running after 20 s.
    pub fn daemon_expect_exit(&self, args: &[&str]) -> Output {
        let o = run_bounded(&mut self.daemon_command(args), Duration::from_secs(20));
        if o.status.code().is_none() {
            panic!(
                "the daemon did not exit by itself within 20 s:\n{}",
                show(&o)
            );
        }
        o
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon started").pid()
    }

    /// Is the daemon process still alive (not exited, not a zombie)?
    pub fn daemon_running(&self) -> bool {
        self.daemon.as_ref().is_some_and(|d| process_alive(d.pid()))
    }

    /// SIGTERM the daemon and wait (up to 30 s) for it to exit; SIGKILL and fail otherwise.
    pub fn stop_daemon(&mut self) -> ExitStatus {
        let mut d = self.daemon.take().expect("daemon started");
        d.signal(nix::sys::signal::Signal::SIGTERM);
        match d.wait(Duration::from_secs(30)) {
            Some(s) => s,
            None => {
                let log = d.log_text();
                d.stop(Duration::ZERO);
                panic!("the daemon did not exit within 30 s of SIGTERM; its log:\n{log}");
            }
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
    }

    /// Makes a container namespace `nyt<id><tag>` that lives as long as the lab.
    pub fn ns(&self, tag: &str) -> String {
        let ns = Netns::new(&self.id, tag);
        let name = ns.name.clone();
        self.namespaces.lock().unwrap().push(ns);
        name
    }

    /// Keeps a background process until the lab ends (killed before the daemon stops).
    pub fn keep(&self, bg: Bg) {
        self.bgs.lock().unwrap().push(bg);
    }

    /// A `netyard --api API ARGS` command (run as the lab's user, if it has one).
    pub fn ny_command(&self, args: &[&str]) -> Command {
        let mut c;
        if let Some(r) = &self.run_as {
            let p = r.prefix();
            c = Command::new(&p[0]);
            c.args(&p[1..]).arg(NETYARD);
            c.env("XDG_RUNTIME_DIR", &r.runtime_dir);
        } else {
            c = Command::new(NETYARD);
        }
        c.arg("--api").arg(&self.api).args(args);
        c
    }

    /// Runs a CLI command (bounded) and returns its output, whatever its status.
    pub fn ny(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.ny_command(args), CLI_TIMEOUT)
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ny_ok(&self, args: &[&str]) -> String {
        let o = self.ny(args);
        if !o.status.success() {
            self.fail(&format!(
                "`netyard {}` failed:\n{}",
                args.join(" "),
                show(&o)
            ));
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a CLI command that must succeed and print JSON.
    pub fn ny_json(&self, args: &[&str]) -> Value {
        let out = self.ny_ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            self.fail(&format!(
                "`netyard {}` printed no valid JSON ({e}):\n{out}",
                args.join(" ")
            ))
        })
    }

    /// `network create NAME --subnet CIDR ARGS`.
    pub fn network(&self, name: &str, subnet: &Subnet, args: &[&str]) -> String {
        let cidr = subnet.cidr();
        let mut a = vec!["network", "create", name, "--subnet", &cidr];
        a.extend_from_slice(args);
        self.ny_ok(&a);
        name.to_string()
    }

    /// `attach NET --netns /run/netns/NS --name NAME ARGS`; returns the endpoint as `ps --json`
    /// shows it, after checking that the interface inside the namespace carries that address
    /// and MAC and is up.
    pub fn attach(&self, net: &str, ns: &str, name: &str, args: &[&str]) -> Value {
        let path = format!("/run/netns/{ns}");
        let mut a = vec!["attach", net, "--netns", &path, "--name", name];
        a.extend_from_slice(args);
        self.ny_ok(&a);
        let ep = self.endpoint(net, name);
        let ifname = ep["ifname"].as_str().unwrap_or("eth0").to_string();
        self.check_interface(ns, &ifname, &ep);
        ep
    }

    /// Checks that `ifname` in `ns` is up and has the endpoint's MAC and address.
    pub fn check_interface(&self, ns: &str, ifname: &str, ep: &Value) {
        let link = link_json(ns, ifname)
            .unwrap_or_else(|| self.fail(&format!("no interface {ifname} in {ns} after attach")));
        let mac = link["address"].as_str().unwrap_or_default();
        let want_mac = ep["mac"].as_str().unwrap_or_default();
        if !mac.eq_ignore_ascii_case(want_mac) {
            self.fail(&format!(
                "{ns}/{ifname} has MAC {mac}, the daemon says {want_mac}: {link}"
            ));
        }
        let flags: Vec<&str> = link["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !flags.contains(&"UP") {
            self.fail(&format!("{ns}/{ifname} is not up after attach: {link}"));
        }
        let addrs = cmd_ok(&["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", ifname]);
        let want_ip = ep["ip"].as_str().unwrap_or_default();
        let want = format!(" {want_ip}/{}", ep["prefix_len"]);
        if !addrs.contains(&want) {
            self.fail(&format!(
                "{ns}/{ifname} lacks address{want} after attach; it has: {addrs}"
            ));
        }
    }

    /// The endpoint `name` of network `net` as `ps --json` shows it.
    pub fn endpoint(&self, net: &str, name: &str) -> Value {
        let ps = self.ny_json(&["ps", "--json"]);
        find_endpoint(&ps, net, name)
            .cloned()
            .unwrap_or_else(|| self.fail(&format!("endpoint {net}/{name} not in ps --json: {ps}")))
    }

    /// The counters of endpoint `name` on `net` from `stats --json`.
    pub fn counters(&self, net: &str, name: &str) -> Value {
        let st = self.ny_json(&["stats", "--json"]);
        st.as_array()
            .and_then(|a| {
                a.iter()
                    .find(|r| r["network"] == net && r["endpoint"] == name)
                    .map(|r| r["counters"].clone())
            })
            .unwrap_or_else(|| self.fail(&format!("no stats row for {net}/{name}: {st}")))
    }

    /// Pings `ip` from namespace `ns` (3 probes, 0.2 s apart); true if any reply came.
    pub fn ping(&self, ns: &str, ip: &str) -> bool {
        self.ping_output(ns, ip).status.success()
    }

    pub fn ping_output(&self, ns: &str, ip: &str) -> Output {
        ping_in(ns, &[ip])
    }

    /// Pings must succeed.
    pub fn assert_ping(&self, ns: &str, ip: &str) {
        let o = self.ping_output(ns, ip);
        if !o.status.success() {
            self.fail(&format!("ping from {ns} to {ip} failed:\n{}", show(&o)));
        }
    }

    /// Everything useful to see when a test fails: the daemon's log, `ps` and `stats`.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        s.push_str("----- daemon log -----\n");
        let log = self.daemon_log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(80);
        for l in &lines[start..] {
            s.push_str(l);
            s.push('\n');
        }
        if std::os::unix::net::UnixStream::connect(&self.api).is_ok() {
            for args in [
                &["ps", "--json"][..],
                &["stats"][..],
                &["network", "ls"][..],
            ] {
                let o = run_bounded(&mut self.ny_command(args), Duration::from_secs(10));
                s.push_str(&format!(
                    "----- netyard {} -----\n{}\n",
                    args.join(" "),
                    show(&o)
                ));
            }
        } else {
            s.push_str("----- the API socket does not accept connections -----\n");
        }
        s
    }

    /// Fails the test with `msg` and the diagnostics.
    pub fn fail(&self, msg: &str) -> ! {
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        panic!("{msg}\n{}", self.diagnostics());
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "===== diagnostics of lab {} =====\n{}",
                self.id,
                self.diagnostics()
            );
        }
        for mut bg in self
            .bgs
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
        {
            bg.stop(Duration::from_secs(3));
        }
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(15));
        }
        let nss = self
            .namespaces
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        drop(nss);
        let _ = std::fs::remove_dir_all(&self.dir);
        // `host` is dropped (deleted) after this.
    }
}

/// The endpoint `name` of `net` in a `ps --json` answer.
pub fn find_endpoint<'a>(ps: &'a Value, net: &str, name: &str) -> Option<&'a Value> {
    ps.as_array()?
        .iter()
        .find(|e| e["network"] == net && e["name"] == name)
}

/// `ip -j link show dev IFNAME` in `ns`, or None if there is no such interface.
pub fn link_json(ns: &str, ifname: &str) -> Option<Value> {
    let o = cmd(
        &["ip", "-n", ns, "-j", "link", "show", "dev", ifname],
        CLI_TIMEOUT,
    );
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v.as_array()?.first().cloned()
}

/// Every interface name in `ns`.
pub fn links(ns: &str) -> Vec<String> {
    let out = cmd_ok(&["ip", "-n", ns, "-j", "link", "show"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Is `name` a veth host end as netyard names them (`ny` + 8 hex digits)?
pub fn is_netyard_host_end(name: &str) -> bool {
    name.len() == 10 && name.starts_with("ny") && name[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The veth host ends netyard made that are in namespace `ns`.
pub fn netyard_host_ends(ns: &str) -> Vec<String> {
    links(ns)
        .into_iter()
        .filter(|l| is_netyard_host_end(l))
        .collect()
}

/// A numeric counter (0 if absent).
pub fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// A drop counter by reason name (0 if absent).
pub fn drops(counters: &Value, reason: &str) -> u64 {
    counters["drops"][reason].as_u64().unwrap_or(0)
}

/// The stderr of a failed CLI call must be one line naming the problem: checks it is a single
/// non-empty line containing every one of `needles` (case-insensitive).
pub fn assert_one_line_error(what: &str, o: &Output, needles: &[&str]) {
    assert!(
        !o.status.success(),
        "{what}: expected a non-zero exit, got {}",
        show(o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let err = err.trim_end();
    assert!(
        !err.is_empty(),
        "{what}: no message on stderr:\n{}",
        show(o)
    );
    assert!(
        !err.contains('\n'),
        "{what}: the message is more than one line:\n{err}"
    );
    let low = err.to_lowercase();
    for n in needles {
        assert!(
            low.contains(&n.to_lowercase()),
            "{what}: the message does not name {n:?}:\n{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Added for the DNS tests (tests/dns_e2e.rs); nothing above depends on these.

impl Lab {
    /// A lab whose daemon runs with extra arguments (`--dns-upstream 127.0.0.1:5301`,
    /// `--dns-ttl 42` ...); the same as [`Lab::new`] otherwise.
    pub fn with_daemon_args(args: &[&str]) -> Lab {
        let mut lab = Lab::bare();
        lab.start_daemon(args);
        lab
    }

    /// Runs a command given as argv inside namespace `ns` (`ip netns exec NS ARGV`), bounded.
    pub fn ns_cmd(&self, ns: &str, argv: &[&str], timeout: Duration) -> Output {
        ns_cmd(ns, argv, timeout)
    }

    /// Sets `net.ipv4.ping_group_range` ("LOW HIGH") in the host namespace: the groups that
    /// may open ICMP datagram sockets there (a new namespace's default "1 0" allows none).
    pub fn set_ping_group_range(&self, range: &str) {
        let kv = format!("net.ipv4.ping_group_range={range}");
        cmd_ok(&["ip", "netns", "exec", &self.host.name, "sysctl", "-qw", &kv]);
    }
}

/// `dig +short +time=2 +tries=3 ARGS` in `ns` must answer exactly `want`; else the test fails
/// naming the question and showing dig's output.
pub fn assert_dig(lab: &Lab, ns: &str, args: &[&str], want: &str) {
    let mut argv = vec!["dig", "+short", "+time=2", "+tries=3"];
    argv.extend_from_slice(args);
    let o = ns_cmd(ns, &argv, Duration::from_secs(30));
    let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if got != want {
        lab.fail(&format!(
            "dig {}: {got:?}, want {want}:\n{}",
            args.join(" "),
            show(&o)
        ));
    }
}

/// Runs a command given as argv inside namespace `ns` (`ip netns exec NS ARGV`), bounded by
/// `timeout`.
pub fn ns_cmd(ns: &str, argv: &[&str], timeout: Duration) -> Output {
    run_bounded(
        Command::new("ip").args(["netns", "exec", ns]).args(argv),
        timeout,
    )
}

/// Fails the test, naming the Debian package to install, unless `prog` is on PATH (or in
/// /usr/sbin, /sbin, where dnsmasq lives).
pub fn require_program(prog: &str, package: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(prog).is_file());
    if !found {
        panic!("this test needs `{prog}`: install it with `apt-get install {package}`");
    }
}

/// Starts `tcpdump -i IFACE -n -l ARGS` in namespace `ns` as a [`Bg`] whose log gets all it
/// prints (what it decodes on stdout, "listening on" on stderr), and waits (10 s at most) until
/// it listens, so traffic the caller sends next is captured. `args` holds further options and
/// the filter (`-w FILE -U -Z root`, `-c 4`, `icmp`). Fails naming the package when tcpdump is
/// missing, and with its log when it does not start.
pub fn tcpdump_bg(ns: &str, iface: &str, args: &[&str], log: &Path) -> Bg {
    tcpdump_bg_under(&["ip", "netns", "exec", ns], iface, args, log)
}

/// [`tcpdump_bg`] run under `prefix`, the command that enters the namespace (`netyard exec
/// NODE --` for a lab's node).
pub fn tcpdump_bg_under(prefix: &[&str], iface: &str, args: &[&str], log: &Path) -> Bg {
    require_program("tcpdump", "tcpdump");
    let (prog, enter) = prefix
        .split_first()
        .expect("a prefix entering the namespace");
    let mut c = Command::new(prog);
    c.args(enter)
        .args(["tcpdump", "-i", iface, "-n", "-l"])
        .args(args);
    let bg = Bg::spawn(&mut c, log);
    if !wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        bg.log_text().contains("listening on")
    }) {
        panic!(
            "tcpdump on {iface} ({prefix:?}) did not start:\n{}",
            bg.log_text()
        );
    }
    bg
}

/// A capture file as text (`tcpdump -r FILE -nn -e`); empty if it cannot be read yet.
pub fn read_pcap(file: &Path) -> String {
    let f = file.to_string_lossy();
    let o = cmd(&["tcpdump", "-r", &f, "-nn", "-e"], CLI_TIMEOUT);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Lab {
    /// Runs `netyard capture ARGS -c COUNT -w - | tcpdump -n -r -` in the background while
    /// `traffic` runs (again and again, until the capture ends, 30 s at most); returns what
    /// tcpdump printed.
    pub fn capture_through_tcpdump(&self, args: &[&str], count: u32, traffic: impl Fn()) -> String {
        require_program("tcpdump", "tcpdump");
        let out = self.dir.join(format!("cap-{}.txt", args.join("-")));
        let script = format!(
            "{} --api {} capture {} -c {count} -w - | tcpdump -n -r - > {} 2>&1",
            NETYARD,
            self.api.display(),
            args.join(" "),
            out.display()
        );
        let mut cap = Bg::spawn(
            Command::new("sh").args(["-c", &script]),
            &self.dir.join("capture.log"),
        );
        let ok = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            traffic();
            cap.wait(Duration::ZERO).is_some()
        });
        if !ok {
            self.fail(&format!(
                "capture {args:?} did not end after {count} frames: {}",
                cap.log_text()
            ));
        }
        std::fs::read_to_string(&out).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Added for the egress tests (tests/egress_e2e.rs); nothing above depends on these.

/// A namespace "outside" the daemon's host namespace, joined to it by a veth pair and holding
/// addresses of the benchmark range 198.18.0.0/15: the host side is `host_ip`
/// (198.18.X.1/24), the outside side `ip` (198.18.X.2/24). The connected /24 is the host
/// namespace's only route besides loopback, so egress tests can send nowhere else.
#[derive(Debug, Clone)]
pub struct Outside {
    pub ns: String,
    /// The outside namespace's address.
    pub ip: String,
    /// The host namespace's address on the link.
    pub host_ip: String,
    /// An address of the link's /24 that nobody holds (ARP for it fails).
    pub absent_ip: String,
}

impl Lab {
    /// Makes the "outside" namespace (tag `o`) and its link to the host namespace.
    pub fn outside(&self) -> Outside {
        let ns = self.ns("o");
        let x = rand::random::<u8>();
        let net = format!("198.18.{x}");
        let o = Outside {
            ns: ns.clone(),
            ip: format!("{net}.2"),
            host_ip: format!("{net}.1"),
            absent_ip: format!("{net}.3"),
        };
        let host = self.host.name.as_str();
        veth_from(host, "nyhout", &format!("{}/24", o.host_ip), &ns, "nyoin");
        cmd_ok(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", o.ip),
            "dev",
            "nyoin",
        ]);
        cmd_ok(&["ip", "-n", &ns, "link", "set", "nyoin", "up"]);
        o
    }

    /// Runs `argv` in namespace `ns` in the background until the lab ends; its output goes to
    /// `DIR/<log>`.
    pub fn bg_in(&self, ns: &str, argv: &[&str], log: &str) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        let bg = Bg::spawn(&mut c, &self.dir.join(log));
        self.keep(bg);
    }

    /// Writes `text` to `DIR/<name>` and returns the path (for scripts run in namespaces).
    pub fn write_file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p.to_string_lossy().into_owned()
    }
}

/// The gateway MAC of a network whose gateway is `gw` (02:42 and the address).
pub fn gateway_mac(gw: &str) -> String {
    let o: Vec<u8> = gw.split('.').map(|x| x.parse().unwrap_or(0)).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

// ---------------------------------------------------------------------------------------------
// Shared by the bulk-transfer tests (tests/transfer.rs, tests/vxlan_e2e.rs).

/// Sends `bytes` of random data from `ns_s` to `ip_r` in `ns_r` with socat; fails unless the
/// sha256 computed on both ends match.
pub fn sha_transfer(lab: &Lab, ns_s: &str, ns_r: &str, ip_r: &str, bytes: u64) {
    let port = 20000 + (rand::random::<u16>() % 40000);
    let d = lab.dir.display().to_string();
    let tag = format!("{ns_s}-{port}");
    // An IPv6 receiver is given as `[ADDR]`: socat's TCP-LISTEN would bind IPv4 only.
    let tcp = if ip_r.starts_with('[') { "TCP6" } else { "TCP" };
    let recv = format!(
        "socat -u -b 262144 {tcp}-LISTEN:{port},bind={ip_r},reuseaddr STDOUT | sha256sum > {d}/{tag}.recv"
    );
    let mut receiver = Bg::spawn(
        Command::new("ip").args(["netns", "exec", ns_r, "sh", "-c", &recv]),
        &lab.dir.join(format!("{tag}.recv.log")),
    );
    if !wait_listening(ns_r, port, Proto::Tcp) {
        lab.fail(&format!(
            "the receiver never listened: {}",
            receiver.log_text()
        ));
    }
    let send = format!(
        "set -euo pipefail; mkfifo {d}/{tag}.fifo; sha256sum < {d}/{tag}.fifo > {d}/{tag}.sent & \
         head -c {bytes} /dev/urandom | tee {d}/{tag}.fifo | \
         socat -u -b 262144 STDIN {tcp}:{ip_r}:{port}; wait"
    );
    let o = run_bounded(
        Command::new("ip").args(["netns", "exec", ns_s, "bash", "-c", &send]),
        Duration::from_secs(600),
    );
    if !o.status.success() {
        lab.fail(&format!(
            "the sender failed:\n{}\nreceiver: {}",
            show(&o),
            receiver.log_text()
        ));
    }
    match receiver.wait(Duration::from_secs(60)) {
        Some(s) if s.success() => {}
        s => lab.fail(&format!(
            "the receiver did not finish cleanly ({s:?}): {}",
            receiver.log_text()
        )),
    }
    let sum = |ext: &str| {
        std::fs::read_to_string(lab.dir.join(format!("{tag}.{ext}")))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (sent, got) = (sum("sent"), sum("recv"));
    if sent.len() != 64 || sent != got {
        lab.fail(&format!(
            "{bytes} bytes {ns_s} -> {ns_r}: sha256 sent {sent:?}, received {got:?}"
        ));
    }
    eprintln!("{bytes} bytes {ns_s} -> {ns_r} arrived intact");
}

// ---------------------------------------------------------------------------------------------
// Shared by the tests that start servers in namespaces and build two-endpoint networks.

/// The transport a listening socket is looked for on (see [`wait_listening`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Whether a socket listens (TCP) or is bound (UDP) on local `port` in namespace `ns` within
/// 10 s, asking `ss` every 50 ms.
pub fn wait_listening(ns: &str, port: u16, proto: Proto) -> bool {
    let flags = match proto {
        Proto::Tcp => "-Hltn",
        Proto::Udp => "-Hlun",
    };
    let filter = format!("sport = :{port}");
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let o = cmd(
            &["ip", "netns", "exec", ns, "ss", flags, &filter],
            Duration::from_secs(5),
        );
        !String::from_utf8_lossy(&o.stdout).trim().is_empty()
    })
}

/// Makes a veth pair `host_if` (in namespace `host`) / `peer_if` (moved to `peer_ns`), gives
/// `host_if` the address `host_cidr` and sets it up; the peer end is left to the caller.
pub fn veth_from(host: &str, host_if: &str, host_cidr: &str, peer_ns: &str, peer_if: &str) {
    cmd_ok(&[
        "ip", "-n", host, "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns",
        peer_ns,
    ]);
    cmd_ok(&["ip", "-n", host, "addr", "add", host_cidr, "dev", host_if]);
    cmd_ok(&["ip", "-n", host, "link", "set", host_if, "up"]);
}

/// A network with two endpoints: alpha (TAP) in namespace `a`, beta (veth) in namespace `b`.
pub struct Pair {
    pub sub: Subnet,
    pub net: String,
    pub a: String,
    pub b: String,
}

impl Lab {
    /// Makes network `name` (with `net_args`) on a random subnet, namespaces `a` and `b`, and
    /// attaches alpha (TAP, with `alpha_args`) in `a` and beta (`--kind veth`) in `b`.
    pub fn pair(&self, name: &str, net_args: &[&str], alpha_args: &[&str]) -> Pair {
        let sub = Subnet::random();
        let net = self.network(name, &sub, net_args);
        let a = self.ns("a");
        let b = self.ns("b");
        self.attach(&net, &a, "alpha", alpha_args);
        self.attach(&net, &b, "beta", &["--kind", "veth"]);
        Pair { sub, net, a, b }
    }
}

/// Python shared by the stream servers and clients of the tests (prepend it with
/// [`py_script`]): `PAT`, the 1 MiB pattern the `up`/`down` commands send, and helpers.
pub const PY_STREAM: &str = r#"
import hashlib, socket, sys
PAT = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
def read_command(c):
    """The connection's first line, split into words; None at EOF before a newline."""
    f = b""
    while not f.endswith(b"\n"):
        b = c.recv(1)
        if not b:
            return None
        f += b
    return f.decode().split()
def recv_sha(c, n):
    """Reads n bytes (fewer at EOF); the sha256 of what came, in hex."""
    h = hashlib.sha256()
    while n > 0:
        b = c.recv(min(n, 1 << 20))
        if not b:
            break
        h.update(b); n -= len(b)
    return h.hexdigest()
def send_pattern(c, n):
    """Sends n bytes of the pattern."""
    while n > 0:
        k = min(n, len(PAT))
        c.sendall(PAT[:k]); n -= k
def pattern_digest(n):
    """The sha256 (raw digest) of n bytes of the pattern."""
    h = hashlib.sha256()
    while n > 0:
        k = min(n, len(PAT)); h.update(PAT[:k]); n -= k
    return h.digest()
def recv_all(c, size=65536):
    """Everything c receives until EOF."""
    got = b""
    while True:
        b = c.recv(size)
        if not b:
            return got
        got += b
"#;

/// `script` with [`PY_STREAM`] before it.
pub fn py_script(script: &str) -> String {
    format!("{PY_STREAM}{script}")
}

// ---------------------------------------------------------------------------------------------
// Reading `netyard flows --json` (one object per network: {network, stats, flows}).

/// The row of network `net` in `flows --json` (Null if it is missing).
pub fn flows_row(lab: &Lab, net: &str) -> Value {
    let v = lab.ny_json(&["flows", "--json"]);
    v.as_array()
        .and_then(|a| a.iter().find(|r| r["network"] == net))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The flows of `proto` ("tcp", "udp", "icmp") from endpoint address `ip` (any port) in a row.
pub fn endpoint_flows(row: &Value, proto: &str, ip: &str) -> Vec<Value> {
    row["flows"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| {
                    f["protocol"] == proto
                        && f["endpoint"]
                            .as_str()
                            .is_some_and(|e| e.split(':').next() == Some(ip))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Rootless daemons and user-namespace containers (tests/rootless.rs, tests/restart.rs).

/// The unprivileged user rootless tests run the daemon and containers as.
pub const ROOTLESS_USER: &str = "nyrootless";

/// Makes sure [`ROOTLESS_USER`] exists; its uid and gid.
pub fn ensure_rootless_user() -> (u32, u32) {
    if !cmd(&["id", "-u", ROOTLESS_USER], CLI_TIMEOUT)
        .status
        .success()
    {
        let o = cmd(
            &[
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                ROOTLESS_USER,
            ],
            CLI_TIMEOUT,
        );
        // A parallel run may have created it meanwhile.
        if !o.status.success()
            && !cmd(&["id", "-u", ROOTLESS_USER], CLI_TIMEOUT)
                .status
                .success()
        {
            panic!(
                "cannot create the user {ROOTLESS_USER} (needs root and useradd):\n{}",
                show(&o)
            );
        }
    }
    let id = |flag: &str| -> u32 {
        cmd_ok(&["id", flag, ROOTLESS_USER])
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// Gives [`ROOTLESS_USER`] the subordinate id range 200000-265535 (uids and gids) unless it
/// has one: RootlessKit and rootless Podman map it into their user namespaces.
pub fn ensure_rootless_subids() {
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !subuid
        .lines()
        .any(|l| l.starts_with(&format!("{ROOTLESS_USER}:")))
    {
        cmd_ok(&[
            "usermod",
            "--add-subuids",
            "200000-265535",
            "--add-subgids",
            "200000-265535",
            ROOTLESS_USER,
        ]);
    }
}

/// Makes /dev/net/tun usable by unprivileged users (0666, its usual mode; some machines ship
/// 0600): a rootless daemon or front opens it.
pub fn tun_world_accessible() {
    use std::os::unix::fs::PermissionsExt;
    let tun = Path::new("/dev/net/tun");
    let mode = std::fs::metadata(tun)
        .unwrap_or_else(|e| panic!("/dev/net/tun: {e}"))
        .permissions()
        .mode();
    if mode & 0o666 != 0o666 {
        std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("chmod 0666 /dev/net/tun: {e}"));
    }
}

/// Starts `unshare --user --map-root-user --net sleep 600` as the user and waits until the
/// process sits in its own user and network namespaces.
pub fn rootless_container(lab: &Lab, run_as: &RunAs, tag: &str) -> u32 {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name])
        .args(run_as.prefix())
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "sleep",
            "600",
        ]);
    let bg = Bg::spawn(&mut c, &lab.dir.join(format!("{tag}.log")));
    let pid = bg.pid();
    let ns = |p: &str, k: &str| std::fs::read_link(format!("/proc/{p}/ns/{k}")).ok();
    let ready = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let p = pid.to_string();
        comm.trim() == "sleep"
            && ns(&p, "user").is_some()
            && ns(&p, "user") != ns("self", "user")
            && ns(&p, "net") != ns("self", "net")
    });
    if !ready {
        let log = bg.log_text();
        drop(bg);
        lab.fail(&format!(
            "`unshare --user --map-root-user --net` as {ROOTLESS_USER} did not come up (unprivileged user \
             namespaces disabled? see user.max_user_namespaces):\n{log}"
        ));
    }
    lab.keep(bg);
    pid
}

// ---------------------------------------------------------------------------------------------
// Python helpers shared by the egress and port security tests.

/// A UDP echo server: replies with what it got, except that "big:N" asks for N bytes back.
pub const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    if data.startswith(b"big:"):
        n = int(data[4:])
        data = bytes(i % 251 for i in range(n))
    s.sendto(data, addr)
"#;

/// Opens N sockets (or one bound to a given port), sends a distinct message on each to DEST
/// PORT (again every second while unanswered) and checks every reply: content and source.
/// Prints {"n", "ok", "errors"}; exits 1 unless all were answered within 10 s.
pub const UDP_CLIENT: &str = r#"
import json, select, socket, sys, time
dest, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bind_port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", bind_port))
    s.setblocking(False)
    socks.append(s)
index = {s.fileno(): i for i, s in enumerate(socks)}
msg = lambda i: ("flow %d of %d" % (i, n)).encode()
pending, errors, last = set(range(n)), [], 0.0
deadline = time.time() + 10
while pending and time.time() < deadline:
    if time.time() - last > 1.0:
        for i in pending:
            try:
                socks[i].sendto(msg(i), (dest, port))
            except OSError as e:
                errors.append("send %d: %s" % (i, e))
        last = time.time()
    r, _, _ = select.select([socks[i] for i in pending], [], [], 0.2)
    for s in r:
        i = index[s.fileno()]
        try:
            data, addr = s.recvfrom(65535)
        except OSError as e:
            errors.append("recv %d: %s" % (i, e))
            continue
        if data == msg(i) and addr == (dest, port):
            pending.discard(i)
        else:
            errors.append("flow %d: %r from %s" % (i, data[:40], addr))
print(json.dumps({"n": n, "ok": n - len(pending), "errors": errors[:5]}))
sys.exit(0 if not pending else 1)
"#;

impl Lab {
    /// A lab whose daemon runs as [`ROOTLESS_USER`] (no capability), its API socket under a
    /// runtime directory the user owns; /dev/net/tun is made 0666 where it is not. Returns the
    /// lab and how to run commands as that user.
    pub fn rootless() -> (Lab, RunAs) {
        use std::os::unix::fs::PermissionsExt;
        require_root();
        let (uid, gid) = ensure_rootless_user();
        tun_world_accessible();
        let mut lab = Lab::bare();
        // The user owns the lab's directory and its runtime dir; the API socket lives under it.
        let xdg = lab.dir.join("xdg");
        std::fs::create_dir_all(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd_ok(&[
            "chown",
            "-R",
            &format!("{uid}:{gid}"),
            &lab.dir.to_string_lossy(),
        ]);
        lab.api = xdg.join("netyard").join("api.sock");
        let run_as = RunAs {
            uid,
            gid,
            runtime_dir: xdg,
        };
        lab.run_as = Some(run_as.clone());
        lab.start_daemon(&[]);
        (lab, run_as)
    }
}

/// Runs a python script in `ns`, bounded; returns its output.
pub fn py(ns: &str, script: &str, args: &[&str], timeout: Duration) -> Output {
    let mut argv = vec!["ip", "netns", "exec", ns, "python3", script];
    argv.extend_from_slice(args);
    cmd(&argv, timeout)
}

/// Like [`py`] (60 s), failing the test unless the script exits 0; returns stdout, trimmed.
pub fn py_ok(lab: &Lab, ns: &str, script: &str, args: &[&str]) -> String {
    py_ok_within(lab, ns, script, args, Duration::from_secs(60))
}

/// [`py_ok`] with its own bound.
pub fn py_ok_within(lab: &Lab, ns: &str, script: &str, args: &[&str], timeout: Duration) -> String {
    let o = py(ns, script, args, timeout);
    if !o.status.success() {
        lab.fail(&format!(
            "python3 {script} {args:?} in {ns} failed:\n{}",
            show(&o)
        ));
    }
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Interfaces of the namespace behind an open nsfs file (the test holds it open, so it
/// outlives the container's processes).
pub fn links_of(ns_file: &std::fs::File) -> String {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/{}/fd/{}", std::process::id(), ns_file.as_raw_fd());
    let o = run_bounded(
        Command::new("nsenter")
            .arg(format!("--net={path}"))
            .args(["ip", "-o", "link"]),
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}
