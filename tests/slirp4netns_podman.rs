//! Rootless Podman 4.3 (Debian 12's) runs its containers on `netyard slirp4netns`: Podman as
//! the unprivileged test user, `network_cmd_path` in its containers.conf naming a link called
//! `slirp4netns` to the binary under test (what `--network-cmd-path` sets), so Podman runs
//! the front as it runs slirp4netns (`--disable-host-loopback --mtu=65520 --enable-sandbox
//! --enable-seccomp --enable-ipv6 -c -e 3 -r 4 [--api-socket P] --netns-type=path NETNS tap0`).
//!
//! Podman, its pause process, conmon, rootlessport and the fronts run in the lab's "host"
//! network namespace, which has a veth to an "outside" one (198.18.X.0/24 and
//! 2001:db8:X::/64) holding an HTTP server, and a dnsmasq on its loopback as the upstream
//! resolver. Checked: from a container, a page fetched from the outside server, a name
//! resolved through 10.0.2.3 (the resolv.conf Podman writes) and a ping to the outside; the
//! same over IPv6 (Podman passes `--enable-ipv6`): fd00::100 and a default route, a page from
//! the outside's IPv6 address, an AAAA answer through fd00::3, `ping -6`; `-p 8080:80` with
//! Podman's default port handler (rootlessport) and with `port_handler=slirp4netns` (the
//! front's API socket, at MTU 1500), each reached from the outside, the second showing the
//! container the outside client's address, and with `-p [::]:8080:80` beside it the outside's
//! IPv6 client reaching the container as itself; `podman stop` ends the container's front, and with `podman rm` nothing is left:
//! no front process, no API socket, no namespace file.
//!
//! Everything rootless Podman would write outside the test's directory is kept in it or in
//! namespaces of the test's own: Podman runs under `unshare --pid --fork --mount-proc` (one
//! PID namespace: when the test ends, for whatever reason, killing its init kills every
//! process Podman left, the pause process included) in a private mount namespace with a
//! private /dev/shm (Podman's rootless lock) and the test's resolv.conf bound over
//! /etc/resolv.conf; storage, runroot, tmpdir, HOME and XDG_RUNTIME_DIR are under the test's
//! directory. The image is imported from busybox-static; nothing is pulled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::podman::*;
use common::*;

/// The image the test imports (from busybox-static).
const IMAGE: &str = "localhost/nytbusybox";

/// The busybox applets the containers use.
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "nc", "cat", "nslookup", "ping", "ip", "printf",
];

/// The container web server's CGI: answers with the client's address as httpd saw it.
const WHO_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"peer=$REMOTE_ADDR\"\n";

