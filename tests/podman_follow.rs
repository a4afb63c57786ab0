//! Endpoints follow a real runtime's container (issue 10): a root Podman container started
//! with `--network none` and attached by PID leaves `ps` when `podman stop` ends it; after
//! `podman start` it is attached again under the same name and gets the same address back;
//! `podman rm -f` leaves nothing behind.
//!
//! Podman runs the way ../shared/RUNTIMES.md says it must on these machines: a private
//! containers.conf through CONTAINERS_CONF (runc, nofile/nproc ulimits, cgroupfs, file events, a
//! private network config directory), private vfs storage (`--root`, `--runroot`, `--tmpdir` in
//! the test's directory) and an image imported from busybox-static (nothing can be pulled).
//! Podman, conmon and runc run in a mount namespace of their own, held open by a `sleep`, in
//! which /run, /var/lib and /dev/shm are private tmpfs: what they would write machine-wide
//! (/run/containers, /run/runc, /var/lib/containers/cache, /dev/shm/libpod_lock) vanishes with
//! that namespace. The containers' cgroups live under a parent named after the test, removed at
//! the end. Podman itself runs in the machine's network namespace (runc cannot run inside
//! `ip netns exec`), but `--network none` gives each container a namespace of its own holding
//! only `lo`: the only traffic is between that namespace and the test's peer namespace, through
//! the daemon in the lab's host namespace.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// How long the endpoint of a container that went away may stay in `ps` (generous, for a
/// loaded machine; it takes milliseconds).
const GONE_BOUND: Duration = Duration::from_secs(15);

/// How long one podman call may take.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// The container's command: a shell that exits on SIGTERM (busybox `sleep` as PID 1 would
/// ignore it, and `podman stop` would wait for its timeout).
const CONTAINER_CMD: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

/// The busybox applets the container uses.
const APPLETS: &[&str] = &["sh", "sleep", "ping", "ip", "cat"];

/// Fails unless `/bin/busybox` is a static binary (busybox-static: the image has no C library).
fn require_static_busybox() {
    if !Path::new("/bin/busybox").is_file() {
        panic!(
            "this test needs a static `/bin/busybox` to build its image: install it with \
             `apt-get install busybox-static`"
        );
    }
    let o = cmd(&["ldd", "/bin/busybox"], CLI_TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !(text.contains("not a dynamic executable") || text.contains("statically linked")) {
        panic!(
            "/bin/busybox is dynamically linked (the `busybox` package); this test copies it into \
             an image without a C library: install `busybox-static` instead:\n{text}"
        );
    }
}

/// Root Podman with private configuration, storage and mount namespace (see the module's
/// comment). Dropping it removes every container and image it made, kills whatever is left in
/// its cgroups, removes those cgroups and its directory.
struct Podman {
    dir: PathBuf,
    conf: PathBuf,
    /// The cgroup parent of the containers (and of conmon), one directory in each hierarchy.
    cgroup: String,
    /// `unshare --mount sleep`: holds the mount namespace every podman call enters.
    holder: Option<Bg>,
}

impl Podman {
    fn new(lab: &Lab) -> Podman {
        let dir = lab.dir.join("podman");
        for d in ["tmp", "networks", "rootfs/bin"] {
            std::fs::create_dir_all(dir.join(d))
                .unwrap_or_else(|e| panic!("mkdir {}/{d}: {e}", dir.display()));
        }
        let conf = dir.join("containers.conf");
        let mut p = Podman {
            conf,
            cgroup: format!("nyt{}podman", lab.id),
            holder: None,
            dir,
        };
        std::fs::write(
            &p.conf,
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n",
                p.dir.join("networks").display()
            ),
        )
        .expect("writing containers.conf");

        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sleep", "3600"]);
        let holder = Bg::spawn(&mut c, &p.dir.join("holder.log"));
        let pid = holder.pid();
        p.holder = Some(holder);
        let mnt = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
        let own = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            let m = mnt(&pid.to_string());
            m.is_some() && m != mnt("self")
        });
        if !own {
            lab.fail("`unshare --mount sleep` did not enter a mount namespace of its own");
        }
        // `-n`: no /run/mount/utab, which mount would otherwise create in the machine's /run.
        let o = cmd(
            &[
                "nsenter",
                "-t",
                &pid.to_string(),
                "-m",
                "sh",
                "-c",
                "mount -n -t tmpfs -o mode=755 nyt-podman /run && \
                 mount -n -t tmpfs -o mode=755 nyt-podman /var/lib && \
                 mount -n -t tmpfs -o mode=1777 nyt-podman /dev/shm",
            ],
            CLI_TIMEOUT,
        );
        if !o.status.success() {
            lab.fail(&format!(
                "private /run, /var/lib, /dev/shm for podman:\n{}",
                show(&o)
            ));
        }
        p
    }

    fn holder_pid(&self) -> Option<u32> {
        self.holder.as_ref().map(Bg::pid)
    }

    /// `nsenter -t HOLDER -m podman --root ... ARGS` with the private containers.conf.
    fn command(&self, args: &[&str]) -> Command {
        let pid = self.holder_pid().expect("podman's mount namespace");
        let mut c = Command::new("nsenter");
        c.args(["-t", &pid.to_string(), "-m", "podman"])
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .env("TMPDIR", self.dir.join("tmp"))
            .env_remove("CONTAINERS_STORAGE_CONF")
            .env_remove("CONTAINER_HOST");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), PODMAN_TIMEOUT)
    }

    /// A podman call that must succeed; its stdout, trimmed.
    fn ok(&self, lab: &Lab, args: &[&str]) -> String {
        let o = self.run(args);
        if !o.status.success() {
            lab.fail(&format!(
                "`podman {}` failed:\n{}",
                args.join(" "),
                show(&o)
            ));
        }
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Imports `localhost/NAME` from a rootfs of busybox-static and a few applet links.
    fn import_busybox(&self, lab: &Lab, name: &str) {
        let rootfs = self.dir.join("rootfs");
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet link");
        }
        let tar = self.dir.join("rootfs.tar");
        cmd_ok(&[
            "tar",
            "-C",
            &rootfs.to_string_lossy(),
            "-cf",
            &tar.to_string_lossy(),
            ".",
        ]);
        let image = format!("localhost/{name}");
        self.ok(
            lab,
            &[
                "import",
                "--quiet",
                "--change",
                "ENV PATH=/bin",
                &tar.to_string_lossy(),
                &image,
            ],
        );
    }

    /// The PID of container `name`'s first process (0 when it is not running).
    fn pid(&self, lab: &Lab, name: &str) -> u32 {
        let out = self.ok(lab, &["inspect", "-f", "{{.State.Pid}}", name]);
        out.parse()
            .unwrap_or_else(|e| lab.fail(&format!("podman inspect pid {out:?}: {e}")))
    }

    /// The test's cgroup directories (cgroup v2 at the root, or one per v1 hierarchy).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut v = vec![root.join(&self.cgroup)];
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                v.push(e.path().join(&self.cgroup));
            }
        }
        v.into_iter().filter(|p| p.is_dir()).collect()
    }
}

