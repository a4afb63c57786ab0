//! The CNI plugin's protocol against a real daemon: `netyard` run with the `CNI_*`
//! environment and a configuration on stdin, as a runtime runs it (issue 13). ADD attaches a
//! test-made namespace (the network created on first use), CHECK compares ADD's result with
//! the namespace, DEL detaches (twice, and without a namespace, is success), VERSION, STATUS
//! and GC; bad configurations and environments fail with the spec's error JSON naming the
//! field, leaving nothing behind.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// One plugin call: `CNI_COMMAND=cmd` plus `env`, `conf` on stdin. Returns the exit status
/// and stdout as JSON (Null when empty).
fn cni(lab: &Lab, cmd: &str, env: &[(&str, &str)], conf: &Value) -> (bool, Value, Output) {
    let file = lab.write_file(&format!("conf-{}.json", suffix()), &conf.to_string());
    let mut c = Command::new("sh");
    c.args(["-c", "exec \"$0\" < \"$1\"", NETYARD, &file])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", cmd)
        .env("CNI_PATH", "/nonexistent");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = run_bounded(&mut c, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("CNI {cmd}: stdout is not JSON ({e}):\n{}", show(&o)))
    };
    (o.status.success(), v, o)
}

fn cni_ok(lab: &Lab, cmd: &str, env: &[(&str, &str)], conf: &Value) -> Value {
    let (ok, v, o) = cni(lab, cmd, env, conf);
    if !ok {
        lab.fail(&format!("CNI {cmd} failed:\n{}", show(&o)));
    }
    v
}

/// A failing call: checks the error JSON's code and that its text names `needle`.
fn cni_err(lab: &Lab, cmd: &str, env: &[(&str, &str)], conf: &Value, code: u64, needle: &str) {
    let (ok, v, o) = cni(lab, cmd, env, conf);
    let text = format!(
        "{} {}",
        v["msg"].as_str().unwrap_or(""),
        v["details"].as_str().unwrap_or("")
    );
    if ok
        || v["code"].as_u64() != Some(code)
        || !text.contains(needle)
        || v["cniVersion"].as_str().is_none()
    {
        lab.fail(&format!(
            "CNI {cmd} with {conf}: expected error code {code} naming {needle:?}, got:\n{}",
            show(&o)
        ));
    }
    println!("CNI {cmd}: code {code}: {text}");
}

fn base_conf(lab: &Lab, version: &str, net: &str, sub: &Subnet) -> Value {
    json!({
        "cniVersion": version,
        "name": "cnitest",
        "type": "netyard",
        "network": net,
        "subnet": sub.cidr(),
        "api": lab.api.to_string_lossy(),
        "capabilities": {"portMappings": true, "aliases": true, "ips": true, "mac": true}
    })
}

