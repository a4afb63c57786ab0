//! Restart without losing a container (issue 9), end to end in real namespaces.
//!
//! Every lab daemon keeps its state in its own `--state-dir` (the harness gives `DIR/state`).
//! The daemon is stopped by `kill -9` or SIGTERM and started again with the same options; the
//! containers must come back as they were: TAP and veth endpoints re-adopted, names and
//! aliases answered by 127.0.0.11 again, published ports bound again (the client's address
//! kept), and an iperf3 stream between two TAP endpoints must ride through a `kill -9` with a
//! short pause and no reset. The refusals are checked too: a corrupt state file (left
//! byte-identical), a second daemon on a locked directory; and the other ways out:
//! `--ephemeral` leaves nothing, `system reset` removes everything, a namespace deleted while
//! the daemon was down is dropped and its address freed.
//!
//! Traffic stays inside the namespaces the tests make. The pause and restore times are printed
//! (`cargo test -- --nocapture` shows them).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The host port published on `charlie` (the lab's host namespace is its own, so a fixed port
/// never collides with another test).
const HOST_PORT: &str = "18080";
const CONTAINER_PORT: u16 = 8080;

/// Accepts TCP connections on 0.0.0.0:argv[1]; answers each with `peer ADDR` (the client's
/// address as the container sees it) and closes.
const PEER_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    c, a = s.accept()
    try:
        c.sendall(("peer %s\n" % a[0]).encode())
    finally:
        c.close()
"#;

/// Connects to argv[1]:argv[2] and prints what it receives (or the error).
const PEER_CLIENT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    data = b""
    while True:
        b = c.recv(100)
        if not b:
            break
        data += b
    print(data.decode().strip())
except Exception as e:
    print("error %s: %s" % (type(e).__name__, e))
"#;

// ---------------------------------------------------------------------------------------------
// Stopping and starting the daemon.

/// `kill -9` of the daemon process (its pid only), then reaps it; checks it died of SIGKILL.
fn kill9(lab: &mut Lab) {
    let pid = i32::try_from(lab.daemon_pid()).expect("pid fits i32");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
    // Reaps it (the SIGTERM it also sends goes to a process already gone).
    let status = lab.stop_daemon();
    assert_eq!(
        status.signal(),
        Some(9),
        "the daemon did not die of SIGKILL: {status}"
    );
}

/// SIGTERM; the daemon must exit 0.
fn term(lab: &mut Lab) {
    let status = lab.stop_daemon();
    if status.code() != Some(0) {
        panic!("daemon exit after SIGTERM: {status}\n{}", lab.daemon_log());
    }
}

/// Starts the daemon again (same options as the first start: the harness's state directory)
/// and waits until it logged "ready" (the socket accepts before the restore is done). The
/// previous run's log (overwritten by the new start) is printed first, for a failure's
/// diagnostics. Returns the restore time the daemon logged, if it restored anything.
fn restart(lab: &mut Lab, args: &[&str]) -> Option<u64> {
    eprintln!(
        "----- the previous daemon's log -----\n{}",
        lab.daemon_log()
    );
    lab.start_daemon(args);
    if !wait_until(Duration::from_secs(15), Duration::from_millis(10), || {
        lab.daemon_log().contains("netyard daemon ready")
    }) {
        lab.fail("the restarted daemon did not log \"netyard daemon ready\" within 15 s");
    }
    restore_ms(&lab.daemon_log())
}

