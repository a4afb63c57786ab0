//! Published ports and host loopback, the data plane: real namespaces, real servers and
//! clients (python3), traffic through the daemon's host sockets.
//!
//! The daemon runs in the lab's "host" namespace; [`Lab::outside`] joins it by a veth to an
//! "outside" namespace (198.18.X.2, the host side being 198.18.X.1). Clients from outside
//! connect to the host's address on that link and a published host port, as a remote client
//! of a real host would. Nothing is sent anywhere else.
//!
//! Every server reply names the server (a label), the peer address it saw (getpeername) and
//! the local port it accepted on, so a test can check where a connection landed and which
//! source address the container saw. Clients print their own address (getsockname) and what
//! they got, as one JSON object, and always exit 0: the test judges.

mod common;

use std::time::Duration;

use common::{cmd, py_script, show, wait_until, Lab, Outside, Subnet};
use serde_json::Value;

/// Server: `server.py LABEL BIND PORT...`: TCP and UDP on every PORT of BIND.
/// Per TCP connection, the first line is a command; each answer starts with
/// `LABEL PEER_IP:PEER_PORT LOCAL_PORT`:
/// - `peer`: that line only;
/// - `up N`: reads N bytes, then that line followed by ` SHA256HEX`;
/// - `down N`: that line, then N bytes of the pattern, then close.
///
/// UDP: each datagram is answered, to its source, with `LABEL PEER LOCAL_PORT ` + the data.
/// Written after [`common::PY_STREAM`] (its helpers and `PAT`), as the client is.
const SERVER: &str = r#"
import threading
label, bind, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
fmt = lambda a: "%s:%d" % (a[0], a[1])
def serve(c, peer):
    try:
        cmd = read_command(c)
        if cmd is None:
            return
        who = ("%s %s %d" % (label, fmt(peer), c.getsockname()[1])).encode()
        if cmd[0] == "peer":
            c.sendall(who + b"\n")
        elif cmd[0] == "up":
            c.sendall(who + b" " + recv_sha(c, int(cmd[1])).encode() + b"\n")
        elif cmd[0] == "down":
            c.sendall(who + b"\n")
            send_pattern(c, int(cmd[1]))
    except OSError:
        pass
    finally:
        c.close()
def tcp(s):
    while True:
        c, a = s.accept()
        threading.Thread(target=serve, args=(c, a), daemon=True).start()
def udp(u, port):
    while True:
        d, a = u.recvfrom(65535)
        u.sendto(("%s %s %d " % (label, fmt(a), port)).encode() + d, a)
threads = []
for p in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, p))
    s.listen(128)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((bind, p))
    threads += [threading.Thread(target=tcp, args=(s,), daemon=True),
                threading.Thread(target=udp, args=(u, p), daemon=True)]
for t in threads:
    t.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// Client: `client.py HOST PORT MODE [ARG]`; prints one JSON object, exits 0.
/// - `peer`, `up N`, `down N`: as the server's commands; `local` is getsockname, `label`,
///   `peer` and `lport` what the server said; `ok` whether the data checked out.
/// - `udp`: one datagram (resent every second, 5 tries) from an unconnected socket bound to
///   the address the route picks; `from` is the reply's source; `result` is `reply`,
///   `refused` or `timeout`.
/// - `connect SECS`: `result` is `refused`, `reset`, `timeout` or `error ERRNO` if connect
///   fails; else the client asks `peer` and `result` is `connected`, `reset` (ECONNRESET or
///   EPIPE), `eof` or `hang` (no answer within SECS). `secs` is the time taken.
const CLIENT: &str = r#"
import json, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fmt = lambda a: "%s:%d" % (a[0], a[1])
out = {"mode": mode}
def conn(t=30):
    c = socket.create_connection((host, port), timeout=t)
    out["local"] = fmt(c.getsockname())
    return c
def line(c):
    buf = b""
    while b"\n" not in buf:
        b = c.recv(65536)
        if not b:
            raise EOFError("eof before a line: %r" % buf)
        buf += b
    l, rest = buf.split(b"\n", 1)
    return l.decode(), rest
def who(l):
    p = l.split()
    out["label"], out["peer"], out["lport"] = p[0], p[1], int(p[2])
    return p[3:]
