//! Root Podman for the tests that drive it (tests/podman_follow.rs, tests/cni_podman.rs), and
//! [`PodmanCli`], how tests call any Podman (the rootless one of tests/slirp4netns_podman.rs too).
//!
//! Podman runs the way ../shared/RUNTIMES.md says it must on these machines: a private
//! containers.conf through CONTAINERS_CONF (runc, nofile/nproc ulimits, cgroupfs, file events, a
//! private network config directory, plus whatever the test adds), private vfs storage
//! (`--root`, `--runroot`, `--tmpdir` in the test's directory) and an image imported from
//! busybox-static (nothing can be pulled). Podman, conmon and runc run in a mount namespace of
//! their own, held open by a `sleep`, in which /run, /var/lib and /dev/shm are private tmpfs:
//! what they would write machine-wide (/run/containers, /run/runc, /run/netns,
//! /var/lib/containers/cache, /var/lib/cni/results, /dev/shm/libpod_lock) vanishes with that
//! namespace. The containers' cgroups live under a parent named after the test, removed at the
//! end. Podman itself runs in the machine's network namespace (runc cannot run inside
//! `ip netns exec`).
//!
//! A test whose daemon must open the namespaces Podman makes (/run/netns/cni-...: only visible
//! in Podman's mount namespace) starts it there with [`Lab::start_daemon_in_mount_ns`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::*;

/// How long one podman call may take.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails unless podman, runc, conmon, nsenter, unshare and tar are installed and
/// `/bin/busybox` is a static binary.
pub fn require_podman() {
    require_program("podman", "podman");
    require_program("runc", "runc");
    require_program("conmon", "conmon");
    require_program("nsenter", "util-linux");
    require_program("unshare", "util-linux");
    require_program("tar", "tar");
    require_static_busybox();
}

/// Fails unless `/bin/busybox` is a static binary (busybox-static: the image has no C library).
pub fn require_static_busybox() {
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

/// Writes a rootfs of busybox-static with links for `applets` under `dir/rootfs` and packs it
/// as `dir/rootfs.tar`; returns the tar's path.
pub fn busybox_rootfs_tar(dir: &Path, applets: &[&str]) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs/bin");
    for d in ["etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir in rootfs");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox");
    for a in applets {
        let link = rootfs.join("bin").join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("applet link");
        }
    }
    let tar = dir.join("rootfs.tar");
    cmd_ok(&[
        "tar",
        "-C",
        &rootfs.to_string_lossy(),
        "-cf",
        &tar.to_string_lossy(),
        ".",
    ]);
    tar
}

/// Root Podman with private configuration, storage and mount namespace (see the module's
/// comment). Dropping it removes every container and image it made, kills whatever is left in
/// its cgroups, removes those cgroups and its directory. Declare it after the [`Lab`], so its
/// containers go before the daemon stops.
pub struct Podman {
    pub dir: PathBuf,
    pub conf: PathBuf,
    /// The cgroup parent of the containers (and of conmon), one directory in each hierarchy.
    pub cgroup: String,
    /// `unshare --mount sleep`: holds the mount namespace every podman call enters.
    holder: Option<Bg>,
    /// The network namespace podman (and so conmon, which reserves published ports) runs in;
    /// the machine's when `None`.
    netns: Option<String>,
    /// The podman binary (`podman` from PATH unless [`Podman::set_program`] names another, such
    /// as Debian 13's Podman 5 for the netavark plugin's test).
    program: PathBuf,
}

impl Podman {
    pub fn new(lab: &Lab) -> Podman {
        Podman::with_conf(lab, "", "")
    }

