//! VXLAN peers through a real etcd, in real namespaces. Three "hosts" (each a lab: a namespace
//! with its own netyard daemon) and an underlay namespace `u` holding a Linux bridge with a veth
//! to each host (198.18.X.1-3/24) and etcd (Debian's etcd-server) listening on the bridge's
//! 198.18.X.254 at a random port, with its data directory in the first lab's temporary directory.
//! Nothing leaves the namespaces the test made. Each daemon runs with `--etcd URL --node nI
//! --underlay-ip 198.18.X.I --etcd-lease-ttl 3`.
//!
//! - a network created on one host appears on the others (same VNI, subnet, gateway);
//! - six endpoints attached at once on three hosts get six distinct addresses;
//! - every host has a static remote entry for every other host's endpoints before any traffic,
//!   and they ping each other;
//! - a detach removes the entry on the others; an address held on another host is refused;
//! - a distributed network is removed everywhere by `network rm`, refused while another host
//!   has endpoints on it;
//! - SIGKILL one daemon: the others drop its entries once its lease expires, and its addresses
//!   can be taken again.
//!
//! Teardown: the labs drop last-first; the first one stops etcd (its process group) and removes
//! its data directory, and deletes the underlay namespace.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LEASE_TTL: u64 = 3;

/// Fails naming the package unless etcd is installed.
fn require_etcd() {
    require_program("etcd", "etcd-server");
    require_program("dig", "dnsutils");
}

/// Three hosts on one underlay with etcd. Fields drop in order: c, b, then a (which holds etcd
/// and the underlay namespace), so the daemons still reach etcd while they shut down.
struct Three {
    c: Lab,
    b: Lab,
    /// The etcd server (its process group is killed on drop).
    etcd: Bg,
    a: Lab,
    /// Underlay addresses of a, b, c.
    ips: [String; 3],
    /// The underlay namespace (etcd runs there) and etcd's client URL.
    u: String,
    url: String,
    /// The daemon arguments of a, b, c (a restart gives the same ones).
    args: [Vec<String>; 3],
}

impl Three {
    fn labs(&self) -> [&Lab; 3] {
        [&self.a, &self.b, &self.c]
    }
}

