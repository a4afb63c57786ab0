//! `netyard pasta` driven as Podman 5 drives pasta: Podman's exact argument lists (5.0, and
//! 5.3 and later with `--map-guest-addr` and `--pid`), against a namespace made as Podman
//! makes one (a bind-mounted network namespace; for rootless Podman, one owned by the user's
//! own user namespace, with the helper started inside it).
//!
//! The world: a "host" namespace (where the helper runs, as Podman runs it) with a veth to an
//! "outside" namespace at 198.18.X.0/24 holding the servers and the host's default route, and
//! a dnsmasq on the host namespace's loopback port 53 as the host's resolver (its
//! resolv.conf, bind-mounted by `ip netns exec` from /etc/netns/HOST/, names only it). Checked:
//! the helper exits 0 once the namespace is ready (and names the child in `--pid`), the
//! container reaches the outside (TCP, UDP, ping), resolves names through 169.254.1.1 and
//! reaches the host through 169.254.1.2, published TCP and UDP ports reached from the outside
//! show the client's own address in the container, and the helper quits and leaves nothing
//! when the namespace is deleted. With IPv6 on the host (2001:db8:X::/64 to the outside and
//! an IPv6 default route there): the container's ULA address and its default route from the
//! gateway's RA, ping and TCP to the outside's IPv6 address, and the published port reached
//! by the outside's IPv6 client, shown as itself. Bad input: pasta's errors and exit status
//! 1, nothing left.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Accepts TCP connections on argv[1] (of 0.0.0.0, or of argv[3], an IPv6 address, for
/// IPv6 clients only); answers each with "<argv[2]> <peer address>".
const TCP_PEER_SERVER: &str = r#"
import socket, sys
six = sys.argv[3:]
s = socket.socket(socket.AF_INET6 if six else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if six:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((six[0] if six else "0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall(("%s %s" % (sys.argv[2], a[0])).encode())
    c.close()
"#;

/// Answers every UDP datagram on argv[1] with "<argv[2]> <peer address>".
const UDP_PEER_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(("%s %s" % (sys.argv[2], a[0])).encode(), a)
"#;

/// Connects to argv[1]:argv[2] over TCP and prints what it receives.
const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
data = b""
while True:
    b = c.recv(200)
    if not b:
        break
    data += b
print(data.decode())
"#;

/// Sends a datagram to argv[1]:argv[2] (again every second, 10 tries) and prints the reply.
const UDP_CLIENT_ONE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(10):
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode())
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"#;

const DNS_FORWARD: &str = "169.254.1.1";
const GUEST_ADDR_MAP: &str = "169.254.1.2";
/// Published ports: host side, container side.
const TCP_HOST_PORT: u16 = 18080;
const TCP_CTR_PORT: u16 = 8080;
const UDP_HOST_PORT: u16 = 18081;
const UDP_CTR_PORT: u16 = 8081;
/// Servers in "outside" and on the host.
const OUT_TCP: u16 = 5050;
const OUT_UDP: u16 = 5051;
const HOST_TCP: u16 = 5060;

/// Podman 5.0's arguments for `-p 18080:8080` (no --map-guest-addr, no --pid yet).
fn podman_50_args(netns: &str) -> Vec<String> {
    let t = format!("{TCP_HOST_PORT}-{TCP_HOST_PORT}:{TCP_CTR_PORT}-{TCP_CTR_PORT}");
    [
        "--config-net",
        "-t",
        &t,
        "--dns-forward",
        DNS_FORWARD,
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--quiet",
        "--netns",
        netns,
    ]
    .map(String::from)
    .to_vec()
}

/// Podman 5.3 and later for `-p 18080:8080 -p 18081:8081/udp`: --map-guest-addr, and (the
/// current releases) a --pid file in a directory of its own, before --netns.
fn podman_5x_args(netns: &str, pid_file: &str) -> Vec<String> {
    let t = format!("{TCP_HOST_PORT}-{TCP_HOST_PORT}:{TCP_CTR_PORT}-{TCP_CTR_PORT}");
    let u = format!("{UDP_HOST_PORT}-{UDP_HOST_PORT}:{UDP_CTR_PORT}-{UDP_CTR_PORT}");
    [
        "--config-net",
        "-t",
        &t,
        "-u",
        &u,
        "--dns-forward",
        DNS_FORWARD,
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--quiet",
        "--map-guest-addr",
        GUEST_ADDR_MAP,
        "--pid",
        pid_file,
        "--netns",
        netns,
    ]
    .map(String::from)
    .to_vec()
}

/// The lab's host namespace as Podman's host: a default route to "outside", dnsmasq on
/// 127.0.0.1:53 answering `*.outside.test` with the outside server's address, and a
/// resolv.conf naming only it (removed again on drop).
struct Host {
    out: Outside,
    resolv_dir: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.resolv_dir);
    }
}

