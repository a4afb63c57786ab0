//! `netyard node-init`: the holder process of a node. The daemon starts it; it makes the
//! node's namespaces (a network namespace, and a user namespace first when it lacks
//! CAP_SYS_ADMIN, which a rootless daemon does), sets `lo` up and the node's sysctls, says
//! "ready" on its stdout and then runs the node's command, starting it again when it exits
//! (policy "always", with a back-off) until SIGTERM. The namespaces live as long as this
//! process, whatever the command does, so endpoints attached by its pid stay.
//!
//! It runs before any thread exists (`front_door` dispatches it ahead of the tokio runtime),
//! which `unshare(CLONE_NEWUSER)` requires, and waits for signals with `sigtimedwait` on a
//! blocked set: no handler, no thread.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What the daemon passes on the command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InitArgs {
    pub name: String,
    pub restart: bool,
    pub sysctls: Vec<(String, String)>,
    /// `--parent PID`: an ephemeral daemon's pid. The node ends when its holder is no longer
    /// that process's child (the daemon died, even by SIGKILL, and the holder was reparented).
    pub parent: Option<i32>,
    pub command: Vec<String>,
}

/// `--name N [--restart always|never] [--parent PID] [--sysctl K=V]... -- CMD...` (written by the daemon,
/// so any deviation is a bug, reported as such).
pub fn parse_args(args: &[String]) -> Result<InitArgs, String> {
    let mut a = InitArgs {
        restart: true,
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--name" => a.name = it.next().ok_or("--name needs a value")?.clone(),
            "--restart" => {
                a.restart = match it.next().map(String::as_str) {
                    Some("always") => true,
                    Some("never") => false,
                    other => return Err(format!("--restart {other:?}")),
                }
            }
            "--parent" => {
                let p = it.next().ok_or("--parent needs a pid")?;
                a.parent = Some(p.parse().map_err(|_| format!("--parent {p:?}"))?);
            }
            "--sysctl" => {
                let kv = it.next().ok_or("--sysctl needs K=V")?;
                let (k, v) = kv.split_once('=').ok_or("--sysctl needs K=V")?;
                a.sysctls.push((k.to_string(), v.to_string()));
            }
            "--" => {
                a.command = it.cloned().collect();
                break;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.name.is_empty() {
        return Err("--name missing".into());
    }
    Ok(a)
}

/// The sysctl's file under /proc/sys, or why it is refused: only `net.*` keys belong to a
/// network namespace (anything else would change the whole machine), no path tricks.
pub fn sysctl_path(key: &str) -> Result<String, String> {
    let ok = key.starts_with("net.")
        && key.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !ok {
        return Err(format!(
            "{key:?} is not a network sysctl such as net.ipv4.ip_forward"
        ));
    }
    Ok(format!("/proc/sys/{}", key.replace('.', "/")))
}

/// Back-off before starting the command again: 1 s doubling to 30 s, back to 1 s after a run
/// of 10 s or more.
pub fn backoff(previous: Duration, ran: Duration) -> Duration {
    if ran >= Duration::from_secs(10) || previous.is_zero() {
        Duration::from_secs(1)
    } else {
        (previous * 2).min(Duration::from_secs(30))
    }
}

/// How often the holder of an ephemeral daemon's node looks whether the daemon is alive.
const PARENT_CHECK: Duration = Duration::from_secs(1);

/// Is this process no longer `parent`'s child?
fn orphaned(parent: i32) -> bool {
    nix::unistd::getppid().as_raw() != parent
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let a = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            println!("error: node-init: {e}");
            return 2;
        }
    };
    let mut out = std::io::stdout();
    if let Err(e) = setup(&a) {
        let _ = writeln!(out, "error: {e}");
        return 1;
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    // The daemon reads only that line: the command's output goes to our stderr (the daemon's).
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both are valid fds of this process; dup2 only replaces fd 1.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    supervise(&a)
}

/// Namespaces, `lo`, sysctls.
fn setup(a: &InitArgs) -> Result<(), String> {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        if e != nix::errno::Errno::EPERM {
            return Err(format!("unshare(CLONE_NEWNET): {e}"));
        }
        // No CAP_SYS_ADMIN: a user namespace of our own first, our uid and gid mapped to
        // root in it (what one unprivileged process may map for itself).
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWUSER|CLONE_NEWNET): {e}"))?;
        std::fs::write("/proc/self/setgroups", "deny")
            .map_err(|e| format!("/proc/self/setgroups: {e}"))?;
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .map_err(|e| format!("/proc/self/uid_map: {e}"))?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .map_err(|e| format!("/proc/self/gid_map: {e}"))?;
    }
    lo_up()?;
    for (k, v) in &a.sysctls {
        let p = sysctl_path(k)?;
        std::fs::write(&p, v).map_err(|e| format!("sysctl {k}={v}: {e}"))?;
    }
    // Orphans of the command (a daemonising server) become our children, so we reap them
    // and can end them with the node.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers and changes only this
    // process's attribute.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    Ok(())
}

/// `lo` up over rtnetlink, on a current-thread runtime made for it (no thread is spawned).
fn lo_up() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        let task = tokio::spawn(conn);
        let r = handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(|e| format!("setting lo up: {e}"));
        task.abort();
        r
    })
}

fn blocked() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGINT);
    s.add(Signal::SIGCHLD);
    s
}

/// Waits for one of `set` for at most `timeout`; None on timeout.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: `set` is a valid sigset_t, the info pointer may be null, `ts` lives on the stack
    // for the call.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if n < 0 {
        None
    } else {
        Signal::try_from(n).ok()
    }
}