    /// Podman whose containers.conf has `network` added to its `[network]` table and `engine`
    /// to its `[engine]` table (TOML lines).
    pub fn with_conf(lab: &Lab, network: &str, engine: &str) -> Podman {
        let dir = lab.dir.join("podman");
        for d in ["tmp", "networks"] {
            std::fs::create_dir_all(dir.join(d))
                .unwrap_or_else(|e| panic!("mkdir {}/{d}: {e}", dir.display()));
        }
        let conf = dir.join("containers.conf");
        let mut p = Podman {
            conf,
            cgroup: format!("nyt{}podman", lab.id),
            holder: None,
            netns: None,
            program: PathBuf::from("podman"),
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
                 {engine}\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n\
                 {network}\n",
                p.networks_dir().display()
            ),
        )
        .expect("writing containers.conf");

        // `-n`: no /run/mount/utab, which mount would otherwise create in the machine's /run.
        p.holder = Some(Bg::mount_holder(
            lab,
            &[],
            &p.dir.join("holder.log"),
            "mount -n -t tmpfs -o mode=755 nyt-podman /run && \
             mount -n -t tmpfs -o mode=755 nyt-podman /var/lib && \
             mount -n -t tmpfs -o mode=1777 nyt-podman /dev/shm",
            "private /run, /var/lib, /dev/shm for podman",
        ));
        p
    }

    /// Podman running netyard as its network plugin, the lab's daemon started for it: a
    /// directory `DIR/plugins` holds a `netyard` link to the binary under test, `network`
    /// (given that directory) goes into the `[network]` table, `engine` into `[engine]` after
    /// `enable_port_reservation = false` (README: Podman would otherwise hold every published
    /// host port itself). The daemon runs in Podman's mount namespace (the namespaces Podman
    /// makes, /run/netns/..., are bind mounts there) and Podman in the lab's host network
    /// namespace: as in production, where runtime and daemon share the machine's.
    pub fn with_netyard_plugin(
        lab: &mut Lab,
        network: impl FnOnce(&Path) -> String,
        engine: &str,
    ) -> Podman {
        let plugins = lab.dir.join("plugins");
        std::fs::create_dir_all(&plugins).expect("mkdir plugins");
        std::os::unix::fs::symlink(NETYARD, plugins.join("netyard")).expect("link netyard");
        let mut podman = Podman::with_conf(
            lab,
            &network(&plugins),
            &format!("enable_port_reservation = false\n{engine}"),
        );
        lab.start_daemon_in_mount_ns(podman.holder_pid(), &[]);
        podman.in_netns(&lab.host.path());
        podman
    }

    /// The directory of network configurations (`network_config_dir`: Podman's CNI
    /// conflists with the CNI backend).
    pub fn networks_dir(&self) -> PathBuf {
        self.dir.join("networks")
    }

    /// Runs podman in the network namespace at `path` (opened in the machine's mount
    /// namespace), e.g. the lab's host namespace, where the daemon publishes ports: as in
    /// production, where Podman, conmon and the daemon share the host's. Podman's containers
    /// get namespaces of their own either way.
    pub fn in_netns(&mut self, path: &str) {
        self.netns = Some(path.to_string());
    }

    /// Runs `program` instead of the podman on PATH.
    pub fn set_program(&mut self, program: &Path) {
        self.program = program.to_path_buf();
    }

    /// The process holding Podman's mount namespace.
    pub fn holder_pid(&self) -> u32 {
        self.holder
            .as_ref()
            .map(Bg::pid)
            .expect("podman's mount namespace")
    }

    /// Imports `localhost/NAME` from a rootfs of busybox-static with links for `applets`.
    pub fn import_busybox(&self, lab: &Lab, name: &str, applets: &[&str]) {
        let tar = busybox_rootfs_tar(&self.dir, applets);
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
    pub fn pid(&self, lab: &Lab, name: &str) -> u32 {
        let out = self.ok(lab, &["inspect", "-f", "{{.State.Pid}}", name]);
        out.parse()
            .unwrap_or_else(|e| lab.fail(&format!("podman inspect pid {out:?}: {e}")))
    }

    /// The test's cgroup directories (cgroup v2 at the root, or one per v1 hierarchy).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
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

/// A Podman the tests drive: root [`Podman`], or the rootless one of
/// tests/slirp4netns_podman.rs. Calls and containers go the same way through either.
pub trait PodmanCli {
    /// `podman ARGS` as this Podman runs (its namespaces, configuration and storage).
    fn command(&self, args: &[&str]) -> Command;

    /// The containers' `--cgroup-parent`, when this Podman gives them one.
    fn cgroup_parent(&self) -> Option<String>;

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

    /// `podman run -d --network NET [--cgroup-parent CGROUP] --name NAME ARGS` (ARGS: further
    /// options, the image and its command).
    fn run_on(&self, lab: &Lab, net: &str, name: &str, args: &[&str]) {
        let cgroup = self.cgroup_parent();
        let mut argv = vec!["run", "-d", "--network", net];
        if let Some(c) = &cgroup {
            argv.extend(["--cgroup-parent", c]);
        }
        argv.extend(["--name", name]);
        argv.extend_from_slice(args);
        self.ok(lab, &argv);
    }

    /// An idle container `name` of `image` on `net` that may ping (NET_RAW), with further
    /// `options` (`--dns ...`).
    fn run_idle(&self, lab: &Lab, net: &str, name: &str, options: &[&str], image: &str) {
        let mut args = options.to_vec();
        args.extend(["--cap-add", "NET_RAW", image, "sh", "-c", IDLE]);
        self.run_on(lab, net, name, &args);
    }
}

impl PodmanCli for Podman {
    /// `nsenter -t HOLDER -m podman --root ... ARGS` with the private containers.conf.
    fn command(&self, args: &[&str]) -> Command {
        let pid = self.holder_pid();
        let mut c = Command::new("nsenter");
        c.args(["-t", &pid.to_string(), "-m"]);
        if let Some(n) = &self.netns {
            c.arg(format!("--net={n}"));
        }
        c.arg(&self.program)
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

    /// The test's cgroup, removed with it.
    fn cgroup_parent(&self) -> Option<String> {
        Some(format!("/{}", self.cgroup))
    }
}

/// `dir` and every directory below it, deepest first.
pub fn dirs_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs_post_order(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Kills whatever process is left in `dirs` (cgroup directories, deepest first), then removes
/// them (waiting up to 10 s for the kernel to let go).
pub fn kill_and_remove_cgroups(dirs: &[PathBuf]) {
    for d in dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            eprintln!("cleanup: killing {pid}, left in {}", d.display());
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let removed = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        dirs.iter()
            .all(|d| !d.exists() || std::fs::remove_dir(d).is_ok())
    });
    if !removed {
        let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
        eprintln!("cleanup: cgroups left: {left:?}");
    }
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
        if let Some(mut h) = self.holder.take() {
            h.stop(Duration::from_secs(3));
        }
        kill_and_remove_cgroups(&dirs);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: rm -r {}: {e}", self.dir.display());
        }
    }
}