t0 = time.time()
try:
    if mode == "peer":
        c = conn(); c.sendall(b"peer\n"); who(line(c)[0]); out["ok"] = True
    elif mode == "up":
        n = int(sys.argv[4]); c = conn(); c.sendall(b"up %d\n" % n)
        send_pattern(c, n)
        rest = who(line(c)[0])
        out["ok"] = rest == [pattern_digest(n).hex()]
        out["sha"] = rest
    elif mode == "down":
        n = int(sys.argv[4]); c = conn(); c.sendall(b"down %d\n" % n)
        l, data = line(c); who(l)
        h, got = hashlib.sha256(), len(data)
        h.update(data)
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            h.update(b); got += len(b)
        out["bytes"] = got
        out["ok"] = got == n and h.digest() == pattern_digest(n)
    elif mode == "udp":
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((host, port)); ip = probe.getsockname()[0]; probe.close()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0)); s.settimeout(1)
        out["local"] = fmt(s.getsockname())
        msg = b"datagram %d" % time.time_ns()
        out["result"] = "timeout"
        for _ in range(5):
            try:
                s.sendto(msg, (host, port))
                d, a = s.recvfrom(65535)
            except socket.timeout:
                continue
            except ConnectionRefusedError:
                out["result"] = "refused"
                break
            out["result"] = "reply"
            out["from"] = fmt(a)
            p = d.split(b" ", 3)
            out["label"], out["peer"], out["lport"] = p[0].decode(), p[1].decode(), int(p[2])
            out["ok"] = len(p) == 4 and p[3] == msg
            break
    elif mode == "connect":
        secs = float(sys.argv[4])
        try:
            c = conn(secs)
        except ConnectionRefusedError:
            out["result"] = "refused"
        except ConnectionResetError:
            out["result"] = "reset"
        except socket.timeout:
            out["result"] = "timeout"
        except OSError as e:
            out["result"] = "error %s" % e.errno
        else:
            try:
                c.sendall(b"peer\n")
                l, _ = line(c)
                who(l)
                out["result"] = "connected"
            except (ConnectionResetError, BrokenPipeError):
                out["result"] = "reset"
            except EOFError:
                out["result"] = "eof"
            except socket.timeout:
                out["result"] = "hang"
            except OSError as e:
                out["result"] = "error %s" % e.errno
    else:
        out["error"] = "unknown mode"
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
out["secs"] = round(time.time() - t0, 3)
print(json.dumps(out))
"#;

/// One lab with the outside namespace and the scripts written.
struct World {
    lab: Lab,
    out: Outside,
    server: String,
    client: String,
}

fn world() -> World {
    let lab = Lab::new();
    let out = lab.outside();
    let server = lab.write_file("server.py", &py_script(SERVER));
    let client = lab.write_file("client.py", &py_script(CLIENT));
    World {
        lab,
        out,
        server,
        client,
    }
}