fn host(lab: &Lab) -> Host {
    host_with(lab, lab.outside())
}

/// [`host`] with its outside namespace made already.
fn host_with(lab: &Lab, out: Outside) -> Host {
    require_program("dnsmasq", "dnsmasq-base");
    require_program("dig", "dnsutils");
    require_program("python3", "python3");
    cmd_ok(&[
        "ip",
        "-n",
        &lab.host.name,
        "route",
        "add",
        "default",
        "via",
        &out.ip,
    ]);
    // `ip netns exec HOST` bind-mounts /etc/netns/HOST/resolv.conf over /etc/resolv.conf.
    let resolv_dir = PathBuf::from(format!("/etc/netns/{}", lab.host.name));
    std::fs::create_dir_all(&resolv_dir).expect("mkdir /etc/netns/HOST");
    std::fs::write(resolv_dir.join("resolv.conf"), "nameserver 127.0.0.1\n")
        .expect("write the host namespace's resolv.conf");
    let h = Host { out, resolv_dir };
    let addr = format!("--address=/outside.test/{}", h.out.ip);
    let pid_file = lab.dir.join("dnsmasq.pid").display().to_string();
    lab.bg_in(
        &lab.host.name,
        &[
            "dnsmasq",
            "--conf-file=/dev/null",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            &format!("--pid-file={pid_file}"),
            &addr,
            "--log-queries",
            "--log-facility=-",
        ],
        "dnsmasq.log",
    );
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let o = ns_cmd(
            &lab.host.name,
            &[
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                "@127.0.0.1",
                "www.outside.test",
            ],
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&o.stdout).trim() == h.out.ip
    });
    assert!(up, "dnsmasq in the host namespace never answered");
    // The servers: outside (TCP, UDP) and on the host itself (for 169.254.1.2).
    let tag = "outside";
    lab.bg_in(
        &h.out.ns,
        &["python3", "-c", TCP_PEER_SERVER, &OUT_TCP.to_string(), tag],
        "out_tcp.log",
    );
    lab.bg_in(
        &h.out.ns,
        &["python3", "-c", UDP_PEER_SERVER, &OUT_UDP.to_string(), tag],
        "out_udp.log",
    );
    lab.bg_in(
        &lab.host.name,
        &[
            "python3",
            "-c",
            TCP_PEER_SERVER,
            &HOST_TCP.to_string(),
            "host",
        ],
        "host_tcp.log",
    );
    assert!(
        wait_listening(&h.out.ns, OUT_TCP, Proto::Tcp),
        "outside TCP server"
    );
    assert!(
        wait_listening(&lab.host.name, HOST_TCP, Proto::Tcp),
        "host TCP server"
    );
    h
}

/// A helper process the test did not start itself (the background child of `pasta`):
/// killed by pid on drop if it is still there, so a failing test leaves nothing.
struct Helper(Option<u32>);

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if alive(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie (the test is not its parent, so none should linger) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of processes whose command line mentions `needle` (a namespace path unique to the
/// test), other than this test process.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if pid != me && text.contains(needle) && text.contains("pasta") && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Runs `netyard pasta ARGS` in the host namespace as Podman does: waits for it to exit
/// and collects its output until every holder of its stdout/stderr closed them.
fn run_pasta(lab: &Lab, args: &[String]) -> Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name, NETYARD, "pasta"])
        .args(args);
    run_bounded(&mut c, Duration::from_secs(30))
}

