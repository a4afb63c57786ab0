//! TCP egress through the relay: containers' connections end in netyard and continue from
//! host sockets of the daemon's namespace ("host") to servers in the lab's "outside"
//! namespace (198.18.X.2). Nothing is sent anywhere else.

mod common;

use std::time::{Duration, Instant};

use common::{cmd, py_script, show, wait_listening, Lab, Pair, Proto, Subnet};
use serde_json::Value;

/// A TCP server for the tests. Per connection, the first line is a command:
/// - `up N`: read N bytes, answer with their sha256 (hex) and close;
/// - `down N`: send N bytes of the pattern, then close;
/// - `echo`: echo until EOF, then close (half-close: the answer follows the client's FIN);
/// - `reset`: close at once with RST (SO_LINGER 0);
/// - `wait`: read until EOF or error, report which on stdout ("peer_eof"/"peer_reset").
const SERVER: &str = r#"
import struct, threading
def serve(c):
    try:
        cmd = read_command(c)
        if cmd is None:
            return
        if cmd[0] == "up":
            c.sendall(recv_sha(c, int(cmd[1])).encode())
        elif cmd[0] == "down":
            send_pattern(c, int(cmd[1]))
        elif cmd[0] == "echo":
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        elif cmd[0] == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif cmd[0] == "wait":
            try:
                while c.recv(65536):
                    pass
                print("peer_eof", flush=True)
            except ConnectionResetError:
                print("peer_reset", flush=True)
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// The client side. Usage: client.py HOST PORT MODE [ARGS]; prints a result, exits 0 on
/// success.
const CLIENT: &str = r#"
import struct, time, selectors
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def conn():
    return socket.create_connection((host, port), timeout=30)
if mode == "up":
    n = int(sys.argv[4]); c = conn(); c.sendall(b"up %d\n" % n)
    send_pattern(c, n)
    got, want = c.recv(100).decode(), pattern_digest(n).hex()
    print("ok" if got == want else "mismatch %s" % got); sys.exit(got != want)
elif mode == "down":
    n = int(sys.argv[4]); c = conn(); c.sendall(b"down %d\n" % n)
    h, got = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b); got += len(b)
    ok = got == n and h.digest() == pattern_digest(n)
    print("ok" if ok else "got %d bytes, digest %s" % (got, ok)); sys.exit(not ok)
elif mode == "concurrent":
    n = int(sys.argv[4]); sel = selectors.DefaultSelector(); socks = []
    for i in range(n):
        s = socket.socket(); s.setblocking(False)
        s.connect_ex((host, port)); socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, i)
    msg = lambda i: b"echo\nmessage %d of %d" % (i, n)
    want = lambda i: b"message %d of %d" % (i, n)
    got = {i: b"" for i in range(n)}; done = set(); deadline = time.time() + 60
    while len(done) < n and time.time() < deadline:
        for key, ev in sel.select(1):
            s, i = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                s.sendall(msg(i)); s.shutdown(socket.SHUT_WR)
                sel.modify(s, selectors.EVENT_READ, i)
            else:
                b = s.recv(4096)
                if b:
                    got[i] += b
                else:
                    sel.unregister(s); s.close(); done.add(i)
    bad = [i for i in range(n) if got[i] != want(i)]
    print("%d done, %d wrong" % (len(done), len(bad))); sys.exit(1 if bad or len(done) < n else 0)
elif mode == "halfclose":
    c = conn(); c.sendall(b"echo\n" + b"x" * 100000); c.shutdown(socket.SHUT_WR)
    got = recv_all(c)
    ok = got == b"x" * 100000
    print("ok" if ok else "got %d" % len(got)); sys.exit(not ok)
elif mode == "server_reset":
    c = conn(); c.sendall(b"reset\n")
    try:
        b = c.recv(100)
        print("eof" if not b else "data"); sys.exit(1)
    except ConnectionResetError:
        print("reset")
elif mode == "client_reset":
    c = conn(); c.sendall(b"wait\nsome data"); time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
    print("sent")
