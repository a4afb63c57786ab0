//! Issue 17, metrics: `GET /metrics` on the API socket and on `--metrics-addr`, in
//! Prometheus's text format, read back with a Prometheus text-format parser
//! (`prometheus-parse`).
//!
//! A daemon with two endpoints (a TAP and a veth) is scraped over both, then the endpoints
//! ping each other and one resolves the other's name through 127.0.0.11 (local names only:
//! nothing leaves the lab), and both are scraped again: the port counters, the MAC table's,
//! the flood count and the resolver's count and latency histogram moved with the traffic, and
//! the labels name the endpoints as `stats` does.

mod common;

use std::time::Duration;

use common::{cmd, require_program, show, Lab, Subnet};
use prometheus_parse::{Scrape, Value};

/// The metrics listener's address inside the lab's own "host" namespace (no clash with other
/// tests: each lab has its own loopback).
const METRICS_ADDR: &str = "127.0.0.1:9495";

fn api_get(lab: &Lab, path: &str) -> (String, String, String) {
    split_http(lab, &lab.api_get_raw(path))
}

fn split_http(lab: &Lab, answer: &str) -> (String, String, String) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| lab.fail(&format!("not an HTTP answer: {answer:?}")));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// `GET PATH` on `--metrics-addr`, from inside the lab's host namespace (python's http client,
/// as the daemon listens on that namespace's loopback); returns (status line, headers, body).
fn tcp_get(lab: &Lab, path: &str) -> (String, String, String) {
    const GET: &str = r#"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=20)
s.sendall(("GET %s HTTP/1.0\r\nHost: netyard\r\n\r\n" % sys.argv[2]).encode())
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
"#;
    let script = lab.write_file("get.py", GET);
    let o = cmd(
        &[
            "ip",
            "netns",
            "exec",
            &lab.host.name,
            "python3",
            &script,
            METRICS_ADDR,
            path,
        ],
        Duration::from_secs(30),
    );
    if !o.status.success() {
        lab.fail(&format!("GET {path} on {METRICS_ADDR}: {}", show(&o)));
    }
    split_http(lab, &String::from_utf8_lossy(&o.stdout))
}

/// Parses a scrape, after checking it is a 200 in the text format.
fn parse(lab: &Lab, (status, headers, body): (String, String, String)) -> Scrape {
    if !status.contains(" 200 ") {
        lab.fail(&format!("scrape answered {status}:\n{body}"));
    }
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "Prometheus text format's content type: {headers}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| lab.fail(&format!("prometheus-parse refused the scrape: {e}\n{body}")))
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
        Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
        Value::Summary(_) => f64::NAN,
    }
}

/// The value of the one sample of `metric` whose labels include `labels`; fails if there is
/// none or more than one.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| number(&s.value))
        .collect();
    match found.as_slice() {
        [v] => *v,
        _ => panic!(
            "{} samples of {metric}{labels:?}; the scrape has: {:?}",
            found.len(),
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == metric)
                .map(|s| format!("{:?} {:?}", s.labels, s.value))
                .collect::<Vec<_>>()
        ),
    }
}