/// A container's command: a shell that exits on SIGTERM (busybox `sleep` as PID 1 would
/// ignore it, and a runtime's stop would wait for its timeout).
pub const IDLE: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

/// The client address in the `peer=` line of the test images' CGI answer (busybox httpd
/// listens dual-stack: an IPv4 client shows as `[::ffff:A.B.C.D]`).
pub fn cgi_peer(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("peer="))
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']')
        .trim_start_matches("::ffff:")
        .to_string()
}

/// The web image's CGI script (`/www/cgi-bin/who`): answers with the client's address as
/// busybox httpd saw it (read back with [`cgi_peer`]).
pub const WHO_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"peer=$REMOTE_ADDR\"\n";

/// `python3 -c HTTP_GET HOST PORT PATH`: an HTTP/1.0 GET; prints the whole answer.
pub const HTTP_GET: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(("GET %s HTTP/1.0\r\n\r\n" % sys.argv[3]).encode())
print(b"".join(iter(lambda: s.recv(65536), b"")).decode())
"#;

impl Podman {
    /// [`Podman::import_busybox`] with the CGI script [`WHO_CGI`] at `/www/cgi-bin/who` for
    /// httpd; returns the image's full name (`localhost/NAME`).
    pub fn import_web_image(&self, lab: &Lab, name: &str, applets: &[&str]) -> String {
        let www = self.dir.join("rootfs/www/cgi-bin");
        std::fs::create_dir_all(&www).expect("mkdir www");
        std::fs::write(www.join("who"), WHO_CGI).expect("cgi");
        cmd_ok(&["chmod", "755", &www.join("who").to_string_lossy()]);
        self.import_busybox(lab, name, applets);
        format!("localhost/{name}")
    }

