//! Rates from two samples of the daemon's counters: a pure function of the samples and the
//! times they were taken (no clock read here, so the tests give both).
//!
//! A counter's rate is its increase divided by the time between the samples. A counter lower
//! than before was reset (the daemon restarted, or the port was made again under its name):
//! its whole value is taken as the increase, as Prometheus's `rate()` does. A port or flow that
//! was not in the first sample is new since, so it counts from zero.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::model::{DnsCounters, EndpointInfo, PortStatsRow};

/// One reading of everything `top` shows, at `at`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub ports: Vec<PortStatsRow>,
    pub endpoints: Vec<EndpointInfo>,
    pub flows: Vec<NetworkFlows>,
    /// None when the daemon does not serve `/v1/dns`.
    pub dns: Option<DnsCounters>,
}

/// One network's entry of `GET /v1/flows` (the fields `top` reads).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkFlows {
    pub network: String,
    pub flows: Vec<Flow>,
}

/// One flow of `GET /v1/flows`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Flow {
    pub id: u64,
    pub protocol: String,
    /// The endpoint's address and port.
    pub endpoint: String,
    pub endpoint_mac: String,
    pub destination: String,
    pub state: String,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
}

/// Per-second rates of one port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortRate {
    pub network: String,
    /// The endpoint's name ("(gateway)", "(vxlan)" for a network's own ports).
    pub endpoint: String,
    pub kind: String,
    /// The endpoint's address, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub rx_packets_per_s: f64,
    pub tx_packets_per_s: f64,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
    pub drops_per_s: f64,
    /// Drop reasons that moved, per second.
    pub drops: BTreeMap<String, f64>,
}

/// Per-second rates of one egress flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRate {
    pub network: String,
    /// The endpoint's name when the flow's MAC or address is one's, else its address.
    pub endpoint: String,
    pub protocol: String,
    pub destination: String,
    pub state: String,
    pub bytes_out_per_s: f64,
    pub bytes_in_per_s: f64,
    pub packets_per_s: f64,
}

impl FlowRate {
    pub fn bytes_per_s(&self) -> f64 {
        self.bytes_out_per_s + self.bytes_in_per_s
    }
}

/// Per-second rates of the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DnsRate {
    pub queries_per_s: f64,
    pub local_per_s: f64,
    pub cached_per_s: f64,
    pub forwarded_per_s: f64,
    /// SERVFAIL and REFUSED answers.
    pub failed_per_s: f64,
    pub nxdomain_per_s: f64,
}

/// Everything `top` shows, as rates over one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    /// The time between the two samples, in seconds.
    pub interval_s: f64,
    /// Every port, busiest (bytes both ways) first.
    pub ports: Vec<PortRate>,
    /// Every flow with traffic in the interval, busiest first.
    pub flows: Vec<FlowRate>,
    pub dns: Option<DnsRate>,
}

/// The increase of a counter, a reset taken as counting from zero.
fn delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        cur
    }
}