/// Runs `pasta` with Podman 5.3+'s arguments for `ns` (the --pid file in a directory of its
/// own); fails unless it exits 0 naming a running child in the pid file. Returns its output,
/// the guard that kills the child if the test fails, and the child's pid.
fn pasta_5x(lab: &Lab, ns: &Netns) -> (Output, Helper, u32) {
    let pid_dir = lab.dir.join("pasta-pid");
    std::fs::create_dir_all(&pid_dir).expect("mkdir pasta-pid");
    let pid_file = pid_dir.join("pasta.pid").display().to_string();
    let o = run_pasta(lab, &podman_5x_args(&ns.path(), &pid_file));
    let pid: Option<u32> = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let helper = Helper(pid);
    if !o.status.success() {
        lab.fail(&format!(
            "pasta (Podman 5.3+ arguments) failed: {}",
            show(&o)
        ));
    }
    let pid = pid.unwrap_or_else(|| lab.fail(&format!("no pid in {pid_file}")));
    assert!(alive(pid), "the pid file names {pid}, which is not running");
    (o, helper, pid)
}

/// TCP_CLIENT from `ns` to `ip`:`port`, again every 200 ms for up to 20 s while its server
/// starts (or the container's IPv6 route arrives); what the server answered.
fn tcp_answer(lab: &Lab, ns: &str, ip: &str, port: u16) -> String {
    let mut last = None;
    let port = port.to_string();
    let reached = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let o = ns_cmd(ns, &["python3", "-c", TCP_CLIENT, ip, &port], CLI_TIMEOUT);
        let ok = o.status.success();
        last = Some(o);
        ok
    });
    let o = last.unwrap_or_else(|| lab.fail("no TCP attempt was made"));
    if !reached {
        lab.fail(&format!("TCP from {ns} to [{ip}]:{port}: {}", show(&o)));
    }
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Everything the container side must reach, from inside namespace `ns`.
fn check_container_side(lab: &Lab, h: &Host, ns: &str) {
    // An address, a default route, the interface up.
    let o = ns_cmd(
        ns,
        &["ip", "-4", "-o", "addr", "show", "scope", "global"],
        CLI_TIMEOUT,
    );
    let addrs = String::from_utf8_lossy(&o.stdout).to_string();
    if !addrs.contains("inet ") {
        lab.fail(&format!("no IPv4 address in the namespace: {}", show(&o)));
    }
    // TCP and UDP to the outside server: it sees the host's address (egress leaves through
    // host sockets).
    let got = py_ok(
        lab,
        ns,
        "-c",
        &[TCP_CLIENT, &h.out.ip, &OUT_TCP.to_string()],
    );
    assert_eq!(got, format!("outside {}", h.out.host_ip), "TCP egress");
    let got = py_ok(
        lab,
        ns,
        "-c",
        &[UDP_CLIENT_ONE, &h.out.ip, &OUT_UDP.to_string()],
    );
    assert_eq!(got, format!("outside {}", h.out.host_ip), "UDP egress");
    // ping: the host namespace lets every group open ICMP datagram sockets, as Podman's hosts do.
    lab.set_ping_group_range("0 2147483647");
    let o = ns_cmd(
        ns,
        &["ping", "-n", "-c", "2", "-i", "0.2", "-W", "3", &h.out.ip],
        CLI_TIMEOUT,
    );
    if !o.status.success() {
        lab.fail(&format!("ping to the outside failed: {}", show(&o)));
    }
    // DNS through the --dns-forward address, answered by the host's resolver.
    let o = ns_cmd(
        ns,
        &[
            "dig",
            "+short",
            "+time=2",
            "+tries=3",
            &format!("@{DNS_FORWARD}"),
            "www.outside.test",
        ],
        CLI_TIMEOUT,
    );
    if String::from_utf8_lossy(&o.stdout).trim() != h.out.ip {
        lab.fail(&format!("DNS through {DNS_FORWARD}: {}", show(&o)));
    }
    // The gateway's address answers ping too (the container's first hop).
    let gw = cmd_ok(&["ip", "-n", ns, "-4", "route", "show", "default"]);
    let gw = gw.split_whitespace().nth(2).unwrap_or_default().to_string();
    lab.assert_ping(ns, &gw);
}

