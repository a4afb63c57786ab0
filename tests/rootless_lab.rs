//! Issue 18, "no privilege needed": a rootless daemon (an unprivileged user, no capability)
//! brings up a lab file whose nodes it creates inside user namespaces of its own, puts a
//! router of its own between two networks, and impairs and cuts the links, measured with
//! ping from the nodes (`netyard exec`, as the same user):
//!
//! - `link set NET NODE --delay` raises the RTT, `link down` stops the pings and `up`
//!   restores them;
//! - `router create` gives the nodes their routes through it (set inside the nodes' user and
//!   network namespaces), and the router's interface takes a delay and a `link down` alike;
//! - `lab down` leaves nothing.

mod common;

use std::time::Duration;

use common::*;

/// `netyard exec NODE -- ping -n -c COUNT -i 0.2 -W 2 IP` as the lab's user: the RTTs of
/// the replies.
fn ping_from(lab: &Lab, node: &str, ip: &str, count: u32) -> Vec<f64> {
    let c = count.to_string();
    let o = lab.ny(&[
        "exec", node, "--", "ping", "-n", "-c", &c, "-i", "0.2", "-W", "2", ip,
    ]);
    ping_rtts(&String::from_utf8_lossy(&o.stdout))
}

/// Removes the lab (and first the router) when dropped, whatever the test did.
struct Cleanup<'a>(&'a Lab);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.ny(&["router", "rm", "r"]);
        let _ = self.0.ny(&["lab", "down", "rl"]);
    }
}

#[test]
fn a_rootless_daemon_runs_a_lab_routes_impairs_and_cuts_its_links() {
    require_root();
    let (lab, _run_as) = Lab::rootless();
    let front = Subnet::random();
    let back = front.other();
    let file = lab.write_file(
        "rootless.toml",
        &format!(
            r#"name = "rl"
[networks.front]
subnet = "{front}"
[networks.back]
subnet = "{back}"

[nodes.n1]
networks = [{{ network = "front", ip = "{n1}" }}]
[nodes.n2]
networks = [{{ network = "front", ip = "{n2}" }}]
[nodes.n3]
networks = [{{ network = "back", ip = "{n3}" }}]
"#,
            front = front.cidr(),
            back = back.cidr(),
            n1 = front.ip(10),
            n2 = front.ip(20),
            n3 = back.ip(10),
        ),
    );
    lab.ny_ok(&["lab", "up", &file]);
    let _cleanup = Cleanup(&lab);
    let (n2, n3) = (front.ip(20), back.ip(10));
    // The nodes live in user namespaces the unprivileged daemon made.
    let ls = lab.ny_json(&["lab", "ls", "--json"]);
    println!("lab ls: {ls}");
    let base = ping_from(&lab, "n1", &n2, 5);
    assert!(
        base.len() >= 4,
        "rootless lab: n1 cannot ping n2: {base:?}\n{}",
        lab.diagnostics()
    );
    let m0 = median(&base);

    // A node's link: both ways, so each round trip crosses it twice.
    lab.ny_ok(&[
        "link",
        "set",
        "front",
        "n2",
        "--direction",
        "both",
        "--delay",
        "40ms",
    ]);
    let d = ping_from(&lab, "n1", &n2, 6);
    let m1 = median(&d);
    println!("rootless lab, delay 40ms both ways on n2: median RTT {m1:.2} ms against {m0:.2} ms");
    assert!(d.len() >= 5, "delayed pings lost: {d:?}");
    // The fastest replies: load only adds to a round trip (once each way is 80 ms more,
    // twice would be 160).
    let added = fastest(&d) - fastest(&base);
    assert!(
        (75.0..155.0).contains(&added),
        "added {added:.2} ms, expected about 80: {d:?} against {base:?}"
    );
    lab.ny_ok(&["link", "down", "front", "n2"]);
    let cut = ping_from(&lab, "n1", &n2, 3);
    assert!(cut.is_empty(), "pings crossed a link that is down: {cut:?}");
    let row = lab.ny_json(&["link", "show", "front", "n2", "--json"]);
    println!("link down on n2: {}", row[0]["counters"]);
    assert_eq!(row[0]["down"], true, "{row}");
    assert!(
        num(&row[0]["counters"]["in"], "down") >= 3,
        "link down counted nothing: {row}"
    );
    lab.ny_ok(&["link", "up", "front", "n2"]);
    let back_up = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        !ping_from(&lab, "n1", &n2, 1).is_empty()
    });
    assert!(back_up, "no pings after link up");
    lab.ny_ok(&["link", "reset", "front", "n2"]);

    // A router of the rootless daemon: the nodes get their routes through it (inside their
    // user namespaces), and its interface is a link like the others.
    lab.ny_ok(&[
        "router",
        "create",
        "r",
        "--network",
        &format!("front={}", front.ip(254)),
        "--network",
        &format!("back={}", back.ip(254)),
    ]);
    let routes = lab.ny_ok(&["exec", "n1", "--", "ip", "-4", "route", "show"]);
    assert!(
        routes.contains(&format!("{} via {}", back.cidr(), front.ip(254))),
        "n1 got no route to back through r:\n{routes}\n{}",
        lab.diagnostics()
    );
    let through = ping_from(&lab, "n1", &n3, 5);
    assert!(
        through.len() >= 4,
        "n1 cannot reach n3 through r: {through:?}"
    );
    let r0 = median(&through);
    lab.ny_ok(&["link", "set", "back", "r", "--delay", "30ms"]);
    let d = ping_from(&lab, "n1", &n3, 6);
    let r1 = median(&d);
    println!("rootless router, delay 30ms on r's back interface: median RTT {r1:.2} ms against {r0:.2} ms");
    let added = fastest(&d) - fastest(&through);
    assert!(
        (25.0..58.0).contains(&added),
        "added {added:.2} ms through r, expected about 30: {d:?} against {through:?}"
    );
    lab.ny_ok(&["link", "down", "back", "r"]);
    assert!(
        ping_from(&lab, "n1", &n3, 3).is_empty(),
        "pings crossed r while its link on back was down"
    );
    lab.ny_ok(&["link", "up", "back", "r"]);
    let back_up = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        !ping_from(&lab, "n1", &n3, 1).is_empty()
    });
    assert!(back_up, "no pings through r after link up");

    lab.ny_ok(&["router", "rm", "r"]);
    lab.ny_ok(&["lab", "down", "rl"]);
    let ls = lab.ny_json(&["lab", "ls", "--json"]);
    assert_eq!(ls, serde_json::json!([]), "lab down left: {ls}");
    let nets = lab.ny_json(&["network", "ls", "--json"]);
    assert_eq!(
        nets,
        serde_json::json!([]),
        "lab down left networks: {nets}"
    );
}