elif mode == "connect":
    t = time.time()
    try:
        c = socket.create_connection((host, port), timeout=float(sys.argv[4]))
        print("connected"); sys.exit(1)
    except ConnectionRefusedError:
        print("refused %.3f" % (time.time() - t))
    except OSError as e:
        print("error %s %.3f" % (e.errno, time.time() - t))
"#;

struct Setup {
    lab: Lab,
    out: common::Outside,
    client: String,
    a: String,
    b: String,
    net: String,
    sub: Subnet,
}

fn setup(port: u16) -> Setup {
    let lab = Lab::new();
    let out = lab.outside();
    let server = lab.write_file("tcp_server.py", &py_script(SERVER));
    let client = lab.write_file("tcp_client.py", &py_script(CLIENT));
    lab.bg_in(
        &out.ns,
        &["python3", &server, &port.to_string()],
        "tcp_server.log",
    );
    let ready = wait_listening(&out.ns, port, Proto::Tcp);
    assert!(ready, "the TCP server in {} did not start", out.ns);
    let Pair { sub, net, a, b } = lab.pair("tcp", &[], &[]);
    Setup {
        lab,
        out,
        client,
        a,
        b,
        net,
        sub,
    }
}

impl Setup {
    fn run(&self, ns: &str, port: u16, args: &[&str], timeout: Duration) -> (bool, String) {
        let p = port.to_string();
        let mut argv = vec![
            "ip",
            "netns",
            "exec",
            ns,
            "python3",
            &self.client,
            &self.out.ip,
            &p,
        ];
        argv.extend_from_slice(args);
        let o = cmd(&argv, timeout);
        (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stdout).trim(), {
                let e = String::from_utf8_lossy(&o.stderr);
                if e.trim().is_empty() {
                    String::new()
                } else {
                    format!("\n{}", show(&o))
                }
            }),
        )
    }

    fn ok(&self, ns: &str, port: u16, args: &[&str]) -> String {
        let (ok, out) = self.run(ns, port, args, Duration::from_secs(180));
        if !ok {
            let mut ss = cmd(
                &["ip", "netns", "exec", ns, "ss", "-tin"],
                Duration::from_secs(5),
            );
            let more = [
                cmd(
                    &["ip", "-s", "-s", "-n", ns, "link"],
                    Duration::from_secs(5),
                ),
                cmd(
                    &["ip", "-s", "-s", "-n", &self.lab.host.name, "link"],
                    Duration::from_secs(5),
                ),
                cmd(
                    &[
                        "ip",
                        "netns",
                        "exec",
                        &self.lab.host.name,
                        "cat",
                        "/proc/net/packet",
                    ],
                    Duration::from_secs(5),
                ),
                cmd(
                    &["ip", "netns", "exec", ns, "nstat", "-az"],
                    Duration::from_secs(5),
                ),
                cmd(&["ip", "-s", "-n", ns, "neigh"], Duration::from_secs(5)),
            ];
            for m in more {
                ss.stdout.extend_from_slice(&m.stdout);
            }
            self.lab.fail(&format!(
                "client {args:?} in {ns} failed: {out}\n----- ss -tin in {ns} -----\n{}\n----- flows -----\n{:?}",
                String::from_utf8_lossy(&ss.stdout),
                self.egress()
            ));
        }
        out
    }

    fn egress(&self) -> (Value, Vec<Value>) {
        let v = self.lab.ny_json(&["flows", "--json"]);
        let row = v
            .as_array()
            .and_then(|a| a.iter().find(|r| r["network"] == self.net.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        (
            row["stats"].clone(),
            row["flows"].as_array().cloned().unwrap_or_default(),
        )
    }
}

#[test]
fn one_gib_each_way_arrives_byte_identical() {
    let s = setup(5001);
    const GIB: &str = "1073741824";
    let t = Instant::now();
    assert_eq!(s.ok(&s.a, 5001, &["up", GIB]), "ok");
    assert_eq!(s.ok(&s.a, 5001, &["down", GIB]), "ok");
    eprintln!("TAP: 1 GiB up and down in {:?}", t.elapsed());
    // The veth endpoint (AF_PACKET) too, smaller.
    assert_eq!(s.ok(&s.b, 5001, &["up", "100000000"]), "ok");
    assert_eq!(s.ok(&s.b, 5001, &["down", "100000000"]), "ok");
}

#[test]
fn concurrent_connections_half_close_and_resets() {
    let s = setup(5002);
    let r = s.ok(&s.a, 5002, &["concurrent", "200"]);
    assert!(r.starts_with("200 done, 0 wrong"), "{r}");
    // While connections are open, `flows` lists them; afterwards they are gone.
    assert_eq!(s.ok(&s.b, 5002, &["halfclose"]), "ok");
    assert_eq!(s.ok(&s.a, 5002, &["server_reset"]), "reset");
    s.ok(&s.a, 5002, &["client_reset"]);
    let log = s.lab.dir.join("tcp_server.log");
    let seen = common::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("peer_reset"))
    });
    if !seen {
        s.lab.fail("the server did not see the container's RST");
    }
    let gone = common::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        s.egress().1.iter().all(|f| f["protocol"] != "tcp")
    });
    if !gone {
        s.lab.fail(&format!(
            "TCP flows remain after every connection ended: {:?}",
            s.egress()
        ));
    }
    let (stats, _) = s.egress();
    assert!(
        stats["flows_created"].as_u64().unwrap_or(0) >= 203,
        "{stats}"
    );
}

