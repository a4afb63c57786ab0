//! Running as a service (issue 17): the systemd unit in contrib/ verifies, the daemon works
//! with only the capabilities the unit keeps (setpriv cuts the bounding set as systemd would:
//! TAP and veth endpoints, switching, egress ping, a port below 1024), readiness and
//! stopping are notified over `NOTIFY_SOCKET` (READY=1 only once the API answers), SIGHUP
//! applies `--config` again (new networks, endpoints and published ports created, what cannot
//! change live logged by name and field and kept, a bad file changes nothing), and
//! `--log-format json` writes one JSON object per line.
//!
//! Each test has its own lab (host namespace, state directory); the notify socket is a
//! unixgram socket in the lab's directory.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/netyard.service");

#[test]
fn the_unit_file_verifies() {
    require_program("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(UNIT).expect("contrib/netyard.service");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=netyard",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a CapabilityBoundingSet line");
    // Every capability kept is explained in a comment.
    for cap in caps.split_whitespace() {
        assert!(
            unit.lines().any(|l| l.starts_with(&format!("# {cap}:"))),
            "no comment says why the unit keeps {cap}"
        );
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = std::env::temp_dir().join(format!("nyt-unit-{}", suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("netyard.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/netyard", NETYARD)).expect("copy");
    let o = cmd(
        &["systemd-analyze", "verify", &copy.to_string_lossy()],
        CLI_TIMEOUT,
    );
    let _ = std::fs::remove_dir_all(&dir);
    // An unknown key is only a warning (exit 0): any output counts as a failure.
    assert!(
        o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
        "systemd-analyze verify complains:\n{}",
        show(&o)
    );
}

/// The notify socket a test binds, as systemd does for a Type=notify service.
struct Notify {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("binding the notify socket");
        Notify { sock, path }
    }

    /// The next message, or None after `timeout`.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits (up to 20 s) for a message with the line `want`; returns every message seen.
    fn expect(&self, lab: &Lab, want: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(m) = self.recv(Duration::from_millis(200)) {
                let hit = m.lines().any(|l| l == want);
                seen.push(m);
                if hit {
                    return seen;
                }
            }
        }
        lab.fail(&format!(
            "no {want} on the notify socket within 20 s; got {seen:?}"
        ))
    }
}

/// Starts the lab's daemon with `args` and `NOTIFY_SOCKET`, kept until the lab ends.
fn start_notified(lab: &Lab, notify: &Notify, args: &[&str]) -> u32 {
    let mut c: Command = lab.daemon_command(args);
    c.env("NOTIFY_SOCKET", &notify.path);
    let bg = Bg::spawn(&mut c, &lab.dir.join("daemon.log"));
    let pid = bg.pid();
    lab.keep(bg);
    pid
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(pid, sig).expect("signalling the daemon");
}

#[test]
fn readiness_reload_and_stop_are_notified() {
    let lab = Lab::bare();
    let notify = Notify::bind(&lab.dir);
    let net = format!("svc{}", lab.id);
    let config = lab.write_file(
        "netyard.toml",
        &format!(
            "[[network]]\nname = \"{net}\"\nsubnet = \"{}\"\n",
            Subnet::random().cidr()
        ),
    );
    let t0 = Instant::now();
    let pid = start_notified(&lab, &notify, &["--config", &config]);
    notify.expect(&lab, "READY=1");
    println!("READY=1 {:?} after the start", t0.elapsed());
    // At READY=1 the API answers at once, with the config applied: nothing to poll for.
    let o = lab.ny(&["network", "ls", "--json"]);
    assert!(
        o.status.success(),
        "the API does not answer at READY=1:\n{}",
        show(&o)
    );
    let nets: Value = serde_json::from_slice(&o.stdout).expect("network ls --json");
    assert!(
        nets.as_array()
            .is_some_and(|a| a.iter().any(|n| n["name"] == net.as_str())),
        "the config's network is not there at READY=1: {nets}"
    );

    signal(pid, nix::sys::signal::Signal::SIGHUP);
    let seen = notify.expect(&lab, "RELOADING=1");
    assert!(
        !seen.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 before RELOADING=1: {seen:?}"
    );
    notify.expect(&lab, "READY=1");

    signal(pid, nix::sys::signal::Signal::SIGTERM);
    notify.expect(&lab, "STOPPING=1");
    let mut bgs = lab.bgs.lock().expect("bgs");
    let daemon = bgs.first_mut().expect("the daemon");
    let status = daemon
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the daemon did not exit after SIGTERM"));
    assert!(status.success(), "the daemon exited with {status}");
}

/// Waits (up to 30 s) until the daemon's log has `n` lines whose message is `msg`.
fn wait_log(lab: &Lab, msg: &str, n: usize) -> Vec<Value> {
    let mut hits = Vec::new();
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        hits = json_lines(lab)
            .into_iter()
            .filter(|l| l["message"] == msg)
            .collect();
        hits.len() >= n
    });
    if !ok {
        lab.fail(&format!("the daemon did not log {msg:?} {n} time(s)"));
    }
    hits
}