/// The rates between `prev` and `cur`; None unless `cur` was taken after `prev`.
pub fn rates(prev: &Sample, cur: &Sample) -> Option<Rates> {
    let secs = cur.at.checked_duration_since(prev.at)?.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let per_s = |p: u64, c: u64| delta(p, c) as f64 / secs;

    let before: BTreeMap<(&str, &str), &PortStatsRow> = prev
        .ports
        .iter()
        .map(|r| ((r.network.as_str(), r.endpoint.as_str()), r))
        .collect();
    let ips: BTreeMap<(&str, &str), &str> = cur
        .endpoints
        .iter()
        .map(|e| ((e.network.as_str(), e.name.as_str()), e.ip.as_str()))
        .collect();
    let zero = crate::model::Counters::default();
    let mut ports: Vec<PortRate> = cur
        .ports
        .iter()
        .map(|r| {
            let key = (r.network.as_str(), r.endpoint.as_str());
            let p = before.get(&key).map(|b| &b.counters).unwrap_or(&zero);
            let c = &r.counters;
            let drops = c
                .drops
                .iter()
                .filter_map(|(reason, n)| {
                    let was = p.drops.get(reason).copied().unwrap_or(0);
                    let d = delta(was, *n);
                    (d > 0).then(|| (reason.clone(), d as f64 / secs))
                })
                .collect();
            PortRate {
                network: r.network.clone(),
                endpoint: r.endpoint.clone(),
                kind: r.kind.clone(),
                ip: ips.get(&key).map(|ip| ip.to_string()),
                rx_packets_per_s: per_s(p.rx_packets, c.rx_packets),
                tx_packets_per_s: per_s(p.tx_packets, c.tx_packets),
                rx_bytes_per_s: per_s(p.rx_bytes, c.rx_bytes),
                tx_bytes_per_s: per_s(p.tx_bytes, c.tx_bytes),
                drops_per_s: per_s(p.drops_total, c.drops_total),
                drops,
            }
        })
        .collect();
    ports.sort_by(|a, b| {
        let (x, y) = (
            a.rx_bytes_per_s + a.tx_bytes_per_s,
            b.rx_bytes_per_s + b.tx_bytes_per_s,
        );
        y.total_cmp(&x)
            .then_with(|| (&a.network, &a.endpoint).cmp(&(&b.network, &b.endpoint)))
    });

    let flows_before: BTreeMap<(&str, u64), &Flow> = prev
        .flows
        .iter()
        .flat_map(|n| n.flows.iter().map(move |f| ((n.network.as_str(), f.id), f)))
        .collect();
    // A flow is counted against the MAC of the endpoint that opened it.
    let names: BTreeMap<(&str, String), &str> = cur
        .endpoints
        .iter()
        .flat_map(|e| {
            [
                (
                    (e.network.as_str(), e.mac.to_ascii_lowercase()),
                    e.name.as_str(),
                ),
                ((e.network.as_str(), e.ip.clone()), e.name.as_str()),
            ]
        })
        .collect();
    let mut flows: Vec<FlowRate> = cur
        .flows
        .iter()
        .flat_map(|n| n.flows.iter().map(move |f| (n.network.as_str(), f)))
        .filter_map(|(network, f)| {
            let p = flows_before.get(&(network, f.id));
            let (bo, bi, po, pi) = p.map_or((0, 0, 0, 0), |p| {
                (p.bytes_out, p.bytes_in, p.packets_out, p.packets_in)
            });
            let rate = FlowRate {
                network: network.to_string(),
                endpoint: flow_endpoint(&names, network, f),
                protocol: f.protocol.clone(),
                destination: f.destination.clone(),
                state: f.state.clone(),
                bytes_out_per_s: per_s(bo, f.bytes_out),
                bytes_in_per_s: per_s(bi, f.bytes_in),
                packets_per_s: per_s(po, f.packets_out) + per_s(pi, f.packets_in),
            };
            (rate.packets_per_s > 0.0).then_some(rate)
        })
        .collect();
    flows.sort_by(|a, b| b.bytes_per_s().total_cmp(&a.bytes_per_s()));

    let dns = match (&prev.dns, &cur.dns) {
        (Some(p), Some(c)) => Some(DnsRate {
            queries_per_s: per_s(p.queries_udp + p.queries_tcp, c.queries_udp + c.queries_tcp),
            local_per_s: per_s(p.local_answers + p.nodata, c.local_answers + c.nodata),
            cached_per_s: per_s(p.cache_hits, c.cache_hits),
            forwarded_per_s: per_s(p.forwarded, c.forwarded),
            failed_per_s: per_s(p.servfail + p.refused, c.servfail + c.refused),
            nxdomain_per_s: per_s(p.nxdomain, c.nxdomain),
        }),
        _ => None,
    };
    Some(Rates {
        interval_s: secs,
        ports,
        flows,
        dns,
    })
}

