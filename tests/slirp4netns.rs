//! `netyard slirp4netns`, driven as Podman 4.3 drives slirp4netns: the binary under the name
//! `slirp4netns` (a link), `-c -e 3 -r 4 --api-socket P --netns-type=path NETNS tap0` with a
//! real exit pipe and ready pipe, in the lab's "host" namespace, which has a veth to an
//! "outside" namespace (198.18.X.0/24) holding the servers and a dnsmasq on its loopback as
//! the upstream resolver (`/etc/netns/HOST/resolv.conf`, which `ip netns exec` binds over
//! /etc/resolv.conf). Checked: the guest's layout, a fetch from the outside server, a name
//! resolved through 10.0.2.3 (forwarded to dnsmasq) and the guest's own, a ping to the
//! outside, the API socket (add/list/remove with slirp4netns's JSON, malformed requests) with
//! a forwarded connection that keeps the client's address, and exit on the exit fd's
//! hang-up leaving nothing behind. With `--enable-ipv6` (which Podman passes) the same over
//! IPv6 (the outside and the host namespace have addresses in 2001:db8:X::/64 too): the
//! guest's fd00::100 and default route, a fetch from the outside's IPv6 address, AAAA
//! answers through fd00::3, ping, the gateway fd00::2 refusing TCP under
//! `--disable-host-loopback`, and a forward on `"host_addr":"::"` keeping the IPv6 client's
//! address. Bad command lines: unknown option, missing namespace,
//! closed exit fd.
//!
//! RootlessKit 1.1 itself runs on the front as the unprivileged test user (which gets a
//! subordinate id range once, for RootlessKit's mappings), with the same checks from a shell
//! inside it. Rootless Podman 4.3 on the front: tests/slirp4netns_podman.rs.

mod common;

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Greets each TCP client with its address as the server saw it, then closes. Listens on
/// 0.0.0.0:argv[1], or on argv[3] (an IPv6 address: IPv6 clients only) when given.
const PEER_SERVER: &str = r#"
import socket, sys
v6 = len(sys.argv) > 3
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((sys.argv[3] if v6 else "0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall(("%s %s\n" % (sys.argv[2], a[0])).encode())
    c.close()
"#;

/// Connects to argv[1]:argv[2] and prints what it receives.
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
data = b""
while True:
    b = c.recv(100)
    if not b:
        break
    data += b
print(data.decode().strip())
"#;

/// One request to a unix socket (half-closed after it, as Podman does); prints the reply.
const API_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print(data.decode())
"#;

/// Removes `/etc/netns/NAME` (the host namespace's resolv.conf) when the test ends.
struct EtcNetns(std::path::PathBuf);

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The upstream resolver: dnsmasq on the host namespace's loopback, answering
/// server.outside.test with the outside addresses `ips` (IPv4, and IPv6 if listed), named by
/// the host namespace's resolv.conf (`/etc/netns/HOST/resolv.conf`, which `ip netns exec`
/// binds over /etc/resolv.conf; removed when the returned guard drops).
fn upstream_resolver(lab: &Lab, ips: &[&str]) -> EtcNetns {
    let etc = EtcNetns(std::path::Path::new("/etc/netns").join(&lab.host.name));
    std::fs::create_dir_all(&etc.0).expect("mkdir /etc/netns/HOST");
    std::fs::write(etc.0.join("resolv.conf"), "nameserver 127.0.0.1\n").expect("resolv.conf");
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
            &format!("--host-record=server.outside.test,{}", ips.join(",")),
        ],
        "dnsmasq.log",
    );
    etc
}

/// The link named `slirp4netns` to the netyard binary, as `--network-cmd-path` takes it.
fn front_link(lab: &Lab) -> String {
    let link = lab.dir.join("slirp4netns");
    let _ = std::os::unix::fs::symlink(NETYARD, &link);
    link.to_string_lossy().into_owned()
}