/// The host through the --map-guest-addr address (Podman's host.containers.internal).
fn check_guest_addr_map(lab: &Lab, h: &Host, ns: &str) {
    let got = py_ok(
        lab,
        ns,
        "-c",
        &[TCP_CLIENT, GUEST_ADDR_MAP, &HOST_TCP.to_string()],
    );
    // The host's server sees a connection from the host's own address.
    assert_eq!(
        got,
        format!("host {}", h.out.host_ip),
        "TCP to {GUEST_ADDR_MAP}"
    );
}

/// Published ports from the outside: the container's servers see the client's address.
fn check_published(lab: &Lab, h: &Host, ns: &str, udp: bool) {
    lab.bg_in(
        ns,
        &[
            "python3",
            "-c",
            TCP_PEER_SERVER,
            &TCP_CTR_PORT.to_string(),
            "ctr",
        ],
        "ctr_tcp.log",
    );
    assert!(
        wait_listening(ns, TCP_CTR_PORT, Proto::Tcp),
        "container TCP server"
    );
    let got = py_ok(
        lab,
        &h.out.ns,
        "-c",
        &[TCP_CLIENT, &h.out.host_ip, &TCP_HOST_PORT.to_string()],
    );
    assert_eq!(
        got,
        format!("ctr {}", h.out.ip),
        "published TCP keeps the client address"
    );
    if udp {
        lab.bg_in(
            ns,
            &[
                "python3",
                "-c",
                UDP_PEER_SERVER,
                &UDP_CTR_PORT.to_string(),
                "ctr",
            ],
            "ctr_udp.log",
        );
        assert!(
            wait_listening(ns, UDP_CTR_PORT, Proto::Udp),
            "container UDP server"
        );
        let got = py_ok(
            lab,
            &h.out.ns,
            "-c",
            &[UDP_CLIENT_ONE, &h.out.host_ip, &UDP_HOST_PORT.to_string()],
        );
        assert_eq!(
            got,
            format!("ctr {}", h.out.ip),
            "published UDP keeps the client address"
        );
    }
}

/// Deletes the namespace and waits for the helper to quit; then nothing of it is left: no
/// process, no listener on the published ports.
fn check_quits_with_namespace(lab: &Lab, ns: Netns, pid: u32) {
    drop(ns);
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        !alive(pid)
    });
    if !gone {
        lab.fail(&format!(
            "the helper {pid} did not quit after the namespace was deleted"
        ));
    }
    for (port, proto) in [(TCP_HOST_PORT, "-Hltn"), (UDP_HOST_PORT, "-Hlun")] {
        let o = ns_cmd(
            &lab.host.name,
            &["ss", proto, &format!("sport = :{port}")],
            CLI_TIMEOUT,
        );
        let left = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(
            left.is_empty(),
            "port {port} still bound after the helper quit: {left}"
        );
    }
}

#[test]
fn podman_5x_arguments_serve_the_namespace_and_quit_with_it() {
    let lab = Lab::bare();
    let h = host(&lab);
    let ns = Netns::new(&lab.id, "c");
    let (o, _helper, pid) = pasta_5x(&lab, &ns);
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "--quiet prints nothing: {}",
        show(&o)
    );
    check_container_side(&lab, &h, &ns.name);
    check_guest_addr_map(&lab, &h, &ns.name);
    check_published(&lab, &h, &ns.name, true);
    check_quits_with_namespace(&lab, ns, pid);
}

