//! Bad input through the CLI, the API and the config file: each gets a one-line error naming
//! the problem, a non-zero exit, and changes nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `ps --json` without the counters, which may move on their own.
fn ps_shape(lab: &Lab) -> Value {
    let mut ps = lab.ny_json(&["ps", "--json"]);
    if let Some(a) = ps.as_array_mut() {
        for e in a {
            if let Some(o) = e.as_object_mut() {
                o.remove("counters");
            }
        }
    }
    ps
}

#[test]
fn bad_requests_get_a_clear_error_and_change_nothing() {
    let lab = Lab::new();
    let sn = Subnet::random();
    let outside = sn.other();
    lab.network("lan", &sn, &[]);
    let (na, nspare) = (lab.ns("a"), lab.ns("z"));
    lab.attach("lan", &na, "alpha", &["--ip", &sn.ip(10)]);
    let spare = format!("/run/netns/{nspare}");
    let ls_before = lab.ny_json(&["network", "ls", "--json"]);
    let ps_before = ps_shape(&lab);

    let in_use = sn.ip(10);
    let out_ip = outside.ip(5);
    let gw = sn.ip(1);
    let bad_subnets = ["10.1.2.300/24", "banana", "10.1.2.0/33"];
    let overlapping = format!("10.{}.{}.128/25", sn.a, sn.b);
    let missing_ns = format!("/run/netns/nyt{}missing", lab.id);
    // (what, argv, words the one-line message must contain)
    let mut cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "attach to an unknown network",
            vec!["attach", "nosuchnet", "--netns", &spare, "--name", "x"],
            vec!["nosuchnet"],
        ),
        (
            "duplicate endpoint name",
            vec!["attach", "lan", "--netns", &spare, "--name", "alpha"],
            vec!["alpha"],
        ),
        (
            "address outside the subnet",
            vec![
                "attach", "lan", "--netns", &spare, "--name", "x", "--ip", &out_ip,
            ],
            vec![&out_ip],
        ),
        (
            "address in use",
            vec![
                "attach", "lan", "--netns", &spare, "--name", "x", "--ip", &in_use,
            ],
            vec![&in_use],
        ),
        (
            "the gateway's address",
            vec![
                "attach", "lan", "--netns", &spare, "--name", "x", "--ip", &gw,
            ],
            vec![&gw],
        ),
        (
            "an address that does not parse",
            vec![
                "attach",
                "lan",
                "--netns",
                &spare,
                "--name",
                "x",
                "--ip",
                "10.0.0.999",
            ],
            vec!["10.0.0.999"],
        ),
        (
            "an unknown port kind",
            vec![
                "attach", "lan", "--netns", &spare, "--name", "x", "--kind", "bogus",
            ],
            vec!["bogus"],
        ),
        (
            "a multicast MAC",
            vec![
                "attach",
                "lan",
                "--netns",
                &spare,
                "--name",
                "x",
                "--mac",
                "01:00:5e:00:00:01",
            ],
            vec!["01:00:5e:00:00:01"],
        ),
        (
            "a namespace that does not exist",
            vec!["attach", "lan", "--netns", &missing_ns, "--name", "x"],
            vec![&missing_ns],
        ),
        (
            "duplicate network name",
            vec!["network", "create", "lan", "--subnet", "10.199.0.0/24"],
            vec!["lan"],
        ),
        (
            "a subnet overlapping another network",
            vec!["network", "create", "other", "--subnet", &overlapping],
            vec!["lan"],
        ),
        (
            "network rm with endpoints attached",
            vec!["network", "rm", "lan"],
            vec!["lan", "alpha"],
        ),
        (
            "detach an unknown endpoint",
            vec!["detach", "lan", "nosuchep"],
            vec!["nosuchep"],
        ),
        (
            "inspect an unknown network",
            vec!["network", "inspect", "nosuchnet"],
            vec!["nosuchnet"],
        ),
        (
            "fdb of an unknown network",
            vec!["fdb", "nosuchnet"],
            vec!["nosuchnet"],
        ),
        (
            "rm an unknown network",
            vec!["network", "rm", "nosuchnet"],
            vec!["nosuchnet"],
        ),
    ];
    for s in &bad_subnets {
        cases.push((
            "a bad subnet string",
            vec!["network", "create", "other", "--subnet", s],
            vec![s],
        ));
    }
    for (what, argv, needles) in &cases {
        let o = lab.ny(argv);
        if o.status.success() {
            lab.fail(&format!(
                "{what}: `netyard {}` succeeded:\n{}",
                argv.join(" "),
                show(&o)
            ));
        }
        assert_one_line_error(what, &o, needles);
        let ls = lab.ny_json(&["network", "ls", "--json"]);
        let ps = ps_shape(&lab);
        if ls != ls_before || ps != ps_before {
            lab.fail(&format!(
                "{what}: state changed.\nnetwork ls before {ls_before}\nafter {ls}\n\
                 ps before {ps_before}\nafter {ps}"
            ));
        }
        let l = links(&nspare);
        if l != vec!["lo".to_string()] {
            lab.fail(&format!(
                "{what}: the namespace {nspare} was touched: {l:?}"
            ));
        }
    }
    // After all that, the existing endpoint still works and a good attach still succeeds.
    let eb = lab.attach("lan", &nspare, "beta", &[]);
    lab.assert_ping(&nspare, &in_use);
    assert_ne!(eb["ip"], in_use.as_str());
}