/// The `ms=` of the daemon's "state restored" line.
fn restore_ms(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("state restored"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
}

/// The lab's state file (the harness's `--state-dir DIR/state`).
fn state_file(lab: &Lab) -> PathBuf {
    lab.dir.join("state").join("state.json")
}

/// Every file of a directory with its bytes, sorted by name (empty if the directory is
/// missing).
fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Looking at endpoints and devices.

/// What must survive a restart of each endpoint in `ps --json`: everything but the counters
/// and the switch port number; sorted by network and name.
fn summary(ps: &Value) -> Vec<Value> {
    let mut v: Vec<Value> = ps
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    serde_json::json!({
                        "network": e["network"], "name": e["name"], "kind": e["kind"],
                        "ip": e["ip"], "prefix_len": e["prefix_len"], "gateway": e["gateway"],
                        "mac": e["mac"], "ifname": e["ifname"], "netns": e["netns"],
                        "host_ifname": e["host_ifname"], "aliases": e["aliases"],
                        "ports": e["ports"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|e| format!("{}/{}", e["network"], e["name"]));
    v
}

fn ps_summary(lab: &Lab) -> Vec<Value> {
    summary(&lab.ny_json(&["ps", "--json"]))
}

/// The endpoint names `ps --json` lists, sorted.
fn ps_names(lab: &Lab) -> Vec<String> {
    let ps = lab.ny_json(&["ps", "--json"]);
    let mut v: Vec<String> = ps
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn ip_of(ep: &Value) -> String {
    ep["ip"].as_str().unwrap_or_default().to_string()
}

/// A TAP device's "persist" flag as `ip -d link` reports it (None: no such device or not
/// reported).
fn tap_persist(ns: &str, ifname: &str) -> Option<bool> {
    let o = cmd(
        &["ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname],
        CLI_TIMEOUT,
    );
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v[0]["linkinfo"]["info_data"]["persist"].as_bool()
}

/// The veth host ends netyard made in the lab's host namespace.
fn host_ends(lab: &Lab) -> Vec<String> {
    links(&lab.host.name)
        .into_iter()
        .filter(|l| is_netyard_host_end(l))
        .collect()
}

/// `dig +short NAME A @127.0.0.11` inside `ns`: the addresses answered.
fn resolve(ns: &str, name: &str) -> Vec<String> {
    let o = ns_cmd(
        ns,
        &[
            "dig",
            "+short",
            "+time=2",
            "+tries=2",
            "@127.0.0.11",
            name,
            "A",
        ],
        Duration::from_secs(15),
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn assert_resolves(lab: &Lab, ns: &str, name: &str, ip: &str) {
    let got = resolve(ns, name);
    if got != vec![ip.to_string()] {
        lab.fail(&format!(
            "{name} resolved in {ns} through 127.0.0.11 to {got:?}, expected [{ip}]"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The three-endpoint world of the kill -9 and SIGTERM tests.

/// Network `lan`: alpha (TAP, alias `web`) in `a`, bravo (TAP) in `b`, charlie (veth, host
/// port 18080 published to its 8080, where a server answers with the client's address) in
/// `c`; and the outside namespace the published port's client connects from.
struct Three {
    net: String,
    ns: [String; 3],
    names: [&'static str; 3],
    ips: [String; 3],
    out: Outside,
}

fn three(lab: &Lab) -> Three {
    require_program("dig", "dnsutils");
    require_program("python3", "python3");
    let sub = Subnet::random();
    let net = lab.network("lan", &sub, &[]);
    let ns = [lab.ns("a"), lab.ns("b"), lab.ns("c")];
    let names = ["alpha", "bravo", "charlie"];
    let publish = format!("{HOST_PORT}:{CONTAINER_PORT}");
    let eps = [
        lab.attach(&net, &ns[0], names[0], &["--alias", "web"]),
        lab.attach(&net, &ns[1], names[1], &[]),
        lab.attach(&net, &ns[2], names[2], &["--kind", "veth", "-p", &publish]),
    ];
    for (ep, kind) in eps.iter().zip(["tap", "tap", "veth"]) {
        assert_eq!(ep["kind"], kind, "{ep}");
    }
    // A persistent daemon makes its TAPs persistent: they outlive its descriptors.
    for n in &ns[..2] {
        let p = tap_persist(n, "eth0");
        if p != Some(true) {
            lab.fail(&format!(
                "the TAP eth0 in {n} of a persistent daemon is not persistent ({p:?})"
            ));
        }
    }
    let out = lab.outside();
    lab.bg_in(
        &ns[2],
        &["python3", "-c", PEER_SERVER, &CONTAINER_PORT.to_string()],
        "peer_server.log",
    );
    if !wait_listening(&ns[2], CONTAINER_PORT, Proto::Tcp) {
        lab.fail("the server in charlie's namespace never listened");
    }
    let t = Three {
        net,
        ips: [ip_of(&eps[0]), ip_of(&eps[1]), ip_of(&eps[2])],
        ns,
        names,
        out,
    };
    // Everything works before the restart (so that a failure after it means the restart).
    check_three(lab, &t, "before the restart");
    t
}

/// The published port answers from outside, and the container saw the client's address.
fn assert_published(lab: &Lab, t: &Three, when: &str) {
    let o = ns_cmd(
        &t.out.ns,
        &["python3", "-c", PEER_CLIENT, &t.out.host_ip, HOST_PORT],
        Duration::from_secs(20),
    );
    let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let want = format!("peer {}", t.out.ip);
    if got != want {
        lab.fail(&format!(
            "{when}: published port {}:{HOST_PORT} -> charlie:{CONTAINER_PORT} from {}: got \
             {got:?}, expected {want:?} (the client's address kept)\n{}",
            t.out.host_ip,
            t.out.ns,
            show(&o)
        ));
    }
}

/// Ping between all three, every name and the alias from every namespace, the published
/// port.
fn check_three(lab: &Lab, t: &Three, when: &str) {
    for i in 0..3 {
        for j in 0..3 {
            if i == j {
                continue;
            }
            let o = lab.ping_output(&t.ns[i], &t.ips[j]);
            if !o.status.success() {
                lab.fail(&format!(
                    "{when}: ping {} -> {} ({}) failed:\n{}",
                    t.names[i],
                    t.names[j],
                    t.ips[j],
                    show(&o)
                ));
            }
            assert_resolves(lab, &t.ns[i], t.names[j], &t.ips[j]);
        }
    }
    for i in [1, 2] {
        assert_resolves(lab, &t.ns[i], "web", &t.ips[0]);
        assert_resolves(lab, &t.ns[i], &format!("web.{}", t.net), &t.ips[0]);
    }
    assert_published(lab, t, when);
}

/// The devices of the three endpoints while the daemon is down: each container keeps its
/// eth0 with its address, charlie's host end stays.
fn check_devices_kept(lab: &Lab, t: &Three, host_end: &str) {
    for (ns, ip) in t.ns.iter().zip(&t.ips) {
        let addrs = cmd_ok(&["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"]);
        if !addrs.contains(&format!(" {ip}/")) {
            lab.fail(&format!(
                "with the daemon down, {ns} lost eth0 or its address {ip}: {addrs:?} (links \
                 {:?})",
                links(ns)
            ));
        }
    }
    if !links(&lab.host.name).iter().any(|l| l == host_end) {
        lab.fail(&format!(
            "with the daemon down, charlie's host end {host_end} is gone: {:?}",
            links(&lab.host.name)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// iperf3 across a kill -9.

/// One iperf3 interval: start, end (seconds) and bytes.
type Interval = (f64, f64, f64);

fn intervals(v: &Value) -> Vec<Interval> {
    v["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let s = &i["sum"];
                    (
                        s["start"].as_f64().unwrap_or(0.0),
                        s["end"].as_f64().unwrap_or(0.0),
                        s["bytes"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The intervals summed into whole seconds (the issue's 1-s intervals).
fn per_second(iv: &[Interval]) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    for &(s, e, bytes) in iv {
        let sec = (s + 1e-6).floor();
        match out.last_mut() {
            Some(last) if last.0 == sec => {
                last.1 = e;
                last.2 += bytes;
            }
            _ => out.push((sec, e, bytes)),
        }
    }
    out
}

fn mbps(&(s, e, bytes): &Interval) -> f64 {
    if e > s {
        bytes * 8.0 / (e - s) / 1e6
    } else {
        0.0
    }
}

/// The longest run of consecutive intervals under 1 Mbit/s, in seconds.
fn longest_stall(iv: &[Interval]) -> f64 {
    let (mut best, mut run) = (0.0f64, 0.0f64);
    for i in iv {
        if mbps(i) < 1.0 {
            run += i.1 - i.0;
            best = best.max(run);
        } else {
            run = 0.0;
        }
    }
    best
}

fn series(iv: &[Interval]) -> String {
    iv.iter()
        .map(|i| format!("{:.1}-{:.1}s {:.0}", i.0, i.1, mbps(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The timestamps of the replies in the output of `ping -D` (`[UNIX.TIME] 64 bytes from`).
fn reply_times(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn kill_9_and_restart_keeps_every_endpoint_and_a_tcp_stream() {
    require_program("iperf3", "iperf3");
    let mut lab = Lab::new();
    let t = three(&lab);
    let before = ps_summary(&lab);
    assert_eq!(before.len(), 3, "ps before: {before:?}");
    let host_end = before[2]["host_ifname"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // iperf3 alpha -> bravo, 8 s; the receiver's 0.1-s intervals come back with
    // --get-server-output.
    let port = 20000 + (rand::random::<u16>() % 40000);
    let p = port.to_string();
    let srv = Bg::spawn(
        Command::new("ip").args([
            "netns", "exec", &t.ns[1], "iperf3", "-s", "-1", "-J", "-i", "0.1", "-p", &p,
        ]),
        &lab.dir.join("iperf-server.log"),
    );
    if !wait_listening(&t.ns[1], port, Proto::Tcp) {
        lab.fail(&format!("iperf3 server never listened: {}", srv.log_text()));
    }
    lab.keep(srv);
    let argv: Vec<String> = [
        "ip",
        "netns",
        "exec",
        &t.ns[0],
        "iperf3",
        "-c",
        &t.ips[1],
        "-p",
        &p,
        "-t",
        "8",
        "-i",
        "0.1",
        "-J",
        "--get-server-output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Pings charlie -> alpha every 20 ms with timestamps (-D) across the restart: when
    // forwarding resumed, apart from TCP's retransmission timer. (Not to bravo: traffic into
    // the receiver shortens the stream's pause, which would then be measured too kindly.)
    let mut pinger = Bg::spawn(
        Command::new("ip").args([
            "netns", "exec", &t.ns[2], "ping", "-n", "-D", "-i", "0.02", "-W", "1", "-w", "7",
            &t.ips[0],
        ]),
        &lab.dir.join("ping-across.log"),
    );
    let t_start = Instant::now();
    let client = std::thread::spawn(move || {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        cmd(&a, Duration::from_secs(60))
    });

    std::thread::sleep(Duration::from_millis(2500));
    let t_kill = t_start.elapsed();
    let unix_kill = unix_now();
    kill9(&mut lab);
    check_devices_kept(&lab, &t, &host_end);
    std::thread::sleep(Duration::from_millis(1000));
    let t_restart = t_start.elapsed();
    let ms = restart(&mut lab, &[]);
    let t_ready = t_start.elapsed();
    let unix_ready = unix_now();

    let o = client.join().expect("the iperf3 thread");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    if !o.status.success() || !v["error"].is_null() || v.is_null() {
        lab.fail(&format!(
            "iperf3 alpha -> bravo did not finish cleanly across the restart (a reset?):\n{}",
            show(&o)
        ));
    }
    let received = intervals(&v["server_output_json"]);
    let bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    if received.is_empty() || bytes == 0 {
        lab.fail(&format!(
            "iperf3 reported no receiver intervals or no bytes:\n{}",
            show(&o)
        ));
    }
    let seconds = per_second(&received);
    // The issue's figure: 1-s intervals under 1 Mbit/s; and the gap itself, to 0.1 s.
    let stall = longest_stall(&seconds);
    let gap = longest_stall(&received);
    eprintln!(
        "kill -9 at {:.2} s, start at {:.2} s, ready at {:.2} s (down {:.2} s); restore took \
         {ms:?} ms",
        t_kill.as_secs_f64(),
        t_restart.as_secs_f64(),
        t_ready.as_secs_f64(),
        (t_ready - t_kill).as_secs_f64()
    );
    eprintln!("iperf3 received, Mbit/s per second: {}", series(&seconds));
    eprintln!("iperf3 received, Mbit/s per 0.1 s: {}", series(&received));
    println!(
        "PAUSE: {stall:.0} s of 1-s intervals under 1 Mbit/s; gap {gap:.1} s (0.1-s \
         intervals); daemon down {:.2} s; restore {ms:?} ms; {bytes} bytes received",
        (t_ready - t_kill).as_secs_f64()
    );
    pinger.wait(Duration::from_secs(15));
    // The longest silence between two replies is the outage; its end is when forwarding
    // resumed.
    let replies = reply_times(&pinger.log_text());
    let outage = replies
        .windows(2)
        .map(|w| (w[1] - w[0], w[1]))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((silence, resumed)) = outage.filter(|&(_, r)| r > unix_kill) else {
        lab.fail(&format!(
            "no ping reply charlie -> alpha after the restart:\n{}",
            pinger.log_text()
        ))
    };
    println!(
        "PING charlie -> alpha every 20 ms: {:.0} ms without a reply; replies again {:.0} ms \
         after the new daemon logged ready",
        silence * 1e3,
        (resumed - unix_ready) * 1e3
    );
    if resumed - unix_ready > 2.0 {
        lab.fail(&format!(
            "forwarding resumed {:.1} s after the restarted daemon was ready (the issue: about \
             1 s)",
            resumed - unix_ready
        ));
    }
    // The issue allows 2 s lost; the slack is for a loaded machine.
    if stall > 4.0 {
        lab.fail(&format!(
            "the stream paused {stall:.0} s (gap {gap:.1} s) across kill -9 and restart (at most \
             4 s allowed): {}",
            series(&seconds)
        ));
    }
    if ms.is_none() {
        lab.fail("the restarted daemon logged no \"state restored\" line");
    }

    check_three(&lab, &t, "after kill -9 and restart");
    let after = ps_summary(&lab);
    if after != before {
        lab.fail(&format!(
            "ps after the restart differs:\nbefore {before:#?}\nafter {after:#?}"
        ));
    }
}

#[test]
fn sigterm_and_start_keeps_every_endpoint() {
    let mut lab = Lab::new();
    let t = three(&lab);
    let before = ps_summary(&lab);
    let host_end = before[2]["host_ifname"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    term(&mut lab);
    check_devices_kept(&lab, &t, &host_end);
    // The default route through the gateway stays as well.
    let routes = cmd_ok(&["ip", "-n", &t.ns[0], "-4", "route", "show", "default"]);
    assert!(
        routes.contains("dev eth0"),
        "alpha's default route is gone with the daemon down: {routes:?}"
    );
    let ms = restart(&mut lab, &[]);
    eprintln!("SIGTERM and start: restore took {ms:?} ms");
    println!("sigterm restore: {ms:?} ms");
    check_three(&lab, &t, "after SIGTERM and start");
    let after = ps_summary(&lab);
    if after != before {
        lab.fail(&format!(
            "ps after the restart differs:\nbefore {before:#?}\nafter {after:#?}"
        ));
    }
    // A restored TAP endpoint detached: its device goes (no longer persistent), and a
    // restored veth's host end goes too.
    lab.ny_ok(&["detach", &t.net, "alpha"]);
    // A detach answers once the state changed; the device goes right after.
    if !gone_soon(|| link_json(&t.ns[0], "eth0").is_none()) {
        lab.fail(&format!(
            "the restored TAP eth0 is still in {} after detach: {:?}",
            t.ns[0],
            links(&t.ns[0])
        ));
    }
    lab.ny_ok(&["detach", &t.net, "charlie"]);
    if !gone_soon(|| {
        !links(&lab.host.name).contains(&host_end) && link_json(&t.ns[2], "eth0").is_none()
    }) {
        lab.fail(&format!(
            "the restored veth charlie is left after detach: host {:?}, container {:?}",
            links(&lab.host.name),
            links(&t.ns[2])
        ));
    }
    assert_eq!(ps_names(&lab), vec!["bravo".to_string()]);
}

#[test]
fn detach_removes_a_persistent_tap() {
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("lan", &sub, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    let eb = lab.attach(&net, &nb, "bravo", &["--ifname", "eth3"]);
    assert_eq!(tap_persist(&na, "eth0"), Some(true), "{:?}", links(&na));
    lab.assert_ping(&na, &ip_of(&eb));
    lab.ny_ok(&["detach", &net, "alpha"]);
    lab.ny_ok(&["detach", &net, "bravo"]);
    for ns in [&na, &nb] {
        if !gone_soon(|| links(ns) == vec!["lo".to_string()]) {
            lab.fail(&format!(
                "{ns} still has {:?} after detaching its TAP endpoint from a persistent daemon",
                links(ns)
            ));
        }
    }
    // And the state forgot them.
    let state = std::fs::read_to_string(state_file(&lab)).unwrap_or_default();
    assert!(
        !state.contains(&na) && !state.contains(&nb),
        "the state file still names a detached endpoint's namespace:\n{state}"
    );
}

// ---------------------------------------------------------------------------------------------
// A namespace gone while the daemon was down.

#[test]
fn an_endpoint_whose_namespace_is_gone_is_dropped_the_others_restored() {
    let mut lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("lan", &sub, &[]);
    let (na, nd) = (lab.ns("a"), lab.ns("d"));
    // Deleted (dropped) while the daemon is down: one veth, one TAP.
    let doomed_b = Netns::new(&lab.id, "b");
    let doomed_c = Netns::new(&lab.id, "c");
    let ea = lab.attach(&net, &na, "keep1", &[]);
    let eb = lab.attach(&net, &doomed_b.name, "gone1", &["--kind", "veth"]);
    let ec = lab.attach(&net, &doomed_c.name, "gone2", &[]);
    let ed = lab.attach(&net, &nd, "keep2", &["--kind", "veth"]);
    let gone_end = eb["host_ifname"].as_str().unwrap_or_default().to_string();
    lab.assert_ping(&na, &ip_of(&ed));
    let kept_before: Vec<Value> = ps_summary(&lab)
        .into_iter()
        .filter(|e| e["name"] == "keep1" || e["name"] == "keep2")
        .collect();
    let (doomed_b_name, doomed_c_name) = (doomed_b.name.clone(), doomed_c.name.clone());

    term(&mut lab);
    drop(doomed_b);
    drop(doomed_c);
    let ms = restart(&mut lab, &[]);
    eprintln!("restore with two namespaces gone took {ms:?} ms");

    let log = lab.daemon_log();
    for (name, ns) in [("gone1", &doomed_b_name), ("gone2", &doomed_c_name)] {
        let said = log.lines().any(|l| {
            l.contains("not restored") && l.contains(&format!("endpoint={name}")) && l.contains(ns)
        });
        if !said {
            lab.fail(&format!(
                "the daemon's log does not say that {name} (namespace {ns}) was dropped:\n{log}"
            ));
        }
    }
    if !log.lines().any(|l| {
        l.contains("state restored") && l.contains("endpoints=2") && l.contains("dropped=2")
    }) {
        lab.fail(&format!(
            "no \"state restored ... endpoints=2 dropped=2\" line:\n{log}"
        ));
    }
    assert_eq!(
        ps_names(&lab),
        vec!["keep1".to_string(), "keep2".to_string()],
        "ps after the restart"
    );
    let kept_after = ps_summary(&lab);
    assert_eq!(kept_after, kept_before, "the kept endpoints changed");
    lab.assert_ping(&na, &ip_of(&ed));
    lab.assert_ping(&nd, &ip_of(&ea));
    require_program("dig", "dnsutils");
    assert_resolves(&lab, &na, "keep2", &ip_of(&ed));
    // Nothing of the dropped ones is left: not gone1's host end, not in the state file.
    let host_end_gone = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        !links(&lab.host.name).contains(&gone_end)
    });
    if !host_end_gone {
        lab.fail(&format!(
            "gone1's host end {gone_end} is still in the host namespace: {:?}",
            links(&lab.host.name)
        ));
    }
    let state = std::fs::read_to_string(state_file(&lab)).unwrap_or_default();
    if state.contains(&doomed_b_name) || state.contains(&doomed_c_name) {
        lab.fail(&format!(
            "the state file still holds a dropped endpoint:\n{state}"
        ));
    }
    // Their addresses are free again, and so are their names.
    let (nx, ny) = (lab.ns("x"), lab.ns("y"));
    let ex = lab.attach(&net, &nx, "gone1", &["--ip", &ip_of(&eb)]);
    let ey = lab.attach(&net, &ny, "new2", &["--ip", &ip_of(&ec), "--kind", "veth"]);
    assert_eq!(ip_of(&ex), ip_of(&eb));
    assert_eq!(ip_of(&ey), ip_of(&ec));
    lab.assert_ping(&nx, &ip_of(&ey));
    lab.assert_ping(&ny, &ip_of(&ea));
}

// ---------------------------------------------------------------------------------------------
// Refused starts.

#[test]
fn a_corrupt_state_file_is_refused_and_left_as_it_was() {
    let mut lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("lan", &sub, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ea = lab.attach(&net, &na, "alpha", &[]);
    let eb = lab.attach(&net, &nb, "bravo", &["--kind", "veth"]);
    let before = ps_summary(&lab);
    term(&mut lab);

    let path = state_file(&lab);
    let dir = lab.dir.join("state");
    let orig = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let shown = path.display().to_string();
    let text = String::from_utf8_lossy(&orig).into_owned();
    let newer = text.replacen("\"schema\": 1", "\"schema\": 2", 1);
    assert_ne!(newer, text, "no \"schema\": 1 in the state file:\n{text}");
    let cases: [(&str, Vec<u8>, &[&str]); 3] = [
        (
            "a newline appended",
            [&orig[..], b"\n"].concat(),
            &["corrupt"],
        ),
        ("an x appended", [&orig[..], b"x"].concat(), &["corrupt"]),
        ("a newer schema", newer.into_bytes(), &["schema 2", "newer"]),
    ];
    for (what, bytes, needles) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let files_before = dir_bytes(&dir);
        let o = lab.daemon_expect_exit(&[]);
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if o.status.success() {
            lab.fail(&format!("{what}: the daemon started on it:\n{}", show(&o)));
        }
        let last = out.lines().last().unwrap_or_default().to_lowercase();
        if !last.contains(&shown.to_lowercase()) || needles.iter().any(|n| !last.contains(n)) {
            lab.fail(&format!(
                "{what}: the daemon's last line does not name {shown} and {needles:?}:\n{}",
                show(&o)
            ));
        }
        eprintln!("{what}: {last}");
        if dir_bytes(&dir) != files_before {
            lab.fail(&format!(
                "{what}: the refused start changed the state directory ({:?})",
                dir_bytes(&dir)
                    .iter()
                    .map(|(n, b)| format!("{n}: {} bytes", b.len()))
                    .collect::<Vec<_>>()
            ));
        }
        // And it touched no container.
        for (ns, ep) in [(&na, &ea), (&nb, &eb)] {
            lab.check_interface(ns, "eth0", ep);
        }
        assert!(
            std::os::unix::net::UnixStream::connect(&lab.api).is_err(),
            "{what}: something answers on the API socket"
        );
    }
    // The file put back, the daemon starts and has it all.
    std::fs::write(&path, &orig).unwrap();
    restart(&mut lab, &[]);
    assert_eq!(ps_summary(&lab), before);
    lab.assert_ping(&na, &ip_of(&eb));
}

/// `ip netns exec HOST netyard daemon --api API --state-dir DIR`, run to its exit (bounded).
fn second_daemon(lab: &Lab, api: &Path, state_dir: &Path) -> std::process::Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name, NETYARD, "daemon", "--api"])
        .arg(api)
        .arg("--state-dir")
        .arg(state_dir)
        .env("NETYARD_LOG", "info")
        .env("NO_COLOR", "1");
    run_bounded(&mut c, Duration::from_secs(20))
}

#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused() {
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("lan", &sub, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    let eb = lab.attach(&net, &nb, "bravo", &["--kind", "veth"]);
    let dir = lab.dir.join("state");
    let files_before = dir_bytes(&dir);
    let api2 = lab.dir.join("api2.sock");
    let o = second_daemon(&lab, &api2, &dir);
    if o.status.code().is_none() {
        lab.fail(&format!(
            "the second daemon was still running after 20 s:\n{}",
            show(&o)
        ));
    }
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let last = err.lines().last().unwrap_or_default();
    if o.status.success()
        || !last.contains(&dir.display().to_string())
        || !last.contains("another netyard daemon")
    {
        lab.fail(&format!(
            "a second daemon on {}: expected a refusal naming the directory and the other \
             daemon:\n{}",
            dir.display(),
            show(&o)
        ));
    }
    eprintln!("second daemon: {last}");
    assert!(
        !api2.exists(),
        "the refused daemon left its socket {}",
        api2.display()
    );
    assert_eq!(
        dir_bytes(&dir),
        files_before,
        "the refused daemon changed the state directory"
    );
    // The first one keeps serving, and saving.
    assert!(lab.daemon_running(), "the first daemon is gone");
    lab.assert_ping(&na, &ip_of(&eb));
    let nc = lab.ns("c");
    lab.attach(&net, &nc, "charlie", &[]);
    let state = std::fs::read_to_string(state_file(&lab)).unwrap_or_default();
    assert!(
        state.contains(&nc),
        "the first daemon no longer saves its state:\n{state}"
    );
    // Another directory is fine: daemons with their own directories run side by side.
    let api3 = lab.dir.join("api3.sock");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name, NETYARD, "daemon", "--api"])
        .arg(&api3)
        .arg("--state-dir")
        .arg(lab.dir.join("state3"))
        .env("NO_COLOR", "1");
    let mut other = Bg::spawn(&mut c, &lab.dir.join("daemon3.log"));
    let up = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        std::os::unix::net::UnixStream::connect(&api3).is_ok()
    });
    let log3 = other.log_text();
    let status = other.stop(Duration::from_secs(15));
    assert!(
        up,
        "a daemon on another state directory did not start:\n{log3}"
    );
    assert_eq!(status.code(), Some(0), "{log3}");
}

// ---------------------------------------------------------------------------------------------
// Leaving nothing behind.

#[test]
fn ephemeral_leaves_nothing_after_sigterm() {
    let mut lab = Lab::bare();
    lab.start_daemon(&["--ephemeral"]);
    let sub = Subnet::random();
    let net = lab.network("lan", &sub, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    let eb = lab.attach(&net, &nb, "bravo", &["--kind", "veth"]);
    assert_eq!(
        tap_persist(&na, "eth0"),
        Some(false),
        "an ephemeral daemon's TAP is persistent"
    );
    lab.assert_ping(&na, &ip_of(&eb));
    assert_eq!(host_ends(&lab).len(), 1, "{:?}", links(&lab.host.name));
    term(&mut lab);
    for ns in [&na, &nb] {
        let l = links(ns);
        if l != vec!["lo".to_string()] {
            panic!(
                "{ns} still has {l:?} after an ephemeral daemon's SIGTERM\n{}",
                lab.daemon_log()
            );
        }
    }
    assert_eq!(
        host_ends(&lab),
        Vec::<String>::new(),
        "veth host ends left after an ephemeral daemon's SIGTERM"
    );
    // No state anywhere in the lab's directory (the harness gave no --state-dir).
    let mut found = Vec::new();
    let mut stack = vec![lab.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("state"))
            {
                found.push(p);
            }
        }
    }
    assert!(
        found.is_empty() && !lab.dir.join("state").exists(),
        "an ephemeral daemon left state: {found:?}"
    );
}

#[test]
fn system_reset_removes_everything_and_a_restart_comes_up_empty() {
    let mut lab = Lab::new();
    let s1 = Subnet::random();
    let s2 = s1.other();
    lab.network("one", &s1, &[]);
    lab.network("two", &s2, &[]);
    let (na, nb, nc) = (lab.ns("a"), lab.ns("b"), lab.ns("c"));
    lab.attach("one", &na, "alpha", &["--alias", "web"]);
    let eb = lab.attach("one", &nb, "bravo", &["--kind", "veth", "-p", "18081:80"]);
    lab.attach("two", &nc, "charlie", &[]);
    lab.attach(
        "two",
        &na,
        "alpha2",
        &["--ifname", "eth1", "--kind", "veth"],
    );
    lab.assert_ping(&na, &ip_of(&eb));
    assert_eq!(host_ends(&lab).len(), 2, "{:?}", links(&lab.host.name));

    let out = lab.ny_ok(&["system", "reset"]);
    assert!(
        out.contains("2 networks") && out.contains("4 endpoints"),
        "system reset printed {out:?}"
    );
    let empty = Value::Array(vec![]);
    assert_eq!(lab.ny_json(&["ps", "--json"]), empty, "ps after reset");
    assert_eq!(
        lab.ny_json(&["network", "ls", "--json"]),
        empty,
        "network ls after reset"
    );
    for ns in [&na, &nb, &nc] {
        let l = links(ns);
        if l != vec!["lo".to_string()] {
            lab.fail(&format!("{ns} still has {l:?} after system reset"));
        }
    }
    assert_eq!(
        host_ends(&lab),
        Vec::<String>::new(),
        "host ends after reset"
    );
    // The published port is closed.
    let listening = cmd_ok(&[
        "ip",
        "netns",
        "exec",
        &lab.host.name,
        "ss",
        "-Hltn",
        "sport = :18081",
    ]);
    assert!(
        listening.trim().is_empty(),
        "port 18081 still bound after reset: {listening}"
    );
    let state = std::fs::read_to_string(state_file(&lab)).unwrap_or_default();
    assert!(
        !state.contains("alpha") && !state.contains(&na),
        "the state still holds endpoints after reset:\n{state}"
    );

    kill9(&mut lab);
    restart(&mut lab, &[]);
    assert_eq!(lab.ny_json(&["ps", "--json"]), empty, "ps after restart");
    assert_eq!(
        lab.ny_json(&["network", "ls", "--json"]),
        empty,
        "network ls after restart"
    );
    // The names are free.
    lab.network("one", &s1, &[]);
    let ea = lab.attach("one", &na, "alpha", &[]);
    let eb = lab.attach("one", &nb, "bravo", &["--kind", "veth"]);
    lab.assert_ping(&na, &ip_of(&eb));
    lab.assert_ping(&nb, &ip_of(&ea));
}

// ---------------------------------------------------------------------------------------------
// Rootless.

const USER: &str = ROOTLESS_USER;

/// Pings `ip` as the user from inside container `pid`'s own user and network namespaces.
fn rootless_ping(lab: &Lab, run_as: &RunAs, pid: u32, ip: &str, when: &str) {
    let p = run_as.prefix();
    let mut c = Command::new(&p[0]);
    c.args(&p[1..]).args([
        "nsenter",
        "--preserve-credentials",
        "--target",
        &pid.to_string(),
        "--user",
        "--net",
        "ping",
        "-n",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        ip,
    ]);
    let o = run_bounded(&mut c, Duration::from_secs(30));
    if !o.status.success() {
        lab.fail(&format!(
            "{when}: rootless ping from container {pid} to {ip} failed:\n{}",
            show(&o)
        ));
    }
}

#[test]
fn a_rootless_daemon_readopts_its_user_namespace_containers() {
    require_root();
    let (mut lab, run_as) = Lab::rootless();
    let uid = run_as.uid;
    let status = std::fs::read_to_string(format!("/proc/{}/status", lab.daemon_pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&uid.to_string())),
        "the daemon does not run as {USER}:\n{status}"
    );

    let sub = Subnet::random();
    lab.network("rl", &sub, &[]);
    let p1 = rootless_container(&lab, &run_as, "c1");
    let p2 = rootless_container(&lab, &run_as, "c2");
    let mut ips = Vec::new();
    for (name, pid) in [("c1", p1), ("c2", p2)] {
        let pid_s = pid.to_string();
        lab.ny_ok(&["attach", "rl", "--pid", &pid_s, "--name", name]);
        ips.push(ip_of(&lab.endpoint("rl", name)));
    }
    rootless_ping(&lab, &run_as, p1, &ips[1], "before the restart");
    rootless_ping(&lab, &run_as, p2, &ips[0], "before the restart");
    let before = ps_summary(&lab);
    assert_eq!(before.len(), 2, "{before:?}");

    kill9(&mut lab);
    std::thread::sleep(Duration::from_millis(500));
    let ms = restart(&mut lab, &[]);
    eprintln!("rootless restore took {ms:?} ms");
    println!("rootless restore: {ms:?} ms");
    let after = ps_summary(&lab);
    if after != before {
        lab.fail(&format!(
            "ps after the rootless restart differs:\nbefore {before:#?}\nafter {after:#?}"
        ));
    }
    rootless_ping(&lab, &run_as, p1, &ips[1], "after kill -9 and restart");
    rootless_ping(&lab, &run_as, p2, &ips[0], "after kill -9 and restart");

    // And once more through SIGTERM.
    term(&mut lab);
    restart(&mut lab, &[]);
    assert_eq!(ps_summary(&lab), before, "ps after SIGTERM and start");
    rootless_ping(&lab, &run_as, p1, &ips[1], "after SIGTERM and start");
}