fn names_in_ps(lab: &Lab) -> Vec<String> {
    lab.ny_json(&["ps", "--json"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn add_check_del_and_version_drive_a_real_daemon() {
    require_root();
    require_program("dig", "dnsutils");
    let lab = Lab::new();
    let sub = Subnet::random();
    let net = "cn";
    let ns1 = lab.ns("c1");
    let ns2 = lab.ns("c2");
    let p1 = format!("/run/netns/{ns1}");
    let p2 = format!("/run/netns/{ns2}");

    let v = cni_ok(&lab, "VERSION", &[], &json!({"cniVersion": "1.0.0"}));
    assert_eq!(v["cniVersion"], "1.0.0");
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            v["supportedVersions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == want)),
            "VERSION lacks {want}: {v}"
        );
    }

    // ADD with every capability, spec 1.0.0, named by K8S_POD_NAME; the network is created.
    let ip = sub.ip(50);
    let host_port = 20000 + rand::random::<u16>() % 20000;
    let mut conf1 = base_conf(&lab, "1.0.0", net, &sub);
    conf1["runtimeConfig"] = json!({
        "ips": [format!("{ip}/24")],
        "mac": "02:00:00:aa:bb:01",
        "aliases": {"cnitest": ["www"]},
        "portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
    });
    let env1 = [
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", p1.as_str()),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=default",
        ),
    ];
    let t = std::time::Instant::now();
    let r1 = cni_ok(&lab, "ADD", &env1, &conf1);
    println!(
        "ADD (network created, TAP, published port) took {:?}: {r1}",
        t.elapsed()
    );
    assert_eq!(
        r1,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "02:00:00:aa:bb:01", "sandbox": p1}],
            "ips": [{"address": format!("{ip}/24"), "gateway": sub.ip(1), "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": sub.ip(1)}],
            "dns": {"nameservers": ["127.0.0.11"], "options": ["ndots:0"]}
        })
    );
    let info = lab.ny_json(&["network", "inspect", net]);
    assert_eq!(
        info["subnet"],
        sub.cidr(),
        "the network was created from the config: {info}"
    );
    let ep = lab.endpoint(net, "web");
    lab.check_interface(&ns1, "eth0", &ep);
    assert_eq!(ep["owner"], "cni:ctr1:eth0", "{ep}");
    assert_eq!(ep["aliases"], json!(["www"]), "{ep}");
    assert_eq!(ep["ports"][0]["host_port"], host_port, "{ep}");
    assert_eq!(ep["ports"][0]["container_port"], 80, "{ep}");
    lab.assert_ping(&ns1, &sub.ip(1));

    // A second container, spec 0.4.0, no pod name: named by its id; ips carry "version".
    let conf2 = base_conf(&lab, "0.4.0", net, &sub);
    let env2 = [
        ("CNI_CONTAINERID", "ctr2"),
        ("CNI_NETNS", p2.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let t = std::time::Instant::now();
    let r2 = cni_ok(&lab, "ADD", &env2, &conf2);
    println!("ADD (existing network) took {:?}", t.elapsed());
    assert_eq!(r2["cniVersion"], "0.4.0");
    assert_eq!(r2["ips"][0]["version"], "4", "{r2}");
    assert_eq!(r2["ips"][0]["interface"], 0, "{r2}");
    assert!(
        r2["interfaces"][0]["mac"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{r2}"
    );
    let ip2 = r2["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    lab.endpoint(net, "ctr2");
    lab.assert_ping(&ns2, &ip);
    // Names resolve through the embedded resolver the result points at.
    let d = ns_cmd(
        &ns2,
        &["dig", "+short", "+time=3", "@127.0.0.11", "www"],
        Duration::from_secs(15),
    );
    assert_eq!(
        String::from_utf8_lossy(&d.stdout).trim(),
        ip,
        "the alias www from {ns2}: {}",
        show(&d)
    );

    // CHECK: fine right after ADD; an address removed behind the plugin's back is named.
    let mut check2 = conf2.clone();
    check2["prevResult"] = r2.clone();
    let t = std::time::Instant::now();
    let v = cni_ok(&lab, "CHECK", &env2, &check2);
    println!("CHECK took {:?}", t.elapsed());
    assert_eq!(v, Value::Null, "CHECK prints nothing on success");
    let mut check1 = conf1.clone();
    check1["prevResult"] = r1.clone();
    cni_ok(&lab, "CHECK", &env1, &check1);
    cmd_ok(&["ip", "-n", &ns2, "addr", "flush", "dev", "eth0"]);
    cni_err(
        &lab,
        "CHECK",
        &env2,
        &check2,
        101,
        &format!("lacks {ip2}/24"),
    );
    cni_err(&lab, "CHECK", &env2, &conf2, 7, "prevResult");
    let mut old = check2.clone();
    old["cniVersion"] = json!("0.3.1");
    old["prevResult"]["cniVersion"] = json!("0.3.1");
    cni_err(&lab, "CHECK", &env2, &old, 1, "0.4.0");

    // The same pod name from another container: its id's name instead.
    let ns3 = lab.ns("c3");
    let p3 = format!("/run/netns/{ns3}");
    let env3 = [
        ("CNI_CONTAINERID", "ctr3"),
        ("CNI_NETNS", p3.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAME=web"),
    ];
    cni_ok(&lab, "ADD", &env3, &base_conf(&lab, "1.0.0", net, &sub));
    lab.endpoint(net, "cni-ctr3");

    // DEL: with prevResult, again, without the namespace: all success, endpoints gone.
    let mut del1 = conf1.clone();
    del1["prevResult"] = r1.clone();
    let t = std::time::Instant::now();
    cni_ok(&lab, "DEL", &env1, &del1);
    println!("DEL took {:?}", t.elapsed());
    assert!(!names_in_ps(&lab).contains(&"web".to_string()));
    cni_ok(&lab, "DEL", &env1, &del1);
    cni_ok(
        &lab,
        "DEL",
        &[("CNI_CONTAINERID", "ctr3"), ("CNI_IFNAME", "eth0")],
        &base_conf(&lab, "1.0.0", net, &sub),
    );
    cni_ok(&lab, "DEL", &env2, &conf2);
    cni_ok(&lab, "DEL", &env2, &conf2);
    // A network that does not exist: nothing to do.
    cni_ok(
        &lab,
        "DEL",
        &env2,
        &base_conf(&lab, "1.0.0", "nosuch", &sub),
    );
    let left = names_in_ps(&lab);
    assert!(left.is_empty(), "ps after DEL: {left:?}");
    // The host port is free again.
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &lab.host.name,
            "ss",
            "-Hltn",
            &format!("sport = :{host_port}"),
        ],
        CLI_TIMEOUT,
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "port {host_port} still bound: {}",
        show(&o)
    );
}

#[test]
fn bad_configurations_and_environments_are_refused_naming_the_field() {
    require_root();
    let lab = Lab::new();
    let sub = Subnet::random();
    let ns = lab.ns("c");
    let path = format!("/run/netns/{ns}");
    let env = [
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let good = base_conf(&lab, "1.0.0", "bad", &sub);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let mut no_net = good.clone();
    no_net.as_object_mut().map(|o| o.remove("network"));
    cni_err(&lab, "ADD", &env, &no_net, 7, "network");
    cni_err(
        &lab,
        "ADD",
        &env,
        &with("subnet", json!("10.0.0.0/33")),
        7,
        "subnet",
    );
    cni_err(&lab, "ADD", &env, &with("mtu", json!("big")), 7, "mtu");
    cni_err(
        &lab,
        "ADD",
        &env,
        &with("ipam", json!({"type": "host-local"})),
        2,
        "ipam",
    );
    cni_err(
        &lab,
        "ADD",
        &env,
        &with("cniVersion", json!("0.2.0")),
        1,
        "0.2.0",
    );
    // Refused by the daemon: its field is named.
    cni_err(&lab, "ADD", &env, &with("mtu", json!(10)), 7, "mtu");
    cni_err(
        &lab,
        "ADD",
        &env,
        &with(
            "runtimeConfig",
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 0}]}),
        ),
        7,
        "runtimeConfig.portMappings[0].containerPort",
    );
    // The environment.
    cni_err(
        &lab,
        "ADD",
        &[("CNI_CONTAINERID", "ctr1"), ("CNI_IFNAME", "eth0")],
        &good,
        4,
        "CNI_NETNS",
    );
    cni_err(
        &lab,
        "ADD",
        &[("CNI_CONTAINERID", "ctr1"), ("CNI_NETNS", &path)],
        &good,
        4,
        "CNI_IFNAME",
    );
    // stdin that is not JSON.
    let file = lab.write_file("garbage.json", "{not json");
    let o = run_bounded(
        Command::new("sh")
            .args(["-c", "exec \"$0\" < \"$1\"", NETYARD, &file])
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "x")
            .env("CNI_NETNS", &path)
            .env("CNI_IFNAME", "eth0"),
        Duration::from_secs(30),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        !o.status.success() && v["code"] == 6,
        "garbage on stdin: {}",
        show(&o)
    );
    // No daemon at `api`: try again later (ADD), not available (STATUS).
    let gone = with(
        "api",
        json!(lab.dir.join("nodaemon.sock").to_string_lossy()),
    );
    cni_err(&lab, "ADD", &env, &gone, 11, "not reachable");
    let mut gone11 = gone.clone();
    gone11["cniVersion"] = json!("1.1.0");
    cni_err(&lab, "STATUS", &[], &gone11, 50, "not available");
    let mut up11 = good.clone();
    up11["cniVersion"] = json!("1.1.0");
    assert_eq!(cni_ok(&lab, "STATUS", &[], &up11), Value::Null);
    cni_err(&lab, "STATUS", &[], &good, 1, "1.1.0");

    // A dead namespace: unknown container, nothing attached.
    let dead = Netns::new(&lab.id, "d");
    let dead_path = dead.path();
    drop(dead);
    cni_err(
        &lab,
        "ADD",
        &[
            ("CNI_CONTAINERID", "ctr9"),
            ("CNI_NETNS", &dead_path),
            ("CNI_IFNAME", "eth0"),
        ],
        &good,
        3,
        "CNI_NETNS",
    );
    // And DEL of it is success.
    cni_ok(
        &lab,
        "DEL",
        &[
            ("CNI_CONTAINERID", "ctr9"),
            ("CNI_NETNS", &dead_path),
            ("CNI_IFNAME", "eth0"),
        ],
        &good,
    );
    let left = names_in_ps(&lab);
    assert!(left.is_empty(), "ps after refused ADDs: {left:?}");

    // GC (1.1.0): the attachments not listed as valid are detached.
    let ns2 = lab.ns("g");
    let p2 = format!("/run/netns/{ns2}");
    cni_ok(&lab, "ADD", &env, &up11);
    cni_ok(
        &lab,
        "ADD",
        &[
            ("CNI_CONTAINERID", "ctr2"),
            ("CNI_NETNS", &p2),
            ("CNI_IFNAME", "eth0"),
        ],
        &up11,
    );
    let mut gc = up11.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr1", "ifname": "eth0"}]);
    cni_ok(&lab, "GC", &[], &gc);
    assert_eq!(names_in_ps(&lab), vec!["ctr1".to_string()]);
    cni_ok(&lab, "DEL", &env, &up11);
}