/// The endpoint's address without a prefix length.
fn ip_of(ep: &Value) -> String {
    ep["ip"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

impl World {
    /// Starts the server in `ns` (labelled `label`, on `bind`, TCP and UDP on `ports`) and
    /// waits for it to listen.
    fn serve(&self, ns: &str, label: &str, bind: &str, ports: &[u16]) {
        let log = format!("server-{label}.log");
        let mut argv = vec!["python3", self.server.as_str(), label, bind];
        let ps: Vec<String> = ports.iter().map(u16::to_string).collect();
        argv.extend(ps.iter().map(String::as_str));
        self.lab.bg_in(ns, &argv, &log);
        let path = self.lab.dir.join(&log);
        let ready = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            std::fs::read_to_string(&path).is_ok_and(|l| l.lines().any(|l| l == "ready"))
        });
        if !ready {
            self.lab.fail(&format!(
                "server {label} in {ns} did not start: {}",
                std::fs::read_to_string(&path).unwrap_or_default()
            ));
        }
    }

    /// Runs the client in `ns` against HOST:PORT; returns its JSON.
    fn client(&self, ns: &str, host: &str, port: u16, args: &[&str]) -> Value {
        let p = port.to_string();
        let mut argv = vec!["ip", "netns", "exec", ns, "python3", &self.client, host, &p];
        argv.extend_from_slice(args);
        let o = cmd(&argv, Duration::from_secs(240));
        let text = String::from_utf8_lossy(&o.stdout);
        let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            self.fail(&format!(
                "client {args:?} in {ns} to {host}:{port} printed no JSON ({e}):\n{}",
                show(&o)
            ))
        });
        // An unexpected exception in the client is never a result to judge.
        if v.get("error").is_some() {
            self.fail(&format!(
                "client {args:?} in {ns} to {host}:{port} failed: {v}"
            ));
        }
        v
    }

    /// Like [`World::client`], failing unless `ok` is true; returns the JSON.
    fn client_ok(&self, ns: &str, host: &str, port: u16, args: &[&str]) -> Value {
        let v = self.client(ns, host, port, args);
        if v["ok"] != true {
            let ss = cmd(
                &["ip", "netns", "exec", ns, "ss", "-tuna"],
                Duration::from_secs(10),
            );
            self.fail(&format!(
                "client {args:?} in {ns} to {host}:{port} failed: {v}\n----- ss -tuna in {ns} \
                 -----\n{}",
                String::from_utf8_lossy(&ss.stdout)
            ));
        }
        v
    }

    /// Fails with the message, `flows --json` and the lab's diagnostics.
    fn fail(&self, msg: &str) -> ! {
        let flows = self.lab.ny(&["flows", "--json"]);
        self.lab.fail(&format!(
            "{msg}\n----- netyard flows --json -----\n{}",
            String::from_utf8_lossy(&flows.stdout)
        ))
    }

    /// Checks that the container saw exactly the client's address as the source.
    fn assert_real_source(&self, v: &Value, what: &str) {
        let local = s(v, "local");
        if !local.starts_with(&format!("{}:", self.out.ip)) || s(v, "peer") != local {
            self.fail(&format!(
                "{what}: the client is {local} (expected on {}), the container saw {}: {v}",
                self.out.ip,
                s(v, "peer")
            ));
        }
    }

    /// The host port published for `cport`/`proto` of endpoint `name`, from `ps --json`.
    fn host_port(&self, net: &str, name: &str, cport: u16, proto: &str) -> u16 {
        let ep = self.lab.endpoint(net, name);
        ep["ports"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|m| m["container_port"] == cport && m["protocol"] == proto)
            })
            .and_then(|m| m["host_port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| self.fail(&format!("no {cport}/{proto} mapping in {ep}")))
    }

    /// TCP flows of endpoint address `ip` (any port) in `flows --json`.
    fn tcp_flows(&self, net: &str, ip: &str) -> Vec<Value> {
        common::endpoint_flows(&common::flows_row(&self.lab, net), "tcp", ip)
    }
}

/// Case 1: a published TCP port carries 100 MB each way intact, and the container sees the
/// client's real address and port.
#[test]
fn published_tcp_port_carries_data_and_keeps_the_client_address() {
    let w = world();
    let net = w.lab.network("pub", &Subnet::random(), &[]);
    let a = w.lab.ns("a");
    w.lab.attach(&net, &a, "web", &["-p", "8080:80"]);
    w.serve(&a, "web", "0.0.0.0", &[80]);
    let host = w.out.host_ip.clone();

    let v = w.client_ok(&w.out.ns, &host, 8080, &["peer"]);
    w.assert_real_source(&v, "peer");
    assert_eq!(v["label"], "web", "{v}");
    assert_eq!(v["lport"], 80, "{v}");

    const MB100: &str = "100000000";
    let v = w.client_ok(&w.out.ns, &host, 8080, &["up", MB100]);
    w.assert_real_source(&v, "100 MB up");
    let v = w.client_ok(&w.out.ns, &host, 8080, &["down", MB100]);
    w.assert_real_source(&v, "100 MB down");
    assert_eq!(v["bytes"], 100_000_000u64, "{v}");
}

