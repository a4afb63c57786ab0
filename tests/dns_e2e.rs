//! The embedded DNS end to end, in real namespaces with real clients: `dig` (dnsutils) against
//! 127.0.0.11 inside attached namespaces, `getent` inside `netyard run`, and `dnsmasq` as the
//! upstream server, started by each test on loopback inside the daemon's own "host" namespace
//! (the daemon gets `--dns-upstream 127.0.0.1:PORT`, so no query ever leaves the machine).
//!
//! Covered: names, aliases, `NAME.NETWORK`, case, PTR, NODATA for AAAA/MX on a v4-only name,
//! unknown names forwarded and answered NXDOMAIN by the upstream, round robin over a shared
//! alias, isolation between networks, attach/detach/rename taking effect at once, glibc's
//! resolver inside `netyard run`; forwarding over UDP and TCP, truncation and the client's TCP
//! retry, the cache, dead, silent and slow upstreams, failover to the second of three; malformed
//! queries; `--internal` networks. Not covered here: the gateway address's port 53.
//!
//! Every lab passes `--dns-upstream`, so the daemon never forwards to the machine's own
//! resolv.conf servers.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The dnsmasq upstream's port on the host namespace's loopback.
const UPSTREAM_PORT: u16 = 5301;

/// What the upstream dnsmasq answers (besides NXDOMAIN for anything else under zone.test and
/// for single-label names, and for private reverse names).
const WWW: &str = "198.18.0.5";
const CACHED: &str = "198.18.0.6";
const SLOW: &str = "198.18.0.7";
const TCP_NAME: &str = "198.18.0.8";
/// Records of `big.zone.test` and `tcpbig.zone.test`: 40 A records is 40 * 16 bytes of answer,
/// well over 512 bytes.
const BIG_RECORDS: u8 = 40;

fn ip_of(ep: &Value) -> String {
    ep["ip"].as_str().expect("endpoint ip").to_string()
}

// ---------------------------------------------------------------------------------------------
// dig, run inside a namespace, and its output read back.

/// One resource record of dig's answer section.
#[derive(Debug, Clone)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// One answer as dig printed it.
#[derive(Debug, Clone, Default)]
struct Reply {
    status: String,
    flags: Vec<String>,
    answers: Vec<Rr>,
}

impl Reply {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// The data of the answers of type `rtype`, in order.
    fn data(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect()
    }
}

/// A dig run: its output, how long it took, and every answer it printed (one per query).
struct Dig {
    out: Output,
    text: String,
    elapsed: Duration,
    replies: Vec<Reply>,
}

impl Dig {
    /// The only reply; fails if dig printed none (no answer at all) or several.
    fn one(&self) -> &Reply {
        assert!(
            self.replies.len() == 1,
            "expected one answer from dig, got {}:\n{}",
            self.replies.len(),
            show(&self.out)
        );
        &self.replies[0]
    }
}

fn parse_dig(text: &str) -> Vec<Reply> {
    let mut replies: Vec<Reply> = Vec::new();
    let mut in_answer = false;
    for line in text.lines() {
        if let Some(rest) = line.split_once("->>HEADER<<-").map(|(_, r)| r) {
            let status = rest
                .split("status:")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .unwrap_or("")
                .trim()
                .to_string();
            replies.push(Reply {
                status,
                ..Reply::default()
            });
            in_answer = false;
            continue;
        }
        let Some(cur) = replies.last_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap_or("");
            cur.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
        } else if in_answer {
            if line.trim().is_empty() || line.starts_with(';') {
                in_answer = false;
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                cur.answers.push(Rr {
                    name: f[0].to_string(),
                    ttl: f[1].parse().unwrap_or(u32::MAX),
                    rtype: f[3].to_string(),
                    data: f[4..].join(" "),
                });
            }
        }
    }
    replies
}

/// `dig +time=T +tries=1 @SERVER ARGS` inside `ns`, whatever its outcome.
fn dig_raw(ns: &str, server: &str, time: u32, args: &[&str]) -> Dig {
    let at = format!("@{server}");
    let t = format!("+time={time}");
    let mut argv = vec!["dig", &at, &t, "+tries=1"];
    argv.extend_from_slice(args);
    let start = Instant::now();
    let out = ns_cmd(ns, &argv, Duration::from_secs(u64::from(time) * 4 + 30));
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let replies = parse_dig(&text);
    Dig {
        out,
        text,
        elapsed,
        replies,
    }
}

/// dig against the embedded resolver (127.0.0.11) inside `ns`; fails the test unless dig got
/// an answer to every query.
fn dig(lab: &Lab, ns: &str, args: &[&str]) -> Dig {
    dig_timed(lab, ns, 3, args)
}

fn dig_timed(lab: &Lab, ns: &str, time: u32, args: &[&str]) -> Dig {
    let d = dig_raw(ns, "127.0.0.11", time, args);
    if !d.out.status.success() || d.replies.is_empty() {
        lab.fail(&format!(
            "dig {} in {ns} got no answer from 127.0.0.11:\n{}",
            args.join(" "),
            show(&d.out)
        ));
    }
    d
}

/// Asks for `name` (type A unless `args` says otherwise) and expects exactly `want` as the A
/// records (in any order), NOERROR.
fn expect_a(lab: &Lab, ns: &str, name: &str, want: &[&str]) -> Reply {
    let d = dig(lab, ns, &[name]);
    let r = d.one().clone();
    let got: BTreeSet<String> = r.data("A").into_iter().collect();
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    if r.status != "NOERROR" || got != want {
        lab.fail(&format!(
            "dig {name} in {ns}: expected NOERROR with A {want:?}, got {} {got:?}:\n{}",
            r.status, d.text
        ));
    }
    r
}