#[test]
fn an_attachment_survives_a_daemon_restart_and_del_still_finds_it() {
    require_root();
    let mut lab = Lab::new();
    let sub = Subnet::random();
    let ns = lab.ns("r");
    let path = format!("/run/netns/{ns}");
    let mut conf = base_conf(&lab, "1.0.0", "rs", &sub);
    conf["kind"] = json!("veth");
    let env = [
        ("CNI_CONTAINERID", "ctr-restart"),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "net1"),
        ("CNI_ARGS", "K8S_POD_NAME=db"),
    ];
    let r = cni_ok(&lab, "ADD", &env, &conf);
    assert_eq!(r["interfaces"][0]["name"], "net1", "{r}");
    lab.stop_daemon();
    // The daemon is down: DEL cannot detach and says so (the runtime retries).
    cni_err(&lab, "DEL", &env, &conf, 11, "not reachable");
    lab.start_daemon(&[]);
    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    cni_ok(&lab, "CHECK", &env, &check);
    assert_eq!(lab.endpoint("rs", "db")["owner"], "cni:ctr-restart:net1");
    cni_ok(&lab, "DEL", &env, &check);
    let left = names_in_ps(&lab);
    assert!(
        left.is_empty(),
        "ps after DEL following a restart: {left:?}"
    );
    // DEL answers once the endpoint is forgotten and on disk; the device goes right after
    // (runtime/teardown.rs), so the links are awaited, not read at once.
    let host_ends = || netyard_host_ends(&lab.host.name);
    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        !links(&ns).contains(&"net1".to_string()) && host_ends().is_empty()
    });
    assert!(
        gone,
        "5 s after DEL: links in {ns}: {:?}, veth host ends left: {:?}",
        links(&ns),
        host_ends()
    );
}