#[test]
fn no_daemon_is_a_one_line_error_naming_the_socket() {
    require_root();
    let sock = format!("/tmp/nyt-{}-nodaemon.sock", suffix());
    let o = cmd(&[NETYARD, "--api", &sock, "network", "ls"], CLI_TIMEOUT);
    assert_one_line_error("no daemon", &o, &[&sock]);
}

/// A config that must be refused: the daemon exits non-zero naming the file and the field,
/// and leaves no socket, no device and no veth behind.
fn refused_config(body: impl Fn(&str, &str) -> String, needles: &[&str]) {
    let lab = Lab::bare();
    let na = lab.ns("a");
    let cfg = lab.dir.join("bad.toml");
    std::fs::write(&cfg, body(&na, &lab.id)).unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let o = lab.daemon_expect_exit(&["--config", &cfg_s]);
    let mut all: Vec<&str> = vec![&cfg_s];
    all.extend_from_slice(needles);
    // The daemon logs too; the reason must still be one line naming file and field.
    assert!(
        !o.status.success(),
        "the daemon accepted {cfg_s}:\n{}",
        show(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.lines().any(|l| all.iter().all(|n| l.contains(n))) {
        panic!(
            "no line of the daemon's stderr names all of {all:?}:\n{}",
            show(&o)
        );
    }
    assert!(
        !lab.api.exists(),
        "a refused config left the socket {}",
        lab.api.display()
    );
    assert_eq!(
        links(&na),
        vec!["lo".to_string()],
        "a refused config left devices in {na}"
    );
    let host = links(&lab.host.name);
    assert!(
        !host.iter().any(|l| is_netyard_host_end(l)),
        "a refused config left a veth host end: {host:?}"
    );
}

#[test]
fn config_with_an_unknown_field_is_refused() {
    refused_config(
        |_, _| "[[network]]\nname = \"x\"\nsubnett = \"10.231.0.0/24\"\n".to_string(),
        &["subnett"],
    );
}

#[test]
fn config_with_a_bad_subnet_is_refused() {
    refused_config(
        |_, _| {
            "[[network]]\nname = \"x\"\nsubnet = \"10.231.0.0/24\"\n\n\
             [[network]]\nname = \"y\"\nsubnet = \"10.231.1.300/24\"\n"
                .to_string()
        },
        &["network[1].subnet", "10.231.1.300/24"],
    );
}

/// The second endpoint is wrong: the first one, already attached, must be undone.
#[test]
fn config_with_a_bad_endpoint_leaves_nothing_behind() {
    refused_config(
        |ns, _| {
            format!(
                "[[network]]\nname = \"x\"\nsubnet = \"10.232.0.0/24\"\n\n\
                 [[endpoint]]\nnetwork = \"x\"\nname = \"good\"\nnetns = \"/run/netns/{ns}\"\n\
                 kind = \"veth\"\n\n\
                 [[endpoint]]\nnetwork = \"x\"\nname = \"bad\"\nnetns = \"/run/netns/{ns}\"\n\
                 ifname = \"eth1\"\nip = \"10.99.0.5\"\n"
            )
        },
        &["endpoint[1].ip", "10.99.0.5"],
    );
}

/// The API is plain HTTP+JSON on the Unix socket: curl works, and errors name the field.
#[test]
fn api_answers_curl() {
    let lab = Lab::new();
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: the curl check is optional, nothing else to do");
        return;
    }
    let api = lab.api.to_string_lossy().into_owned();
    let curl = |args: &[&str]| -> (String, u32) {
        let mut a = vec!["curl", "-sS", "--unix-socket", &api, "-w", "\n%{http_code}"];
        a.extend_from_slice(args);
        let o = cmd(&a, Duration::from_secs(30));
        assert!(o.status.success(), "curl {args:?}: {}", show(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (body.to_string(), code.trim().parse().unwrap_or(0))
    };
    let (body, code) = curl(&["http://localhost/v1/networks"]);
    assert_eq!((body.as_str(), code), ("[]", 200));

    let sn = Subnet::random();
    let req = format!("{{\"name\":\"viacurl\",\"subnet\":\"{}\"}}", sn.cidr());
    let post = |b: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            b,
            "http://localhost/v1/networks",
        ])
    };
    let (body, code) = post(&req);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["subnet"], sn.cidr().as_str());

    for (bad, field) in [
        ("{\"name\":\"c2\",\"subnet\":\"nope\"}", "subnet"),
        ("{\"name\":\"c2\",\"bogus\":1}", "bogus"),
        ("{\"name\":\"viacurl\"}", "name"),
    ] {
        let (body, code) = post(bad);
        assert!((400..500).contains(&code), "{bad} answered {code}: {body}");
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{bad}: error body is not JSON ({e}): {body}"));
        assert!(v["error"].is_string(), "{bad}: no error message: {body}");
        assert_eq!(v["field"], field, "{bad}: field not named: {body}");
    }
    let ls = lab.ny_json(&["network", "ls", "--json"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, vec!["viacurl"], "{ls}");
}