/// `dir` and every directory below it, deepest first.
fn dirs_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs_post_order(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

impl Drop for Podman {
    fn drop(&mut self) {
        if self.holder.as_mut().is_some_and(Bg::running) {
            for args in [
                &["rm", "--force", "--time", "0", "--all"][..],
                &["rmi", "--force", "--all"][..],
            ] {
                let o = self.run(args);
                if !o.status.success() {
                    eprintln!("cleanup: podman {}: {}", args.join(" "), show(&o));
                }
            }
        }
        // Whatever is left in the test's cgroups (a conmon, a container podman lost) goes.
        let mut dirs = Vec::new();
        for d in self.cgroup_dirs() {
            dirs_post_order(&d, &mut dirs);
        }
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                eprintln!("cleanup: killing {pid}, left in {}", d.display());
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(mut h) = self.holder.take() {
            h.stop(Duration::from_secs(3));
        }
        let removed = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            dirs.iter()
                .all(|d| !d.exists() || std::fs::remove_dir(d).is_ok())
        });
        if !removed {
            let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
            eprintln!("cleanup: cgroups left: {left:?}");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: rm -r {}: {e}", self.dir.display());
        }
    }
}

/// Waits (up to [`GONE_BOUND`]) until `ps --json` lists no endpoint named `name`; returns how
/// long it took.
fn wait_gone(lab: &Lab, name: &str, after: &str) -> Duration {
    let t0 = Instant::now();
    let gone = wait_until(GONE_BOUND, Duration::from_millis(20), || {
        let ps = lab.ny_json(&["ps", "--json"]);
        !ps.as_array()
            .is_some_and(|a| a.iter().any(|e| e["name"] == name))
    });
    if !gone {
        lab.fail(&format!(
            "endpoint {name} still in `ps` {GONE_BOUND:?} after {after}"
        ));
    }
    t0.elapsed()
}