/// Expects `status` and no answer records for `args`.
fn expect_empty(lab: &Lab, ns: &str, args: &[&str], status: &str) -> Reply {
    let d = dig(lab, ns, args);
    let r = d.one().clone();
    if r.status != status || !r.answers.is_empty() {
        lab.fail(&format!(
            "dig {} in {ns}: expected {status} with no answer, got {} with {:?}:\n{}",
            args.join(" "),
            r.status,
            r.answers,
            d.text
        ));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Upstreams: dnsmasq, a silent server and a slow relay, in the daemon's host namespace.

/// A dnsmasq serving `zone.test` on 127.0.0.1:PORT in the lab's host namespace, logging every
/// query to a file.
struct Dnsmasq {
    port: u16,
    log: PathBuf,
}

impl Dnsmasq {
    /// Starts it (kept by the lab, stopped before the daemon) and waits until it answers.
    fn start(lab: &Lab, port: u16, extra: &[String]) -> Dnsmasq {
        require_program("dnsmasq", "dnsmasq-base");
        require_program("dig", "dnsutils");
        let log = lab.dir.join(format!("dnsmasq-{port}.log"));
        let out = lab.dir.join(format!("dnsmasq-{port}.out"));
        let mut args: Vec<String> = vec![
            "--conf-file=/dev/null".into(),
            "--keep-in-foreground".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--pid-file".into(),
            "--user=root".into(),
            format!("--port={port}"),
            "--listen-address=127.0.0.1".into(),
            "--bind-interfaces".into(),
            "--log-queries".into(),
            format!("--log-facility={}", log.display()),
            // Its own names live 300 s (the default is 0: nothing would be cached).
            "--local-ttl=300".into(),
            // NXDOMAIN, not REFUSED, for what it does not know: single-label names, zone.test,
            // private reverse names.
            "--domain-needed".into(),
            "--bogus-priv".into(),
            "--local=/zone.test/".into(),
            format!("--host-record=www.zone.test,{WWW}"),
            format!("--host-record=cached.zone.test,{CACHED}"),
            format!("--host-record=slow.zone.test,{SLOW}"),
            format!("--host-record=tcp.zone.test,{TCP_NAME}"),
        ];
        for i in 1..=BIG_RECORDS {
            args.push(format!("--host-record=big.zone.test,198.18.1.{i}"));
            args.push(format!("--host-record=tcpbig.zone.test,198.18.2.{i}"));
        }
        args.extend(extra.iter().cloned());
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &lab.host.name, "dnsmasq"])
            .args(&args);
        let bg = Bg::spawn(&mut c, &out);
        lab.keep(bg);
        let d = Dnsmasq { port, log };
        let p = port.to_string();
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let r = dig_raw(
                &lab.host.name,
                "127.0.0.1",
                1,
                &["-p", &p, "ready.zone.test"],
            );
            r.out.status.success() && !r.replies.is_empty()
        });
        if !ready {
            lab.fail(&format!(
                "dnsmasq on 127.0.0.1:{port} in {} did not answer within 10 s:\n{}",
                lab.host.name,
                std::fs::read_to_string(&out).unwrap_or_default()
            ));
        }
        d
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many queries of any type for `name` it logged.
    fn queries(&self, name: &str) -> usize {
        let needle = format!("] {name} from ");
        self.log_text()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .count()
    }
}

/// A lab whose daemon forwards to one dnsmasq on 127.0.0.1:5301 of its host namespace; the
/// daemon also gets `daemon_args`.
fn dns_lab(daemon_args: &[&str], dnsmasq_extra: &[&str]) -> (Lab, Dnsmasq) {
    let mut lab = Lab::bare();
    let extra: Vec<String> = dnsmasq_extra.iter().map(|s| s.to_string()).collect();
    let up = Dnsmasq::start(&lab, UPSTREAM_PORT, &extra);
    let addr = up.addr();
    let mut args = vec!["--dns-upstream", &addr];
    args.extend_from_slice(daemon_args);
    lab.start_daemon(&args);
    (lab, up)
}

/// Binds UDP and TCP (listening, never accepting) on each port of 127.0.0.1 in `ns` and never
/// answers: a server that is up but silent.
const SILENT_PY: &str = r#"
import socket, sys, time
keep = []
for p in sys.argv[1:]:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", int(p)))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("127.0.0.1", int(p)))
    t.listen(64)
    keep += [u, t]
print("ready", flush=True)
time.sleep(3600)
"#;

/// A UDP relay that holds every query for DELAY seconds before passing it to TARGET.
const SLOW_PY: &str = r#"
import socket, sys, threading, time
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", listen))
def relay(data, peer):
    time.sleep(delay)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    try:
        u.sendto(data, ("127.0.0.1", target))
        reply, _ = u.recvfrom(65535)
        s.sendto(reply, peer)
        print("relayed after %.1f s" % delay, flush=True)
    except Exception as e:
        print("relay error: %s" % e, flush=True)
    finally:
        u.close()
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    threading.Thread(target=relay, args=(data, peer), daemon=True).start()
"#;

/// Starts a Python helper in the lab's host namespace and waits for its "ready".
fn python_helper(lab: &Lab, tag: &str, script: &str, args: &[&str]) -> PathBuf {
    require_program("python3", "python3");
    let log = lab.dir.join(format!("{tag}.log"));
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &lab.host.name,
        "python3",
        "-u",
        "-c",
        script,
    ])
    .args(args);
    let bg = Bg::spawn(&mut c, &log);
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        bg.log_text().contains("ready")
    });
    let text = bg.log_text();
    lab.keep(bg);
    if !ok {
        lab.fail(&format!("helper {tag} did not start:\n{text}"));
    }
    log
}

// ---------------------------------------------------------------------------------------------
// Local names.

