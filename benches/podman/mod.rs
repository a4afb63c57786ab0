//! Rootless Podman 4.3 for the egress bench's runtime scenarios (`podman-*`): the container's
//! network helper is Podman's own slirp4netns or netyard's slirp4netns front (a link named
//! `slirp4netns` passed as `--network-cmd-path`), started by Podman as it starts it for every
//! rootless container.
//!
//! Podman runs as an unprivileged user (`$NETYARD_BENCH_USER`, default `nyrootless`, the
//! tests' user: created with a subordinate id range when missing, as the tests do) in the
//! scenario's "host" network namespace, inside `unshare --pid --fork --kill-child --mount-proc
//! catatonit`: one PID namespace (every process Podman leaves, its pause process and conmon
//! included, dies with its init, and the init dies with the bench: PR_SET_PDEATHSIG) and a
//! private mount namespace with a private /dev/shm (Podman's rootless lock). Storage, runroot,
//! tmpdir, HOME and XDG_RUNTIME_DIR are in the scenario's directory; the image is imported from
//! busybox-static. The container's network namespace gets a name (`ip netns attach`), so the
//! bench's load runs in it as in the other scenarios' container namespace.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{guard, run_child, stop, which, Output};

/// The user Podman runs as, unless `$NETYARD_BENCH_USER` names another.
const DEFAULT_USER: &str = "nyrootless";
/// How long one podman call may take. (Podman refuses a runroot longer than 50 characters:
/// the directories are short, `DIR/x/r`; and API sockets, `DIR/t/ID.net`, must fit in 108.)
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);
/// The image's name.
const IMAGE: &str = "localhost/nybench";
/// The container's command: a shell that exits on SIGTERM.
const IDLE: &str = "trap 'exit 0' TERM; sleep 100000 & wait";

/// What the podman scenarios need, or what is missing (naming the package).
pub fn check_programs() -> Result<(), String> {
    for (prog, package) in [
        ("podman", "podman"),
        ("conmon", "conmon"),
        ("runc", "runc"),
        ("catatonit", "catatonit"),
        ("newuidmap", "uidmap"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("tar", "tar"),
    ] {
        if which(prog).is_none() {
            return Err(format!("{prog} not found (apt-get install {package})"));
        }
    }
    let bb = Path::new("/bin/busybox");
    let out = run_child(Command::new("ldd").arg(bb), Duration::from_secs(10), false)
        .map(|o| format!("{}{}", o.stdout, o.stderr))
        .unwrap_or_default();
    if !bb.is_file() || !(out.contains("not a dynamic") || out.contains("statically linked")) {
        return Err(
            "a static /bin/busybox is needed for the image (apt-get install busybox-static)".into(),
        );
    }
    Ok(())
}

/// The bench user's uid and gid; made (with subordinate ids) when missing, and /dev/net/tun
/// opened up to it when it is not (both as the tests do).
fn bench_user() -> Result<(String, u32, u32), String> {
    let user = std::env::var("NETYARD_BENCH_USER").unwrap_or_else(|_| DEFAULT_USER.to_string());
    let id = |flag: &str| -> Option<u32> {
        run_child(
            Command::new("id").args([flag, &user]),
            Duration::from_secs(10),
            false,
        )
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| o.stdout.trim().parse().ok())
    };
    if id("-u").is_none() {
        eprintln!("egress bench: creating the user {user} for rootless Podman");
        sh(
            Command::new("useradd").args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &user,
            ]),
            "useradd",
        )?;
    }
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !subuid.lines().any(|l| l.starts_with(&format!("{user}:"))) {
        eprintln!("egress bench: giving {user} the subordinate ids 200000-265535");
        sh(
            Command::new("usermod").args([
                "--add-subuids",
                "200000-265535",
                "--add-subgids",
                "200000-265535",
                &user,
            ]),
            "usermod",
        )?;
    }
    let tun = Path::new("/dev/net/tun");
    let mode = fs::metadata(tun)
        .map_err(|e| format!("/dev/net/tun: {e}"))?
        .permissions()
        .mode();
    if mode & 0o666 != 0o666 {
        eprintln!("egress bench: chmod 0666 /dev/net/tun (rootless helpers open it)");
        fs::set_permissions(tun, fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("chmod 0666 /dev/net/tun: {e}"))?;
    }
    match (id("-u"), id("-g")) {
        (Some(u), Some(g)) => Ok((user, u, g)),
        _ => Err(format!("no uid/gid for {user}")),
    }
}