/// Podman 5.3+'s arguments on a host with IPv6: the container is dual-stack.
#[test]
fn podman_5x_arguments_give_ipv6_when_the_host_has_it() {
    let lab = Lab::bare();
    let out6 = lab.outside6();
    let h = host_with(&lab, out6.v4.clone());
    cmd_ok(&[
        "ip",
        "-n",
        &lab.host.name,
        "-6",
        "route",
        "add",
        "default",
        "via",
        &out6.ip,
    ]);
    lab.bg_in(
        &h.out.ns,
        &[
            "python3",
            "-c",
            TCP_PEER_SERVER,
            &OUT_TCP.to_string(),
            "outside6",
            "::",
        ],
        "out_tcp6.log",
    );
    let ns = Netns::new(&lab.id, "c");
    let (_, _helper, pid) = pasta_5x(&lab, &ns);
    // A unique-local /64 of netyard's choosing (layout.rs), the default route from the RA.
    let addr6 = cmd_ok(&[
        "ip", "-n", &ns.name, "-6", "-o", "addr", "show", "scope", "global",
    ]);
    assert!(
        addr6.contains("inet6 fd") && addr6.contains("::2/64"),
        "{addr6}"
    );
    let mut route6 = String::new();
    let routed = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        route6 = cmd_ok(&["ip", "-n", &ns.name, "-6", "route", "show", "default"]);
        route6.contains("via fe80::")
    });
    assert!(
        routed,
        "no IPv6 default route from the gateway's RA: {route6:?}"
    );
    lab.set_ping_group_range("0 2147483647");
    lab.assert_ping(&ns.name, &out6.ip);
    // TCP out: the outside server sees the host's IPv6 address.
    assert!(
        wait_listening(&h.out.ns, OUT_TCP, Proto::Tcp),
        "outside TCP server"
    );
    let got = tcp_answer(&lab, &ns.name, &out6.ip, OUT_TCP);
    assert_eq!(got, format!("outside6 {}", out6.host_ip), "IPv6 TCP egress");
    // TCP in: `-t 18080:8080` reached by the outside's IPv6 client, shown as itself.
    lab.bg_in(
        &ns.name,
        &[
            "python3",
            "-c",
            TCP_PEER_SERVER,
            &TCP_CTR_PORT.to_string(),
            "ctr6",
            "::",
        ],
        "ctr_tcp6.log",
    );
    let got = tcp_answer(&lab, &h.out.ns, &out6.host_ip, TCP_HOST_PORT);
    assert_eq!(
        got,
        format!("ctr6 {}", out6.ip),
        "published TCP keeps the IPv6 client"
    );
    // IPv4 still as before.
    check_container_side(&lab, &h, &ns.name);
    check_quits_with_namespace(&lab, ns, pid);
}

#[test]
fn podman_50_arguments_serve_the_namespace_and_quit_with_it() {
    let lab = Lab::bare();
    let h = host(&lab);
    let ns = Netns::new(&lab.id, "c");
    let o = run_pasta(&lab, &podman_50_args(&ns.path()));
    // No --pid in 5.0: find the background child by the namespace path it serves.
    let pids = pids_mentioning(&ns.path());
    let _helper = Helper(pids.first().copied());
    if !o.status.success() {
        lab.fail(&format!(
            "pasta (Podman 5.0 arguments) failed: {}",
            show(&o)
        ));
    }
    assert_eq!(
        pids.len(),
        1,
        "one helper process serves {}: {pids:?}",
        ns.path()
    );
    check_container_side(&lab, &h, &ns.name);
    check_published(&lab, &h, &ns.name, false);
    check_quits_with_namespace(&lab, ns, pids[0]);
}