/// Runs the front in the host namespace with `argv`, fds 3 and 4 from the files given.
fn spawn_front(lab: &Lab, argv: &[&str], fd3: &str, fd4: &str, log: &str) -> Bg {
    let script = format!("exec \"$0\" \"$@\" 3<{fd3} 4>{fd4}");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name, "sh", "-c", &script])
        .arg(front_link(lab))
        .args(argv);
    Bg::spawn(&mut c, &lab.dir.join(log))
}

fn api(lab: &Lab, sock: &str, req: &str) -> Value {
    let out = py_ok(
        lab,
        &lab.host.name,
        &lab.write_file("api.py", API_CLIENT),
        &[sock, req],
    );
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| lab.fail(&format!("API reply to {req} is no JSON ({e}): {out:?}")))
}

#[test]
fn podman_style_front_serves_egress_dns_ping_and_forwarded_ports_then_exits_on_hangup() {
    require_program("dnsmasq", "dnsmasq-base");
    require_program("dig", "dnsutils");
    let lab = Lab::bare();
    let out6 = lab.outside6();
    let out = &out6.v4;
    let guest_ns = lab.ns("g");
    let client = lab.write_file("client.py", CLIENT);
    let _etc = upstream_resolver(&lab, &[&out.ip, &out6.ip]);
    lab.bg_in(
        &out.ns,
        &["python3", "-c", PEER_SERVER, "8080", "outside"],
        "outside_server.log",
    );
    assert!(wait_listening(&out.ns, 8080, Proto::Tcp), "outside server");
    lab.bg_in(
        &out.ns,
        &["python3", "-c", PEER_SERVER, "8086", "outside6", "::"],
        "outside_server6.log",
    );
    assert!(
        wait_listening(&out.ns, 8086, Proto::Tcp),
        "outside IPv6 server"
    );
    // Exit pipe: the test holds it read-write, so dropping it is the runtime's hang-up.
    let fifo = |n: &str| {
        let p = lab.dir.join(n);
        cmd_ok(&["mkfifo", &p.to_string_lossy()]);
        p
    };
    let (exit_p, ready_p) = (fifo("exit.fifo"), fifo("ready.fifo"));
    let exit_w = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&exit_p)
        .expect("exit fifo");
    let mut ready_r = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&ready_p)
        .expect("ready fifo");
    let sock = lab.dir.join("front.sock").to_string_lossy().into_owned();
    let netns = format!("/run/netns/{guest_ns}");
    let mut front = spawn_front(
        &lab,
        &[
            "--disable-host-loopback",
            "--mtu=65520",
            "--enable-sandbox",
            "--enable-seccomp",
            "--enable-ipv6",
            "-c",
            "-e",
            "3",
            "-r",
            "4",
            "--api-socket",
            &sock,
            "--netns-type=path",
            &netns,
            "tap0",
        ],
        &exit_p.to_string_lossy(),
        &ready_p.to_string_lossy(),
        "front.log",
    );
    let mut got = Vec::new();
    let ready = wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        let mut b = [0u8; 8];
        if let Ok(n) = ready_r.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        !got.is_empty()
    });
    if !ready || got != b"1" {
        lab.fail(&format!(
            "no \"1\" on the ready fd (got {got:?}):\n{}",
            front.log_text()
        ));
    }
    // The layout slirp4netns gives with -c.
    let addr = cmd_ok(&["ip", "-n", &guest_ns, "-4", "-o", "addr", "show", "tap0"]);
    assert!(addr.contains("10.0.2.100/24"), "{addr}");
    let mtu = cmd_ok(&["ip", "-n", &guest_ns, "link", "show", "tap0"]);
    assert!(mtu.contains("mtu 65520"), "{mtu}");
    let route = cmd_ok(&["ip", "-n", &guest_ns, "route", "show", "default"]);
    assert!(route.contains("via 10.0.2.2"), "{route}");

    // Egress: a fetch from the outside server, which sees the host's address.
    let got = py_ok(&lab, &guest_ns, &client, &[&out.ip, "8080"]);
    assert_eq!(got.trim(), format!("outside {}", out.host_ip));
    // DNS through 10.0.2.3: forwarded to dnsmasq, and the guest's own name.
    assert_dig(
        &lab,
        &guest_ns,
        &["@10.0.2.3", "server.outside.test"],
        &out.ip,
    );
    assert_dig(&lab, &guest_ns, &["@10.0.2.3", "guest"], "10.0.2.100");
    lab.assert_ping(&guest_ns, &out.ip);

    // -6: slirp4netns's IPv6 layout, egress, DNS and ping over IPv6.
    let addr6 = cmd_ok(&[
        "ip", "-n", &guest_ns, "-6", "-o", "addr", "show", "tap0", "scope", "global",
    ]);
    assert!(addr6.contains("fd00::100/64"), "{addr6}");
    let mut route6 = String::new();
    let routed = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        route6 = cmd_ok(&["ip", "-n", &guest_ns, "-6", "route", "show", "default"]);
        route6.contains("via fe80::")
    });
    assert!(
        routed,
        "no IPv6 default route from the gateway's RA: {route6:?}"
    );
    let got = py_ok(&lab, &guest_ns, &client, &[&out6.ip, "8086"]);
    assert_eq!(got.trim(), format!("outside6 {}", out6.host_ip));
    let aaaa =
        |name: &str, want: &str| assert_dig(&lab, &guest_ns, &["AAAA", "@fd00::3", name], want);
    aaaa("server.outside.test", &out6.ip);
    aaaa("guest", "fd00::100");
    lab.assert_ping(&guest_ns, &out6.ip);
    lab.assert_ping(&guest_ns, "fd00::2");
    // --disable-host-loopback: the gateway refuses TCP, on either address.
    for gw in ["10.0.2.2", "fd00::2"] {
        let o = py(&guest_ns, &client, &[gw, "22"], Duration::from_secs(30));
        assert!(
            !o.status.success(),
            "TCP to {gw} with --disable-host-loopback: {}",
            show(&o)
        );
    }

    // The API socket: a forwarded port keeps the client's address, IPv4 and IPv6.
    lab.bg_in(
        &guest_ns,
        &["python3", "-c", PEER_SERVER, "80", "guest"],
        "guest_server.log",
    );
    assert!(wait_listening(&guest_ns, 80, Proto::Tcp), "guest server");
    lab.bg_in(
        &guest_ns,
        &["python3", "-c", PEER_SERVER, "80", "guest6", "::"],
        "guest_server6.log",
    );
    let r = api(
        &lab,
        &sock,
        r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":18080,"guest_addr":"","guest_port":80}}"#,
    );
    assert_eq!(r["return"]["id"], 1, "{r}");
    let got = py_ok(&lab, &out.ns, &client, &[&out.host_ip, "18080"]);
    assert_eq!(
        got.trim(),
        format!("guest {}", out.ip),
        "client address kept"
    );
    let r = api(
        &lab,
        &sock,
        r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::","host_port":18086,"guest_port":80}}"#,
    );
    assert_eq!(r["return"]["id"], 2, "{r}");
    let mut got = String::new();
    let reached = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let o = py(
            &out.ns,
            &client,
            &[&out6.host_ip, "18086"],
            Duration::from_secs(30),
        );
        got = String::from_utf8_lossy(&o.stdout).trim().to_string();
        o.status.success()
    });
    assert!(reached, "the IPv6 forward: {got:?}");
    assert_eq!(
        got,
        format!("guest6 {}", out6.ip),
        "IPv6 client address kept"
    );
    let r = api(&lab, &sock, r#"{"execute":"list_hostfwd"}"#);
    assert_eq!(r["return"]["entries"][0]["host_port"], 18080, "{r}");
    assert_eq!(r["return"]["entries"][0]["guest_addr"], "10.0.2.100", "{r}");
    assert_eq!(r["return"]["entries"][1]["host_addr"], "::", "{r}");
    assert_eq!(r["return"]["entries"][1]["guest_addr"], "fd00::100", "{r}");
    for (req, desc) in [
        ("badjson", "bad request: cannot parse JSON"),
        (r#"{"unexpectedjson": 42}"#, "bad request: no execute found"),
        (r#"{"execute": "bad"}"#, "bad request: unknown execute"),
        (
            r#"{"execute":"add_hostfwd","arguments":{"proto":"bad"}}"#,
            "bad request: add_hostfwd: bad arguments.proto",
        ),
        (
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18080,"guest_port":80}}"#,
            "bad request: add_hostfwd: slirp_add_hostfwd failed",
        ),
    ] {
        let r = api(&lab, &sock, req);
        assert_eq!(r["error"]["desc"], desc, "{req}: {r}");
    }
    let r = api(
        &lab,
        &sock,
        r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
    );
    assert_eq!(r, serde_json::json!({"return": {}}));
    let r = api(
        &lab,
        &sock,
        r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
    );
    assert_eq!(
        r["error"]["desc"],
        "bad request: remove_hostfwd: bad arguments.id"
    );
    let o = py(
        &out.ns,
        &client,
        &[&out.host_ip, "18080"],
        Duration::from_secs(30),
    );
    assert!(
        !o.status.success(),
        "the removed forward still answers: {}",
        show(&o)
    );

    // The runtime's end of the exit pipe closes: the front exits 0 and leaves nothing.
    drop(exit_w);
    let status = front.wait(Duration::from_secs(20));
    if status.map(|s| s.code()) != Some(Some(0)) {
        lab.fail(&format!(
            "after the exit fd's hang-up: {status:?}\n{}",
            front.log_text()
        ));
    }
    assert!(
        !links(&guest_ns).iter().any(|l| l == "tap0"),
        "tap0 left behind"
    );
    assert!(
        !std::path::Path::new(&sock).exists(),
        "API socket left behind"
    );
}