    /// The web server `web` (httpd on port 80 with [`WHO_CGI`], `-p publish`) and an idle
    /// client `cli` on `net`, both of `image` (from [`Podman::import_web_image`]).
    pub fn run_web_and_client(
        &self,
        lab: &Lab,
        net: &str,
        image: &str,
        (web, cli): (&str, &str),
        publish: &str,
    ) {
        self.run_on(
            lab,
            net,
            web,
            &[
                "-p", publish, image, "httpd", "-f", "-p", "80", "-h", "/www",
            ],
        );
        self.run_idle(lab, net, cli, &[], image);
    }

    /// From `cli`: its resolv.conf names `nameserver`, and `web` resolves to `web_ip`,
    /// answers pings, and its CGI sees `cli_ip`, all by name.
    pub fn check_by_name(
        &self,
        lab: &Lab,
        (web, cli): (&str, &str),
        nameserver: &str,
        (web_ip, cli_ip): (&str, &str),
    ) {
        let resolv = self.ok(lab, &["exec", cli, "cat", "/etc/resolv.conf"]);
        assert!(
            resolv.contains(&format!("nameserver {nameserver}")),
            "{cli}'s resolv.conf does not name {nameserver}:\n{resolv}"
        );
        let looked = self.ok(lab, &["exec", cli, "nslookup", web]);
        assert!(
            looked.contains(web_ip),
            "nslookup {web} from {cli}:\n{looked}"
        );
        self.ok(lab, &["exec", cli, "ping", "-c", "2", "-W", "3", web]);
        let answer = self.ok(
            lab,
            &[
                "exec",
                cli,
                "sh",
                "-c",
                &format!("printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc {web} 80"),
            ],
        );
        assert_eq!(
            cgi_peer(&answer),
            cli_ip,
            "{cli} -> {web}:80 by name, answer:\n{answer}"
        );
    }

    /// `podman rm -f` of `names` (the runtime's teardown of each): nothing is left in
    /// `netyard ps`.
    pub fn rm_leaves_nothing(&self, lab: &Lab, names: &[&str]) {
        let mut argv = vec!["rm", "-f", "--time", "0"];
        argv.extend_from_slice(names);
        self.ok(lab, &argv);
        let ps = lab.ny_json(&["ps", "--json"]);
        assert_eq!(ps, serde_json::json!([]), "netyard ps after podman rm -f");
    }
}

/// GET /cgi-bin/who of the host's published `port` from the outside namespace: the container
/// must see the client's own address (no masquerade on the way in). Returns the answer.
pub fn fetch_published(lab: &Lab, outside: &Outside, port: u16) -> String {
    require_program("python3", "python3");
    let port = port.to_string();
    let o = ns_cmd(
        &outside.ns,
        &[
            "python3",
            "-c",
            HTTP_GET,
            &outside.host_ip,
            &port,
            "/cgi-bin/who",
        ],
        Duration::from_secs(20),
    );
    let body = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() || cgi_peer(&body) != outside.ip {
        lab.fail(&format!(
            "{}:{port} from the outside namespace ({}) did not show the client's address:\n{}",
            outside.host_ip,
            outside.ip,
            show(&o)
        ));
    }
    body
}