/// The outside HTTP server, on IPv4 and IPv6: every GET is answered with a page naming the
/// client's address.
const OUTSIDE_HTTP: &str = r#"
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        c = self.client_address[0]
        c = c[7:] if c.startswith("::ffff:") else c
        body = ("page from outside, client=%s\n" % c).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(http.server.HTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
S(("::", int(sys.argv[1])), H).serve_forever()
"#;

/// The outside server's port.
const OUTSIDE_PORT: u16 = 8000;

/// Rootless Podman with private configuration, storage, mount and PID namespaces (see the
/// module's comment). Dropping it removes its containers, ends its PID namespace (and so every
/// process in it) and removes its directory. Declare it after the [`Lab`].
struct RootlessPodman {
    dir: PathBuf,
    run_as: RunAs,
    /// `unshare --pid --fork --mount-proc catatonit -- sleep`: holds the namespaces.
    holder: Option<Bg>,
    /// The PID namespace's init (catatonit), which every podman call enters.
    init: u32,
    /// The network namespace podman runs in (the lab's host namespace).
    netns: String,
}

impl RootlessPodman {
    /// `network_cmd_path` is `front` (the link named slirp4netns); the front and podman's
    /// resolver configuration is `resolv_conf`.
    fn new(lab: &Lab, run_as: &RunAs, front: &Path, resolv_conf: &Path) -> RootlessPodman {
        let dir = lab.dir.join("p");
        for d in ["home", "xdg", "tmp", "networks"] {
            std::fs::create_dir_all(dir.join(d))
                .unwrap_or_else(|e| panic!("mkdir {}/{d}: {e}", dir.display()));
        }
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 network_cmd_path = \"{}\"\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n",
                front.display(),
                dir.join("networks").display()
            ),
        )
        .expect("writing containers.conf");
        cmd_ok(&[
            "chown",
            "-R",
            &format!("{}:{}", run_as.uid, run_as.gid),
            &dir.to_string_lossy(),
        ]);
        cmd_ok(&["chmod", "0700", &dir.join("xdg").to_string_lossy()]);
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
            "3600",
        ]);
        let holder = Bg::spawn(&mut c, &lab.dir.join("holder.log"));
        let upid = holder.pid();
        let mut p = RootlessPodman {
            dir,
            run_as: run_as.clone(),
            holder: Some(holder),
            init: 0,
            netns: lab.host.path(),
        };
        // The init of the new PID namespace is unshare's child.
        let found = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            let kids = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            p.init = kids
                .split_whitespace()
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            p.init != 0
                && std::fs::read_to_string(format!("/proc/{}/comm", p.init))
                    .is_ok_and(|c| c.trim() == "catatonit")
        });
        if !found {
            lab.fail("`unshare --pid --fork --mount-proc catatonit` did not start its init");
        }
        // `-n`: no /run/mount/utab in the machine's /run. `/` shared inside the namespace
        // (its own peer group: nothing propagates out), as rootless Podman wants it.
        let script = format!(
            "mount -n -t tmpfs -o mode=1777 nyt-podman /dev/shm && \
             mount -n --bind {} /etc/resolv.conf && \
             mount -n --make-rshared /",
            resolv_conf.display()
        );
        let o = cmd(
            &[
                "nsenter",
                "-t",
                &p.init.to_string(),
                "-m",
                "sh",
                "-c",
                &script,
            ],
            CLI_TIMEOUT,
        );
        if !o.status.success() {
            lab.fail(&format!(
                "private /dev/shm, resolv.conf for podman:\n{}",
                show(&o)
            ));
        }
        p
    }

    /// The PID namespace every process of this Podman lives in.
    fn pid_ns(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/ns/pid", self.init)).ok()
    }
}

impl PodmanCli for RootlessPodman {
    /// `nsenter` into the namespaces, as the user, `podman --root ... ARGS`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init.to_string(), "-m", "-p"])
            .arg(format!("--net={}", self.netns))
            .args(self.run_as.prefix())
            .arg("env")
            .arg("-i")
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.dir.join("home").display()))
            .arg(format!(
                "XDG_RUNTIME_DIR={}",
                self.dir.join("xdg").display()
            ))
            .arg(format!(
                "CONTAINERS_CONF={}",
                self.dir.join("containers.conf").display()
            ))
            .arg(format!("TMPDIR={}", self.dir.join("tmp").display()))
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("xdg/runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        c
    }

    /// None: a rootless Podman may not make cgroups under the test's.
    fn cgroup_parent(&self) -> Option<String> {
        None
    }
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        if self.holder.as_mut().is_some_and(Bg::running) {
            let o = self.run(&["rm", "--force", "--time", "0", "--all"]);
            if !o.status.success() {
                eprintln!("cleanup: podman rm --all: {}", show(&o));
            }
        }
        // The init's end takes every process of the PID namespace with it.
        if let Some(mut h) = self.holder.take() {
            h.stop(Duration::from_secs(3));
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: rm -r {}: {e}", self.dir.display());
        }
    }
}