fn spawn(a: &InitArgs) -> Option<(Pid, Instant)> {
    use std::os::unix::process::CommandExt;
    let (prog, rest) = a.command.split_first()?;
    let mut c = std::process::Command::new(prog);
    c.args(rest)
        .stdin(std::process::Stdio::null())
        // Its own process group, so the node's end reaches its children too.
        .process_group(0);
    if let Ok(e) = std::io::stderr().as_fd_dup() {
        c.stdout(e);
    }
    match c.spawn() {
        Ok(ch) => {
            let pid = Pid::from_raw(i32::try_from(ch.id()).unwrap_or(0));
            // Reaped through waitpid below; the Child handle is not needed.
            std::mem::forget(ch);
            Some((pid, Instant::now()))
        }
        Err(e) => {
            eprintln!("netyard node {}: starting {prog}: {e}", a.name);
            None
        }
    }
}

trait DupFd {
    fn as_fd_dup(&self) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl DupFd for std::io::Stderr {
    fn as_fd_dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}

/// Runs the command until SIGTERM/SIGINT, then ends its process group (SIGTERM, SIGKILL
/// after 3 s) and every remaining child.
fn supervise(a: &InitArgs) -> i32 {
    let set = blocked();
    if set.thread_block().is_err() {
        eprintln!("netyard node {}: cannot block signals", a.name);
        return 1;
    }
    let mut child = spawn(a);
    let mut delay = Duration::ZERO;
    let mut restart_at: Option<Instant> = if child.is_none() && a.restart && !a.command.is_empty() {
        delay = backoff(delay, Duration::ZERO);
        Some(Instant::now() + delay)
    } else {
        None
    };
    loop {
        if a.parent.is_some_and(orphaned) {
            eprintln!(
                "netyard node {}: the daemon that started it is gone; ending the node",
                a.name
            );
            break;
        }
        let mut timeout = restart_at
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        if a.parent.is_some() {
            // No signal tells a process its parent died without PR_SET_PDEATHSIG, which
            // fires when the forking *thread* ends (a tokio worker may end first): look.
            timeout = timeout.min(PARENT_CHECK);
        }
        match wait_signal(&set, timeout) {
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => break,
            Some(Signal::SIGCHLD) => {
                while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    let Some(pid) = st.pid() else { break };
                    if let Some((cpid, started)) = child {
                        if pid == cpid {
                            let how = match st {
                                WaitStatus::Exited(_, c) => format!("exited with status {c}"),
                                WaitStatus::Signaled(_, s, _) => format!("killed by {s}"),
                                other => format!("{other:?}"),
                            };
                            child = None;
                            if a.restart {
                                delay = backoff(delay, started.elapsed());
                                eprintln!(
                                    "netyard node {}: command {how}; starting it again in {delay:?}",
                                    a.name
                                );
                                restart_at = Some(Instant::now() + delay);
                            } else {
                                eprintln!("netyard node {}: command {how}", a.name);
                            }
                        }
                    }
                }
            }
            _ => {
                if restart_at.is_some_and(|t| t <= Instant::now()) {
                    restart_at = None;
                    child = spawn(a);
                    if child.is_none() {
                        delay = backoff(delay, Duration::ZERO);
                        restart_at = Some(Instant::now() + delay);
                    }
                }
            }
        }
    }
    stop(child.map(|(p, _)| p), &set);
    0
}

/// Ends the command's group, then every child left (subreaper), within about 3 s.
fn stop(child: Option<Pid>, set: &SigSet) {
    use nix::sys::signal::{kill, killpg};
    if let Some(p) = child {
        let _ = killpg(p, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        // Reap what exited; ECHILD: nothing left.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(_) => return,
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        wait_signal(set, Duration::from_millis(100));
    }
    if let Some(p) = child {
        let _ = killpg(p, Signal::SIGKILL);
    }
    // Whatever else is ours (children that left the group, orphans we adopted).
    let me = std::process::id();
    let kids =
        std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
    for k in kids
        .split_ascii_whitespace()
        .filter_map(|k| k.parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(k), Signal::SIGKILL);
    }
    while let Ok(st) = waitpid(None, None) {
        if st.pid().is_none() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_read_back_what_the_daemon_writes() {
        let a = parse_args(&s(&[
            "--name",
            "r1",
            "--restart",
            "never",
            "--parent",
            "4242",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--",
            "sleep",
            "--",
            "9",
        ]))
        .expect("parse");
        assert_eq!(
            a,
            InitArgs {
                name: "r1".into(),
                restart: false,
                sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
                parent: Some(4242),
                command: s(&["sleep", "--", "9"]),
            }
        );
        assert!(parse_args(&s(&["--restart", "sometimes", "--name", "x"])).is_err());
        assert!(parse_args(&s(&["--", "sleep"])).is_err(), "no name");
        assert!(parse_args(&s(&["--name", "x", "--parent", "me"])).is_err());
    }

    #[test]
    fn only_network_sysctls_without_path_tricks() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").as_deref(),
            Ok("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.all.rp_filter").as_deref(),
            Ok("/proc/sys/net/ipv4/conf/all/rp_filter")
        );
        for bad in [
            "kernel.pid_max",
            "net..x",
            "net.ipv4/../../kernel",
            "net.",
            "vm.swappiness",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets_after_a_long_run() {
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            d = backoff(d, Duration::from_millis(10));
            seen.push(d.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(d, Duration::from_secs(11)), Duration::from_secs(1));
    }
}