#[test]
fn bad_input_gets_pastas_errors_and_leaves_nothing() {
    let lab = Lab::bare();
    let ns = Netns::new(&lab.id, "c");
    let path = ns.path();
    let missing = format!("/run/netns/nyt{}none", lab.id);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            [&["--bogus".to_string()][..], &podman_50_args(&path)].concat(),
            "pasta: unrecognized option '--bogus'",
        ),
        (podman_50_args(&missing), "Couldn't open network namespace"),
        (
            ["--config-net", "-t", "80:99999", "--netns", &path]
                .map(String::from)
                .to_vec(),
            "Invalid port specifier 80:99999",
        ),
        (
            ["--config-net", "-t", "all", "--netns", &path]
                .map(String::from)
                .to_vec(),
            "'all' port forwarding is only allowed for passt",
        ),
        (
            ["--config-net", "--netns"].map(String::from).to_vec(),
            "option '--netns' requires an argument",
        ),
    ];
    for (args, needle) in cases {
        let o = run_pasta(&lab, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", show(&o));
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in:\n{err}"
        );
        if needle.contains(&missing) || needle.starts_with("Couldn't") {
            assert!(err.contains(&missing), "the error names the path: {err}");
        }
    }
    assert!(
        pids_mentioning(&path).is_empty() && pids_mentioning(&missing).is_empty(),
        "a helper is left"
    );
    // The namespace is as it was: only its loopback.
    assert_eq!(
        links(&ns.name),
        vec!["lo".to_string()],
        "the namespace was changed"
    );
    // --help and --version as pasta's, the version naming netyard.
    let o = run_pasta(&lab, &["--version".to_string()]);
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && v.starts_with("pasta ") && v.contains("netyard"),
        "{}",
        show(&o)
    );
    let o = run_pasta(&lab, &["--help".to_string()]);
    let help = String::from_utf8_lossy(&o.stdout);
    for opt in [
        "--config-net",
        "--dns-forward",
        "--map-guest-addr",
        "--no-map-gw",
        "--netns",
        "--pid",
        "--tcp-ports",
    ] {
        assert!(help.contains(opt), "--help names {opt}");
    }
    let _ = Path::new(&path);
}

/// Rootless Podman's way: the user's own user and mount namespaces (`unshare --user
/// --map-root-user --mount`, as Podman's pause process holds them), a network namespace
/// bind-mounted under the user's runtime directory inside them, and the helper started
/// there as the user (root inside the user namespace). The test then names the container's
/// namespace for `ip netns exec` (`ip netns attach`, through a process sitting in it) to run
/// the same checks, and deletes the user's path the way Podman does (umount, rm).
#[test]
fn rootless_podman_namespace_in_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::bare();
    let h = host(&lab);
    let (uid, gid) = ensure_rootless_user();
    let tun = Path::new("/dev/net/tun");
    let mode = std::fs::metadata(tun)
        .expect("/dev/net/tun")
        .permissions()
        .mode();
    if mode & 0o666 != 0o666 {
        std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666))
            .expect("chmod 0666 /dev/net/tun");
    }
    // ICMP egress of an unprivileged helper goes through ICMP datagram sockets.
    lab.set_ping_group_range("0 2147483647");
    let run = lab.dir.join("rl");
    std::fs::create_dir_all(run.join("netns")).unwrap();
    std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    cmd_ok(&[
        "chown",
        "-R",
        &format!("{uid}:{gid}"),
        &run.to_string_lossy(),
    ]);
    let d = run.display().to_string();
    let netns = format!("{d}/netns/netns-{}", lab.id);
    let pid_file = format!("{d}/pasta.pid");
    let args = podman_5x_args(&netns, &pid_file).join(" ");
    // Inside the user's namespaces: make the container's namespace as Podman does, start the
    // helper, put a process in the namespace for the test to find it, then hold on.
    let script = format!(
        "set -e; mount -t tmpfs tmpfs {d}/netns; touch {netns}; unshare --net={netns} true; \
         {NETYARD} pasta {args}; echo \"pasta exited $?\"; \
         nsenter --net={netns} sleep 600 & echo \"holder $!\"; wait"
    );
    let run_as = RunAs {
        uid,
        gid,
        runtime_dir: run.clone(),
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name])
        .args(run_as.prefix())
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &script,
        ]);
    let log = lab.dir.join("rootless.log");
    let userns = Bg::spawn(&mut c, &log);
    let user_pid = userns.pid();
    let holder = std::cell::Cell::new(None::<u32>);
    let up = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        holder.set(
            text.lines()
                .find_map(|l| l.strip_prefix("holder "))
                .and_then(|p| p.trim().parse().ok()),
        );
        holder.get().is_some() || text.contains("pasta exited 1")
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // The pid file lives in the user's mount namespace.
    let pid: Option<u32> = cmd(
        &[
            "nsenter",
            "-t",
            &user_pid.to_string(),
            "-m",
            "cat",
            &pid_file,
        ],
        CLI_TIMEOUT,
    )
    .stdout
    .iter()
    .map(|&b| b as char)
    .collect::<String>()
    .trim()
    .parse()
    .ok();
    let _helper = Helper(pid);
    lab.keep(userns);
    if !up || !text.contains("pasta exited 0") {
        lab.fail(&format!("rootless pasta did not come up:\n{text}"));
    }
    let pid = pid.unwrap_or_else(|| lab.fail("no pid file from the rootless helper"));
    // The helper runs as the user, in the user namespace.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&uid.to_string())),
        "the helper runs as {uid}:\n{status}"
    );
    let name = format!("nyt{}rl", lab.id);
    cmd_ok(&[
        "ip",
        "netns",
        "attach",
        &name,
        &holder.get().unwrap_or_default().to_string(),
    ]);
    struct Named(String);
    impl Drop for Named {
        fn drop(&mut self) {
            let _ = cmd(&["ip", "netns", "del", &self.0], CLI_TIMEOUT);
        }
    }
    let named = Named(name.clone());
    check_container_side(&lab, &h, &name);
    check_guest_addr_map(&lab, &h, &name);
    check_published(&lab, &h, &name, true);
    // Podman removes the namespace's path: umount and rm, in its mount namespace.
    cmd_ok(&[
        "nsenter",
        "-t",
        &user_pid.to_string(),
        "-m",
        "sh",
        "-c",
        &format!("umount {netns} && rm {netns}"),
    ]);
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        !alive(pid)
    });
    if !gone {
        lab.fail(&format!(
            "the rootless helper {pid} did not quit after its namespace path was removed"
        ));
    }
    drop(named);
}