/// The live (not zombie) processes of PID namespace `ns` whose command line contains `needle`:
/// (pid, command line).
fn processes(ns: &Path, needle: &str) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_deref()
            != Some(ns)
        {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if matches!(
            stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
            Some('Z' | 'X') | None
        ) {
            continue;
        }
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let line = String::from_utf8_lossy(&argv).replace('\0', " ");
        if line.contains(needle) {
            v.push((pid, line.trim().to_string()));
        }
    }
    v
}

/// GET `url` from namespace `ns` with curl; the body, or None.
fn curl(ns: &str, url: &str) -> Option<String> {
    let o = ns_cmd(
        ns,
        &["curl", "--silent", "--show-error", "--max-time", "10", url],
        Duration::from_secs(30),
    );
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).to_string())
}

/// One web container's run: `-p 8080:80` with `network` (`slirp4netns` or with options);
/// checks its MTU, reaches the CGI from the outside (retried while httpd starts) and returns
/// the client address the container saw, the front's command line (found by the container's
/// namespace path) and the namespace path.
struct Web {
    peer: String,
    front: String,
    netns: String,
}

fn run_web(
    lab: &Lab,
    podman: &RootlessPodman,
    out: &Outside,
    name: &str,
    network: &str,
    mtu: u32,
    publish: &[&str],
) -> Web {
    let cmdline = format!("httpd -p 80 -h /www; {IDLE}");
    let mut argv = Vec::new();
    for p in publish {
        argv.extend(["-p", p]);
    }
    argv.extend([IMAGE, "sh", "-c", &cmdline]);
    podman.run_on(lab, network, name, &argv);
    let netns = podman.ok(
        lab,
        &["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name],
    );
    let ns = podman
        .pid_ns()
        .unwrap_or_else(|| lab.fail("podman's PID namespace is gone"));
    let fronts = processes(&ns, &netns);
    if fronts.len() != 1 {
        lab.fail(&format!(
            "{name}: want one front serving {netns}, found {fronts:?}"
        ));
    }
    let link = podman.ok(lab, &["exec", name, "ip", "link", "show", "tap0"]);
    assert!(link.contains(&format!("mtu {mtu} ")), "{name}: {link}");
    let url = format!("http://{}:8080/cgi-bin/who", out.host_ip);
    let mut body = None;
    let reached = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        body = curl(&out.ns, &url);
        body.is_some()
    });
    if !reached {
        lab.fail(&format!("{name}: {url} not reached from the outside"));
    }
    Web {
        peer: cgi_peer(&body.unwrap_or_default()),
        front: fronts[0].1.clone(),
        netns,
    }
}

/// `podman stop NAME`: the front serving `web` ends (and its API socket, if it had one, is
/// removed); then `podman rm NAME`.
fn stop_and_rm(lab: &Lab, podman: &RootlessPodman, name: &str, web: &Web) {
    podman.ok(lab, &["stop", name]);
    let ns = podman
        .pid_ns()
        .unwrap_or_else(|| lab.fail("podman's PID namespace is gone"));
    let gone = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        processes(&ns, &web.netns).is_empty()
    });
    if !gone {
        lab.fail(&format!(
            "{name}: the front outlived `podman stop`: {:?}",
            processes(&ns, &web.netns)
        ));
    }
    if let Some(sock) = web
        .front
        .split_whitespace()
        .skip_while(|a| *a != "--api-socket")
        .nth(1)
    {
        assert!(
            !Path::new(sock).exists(),
            "{name}: the API socket {sock} is left after stop"
        );
    }
    podman.ok(lab, &["rm", name]);
    assert!(
        !Path::new(&web.netns).exists(),
        "{name}: the namespace file {} is left",
        web.netns
    );
}