#[test]
fn names_aliases_name_dot_network_and_case() {
    let (lab, up) = dns_lab(&["--dns-ttl", "42"], &[]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let a = lab.attach(
        &net,
        &na,
        "alpha",
        &["--alias", "web", "--alias", "db.internal"],
    );
    let b = lab.attach(&net, &nb, "bravo", &["--kind", "veth"]);
    let (ia, ib) = (ip_of(&a), ip_of(&b));

    for (ns, name, want) in [
        (&na, "bravo", &ib),
        (&na, "bravo.lan", &ib),
        (&na, "BRAVO", &ib),
        (&na, "Bravo.LAN.", &ib),
        (&nb, "alpha", &ia),
        (&nb, "web", &ia),
        (&nb, "WEB.lan", &ia),
        (&nb, "db.internal", &ia),
        (&nb, "db.internal.lan", &ia),
        // An endpoint finds its own names too.
        (&na, "alpha", &ia),
        (&na, "web", &ia),
    ] {
        let r = expect_a(&lab, ns, name, &[want]);
        if !r.has_flag("aa") || r.answers.iter().any(|rr| rr.ttl != 42) {
            lab.fail(&format!(
                "{name}: a local answer is authoritative with the --dns-ttl 42: {r:?}"
            ));
        }
        // The owner name is the one asked, with its case.
        let owner = r.answers[0].name.trim_end_matches('.').to_string();
        if owner != name.trim_end_matches('.') {
            lab.fail(&format!("{name}: answer owner {owner:?}"));
        }
    }
    // Over TCP as well.
    let d = dig(&lab, &na, &["+tcp", "bravo"]);
    if d.one().data("A") != vec![ib.clone()] || !d.text.contains("(TCP)") {
        lab.fail(&format!("bravo over TCP:\n{}", d.text));
    }
    // Several queries over one TCP connection (RFC 7766 reuse).
    let d = dig(
        &lab,
        &na,
        &["+tcp", "+keepopen", "bravo", "web", "alpha.lan"],
    );
    let got: Vec<Vec<String>> = d.replies.iter().map(|r| r.data("A")).collect();
    if got != vec![vec![ib.clone()], vec![ia.clone()], vec![ia.clone()]] {
        lab.fail(&format!("three queries on one TCP connection:\n{}", d.text));
    }
    // `inspect` shows the resolv.conf the container should use.
    let inspect = lab.ny_ok(&["inspect", "bravo"]);
    if !inspect.contains("nameserver 127.0.0.11") {
        lab.fail(&format!("inspect shows no resolv.conf:\n{inspect}"));
    }
    // None of these went upstream.
    let log = up.log_text();
    for name in ["bravo", "alpha", "web", "db.internal"] {
        if up.queries(name) + up.queries(&format!("{name}.lan")) != 0 {
            lab.fail(&format!("{name} was forwarded upstream:\n{log}"));
        }
    }
}

#[test]
fn ptr_answers_name_dot_network() {
    let (lab, _up) = dns_lab(&[], &[]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let a = lab.attach(&net, &na, "alpha", &["--alias", "web"]);
    let b = lab.attach(&net, &nb, "bravo", &[]);
    for (ns, ep, want) in [
        (&na, &b, "bravo.lan."),
        (&nb, &a, "alpha.lan."),
        (&na, &a, "alpha.lan."),
    ] {
        let ip = ip_of(ep);
        let d = dig(&lab, ns, &["-x", &ip]);
        let r = d.one();
        if r.status != "NOERROR" || r.data("PTR") != vec![want.to_string()] || !r.has_flag("aa") {
            lab.fail(&format!("dig -x {ip}: expected PTR {want}:\n{}", d.text));
        }
        // The default TTL of local answers is 60 s.
        if r.answers.iter().any(|rr| rr.ttl != 60) {
            lab.fail(&format!(
                "dig -x {ip}: TTL is not the default 60:\n{}",
                d.text
            ));
        }
    }
    // An address of the subnet nobody has is not local: forwarded, and the upstream says no.
    expect_empty(&lab, &na, &["-x", &sn.ip(200)], "NXDOMAIN");
}

#[test]
fn aaaa_and_mx_of_a_v4_only_name_are_nodata() {
    let (lab, up) = dns_lab(&[], &[]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    lab.attach(&net, &nb, "bravo", &["--alias", "web"]);
    for q in [
        &["AAAA", "bravo"][..],
        &["AAAA", "web"][..],
        &["AAAA", "bravo.lan"][..],
        &["MX", "bravo"][..],
        &["TXT", "web.lan"][..],
    ] {
        let r = expect_empty(&lab, &na, q, "NOERROR");
        if !r.has_flag("aa") {
            lab.fail(&format!("{q:?}: NODATA should be authoritative: {r:?}"));
        }
    }
    if up.queries("bravo") + up.queries("web") + up.queries("bravo.lan") + up.queries("web.lan")
        != 0
    {
        lab.fail(&format!(
            "NODATA names were forwarded upstream:\n{}",
            up.log_text()
        ));
    }
}

#[test]
fn unknown_names_are_forwarded_and_get_nxdomain_from_upstream() {
    let (lab, up) = dns_lab(&[], &["--local=/lan/"]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let na = lab.ns("a");
    lab.attach(&net, &na, "alpha", &[]);
    for name in ["ghost", "ghost.lan", "nosuch.zone.test"] {
        expect_empty(&lab, &na, &[name], "NXDOMAIN");
        if !wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
            up.queries(name) >= 1
        }) {
            lab.fail(&format!(
                "{name}: NXDOMAIN, but the upstream never saw the query:\n{}",
                up.log_text()
            ));
        }
    }
}

#[test]
fn round_robin_across_three_endpoints_sharing_an_alias() {
    let (lab, _up) = dns_lab(&[], &[]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let mut ips = Vec::new();
    for i in 0..3 {
        let ns = lab.ns(&format!("s{i}"));
        let ep = lab.attach(&net, &ns, &format!("svc{i}"), &["--alias", "api"]);
        ips.push(ip_of(&ep));
    }
    let nc = lab.ns("c");
    lab.attach(&net, &nc, "client", &[]);
    let want: BTreeSet<String> = ips.iter().cloned().collect();
    // 60 queries in one dig run (one answer each).
    let names = vec!["api"; 60];
    let d = dig(&lab, &nc, &names);
    if d.replies.len() != names.len() {
        lab.fail(&format!(
            "expected {} answers, got {}:\n{}",
            names.len(),
            d.replies.len(),
            d.text
        ));
    }
    let mut orders = BTreeSet::new();
    let mut firsts = BTreeSet::new();
    for r in &d.replies {
        let got = r.data("A");
        let set: BTreeSet<String> = got.iter().cloned().collect();
        if r.status != "NOERROR" || got.len() != 3 || set != want {
            lab.fail(&format!(
                "api: expected all three addresses {want:?}, got {} {got:?}",
                r.status
            ));
        }
        firsts.insert(got[0].clone());
        orders.insert(got);
    }
    // Shuffled per query: with 60 uniform shuffles every address comes first at some point
    // (missing one has probability 3 * (2/3)^60, about 1e-10).
    if orders.len() < 2 || firsts != want {
        lab.fail(&format!(
            "api: the order does not vary enough over 60 queries: {} distinct orders, first \
             addresses {firsts:?}",
            orders.len()
        ));
    }
    // The endpoints' own names still give one address each.
    for (i, ip) in ips.iter().enumerate() {
        expect_a(&lab, &nc, &format!("svc{i}"), &[ip]);
    }
}

#[test]
fn networks_are_isolated_in_dns() {
    let (lab, up) = dns_lab(&[], &["--local=/red/", "--local=/blue/"]);
    let s1 = Subnet::random();
    let s2 = s1.other();
    lab.network("red", &s1, &[]);
    lab.network("blue", &s2, &[]);
    let (na, nb, nm) = (lab.ns("a"), lab.ns("b"), lab.ns("m"));
    let a = lab.attach("red", &na, "alpha", &["--alias", "shared"]);
    let b = lab.attach("blue", &nb, "bravo", &["--alias", "shared"]);
    // m is on both networks, under one name, with one resolver listening for both.
    let m_red = lab.attach("red", &nm, "multi", &[]);
    let m_blue = lab.attach("blue", &nm, "multi", &["--ifname", "eth1"]);
    let (ia, ib) = (ip_of(&a), ip_of(&b));

    // From red, blue's names do not exist (forwarded, and the upstream says NXDOMAIN).
    for name in ["bravo", "bravo.blue"] {
        expect_empty(&lab, &na, &[name], "NXDOMAIN");
    }
    expect_empty(&lab, &na, &["-x", &ib], "NXDOMAIN");
    for name in ["alpha", "alpha.red"] {
        expect_empty(&lab, &nb, &[name], "NXDOMAIN");
    }
    expect_empty(&lab, &nb, &["-x", &ia], "NXDOMAIN");
    // A name on both networks: each side sees only its own.
    expect_a(&lab, &na, "shared", &[&ia]);
    expect_a(&lab, &nb, "shared", &[&ib]);
    expect_a(&lab, &na, "multi", &[&ip_of(&m_red)]);
    expect_a(&lab, &nb, "multi", &[&ip_of(&m_blue)]);
    // The namespace on both networks sees both.
    expect_a(&lab, &nm, "alpha", &[&ia]);
    expect_a(&lab, &nm, "bravo.blue", &[&ib]);
    expect_a(&lab, &nm, "shared", &[&ia, &ib]);
    expect_a(&lab, &nm, "multi", &[&ip_of(&m_red), &ip_of(&m_blue)]);
    expect_a(&lab, &nm, "multi.blue", &[&ip_of(&m_blue)]);
    if up.queries("bravo") == 0 {
        lab.fail(&format!(
            "bravo from red should have been forwarded:\n{}",
            up.log_text()
        ));
    }
    // m leaves blue: it keeps red's names and loses blue's at once.
    lab.ny_ok(&["detach", "blue", "multi"]);
    expect_a(&lab, &nm, "alpha", &[&ia]);
    expect_empty(&lab, &nm, &["bravo"], "NXDOMAIN");
    expect_a(&lab, &nm, "shared", &[&ia]);
}

#[test]
fn attach_detach_and_rename_take_effect_at_once() {
    let (lab, _up) = dns_lab(&[], &[]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let na = lab.ns("a");
    lab.attach(&net, &na, "alpha", &[]);
    let nc = lab.ns("c");
    expect_empty(&lab, &na, &["charlie"], "NXDOMAIN");
    // No waiting between the CLI call and the query: it must resolve at once.
    let c = lab.attach(&net, &nc, "charlie", &["--alias", "cache"]);
    let ic = ip_of(&c);
    expect_a(&lab, &na, "charlie", &[&ic]);
    expect_a(&lab, &na, "cache", &[&ic]);
    // The new endpoint's own resolver is up when attach returns.
    expect_a(&lab, &nc, "alpha", &[&ip_of(&lab.endpoint(&net, "alpha"))]);

    lab.ny_ok(&["rename", &net, "charlie", "delta"]);
    expect_a(&lab, &na, "delta", &[&ic]);
    expect_a(&lab, &na, "cache", &[&ic]);
    expect_empty(&lab, &na, &["charlie"], "NXDOMAIN");
    let d = dig(&lab, &na, &["-x", &ic]);
    if d.one().data("PTR") != vec!["delta.lan.".to_string()] {
        lab.fail(&format!("PTR after rename:\n{}", d.text));
    }

    lab.ny_ok(&["detach", &net, "delta"]);
    expect_empty(&lab, &na, &["delta"], "NXDOMAIN");
    expect_empty(&lab, &na, &["cache"], "NXDOMAIN");
    expect_empty(&lab, &na, &["-x", &ic], "NXDOMAIN");
    // Its namespace is on no network any more: nothing answers on 127.0.0.11 there.
    let d = dig_raw(&nc, "127.0.0.11", 1, &["alpha"]);
    if d.out.status.success() || !d.replies.is_empty() {
        lab.fail(&format!(
            "the resolver still answers in a detached namespace:\n{}",
            d.text
        ));
    }
    // Attached again under its first name: back at once, and its resolver with it.
    let c2 = lab.attach(&net, &nc, "charlie", &[]);
    expect_a(&lab, &na, "charlie", &[&ip_of(&c2)]);
    expect_a(&lab, &nc, "alpha", &[&ip_of(&lab.endpoint(&net, "alpha"))]);
}

#[test]
fn getent_inside_netyard_run_uses_the_embedded_resolver() {
    let (lab, _up) = dns_lab(&[], &[]);
    let sn = Subnet::random();
    let net = lab.network("lan", &sn, &[]);
    let nb = lab.ns("b");
    let b = lab.attach(&net, &nb, "bravo", &["--alias", "web"]);
    let ib = ip_of(&b);
    let script = "cat /etc/resolv.conf; \
                  for n in bravo bravo.lan web runner self www.zone.test; do \
                  echo \"== $n\"; getent hosts $n; done; \
                  getent hosts ghost; echo \"ghost=$?\"";
    let o = lab.ny(&[
        "run",
        "--network",
        &net,
        "--name",
        "runner",
        "--alias",
        "self",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        lab.fail(&format!("netyard run failed:\n{}", show(&o)));
    }
    let section = |n: &str| -> String {
        out.split(&format!("== {n}\n"))
            .nth(1)
            .and_then(|s| s.split("==").next())
            .unwrap_or("")
            .to_string()
    };
    if !out.contains("nameserver 127.0.0.11") || !out.contains("options ndots:0") {
        lab.fail(&format!("resolv.conf inside netyard run:\n{out}"));
    }
    for (n, want) in [
        ("bravo", ib.as_str()),
        ("bravo.lan", ib.as_str()),
        ("web", ib.as_str()),
        ("www.zone.test", WWW),
    ] {
        let s = section(n);
        if s.split_whitespace().next() != Some(want) {
            lab.fail(&format!(
                "getent hosts {n}: expected {want}, got {s:?}\n{out}"
            ));
        }
    }
    // Its own name and alias resolve to its own (fresh) address, on the network's subnet.
    for n in ["runner", "self"] {
        let s = section(n);
        let prefix = format!("10.{}.{}.", sn.a, sn.b);
        if !s.starts_with(&prefix) {
            lab.fail(&format!("getent hosts {n}: got {s:?}\n{out}"));
        }
    }
    // getent's exit status 2: "key not found".
    if !out.contains("ghost=2") {
        lab.fail(&format!("getent hosts ghost should fail with 2:\n{out}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarding.

#[test]
fn forwarding_over_udp_and_tcp() {
    let (lab, up) = dns_lab(&[], &[]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let na = lab.ns("a");
    lab.attach(&net, &na, "alpha", &[]);
    let r = expect_a(&lab, &na, "www.zone.test", &[WWW]);
    // The upstream's TTL (dnsmasq's --local-ttl 300), not the local one.
    if r.answers.iter().any(|rr| rr.ttl > 300 || rr.ttl < 290) {
        lab.fail(&format!("relayed answer's TTL: {r:?}"));
    }
    let d = dig(&lab, &na, &["+tcp", "tcp.zone.test"]);
    if d.one().data("A") != vec![TCP_NAME.to_string()] || !d.text.contains("(TCP)") {
        lab.fail(&format!("tcp.zone.test over TCP:\n{}", d.text));
    }
    // 40 records without EDNS: over UDP the upstream could send only a truncated answer, so a
    // full answer proves the query went upstream over TCP too.
    let d = dig(&lab, &na, &["+tcp", "+noedns", "tcpbig.zone.test"]);
    let r = d.one();
    if r.has_flag("tc") || r.data("A").len() != usize::from(BIG_RECORDS) {
        lab.fail(&format!(
            "tcpbig.zone.test over TCP: expected {BIG_RECORDS} records:\n{}",
            d.text
        ));
    }
    for name in ["www.zone.test", "tcp.zone.test", "tcpbig.zone.test"] {
        if up.queries(name) != 1 {
            lab.fail(&format!(
                "{name}: the upstream should have seen it once:\n{}",
                up.log_text()
            ));
        }
    }
}

#[test]
fn truncated_udp_answer_makes_the_client_retry_over_tcp() {
    let (lab, up) = dns_lab(&[], &[]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let na = lab.ns("a");
    lab.attach(&net, &na, "alpha", &[]);
    // UDP only (+ignore: dig does not retry): the answer is marked truncated.
    let d = dig(&lab, &na, &["+noedns", "+ignore", "big.zone.test"]);
    let r = d.one();
    if r.status != "NOERROR" || !r.has_flag("tc") {
        lab.fail(&format!(
            "big.zone.test over UDP without EDNS: expected TC:\n{}",
            d.text
        ));
    }
    // A normal client sees TC and retries over TCP, where the whole answer comes.
    let d = dig(&lab, &na, &["+noedns", "big.zone.test"]);
    let r = d.one();
    let want: BTreeSet<String> = (1..=BIG_RECORDS).map(|i| format!("198.18.1.{i}")).collect();
    let got: BTreeSet<String> = r.data("A").into_iter().collect();
    if !d.text.contains("Truncated, retrying in TCP mode") || got != want || r.has_flag("tc") {
        lab.fail(&format!(
            "big.zone.test: expected a TC answer, the TCP retry and {BIG_RECORDS} records:\n{}",
            d.text
        ));
    }
    // With EDNS (dig's default 1232 bytes) the same answer fits in one datagram.
    let d = dig(&lab, &na, &["big.zone.test"]);
    if d.text.contains("Truncated") || d.one().data("A").len() != usize::from(BIG_RECORDS) {
        lab.fail(&format!("big.zone.test with EDNS:\n{}", d.text));
    }
    // The full answer is cached now: without EDNS the resolver truncates it itself, and the
    // TCP retry is answered from the cache, with no new upstream query.
    let before = up.queries("big.zone.test");
    let d = dig(&lab, &na, &["+noedns", "+ignore", "big.zone.test"]);
    if !d.one().has_flag("tc") {
        lab.fail(&format!(
            "cached big.zone.test over UDP without EDNS:\n{}",
            d.text
        ));
    }
    let d = dig(&lab, &na, &["+noedns", "big.zone.test"]);
    if !d.text.contains("Truncated, retrying in TCP mode")
        || d.one().data("A").len() != usize::from(BIG_RECORDS)
    {
        lab.fail(&format!("cached big.zone.test with TCP retry:\n{}", d.text));
    }
    std::thread::sleep(Duration::from_millis(300));
    if up.queries("big.zone.test") != before {
        lab.fail(&format!(
            "cached big.zone.test went upstream again:\n{}",
            up.log_text()
        ));
    }
}

#[test]
fn cache_answers_repeated_queries_within_the_ttl() {
    let (lab, up) = dns_lab(&[], &[]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    lab.attach(&net, &nb, "bravo", &[]);
    let first = expect_a(&lab, &na, "cached.zone.test", &[CACHED]);
    if !wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        up.queries("cached.zone.test") == 1
    }) {
        lab.fail(&format!(
            "the first query did not reach the upstream:\n{}",
            up.log_text()
        ));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let second = expect_a(&lab, &na, "cached.zone.test", &[CACHED]);
    // The cache is the daemon's: another namespace hits it too.
    let third = expect_a(&lab, &nb, "CACHED.zone.test", &[CACHED]);
    std::thread::sleep(Duration::from_millis(500));
    let n = up.queries("cached.zone.test");
    if n != 1 {
        lab.fail(&format!(
            "the upstream saw {n} queries for cached.zone.test, expected one (the rest from the \
             cache):\n{}",
            up.log_text()
        ));
    }
    // Cached answers count their TTL down: at most 300, and lower after a second in the cache.
    let (t1, t2, t3) = (
        first.answers[0].ttl,
        second.answers[0].ttl,
        third.answers[0].ttl,
    );
    if t1 > 300 || t2 >= t1 || t3 > t2 {
        lab.fail(&format!(
            "TTLs of the first, second and third answers: {t1}, {t2}, {t3}"
        ));
    }
    // Over TCP the cache answers as well.
    let d = dig(&lab, &na, &["+tcp", "cached.zone.test"]);
    if d.one().data("A") != vec![CACHED.to_string()] || up.queries("cached.zone.test") != 1 {
        lab.fail(&format!("cached answer over TCP:\n{}", d.text));
    }
}

/// The daemon with only dead upstreams answers SERVFAIL within `bound`, over UDP and TCP.
fn expect_servfail_within(lab: &Lab, ns: &str, bound: Duration) {
    for (i, tcp) in [false, true].into_iter().enumerate() {
        let name = format!("down{i}.zone.test");
        let mut args = vec![name.as_str()];
        if tcp {
            args.insert(0, "+tcp");
        }
        let d = dig_timed(lab, ns, 15, &args);
        let r = d.one();
        if r.status != "SERVFAIL" || d.elapsed > bound {
            lab.fail(&format!(
                "{name} (tcp: {tcp}): expected SERVFAIL within {bound:?}, got {} after {:?}:\n{}",
                r.status, d.elapsed, d.text
            ));
        }
    }
    // SERVFAIL is not cached: the same query fails the same way again.
    let d = dig_timed(lab, ns, 15, &["down0.zone.test"]);
    if d.one().status != "SERVFAIL" || d.elapsed > bound {
        lab.fail(&format!("down0.zone.test asked again:\n{}", d.text));
    }
}

#[test]
fn upstream_down_gives_servfail_quickly() {
    // Nothing listens on the port: ICMP port unreachable / RST.
    let lab = Lab::with_daemon_args(&["--dns-upstream", "127.0.0.1:5399"]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    let b = lab.attach(&net, &nb, "bravo", &[]);
    expect_servfail_within(&lab, &na, Duration::from_secs(3));
    expect_a(&lab, &na, "bravo", &[&ip_of(&b)]);
}

#[test]
fn silent_upstreams_give_servfail_within_the_deadline() {
    // Three servers that receive and never answer (UDP bound, TCP listening, never accepting):
    // each costs the per-server timeout, and the forward deadline bounds the whole.
    let mut lab = Lab::bare();
    python_helper(&lab, "silent", SILENT_PY, &["5401", "5402", "5403"]);
    lab.start_daemon(&[
        "--dns-upstream",
        "127.0.0.1:5401",
        "--dns-upstream",
        "127.0.0.1:5402",
        "--dns-upstream",
        "127.0.0.1:5403",
    ]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    let b = lab.attach(&net, &nb, "bravo", &[]);
    expect_servfail_within(&lab, &na, Duration::from_secs(8));
    expect_a(&lab, &na, "bravo", &[&ip_of(&b)]);
}

#[test]
fn slow_upstream_answer_still_arrives() {
    let mut lab = Lab::bare();
    let up = Dnsmasq::start(&lab, UPSTREAM_PORT, &[]);
    let relay_log = python_helper(&lab, "slow", SLOW_PY, &["5310", "5301", "1.0"]);
    lab.start_daemon(&["--dns-upstream", "127.0.0.1:5310"]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let na = lab.ns("a");
    lab.attach(&net, &na, "alpha", &[]);
    let d = dig_timed(&lab, &na, 5, &["slow.zone.test"]);
    let r = d.one();
    if r.data("A") != vec![SLOW.to_string()] || d.elapsed < Duration::from_millis(900) {
        lab.fail(&format!(
            "slow.zone.test: expected {SLOW} after about 1 s, got {:?} after {:?}:\n{}\nrelay: {}",
            r.data("A"),
            d.elapsed,
            d.text,
            std::fs::read_to_string(&relay_log).unwrap_or_default()
        ));
    }
    if up.queries("slow.zone.test") != 1 {
        lab.fail(&format!("upstream log:\n{}", up.log_text()));
    }
    // The answer is cached: the next one is immediate.
    let d = dig_timed(&lab, &na, 5, &["slow.zone.test"]);
    if d.one().data("A") != vec![SLOW.to_string()] || d.elapsed > Duration::from_millis(800) {
        lab.fail(&format!(
            "second slow.zone.test took {:?}:\n{}",
            d.elapsed, d.text
        ));
    }
}

/// Three upstreams: `first` (silent or closed), then dnsmasq A (who.zone.test is 198.18.0.2),
/// then dnsmasq B (198.18.0.3). The answer must come from A, and B must not be asked.
fn three_upstreams_first_dead(silent: bool) {
    let mut lab = Lab::bare();
    if silent {
        python_helper(&lab, "silent", SILENT_PY, &["5401"]);
    }
    let a = Dnsmasq::start(
        &lab,
        5302,
        &["--host-record=who.zone.test,198.18.0.2".into()],
    );
    let b = Dnsmasq::start(
        &lab,
        5303,
        &["--host-record=who.zone.test,198.18.0.3".into()],
    );
    lab.start_daemon(&[
        "--dns-upstream",
        "127.0.0.1:5401",
        "--dns-upstream",
        &a.addr(),
        "--dns-upstream",
        &b.addr(),
    ]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let na = lab.ns("a");
    lab.attach(&net, &na, "alpha", &[]);
    for (name, tcp) in [("who.zone.test", false), ("www.zone.test", true)] {
        let mut args = vec![name];
        if tcp {
            args.insert(0, "+tcp");
        }
        let d = dig_timed(&lab, &na, 10, &args);
        let r = d.one();
        let want = if name == "who.zone.test" {
            "198.18.0.2"
        } else {
            WWW
        };
        // A silent first server costs its 2 s timeout; a closed one nothing.
        let bound = if silent {
            Duration::from_secs(4)
        } else {
            Duration::from_millis(1500)
        };
        if r.data("A") != vec![want.to_string()] || d.elapsed > bound {
            lab.fail(&format!(
                "{name} (tcp: {tcp}): expected {want} from the second upstream within {bound:?}, \
                 got {:?} after {:?}:\n{}",
                r.data("A"),
                d.elapsed,
                d.text
            ));
        }
        if a.queries(name) != 1 || b.queries(name) != 0 {
            lab.fail(&format!(
                "{name}: the second upstream should have answered alone:\nsecond:\n{}\nthird:\n{}",
                a.log_text(),
                b.log_text()
            ));
        }
    }
}

#[test]
fn three_upstreams_first_silent_second_answers() {
    three_upstreams_first_dead(true);
}

#[test]
fn three_upstreams_first_closed_second_answers() {
    three_upstreams_first_dead(false);
}

// ---------------------------------------------------------------------------------------------
// Bad input.

/// Sends malformed messages to 127.0.0.11:53 over UDP and TCP, one fresh socket each, and
/// prints one JSON line per case: the id sent and the reply (null when none came in 0.5 s).
const BAD_INPUT_PY: &str = r#"
import json, random, socket, struct
random.seed(20240611)
def hdr(qid, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)
Q = struct.pack(">HH", 1, 1)
cases = []
for i in range(40):
    n = random.randint(1, 300)
    cases.append(("random-%d" % i, bytes(random.getrandbits(8) for _ in range(n))))
# Random bodies behind a valid query header.
for i in range(10):
    cases.append(("random-body-%d" % i, hdr(0x4000 + i, qd=random.randint(1, 5), an=random.randint(0, 5)) + bytes(random.getrandbits(8) for _ in range(random.randint(1, 100)))))
full = hdr(0x1234)
for n in (1, 2, 5, 11):
    cases.append(("short-header-%d" % n, full[:n]))
cases.append(("header-only-qd1", hdr(0x1235)))
cases.append(("cut-name", hdr(0x1236) + b"\x03www\x07exa"))
cases.append(("cut-type", hdr(0x1237) + b"\x03www\x00\x00"))
cases.append(("label-past-end", hdr(0x1238) + b"\x3fab"))
cases.append(("100-questions", hdr(0x1239, qd=100) + (b"\x05alpha\x00" + Q) * 100))
cases.append(("2-questions", hdr(0x123a, qd=2) + (b"\x05alpha\x00" + Q) * 2))
cases.append(("0-questions", hdr(0x123b, qd=0)))
cases.append(("compression-self-loop", hdr(0x123c) + b"\xc0\x0c" + Q))
cases.append(("compression-2-loop", hdr(0x123d) + b"\x01a\xc0\x10\xc0\x0c" + Q))
cases.append(("compression-forward", hdr(0x123e) + b"\xc0\x40" + Q))
cases.append(("compression-chain", hdr(0x123f) + b"".join(struct.pack(">H", 0xc000 | (12 + 2 * (k + 1))) for k in range(40)) + b"\xc0\x0c" + Q))
cases.append(("bad-label-type", hdr(0x1240) + b"\x80abc\x00" + Q))
cases.append(("name-too-long", hdr(0x1241) + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x00" + Q))
cases.append(("lying-counts", hdr(0x1242, qd=1, an=5, ns=5, ar=5) + b"\x05alpha\x00" + Q))
cases.append(("response-sent-to-us", hdr(0x1243, flags=0x8180) + b"\x05alpha\x00" + Q))

def verdict(sent, reply):
    if reply is None:
        return None
    if len(reply) < 12:
        return {"len": len(reply)}
    rid, flags = struct.unpack(">HH", reply[:4])
    return {"id": rid, "qr": flags >> 15, "opcode": (flags >> 11) & 15, "rcode": flags & 15, "len": len(reply)}

def sent_id(b):
    return struct.unpack(">H", b[:2])[0] if len(b) >= 2 else None

for name, payload in cases:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.sendto(payload, ("127.0.0.11", 53))
    try:
        reply = s.recv(65535)
    except socket.timeout:
        reply = None
    s.close()
    print(json.dumps({"case": "udp " + name, "sent_id": sent_id(payload), "reply": verdict(payload, reply)}))

# A burst of all of them at once, 20 times over (the kernel may drop some of the burst and of
# its answers: socket buffers are finite), then a normal query on the same socket, retried as a
# stub resolver would.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    for _, payload in cases:
        s.sendto(payload, ("127.0.0.11", 53))
good = hdr(0x7777) + b"\x05alpha\x00" + Q
got = None
for attempt in range(3):
    s.sendto(good, ("127.0.0.11", 53))
    s.settimeout(1)
    try:
        while got is None:
            r = s.recv(65535)
            if r[:2] == b"\x77\x77":
                got = verdict(good, r)
    except socket.timeout:
        pass
    if got is not None:
        break
print(json.dumps({"case": "good after burst", "sent_id": 0x7777, "reply": got, "good": True}))

# TCP: framed garbage, framed 100 questions, a frame that lies about its length.
def tcp_case(name, data, shut=False):
    t = socket.create_connection(("127.0.0.11", 53), timeout=3)
    t.sendall(data)
    if shut:
        t.shutdown(socket.SHUT_WR)
    t.settimeout(2)
    buf = b""
    try:
        while True:
            chunk = t.recv(65535)
            if not chunk:
                break
            buf += chunk
            if len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                break
    except socket.timeout:
        pass
    t.close()
    reply = buf[2:] if len(buf) >= 2 else None
    payload = data[2:]
    print(json.dumps({"case": "tcp " + name, "sent_id": sent_id(payload), "reply": verdict(payload, reply)}))

for name, payload in [c for c in cases if c[0].startswith(("random-1", "100-q", "compression", "cut-name", "lying"))]:
    tcp_case(name, struct.pack(">H", len(payload)) + payload, shut=True)
tcp_case("length-lies", struct.pack(">H", 65535) + b"\x12\x34" * 5, shut=True)
tcp_case("zero-length", struct.pack(">H", 0), shut=True)
"#;

#[test]
fn malformed_queries_get_formerr_or_silence_and_service_goes_on() {
    let (lab, _up) = dns_lab(&[], &[]);
    let net = lab.network("lan", &Subnet::random(), &[]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    let a = lab.attach(&net, &na, "alpha", &[]);
    let b = lab.attach(&net, &nb, "bravo", &[]);
    let o = lab.ns_cmd(
        &nb,
        &["python3", "-c", BAD_INPUT_PY],
        Duration::from_secs(120),
    );
    if !o.status.success() {
        lab.fail(&format!("the bad-input script failed:\n{}", show(&o)));
    }
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut answered = 0;
    let mut silent = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| lab.fail(&format!("bad script output {line:?}: {e}")));
        let case = v["case"].as_str().unwrap_or("?");
        let reply = &v["reply"];
        if v["good"] == true {
            if reply["rcode"] != 0 || reply["qr"] != 1 {
                lab.fail(&format!(
                    "a normal query after the burst got {reply} (wanted NOERROR):\n{text}"
                ));
            }
            continue;
        }
        if reply.is_null() {
            silent += 1;
            continue;
        }
        answered += 1;
        // Anything that is answered is answered FORMERR, as a response, with the id sent.
        // (NOTIMP is allowed for random bytes that happen to parse with another opcode.)
        let rcode = reply["rcode"].as_u64();
        let rcode_ok = rcode == Some(1) || (case.contains("random") && rcode == Some(4));
        if reply["qr"] != 1 || !rcode_ok || reply["id"] != v["sent_id"] {
            lab.fail(&format!(
                "{case}: expected FORMERR with the id sent or no answer, got {reply}:\n{text}"
            ));
        }
        if case.contains("response-sent-to-us") {
            lab.fail(&format!(
                "{case}: a response must never be answered: {reply}"
            ));
        }
    }
    // The structured cases have a readable header: they must get FORMERR, not silence.
    for must in [
        "udp 100-questions",
        "udp 2-questions",
        "udp compression-self-loop",
        "udp compression-2-loop",
        "udp lying-counts",
        "udp cut-name",
        "tcp 100-questions",
    ] {
        let got = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["case"] == must)
            .map(|v| v["reply"]["rcode"].clone());
        if got != Some(Value::from(1)) {
            lab.fail(&format!("{must}: expected FORMERR, got {got:?}:\n{text}"));
        }
    }
    eprintln!("bad input: {answered} answered FORMERR, {silent} dropped");
    // The daemon still runs and still answers everybody, over UDP and TCP.
    if !lab.daemon_running() {
        lab.fail("the daemon died on malformed queries");
    }
    expect_a(&lab, &nb, "alpha", &[&ip_of(&a)]);
    expect_a(&lab, &na, "bravo", &[&ip_of(&b)]);
    let d = dig(&lab, &nb, &["+tcp", "alpha"]);
    if d.one().data("A") != vec![ip_of(&a)] {
        lab.fail(&format!("TCP after bad input:\n{}", d.text));
    }
    expect_a(&lab, &nb, "www.zone.test", &[WWW]);
}

// ---------------------------------------------------------------------------------------------
// Internal networks.

#[test]
fn internal_network_resolves_local_names_and_refuses_the_rest() {
    let (lab, up) = dns_lab(&[], &[]);
    let sn = Subnet::random();
    let net = lab.network("sealed", &sn, &["--internal"]);
    let (na, nb) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &na, "alpha", &[]);
    let b = lab.attach(&net, &nb, "bravo", &["--alias", "db"]);
    let ib = ip_of(&b);
    expect_a(&lab, &na, "bravo", &[&ib]);
    expect_a(&lab, &na, "db.sealed", &[&ib]);
    expect_empty(&lab, &na, &["AAAA", "bravo"], "NOERROR");
    let d = dig(&lab, &na, &["-x", &ib]);
    if d.one().data("PTR") != vec!["bravo.sealed.".to_string()] {
        lab.fail(&format!("PTR on an internal network:\n{}", d.text));
    }
    for q in [
        &["www.zone.test"][..],
        &["+tcp", "www.zone.test"][..],
        &["ghost"][..],
        &["-x", &sn.ip(200)][..],
    ] {
        expect_empty(&lab, &na, q, "REFUSED");
    }
    std::thread::sleep(Duration::from_millis(300));
    if up.queries("www.zone.test") + up.queries("ghost") != 0 {
        lab.fail(&format!(
            "an internal network's query went upstream:\n{}",
            up.log_text()
        ));
    }
}