/// `pasta [OPTION]... PID`: the process's namespace is served until the process exits.
#[test]
fn a_pid_target_is_served_until_its_process_exits() {
    let lab = Lab::bare();
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &lab.host.name,
        "unshare",
        "--net",
        "sleep",
        "600",
    ]);
    let mut holder = Bg::spawn(&mut c, &lab.dir.join("holder.log"));
    let target = holder.pid();
    let in_ns = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let comm = std::fs::read_to_string(format!("/proc/{target}/comm")).unwrap_or_default();
        comm.trim() == "sleep"
    });
    assert!(in_ns, "unshare --net sleep did not start");
    let pid_file = lab.dir.join("pasta.pid").display().to_string();
    let args: Vec<String> = [
        "--config-net",
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--quiet",
        "--pid",
        &pid_file,
        &target.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let o = run_pasta(&lab, &args);
    let pid: Option<u32> = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let _helper = Helper(pid);
    if !o.status.success() {
        lab.fail(&format!("pasta PID failed: {}", show(&o)));
    }
    let pid = pid.unwrap_or_else(|| lab.fail("no pid file"));
    let t = target.to_string();
    let route = cmd_ok(&[
        "nsenter", "-t", &t, "-n", "ip", "-4", "route", "show", "default",
    ]);
    let gw = route
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let o = cmd(
        &["nsenter", "-t", &t, "-n", "ping", "-c", "1", "-W", "3", &gw],
        CLI_TIMEOUT,
    );
    if !o.status.success() {
        lab.fail(&format!(
            "ping to the gateway {gw} from the PID's namespace: {}",
            show(&o)
        ));
    }
    holder.stop(Duration::from_secs(3));
    let gone = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        !alive(pid)
    });
    if !gone {
        lab.fail(&format!(
            "the helper {pid} did not quit after process {target} exited"
        ));
    }
}