#[test]
fn rootless_podman_runs_its_containers_on_the_slirp4netns_front() {
    require_root();
    require_podman();
    require_program("catatonit", "catatonit");
    require_program("newuidmap", "uidmap");
    require_program("dnsmasq", "dnsmasq-base");
    require_program("curl", "curl");
    require_program("python3", "python3");
    let (uid, gid) = ensure_rootless_user();
    ensure_rootless_subids();
    tun_world_accessible();
    let lab = Lab::bare();
    cmd_ok(&["chmod", "0755", &lab.dir.to_string_lossy()]);
    let run_as = RunAs {
        uid,
        gid,
        runtime_dir: lab.dir.join("p/xdg"),
    };
    let out6 = lab.outside6();
    let out = &out6.v4;
    // The front's echo sockets are unprivileged ICMP sockets of the user's group (it has no
    // CAP_NET_RAW in the host namespace), as slirp4netns's are.
    lab.set_ping_group_range(&format!("{gid} {gid}"));
    lab.bg_in(
        &lab.host.name,
        &[
            "dnsmasq",
            "--conf-file=/dev/null",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--pid-file",
            "--user=root",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            // Authoritative for the test's domain: busybox nslookup also asks for AAAA,
            // which would otherwise be REFUSED (no upstream) and fail the lookup.
            "--local=/outside.test/",
            &format!("--host-record=server.outside.test,{},{}", out.ip, out6.ip),
        ],
        "dnsmasq.log",
    );
    lab.bg_in(
        &out.ns,
        &["python3", "-c", OUTSIDE_HTTP, &OUTSIDE_PORT.to_string()],
        "outside_http.log",
    );
    assert!(
        wait_listening(&out.ns, OUTSIDE_PORT, Proto::Tcp),
        "outside HTTP server"
    );
    let front = lab.dir.join("slirp4netns");
    std::os::unix::fs::symlink(NETYARD, &front).expect("link slirp4netns");
    let resolv = PathBuf::from(lab.write_file("resolv.conf", "nameserver 127.0.0.1\n"));
    let podman = RootlessPodman::new(&lab, &run_as, &front, &resolv);

    let root = podman.dir.join("image");
    let www = root.join("rootfs/www/cgi-bin");
    std::fs::create_dir_all(&www).expect("mkdir www");
    std::fs::write(www.join("who"), WHO_CGI).expect("cgi");
    cmd_ok(&["chmod", "755", &www.join("who").to_string_lossy()]);
    let tar = busybox_rootfs_tar(&root, APPLETS);
    cmd_ok(&["chmod", "0644", &tar.to_string_lossy()]);
    let image = IMAGE;
    podman.ok(
        &lab,
        &[
            "import",
            "--quiet",
            "--change",
            "ENV PATH=/bin",
            &tar.to_string_lossy(),
            image,
        ],
    );

    // Egress, DNS and ping from a container with Podman's defaults (MTU 65520). --dns: the
    // test's resolv.conf names only loopback, for which Podman would add public servers.
    let c1 = "c1";
    podman.run_idle(&lab, "slirp4netns", c1, &["--dns", "10.0.2.3"], image);
    let exec = |argv: &[&str]| -> String {
        let mut a = vec!["exec", c1];
        a.extend_from_slice(argv);
        podman.ok(&lab, &a)
    };
    let addr = exec(&["ip", "-4", "-o", "addr", "show", "tap0"]);
    assert!(addr.contains("10.0.2.100/24"), "{addr}");
    assert_eq!(exec(&["cat", "/etc/resolv.conf"]), "nameserver 10.0.2.3");
    // A page from the outside server, over nc (busybox wget crashes here).
    let page_from = |ip: &str| {
        exec(&[
            "sh",
            "-c",
            &format!("printf 'GET /page HTTP/1.0\\r\\n\\r\\n' | nc {ip} {OUTSIDE_PORT}"),
        ])
    };
    let page = page_from(&out.ip);
    assert!(
        page.contains(&format!("page from outside, client={}", out.host_ip)),
        "the page from the outside server: {page}"
    );
    for argv in [
        &["nslookup", "server.outside.test"][..],
        &["nslookup", "server.outside.test", "10.0.2.3"][..],
    ] {
        let ans = exec(argv);
        assert!(
            ans.contains("10.0.2.3") && ans.contains(&format!("Address: {}", out.ip)),
            "{argv:?}: {ans}"
        );
    }
    let ping = exec(&["ping", "-c", "2", "-W", "5", &out.ip]);
    assert!(ping.contains("2 packets received"), "{ping}");
    // Podman passed --enable-ipv6: slirp4netns's IPv6 layout, egress, DNS and ping.
    let with_v6 = processes(
        &podman
            .pid_ns()
            .unwrap_or_else(|| lab.fail("podman's PID namespace is gone")),
        "--enable-ipv6",
    );
    assert_eq!(
        with_v6.len(),
        1,
        "one front with --enable-ipv6: {with_v6:?}"
    );
    let v6 = exec(&["ip", "-6", "-o", "addr", "show", "tap0", "scope", "global"]);
    assert!(v6.contains("fd00::100/64"), "IPv6 addresses: {v6}");
    let mut route6 = String::new();
    let routed = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        route6 = exec(&["ip", "-6", "route", "show", "default"]);
        route6.contains("via fe80::")
    });
    assert!(routed, "no IPv6 default route: {route6:?}");
    let page = page_from(&out6.ip);
    assert!(
        page.contains(&format!("page from outside, client={}", out6.host_ip)),
        "the page from the outside server's IPv6 address: {page}"
    );
    let ans = exec(&["nslookup", "-type=AAAA", "server.outside.test", "fd00::3"]);
    assert!(
        ans.contains("fd00::3") && ans.contains(&format!("Address: {}", out6.ip)),
        "AAAA through fd00::3: {ans}"
    );
    let ping = exec(&["ping", "-6", "-c", "2", "-W", "5", &out6.ip]);
    assert!(ping.contains("2 packets received"), "{ping}");
    podman.ok(&lab, &["rm", "--force", "--time", "0", c1]);

    // -p 8080:80 through rootlessport: reached, but the container sees its own address
    // (rootlessport connects from inside the namespace).
    let web = run_web(&lab, &podman, out, "w1", "slirp4netns", 65520, &["8080:80"]);
    assert!(!web.front.contains("--api-socket"), "{}", web.front);
    assert_eq!(web.peer, "10.0.2.100", "rootlessport's source");
    stop_and_rm(&lab, &podman, "w1", &web);

    // The same host port through the front's API socket: the client's address is kept, an
    // IPv6 client's too (`-p [::]:...`: Podman sends host_addr "::").
    let web = run_web(
        &lab,
        &podman,
        out,
        "w2",
        "slirp4netns:port_handler=slirp4netns,mtu=1500",
        1500,
        &["8080:80", "[::]:8080:80"],
    );
    assert!(web.front.contains("--api-socket"), "{}", web.front);
    assert!(web.front.contains("--mtu=1500"), "{}", web.front);
    assert_eq!(web.peer, out.ip, "the outside client's address");
    let url6 = format!("http://[{}]:8080/cgi-bin/who", out6.host_ip);
    let o = ns_cmd(
        &out.ns,
        &[
            "curl",
            "--silent",
            "--show-error",
            "--globoff",
            "--max-time",
            "10",
            &url6,
        ],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{url6} from the outside: {}", show(&o));
    assert_eq!(
        cgi_peer(&String::from_utf8_lossy(&o.stdout)),
        out6.ip,
        "the outside IPv6 client's address"
    );
    stop_and_rm(&lab, &podman, "w2", &web);

    // Nothing of the fronts is left: no process, no socket file.
    let ns = podman
        .pid_ns()
        .unwrap_or_else(|| lab.fail("podman's PID namespace is gone"));
    let left = processes(&ns, &front.to_string_lossy());
    assert!(left.is_empty(), "fronts left: {left:?}");
    let sockets: Vec<_> = std::fs::read_dir(podman.dir.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".net"))
        .collect();
    assert!(sockets.is_empty(), "API sockets left: {sockets:?}");
}