fn sh(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let o = run_child(cmd, PODMAN_TIMEOUT, false).map_err(|e| format!("{what}: {e}"))?;
    if !o.status.success() {
        return Err(format!("{what} failed ({}): {}", o.status, o.stderr.trim()));
    }
    Ok(o)
}

/// One rootless Podman with its namespaces and directory; dropping it removes its containers
/// and ends every process it left.
pub struct RootlessPodman {
    dir: PathBuf,
    uid: u32,
    gid: u32,
    /// `unshare ... catatonit -- sleep`.
    holder: Option<Child>,
    /// The PID namespace's init.
    init: u32,
    /// The network namespace Podman runs in ("host").
    netns: String,
    /// `--network-cmd-path`, when the helper is netyard's front.
    cmd_path: Option<PathBuf>,
}

impl RootlessPodman {
    /// Podman in `dir` (made), running in network namespace `host_ns`; its helper is
    /// `netyard`'s front when given, else the slirp4netns on PATH.
    pub fn start(
        dir: &Path,
        host_ns: &str,
        netyard: Option<&Path>,
    ) -> Result<RootlessPodman, String> {
        check_programs()?;
        let (_, uid, gid) = bench_user()?;
        for d in [
            "home",
            "xdg",
            "tmp",
            "rootfs/bin",
            "rootfs/etc",
            "rootfs/tmp",
            "rootfs/proc",
            "rootfs/sys",
            "rootfs/dev",
        ] {
            fs::create_dir_all(dir.join(d))
                .map_err(|e| format!("mkdir {}/{d}: {e}", dir.display()))?;
        }
        let cmd_path = match netyard {
            Some(bin) => {
                let link = dir.join("slirp4netns");
                std::os::unix::fs::symlink(bin, &link)
                    .map_err(|e| format!("linking {}: {e}", link.display()))?;
                Some(link)
            }
            None => None,
        };
        fs::write(
            dir.join("containers.conf"),
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .map_err(|e| format!("writing containers.conf: {e}"))?;
        // The image: busybox-static with the applets the container runs.
        fs::copy("/bin/busybox", dir.join("rootfs/bin/busybox"))
            .map_err(|e| format!("copying /bin/busybox: {e}"))?;
        for a in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(a))
                .map_err(|e| format!("applet link: {e}"))?;
        }
        let tar = dir.join("rootfs.tar");
        sh(
            Command::new("tar")
                .arg("-C")
                .arg(dir.join("rootfs"))
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            "tar",
        )?;
        // The scratch directories above it are root's 0700 or 0755: let the user through.
        let mut p = dir.to_path_buf();
        while let Some(parent) = p.parent() {
            if parent == Path::new("/") || parent == std::env::temp_dir() {
                break;
            }
            let _ = fs::set_permissions(parent, fs::Permissions::from_mode(0o755));
            p = parent.to_path_buf();
        }
        sh(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(dir),
            "chown",
        )?;
        let _ = fs::set_permissions(dir.join("x"), fs::Permissions::from_mode(0o700));

