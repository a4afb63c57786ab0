//! Issue 19, "every drop counted": frames the kernel drops before netyard can read them show
//! in `stats` under a named reason.
//!
//! - veth: a flood into the host end while the daemon cannot read (stopped with SIGSTOP, so
//!   the overflow does not depend on the machine's speed) overflows the AF_PACKET socket's
//!   receive buffer; `stats` shows the loss as `packet_rcvbuf_full` (PACKET_STATISTICS), and
//!   every frame the host end handed up is either received or counted.
//! - TAP: the same flood overflows the TAP's queue to netyard (`txqueuelen` frames); the
//!   device counts it as `tx_dropped`, read through a netlink socket of the container's
//!   namespace, and `stats` shows it as `tap_queue_full`.
//!
//! - DNS: queries to a namespace's resolver (127.0.0.11:53) while the daemon is stopped
//!   overflow the listener's UDP receive buffer; `GET /v1/dns` shows exactly the kernel's own
//!   drop count of that socket (`/proc/net/udp`) as `udp_rcvbuf_full`.
//!
//! - VXLAN: datagrams to the tunnel's port while the daemon is stopped overflow its UDP
//!   socket; the `(vxlan)` row shows exactly the socket's own drop count as `udp_rcvbuf_full`.
//! - `tap_rx_dropped` has no test: the container's kernel drops what netyard writes to its TAP
//!   only when its input backlog is full, and that bound (`net.core.netdev_max_backlog`) is
//!   one for the whole machine, not per namespace: provoking it would disturb every other
//!   test running, and a stopped daemon writes nothing to overflow it with.
//!
//! Frames are written with a python AF_PACKET socket on the container's eth0, from the
//! endpoint's own MAC to an unknown unicast MAC, inside the lab's namespaces only.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{drops, num, py_ok_within, wait_until, Lab, Subnet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// `flood.py IFNAME SRC_MAC COUNT`: COUNT 60-byte frames from SRC_MAC to 02:00:00:00:00:01
/// (nobody's: flooded to the gateway), ethertype 0x88b5 (local experimental), as fast as the
/// socket takes them (a full device queue's ENOBUFS is retried). Prints the number sent.
const FLOOD: &str = r#"
import socket, sys, time
ifname, src, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
mac = lambda s: bytes(int(x, 16) for x in s.split(":"))
frame = mac("02:00:00:00:00:01") + mac(src) + b"\x88\xb5" + bytes(46)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
sent = 0
while sent < count:
    try:
        s.send(frame)
        sent += 1
    except OSError:
        time.sleep(0.0005)
print(sent)
"#;

/// Sends SIGCONT to the daemon when dropped, so a failing assertion never leaves it stopped
/// (the lab's clean-up needs it running).
struct Resume(Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// Stops the daemon (SIGSTOP) for the life of the returned guard.
fn pause_daemon(lab: &Lab) -> Resume {
    let pid = Pid::from_raw(i32::try_from(lab.daemon_pid()).expect("pid fits i32"));
    kill(pid, Signal::SIGSTOP).unwrap_or_else(|e| lab.fail(&format!("SIGSTOP the daemon: {e}")));
    Resume(pid)
}

/// The `stats` counters of an endpoint.
fn stats_row(lab: &Lab, net: &str, ep: &str) -> Value {
    lab.counters(net, ep)
}

/// Attaches one endpoint of `kind`, floods it with `count` frames while the daemon is stopped,
/// and returns (the network, counters before, counters after).
fn flood_while_stopped(lab: &Lab, kind: &str, count: u32) -> (String, Value, Value) {
    let subnet = Subnet::random();
    let net = lab.network(&format!("kd{}", lab.id), &subnet, &[]);
    let ns = lab.ns("c");
    let ep = lab.attach(&net, &ns, "flooder", &["--kind", kind]);
    let src = ep["mac"].as_str().unwrap_or_default().to_string();
    let script = lab.write_file("flood.py", FLOOD);
    let before = stats_row(lab, &net, "flooder");
    let sent = {
        let _stopped = pause_daemon(lab);
        py_ok_within(
            lab,
            &ns,
            &script,
            &["eth0", &src, &count.to_string()],
            Duration::from_secs(120),
        )
    };
    assert_eq!(sent, count.to_string(), "the flood sent every frame");
    // The daemon reads what its buffer held once it runs again; the stats settle then.
    let mut after = Value::Null;
    wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let a = stats_row(lab, &net, "flooder");
        let settled = a == after;
        after = a;
        settled
    });
    (net, before, after)
}