/// The name of the endpoint a flow belongs to: by its MAC, else by its address, else the
/// address itself.
fn flow_endpoint(names: &BTreeMap<(&str, String), &str>, network: &str, f: &Flow) -> String {
    let ip = f
        .endpoint
        .rsplit_once(':')
        .map_or(f.endpoint.as_str(), |(ip, _)| ip);
    names
        .get(&(network, f.endpoint_mac.to_ascii_lowercase()))
        .or_else(|| names.get(&(network, ip.to_string())))
        .map_or_else(|| ip.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Counters;

    fn port(network: &str, endpoint: &str, rx: (u64, u64), tx: (u64, u64)) -> PortStatsRow {
        PortStatsRow {
            network: network.into(),
            endpoint: endpoint.into(),
            kind: "tap".into(),
            counters: Counters {
                rx_packets: rx.0,
                rx_bytes: rx.1,
                tx_packets: tx.0,
                tx_bytes: tx.1,
                ..Counters::default()
            },
        }
    }

    fn sample(at: Instant, ports: Vec<PortStatsRow>) -> Sample {
        Sample {
            at,
            ports,
            endpoints: Vec::new(),
            flows: Vec::new(),
            dns: None,
        }
    }

    fn flow(id: u64, mac: &str, bytes: (u64, u64), packets: (u64, u64)) -> Flow {
        Flow {
            id,
            protocol: "udp".into(),
            endpoint: "10.1.0.2:5000".into(),
            endpoint_mac: mac.into(),
            destination: "192.0.2.1:53".into(),
            state: "assured".into(),
            bytes_out: bytes.0,
            bytes_in: bytes.1,
            packets_out: packets.0,
            packets_in: packets.1,
        }
    }

    fn endpoint(network: &str, name: &str, ip: &str, mac: &str) -> EndpointInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "network": network, "kind": "tap", "ip": ip, "prefix_len": 24,
            "gateway": "10.1.0.1", "mac": mac, "ifname": "eth0", "netns": "/run/netns/x",
            "offload": true, "port": 1, "counters": Counters::default(),
        }))
        .expect("an EndpointInfo")
    }

    #[test]
    fn a_rate_is_the_increase_over_the_time_between_the_samples() {
        let t0 = Instant::now();
        let a = sample(t0, vec![port("lab", "a", (10, 1000), (5, 500))]);
        let b = sample(
            t0 + Duration::from_millis(500),
            vec![port("lab", "a", (60, 6000), (5, 500))],
        );
        let r = rates(&a, &b).expect("rates");
        assert_eq!(r.interval_s, 0.5);
        assert_eq!(
            r.ports,
            vec![PortRate {
                network: "lab".into(),
                endpoint: "a".into(),
                kind: "tap".into(),
                ip: None,
                rx_packets_per_s: 100.0,
                tx_packets_per_s: 0.0,
                rx_bytes_per_s: 10_000.0,
                tx_bytes_per_s: 0.0,
                drops_per_s: 0.0,
                drops: BTreeMap::new(),
            }]
        );
    }

    #[test]
    fn samples_out_of_order_or_at_the_same_time_give_no_rates() {
        let t0 = Instant::now();
        let a = sample(t0, vec![]);
        let b = sample(t0 + Duration::from_secs(1), vec![]);
        assert!(rates(&b, &a).is_none());
        assert!(rates(&a, &a).is_none());
    }

    #[test]
    fn a_reset_counter_and_a_new_port_count_from_zero() {
        let t0 = Instant::now();
        let a = sample(t0, vec![port("lab", "a", (1000, 100_000), (0, 0))]);
        let b = sample(
            t0 + Duration::from_secs(2),
            vec![
                port("lab", "a", (10, 1000), (0, 0)),
                port("lab", "b", (4, 400), (2, 200)),
            ],
        );
        let r = rates(&a, &b).expect("rates");
        let find = |n: &str| r.ports.iter().find(|p| p.endpoint == n).expect(n);
        assert_eq!(find("a").rx_packets_per_s, 5.0);
        assert_eq!(find("b").rx_bytes_per_s, 200.0);
        assert_eq!(find("b").tx_packets_per_s, 1.0);
    }

    #[test]
    fn ports_are_listed_busiest_first_with_the_drop_reasons_that_moved() {
        let t0 = Instant::now();
        let mut quiet = port("lab", "a", (0, 0), (0, 0));
        quiet.counters.drops_total = 3;
        quiet.counters.drops.insert("spoofed_mac".into(), 3);
        quiet.counters.drops.insert("runt".into(), 0);
        let a = sample(t0, vec![quiet.clone(), port("lab", "b", (0, 0), (0, 0))]);
        let mut later = quiet;
        later.counters.drops_total = 7;
        later.counters.drops.insert("spoofed_mac".into(), 7);
        let b = sample(
            t0 + Duration::from_secs(1),
            vec![later, port("lab", "b", (10, 9000), (10, 9000))],
        );
        let r = rates(&a, &b).expect("rates");
        assert_eq!(r.ports[0].endpoint, "b");
        assert_eq!(r.ports[1].endpoint, "a");
        assert_eq!(r.ports[1].drops_per_s, 4.0);
        assert_eq!(
            r.ports[1].drops,
            BTreeMap::from([("spoofed_mac".to_string(), 4.0)])
        );
    }

    #[test]
    fn flows_are_named_by_their_endpoint_and_idle_ones_are_left_out() {
        let t0 = Instant::now();
        let mut a = sample(t0, vec![]);
        a.flows = vec![NetworkFlows {
            network: "lab".into(),
            flows: vec![
                flow(1, "02:42:0a:01:00:02", (100, 100), (1, 1)),
                flow(2, "02:42:0a:01:00:09", (50, 0), (1, 0)),
            ],
        }];
        let mut b = sample(t0 + Duration::from_secs(1), vec![]);
        b.endpoints = vec![endpoint("lab", "web", "10.1.0.2", "02:42:0A:01:00:02")];
        b.flows = vec![NetworkFlows {
            network: "lab".into(),
            flows: vec![
                flow(1, "02:42:0a:01:00:02", (1100, 2100), (11, 21)),
                // Idle since the first sample.
                flow(2, "02:42:0a:01:00:09", (50, 0), (1, 0)),
                // New since: counts from zero; its MAC and address are nobody's, so its
                // address shows.
                Flow {
                    endpoint: "10.1.0.7:6000".into(),
                    ..flow(3, "02:42:0a:01:00:07", (30, 0), (1, 0))
                },
            ],
        }];
        let r = rates(&a, &b).expect("rates");
        let shown: Vec<(&str, f64, f64, f64)> = r
            .flows
            .iter()
            .map(|f| {
                (
                    f.endpoint.as_str(),
                    f.bytes_out_per_s,
                    f.bytes_in_per_s,
                    f.packets_per_s,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![("web", 1000.0, 2000.0, 30.0), ("10.1.0.7", 30.0, 0.0, 1.0)]
        );
    }

    #[test]
    fn the_dns_rate_needs_both_samples() {
        let t0 = Instant::now();
        let mut a = sample(t0, vec![]);
        let mut b = sample(t0 + Duration::from_secs(4), vec![]);
        b.dns = Some(DnsCounters {
            queries_udp: 40,
            local_answers: 36,
            forwarded: 4,
            ..DnsCounters::default()
        });
        assert_eq!(rates(&a, &b).expect("rates").dns, None);
        a.dns = Some(DnsCounters::default());
        let d = rates(&a, &b).expect("rates").dns.expect("a DNS rate");
        assert_eq!(d.queries_per_s, 10.0);
        assert_eq!(d.local_per_s, 9.0);
        assert_eq!(d.forwarded_per_s, 1.0);
    }
}