/// Case 2: a published UDP port: the container sees the real source, its reply comes back
/// from the published address.
#[test]
fn published_udp_port_keeps_the_client_address_and_replies_return() {
    let w = world();
    let net = w.lab.network("pub", &Subnet::random(), &[]);
    let a = w.lab.ns("a");
    // Not 53: the embedded resolver holds 127.0.0.11:53 in every container, so a server on
    // 0.0.0.0:53 cannot bind there.
    w.lab.attach(&net, &a, "dns", &["-p", "5353:5300/udp"]);
    w.serve(&a, "dns", "0.0.0.0", &[5300]);
    let host = w.out.host_ip.clone();
    for round in 0..2 {
        let v = w.client(&w.out.ns, &host, 5353, &["udp"]);
        if v["result"] != "reply" || v["ok"] != true {
            let ss = cmd(
                &["ip", "netns", "exec", &a, "ss", "-uanp"],
                Duration::from_secs(10),
            );
            w.fail(&format!(
                "UDP round {round}: {v}\n----- ss -uanp in the container -----\n{}\n----- server log -----\n{}",
                String::from_utf8_lossy(&ss.stdout),
                std::fs::read_to_string(w.lab.dir.join("server-dns.log")).unwrap_or_default()
            ));
        }
        w.assert_real_source(&v, "udp");
        assert_eq!(v["from"], format!("{host}:5353"), "reply's source: {v}");
        assert_eq!(v["lport"], 5300, "{v}");
    }
    // Not published on TCP: refused.
    let v = w.client(&w.out.ns, &host, 5353, &["connect", "5"]);
    assert_eq!(v["result"], "refused", "TCP to a UDP-only port: {v}");
}

/// Case 3: a port range (pairwise) and an ephemeral port (read from `ps --json`), on a veth
/// endpoint.
#[test]
fn port_range_and_ephemeral_port_are_reachable() {
    let w = world();
    let net = w.lab.network("pub", &Subnet::random(), &[]);
    let a = w.lab.ns("a");
    w.lab.attach(
        &net,
        &a,
        "app",
        &["--kind", "veth", "-p", "9000-9002:7000-7002", "-p", "80"],
    );
    w.serve(&a, "app", "0.0.0.0", &[7000, 7001, 7002, 80]);
    let host = w.out.host_ip.clone();
    for (h, c) in [(9000u16, 7000u16), (9001, 7001), (9002, 7002)] {
        assert_eq!(w.host_port(&net, "app", c, "tcp"), h);
        let v = w.client_ok(&w.out.ns, &host, h, &["peer"]);
        w.assert_real_source(&v, &format!("range {h}"));
        assert_eq!(v["lport"], c, "host port {h} landed on the wrong port: {v}");
    }
    let eph = w.host_port(&net, "app", 80, "tcp");
    let v = w.client_ok(&w.out.ns, &host, eph, &["up", "1000000"]);
    w.assert_real_source(&v, "ephemeral");
    assert_eq!(v["lport"], 80, "{v}");
}

/// Case 4: publish and unpublish on a running endpoint.
#[test]
fn publish_then_unpublish_on_a_running_endpoint() {
    let w = world();
    let net = w.lab.network("pub", &Subnet::random(), &[]);
    let a = w.lab.ns("a");
    w.lab.attach(&net, &a, "web", &[]);
    w.serve(&a, "web", "0.0.0.0", &[80]);
    let host = w.out.host_ip.clone();
    let v = w.client(&w.out.ns, &host, 8080, &["connect", "5"]);
    assert_eq!(v["result"], "refused", "before publish: {v}");

    w.lab
        .ny_ok(&["publish", &net, "web", "8080:80", "8080:80/udp"]);
    let v = w.client_ok(&w.out.ns, &host, 8080, &["peer"]);
    w.assert_real_source(&v, "after publish");
    let v = w.client(&w.out.ns, &host, 8080, &["udp"]);
    if v["result"] != "reply" || v["ok"] != true {
        w.fail(&format!("UDP after publish: {v}"));
    }

    w.lab.ny_ok(&["unpublish", &net, "web", "8080:80"]);
    // The gateway closes the socket just after the API answered.
    let mut last = Value::Null;
    let refused = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        last = w.client(&w.out.ns, &host, 8080, &["connect", "5"]);
        last["result"] == "refused"
    });
    if !refused {
        w.fail(&format!("TCP after unpublish: {last}"));
    }
    // The UDP mapping is still there.
    let v = w.client(&w.out.ns, &host, 8080, &["udp"]);
    if v["result"] != "reply" {
        w.fail(&format!("UDP after unpublishing only TCP: {v}"));
    }
    w.lab.ny_ok(&["unpublish", &net, "web", "80/udp"]);
    let refused = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        last = w.client(&w.out.ns, &host, 8080, &["udp"]);
        last["result"] != "reply"
    });
    if !refused {
        w.fail(&format!("UDP after unpublish: {last}"));
    }
}