/// The environment of container `id`'s `eth0` in the namespace at `path`.
fn eth0_of<'a>(id: &'a str, path: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", path),
        ("CNI_IFNAME", "eth0"),
    ]
}

#[test]
fn a_dual_stack_network_gives_both_addresses_and_check_and_del_handle_them() {
    require_root();
    let lab = Lab::new();
    let sub = Subnet::random();
    let p6 = format!("fd00:{:x}:{:x}::", sub.a, sub.b);
    let net = "cn6";
    let (ns1, ns2) = (lab.ns("d1"), lab.ns("d2"));
    let (p1, p2) = (format!("/run/netns/{ns1}"), format!("/run/netns/{ns2}"));
    let mut conf = base_conf(&lab, "1.0.0", net, &sub);
    conf["ipv6"] = json!(true);
    conf["subnet6"] = json!(format!("{p6}/64"));
    // The containers send no Router Solicitation: the IPv6 default route they have right
    // after ADD can only come from the Router Advertisement the gateway sends an endpoint
    // as it joins (the gateway's periodic one is 200 s away).
    for ns in [&ns1, &ns2] {
        cmd_ok(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.router_solicitations=0",
        ]);
    }
    let route6 = |ns: &str| {
        let o = ns_cmd(
            ns,
            &["ip", "-6", "route", "show", "default", "dev", "eth0"],
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    // Loose: the route is looked for at once and then for a generous while (a veth's frame
    // may be handled by the kernel after the write returned); the time it took is printed.
    let route_after_add = |ns: &str| {
        let t = std::time::Instant::now();
        if !wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !route6(ns).is_empty()
        }) {
            lab.fail(&format!(
                "{ns} has no IPv6 default route after ADD (no RA on join?)"
            ));
        }
        println!(
            "{ns}'s IPv6 default route {:?} after ADD answered: {}",
            t.elapsed(),
            route6(ns)
        );
    };

    // The runtime asks for an IPv6 address (the `ips` capability), spec 1.0.0.
    let mut conf1 = conf.clone();
    conf1["runtimeConfig"] = json!({"ips": [format!("{p6}99/64")]});
    let env1 = eth0_of("v6a", &p1);
    let r1 = cni_ok(&lab, "ADD", &env1, &conf1);
    route_after_add(&ns1);
    println!("ADD on a dual-stack network: {r1}");
    let v4 = r1["ips"][0]["address"].as_str().unwrap_or_default();
    assert!(v4.starts_with(&format!("10.{}.{}.", sub.a, sub.b)), "{r1}");
    assert_eq!(
        r1["ips"][1],
        json!({"address": format!("{p6}99/64"), "gateway": format!("{p6}1"), "interface": 0}),
        "{r1}"
    );
    assert_eq!(
        r1["routes"],
        json!([
            {"dst": "0.0.0.0/0", "gw": sub.ip(1)},
            {"dst": "::/0", "gw": format!("{p6}1")}
        ]),
        "{r1}"
    );
    // Spec 0.4.0, the address from netyard's IPAM: "version": "6".
    let env2 = eth0_of("v6b", &p2);
    let mut conf2 = conf.clone();
    conf2["cniVersion"] = json!("0.4.0");
    let r2 = cni_ok(&lab, "ADD", &env2, &conf2);
    route_after_add(&ns2);
    assert_eq!(r2["ips"][1]["version"], "6", "{r2}");
    // The next free address of netyard's IPAM (after the one handed out last).
    let ip6b = r2["ips"][1]["address"]
        .as_str()
        .and_then(|a| a.strip_suffix("/64"))
        .filter(|a| a.starts_with(&p6) && *a != format!("{p6}99") && *a != format!("{p6}1"))
        .unwrap_or_else(|| lab.fail(&format!("not a second address of {p6}/64: {r2}")))
        .to_string();

    // The addresses are on eth0; the containers reach the gateway and each other over IPv6.
    let addr = ns_cmd(
        &ns1,
        &["ip", "-6", "addr", "show", "dev", "eth0"],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&addr.stdout);
    assert!(text.contains(&format!("inet6 {p6}99/64")), "{text}");
    lab.assert_ping(&ns1, &format!("{p6}1"));
    lab.assert_ping(&ns2, &format!("{p6}99"));
    lab.assert_ping(&ns1, &ip6b);
    println!("{p6}99 and {ip6b} reach the gateway {p6}1 and each other");

    // CHECK with each ADD's result: the IPv6 default route is in since the ADD.
    let mut check1 = conf1.clone();
    check1["prevResult"] = r1.clone();
    let mut check2 = conf2.clone();
    check2["prevResult"] = r2.clone();
    for (env, c) in [(&env1, &check1), (&env2, &check2)] {
        cni_ok(&lab, "CHECK", env, c);
    }
    // The IPv6 default route deleted behind the plugin's back: CHECK names it (the next
    // unsolicited RA is minutes away, and the container does not solicit).
    cmd_ok(&[
        "ip", "-n", &ns1, "-6", "route", "del", "default", "dev", "eth0",
    ]);
    cni_err(
        &lab,
        "CHECK",
        &env1,
        &check1,
        101,
        &format!("the route to ::/0 via {p6}1 is missing"),
    );
    // An IPv6 address outside the prefix, or on an IPv4-only network: refused naming the
    // capability, nothing attached.
    let ns3 = lab.ns("d3");
    let p3 = format!("/run/netns/{ns3}");
    let env3 = eth0_of("v6c", &p3);
    let mut bad = conf.clone();
    bad["runtimeConfig"] = json!({"ips": ["fd00:dead::5/64"]});
    cni_err(&lab, "ADD", &env3, &bad, 100, "runtimeConfig.ips");
    let mut v4_only = base_conf(&lab, "1.0.0", "cn4", &sub.other());
    v4_only["runtimeConfig"] = json!({"ips": [format!("{p6}7/64")]});
    cni_err(&lab, "ADD", &env3, &v4_only, 100, "runtimeConfig.ips");
    assert!(
        !names_in_ps(&lab).iter().any(|n| n == "v6c"),
        "{:?}",
        names_in_ps(&lab)
    );

    // DEL removes both; the interfaces are gone from the namespaces.
    for (env, c) in [(&env1, &conf1), (&env2, &conf2)] {
        cni_ok(&lab, "DEL", env, c);
    }
    let left = names_in_ps(&lab);
    assert!(left.is_empty(), "after DEL: {left:?}");
    for ns in [&ns1, &ns2] {
        assert!(
            !links(ns).iter().any(|l| l == "eth0"),
            "{ns}: {:?}",
            links(ns)
        );
    }
}
