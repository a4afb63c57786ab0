//! The harness the benches share (`#[path = "common/mod.rs"] mod common;` in each): options and
//! `main`, running children with timeouts and PR_SET_PDEATHSIG, interruption, namespaces and
//! servers torn down on drop, the netyard daemon (start, API, stop), iperf3's JSON, the UDP
//! ping-pong and sockperf, medians, ratio lines and the end of a run (JSON report, exit status).
//! `link` is the whole of the switch and vxlan benches but their setups. Each bench compiles its
//! own copy and uses part of it.

#![allow(dead_code)]

pub mod floor;
pub mod link;

use std::fs::{self, File};
use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The bench's name, for messages ("switch bench: ...").

static BENCH: OnceLock<&'static str> = OnceLock::new();

pub fn set_bench_name(name: &'static str) {
    let _ = BENCH.set(name);
}

pub fn bench_name() -> &'static str {
    BENCH.get().copied().unwrap_or("netyard")
}

// ---------------------------------------------------------------------------------------------
// Options and `main`.

/// The options every bench takes: `--json FILE` and `--seconds N` (default 5). `--bench`, which
/// `cargo bench` passes, is accepted too: `bench_main` reads it from the arguments.
pub struct BaseOpts {
    pub json: Option<PathBuf>,
    pub seconds: u64,
}

/// The arguments not read yet, from which a bench's own option takes its value.
pub struct Args<'a>(std::slice::Iter<'a, String>);

impl Args<'_> {
    /// The argument after `flag`; one that starts with `--` is the next flag, not a value.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        match self.0.next() {
            Some(v) if !v.starts_with("--") => Ok(v.clone()),
            _ => Err(format!("{flag} needs a value")),
        }
    }

    /// The positive whole number after `flag`.
    pub fn positive<T: FromStr + PartialOrd + Default>(&mut self, flag: &str) -> Result<T, String> {
        self.value(flag)?
            .parse()
            .ok()
            .filter(|n| *n > T::default())
            .ok_or_else(|| format!("{flag} takes a positive whole number"))
    }
}

/// Parses the common options; every other flag goes to `own`, which takes its value from the
/// `Args` and returns Ok(false) for a flag it does not know either. Err("") for `-h`/`--help`.
pub fn parse_args(
    args: &[String],
    mut own: impl FnMut(&str, &mut Args) -> Result<bool, String>,
) -> Result<BaseOpts, String> {
    let mut o = BaseOpts {
        json: None,
        seconds: 5,
    };
    let mut it = Args(args.iter());
    while let Some(a) = it.0.next() {
        match a.as_str() {
            "--bench" => {}
            "--json" => o.json = Some(PathBuf::from(it.value("--json")?)),
            "--seconds" => o.seconds = it.positive("--seconds")?,
            "-h" | "--help" => return Err(String::new()),
            flag => {
                if !own(flag, &mut it)? {
                    return Err(format!("unknown argument {flag:?}"));
                }
            }
        }
    }
    Ok(o)
}

/// A bench's `main`. First the hidden child modes (`child`: Some(exit status) when the arguments
/// ask for one; they run inside a namespace, started by `ip netns exec NS <this executable>`).
/// Then the options (`parse`: the usage on stderr and exit status 2 when they are wrong, 0 after
/// `--help`). Without `--bench` it does nothing: `cargo test --all-targets` runs bench targets
/// that way. Else it exits with the status `run` returns.
pub fn bench_main<O>(
    name: &'static str,
    usage: &str,
    child: impl FnOnce(&[String]) -> Option<i32>,
    parse: impl FnOnce(&[String]) -> Result<O, String>,
    run: impl FnOnce(&O) -> i32,
) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = child(&args) {
        std::process::exit(code);
    }
    set_bench_name(name);
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{name} bench: {e}");
            }
            eprintln!("{usage}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    // `--bench` is never an option's value: `Args::value` refuses what starts with `--`.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "{name} bench: not run (start it with `cargo bench --bench {name}`, or pass --bench)"
        );
        return;
    }
    std::process::exit(run(&opts));
}

// ---------------------------------------------------------------------------------------------
// Interruption (SIGINT/SIGTERM): remember it, stop what runs, tear down, exit 130.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn install_signal_handlers() {
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
// Running children: every child gets PR_SET_PDEATHSIG (it dies with the bench), optionally a
// CPU pin, and every wait polls so that a timeout or an interruption can stop it.