fn three_hosts() -> Three {
    require_root();
    require_etcd();
    let mut a = Lab::bare();
    let mut b = Lab::bare();
    let mut c = Lab::bare();
    let u = a.ns("u");
    let x = rand::random::<u8>();
    let br = format!("nyt{}br", a.id);
    cmd_ok(&["ip", "-n", &u, "link", "add", &br, "type", "bridge"]);
    cmd_ok(&[
        "ip",
        "-n",
        &u,
        "addr",
        "add",
        &format!("198.18.{x}.254/24"),
        "dev",
        &br,
    ]);
    cmd_ok(&["ip", "-n", &u, "link", "set", &br, "up"]);
    let ips = [1, 2, 3].map(|i| format!("198.18.{x}.{i}"));
    for (i, host) in [&a.host.name, &b.host.name, &c.host.name]
        .into_iter()
        .enumerate()
    {
        let (h_if, u_if) = (format!("nyt{}h{i}", a.id), format!("nyt{}u{i}", a.id));
        veth_from(host, &h_if, &format!("{}/24", ips[i]), &u, &u_if);
        cmd_ok(&["ip", "-n", &u, "link", "set", &u_if, "master", &br]);
        cmd_ok(&["ip", "-n", &u, "link", "set", &u_if, "up"]);
    }
    // etcd on the bridge's address, its peer port on u's loopback.
    let port = 20000 + rand::random::<u16>() % 20000;
    let ip = format!("198.18.{x}.254");
    let url = format!("http://{ip}:{port}");
    let peer = format!("http://127.0.0.1:{}", port + 1);
    let data = a.dir.join("etcd");
    let data = data.to_string_lossy().into_owned();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &u]).args([
        "etcd",
        "--name",
        "nyt",
        "--data-dir",
        &data,
        "--listen-client-urls",
        &url,
        "--advertise-client-urls",
        &url,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("nyt={peer}"),
        "--log-level",
        "warn",
    ]);
    let etcd = Bg::spawn(&mut cmd, &a.dir.join("etcd.log"));
    let health = format!(
        "import urllib.request,sys; r=urllib.request.urlopen('{url}/health', timeout=1).read(); \
         sys.exit(0 if b'true' in r else 1)"
    );
    let up = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        ns_cmd(&u, &["python3", "-c", &health], Duration::from_secs(5))
            .status
            .success()
    });
    if !up {
        let log = std::fs::read_to_string(a.dir.join("etcd.log")).unwrap_or_default();
        panic!("etcd did not become healthy at {url} within 20 s; its log:\n{log}");
    }
    let ttl = LEASE_TTL.to_string();
    let args = [0, 1, 2].map(|i| {
        [
            "--dns-upstream",
            "127.0.0.1:5301",
            "--etcd",
            &url,
            "--node",
            &format!("n{i}"),
            "--underlay-ip",
            &ips[i],
            "--etcd-lease-ttl",
            &ttl,
        ]
        .map(str::to_string)
        .to_vec()
    });
    for (lab, args) in [&mut a, &mut b, &mut c].into_iter().zip(&args) {
        lab.start_daemon(&strs(args));
    }
    Three {
        c,
        b,
        etcd,
        a,
        ips,
        u,
        url,
        args,
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every key under the default prefix with the lease it is attached to (0: none), read
/// through etcd's JSON gateway from the underlay namespace.
fn etcd_keys(t: &Three) -> Vec<(String, i64)> {
    let script = format!(
        r#"
import base64, json, urllib.request
p = b"/netyard/v1/"
end = p[:-1] + bytes([p[-1] + 1])
b64 = lambda b: base64.b64encode(b).decode()
req = urllib.request.Request("{url}/v3/kv/range",
    data=json.dumps({{"key": b64(p), "range_end": b64(end)}}).encode())
r = json.load(urllib.request.urlopen(req, timeout=2))
for kv in r.get("kvs", []):
    print(base64.b64decode(kv["key"]).decode(), kv.get("lease", "0"))
"#,
        url = t.url
    );
    let o = ns_cmd(&t.u, &["python3", "-c", &script], Duration::from_secs(5));
    if !o.status.success() {
        t.a.fail(&format!("reading etcd's keys: {}", show(&o)));
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (k, lease) = l.rsplit_once(' ')?;
            Some((k.to_string(), lease.parse().ok()?))
        })
        .collect()
}

/// The fdb row of `mac` (case-insensitive), if any.
fn fdb_row<'a>(fdb: &'a Value, mac: &str) -> Option<&'a Value> {
    fdb.as_array()?.iter().find(|r| {
        r["mac"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    })
}

/// Is `mac` a static remote entry behind `vtep` in `lab`'s fdb of `net`?
fn has_static_remote(lab: &Lab, net: &str, mac: &str, vtep: &str) -> bool {
    let fdb = lab.ny_json(&["fdb", net, "--json"]);
    fdb_row(&fdb, mac)
        .is_some_and(|r| r["port"] == "vxlan" && r["remote"] == vtep && r["static"] == true)
}

/// Polls `f` until true or `timeout`; fails the test through `lab` with `what` otherwise.
fn expect_within(lab: &Lab, timeout: Duration, what: &str, f: impl FnMut() -> bool) {
    if !wait_until(timeout, Duration::from_millis(200), f) {
        lab.fail(&format!("not within {timeout:?}: {what}"));
    }
}

/// `network inspect NAME` on `lab`, if it has the network.
/// The A records `name` resolves to through the embedded resolver (127.0.0.11) in `ns`.
fn resolve(lab: &Lab, ns: &str, name: &str) -> Vec<String> {
    let o = lab.ns_cmd(
        ns,
        &["dig", "+short", "+time=2", "+tries=1", "@127.0.0.11", name],
        Duration::from_secs(5),
    );
    let mut ips: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    ips.sort();
    ips
}

