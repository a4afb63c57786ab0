//! Issue 14: Docker's network modes for `netyard run` (`none`, `host`, `container:NAME`,
//! several `--network`s) and inter-container isolation (`network create --icc=false`), in real
//! namespaces against a real daemon.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// `dig +short NAME @SERVER` inside `ns`: the answer's addresses.
fn dig(ns: &str, server: &str, name: &str) -> String {
    let at = format!("@{server}");
    let o = ns_cmd(
        ns,
        &["dig", "+short", "+time=2", "+tries=2", &at, name],
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn icc_false_keeps_endpoints_apart_but_not_from_the_gateway() {
    require_program("dig", "dnsutils");
    require_program("socat", "socat");
    let lab = Lab::new();
    let out = lab.outside();
    let sub = Subnet::random();
    let net = lab.network("iso", &sub, &["--icc=false"]);
    let info = lab.ny_json(&["network", "inspect", &net]);
    assert_eq!(info["icc"], false, "network inspect: {info}");
    let gw = s(&info, "gateway");

    let na = lab.ns("a");
    let nb = lab.ns("b");
    let a = lab.attach(&net, &na, "alpha", &[]);
    let b = lab.attach(&net, &nb, "beta", &["--kind", "veth", "-p", "8080"]);
    let (ip_a, ip_b) = (s(&a, "ip"), s(&b, "ip"));

    // The gateway answers both; egress leaves through it.
    lab.assert_ping(&na, &gw);
    lab.assert_ping(&nb, &gw);
    lab.assert_ping(&na, &out.ip);

    // An ARP request for the other endpoint reaches the gateway only: nobody answers it.
    if lab.ping(&na, &ip_b) || lab.ping(&nb, &ip_a) {
        lab.fail("endpoints of an icc=false network pinged each other");
    }
    // With the neighbour entry forced, the frames themselves are dropped and counted.
    let before = drops(&lab.counters(&net, "alpha"), "icc_blocked");
    cmd_ok(&[
        "ip",
        "-n",
        &na,
        "neigh",
        "replace",
        &ip_b,
        "lladdr",
        &s(&b, "mac"),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    if lab.ping(&na, &ip_b) {
        lab.fail("a ping to a forced neighbour crossed an icc=false network");
    }
    let after = drops(&lab.counters(&net, "alpha"), "icc_blocked");
    if after < before + 3 {
        lab.fail(&format!(
            "icc_blocked went {before} -> {after} for 3 echo requests"
        ));
    }
    let metrics = lab.api_get("/metrics");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("netyard_port_drops_total")
                && l.contains("endpoint=\"alpha\"")
                && l.contains("reason=\"icc_blocked\"")
        })
        .unwrap_or_else(|| lab.fail("no icc_blocked line for alpha in /metrics"));
    let n: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(n >= after, "/metrics says {n}, stats {after}: {line}");

    // DNS still answers, in the namespace and at the gateway.
    assert_eq!(dig(&na, "127.0.0.11", "beta"), ip_b);
    assert_eq!(dig(&na, &gw, "beta"), ip_b);

    // A published port of beta is reached from the host through the gateway.
    lab.bg_in(
        &nb,
        &[
            "socat",
            "TCP-LISTEN:8080,reuseaddr,fork",
            "SYSTEM:echo isolated-hello",
        ],
        "socat-b.log",
    );
    if !wait_listening(&nb, 8080, Proto::Tcp) {
        lab.fail("socat never listened in beta");
    }
    let host_port = lab.endpoint(&net, "beta")["ports"][0]["host_port"]
        .as_u64()
        .unwrap_or_else(|| lab.fail("beta has no published port"));
    let target = format!("TCP:127.0.0.1:{host_port}");
    let o = ns_cmd(
        &lab.host.name,
        &["socat", "-T", "5", "-", &target],
        Duration::from_secs(20),
    );
    if !String::from_utf8_lossy(&o.stdout).contains("isolated-hello") {
        lab.fail(&format!(
            "the published port of beta did not answer:\n{}",
            show(&o)
        ));
    }

    // A network without the flag is not isolated.
    let open = lab.network("open", &sub.other(), &[]);
    assert_eq!(lab.ny_json(&["network", "inspect", &open])["icc"], true);

    // Bad input names the flag and creates nothing.
    // (clap's own message: the flag, the value and the values it takes.)
    let o = lab.ny(&["network", "create", "bad", "--icc=maybe"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--icc") && err.contains("maybe"),
        "--icc=maybe: {}",
        show(&o)
    );
    let o = lab.ny(&["network", "inspect", "bad"]);
    assert!(!o.status.success(), "network bad was created: {}", show(&o));
}

/// `netyard run ARGS` must succeed; its stdout.
fn run_ok(lab: &Lab, args: &[&str]) -> String {
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    lab.ny_ok(&a)
}

/// Is a `ps --json` row named `name` there?
fn listed(lab: &Lab, name: &str) -> Vec<Value> {
    lab.ny_json(&["ps", "--json"])
        .as_array()
        .map(|a| a.iter().filter(|e| e["name"] == name).cloned().collect())
        .unwrap_or_default()
}

#[test]
fn none_host_and_two_networks_show_what_docker_shows() {
    let lab = Lab::new();
    let (s1, s2) = (Subnet::random(), Subnet::random());
    let s2 = if s2.cidr() == s1.cidr() {
        s1.other()
    } else {
        s2
    };
    let n1 = lab.network("one", &s1, &[]);
    let n2 = lab.network("two", &s2, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let ip_a = s(&lab.attach(&n1, &na, "alpha", &[]), "ip");
    let ip_b = s(&lab.attach(&n2, &nb, "beta", &[]), "ip");
    let api = lab.api.display().to_string();
    let ps_inside = format!("{NETYARD} --api {api} ps --json");

    // none: only lo, up; not an endpoint.
    let out = run_ok(
        &lab,
        &[
            "--network",
            "none",
            "--name",
            "zero",
            "--",
            "sh",
            "-c",
            &format!("ip -o link; ip -o -4 addr; echo ==; {ps_inside}"),
        ],
    );
    let (ip_out, ps_out) = out.split_once("==").unwrap_or((&out, ""));
    let links: Vec<&str> = ip_out.lines().filter(|l| l.contains("mtu")).collect();
    assert!(
        links.len() == 1 && links[0].contains(": lo:") && links[0].contains(",UP"),
        "--network none links:\n{out}"
    );
    assert!(
        ip_out.contains("127.0.0.1/8"),
        "--network none addresses:\n{out}"
    );
    assert!(!ps_out.contains("\"zero\""), "a none run is listed:\n{out}");

    // host: the daemon's namespace, though this CLI runs in another one.
    let dummy = format!("nyhd{}", &lab.id[..6.min(lab.id.len())]);
    // (A veth pair with both ends there: the dummy module may be missing.)
    let peer = format!("{dummy}p");
    cmd_ok(&[
        "ip",
        "-n",
        &lab.host.name,
        "link",
        "add",
        &dummy,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
    ]);
    let out = run_ok(
        &lab,
        &[
            "--network",
            "host",
            "--name",
            "h",
            "--",
            "sh",
            "-c",
            &format!("ip -o link; echo ==; {ps_inside}"),
        ],
    );
    let (ip_out, ps_out) = out.split_once("==").unwrap_or((&out, ""));
    assert!(
        ip_out.contains(&format!(": {dummy}@")),
        "--network host does not show the daemon namespace's {dummy}:\n{out}"
    );
    let here =
        String::from_utf8_lossy(&cmd(&["ip", "-o", "link"], CLI_TIMEOUT).stdout).into_owned();
    assert!(
        !here.contains(&format!(": {dummy}@")),
        "{dummy} leaked into the test's namespace"
    );
    assert!(!ps_out.contains("\"h\""), "a host run is listed:\n{out}");

    // Two networks: eth0 on the first, eth1 on the second, a peer reached on each, the
    // first's resolver, listed on both while it runs and on neither after.
    let script = format!(
        "ip -o -4 addr; ping -n -c1 -W5 {ip_a} >/dev/null && echo reach-a; \
         ping -n -c1 -W5 {ip_b} >/dev/null && echo reach-b; cat /etc/resolv.conf; \
         getent hosts alpha; echo ==; {ps_inside}"
    );
    let out = run_ok(
        &lab,
        &[
            "--network",
            &n1,
            "--network",
            &n2,
            "--name",
            "both",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let (inside, ps_out) = out.split_once("==").unwrap_or((&out, ""));
    let addr_of = |ifname: &str| {
        inside
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(ifname))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_default()
            .to_string()
    };
    let prefix = |sn: &Subnet| {
        sn.ip(0)
            .rsplit_once('.')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default()
    };
    assert!(
        addr_of("eth0").starts_with(&prefix(&s1)),
        "eth0 is not on {n1}:\n{out}"
    );
    assert!(
        addr_of("eth1").starts_with(&prefix(&s2)),
        "eth1 is not on {n2}:\n{out}"
    );
    assert!(
        inside.contains("reach-a") && inside.contains("reach-b"),
        "peers not reached:\n{out}"
    );
    assert!(
        inside.contains("nameserver 127.0.0.11"),
        "resolv.conf:\n{out}"
    );
    assert!(inside.contains(&ip_a), "alpha not resolved:\n{out}");
    let rows: Value = serde_json::from_str(ps_out.trim()).unwrap_or_default();
    let nets: Vec<&str> = rows
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["name"] == "both")
                .filter_map(|e| e["network"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        nets.len(),
        2,
        "the run is not listed on both networks: {ps_out}"
    );
    assert!(
        listed(&lab, "both").is_empty(),
        "the run is still listed after it ended"
    );

    // All or nothing: a failure on the second network detaches the first.
    let o = lab.ny(&[
        "run",
        "--network",
        &n1,
        "--network",
        "nonet",
        "--name",
        "half",
        "--",
        "true",
    ]);
    assert_one_line_error("a missing second network", &o, &["--network nonet"]);
    assert!(
        listed(&lab, "half").is_empty(),
        "the first attach of a failed run stayed"
    );

    // Bad input names the flag.
    let o = lab.ny(&[
        "run",
        "--network",
        "none",
        "-p",
        "80",
        "--name",
        "x",
        "--",
        "true",
    ]);
    assert_one_line_error("none with -p", &o, &["--publish", "none"]);
    let o = lab.ny(&[
        "run",
        "--network",
        "host",
        "--network",
        &n1,
        "--name",
        "x",
        "--",
        "true",
    ]);
    assert_one_line_error("host with a network", &o, &["--network", "host"]);
}

#[test]
fn container_mode_shares_the_targets_namespace_and_is_listed_while_it_runs() {
    require_program("socat", "socat");
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = lab.network("pod", &sub, &[]);
    let (nt, nc) = (lab.ns("t"), lab.ns("c"));
    let web = lab.attach(&net, &nt, "web", &[]);
    lab.attach(&net, &nc, "client", &[]);
    let ip_web = s(&web, "ip");

    // What the joined run sees: web's interface and address.
    let out = run_ok(
        &lab,
        &[
            "--network",
            "container:web",
            "--name",
            "peek",
            "--",
            "ip",
            "-o",
            "-4",
            "addr",
        ],
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" eth0 ") && l.contains(&format!("{ip_web}/"))),
        "the joined run does not see web's eth0:\n{out}"
    );

    // A server of the joined run answers at web's address.
    let mut server = Bg::spawn(
        &mut lab.ny_command(&[
            "run",
            "--network",
            "container:web",
            "--name",
            "side",
            "--",
            "socat",
            "TCP-LISTEN:7777,reuseaddr",
            "SYSTEM:echo joined-hello",
        ]),
        &lab.dir.join("side.log"),
    );
    if !wait_listening(&nt, 7777, Proto::Tcp) {
        lab.fail(&format!(
            "the joined run never listened in web's namespace: {}",
            server.log_text()
        ));
    }
    let rows = listed(&lab, "side");
    assert_eq!(rows.len(), 1, "ps: {rows:?}");
    assert_eq!(rows[0]["kind"], "container");
    assert_eq!(rows[0]["ip"], ip_web.as_str());
    assert_eq!(rows[0]["target"], "web");
    let target = format!("TCP:{ip_web}:7777");
    let o = ns_cmd(
        &nc,
        &["socat", "-T", "5", "-", &target],
        Duration::from_secs(20),
    );
    if !String::from_utf8_lossy(&o.stdout).contains("joined-hello") {
        lab.fail(&format!(
            "web's address did not answer for the joined run:\n{}\n{}",
            show(&o),
            server.log_text()
        ));
    }
    match server.wait(Duration::from_secs(20)) {
        Some(st) if st.success() => {}
        st => lab.fail(&format!(
            "the joined run did not end cleanly ({st:?}): {}",
            server.log_text()
        )),
    }
    assert!(
        listed(&lab, "side").is_empty(),
        "the ended run is still listed"
    );
    // web is untouched.
    lab.check_interface(&nt, "eth0", &lab.endpoint(&net, "web"));
    lab.assert_ping(&nc, &ip_web);

    // A run killed with SIGKILL cannot say goodbye: the daemon notices its exit.
    let doomed = Bg::spawn(
        &mut lab.ny_command(&[
            "run",
            "--network",
            "container:web",
            "--name",
            "doomed",
            "--",
            "sleep",
            "600",
        ]),
        &lab.dir.join("doomed.log"),
    );
    if !wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        !listed(&lab, "doomed").is_empty()
    }) {
        lab.fail(&format!(
            "the run never showed in ps: {}",
            doomed.log_text()
        ));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(doomed.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    if !gone_soon(|| listed(&lab, "doomed").is_empty()) {
        lab.fail("a SIGKILLed container: run is still listed");
    }
    drop(doomed);

    // Bad input names the flag and registers nothing.
    let o = lab.ny(&[
        "run",
        "--network",
        "container:missing",
        "--name",
        "x",
        "--",
        "true",
    ]);
    assert_one_line_error(
        "container:missing",
        &o,
        &["container:missing", "no endpoint"],
    );
    let o = lab.ny(&[
        "run",
        "--network",
        "container:web",
        "--ip",
        "10.9.9.9",
        "--name",
        "x",
        "--",
        "true",
    ]);
    assert_one_line_error("container with --ip", &o, &["--ip"]);
    assert!(listed(&lab, "x").is_empty());
}
