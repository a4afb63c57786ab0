//! Docker 20.10 drives netyard through `netyard docker-plugin` (issue 13): the remote network
//! and IPAM driver. The test starts its own dockerd (own data-root, exec-root, pidfile, socket
//! and cgroup parent; `--iptables=false --ip6tables=false --bridge=none --ip-masq=false`) and
//! the plugin in one mount namespace with a private /run and /etc/docker, so
//! /run/docker/plugins (where dockerd finds the plugin's socket), /run/containerd and
//! /etc/docker/key.json stay the test's; both run in the lab's host network namespace beside
//! the netyard daemon, since Docker moves the veth end the daemon made there into its
//! containers. dockerd is stopped by PID.
//!
//! `docker network create -d netyard --ipam-driver netyard --subnet ...` makes a netyard
//! network; two containers ping and resolve each other by name (Docker's own resolver on
//! 127.0.0.11, which netyard leaves alone on such networks), `-p 8080:80` answers a client in a
//! test-made outside namespace with the client's own address, a restarted netyard daemon
//! adopts both endpoints by their host ends, `docker rm -f` and `docker network rm` leave
//! nothing in netyard, and bad requests get `{"Err": ...}` naming the field.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::podman::{
    busybox_rootfs_tar, cgi_peer, dirs_post_order, kill_and_remove_cgroups, IDLE,
};
use common::*;

/// How long one docker call may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

/// The busybox applets the containers use.
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "nc", "cat", "nslookup", "ping", "ip", "echo",
];

/// The web server's CGI script: answers with the client's address as httpd saw it.
const WHO_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"peer=$REMOTE_ADDR\"\n";

/// dockerd and the netyard plugin in a private mount namespace of the lab's host network
/// namespace. Dropping it removes the containers, stops dockerd (by PID) and the plugin,
/// kills what is left in its cgroups and releases the mount namespace (and with it the
/// overlay mounts and the private /run).
struct Docker {
    dir: PathBuf,
    sock: PathBuf,
    /// Containers' cgroup parent, one directory in each hierarchy.
    cgroup: String,
    /// `unshare --mount sleep`: holds the mount namespace.
    holder: Option<Bg>,
    plugin: Option<Bg>,
    dockerd: Option<Bg>,
}

