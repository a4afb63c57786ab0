//! Rootless: the daemon runs as an unprivileged user, and the "containers" are that user's own
//! user+network namespaces (`unshare --user --map-root-user --net`), as with rootless Podman.
//! netyard attaches them with `--pid`, which finds the user namespace and joins it before the
//! network namespace, and two such containers ping each other through it.
//!
//! The test itself runs as root to set the stage: it creates the user `nyrootless` if missing,
//! makes /dev/net/tun world-accessible (0666, its usual mode; some machines ship 0600) and
//! creates the host namespace the daemon starts in.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Accepts connections on the port in argv[1]; greets each and logs the peer's address.
const EGRESS_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    c, a = s.accept()
    print("peer %s" % a[0], flush=True)
    c.sendall(b"hello from outside")
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
print(data.decode())
"#;

#[test]
fn rootless_daemon_connects_two_user_namespace_containers() {
    require_root();
    let (mut lab, run_as) = Lab::rootless();
    let (uid, gid) = (run_as.uid, run_as.gid);
    // It really is unprivileged.
    let status = std::fs::read_to_string(format!("/proc/{}/status", lab.daemon_pid())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        field("Uid:").contains(&uid.to_string()),
        "daemon {}",
        field("Uid:")
    );
    assert!(
        field("CapEff:").ends_with("0000000000000000"),
        "the daemon has capabilities: {}",
        field("CapEff:")
    );

    let sn = Subnet::random();
    lab.network("rl", &sn, &[]);
    let out = lab.outside();
    let p1 = rootless_container(&lab, &run_as, "c1");
    let p2 = rootless_container(&lab, &run_as, "c2");
    let mut ips = Vec::new();
    for (name, pid, publish) in [("c1", p1, None), ("c2", p2, Some("18080:8080"))] {
        let pid_s = pid.to_string();
        let mut args = vec!["attach", "rl", "--pid", &pid_s, "--name", name];
        if let Some(p) = publish {
            args.extend_from_slice(&["-p", p]);
        }
        lab.ny_ok(&args);
        let ep = lab.endpoint("rl", name);
        ips.push(ep["ip"].as_str().unwrap().to_string());
    }
    // Runs argv as the user, inside a container's own user and network namespaces.
    let in_container = |pid: u32, argv: &[&str]| {
        let mut c = Command::new(&run_as.prefix()[0]);
        c.args(&run_as.prefix()[1..]).args([
            "nsenter",
            // The user namespace denies setgroups (--map-root-user): keep our credentials,
            // which map to root inside it.
            "--preserve-credentials",
            "--target",
            &pid.to_string(),
            "--user",
            "--net",
        ]);
        c.args(argv);
        c
    };
    // Ping as the user, from inside its own namespaces.
    for (pid, ip) in [(p1, &ips[1]), (p2, &ips[0])] {
        let mut c = in_container(pid, &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", ip]);
        let o = run_bounded(&mut c, Duration::from_secs(30));
        if !o.status.success() {
            lab.fail(&format!(
                "ping from container {pid} to {ip} failed:\n{}",
                show(&o)
            ));
        }
    }
    // TCP egress from a user-namespace container to a server in "outside", and a published
    // port into one: host sockets of an unprivileged daemon, no capability anywhere.
    lab.bg_in(
        &out.ns,
        &["python3", "-c", EGRESS_SERVER, "5050"],
        "egress_server.log",
    );
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let o = cmd(
            &["ip", "netns", "exec", &out.ns, "ss", "-Hltn"],
            CLI_TIMEOUT,
        );
        String::from_utf8_lossy(&o.stdout).contains(":5050 ")
    });
    assert!(up, "the server in {} did not start", out.ns);
    let o = run_bounded(
        &mut in_container(p1, &["python3", "-c", CLIENT, &out.ip, "5050"]),
        Duration::from_secs(30),
    );
    let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if got != "hello from outside" {
        lab.fail(&format!("rootless TCP egress:\n{}", show(&o)));
    }
    // ICMP echo to "outside": the host namespace's ping_group_range is its default ("1 0")
    // and the daemon has no CAP_NET_RAW for a raw socket, so the ping fails and is counted;
    // once the range covers the daemon's group, it goes through ICMP datagram sockets.
    let ping_out = |pid: u32| {
        let mut c = in_container(pid, &["ping", "-n", "-c", "1", "-W", "2", &out.ip]);
        run_bounded(&mut c, Duration::from_secs(15))
    };
    let o = ping_out(p1);
    if o.status.success() {
        lab.fail(&format!(
            "ping left an unprivileged daemon without ICMP sockets:\n{}",
            show(&o)
        ));
    }
    let row = flows_row(&lab, "rl");
    let denied = row["stats"]["drops"]["icmp_not_permitted"]
        .as_u64()
        .unwrap_or(0);
    assert!(denied >= 1, "icmp_not_permitted not counted: {row}");
    lab.set_ping_group_range(&format!("{gid} {gid}"));
    let o = ping_out(p1);
    if !o.status.success() {
        lab.fail(&format!(
            "rootless ping through ICMP datagram sockets:\n{}",
            show(&o)
        ));
    }
    let mut server = in_container(p2, &["python3", "-c", EGRESS_SERVER, "8080"]);
    lab.keep(Bg::spawn(
        &mut server,
        &lab.dir.join("published_server.log"),
    ));
    std::thread::sleep(Duration::from_millis(500));
    let reached = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let o = cmd(
            &[
                "ip",
                "netns",
                "exec",
                &out.ns,
                "python3",
                "-c",
                CLIENT,
                &out.host_ip,
                "18080",
            ],
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&o.stdout).trim() == "hello from outside"
    });
    if !reached {
        lab.fail("rootless published port 18080 -> c2:8080 not reachable from outside");
    }
    let log = std::fs::read_to_string(lab.dir.join("published_server.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("peer {}", out.ip)),
        "the container sees the client's real address: {log}"
    );

    lab.ny_ok(&["detach", "rl", "c1"]);
    let status = lab.stop_daemon();
    assert_eq!(
        status.code(),
        Some(0),
        "rootless daemon exit: {}",
        lab.daemon_log()
    );
}
