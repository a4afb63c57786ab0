//! MLD snooping across a daemon restart: the restarted daemon's gateway sends an MLD general
//! query, the re-adopted endpoints report their groups again, and multicast to a group then
//! reaches its listener and not every endpoint (before, a re-adopted endpoint got all IPv6
//! multicast for as long as it lived).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn after_a_restart_multicast_to_a_group_reaches_its_listener_not_every_endpoint() {
    require_program("tcpdump", "tcpdump");
    require_program("ping", "iputils-ping");
    let mut lab = Lab::new();
    let sn = Subnet::random();
    let prefix = format!("fd00:{:x}:{:x}::", sn.a, sn.b);
    let net = lab.network(
        &format!("m{}", lab.id),
        &sn,
        &["--ipv6", "--subnet6", &format!("{prefix}/64")],
    );
    let [na, nb, nc] = ["a", "b", "c"].map(|t| {
        let ns = lab.ns(t);
        enable_ipv6(&ns);
        ns
    });
    let a6 = format!("{prefix}a");
    lab.attach(&net, &na, "alpha", &["--ip6", &a6]);
    lab.attach(&net, &nb, "bravo", &["--ip6", &format!("{prefix}b")]);
    lab.attach(&net, &nc, "charlie", &["--ip6", &format!("{prefix}c")]);

    lab.stop_daemon();
    lab.start_daemon(&[]);
    if !wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        lab.daemon_log().contains("netyard daemon ready")
    }) {
        lab.fail("the restarted daemon did not log \"netyard daemon ready\" within 15 s");
    }
    // The query's response window (2 s) and the switch-over after it (3 s more).
    std::thread::sleep(Duration::from_secs(6));

    // alpha's solicited-node group (ff02::1:ff00:a): alpha listens, charlie does not.
    let group = "ff02::1:ff00:a";
    let dump = tcpdump_bg(
        &nc,
        "eth0",
        &["-p", "ip6", "and", "dst", group],
        &lab.dir.join("tcpdump-c.out"),
    );
    let o = cmd(
        &[
            "ip", "netns", "exec", &nb, "ping", "-6", "-n", "-c", "5", "-i", "0.2", "-W", "2",
            "-I", "eth0", group,
        ],
        Duration::from_secs(30),
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    println!("{out}");
    if !o.status.success() || !out.contains("bytes from fe80::") {
        lab.fail(&format!(
            "alpha did not answer pings to its solicited-node group after the restart:\n{}",
            show(&o)
        ));
    }
    // Frames still in flight to charlie's TAP would be there by now.
    std::thread::sleep(Duration::from_millis(500));
    let seen = dump.log_text();
    let frames = seen.lines().filter(|l| l.contains(group)).count();
    lab.keep(dump);
    assert_eq!(
        frames, 0,
        "charlie (no listener of {group}) got the group's traffic after the restart:\n{seen}"
    );
}