#[test]
fn bad_command_lines_fail_as_slirp4netns_does_and_make_nothing() {
    let lab = Lab::bare();
    let guest_ns = lab.ns("g");
    let link = front_link(&lab);
    let netns = format!("/run/netns/{guest_ns}");
    let run = |argv: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &lab.host.name, &link]).args(argv);
        run_bounded(&mut c, Duration::from_secs(30))
    };
    let o = run(&["--bogus", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unrecognized option '--bogus'") && err.contains("Usage: slirp4netns"));
    let o = run(&[
        "-c",
        "--netns-type=path",
        "/run/netns/nyt-no-such-ns",
        "tap0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nyt-no-such-ns"),
        "{}",
        show(&o)
    );
    let o = run(&["-c", "99999999", "tap0"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    // A closed exit fd: slirp4netns takes it as its exit event (status 0); nothing is made.
    let o = run(&["-c", "-e", "9", "--netns-type=path", &netns, "tap0"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exit fd 9"),
        "{}",
        show(&o)
    );
    assert!(!links(&guest_ns).iter().any(|l| l == "tap0"), "tap0 made");
    // --help and --version as the runtimes read them.
    let o = run(&["--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && h.contains("--netns-type") && h.contains("--enable-sandbox"));
    let o = run(&["--version"]);
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.starts_with("slirp4netns version 1.2.0\n") && v.contains("netyard"),
        "{v}"
    );
}

/// RootlessKit 1.1 as an unprivileged user: `--net=slirp4netns --slirp4netns-binary=LINK
/// --port-driver=slirp4netns`. RootlessKit creates tap0 itself and configures it; the front
/// opens it inside the child's user namespace (`-r 3 PID tap0`). From the shell inside: the
/// address, ping to the resolver and to the outside, a name resolved through 10.0.2.3 (by
/// dnsmasq behind it), a fetch from outside, `rootlessctl add-ports`; from outside, the
/// forwarded port, with the client's address kept. When RootlessKit exits, so does the front.
#[test]
fn rootlesskit_runs_on_the_front_with_its_slirp4netns_port_driver() {
    require_program("rootlesskit", "rootlesskit");
    require_program("rootlessctl", "rootlesskit");
    let (uid, gid) = ensure_rootless_user();
    // RootlessKit maps subordinate ids: give the test user a range once.
    ensure_rootless_subids();
    // RootlessKit creates tap0 as the user (in its namespaces): /dev/net/tun must let it.
    tun_world_accessible();
    require_program("dnsmasq", "dnsmasq-base");
    require_program("dig", "dnsutils");
    let lab = Lab::bare();
    let out = lab.outside();
    lab.bg_in(
        &out.ns,
        &["python3", "-c", PEER_SERVER, "8080", "outside"],
        "outside_server.log",
    );
    assert!(wait_listening(&out.ns, 8080, Proto::Tcp), "outside server");
    let _etc = upstream_resolver(&lab, &[&out.ip]);
    // The front's echo sockets are unprivileged ICMP sockets of the user's group: it has no
    // CAP_NET_RAW in the host namespace.
    lab.set_ping_group_range(&format!("{gid} {gid}"));
    let d = lab.dir.join("rk");
    std::fs::create_dir_all(&d).expect("mkdir rk");
    cmd_ok(&["chmod", "0777", &d.to_string_lossy()]);
    cmd_ok(&["chmod", "0755", &lab.dir.to_string_lossy()]);
    let client = lab.write_file("client.py", CLIENT);
    let server = lab.write_file("server.py", PEER_SERVER);
    let link = front_link(&lab);
    let ds = d.to_string_lossy().into_owned();
    let script = format!(
        "set -e; D={ds}; \
         ip -4 -o addr show tap0 > $D/addr; \
         ping -c 1 -W 5 10.0.2.3 > $D/ping; \
         ping -c 1 -W 5 {oip} > $D/ping_out; \
         dig +short +time=2 +tries=3 @10.0.2.3 server.outside.test > $D/dig; \
         python3 {client} {oip} 8080 > $D/fetch; \
         (python3 {server} 80 guest > $D/server.log 2>&1 &); \
         sleep 0.5; \
         rootlessctl --socket $D/st/api.sock add-ports 0.0.0.0:18081:80/tcp > $D/ports; \
         touch $D/ready; \
         while [ ! -e $D/stop ]; do sleep 0.1; done",
        oip = out.ip
    );
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name]).args([
        "setpriv",
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        "env",
        &format!("HOME={ds}"),
        &format!("XDG_RUNTIME_DIR={ds}"),
        "rootlesskit",
        &format!("--state-dir={ds}/st"),
        "--net=slirp4netns",
        &format!("--slirp4netns-binary={link}"),
        "--port-driver=slirp4netns",
        "--disable-host-loopback",
        "sh",
        "-c",
        &script,
    ]);
    let mut rk = Bg::spawn(&mut c, &lab.dir.join("rootlesskit.log"));
    let ready = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        d.join("ready").exists() || !rk.running()
    });
    let file = |n: &str| std::fs::read_to_string(d.join(n)).unwrap_or_default();
    if !ready || !d.join("ready").exists() {
        lab.fail(&format!(
            "rootlesskit's shell did not get through (addr {:?}, ping {:?}, ping out {:?}, dig {:?}, fetch {:?}, ports {:?}):\n{}",
            file("addr"),
            file("ping"),
            file("ping_out"),
            file("dig"),
            file("fetch"),
            file("ports"),
            rk.log_text()
        ));
    }
    assert!(file("addr").contains("10.0.2.100/24"), "{}", file("addr"));
    assert!(
        file("ping_out").contains("1 received") || file("ping_out").contains("1 packets received"),
        "{}",
        file("ping_out")
    );
    assert_eq!(
        file("dig").trim(),
        out.ip,
        "server.outside.test through 10.0.2.3"
    );
    assert_eq!(file("fetch").trim(), format!("outside {}", out.host_ip));
    // rootlessctl prints the id slirp4netns answered: the first is 1.
    assert_eq!(file("ports").trim(), "1");
    let got = py_ok(&lab, &out.ns, &client, &[&out.host_ip, "18081"]);
    assert_eq!(
        got.trim(),
        format!("guest {}", out.ip),
        "client address kept"
    );
    std::fs::write(d.join("stop"), "").expect("stop");
    if rk.wait(Duration::from_secs(30)).is_none() {
        lab.fail(&format!("rootlesskit did not exit:\n{}", rk.log_text()));
    }
    // The front followed it.
    let left = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        !cmd(&["pgrep", "-f", &link], CLI_TIMEOUT).status.success()
    });
    assert!(left, "the front outlived rootlesskit");
}