/// Every line of the daemon's log, each parsed as JSON (fails on a line that is not).
fn json_lines(lab: &Lab) -> Vec<Value> {
    lab.daemon_log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| lab.fail(&format!("a log line is not JSON ({e}): {l}")))
        })
        .collect()
}

fn network_json(lab: &Lab, name: &str) -> Option<Value> {
    let nets = lab.ny_json(&["network", "ls", "--json"]);
    nets.as_array()?.iter().find(|n| n["name"] == name).cloned()
}

#[test]
fn sighup_reloads_the_config_and_json_logs_parse() {
    let mut lab = Lab::bare();
    let (s1, s2) = {
        let s = Subnet::random();
        (s, s.other())
    };
    let (a, b) = (format!("a{}", lab.id), format!("b{}", lab.id));
    let (ns1, ns2) = (lab.ns("1"), lab.ns("2"));
    let first = format!(
        "[[network]]\nname = \"{a}\"\nsubnet = \"{}\"\n\n\
         [[endpoint]]\nnetwork = \"{a}\"\nname = \"one\"\nnetns = \"/run/netns/{ns1}\"\n\
         publish = [\"18081:81\"]\n",
        s1.cidr()
    );
    let config = lab.write_file("netyard.toml", &first);
    lab.start_daemon(&["--config", &config, "--log-format", "json"]);
    let pid = lab.daemon_pid();
    assert_eq!(
        network_json(&lab, &a).map(|n| n["mtu"].clone()),
        Some(Value::from(1500))
    );

    // The file changes an immutable field (the MTU), adds a port to a running endpoint and a
    // network with an endpoint.
    let second = format!(
        "[[network]]\nname = \"{a}\"\nsubnet = \"{}\"\nmtu = 9000\n\n\
         [[network]]\nname = \"{b}\"\nsubnet = \"{}\"\n\n\
         [[endpoint]]\nnetwork = \"{a}\"\nname = \"one\"\nnetns = \"/run/netns/{ns1}\"\n\
         publish = [\"18081:81\", \"18082:82/udp\"]\n\n\
         [[endpoint]]\nnetwork = \"{b}\"\nname = \"two\"\nnetns = \"/run/netns/{ns2}\"\n",
        s1.cidr(),
        s2.cidr()
    );
    std::fs::write(&config, second).expect("rewriting the config");
    signal(pid, nix::sys::signal::Signal::SIGHUP);
    let done = wait_log(&lab, "config reloaded", 1);
    assert_eq!(done[0]["networks_created"], 1, "{}", done[0]);
    assert_eq!(done[0]["endpoints_created"], 1, "{}", done[0]);
    assert_eq!(done[0]["ports_published"], 1, "{}", done[0]);
    assert_eq!(done[0]["kept_as_running"], 1, "{}", done[0]);

    let net_a = network_json(&lab, &a).unwrap_or_else(|| lab.fail("network a is gone"));
    assert_eq!(net_a["mtu"], 1500, "the MTU changed live: {net_a}");
    let kept: Vec<Value> = json_lines(&lab)
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["network"] == a.as_str())
        .collect();
    assert!(
        kept.iter()
            .any(|l| l["fields"].as_str().is_some_and(|f| f.contains("mtu"))),
        "no warning names network {a} and its field mtu: {kept:?}"
    );
    assert!(
        network_json(&lab, &b).is_some(),
        "network b was not created"
    );
    let two = lab.endpoint(&b, "two");
    lab.check_interface(&ns2, "eth0", &two);
    let one = lab.endpoint(&a, "one");
    let ports: Vec<(u64, u64, String)> = one["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        num(p, "host_port"),
                        num(p, "container_port"),
                        p["protocol"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        ports,
        vec![(18081, 81, "tcp".into()), (18082, 82, "udp".into())],
        "{one}"
    );

    // A file that does not parse changes nothing; the error names the field.
    std::fs::write(
        &config,
        format!(
            "[[network]]\nname = \"c{}\"\nsubnett = \"10.9.9.0/24\"\n",
            lab.id
        ),
    )
    .expect("rewriting the config");
    signal(pid, nix::sys::signal::Signal::SIGHUP);
    let failed = wait_log(&lab, "config reload failed; nothing changed", 1);
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("subnett")),
        "the error does not name the field: {}",
        failed[0]
    );
    // An entry that fails undoes the whole file: the network created before it is removed.
    let (c, d) = (format!("c{}", lab.id), format!("d{}", lab.id));
    std::fs::write(
        &config,
        format!(
            "[[network]]\nname = \"{c}\"\n\n[[endpoint]]\nnetwork = \"{c}\"\nname = \"x\"\n\
             netns = \"/run/netns/{d}-none\"\n"
        ),
    )
    .expect("rewriting the config");
    signal(pid, nix::sys::signal::Signal::SIGHUP);
    let failed = wait_log(&lab, "config reload failed; nothing changed", 2);
    assert!(
        failed[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("endpoint[0].netns")),
        "the error does not name endpoint[0].netns: {}",
        failed[1]
    );
    assert!(
        network_json(&lab, &c).is_none(),
        "a failed reload left network {c} behind"
    );
    assert!(lab.daemon_running(), "the daemon died on a bad config");
    let nets = lab.ny_json(&["network", "ls", "--json"]);
    assert_eq!(
        nets.as_array().map(Vec::len),
        Some(2),
        "a failed reload changed the networks: {nets}"
    );

    let status = lab.stop_daemon();
    assert!(status.success(), "the daemon exited with {status}");
    let lines = json_lines(&lab);
    assert!(lines.len() > 5, "too few log lines: {lines:?}");
    for l in &lines {
        for key in ["level", "target", "message", "timestamp"] {
            assert!(
                l.get(key).is_some_and(Value::is_string),
                "a log line lacks {key:?}: {l}"
            );
        }
    }
}