/// Every frame of the flood was either received or counted as dropped under `reason`.
/// Nothing else crossed while the daemon was stopped but a new interface's IPv6 chatter
/// (router solicitations, MLD reports): a few frames of slack.
fn assert_accounted(sent: u64, before: &Value, after: &Value, reason: &str) {
    let received = num(after, "rx_packets") - num(before, "rx_packets");
    let dropped = drops(after, reason) - drops(before, reason);
    let accounted = received + dropped;
    eprintln!("flood of {sent}: received {received}, dropped as {reason} {dropped}");
    assert!(
        accounted.abs_diff(sent) <= 8,
        "sent {sent} frames; received {received} + dropped as {reason} {dropped} = {accounted}: {after}"
    );
}

/// The sum of a counters object's drop reasons.
fn reasons_sum(c: &Value) -> u64 {
    c["drops"]
        .as_object()
        .map(|d| d.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

#[test]
fn a_flood_that_overflows_the_af_packet_buffer_shows_its_drops_in_stats() {
    let lab = Lab::new();
    // The socket buffer is 4 MiB (the kernel doubles it): a few thousand small frames fit,
    // 200,000 cannot.
    let (net, before, after) = flood_while_stopped(&lab, "veth", 200_000);
    let dropped = drops(&after, "packet_rcvbuf_full") - drops(&before, "packet_rcvbuf_full");
    assert!(
        dropped > 100_000,
        "most of the flood died in the AF_PACKET buffer and is counted, got {dropped}: {after}"
    );
    // Every frame came up the host end to netyard's socket: read, or counted as dropped.
    assert_accounted(200_000, &before, &after, "packet_rcvbuf_full");
    assert_eq!(
        num(&after, "drops_total"),
        reasons_sum(&after),
        "drops_total sums the reasons"
    );
    // The CLI's table names the reason.
    let table = lab.ny_ok(&["stats"]);
    let line = table
        .lines()
        .find(|l| l.contains(&net) && l.contains("flooder"))
        .unwrap_or_default();
    assert!(
        line.contains("packet_rcvbuf_full="),
        "`netyard stats` names the reason: {table}"
    );
}

#[test]
fn a_flood_that_overflows_the_tap_queue_shows_its_drops_in_stats() {
    let lab = Lab::new();
    // The TAP queues txqueuelen (1000) frames for netyard; the rest are the device's
    // tx_dropped.
    let (_net, before, after) = flood_while_stopped(&lab, "tap", 20_000);
    let dropped = drops(&after, "tap_queue_full") - drops(&before, "tap_queue_full");
    assert!(
        dropped >= 10_000,
        "most of the flood died in the TAP's queue and is counted, got {dropped}: {after}"
    );
    assert_accounted(20_000, &before, &after, "tap_queue_full");
}

/// `dnsflood.py COUNT`: COUNT queries for `flood.` to 127.0.0.11:53 from one socket (UDP to
/// loopback never blocks: what the listener's buffer cannot hold the kernel drops), then the
/// listener socket's drop count from /proc/net/udp (its last column), printed.
const DNS_FLOOD: &str = r#"
import socket, struct, sys
count = int(sys.argv[1])
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x05flood\x00" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(q, ("127.0.0.11", 53))
for line in open("/proc/net/udp").read().splitlines()[1:]:
    f = line.split()
    if f[1] == "0B00007F:0035":
        print(f[-1])
"#;

/// `GET PATH` over the API socket: the JSON body.
fn api_json(lab: &Lab, path: &str) -> Value {
    let body = lab.api_get(path);
    serde_json::from_str(&body).unwrap_or_else(|e| lab.fail(&format!("{path}: {e}: {body}")))
}

#[test]
fn queries_dropped_at_a_full_dns_listener_show_as_udp_rcvbuf_full() {
    let lab = Lab::new();
    let subnet = Subnet::random();
    let net = lab.network(&format!("kd{}", lab.id), &subnet, &[]);
    let ns = lab.ns("c");
    lab.attach(&net, &ns, "asker", &[]);
    let before = num(&api_json(&lab, "/v1/dns"), "udp_rcvbuf_full");
    let script = lab.write_file("dnsflood.py", DNS_FLOOD);
    // The default receive buffer (rmem_default, about 200 KiB) holds a few hundred queries;
    // 20,000 cannot fit while nobody reads.
    let kernel: u64 = {
        let _stopped = pause_daemon(&lab);
        py_ok_within(&lab, &ns, &script, &["20000"], Duration::from_secs(120))
            .parse()
            .unwrap_or_else(|e| lab.fail(&format!("no listener drop count in /proc/net/udp: {e}")))
    };
    assert!(
        kernel > 10_000,
        "the flood overflowed the listener: {kernel} drops"
    );
    let after = num(&api_json(&lab, "/v1/dns"), "udp_rcvbuf_full");
    assert_eq!(
        after - before,
        kernel,
        "udp_rcvbuf_full counts exactly the socket's drops"
    );
    let metrics = {
        let mut s = std::os::unix::net::UnixStream::connect(&lab.api).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: netyard\r\n\r\n").expect("write");
        let mut a = String::new();
        s.read_to_string(&mut a).expect("read");
        a
    };
    let line = format!("netyard_dns_drops_total{{reason=\"udp_rcvbuf_full\"}} {after}");
    assert!(
        metrics.contains(&line),
        "/metrics has `{line}`: {}",
        metrics
            .lines()
            .filter(|l| l.contains("dns_drops"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `vxflood.py PORT VNI COUNT`: COUNT VXLAN datagrams (VNI, a 60-byte inner frame to an
/// unknown unicast MAC) to 127.0.0.1:PORT, then the drop count of the socket bound there
/// (`/proc/net/udp`'s last column), printed.
const VXLAN_FLOOD: &str = r#"
import socket, struct, sys
port, vni, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
inner = bytes.fromhex("020000000001" "02aa00000002") + b"\x88\xb5" + bytes(46)
d = bytes([0x08, 0, 0, 0]) + struct.pack("!I", vni << 8) + inner
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(d, ("127.0.0.1", port))
want = "0100007F:%04X" % port
for line in open("/proc/net/udp").read().splitlines()[1:]:
    f = line.split()
    if f[1] == want:
        print(f[-1])
"#;

#[test]
fn datagrams_dropped_at_a_full_vxlan_socket_show_as_udp_rcvbuf_full() {
    let lab = Lab::new();
    let subnet = Subnet::random();
    let port = 20_000 + rand::random::<u16>() % 20_000;
    let net = lab.network(
        &format!("kv{}", lab.id),
        &subnet,
        &[
            "--vxlan",
            "4343",
            "--vxlan-local",
            "127.0.0.1",
            "--vxlan-port",
            &port.to_string(),
            "--mtu",
            "1450",
        ],
    );
    // The first reading is the baseline; a new socket's is 0.
    let before = drops(&lab.counters(&net, "(vxlan)"), "udp_rcvbuf_full");
    let script = lab.write_file("vxflood.py", VXLAN_FLOOD);
    let host = lab.host.name.clone();
    // The socket's buffer is a few MiB: some ten thousand small datagrams fit, 200,000 not.
    let kernel: u64 = {
        let _stopped = pause_daemon(&lab);
        py_ok_within(
            &lab,
            &host,
            &script,
            &[&port.to_string(), "4343", "200000"],
            Duration::from_secs(120),
        )
        .parse()
        .unwrap_or_else(|e| lab.fail(&format!("no VXLAN socket drop count in /proc/net/udp: {e}")))
    };
    assert!(
        kernel > 50_000,
        "the flood overflowed the socket: {kernel} drops"
    );
    let mut got = 0;
    let settled = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        got = drops(&lab.counters(&net, "(vxlan)"), "udp_rcvbuf_full") - before;
        got == kernel
    });
    assert!(
        settled,
        "(vxlan) udp_rcvbuf_full {got}, the socket's own drop count {kernel}"
    );
}
