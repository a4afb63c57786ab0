//! containerd 1.6 drives netyard through the CNI plugin (issue 13): `ctr run --cni` with the
//! conflist the README gives, a container reaches another by address and a server in a
//! test-made outside namespace; `ctr run --rm` ends with CNI DEL; a detached container whose
//! task is killed leaves `ps` through the daemon's reaper (ctr sends no DEL for it).
//!
//! containerd is started by the test with its own root, state, socket and cgroups. It and
//! `ctr` (which runs the CNI plugins itself, from /etc/cni/net.d and /opt/cni/bin) run in a
//! mount namespace of their own, held open by a `sleep`, where /run, /var/lib and /opt are
//! private tmpfs (containerd's shim sockets under /run/containerd, libcni's result cache in
//! /var/lib/cni, /opt/containerd, /opt/cni/bin with links to the reference plugins and to
//! netyard) and the test's conflist directory is bound over /etc/cni/net.d. Containers run
//! from a busybox-static rootfs (`ctr run --rootfs`), so no image is needed. The namespaces
//! are `/proc/PID/ns/net` paths, which the daemon (in the lab's host namespace, the machine's
//! mount namespace) opens as they are.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::podman::{
    busybox_rootfs_tar, dirs_post_order, kill_and_remove_cgroups, require_static_busybox,
};
use common::*;
use serde_json::json;

const CTR_TIMEOUT: Duration = Duration::from_secs(60);

const APPLETS: &[&str] = &["sh", "sleep", "httpd", "nc", "cat", "echo", "printf", "ip"];

/// The web server's CGI: the client's address as httpd saw it.
const WHO_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"peer=$REMOTE_ADDR\"\n";

/// The outside server: one line back per connection, naming the server and the client.
const OUTSIDE_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, a = s.accept()
    c.sendall(("outside-ok from=%s\n" % a[0]).encode()); c.close()
"#;

/// containerd in its own directories and mount namespace (see the module's comment).
struct Containerd {
    dir: PathBuf,
    sock: PathBuf,
    cgroup: String,
    holder: Option<Bg>,
    daemon: Option<Bg>,
}

impl Containerd {
    fn start(lab: &Lab, conflist: &serde_json::Value) -> Containerd {
        let dir = lab.dir.join("containerd");
        let netd = dir.join("net.d");
        std::fs::create_dir_all(&netd).expect("mkdir net.d");
        std::fs::write(
            netd.join("10-netyard.conflist"),
            serde_json::to_string_pretty(conflist).unwrap(),
        )
        .expect("conflist");
        let mut c = Containerd {
            sock: dir.join("c.sock"),
            cgroup: format!("nyt{}ctr", lab.id),
            holder: None,
            daemon: None,
            dir,
        };
        let mut links = String::new();
        for p in std::fs::read_dir("/usr/lib/cni")
            .into_iter()
            .flatten()
            .flatten()
        {
            links.push_str(&format!("ln -s {} /opt/cni/bin/; ", p.path().display()));
        }
        let script = format!(
            "mount -n -t tmpfs -o mode=755 nyt-ctr /run && \
             mount -n -t tmpfs -o mode=755 nyt-ctr /var/lib && \
             mount -n -t tmpfs -o mode=755 nyt-ctr /opt && \
             mkdir -p /opt/cni/bin && {links} ln -s {NETYARD} /opt/cni/bin/netyard && \
             mount -n --bind {} /etc/cni/net.d",
            netd.display()
        );
        c.holder = Some(Bg::mount_holder(
            lab,
            &[],
            &c.dir.join("holder.log"),
            &script,
            "containerd's private mounts",
        ));
        let config = c.dir.join("config.toml");
        std::fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )
        .expect("config.toml");
        let mut d = c.in_ns("containerd");
        d.arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(c.dir.join("root"))
            .args(["--state", "/run/containerd"])
            .arg("--address")
            .arg(&c.sock);
        c.daemon = Some(Bg::spawn(&mut d, &c.dir.join("containerd.log")));
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            c.ctr(&["version"]).status.success()
        });
        if !up {
            let log = c.daemon.as_ref().map(Bg::log_text).unwrap_or_default();
            lab.fail(&format!(
                "containerd did not answer on {}:\n{log}",
                c.sock.display()
            ));
        }
        c
    }

    fn holder_pid(&self) -> u32 {
        self.holder
            .as_ref()
            .map(Bg::pid)
            .expect("mount namespace holder")
    }

    /// `nsenter -t HOLDER -m PROGRAM`.
    fn in_ns(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder_pid().to_string(), "-m", program]);
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut c = self.in_ns("ctr");
        c.arg("-a").arg(&self.sock).args(args);
        run_bounded(&mut c, CTR_TIMEOUT)
    }

    fn ctr_ok(&self, lab: &Lab, args: &[&str]) -> String {
        let o = self.ctr(args);
        if !o.status.success() {
            lab.fail(&format!(
                "`ctr {}` failed:\n{}\ncontainerd log:\n{}",
                args.join(" "),
                show(&o),
                self.daemon.as_ref().map(Bg::log_text).unwrap_or_default()
            ));
        }
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

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

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.as_mut().is_some_and(Bg::running) {
            let list = self.ctr(&["task", "ls", "-q"]);
            for id in String::from_utf8_lossy(&list.stdout).split_whitespace() {
                let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
                let _ = self.ctr(&["task", "delete", "-f", id]);
            }
            let list = self.ctr(&["container", "ls", "-q"]);
            for id in String::from_utf8_lossy(&list.stdout).split_whitespace() {
                let _ = self.ctr(&["container", "rm", id]);
            }
        }
        let mut dirs = Vec::new();
        for d in self.cgroup_dirs() {
            dirs_post_order(&d, &mut dirs);
        }
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
        }
        kill_and_remove_cgroups(&dirs);
        if let Some(mut h) = self.holder.take() {
            h.stop(Duration::from_secs(3));
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: rm -r {}: {e}", self.dir.display());
        }
    }
}