/// The capabilities the unit keeps (`CapabilityBoundingSet=`), as setpriv names them.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(UNIT).expect("contrib/netyard.service");
    unit.lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a CapabilityBoundingSet line")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// The capability's bit in /proc/PID/status's masks.
fn cap_bit(name: &str) -> u64 {
    let n = match name {
        "dac_read_search" => 2,
        "net_bind_service" => 10,
        "net_admin" => 12,
        "net_raw" => 13,
        "sys_ptrace" => 19,
        "sys_admin" => 21,
        other => panic!("the test does not know capability {other:?}: add its number"),
    };
    1 << n
}

#[test]
fn the_units_capabilities_are_enough() {
    require_program("setpriv", "util-linux");
    let lab = Lab::bare();
    let caps = unit_capabilities();
    // As systemd starts it: root, the bounding set cut to the unit's, no new privileges.
    let bounding = format!(
        "-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.host.name])
        .args(["setpriv", "--no-new-privs", "--bounding-set", &bounding])
        .arg(NETYARD)
        .arg("daemon")
        .arg("--api")
        .arg(&lab.api)
        .arg("--state-dir")
        .arg(lab.dir.join("state"))
        .env("NETYARD_LOG", "info")
        .env("NO_COLOR", "1");
    let bg = Bg::spawn(&mut c, &lab.dir.join("daemon.log"));
    let pid = bg.pid();
    lab.keep(bg);
    let api = lab.api.clone();
    if !wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        std::os::unix::net::UnixStream::connect(&api).is_ok()
    }) {
        lab.fail("the daemon with the unit's capabilities did not serve its API within 15 s");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("CapEff");
    let want = caps.iter().map(|c| cap_bit(c)).fold(0, |a, b| a | b);
    assert_eq!(
        eff, want,
        "the daemon runs with capabilities {eff:#x}, not the unit's {want:#x}"
    );

    // TAP and veth endpoints (namespaces entered, devices made), switching between them,
    // egress ICMP through the raw socket, a published port below 1024.
    let net = lab.network(&format!("c{}", lab.id), &Subnet::random(), &[]);
    let (ns_t, ns_v) = (lab.ns("t"), lab.ns("v"));
    lab.attach(&net, &ns_t, "t", &[]);
    let v = lab.attach(&net, &ns_v, "v", &["--kind", "veth", "-p", "80:8080"]);
    lab.assert_ping(&ns_t, v["ip"].as_str().expect("v's address"));
    let outside = lab.outside();
    lab.assert_ping(&ns_t, &outside.ip);
    assert_eq!(v["ports"][0]["host_port"], 80, "{v}");
    lab.ny_ok(&["detach", &net, "v"]);
    lab.ny_ok(&["detach", &net, "t"]);
    lab.ny_ok(&["network", "rm", &net]);
}