/// Case 5: hairpin. A container reaches its own published port and another container's
/// through the host's address, and a container of another network reaches them the same way
/// (networks meet only through published ports). The relay re-originates these connections
/// from the host namespace, so the server sees the host's address as the source.
#[test]
fn hairpin_to_own_and_other_published_ports() {
    let w = world();
    let sub = Subnet::random();
    let net = w.lab.network("pub", &sub, &[]);
    let other = w.lab.network("other", &sub.other(), &[]);
    let a = w.lab.ns("a");
    let b = w.lab.ns("b");
    let c = w.lab.ns("c");
    w.lab.attach(&net, &a, "alpha", &["-p", "8081:80"]);
    w.lab
        .attach(&net, &b, "beta", &["--kind", "veth", "-p", "8082:80"]);
    w.lab.attach(&other, &c, "gamma", &[]);
    w.serve(&a, "alpha", "0.0.0.0", &[80]);
    w.serve(&b, "beta", "0.0.0.0", &[80]);
    let host = w.out.host_ip.clone();
    for (ns, port, want) in [
        (&a, 8081u16, "alpha"),
        (&a, 8082, "beta"),
        (&b, 8081, "alpha"),
        (&c, 8081, "alpha"),
        (&c, 8082, "beta"),
    ] {
        let v = w.client_ok(ns, &host, port, &["up", "2000000"]);
        if v["label"] != want {
            w.fail(&format!(
                "{ns} to {host}:{port} reached {} not {want}: {v}",
                v["label"]
            ));
        }
        let peer = s(&v, "peer");
        if !peer.starts_with(&format!("{host}:")) {
            w.fail(&format!(
                "hairpin {ns} to {host}:{port}: the server saw {peer}, expected the host's {host}"
            ));
        }
    }
}

/// Case 6: a client in the host namespace connecting to 127.0.0.1:HOSTPORT reaches the
/// container. The container cannot answer 127.0.0.1 (its own loopback), so the relay shows
/// such clients as the gateway's address with a port of 61000-65000.
#[test]
fn loopback_client_reaches_the_container_as_the_gateway() {
    let w = world();
    let sub = Subnet::random();
    let net = w.lab.network("pub", &sub, &[]);
    let a = w.lab.ns("a");
    w.lab
        .attach(&net, &a, "web", &["-p", "8080:80", "-p", "8080:80/udp"]);
    w.serve(&a, "web", "0.0.0.0", &[80]);
    let host_ns = w.lab.host.name.clone();
    let gw = sub.ip(1);
    let check = |v: &Value, what: &str| {
        let peer = s(v, "peer");
        let port = peer
            .strip_prefix(&format!("{gw}:"))
            .and_then(|p| p.parse::<u16>().ok());
        if !port.is_some_and(|p| (61_000..=65_000).contains(&p)) {
            w.fail(&format!(
                "{what}: the container saw {peer}, expected the gateway {gw} with a port of \
                 61000-65000: {v}"
            ));
        }
    };
    let v = w.client_ok(&host_ns, "127.0.0.1", 8080, &["up", "5000000"]);
    check(&v, "TCP from 127.0.0.1");
    let v = w.client_ok(&host_ns, "127.0.0.1", 8080, &["down", "5000000"]);
    check(&v, "TCP from 127.0.0.1 (down)");
    let v = w.client(&host_ns, "127.0.0.1", 8080, &["udp"]);
    if v["result"] != "reply" || v["ok"] != true {
        w.fail(&format!("UDP from 127.0.0.1: {v}"));
    }
    check(&v, "UDP from 127.0.0.1");
    assert_eq!(v["from"], "127.0.0.1:8080", "{v}");
    // The host's own link address is not loopback: shown as it is.
    let v = w.client_ok(&host_ns, &w.out.host_ip, 8080, &["peer"]);
    assert_eq!(
        s(&v, "peer"),
        s(&v, "local"),
        "client from the host's link address: {v}"
    );
}