impl Docker {
    fn start(lab: &Lab) -> Docker {
        let dir = lab.dir.join("docker");
        std::fs::create_dir_all(dir.join("config")).expect("mkdir docker dir");
        let mut d = Docker {
            sock: dir.join("d.sock"),
            cgroup: format!("nyt{}docker", lab.id),
            holder: None,
            plugin: None,
            dockerd: None,
            dir,
        };
        // `-n`: no /run/mount/utab in the machine's /run.
        let net = format!("--net={}", lab.host.path());
        d.holder = Some(Bg::mount_holder(
            lab,
            &["nsenter", &net],
            &d.dir.join("holder.log"),
            "mount -n -t tmpfs -o mode=755 nyt-docker /run && \
             mount -n -t tmpfs -o mode=755 nyt-docker /etc/docker",
            "private /run and /etc/docker",
        ));

        let mut c = d.in_ns(NETYARD);
        c.args(["docker-plugin", "--api"])
            .arg(&lab.api)
            .env("NETYARD_LOG", "debug,hyper=info");
        d.plugin = Some(Bg::spawn(&mut c, &d.dir.join("plugin.log")));
        let plugin_sock = d.plugin_socket();
        if !wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::os::unix::net::UnixStream::connect(&plugin_sock).is_ok()
        }) {
            lab.fail(&format!(
                "the plugin did not listen on /run/docker/plugins/netyard.sock within 10 s:\n{}",
                d.log("plugin.log")
            ));
        }

        let mut c = d.in_ns("dockerd");
        c.args([
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--ip-masq=false",
        ])
        .arg("-H")
        .arg(format!("unix://{}", d.sock.display()))
        .arg("--data-root")
        .arg(d.dir.join("data"))
        .arg("--exec-root")
        .arg(d.dir.join("exec"))
        .arg("--pidfile")
        .arg(d.dir.join("docker.pid"))
        .arg("--cgroup-parent")
        .arg(format!("/{}", d.cgroup));
        d.dockerd = Some(Bg::spawn(&mut c, &d.dir.join("dockerd.log")));
        let t = Instant::now();
        let up = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            d.run(&["version"]).status.success()
        });
        if !up {
            lab.fail(&format!(
                "dockerd did not answer within 30 s:\n{}",
                d.log("dockerd.log")
            ));
        }
        println!("dockerd answered after {:?}", t.elapsed());
        d
    }

    fn holder_pid(&self) -> u32 {
        self.holder
            .as_ref()
            .map(Bg::pid)
            .expect("the mount namespace")
    }

    /// `nsenter -t HOLDER -m -n PROG`: in the private mount namespace and the lab's host
    /// network namespace.
    fn in_ns(&self, prog: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder_pid().to_string(), "-m", "-n", prog]);
        c
    }

    /// The plugin's socket, reached from outside its mount namespace.
    fn plugin_socket(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/run/docker/plugins/netyard.sock",
            self.holder_pid()
        ))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), DOCKER_TIMEOUT)
    }

    /// A docker call that must succeed; its stdout, trimmed.
    fn ok(&self, lab: &Lab, args: &[&str]) -> String {
        let o = self.run(args);
        if !o.status.success() {
            lab.fail(&format!(
                "`docker {}` failed:\n{}\n--- plugin log ---\n{}",
                args.join(" "),
                show(&o),
                self.log("plugin.log")
            ));
        }
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Imports the containers' image: busybox-static with a CGI that tells the client's
    /// address. Its name.
    fn image(&self, lab: &Lab) -> String {
        let www = self.dir.join("rootfs/www/cgi-bin");
        std::fs::create_dir_all(&www).expect("mkdir www");
        std::fs::write(www.join("who"), WHO_CGI).expect("cgi");
        cmd_ok(&["chmod", "755", &www.join("who").to_string_lossy()]);
        let tar = busybox_rootfs_tar(&self.dir, APPLETS);
        let image = format!("nyt{}img:1", lab.id);
        self.ok(
            lab,
            &[
                "import",
                "--change",
                "ENV PATH=/bin",
                &tar.to_string_lossy(),
                &image,
            ],
        );
        image
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

impl Drop for Docker {
    fn drop(&mut self) {
        if self.dockerd.as_mut().is_some_and(Bg::running) {
            let o = self.run(&["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let o = self.run(&args);
                if !o.status.success() {
                    eprintln!("cleanup: docker rm -f: {}", show(&o));
                }
            }
        }
        if let Some(mut d) = self.dockerd.take() {
            d.signal(nix::sys::signal::Signal::SIGTERM);
            if d.wait(Duration::from_secs(20)).is_none() {
                eprintln!("cleanup: dockerd ignored SIGTERM for 20 s; killing it");
                d.stop(Duration::ZERO);
            }
        }
        if let Some(mut p) = self.plugin.take() {
            p.stop(Duration::from_secs(3));
        }
        let mut dirs = Vec::new();
        for d in self.cgroup_dirs() {
            dirs_post_order(&d, &mut dirs);
        }
        kill_and_remove_cgroups(&dirs);
        if let Some(mut h) = self.holder.take() {
            h.stop(Duration::from_secs(3));
        }
    }
}

/// One POST to the plugin's socket; the status and the JSON body.
fn plugin_call(sock: &Path, call: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let req = format!(
        "POST /{call} HTTP/1.0\r\nHost: plugin\r\nContent-Type: \
         application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("writing the request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("reading the answer");
    let (head, json) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.plugins.v1.2+json"),
        "{call}: answer without the plugin content type:\n{head}"
    );
    (
        status,
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{call}: not JSON ({e}): {json}")),
    )
}

/// `{"Err": ...}` that names `field`.
fn assert_err(call: &str, got: &(u16, serde_json::Value), status: u16, field: &str) {
    let err = got.1["Err"].as_str().unwrap_or_default();
    assert!(
        got.0 == status && err.contains(field),
        "{call}: expected HTTP {status} and an Err naming {field:?}, got {} {}",
        got.0,
        got.1
    );
    println!("{call}: {} {err}", got.0);
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

/// Root, dockerd and what the Docker test harness runs.
fn require_docker() {
    require_root();
    for (prog, pkg) in [
        ("dockerd", "docker.io"),
        ("docker", "docker.io"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("tar", "tar"),
    ] {
        require_program(prog, pkg);
    }
    common::podman::require_static_busybox();
}

#[test]
fn docker_containers_on_a_netyard_network_resolve_reach_publish_and_survive_a_restart() {
    require_docker();
    require_program("curl", "curl");
    let t_test = Instant::now();

    let mut lab = Lab::new();
    let outside = lab.outside();
    let docker = Docker::start(&lab);
    let sock = docker.plugin_socket();

    // Bad requests: {"Err": ...} naming the field (HTTP 400 for a body that is not the
    // call's JSON, 404 for an unknown call, 200 for a request netyard cannot serve).
    let got = plugin_call(&sock, "Plugin.Activate", "");
    assert_eq!(
        got.1["Implements"],
        serde_json::json!(["NetworkDriver", "IpamDriver"])
    );
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_err(
        "NetworkDriver.CreateNetwork",
        &plugin_call(
            &sock,
            "NetworkDriver.CreateNetwork",
            &format!(r#"{{"NetworkID": "{id}", "IPv4Data": [{{"Pool": 7}}]}}"#),
        ),
        400,
        "IPv4Data[0].Pool",
    );
    assert_err(
        "NetworkDriver.CreateNetwork",
        &plugin_call(
            &sock,
            "NetworkDriver.CreateNetwork",
            &format!(
                r#"{{"NetworkID": "{id}", "IPv4Data": [{{"Pool": "10.9.0.0/24"}}],
                    "IPv6Data": [{{"Pool": "fd00::/64"}}]}}"#
            ),
        ),
        200,
        "IPv6Data",
    );
    assert_err(
        "IpamDriver.RequestPool",
        &plugin_call(
            &sock,
            "IpamDriver.RequestPool",
            r#"{"AddressSpace": "netyard-local", "Pool": "10.9.0.0/24", "SubPool": "10.9.0.0/25"}"#,
        ),
        200,
        "SubPool",
    );
    assert_err(
        "NetworkDriver.Join",
        &plugin_call(
            &sock,
            "NetworkDriver.Join",
            &format!(r#"{{"NetworkID": "{id}", "EndpointID": "x"}}"#),
        ),
        200,
        "EndpointID",
    );
    assert_err(
        "NetworkDriver.Teleport",
        &plugin_call(&sock, "NetworkDriver.Teleport", "{}"),
        404,
        "Teleport",
    );

    let image = docker.image(&lab);

    // docker network create -d netyard --ipam-driver netyard: a netyard network named by
    // the first 12 characters of Docker's id, with Docker's subnet, 127.0.0.11 left to
    // Docker.
    let sub = Subnet::random();
    let dnet = format!("nyt{}net", lab.id);
    let t = Instant::now();
    let net_id = docker.ok(
        &lab,
        &[
            "network",
            "create",
            "-d",
            "netyard",
            "--ipam-driver",
            "netyard",
            "--subnet",
            &sub.cidr(),
            "-o",
            "netyard.mtu=1400",
            &dnet,
        ],
    );
    println!("docker network create took {:?}", t.elapsed());
    let net = net_id[..12].to_string();
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["subnet"], sub.cidr(), "{info}");
    assert_eq!(info["gateway"], sub.ip(1), "{info}");
    assert_eq!(info["mtu"], 1400, "{info}");
    assert_eq!(info["container_resolver"], false, "{info}");

    let (c1, c2) = (format!("nyt{}web", lab.id), format!("nyt{}cli", lab.id));
    let t = Instant::now();
    docker.ok(
        &lab,
        &[
            "run",
            "-d",
            "--network",
            &dnet,
            "--name",
            &c1,
            "-p",
            "8080:80",
            &image,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    println!(
        "docker run (CreateEndpoint, Join, publish) took {:?}",
        t.elapsed()
    );
    docker.ok(
        &lab,
        &[
            "run",
            "-d",
            "--network",
            &dnet,
            "--name",
            &c2,
            &image,
            "sh",
            "-c",
            IDLE,
        ],
    );
    let ip_of = |c: &str| {
        docker.ok(
            &lab,
            &[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                c,
            ],
        )
    };
    let (ip1, ip2) = (ip_of(&c1), ip_of(&c2));
    assert_eq!(
        ip1,
        sub.ip(2),
        "netyard's IPAM hands out addresses in order"
    );
    assert_eq!(ip2, sub.ip(3));
    let ps = lab.ny_json(&["ps", "--json"]);
    let eps: Vec<&serde_json::Value> = ps
        .as_array()
        .map(|a| a.iter().filter(|e| e["network"] == net).collect())
        .unwrap_or_default();
    assert_eq!(eps.len(), 2, "{ps}");
    let ep1 = eps
        .iter()
        .find(|e| e["ip"] == ip1)
        .unwrap_or_else(|| lab.fail(&format!("no endpoint with {ip1}: {ps}")));
    assert_eq!(ep1["kind"], "veth");
    assert_eq!(ep1["ports"][0]["host_port"], 8080, "{ep1}");

    // Inside: Docker's resolver on 127.0.0.11 names the other container; the address and
    // MAC are netyard's.
    let inside = docker.ok(
        &lab,
        &[
            "exec",
            &c2,
            "sh",
            "-c",
            &format!("cat /etc/resolv.conf; ip link show eth0; ip route; ping -c1 -W5 {c1}"),
        ],
    );
    assert!(inside.contains("nameserver 127.0.0.11"), "{inside}");
    assert!(
        inside.contains(&format!("default via {}", sub.ip(1))),
        "{inside}"
    );
    assert!(inside.contains("mtu 1400"), "{inside}");
    assert!(inside.contains(&format!("from {ip1}")), "{inside}");
    let answer = docker.ok(
        &lab,
        &[
            "exec",
            &c2,
            "sh",
            "-c",
            &format!("printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc {c1} 80"),
        ],
    );
    assert_eq!(cgi_peer(&answer), ip2, "{c2} -> {c1}:80 by name:\n{answer}");
    println!("{c2} resolves, pings and reaches {c1} by name");

    // -p 8080:80 from the outside namespace: the container sees the client's own address.
    let url = format!("http://{}:8080/cgi-bin/who", outside.host_ip);
    let fetch = || {
        ns_cmd(
            &outside.ns,
            &["curl", "-s", "--max-time", "10", &url],
            Duration::from_secs(20),
        )
    };
    let o = fetch();
    let body = String::from_utf8_lossy(&o.stdout).to_string();
    if !o.status.success() || cgi_peer(&body) != outside.ip {
        lab.fail(&format!(
            "{url} from the outside namespace ({}) did not show the client's address:\n{}",
            outside.ip,
            show(&o)
        ));
    }
    println!(
        "published 8080 -> {c1}:80 answers {url} with {}",
        body.trim()
    );

    // A restarted daemon adopts both endpoints by their host ends (no namespace to check)
    // and publishes the port again.
    lab.stop_daemon();
    lab.start_daemon(&[]);
    let mut names = ps_names(&lab);
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "after a restart: {names:?}\n{}",
        lab.daemon_log()
    );
    let again = docker.ok(
        &lab,
        &["exec", &c2, "sh", "-c", &format!("ping -c1 -W5 {c1}")],
    );
    assert!(again.contains(&format!("from {ip1}")), "{again}");
    let o = fetch();
    assert!(
        cgi_peer(&String::from_utf8_lossy(&o.stdout)) == outside.ip,
        "published port after a restart:\n{}",
        show(&o)
    );
    println!("a restarted daemon re-adopted both endpoints and the published port");

    // docker rm -f: Leave, RevokeExternalConnectivity, DeleteEndpoint; nothing left.
    let t = Instant::now();
    docker.ok(&lab, &["rm", "-f", &c1, &c2]);
    println!("docker rm -f took {:?}", t.elapsed());
    let left = ps_names(&lab);
    assert!(left.is_empty(), "netyard ps after docker rm -f: {left:?}");
    // DeleteEndpoint answers once the endpoint is forgotten; the device goes right after.
    let host_ends = || netyard_host_ends(&lab.host.name);
    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        host_ends().is_empty()
    });
    assert!(
        gone,
        "veth ends left 5 s after docker rm -f: {:?}",
        host_ends()
    );

    // docker network rm removes the netyard network.
    docker.ok(&lab, &["network", "rm", &dnet]);
    let nets = lab.ny_json(&["network", "ls", "--json"]);
    assert!(
        !nets.to_string().contains(&net),
        "netyard network {net} after docker network rm: {nets}"
    );
    println!("test body took {:?}", t_test.elapsed());
}

/// What Docker and netyard say of a container on a dual-stack network.
struct Dual {
    name: String,
    ip6: String,
}

/// One `--ipv6` network's checks: both containers are where Docker says (GlobalIPv6Address,
/// netyard's `ip6`), ping each other by name over IPv6 (AAAA from Docker's 127.0.0.11) and the
/// gateway's IPv6 address, with the default IPv6 route through it.
fn check_dual_stack(lab: &Lab, docker: &Docker, net: &str, c: [&Dual; 2]) {
    let info = lab.ny_json(&["network", "inspect", net]);
    let gw6 = info["gateway6"].as_str().unwrap_or_default().to_string();
    assert!(!gw6.is_empty(), "not dual stack: {info}");
    let ps = lab.ny_json(&["ps", "--json"]);
    for d in c {
        let global = docker.ok(
            lab,
            &[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}",
                &d.name,
            ],
        );
        assert_eq!(global, d.ip6, "docker inspect {}", d.name);
        assert!(
            ps.as_array()
                .is_some_and(|a| a.iter().any(|e| e["network"] == net && e["ip6"] == d.ip6)),
            "no netyard endpoint with {} on {net}: {ps}",
            d.ip6
        );
    }
    let (from, to) = (c[0], c[1]);
    let inside = docker.ok(
        lab,
        &[
            "exec",
            &from.name,
            "sh",
            "-c",
            &format!(
                "ip -6 addr show dev eth0; ip -6 route; nslookup -type=AAAA {to} 127.0.0.11; \
                 ping -6 -c1 -W5 {to} && ping -6 -c1 -W5 {gw6}",
                to = to.name
            ),
        ],
    );
    for want in [
        format!("inet6 {}/", from.ip6),
        format!("default via {gw6} dev eth0"),
        format!("Address: {}", to.ip6),
        format!("from {}", to.ip6),
        format!("from {gw6}"),
    ] {
        assert!(
            inside.contains(&want),
            "{}: no {want:?} in\n{inside}",
            from.name
        );
    }
    println!(
        "{} ({}) reaches {} ({}) by name and the gateway {gw6} over IPv6",
        from.name, from.ip6, to.name, to.ip6
    );
}

#[test]
fn docker_ipv6_networks_are_dual_stack_with_netyards_ipam_or_dockers() {
    require_docker();
    let lab = Lab::new();
    let docker = Docker::start(&lab);
    let image = docker.image(&lab);
    let run = |name: &str, net: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--network", net, "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&image, "sh", "-c", IDLE]);
        docker.ok(&lab, &args);
        let ip6 = docker.ok(
            &lab,
            &[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}",
                name,
            ],
        );
        Dual {
            name: name.to_string(),
            ip6,
        }
    };
    // `docker network create -d netyard --ipv6 ARGS NAME`: the netyard network's name.
    let create = |name: &str, args: &[&str]| {
        let mut all = vec!["network", "create", "-d", "netyard", "--ipv6"];
        all.extend_from_slice(args);
        all.push(name);
        let id = docker.ok(&lab, &all);
        id[..12].to_string()
    };

    // netyard's IPAM, --ipv6 alone: netyard picks the IPv4 subnet and a ULA /64, Docker
    // learns both from the IPAM (RequestPool with V6) and creates the network from them.
    let dnet = format!("nyt{}v6a", lab.id);
    let net_a = create(&dnet, &["--ipam-driver", "netyard"]);
    let info = lab.ny_json(&["network", "inspect", &net_a]);
    let subnets = docker.ok(
        &lab,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            &dnet,
        ],
    );
    let prefix = info["subnet6"].as_str().unwrap_or_default().to_string();
    assert!(
        prefix.starts_with("fd") && prefix.ends_with("::/64"),
        "{info}"
    );
    assert!(
        subnets.contains(&prefix),
        "docker: {subnets:?}, netyard: {info}"
    );
    let d1 = run(&format!("nyt{}a1", lab.id), &dnet, &[]);
    let d2 = run(&format!("nyt{}a2", lab.id), &dnet, &[]);
    check_dual_stack(&lab, &docker, &net_a, [&d1, &d2]);

    // Docker's default IPAM, both subnets given, a static IPv6 address with --ip6.
    let sub = Subnet::random();
    let prefix = format!("fd00:{:x}:{:x}::/64", sub.a, sub.b);
    let gw6 = format!("fd00:{:x}:{:x}::1", sub.a, sub.b);
    let fixed = format!("fd00:{:x}:{:x}::99", sub.a, sub.b);
    let dnet_b = format!("nyt{}v6b", lab.id);
    let net_b = create(&dnet_b, &["--subnet", &sub.cidr(), "--subnet", &prefix]);
    let info = lab.ny_json(&["network", "inspect", &net_b]);
    assert_eq!(info["subnet6"], prefix.as_str(), "{info}");
    assert_eq!(info["gateway6"], gw6.as_str(), "{info}");
    let e1 = run(&format!("nyt{}b1", lab.id), &dnet_b, &["--ip6", &fixed]);
    let e2 = run(&format!("nyt{}b2", lab.id), &dnet_b, &[]);
    assert_eq!(e1.ip6, fixed, "--ip6");
    check_dual_stack(&lab, &docker, &net_b, [&e2, &e1]);

    // A --ip6 outside the prefix: refused (by Docker's IPAM before netyard's is asked).
    let bad = format!("nyt{}b3", lab.id);
    let o = docker.run(&[
        "run",
        "-d",
        "--network",
        &dnet_b,
        "--name",
        &bad,
        "--ip6",
        "fd00:dead::5",
        &image,
        "sh",
        "-c",
        IDLE,
    ]);
    assert!(!o.status.success(), "--ip6 outside {prefix}: {}", show(&o));
    println!("--ip6 outside the prefix: {}", show(&o).trim());

    let all = [&d1.name, &d2.name, &e1.name, &e2.name, &bad];
    let mut rm = vec!["rm", "-f"];
    rm.extend(all.iter().map(|n| n.as_str()));
    docker.ok(&lab, &rm);
    docker.ok(&lab, &["network", "rm", &dnet, &dnet_b]);
    let left = ps_names(&lab);
    assert!(left.is_empty(), "netyard ps after docker rm -f: {left:?}");
    let nets = lab.ny_json(&["network", "ls", "--json"]);
    assert!(
        !nets.to_string().contains(&net_a) && !nets.to_string().contains(&net_b),
        "netyard networks after docker network rm: {nets}"
    );
    let host_ends = || netyard_host_ends(&lab.host.name);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            host_ends().is_empty()
        }),
        "veth ends left 5 s after docker rm -f: {:?}",
        host_ends()
    );
}