/// Checks that the container's `eth0` (seen from its PID) carries `ip`.
fn check_container_address(lab: &Lab, pid: u32, ip: &str) {
    let o = cmd(
        &[
            "nsenter",
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ],
        CLI_TIMEOUT,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || !out.contains(&format!(" {ip}/")) {
        lab.fail(&format!(
            "the container (pid {pid}) has no eth0 with {ip}:\n{}",
            show(&o)
        ));
    }
}

/// Traffic both ways: the peer namespace pings the container, the container (busybox ping,
/// NET_RAW) pings the peer.
fn check_traffic(lab: &Lab, podman: &Podman, peer_ns: &str, peer_ip: &str, name: &str, ip: &str) {
    lab.assert_ping(peer_ns, ip);
    let o = podman.run(&["exec", name, "ping", "-c", "2", "-W", "3", peer_ip]);
    if !o.status.success() {
        lab.fail(&format!(
            "ping from the container {name} to the peer {peer_ip} failed:\n{}",
            show(&o)
        ));
    }
}

fn reaped(lab: &Lab, net: &str) -> u64 {
    let info = lab.ny_json(&["network", "inspect", net]);
    info["endpoints_reaped"]
        .as_u64()
        .unwrap_or_else(|| lab.fail(&format!("no endpoints_reaped in network inspect: {info}")))
}

#[test]
fn a_podman_container_is_followed_through_stop_start_and_rm() {
    require_root();
    require_program("podman", "podman");
    require_program("runc", "runc");
    require_program("conmon", "conmon");
    require_program("nsenter", "util-linux");
    require_program("unshare", "util-linux");
    require_program("tar", "tar");
    require_static_busybox();
    let t_test = Instant::now();

    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("n", &sub, &[]);
    let peer_ns = lab.ns("peer");
    let peer_ip = lab.attach(&net, &peer_ns, "peer", &[])["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Declared after the lab, so dropped (containers removed) before the daemon stops.
    let podman = Podman::new(&lab);
    let image = format!("nyt{}img", lab.id);
    let name = format!("nyt{}c", lab.id);
    podman.import_busybox(&lab, &image);
    let image = format!("localhost/{image}");

    // Run and attach by PID.
    let t = Instant::now();
    podman.ok(
        &lab,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--cap-add",
            "NET_RAW",
            "--cgroup-parent",
            &format!("/{}", podman.cgroup),
            "--name",
            &name,
            &image,
            "sh",
            "-c",
            CONTAINER_CMD,
        ],
    );
    let pid1 = podman.pid(&lab, &name);
    println!("podman run took {:?}; container pid {pid1}", t.elapsed());
    assert_ne!(pid1, 0, "podman says the container does not run");
    let ns_file = std::fs::File::open(format!("/proc/{pid1}/ns/net"))
        .unwrap_or_else(|e| lab.fail(&format!("open /proc/{pid1}/ns/net: {e}")));
    lab.ny_ok(&["attach", &net, "--pid", &pid1.to_string(), "--name", &name]);
    let ip = lab.endpoint(&net, &name)["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    check_container_address(&lab, pid1, &ip);
    check_traffic(&lab, &podman, &peer_ns, &peer_ip, &name, &ip);
    println!("{name} attached as {ip}; traffic flows both ways");

    // podman stop: the endpoint leaves, the TAP releases the namespace.
    let t = Instant::now();
    podman.ok(&lab, &["stop", "--time", "10", &name]);
    let stop_took = t.elapsed();
    let gone = wait_gone(&lab, &name, "podman stop");
    println!(
        "podman stop took {stop_took:?}; the endpoint left ps {gone:?} after it returned ({:?} \
         after it was issued)",
        t.elapsed()
    );
    let released = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        !links_of(&ns_file).contains("eth0")
    });
    if !released {
        lab.fail(&format!(
            "the stopped container's namespace still holds the TAP:\n{}",
            links_of(&ns_file)
        ));
    }
    drop(ns_file);
    assert_eq!(reaped(&lab, &net), 1, "endpoints_reaped after podman stop");

    // podman start, attach again under the same name: the same address, traffic flows.
    let t = Instant::now();
    podman.ok(&lab, &["start", &name]);
    let pid2 = podman.pid(&lab, &name);
    println!("podman start took {:?}; new pid {pid2}", t.elapsed());
    assert!(
        pid2 != 0 && pid2 != pid1,
        "podman start: pid {pid2} (was {pid1})"
    );
    lab.ny_ok(&["attach", &net, "--pid", &pid2.to_string(), "--name", &name]);
    let ip2 = lab.endpoint(&net, &name)["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if ip2 != ip {
        lab.fail(&format!(
            "{name} attached again after podman start got {ip2}, had {ip}"
        ));
    }
    check_container_address(&lab, pid2, &ip);
    check_traffic(&lab, &podman, &peer_ns, &peer_ip, &name, &ip);
    println!("{name} attached again as {ip2} (the same address); traffic flows both ways");

    // podman rm -f: nothing left in ps (the peer is detached first).
    lab.ny_ok(&["detach", &net, "peer"]);
    let t = Instant::now();
    podman.ok(&lab, &["rm", "-f", &name]);
    let rm_took = t.elapsed();
    let gone = wait_gone(&lab, &name, "podman rm -f");
    println!(
        "podman rm -f took {rm_took:?}; the endpoint left ps {gone:?} after it returned ({:?} \
         after it was issued)",
        t.elapsed()
    );
    let ps = lab.ny_json(&["ps", "--json"]);
    if ps.as_array().is_none_or(|a| !a.is_empty()) {
        lab.fail(&format!("ps is not empty after podman rm -f: {ps}"));
    }
    assert_eq!(reaped(&lab, &net), 2, "endpoints_reaped after podman rm -f");
    let left = podman.ok(&lab, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(left.is_empty(), "podman still lists containers: {left}");
    println!("test body took {:?}", t_test.elapsed());
}