#[test]
fn scrapes_over_the_api_and_metrics_addr_move_with_traffic_and_name_the_endpoints() {
    require_program("dig", "dnsutils");
    require_program("python3", "python3");
    let mut lab = Lab::bare();
    lab.start_daemon(&["--metrics-addr", METRICS_ADDR]);
    let subnet = Subnet::random();
    let net = lab.network(&format!("m{}", lab.id), &subnet, &[]);
    let (ns0, ns1) = (lab.ns("a"), lab.ns("b"));
    lab.attach(&net, &ns0, "web", &["--kind", "tap"]);
    let e1 = lab.attach(&net, &ns1, "db", &["--kind", "veth"]);
    let db_ip = e1["ip"].as_str().unwrap_or_default().to_string();

    let api0 = parse(&lab, api_get(&lab, "/metrics"));
    let tcp0 = parse(&lab, tcp_get(&lab, "/metrics"));

    // Traffic: web pings db (ARP is flooded, then unicast both ways) and asks for its name.
    lab.assert_ping(&ns0, &db_ip);
    const QUERIES: usize = 4;
    for _ in 0..QUERIES {
        let o = cmd(
            &[
                "ip",
                "netns",
                "exec",
                &ns0,
                "dig",
                "+short",
                "+time=2",
                "+tries=1",
                "@127.0.0.11",
                "db",
            ],
            Duration::from_secs(10),
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&db_ip),
            "dig db from web: {}",
            show(&o)
        );
    }

    let api1 = parse(&lab, api_get(&lab, "/metrics"));
    let tcp1 = parse(&lab, tcp_get(&lab, "/metrics"));

    let web = [
        ("network", net.as_str()),
        ("endpoint", "web"),
        ("kind", "tap"),
    ];
    let db = [
        ("network", net.as_str()),
        ("endpoint", "db"),
        ("kind", "veth"),
    ];
    let gw = [
        ("network", net.as_str()),
        ("endpoint", "(gateway)"),
        ("kind", "gateway"),
    ];
    let on_net = [("network", net.as_str())];
    for (what, before, after) in [
        ("API socket", &api0, &api1),
        ("--metrics-addr", &tcp0, &tcp1),
    ] {
        let moved = |metric: &str, labels: &[(&str, &str)]| {
            value(after, metric, labels) - value(before, metric, labels)
        };
        // The pings: three echo requests web -> db, three replies back.
        for (metric, labels) in [
            ("netyard_port_receive_packets_total", &web),
            ("netyard_port_transmit_packets_total", &db),
            ("netyard_port_receive_packets_total", &db),
            ("netyard_port_transmit_packets_total", &web),
        ] {
            assert!(
                moved(metric, labels) >= 3.0,
                "{what}: {metric}{labels:?} moved {} with 3 pings",
                moved(metric, labels)
            );
        }
        assert!(
            moved("netyard_port_receive_bytes_total", &web) >= 3.0 * 98.0,
            "{what}: web's received bytes cover three 98-byte echo requests"
        );
        // The gateway's row is there too, as in `stats`.
        value(after, "netyard_port_receive_packets_total", &gw);
        assert!(
            value(after, "netyard_fdb_entries", &on_net) >= 2.0,
            "{what}: both endpoints' MACs are in the table"
        );
        assert!(value(after, "netyard_fdb_learned_total", &on_net) >= 2.0);
        assert!(
            moved("netyard_flood_frames_total", &on_net) >= 1.0,
            "{what}: the ARP request was flooded"
        );
        let local = [("rcode", "NOERROR"), ("source", "local")];
        assert!(
            moved("netyard_dns_queries_total", &local) >= QUERIES as f64,
            "{what}: {QUERIES} local answers counted"
        );
        assert!(
            moved("netyard_dns_latency_seconds_count", &[]) >= QUERIES as f64,
            "{what}: {QUERIES} answers in the latency histogram"
        );
        assert_eq!(
            value(
                after,
                "netyard_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
        for (metric, labels) in [
            (
                "netyard_flows",
                vec![("network", net.as_str()), ("proto", "udp")],
            ),
            ("netyard_flows_created_total", on_net.to_vec()),
            (
                "netyard_published_connections_total",
                vec![("network", net.as_str()), ("proto", "tcp")],
            ),
            ("netyard_etcd_errors_total", vec![("kind", "request")]),
        ] {
            value(after, metric, &labels);
        }
    }
    // The endpoints are named as `stats` names them, and nothing else is.
    let mut names: Vec<&str> = api1
        .samples
        .iter()
        .filter(|s| s.metric == "netyard_port_receive_packets_total")
        .filter_map(|s| s.labels.get("endpoint"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["(gateway)", "db", "web"]);
    // The TCP listener serves only /metrics.
    let (status, _, _) = tcp_get(&lab, "/v1/stats");
    assert!(
        status.contains(" 404 "),
        "/v1/stats on --metrics-addr: {status}"
    );
}

#[test]
fn a_bad_metrics_addr_is_refused_naming_the_flag() {
    let lab = Lab::bare();
    for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999"] {
        let o = lab.daemon_expect_exit(&["--ephemeral", "--metrics-addr", bad]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("metrics-addr") && err.contains(bad),
            "--metrics-addr {bad}: {}",
            show(&o)
        );
    }
}