#[test]
fn closed_ports_and_unreachable_hosts_fail_fast() {
    let s = setup(5003);
    // Nothing listens on 5999: refused at once.
    let (_, r) = s.run(&s.a, 5999, &["connect", "20"], Duration::from_secs(30));
    let secs: f64 = r
        .strip_prefix("refused ")
        .and_then(|t| t.parse().ok())
        .unwrap_or(99.0);
    assert!(secs < 2.0, "connect to a closed port: {r}");
    // Nobody holds absent_ip: the host's ARP fails (~3 s), the container hears "no route to host"
    // instead of waiting for its own SYN retries (over a minute).
    let p = "80";
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &s.a,
            "python3",
            &s.client,
            &s.out.absent_ip,
            p,
            "connect",
            "60",
        ],
        Duration::from_secs(70),
    );
    let r = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let secs: f64 = r
        .rsplit(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(99.0);
    assert!(
        r.starts_with("error 113") && secs < 30.0,
        "connect to an absent host: {r}"
    );
    // The daemon is fine and serves new connections.
    assert_eq!(s.ok(&s.a, 5003, &["halfclose"]), "ok");
}

/// Sends malformed TCP segments and a flood of SYNs to unroutable destinations (nothing in
/// the host namespace routes 198.19.0.0/16): all dropped or refused and counted; the daemon
/// stays up and other connections keep working.
const FLOOD: &str = r#"
import socket, sys, errno
ok = 0
socks = []
for i in range(int(sys.argv[1])):
    s = socket.socket(); s.setblocking(False)
    r = s.connect_ex(("198.19.%d.%d" % (i // 250, 1 + i % 250), 80))
    socks.append(s)
print(len(socks))
"#;

const MALFORMED: &str = r#"
import socket, struct, sys
ifname, gw_mac, src_ip, dst_ip = sys.argv[1:5]
mac = lambda s: bytes(int(x, 16) for x in s.split(":"))
src_mac = mac(open("/sys/class/net/%s/address" % ifname).read().strip())
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def ip4(payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 6, 0,
                    socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
def tcp(flags, doff=5, bad=False, data=b""):
    h = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, doff << 4, flags, 1000, 0, 0) + data
    pseudo = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip) + struct.pack("!BBH", 0, 6, len(h))
    c = csum(pseudo + h) ^ (0xff if bad else 0)
    return h[:16] + struct.pack("!H", c) + h[18:]
frames = [ip4(tcp(2, bad=True)), ip4(tcp(2, doff=3)), ip4(tcp(2)[:12]), ip4(tcp(2, doff=15))]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((ifname, 0))
for _ in range(10):
    for f in frames:
        s.send(mac(gw_mac) + src_mac + b"\x08\x00" + f)
print(len(frames) * 10)
"#;

#[test]
fn syn_floods_and_malformed_segments_are_counted_and_harmless() {
    let s = setup(5004);
    let flood = s.lab.write_file("flood.py", FLOOD);
    let o = cmd(
        &["ip", "netns", "exec", &s.a, "python3", &flood, "1000"],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", show(&o));
    let bad = s.lab.write_file("malformed.py", MALFORMED);
    let gw = common::gateway_mac(&s.sub.ip(1));
    let ep = s.lab.endpoint(&s.net, "beta");
    let ifname = ep["ifname"].as_str().unwrap_or("eth0").to_string();
    let src = ep["ip"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let o = cmd(
        &[
            "ip", "netns", "exec", &s.b, "python3", &bad, &ifname, &gw, &src, &s.out.ip,
        ],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(s.lab.daemon_running(), "the daemon died");
    // Other endpoints' connections keep working.
    assert_eq!(s.ok(&s.b, 5004, &["halfclose"]), "ok");
    let (stats, _) = s.egress();
    let d = |r: &str| stats["drops"][r].as_u64().unwrap_or(0);
    assert!(
        d("unreachable") > 0,
        "unroutable SYNs are answered unreachable: {stats}"
    );
    assert!(d("bad_checksum") >= 10 && d("malformed") >= 30, "{stats}");
}

/// Opens N connections at once (each asks the server to hold it: `wait`), waits, prints how
/// many connected; keeps them open for HOLD seconds.
const HOLD: &str = r#"
import socket, sys, time, select
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for i in range(n):
    s = socket.socket(); s.setblocking(False); s.connect_ex((host, port)); socks.append(s)
time.sleep(3)
ok = 0
for s in socks:
    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        try:
            s.getpeername(); s.send(b"wait\n"); ok += 1
        except OSError:
            pass
print(ok, flush=True)
time.sleep(hold)
"#;

#[test]
fn flow_caps_are_network_options_and_count_what_they_refuse() {
    let lab = Lab::new();
    let out = lab.outside();
    let server = lab.write_file("tcp_server.py", &py_script(SERVER));
    let hold = lab.write_file("hold.py", HOLD);
    lab.bg_in(&out.ns, &["python3", &server, "5005"], "tcp_server.log");
    let ready = wait_listening(&out.ns, 5005, Proto::Tcp);
    assert!(ready, "the TCP server did not start");
    let sub = Subnet::random();
    let net = lab.network("caps", &sub, &["--max-flows-per-endpoint", "20"]);
    let a = lab.ns("a");
    let b = lab.ns("b");
    lab.attach(&net, &a, "alpha", &[]);
    lab.attach(&net, &b, "beta", &[]);
    // alpha holds 40 connections open for a while in the background.
    lab.bg_in(
        &a,
        &["python3", &hold, &out.ip, "5005", "40", "20"],
        "hold.log",
    );
    let log = lab.dir.join("hold.log");
    let counted = common::wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        std::fs::read_to_string(&log).is_ok_and(|l| !l.trim().is_empty())
    });
    assert!(counted, "the holding client reported nothing");
    let n: u32 = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(n, 20, "exactly the cap's worth of connections is admitted");
    let row = common::flows_row(&lab, &net);
    let tcp = common::endpoint_flows(&row, "tcp", &sub.ip(2)).len();
    assert_eq!(tcp, 20, "{row}");
    assert!(
        row["stats"]["drops"]["endpoint_flow_cap"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{row}"
    );
    assert_eq!(row["stats"]["max_flows_per_endpoint"], 20, "{row}");
    // Another endpoint is not affected by alpha's cap.
    let client = lab.write_file("tcp_client.py", &py_script(CLIENT));
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &b,
            "python3",
            &client,
            &out.ip,
            "5005",
            "halfclose",
        ],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "beta's connection: {}", show(&o));
}