fn ps_names(lab: &Lab) -> Vec<String> {
    lab.ny_json(&["ps", "--json"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ctr_run_cni_attaches_containers_that_reach_each_other_and_the_outside() {
    require_root();
    for (p, pkg) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("tar", "tar"),
        ("python3", "python3"),
    ] {
        require_program(p, pkg);
    }
    require_static_busybox();
    if !Path::new("/etc/cni/net.d").is_dir() {
        panic!("this test binds its conflist over /etc/cni/net.d, which does not exist: create it (`mkdir -p /etc/cni/net.d`) or install containernetworking-plugins");
    }
    let t_test = Instant::now();
    let lab = Lab::new();
    let outside = lab.outside();
    let port = 20000 + rand::random::<u16>() % 20000;
    let server = lab.write_file("outside.py", OUTSIDE_SERVER);
    lab.bg_in(
        &outside.ns,
        &["python3", &server, &outside.ip, &port.to_string()],
        "outside.log",
    );
    if !wait_listening(&outside.ns, port, Proto::Tcp) {
        lab.fail("the outside server does not listen");
    }

    let sub = Subnet::random();
    let net = format!("nyk{}", lab.id);
    // The README's conflist for containerd.
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": net,
        "plugins": [{
            "type": "netyard",
            "network": net,
            "subnet": sub.cidr(),
            "api": lab.api.to_string_lossy(),
            "capabilities": {"portMappings": true}
        }]
    });
    let ctrd = Containerd::start(&lab, &conflist);
    let rootfs_dir = ctrd.dir.join("image");
    let www = rootfs_dir.join("rootfs/www/cgi-bin");
    std::fs::create_dir_all(&www).expect("mkdir www");
    std::fs::write(www.join("who"), WHO_CGI).expect("cgi");
    cmd_ok(&["chmod", "755", &www.join("who").to_string_lossy()]);
    busybox_rootfs_tar(&rootfs_dir, APPLETS);
    let rootfs = rootfs_dir.join("rootfs").to_string_lossy().to_string();
    let cg = |id: &str| format!("/{}/{id}", ctrd.cgroup);

    // c1: a web server, detached.
    let t = Instant::now();
    ctrd.ctr_ok(
        &lab,
        &[
            "run",
            "-d",
            "--null-io",
            "--env",
            "PATH=/bin",
            "--cni",
            "--cgroup",
            &cg("c1"),
            "--rootfs",
            &rootfs,
            "c1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    println!("ctr run -d --cni (ADD) took {:?}", t.elapsed());
    let ep1 = lab.endpoint(&net, "default-c1");
    let ip1 = ep1["ip"].as_str().unwrap_or_default().to_string();
    assert!(
        ep1["netns"]
            .as_str()
            .is_some_and(|n| n.starts_with("/proc/") && n.ends_with("/ns/net")),
        "{ep1}"
    );
    assert_eq!(ep1["owner"], "cni:default-c1:eth0", "{ep1}");
    println!("default-c1 = {ip1}");

    // c2 in the foreground (--rm: ctr sends DEL when it ends): c1 by address, then the
    // outside server.
    let script = format!(
        "printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc {ip1} 80; \
         echo; nc {} {port} </dev/null",
        outside.ip
    );
    let t = Instant::now();
    let out = ctrd.ctr_ok(
        &lab,
        &[
            "run",
            "--rm",
            "--env",
            "PATH=/bin",
            "--cni",
            "--cgroup",
            &cg("c2"),
            "--rootfs",
            &rootfs,
            "c2",
            "sh",
            "-c",
            &script,
        ],
    );
    println!(
        "ctr run --rm --cni (ADD, command, DEL) took {:?}:\n{out}",
        t.elapsed()
    );
    let peer = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("peer="))
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']')
        .trim_start_matches("::ffff:")
        .to_string();
    assert!(
        peer.starts_with(&format!("10.{}.{}.", sub.a, sub.b)) && peer != ip1,
        "c2 -> c1 ({ip1}:80): the answer shows no peer of the network: {out}"
    );
    assert!(
        out.contains(&format!("outside-ok from={}", outside.host_ip)),
        "c2 -> the outside server: {out}"
    );
    assert_eq!(
        ps_names(&lab),
        vec!["default-c1".to_string()],
        "after ctr run --rm"
    );

    // c1's task killed: no DEL from ctr for a detached container; the reaper detaches it.
    let t = Instant::now();
    ctrd.ctr_ok(&lab, &["task", "kill", "-s", "KILL", "c1"]);
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        ps_names(&lab).is_empty()
    });
    if !gone {
        lab.fail("default-c1 still in ps 15 s after its task was killed");
    }
    println!(
        "the killed task's endpoint left ps {:?} after the kill",
        t.elapsed()
    );
    ctrd.ctr_ok(&lab, &["task", "delete", "c1"]);
    ctrd.ctr_ok(&lab, &["container", "rm", "c1"]);
    println!("test body took {:?}", t_test.elapsed());
}