fn inspect(lab: &Lab, name: &str) -> Option<Value> {
    let o = lab.ny(&["network", "inspect", name]);
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

struct Ep {
    host: usize,
    ns: String,
    name: String,
    ip: String,
    mac: String,
}

#[test]
fn three_hosts_share_networks_endpoints_and_addresses_through_etcd() {
    let t = three_hosts();
    let labs = t.labs();
    let (a, b, c) = (&t.a, &t.b, &t.c);
    let sn = Subnet::random();
    let net = a.network(
        "ov",
        &sn,
        &[
            "--vxlan",
            "4343",
            "--host-loopback",
            "--max-flows-per-endpoint",
            "64",
        ],
    );

    // The network appears on b and c with the same definition (router options too), its
    // tunnel on their VTEP.
    let mine = inspect(a, &net).unwrap_or_else(|| a.fail("no network on a"));
    for (i, lab) in labs.iter().enumerate() {
        expect_within(
            lab,
            Duration::from_secs(10),
            &format!("network {net} on host {i} from etcd"),
            || {
                inspect(lab, &net).is_some_and(|n| {
                    n["subnet"] == mine["subnet"]
                        && n["gateway"] == mine["gateway"]
                        && n["mtu"] == mine["mtu"]
                        && n["vxlan"]["vni"] == 4343
                        && n["vxlan"]["local"] == t.ips[i]
                        && n["host_loopback"] == true
                        && n["max_flows_per_endpoint"] == 64
                        && n["max_flows"] == mine["max_flows"]
                })
            },
        );
    }

    // Six endpoints attached at once, two per host, addresses chosen by IPAM.
    let plan: Vec<(usize, String, String)> = (0..3)
        .flat_map(|h| {
            (0..2).map(move |k| {
                let tag = format!("e{h}{k}");
                (h, tag.clone(), tag)
            })
        })
        .collect();
    let nss: Vec<String> = plan.iter().map(|(h, tag, _)| labs[*h].ns(tag)).collect();
    let eps: Vec<Ep> = std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .iter()
            .zip(&nss)
            .map(|((h, _, name), ns)| {
                let lab = labs[*h];
                let net = net.clone();
                s.spawn(move || {
                    let e = lab.attach(&net, ns, name, &[]);
                    Ep {
                        host: *h,
                        ns: ns.clone(),
                        name: name.clone(),
                        ip: e["ip"].as_str().unwrap_or_default().to_string(),
                        mac: e["mac"].as_str().unwrap_or_default().to_string(),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("an attach thread failed"))
            })
            .collect()
    });
    let mut ips: Vec<&str> = eps.iter().map(|e| e.ip.as_str()).collect();
    ips.sort();
    ips.dedup();
    if ips.len() != 6 || eps.iter().any(|e| e.ip.is_empty()) {
        let all: Vec<String> = eps
            .iter()
            .map(|e| format!("{}@{}={}", e.name, e.host, e.ip))
            .collect();
        a.fail(&format!(
            "concurrent attaches on three hosts got duplicate addresses: {all:?}"
        ));
    }

    // Before any traffic: every host has a static entry for every remote endpoint, behind the
    // VTEP of the host that owns it (learnt from etcd, not from flooding).
    for (i, lab) in labs.iter().enumerate() {
        for e in eps.iter().filter(|e| e.host != i) {
            expect_within(
                lab,
                Duration::from_secs(10),
                &format!(
                    "host {i}: static entry of {} behind {}",
                    e.name, t.ips[e.host]
                ),
                || has_static_remote(lab, &net, &e.mac, &t.ips[e.host]),
            );
        }
    }
    let ep = |name: &str| eps.iter().find(|e| e.name == name).expect("endpoint");
    for (from, to) in [
        ("e00", "e10"),
        ("e00", "e20"),
        ("e11", "e21"),
        ("e21", "e01"),
    ] {
        let (f, t2) = (ep(from), ep(to));
        labs[f.host].assert_ping(&f.ns, &t2.ip);
    }
    // Names cross hosts through etcd, as on a Docker overlay network: each container resolves
    // the other hosts' endpoints through its own host's resolver; a rename is seen everywhere.
    for (from, to) in [
        ("e00", "e10"),
        ("e21", "e01"),
        ("e11", "e20"),
        ("e01", "e00"),
    ] {
        let (f, t2) = (ep(from), ep(to));
        let lab = labs[f.host];
        expect_within(
            lab,
            Duration::from_secs(10),
            &format!("{from} on host {} resolves {to} (host {})", f.host, t2.host),
            || resolve(lab, &f.ns, to) == [t2.ip.clone()],
        );
    }
    b.ny_ok(&["rename", &net, "e10", "web"]);
    expect_within(
        a,
        Duration::from_secs(10),
        "e00 on a resolves b's renamed e10 as web, and e10 no more",
        || {
            resolve(a, &ep("e00").ns, "web") == [ep("e10").ip.clone()]
                && resolve(a, &ep("e00").ns, "e10").is_empty()
        },
    );

    // Each host's gateway answers locally.
    for e in [ep("e00"), ep("e10"), ep("e20")] {
        labs[e.host].assert_ping(&e.ns, &sn.ip(1));
    }

    // An address held on another host is refused, naming the holder.
    let extra = a.ns("x0");
    let path = format!("/run/netns/{extra}");
    // Attaches x0 in `extra` with address `ip`, on a.
    let attach_x0 =
        |ip: &str| a.ny(&["attach", &net, "--netns", &path, "--name", "x0", "--ip", ip]);
    let o = attach_x0(&ep("e10").ip);
    assert_one_line_error("an address held by b", &o, &["ip", "n1"]);

    // A detach on b removes its entry on a and c.
    b.ny_ok(&["detach", &net, "e11"]);
    let gone = ep("e11");
    for lab in [a, c] {
        expect_within(
            lab,
            Duration::from_secs(10),
            "the detached e11's entry disappears",
            || {
                let fdb = lab.ny_json(&["fdb", &net, "--json"]);
                fdb_row(&fdb, &gone.mac).is_none_or(|r| r["static"] != true)
            },
        );
    }
    let asker = ep("e20");
    expect_within(
        c,
        Duration::from_secs(10),
        "the detached e11's name disappears on c",
        || resolve(c, &asker.ns, "e11").is_empty() && !resolve(c, &asker.ns, "web").is_empty(),
    );

    // A second distributed network, created on b: removed everywhere by `network rm` on a,
    // which is refused while c has an endpoint on it.
    let sn2 = sn.other();
    let net2 = b.network("ov2", &sn2, &["--vxlan", "4344"]);
    for lab in labs {
        expect_within(lab, Duration::from_secs(10), "ov2 everywhere", || {
            inspect(lab, &net2).is_some()
        });
    }
    let c2 = c.ns("c2");
    c.attach(&net2, &c2, "c2", &[]);
    expect_within(a, Duration::from_secs(10), "a sees c2 in etcd", || {
        let fdb = a.ny_json(&["fdb", &net2, "--json"]);
        fdb.as_array()
            .is_some_and(|r| r.iter().any(|r| r["remote"] == t.ips[2]))
    });
    let o = a.ny(&["network", "rm", &net2]);
    assert_one_line_error("rm with endpoints on c", &o, &["n2", "detach"]);
    c.ny_ok(&["detach", &net2, "c2"]);
    expect_within(
        a,
        Duration::from_secs(10),
        "network rm once c2 is gone",
        || a.ny(&["network", "rm", &net2]).status.success(),
    );
    for lab in labs {
        expect_within(
            lab,
            Duration::from_secs(10),
            "ov2 removed everywhere",
            || inspect(lab, &net2).is_none(),
        );
    }

    // etcd stops answering (SIGSTOP) for longer than the lease: every daemon notices and logs
    // it, the data plane keeps forwarding with the entries it has; once etcd is back (its
    // leases expired meanwhile) every daemon registers again and the entries come back.
    t.etcd.signal(nix::sys::signal::Signal::SIGSTOP);
    for lab in labs {
        expect_within(
            lab,
            Duration::from_secs(20),
            "the daemon logs that etcd is unreachable",
            || lab.daemon_log().contains("etcd unreachable"),
        );
    }
    a.assert_ping(&ep("e00").ns, &ep("e10").ip);
    c.assert_ping(&ep("e20").ns, &ep("e01").ip);
    if !has_static_remote(a, &net, &ep("e10").mac, &t.ips[1]) {
        a.fail("the static entries went away while etcd was unreachable");
    }
    t.etcd.signal(nix::sys::signal::Signal::SIGCONT);
    let live: Vec<&Ep> = eps.iter().filter(|e| e.name != "e11").collect();
    for (i, lab) in labs.iter().enumerate() {
        for e in live.iter().filter(|e| e.host != i) {
            expect_within(
                lab,
                Duration::from_secs(30),
                &format!("host {i}: {}'s entry back after etcd returned", e.name),
                || has_static_remote(lab, &net, &e.mac, &t.ips[e.host]),
            );
        }
    }
    a.assert_ping(&ep("e00").ns, &ep("e21").ip);

    // SIGKILL c's daemon: its lease expires and a and b drop its entries.
    let killed = Instant::now();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(c.daemon_pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL c's daemon");
    let c_eps: Vec<&Ep> = eps.iter().filter(|e| e.host == 2).collect();
    for lab in [a, b] {
        expect_within(
            lab,
            Duration::from_secs(LEASE_TTL + 15),
            "the killed daemon's entries disappear after its lease",
            || {
                let fdb = lab.ny_json(&["fdb", &net, "--json"]);
                c_eps
                    .iter()
                    .all(|e| fdb_row(&fdb, &e.mac).is_none_or(|r| r["static"] != true))
            },
        );
    }
    expect_within(
        a,
        Duration::from_secs(10),
        "the killed daemon's endpoints' names disappear on a",
        || resolve(a, &ep("e00").ns, "e20").is_empty(),
    );
    let took = killed.elapsed();
    eprintln!("entries of the killed daemon gone after {took:?} (lease TTL {LEASE_TTL} s)");
    // a and b still reach each other; c's address is free again.
    a.assert_ping(&ep("e00").ns, &ep("e10").ip);
    expect_within(a, Duration::from_secs(10), "c's address free again", || {
        attach_x0(&ep("e20").ip).status.success()
    });
}

#[test]
fn etcd_flags_and_an_unreachable_etcd_are_clear_errors() {
    let lab = Lab::bare();
    let o = lab.daemon_expect_exit(&["--etcd", "http://127.0.0.1:9"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--node") && err.contains("--underlay-ip"),
        "--etcd without --node/--underlay-ip: {}",
        show(&o)
    );
    let o = lab.daemon_expect_exit(&["--node", "a"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--etcd"),
        "--node without --etcd: {}",
        show(&o)
    );
    // Nothing listens on the lab namespace's loopback: a clear error, non-zero, at once.
    let url = "http://127.0.0.1:9";
    let start = Instant::now();
    let o = lab.daemon_expect_exit(&["--etcd", url, "--node", "a", "--underlay-ip", "198.18.0.1"]);
    assert!(!o.status.success(), "unreachable etcd: {}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("etcd") && err.contains(url),
        "the error does not name etcd and its URL: {}",
        show(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        !lab.api.exists(),
        "the API socket was left behind after a failed start"
    );
}

/// The lease of the key `rest` (under the default prefix; compared case-insensitively), if
/// etcd has it.
fn key_lease(keys: &[(String, i64)], rest: &str) -> Option<i64> {
    let want = format!("/netyard/v1/{rest}");
    keys.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&want))
        .map(|(_, l)| *l)
}

/// An endpoint made on one host of [`Three`] for the restart test.
struct Made {
    ns: String,
    name: String,
    ip: String,
    mac: String,
}

fn made(lab: &Lab, net: &str, tag: &str) -> Made {
    let ns = lab.ns(tag);
    let e = lab.attach(net, &ns, tag, &[]);
    Made {
        ns,
        name: tag.to_string(),
        ip: e["ip"].as_str().unwrap_or_default().to_string(),
        mac: e["mac"].as_str().unwrap_or_default().to_string(),
    }
}

/// After a (re)start of a: a still lists its endpoint; b has it as a static remote entry,
/// pings it across hosts and resolves its name; a has b's endpoint again; etcd holds a's
/// endpoint and address keys under a live lease that is not `stale` (the previous run's).
/// Returns that lease.
fn check_adopted(
    t: &Three,
    net: &str,
    ea: &Made,
    eb: &Made,
    stale: Option<i64>,
    when: &str,
) -> i64 {
    let (a, b) = (&t.a, &t.b);
    let e = a.endpoint(net, &ea.name);
    if e["ip"] != ea.ip.as_str()
        || !e["mac"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case(&ea.mac))
    {
        a.fail(&format!("{when}: a's endpoint changed: {e}"));
    }
    let bound = Duration::from_secs(LEASE_TTL + 20);
    let ep_key = format!("endpoints/{net}/{}", ea.mac);
    let ip_key = format!("ipam/{net}/{}", ea.ip);
    let mut lease = 0;
    expect_within(
        a,
        bound,
        &format!("{when}: etcd holds {ep_key} and {ip_key} under a's new lease (not {stale:?})"),
        || {
            let keys = etcd_keys(t);
            match (key_lease(&keys, &ep_key), key_lease(&keys, &ip_key)) {
                (Some(l1), Some(l2)) if l1 == l2 && l1 != 0 && Some(l1) != stale => {
                    lease = l1;
                    true
                }
                _ => false,
            }
        },
    );
    expect_within(
        b,
        bound,
        &format!("{when}: b has a's {} behind {}", ea.mac, t.ips[0]),
        || has_static_remote(b, net, &ea.mac, &t.ips[0]),
    );
    expect_within(
        a,
        bound,
        &format!("{when}: a has b's {} behind {}", eb.mac, t.ips[1]),
        || has_static_remote(a, net, &eb.mac, &t.ips[1]),
    );
    expect_within(b, bound, &format!("{when}: b pings a's {}", ea.ip), || {
        b.ping(&eb.ns, &ea.ip)
    });
    expect_within(b, bound, &format!("{when}: b resolves {}", ea.name), || {
        resolve(b, &eb.ns, &ea.name) == [ea.ip.clone()]
    });
    a.assert_ping(&ea.ns, &eb.ip);
    lease
}

/// Starts a's daemon again with its first arguments and state directory; waits until ready.
fn restart_a(t: &mut Three) {
    eprintln!("----- a's previous daemon log -----\n{}", t.a.daemon_log());
    t.a.start_daemon(&strs(&t.args[0]));
    if !wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        t.a.daemon_log().contains("netyard daemon ready")
    }) {
        t.a.fail("the restarted daemon did not log \"netyard daemon ready\" within 15 s");
    }
}

#[test]
fn a_restarted_daemon_registers_its_endpoints_in_etcd_again() {
    let mut t = three_hosts();
    let sn = Subnet::random();
    let net = t.a.network("rs", &sn, &["--vxlan", "4345"]);
    expect_within(&t.b, Duration::from_secs(10), "the network on b", || {
        inspect(&t.b, &net).is_some()
    });
    let ea = made(&t.a, &net, "ra");
    let eb = made(&t.b, &net, "rb");
    let first = check_adopted(&t, &net, &ea, &eb, None, "before any restart");

    // SIGTERM: a clean stop revokes the lease, so b forgets a's endpoint; the restart adopts
    // it from the state directory and registers it again under a new lease.
    let status = t.a.stop_daemon();
    if status.code() != Some(0) {
        t.a.fail(&format!("a's exit after SIGTERM: {status}"));
    }
    expect_within(
        &t.b,
        Duration::from_secs(10),
        "b drops a's entry once a's lease is revoked",
        || !has_static_remote(&t.b, &net, &ea.mac, &t.ips[0]),
    );
    restart_a(&mut t);
    let second = check_adopted(&t, &net, &ea, &eb, Some(first), "after SIGTERM and start");

    // kill -9: the old lease lives on for its TTL; the restart moves the keys under its new
    // lease, so they outlive the old one's expiry.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(t.a.daemon_pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL a's daemon");
    let killed = Instant::now();
    let status = t.a.stop_daemon();
    assert_eq!(
        status.signal(),
        Some(9),
        "a's daemon did not die of SIGKILL: {status}"
    );
    restart_a(&mut t);
    eprintln!(
        "a restarted {:?} after kill -9 (lease TTL {LEASE_TTL} s)",
        killed.elapsed()
    );
    let third = check_adopted(&t, &net, &ea, &eb, Some(second), "after kill -9 and start");
    let expired = killed + Duration::from_secs(LEASE_TTL + 3);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    let fourth = check_adopted(
        &t,
        &net,
        &ea,
        &eb,
        Some(second),
        "after kill -9, start and the old lease's expiry",
    );
    if fourth != third {
        t.a.fail(&format!("a's keys changed lease from {third} to {fourth}"));
    }
}