/// Case 7: `--host-loopback`: TCP and UDP servers on the host namespace's 127.0.0.1 are
/// reachable at the gateway address; DNS at the gateway (port 53) still answers. Without
/// the flag, TCP to the gateway is refused at once and UDP gets no answer from the host.
#[test]
fn host_loopback_reaches_host_services_only_with_the_flag() {
    common::require_program("dig", "dnsutils");
    let w = world();
    w.serve(&w.lab.host.name, "host", "127.0.0.1", &[7070]);
    let sub = Subnet::random();
    let net = w.lab.network("lo", &sub, &["--host-loopback"]);
    let a = w.lab.ns("a");
    let b = w.lab.ns("b");
    w.lab.attach(&net, &a, "alpha", &[]);
    let beta = w.lab.attach(&net, &b, "beta", &["--kind", "veth"]);
    let gw = sub.ip(1);
    for ns in [&a, &b] {
        let v = w.client_ok(ns, &gw, 7070, &["up", "10000000"]);
        assert_eq!(v["label"], "host", "{v}");
        assert!(s(&v, "peer").starts_with("127.0.0.1:"), "{v}");
        let v = w.client_ok(ns, &gw, 7070, &["down", "10000000"]);
        assert_eq!(v["label"], "host", "{v}");
        let v = w.client(ns, &gw, 7070, &["udp"]);
        if v["result"] != "reply" || v["ok"] != true || v["label"] != "host" {
            w.fail(&format!(
                "UDP to {gw}:7070 from {ns} with --host-loopback: {v}"
            ));
        }
        assert_eq!(v["from"], format!("{gw}:7070"), "reply's source: {v}");
    }
    // DNS at the gateway is still the embedded resolver.
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &a,
            "dig",
            "+short",
            "+time=2",
            "+tries=2",
            &format!("@{gw}"),
            "beta",
        ],
        Duration::from_secs(20),
    );
    let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if got != ip_of(&beta) {
        w.fail(&format!(
            "dig @{gw} beta with --host-loopback: want {}, got:\n{}",
            ip_of(&beta),
            show(&o)
        ));
    }

    // Without the flag.
    let sub2 = sub.other();
    let plain = w.lab.network("plain", &sub2, &[]);
    let c = w.lab.ns("c");
    w.lab.attach(&plain, &c, "gamma", &[]);
    let gw2 = sub2.ip(1);
    let v = w.client(&c, &gw2, 7070, &["connect", "10"]);
    let secs = v["secs"].as_f64().unwrap_or(99.0);
    if v["result"] != "refused" || secs > 2.0 {
        w.fail(&format!(
            "TCP to {gw2}:7070 without --host-loopback: expected refused at once: {v}"
        ));
    }
    let v = w.client(&c, &gw2, 7070, &["udp"]);
    if v["result"] == "reply" {
        w.fail(&format!(
            "UDP to {gw2}:7070 without --host-loopback reached the host: {v}"
        ));
    }
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &c,
            "dig",
            "+short",
            "+time=2",
            "+tries=2",
            &format!("@{gw2}"),
            "gamma",
        ],
        Duration::from_secs(20),
    );
    let gamma = w.lab.endpoint(&plain, "gamma");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        ip_of(&gamma),
        "dig @{gw2} gamma: {}",
        show(&o)
    );
}

/// Case 7b: extra gateway addresses and destination maps (the fronts' layout): the gateway
/// answers ping and DNS on an extra address inside the subnet and on one outside it (through
/// the default route); a map sends TCP and UDP for a link-local address to the host's
/// 127.0.0.1, and the replies come back from the mapped address.
#[test]
fn extra_gateway_addresses_answer_and_maps_reach_their_host_address() {
    common::require_program("dig", "dnsutils");
    let w = world();
    w.serve(&w.lab.host.name, "host", "127.0.0.1", &[7071]);
    let sub = Subnet::random();
    let dns_in = sub.ip(3);
    let net = w.lab.network(
        "xg",
        &sub,
        &[
            "--gateway-extra",
            &dns_in,
            "--gateway-extra",
            "169.254.1.1",
            "--map",
            "169.254.1.2=127.0.0.1",
        ],
    );
    let a = w.lab.ns("a");
    let alpha = w.lab.attach(&net, &a, "alpha", &[]);
    for dns in [dns_in.as_str(), "169.254.1.1"] {
        let o = cmd(
            &["ip", "netns", "exec", &a, "ping", "-c", "1", "-W", "5", dns],
            Duration::from_secs(20),
        );
        assert!(o.status.success(), "ping {dns}: {}", show(&o));
        let o = cmd(
            &[
                "ip",
                "netns",
                "exec",
                &a,
                "dig",
                "+short",
                "+time=2",
                "+tries=2",
                &format!("@{dns}"),
                "alpha",
            ],
            Duration::from_secs(20),
        );
        let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if got != ip_of(&alpha) {
            w.fail(&format!(
                "dig @{dns} alpha: want {}, got:\n{}",
                ip_of(&alpha),
                show(&o)
            ));
        }
    }
    let v = w.client_ok(&a, "169.254.1.2", 7071, &["up", "1000000"]);
    assert_eq!(v["label"], "host", "{v}");
    assert!(s(&v, "peer").starts_with("127.0.0.1:"), "{v}");
    let v = w.client(&a, "169.254.1.2", 7071, &["udp"]);
    if v["result"] != "reply" || v["label"] != "host" {
        w.fail(&format!("UDP to 169.254.1.2:7071 through the map: {v}"));
    }
    assert_eq!(v["from"], "169.254.1.2:7071", "reply's source: {v}");
    // The gateway's own address is not mapped here: nothing listens there.
    let v = w.client(&a, &sub.ip(1), 7071, &["connect", "10"]);
    assert_eq!(v["result"], "refused", "{v}");
}