        let mut c = Command::new("unshare");
        c.args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "catatonit",
            "--",
            "sleep",
            "infinity",
        ]);
        guard(&mut c, None);
        let holder = c
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting unshare: {e}"))?;
        let upid = holder.id();
        let mut p = RootlessPodman {
            dir: dir.to_path_buf(),
            uid,
            gid,
            holder: Some(holder),
            init: 0,
            netns: format!("/run/netns/{host_ns}"),
            cmd_path,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kids = fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            let init: u32 = kids
                .split_whitespace()
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            if init != 0
                && fs::read_to_string(format!("/proc/{init}/comm"))
                    .is_ok_and(|c| c.trim() == "catatonit")
            {
                p.init = init;
                break;
            }
            if Instant::now() >= deadline {
                return Err("`unshare --pid --fork --mount-proc catatonit` did not start".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        sh(
            Command::new("nsenter").args([
                "-t",
                &p.init.to_string(),
                "-m",
                "sh",
                "-c",
                "mount -n -t tmpfs -o mode=1777 nyb-podman /dev/shm && mount -n --make-rshared /",
            ]),
            "private /dev/shm for podman",
        )?;
        let tar = tar.to_string_lossy().into_owned();
        p.ok(&[
            "import",
            "--quiet",
            "--change",
            "ENV PATH=/bin",
            &tar,
            IMAGE,
        ])?;
        Ok(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init.to_string(), "-m", "-p"])
            .arg(format!("--net={}", self.netns))
            .arg("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--inh-caps=-all", "--", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.dir.join("home").display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.dir.join("x").display()))
            .arg(format!(
                "CONTAINERS_CONF={}",
                self.dir.join("containers.conf").display()
            ))
            .arg(format!("TMPDIR={}", self.dir.join("t").display()))
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("x/r"))
            .arg("--tmpdir")
            .arg(self.dir.join("t"))
            .args(["--storage-driver", "vfs"]);
        if let Some(p) = &self.cmd_path {
            c.arg("--network-cmd-path").arg(p);
        }
        c.args(args);
        guard(&mut c, None);
        c
    }

    /// A podman call that must succeed; its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> Result<String, String> {
        let what = format!("podman {}", args.first().copied().unwrap_or(""));
        Ok(sh(&mut self.command(args), &what)?
            .stdout
            .trim()
            .to_string())
    }

    /// `podman run -d` of an idle container named `name` on `network` (slirp4netns with its
    /// options) with `publish` (`-p` SPECs); returns its first process's pid as the machine
    /// sees it.
    pub fn run_idle(&self, name: &str, network: &str, publish: &[String]) -> Result<u32, String> {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        for p in publish {
            args.extend(["-p", p.as_str()]);
        }
        args.extend([IMAGE, "sh", "-c", IDLE]);
        self.ok(&args)?;
        let inner: u32 = self
            .ok(&["inspect", "-f", "{{.State.Pid}}", name])?
            .parse()
            .map_err(|e| format!("podman inspect pid: {e}"))?;
        self.host_pid(inner)
            .ok_or_else(|| format!("no process {inner} in podman's PID namespace"))
    }

    /// The live processes of the container's network helper: every process of the PID
    /// namespace whose program is named slirp4netns (Podman's own, or the link to netyard).
    pub fn helper_pids(&self) -> Vec<u32> {
        let Ok(ns) = fs::read_link(format!("/proc/{}/ns/pid", self.init)) else {
            return Vec::new();
        };
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() == Some(&ns))
            .filter(|pid| {
                let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let argv0 = argv.split(|b| *b == 0).next().unwrap_or_default();
                Path::new(std::ffi::OsStr::from_bytes(argv0)).file_name()
                    == Some(std::ffi::OsStr::new("slirp4netns"))
            })
            .collect()
    }

    /// The machine's pid of process `inner` as Podman's PID namespace numbers it: the process
    /// whose `NSpid` has `inner` at that namespace's level (the init's is `HOSTPID 1`) and which
    /// descends from the init (a container has a PID namespace of its own below it).
    fn host_pid(&self, inner: u32) -> Option<u32> {
        let field = |pid: u32, key: &str| -> Option<Vec<u32>> {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with(key))?;
            Some(
                line[key.len()..]
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect(),
            )
        };
        let level = field(self.init, "NSpid:")?.len().checked_sub(1)?;
        let descends = |mut pid: u32| {
            for _ in 0..64 {
                if pid == self.init {
                    return true;
                }
                match field(pid, "PPid:").and_then(|v| v.first().copied()) {
                    Some(pp) if pp > 1 => pid = pp,
                    _ => return false,
                }
            }
            false
        };
        fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let nspid = field(pid, "NSpid:")?;
            (nspid.get(level) == Some(&inner) && descends(pid)).then_some(pid)
        })
    }
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            if matches!(h.try_wait(), Ok(None)) {
                let _ = run_child(
                    &mut self.command(&["rm", "--force", "--time", "0", "--all"]),
                    PODMAN_TIMEOUT,
                    false,
                );
            }
            // unshare --kill-child: its end ends the init, and so the PID namespace.
            stop(&mut h, Duration::from_secs(3));
        }
        // Storage holds files of the user's subordinate ids: removed as root.
        let _ = fs::remove_dir_all(&self.dir);
    }
}