pub fn guard(cmd: &mut Command, pin: Option<CpuSet>) -> &mut Command {
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
pub fn nsexec(ns: &str, pin: Option<CpuSet>, prog: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(prog).args(args);
    guard(&mut cmd, pin);
    cmd
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
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

pub fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    run_child(cmd, timeout, true)
}

/// Runs a child to completion or `timeout`; an interruption stops it too when `interruptible`
/// (teardown commands are not: they must run after Ctrl-C).
pub fn run_child(
    cmd: &mut Command,
    timeout: Duration,
    interruptible: bool,
) -> Result<Output, String> {
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

pub fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

pub fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Runs a quick setup command, not interruptible: teardown relies on such commands after
/// Ctrl-C. When it fails, the error is `what` and the first line of its stderr.
pub fn run_setup(
    cmd: &mut Command,
    timeout: Duration,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    let out = run_child(cmd, timeout, false)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", what(), first_line(&out.stderr)))
    }
}

/// Runs `ip ARGS` (the bench's own setup; the product never runs `ip`).
pub fn ip(args: &[&str]) -> Result<(), String> {
    run_setup(
        Command::new("ip").args(args),
        Duration::from_secs(20),
        || format!("`ip {}`", args.join(" ")),
    )
}

/// `DEV` in `ns` given `addr`/24 and set up.
pub fn ip_addr_up(ns: &str, dev: &str, addr: &str) -> Result<(), String> {
    ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
    ip(&["-n", ns, "link", "set", dev, "up"])
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns whether it exited in time.
pub fn stop(child: &mut Child, grace: Duration) -> bool {
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

pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Kills whatever still runs in a namespace (SIGKILL), by `ip netns pids`.
pub fn kill_ns_pids(ns: &str) {
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

/// Removes namespaces `<ns_prefix><pid>-...` and temp dirs `<tmp_prefix><pid>` left by earlier
/// runs of this bench that were killed with SIGKILL: those whose owning pid no longer exists.
pub fn clean_stale(ns_prefix: &str, tmp_prefix: &str) {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    if let Ok(dir) = fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(ns_prefix) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !alive(pid) {
                eprintln!(
                    "{} bench: removing namespace {name} left by an earlier run",
                    bench_name()
                );
                kill_ns_pids(&name);
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
    if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(tmp_prefix) {
                if pid.parse::<u32>().is_ok() && !alive(pid) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// The run's scratch directory (API sockets, logs), removed even when unwinding.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Finding the netyard binary.

pub fn find_netyard() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NETYARD_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_netyard") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/release/deps/BENCH-HASH: try release/, then every ancestor's release/.
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

pub fn locate_or_build_netyard() -> Result<PathBuf, String> {
    if let Some(p) = find_netyard() {
        return Ok(p);
    }
    eprintln!(
        "{} bench: netyard binary not found; running `cargo build --release --bin netyard`",
        bench_name()
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
// Namespaces and servers of a lab, torn down on drop (and explicitly, in order, by the labs).

/// Network namespaces made by the bench: deleted (after killing what still runs in them) in
/// reverse order of creation.
#[derive(Default)]
pub struct Namespaces(Vec<String>);

impl Namespaces {
    /// `ip netns add NAME` and `lo` up inside it.
    pub fn add(&mut self, name: &str) -> Result<String, String> {
        ip(&["netns", "add", name])?;
        self.0.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(name.to_string())
    }

    /// `ip netns attach NAME PID`: a name for the network namespace of a process a runtime
    /// made (deleted like the others: the name goes, the namespace lives with its processes).
    pub fn attach(&mut self, name: &str, pid: u32) -> Result<String, String> {
        ip(&["netns", "attach", name, &pid.to_string()])?;
        self.0.push(name.to_string());
        Ok(name.to_string())
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    pub fn delete_all(&mut self) {
        for ns in self.0.drain(..).rev() {
            kill_ns_pids(&ns);
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("{} bench: {e}", bench_name());
            }
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.delete_all();
    }
}

/// Long-running children of a lab (servers, forwarders), logging to files in its directory and
/// stopped (SIGTERM, then SIGKILL after 2 s) on drop.
pub struct Servers {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Servers {
    pub fn new(dir: &Path) -> Servers {
        Servers {
            dir: dir.to_path_buf(),
            children: Vec::new(),
        }
    }

    /// Starts `prog args` in `ns` with stdout and stderr to `DIR/log`.
    pub fn spawn(
        &mut self,
        ns: &str,
        pin: Option<CpuSet>,
        prog: &Path,
        args: &[&str],
        log: &str,
    ) -> Result<usize, String> {
        let name = prog_name(prog);
        let log = File::create(self.dir.join(log)).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = nsexec(ns, pin, prog, args);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// Starts a server in `ns` and waits until it listens on `port` (`proto` tcp or udp).
    pub fn start(
        &mut self,
        ns: &str,
        prog: &Path,
        args: &[&str],
        pin: Option<CpuSet>,
        proto: &str,
        port: u16,
    ) -> Result<usize, String> {
        let name = prog_name(prog);
        let idx = self.spawn(ns, pin, prog, args, &format!("{name}-{port}.log"))?;
        let res = wait_listening(
            &mut self.children[idx],
            proto,
            port,
            Duration::from_secs(10),
        );
        res.map_err(|e| format!("{name} server: {e}"))?;
        Ok(idx)
    }

    pub fn child(&mut self, idx: usize) -> Option<&mut Child> {
        self.children.get_mut(idx)
    }

    /// The pid of child `idx` (`ip netns exec` execs the program: the program's pid).
    pub fn pid(&self, idx: usize) -> Option<u32> {
        self.children.get(idx).map(Child::id)
    }

    pub fn log_path(&self, log: &str) -> PathBuf {
        self.dir.join(log)
    }

    /// The log of the server `start` started from `prog` on `port`.
    pub fn server_log(&self, prog: &Path, port: u16) -> PathBuf {
        self.dir.join(format!("{}-{port}.log", prog_name(prog)))
    }

    pub fn stop(&mut self, idx: usize) {
        if let Some(c) = self.children.get_mut(idx) {
            stop(c, Duration::from_secs(2));
        }
    }

    pub fn stop_all(&mut self) {
        for c in &mut self.children {
            stop(c, Duration::from_secs(2));
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The file name of a program, for messages and log names.
fn prog_name(prog: &Path) -> String {
    prog.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Waits until the (just started) child listens on `port`, read from its own /proc/PID/net.
pub fn wait_listening(
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
// The netyard daemon: started inside a namespace, driven through its API socket.

pub struct Daemon {
    pub child: Child,
    pub bin: PathBuf,
    pub api: PathBuf,
    pub log: PathBuf,
    /// How messages name it: "the daemon", "daemon 2".
    pub label: String,
}

impl Daemon {
    /// `ip netns exec NS netyard --api API daemon --state-dir STATE EXTRA...`, output to `log`.
    /// Returns once started; `wait_ready` waits for its API.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        bin: &Path,
        ns: &str,
        api: &Path,
        state: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        label: &str,
    ) -> Result<Daemon, String> {
        let logf = File::create(log).map_err(|e| e.to_string())?;
        let log2 = logf.try_clone().map_err(|e| e.to_string())?;
        let (apis, states) = (
            api.to_string_lossy().into_owned(),
            state.to_string_lossy().into_owned(),
        );
        let mut args = vec!["--api", &apis, "daemon", "--state-dir", &states];
        args.extend_from_slice(extra);
        let mut cmd = nsexec(ns, None, bin, &args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(logf).stderr(log2);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting the daemon{}: {e}", in_ns_suffix(label, ns)))?;
        Ok(Daemon {
            child,
            bin: bin.to_path_buf(),
            api: api.to_path_buf(),
            log: log.to_path_buf(),
            label: label.to_string(),
        })
    }

    /// Waits until the API answers `network ls`, the daemon dies, or `deadline` passes.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            self.check_alive()?;
            if interrupted() {
                return Err("interrupted".into());
            }
            if self.api.exists() && self.cli(&["network", "ls"]).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}'s API did not answer within 15 s; its log ends: {}",
                    self.label,
                    self.log_tail(3)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = run_timed(
            Command::new(&self.bin)
                .arg("--api")
                .arg(&self.api)
                .args(args),
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

    pub fn log_tail(&self, n: usize) -> String {
        last_lines(&fs::read_to_string(&self.log).unwrap_or_default(), n)
    }

    /// Err (naming the exit status and the log's last lines) once the daemon has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Err(format!(
                "{} exited ({st}); its log ends: {}",
                self.label,
                self.log_tail(3)
            )),
            _ => Ok(()),
        }
    }

    /// SIGTERM, SIGKILL after `grace`; whether it exited in time.
    pub fn stop(&mut self, grace: Duration) -> bool {
        stop(&mut self.child, grace)
    }
}

/// Sets the CPU affinity of every thread of process `pid` (a daemon, a floor).
pub fn pin_threads(pid: u32, set: &CpuSet) -> Result<(), String> {
    let tasks =
        fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("threads of {pid}: {e}"))?;
    for t in tasks.flatten() {
        if let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() {
            // A thread may have exited meanwhile: ignore those.
            let _ = sched_setaffinity(Pid::from_raw(tid), set);
        }
    }
    Ok(())
}

fn in_ns_suffix(label: &str, ns: &str) -> String {
    if label == "the daemon" {
        String::new()
    } else {
        format!(" in {ns}")
    }
}

/// User plus system CPU time of process `pid` so far (all its threads), in seconds, from
/// /proc/PID/stat (what getrusage(RUSAGE_CHILDREN) would give only after it exits).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)? as f64;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / tick)
}

/// [`cpu_seconds`] of several processes together; `None` if any cannot be read.
pub fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// Kernel-side drop counters of two endpoints A and B: eth0 rx/tx dropped in each, and B's
/// UDP receive-buffer overflows. Diagnostic only (where undelivered UDP went).
pub fn kernel_drops(a: &str, b: &str) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for (role, ns) in [("A", a), ("B", b)] {
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
        .args(["netns", "exec", b, "cat", "/proc/net/snmp"])
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

// ---------------------------------------------------------------------------------------------
// iperf3.

/// `iperf3 -c SERVER -p PORT -t SECONDS -J EXTRA...` in `ns`; its JSON, or why there is none.
pub fn iperf_client(
    ns: &str,
    iperf: &Path,
    server: &str,
    port: u16,
    seconds: u64,
    extra: &[&str],
) -> Result<Value, String> {
    let secs = seconds.to_string();
    let port = port.to_string();
    let mut args = vec!["-c", server, "-p", &port, "-t", &secs, "-J"];
    args.extend_from_slice(extra);
    let timeout = Duration::from_secs(seconds + 30);
    let out = run_timed(&mut nsexec(ns, None, iperf, &args), timeout)?;
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

/// The number at `path` in a JSON value.
pub fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

pub struct TcpRun {
    /// Receiver rate (`end.sum_received.bits_per_second`).
    pub bps: f64,
    /// Sender retransmits.
    pub retrans: Option<f64>,
    /// Set when 1-s intervals fell under 10% of the median (a stall).
    pub stall: Option<String>,
}

/// The figures of a TCP iperf3 run.
pub fn tcp_run(v: &Value) -> Result<TcpRun, String> {
    let bps = f(v, &["end", "sum_received", "bits_per_second"])
        .ok_or("iperf3 JSON lacks end.sum_received")?;
    let retrans = f(v, &["end", "sum_sent", "retransmits"]);
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
    let mut stall = None;
    if iv.len() >= 2 {
        iv.sort_by(f64::total_cmp);
        let med = median(&iv);
        let slow = iv.iter().filter(|&&x| x < 0.1 * med).count();
        if slow > 0 {
            stall = Some(format!(
                "TCP stalled: {slow} of {} 1-s intervals under 10% of the median ({:.2} Gbit/s; slowest {:.3})",
                iv.len(),
                med / 1e9,
                iv[0] / 1e9
            ));
        }
    }
    Ok(TcpRun {
        bps,
        retrans,
        stall,
    })
}

pub struct UdpRun {
    /// Packets per second the receiver got (packets - lost).
    pub delivered_pps: f64,
    /// Packets per second the sender pushed.
    pub sent_pps: Option<f64>,
}

/// The figures of a UDP iperf3 run; `seconds` when the JSON gives no duration.
pub fn udp_run(v: &Value, seconds: u64) -> Result<UdpRun, String> {
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
        .unwrap_or(seconds as f64);
    let delivered_pps = (packets - lost).max(0.0) / secs;
    let sent_pps = end
        .get("sum_sent")
        .and_then(|s| f(s, &["packets"]))
        .map(|sent| {
            let ssecs = end
                .get("sum_sent")
                .and_then(|s| f(s, &["seconds"]))
                .filter(|&s| s > 0.0)
                .unwrap_or(secs);
            sent / ssecs
        });
    Ok(UdpRun {
        delivered_pps,
        sent_pps,
    })
}

// ---------------------------------------------------------------------------------------------
// Latency: sockperf, or the bench's own UDP ping-pong (the bench executable re-run inside the
// namespaces with a hidden `--pp-server`/`--pp-client` argument).

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LatencyTool {
    Sockperf,
    Rust,
}

impl LatencyTool {
    /// sockperf when installed, else the built-in ping-pong.
    pub fn detect() -> LatencyTool {
        if which("sockperf").is_some() {
            LatencyTool::Sockperf
        } else {
            LatencyTool::Rust
        }
    }

    pub fn parse(s: &str) -> Result<LatencyTool, String> {
        match s {
            "sockperf" => Ok(LatencyTool::Sockperf),
            "rust" => Ok(LatencyTool::Rust),
            other => Err(format!("unknown latency tool {other:?}")),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            LatencyTool::Sockperf => "sockperf pp --full-rtt",
            LatencyTool::Rust => "the bench's own UDP ping-pong",
        }
    }
}

/// The hidden child modes of the ping-pong: `Some(exit code)` when `args` asks for one.
pub fn pp_child_mode(args: &[String]) -> Option<i32> {
    match args.first().map(String::as_str) {
        Some("--pp-server") => Some(pp_server(args.get(1).map(String::as_str).unwrap_or(""))),
        Some("--pp-client") => {
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
            Some(pp_client(
                args.get(1).map(String::as_str).unwrap_or(""),
                secs,
            ))
        }
        _ => None,
    }
}

pub struct Rtt {
    pub avg: f64,
    pub p50: f64,
    pub p99: f64,
}

/// One round-trip measurement: a server in `server_ns` at `server_ip:port`, a client in
/// `client_ns` for `seconds`. With `pin`, server and client run on that CPU and so do the
/// daemons' threads for the duration (given back `unpin` afterwards).
pub struct RttTest<'a> {
    pub tool: LatencyTool,
    pub self_exe: &'a Path,
    pub server_ns: &'a str,
    pub client_ns: &'a str,
    pub server_ip: &'a str,
    pub port: u16,
    pub seconds: u64,
    pub pin: Option<CpuSet>,
    pub unpin: CpuSet,
}

/// `forwarders` are the processes between client and server (netyard's daemons, a floor):
/// pinned with them when `t.pin` says so.
pub fn measure_rtt(t: &RttTest, servers: &mut Servers, forwarders: &[u32]) -> Result<Rtt, String> {
    let ports = t.port.to_string();
    let ipb = t.server_ip;
    let addr = format!("{ipb}:{}", t.port);
    let secs = t.seconds.to_string();
    let (server_prog, server_args, client_prog, client_args): (
        PathBuf,
        Vec<&str>,
        PathBuf,
        Vec<&str>,
    ) = match t.tool {
        LatencyTool::Sockperf => {
            let sp = which("sockperf").ok_or("sockperf not found")?;
            (
                sp.clone(),
                vec!["sr", "-i", ipb, "-p", &ports],
                sp,
                vec![
                    "pp",
                    "-i",
                    ipb,
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
            t.self_exe.to_path_buf(),
            vec!["--pp-server", &addr],
            t.self_exe.to_path_buf(),
            vec!["--pp-client", &addr, &secs],
        ),
    };
    let idx = servers.start(
        t.server_ns,
        &server_prog,
        &server_args,
        t.pin,
        "udp",
        t.port,
    )?;
    if let Some(set) = &t.pin {
        for &pid in forwarders {
            pin_threads(pid, set)?;
        }
    }
    let res = run_timed(
        &mut nsexec(t.client_ns, t.pin, &client_prog, &client_args),
        Duration::from_secs(t.seconds + 30),
    );
    if t.pin.is_some() {
        for &pid in forwarders {
            let _ = pin_threads(pid, &t.unpin);
        }
    }
    servers.stop(idx);
    let out = res?;
    match t.tool {
        LatencyTool::Sockperf => parse_sockperf(&out.stdout),
        LatencyTool::Rust => parse_rust_pp(&out.stdout),
    }
}

pub fn parse_sockperf(out: &str) -> Result<Rtt, String> {
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

pub fn parse_rust_pp(out: &str) -> Result<Rtt, String> {
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

/// A UDP socket bound to `addr`, for the hidden child mode `mode`; None (having said why on
/// stderr) when it cannot be bound.
pub fn udp_bound(mode: &str, addr: &str) -> Option<UdpSocket> {
    UdpSocket::bind(addr)
        .map_err(|e| eprintln!("{mode}: bind {addr}: {e}"))
        .ok()
}

/// A UDP socket connected to `addr`, for the hidden child mode `mode`; None (having said why on
/// stderr) when that fails.
pub fn udp_connected(mode: &str, addr: &str) -> Option<UdpSocket> {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(addr).map(|_| s))
        .map_err(|e| eprintln!("{mode}: {addr}: {e}"))
        .ok()
}

pub fn pp_server(addr: &str) -> i32 {
    let Some(sock) = udp_bound("pp-server", addr) else {
        return 1;
    };
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    }
}

pub fn pp_client(addr: &str, seconds: u64) -> i32 {
    let Some(sock) = udp_connected("pp-client", addr) else {
        return 1;
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

// ---------------------------------------------------------------------------------------------
// Statistics, CPUs and report lines.

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of sorted values.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The median of the samples of (`key`, `metric`) and the samples in run order.
pub fn median_of<K: PartialEq>(
    samples: &[(K, &'static str, f64)],
    key: &K,
    metric: &str,
) -> Option<(f64, Vec<f64>)> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.0 == *key && s.1 == metric)
        .map(|s| s.2)
        .collect();
    if v.is_empty() {
        return None;
    }
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    Some((median(&sorted), v))
}

pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub decimals: usize,
    /// Latency and retransmits: a ratio above 1 means netyard is worse.
    pub lower_is_better: bool,
}

/// `SCENARIO METRIC VALUE  (R.RRx REFERENCE)` as the switch and vxlan benches print it.
pub fn figure_line(
    scenario: &str,
    metric: &str,
    shown: &str,
    ratio: Option<(f64, &str)>,
) -> String {
    match ratio {
        None => format!("{scenario:<14} {metric:<18} {shown:>9}"),
        Some((r, reference)) => {
            format!("{scenario:<14} {metric:<18} {shown:>9}  ({r:.2}x {reference})")
        }
    }
}

pub fn lowest_cpu(set: &CpuSet) -> CpuSet {
    let mut one = CpuSet::new();
    let cpu = (0..CpuSet::count())
        .find(|&c| set.is_set(c).unwrap_or(false))
        .unwrap_or(0);
    let _ = one.set(cpu);
    one
}

pub fn all_cpus_count(set: &CpuSet) -> usize {
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .count()
}

/// The kernel release, for the JSON reports.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The run: its start (root, scratch directory), scenarios in turn with progress on stderr, its
// end (JSON report, exit status).

/// Whether this process can make network namespaces (root, `ip` installed); says why not.
pub fn can_make_namespaces() -> bool {
    let name = bench_name();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("{name} bench: must run as root (it makes network namespaces); nothing was run");
        return false;
    }
    if which("ip").is_none() {
        eprintln!("{name} bench: `ip` (iproute2) not found; nothing was run");
        return false;
    }
    true
}

/// The start of a run that makes namespaces: the signal handlers, then what killed earlier runs
/// left removed (`clean_stale`), then this run's scratch directory `<tmp_prefix><pid>`, removed
/// on drop. None (having said why) when the directory cannot be made.
pub fn scratch_dir(ns_prefix: &str, tmp_prefix: &str) -> Option<TempDir> {
    install_signal_handlers();
    clean_stale(ns_prefix, tmp_prefix);
    let dir = std::env::temp_dir().join(format!("{tmp_prefix}{}", std::process::id()));
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("{} bench: creating {}: {e}", bench_name(), dir.display());
        return None;
    }
    Some(TempDir(dir))
}

/// What every scenario of a run that makes namespaces is given.
pub struct Run {
    /// The bench's pid, in the names of the namespaces.
    pub pid: u32,
    /// The run's scratch directory (see `scratch_dir`).
    pub dir: PathBuf,
    /// How long each test lasts.
    pub seconds: u64,
    /// The netyard binary, or why there is none.
    pub netyard: Result<PathBuf, String>,
    /// This executable, for the hidden child modes.
    pub self_exe: PathBuf,
}

impl Run {
    pub fn new(dir: &TempDir, seconds: u64, netyard: Result<PathBuf, String>) -> Run {
        Run {
            pid: std::process::id(),
            dir: dir.0.clone(),
            seconds,
            netyard,
            self_exe: self_exe(),
        }
    }
}

/// The netyard binary when a scenario `needs` it (found or built), else Err("not needed").
pub fn netyard_if(needs: bool) -> Result<PathBuf, String> {
    if needs {
        locate_or_build_netyard()
    } else {
        Err("not needed".into())
    }
}

/// This executable, which the hidden child modes re-run inside the namespaces.
pub fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// Calls `each(scenario, run, start)` for every scenario in turn, `runs` times, until
/// interrupted, after the progress line `[run R/N] NAME ...`.
pub fn each_run<S: Copy>(
    runs: usize,
    scenarios: &[S],
    name: impl Fn(S) -> String,
    mut each: impl FnMut(S, usize, Instant),
) {
    'runs: for run in 1..=runs {
        for &s in scenarios {
            if interrupted() {
                break 'runs;
            }
            eprintln!("[run {run}/{runs}] {} ...", name(s));
            each(s, run, Instant::now());
        }
    }
}

/// `  NAME (T s): metric=value ...` on stderr: what a scenario measured, in the time since `t0`.
pub fn print_summary(name: &str, t0: Instant, figures: &[(&str, f64)]) {
    let summary: Vec<String> = figures.iter().map(|(m, v)| format!("{m}={v:.2}")).collect();
    eprintln!(
        "  {name} ({:.0} s): {}",
        t0.elapsed().as_secs_f64(),
        summary.join(" ")
    );
}

/// The notes of a scenario's run: on stderr now (`  NAME: NOTE`), kept for the report as
/// `NAME run R: NOTE`.
pub fn keep_notes(name: &str, run: usize, new: Vec<String>, notes: &mut Vec<String>) {
    for n in new {
        eprintln!("  {name}: {n}");
        notes.push(format!("{name} run {run}: {n}"));
    }
}

/// Writes the JSON report (pretty, with a final newline).
pub fn write_json(path: &Path, doc: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The exit status of a run: 130 when interrupted, else 1 when anything `failed`, else 0.
pub fn exit_status(failed: bool) -> i32 {
    if interrupted() {
        130
    } else {
        i32::from(failed)
    }
}

/// The end of a run that made namespaces: the JSON report written when asked for (`json`), a
/// word on an interruption, the exit status.
pub fn finish(json: Option<&Path>, doc: &Value, failed: bool) -> i32 {
    let name = bench_name();
    if let Some(path) = json {
        if let Err(e) = write_json(path, doc) {
            eprintln!("{name} bench: {e}");
            return 1;
        }
        eprintln!("{name} bench: results written to {}", path.display());
    }
    if interrupted() {
        eprintln!("{name} bench: interrupted; everything it set up was removed");
    }
    exit_status(failed)
}

/// The port kind a bench attaches endpoints as (`attach --kind`), shared by the scale and
/// restart benches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndpointKind {
    Tap,
    Veth,
}

impl EndpointKind {
    pub fn arg(self) -> &'static str {
        match self {
            EndpointKind::Tap => "tap",
            EndpointKind::Veth => "veth",
        }
    }

    /// `--kind tap,veth`: a comma list, each kind once, in the order given.
    pub fn parse_list(value: &str) -> Result<Vec<EndpointKind>, String> {
        let mut kinds = Vec::new();
        for k in value.split(',') {
            let k = match k.trim() {
                "tap" => EndpointKind::Tap,
                "veth" => EndpointKind::Veth,
                other => return Err(format!("unknown kind {other:?} (tap, veth)")),
            };
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Ok(kinds)
    }
}