/// Case 8: `--internal`: no egress (publishing is refused, see tests/publish_cli.rs). A
/// container of an ordinary network reaches the same server, so the failure is the flag's.
#[test]
fn internal_network_has_no_egress() {
    let w = world();
    w.serve(&w.out.ns, "outside", "0.0.0.0", &[7000]);
    let sub = Subnet::random();
    let net = w.lab.network("int", &sub, &["--internal"]);
    let ok_net = w.lab.network("ext", &sub.other(), &[]);
    let a = w.lab.ns("a");
    let b = w.lab.ns("b");
    w.lab.attach(&net, &a, "alpha", &[]);
    w.lab.attach(&ok_net, &b, "beta", &[]);
    let out_ip = w.out.ip.clone();
    let v = w.client_ok(&b, &out_ip, 7000, &["peer"]);
    assert_eq!(v["label"], "outside", "{v}");
    let v = w.client(&a, &out_ip, 7000, &["connect", "3"]);
    eprintln!("TCP from --internal: {v}");
    if v["result"] == "connected" {
        w.fail(&format!("TCP egress from an --internal network: {v}"));
    }
    let v = w.client(&a, &out_ip, 7000, &["udp"]);
    if v["result"] == "reply" {
        w.fail(&format!("UDP egress from an --internal network: {v}"));
    }
    let flows = w.lab.ny_json(&["flows", "--json"]);
    let row = flows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["network"] == net.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        row["stats"]["drops"]["egress_disabled"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "egress from --internal is counted as egress_disabled: {row}"
    );
}

/// Case 9: a published port whose container has no listener: the client sees a reset
/// promptly (the host side accepted already, so not "refused"), the flow goes away, the
/// daemon stays up and the port works once a server listens.
#[test]
fn published_port_without_listener_resets_promptly() {
    let w = world();
    let net = w.lab.network("pub", &Subnet::random(), &[]);
    let a = w.lab.ns("a");
    let ep = w.lab.attach(&net, &a, "web", &["-p", "8080:80"]);
    let host = w.out.host_ip.clone();
    for i in 0..3 {
        let v = w.client(&w.out.ns, &host, 8080, &["connect", "10"]);
        let secs = v["secs"].as_f64().unwrap_or(99.0);
        let r = s(&v, "result");
        eprintln!("attempt {i}: {v}");
        if !(r == "reset" || r == "refused") || secs > 3.0 {
            w.fail(&format!(
                "attempt {i}: a published port with no listener: expected a reset within 3 s: {v}"
            ));
        }
    }
    if !w.lab.daemon_running() {
        w.fail("the daemon died");
    }
    let ip = ip_of(&ep);
    let gone = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        w.tcp_flows(&net, &ip).is_empty()
    });
    if !gone {
        w.fail(&format!(
            "flows of refused connections remain: {:?}",
            w.tcp_flows(&net, &ip)
        ));
    }
    w.serve(&a, "web", "0.0.0.0", &[80]);
    let v = w.client_ok(&w.out.ns, &host, 8080, &["peer"]);
    w.assert_real_source(&v, "after the server started");
}
