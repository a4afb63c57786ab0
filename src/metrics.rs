//! Prometheus metrics: `GET /metrics` on the API socket and, with `--metrics-addr`, on a TCP
//! listener that serves nothing else.
//!
//! Nothing is kept for the metrics: a scrape takes a [`Sample`] of the counters the data plane
//! keeps anyway (per-port atomics, the egress and resolver counters, the MAC tables' sizes;
//! `Daemon::metrics_sample`) and a custom [`Collector`] turns it into families, encoded by
//! `prometheus-client` in the Prometheus text format (0.0.4). The fast path gains no lock and
//! no allocation; the scrape pays for the copy.
//!
//! A drop reason appears once it has counted (hundreds of ports times 25 reasons of zeros
//! would dominate every scrape); every other family is always there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use netyard_dns::counters::{LatencySnapshot, LATENCY_BOUNDS_US};
use netyard_dns::CountersSnapshot;
use netyard_router::egress::EgressStats;
use netyard_router::l3::Counter;
use netyard_switch::PortStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::error::DaemonError;
use crate::state::Daemon;

/// One switch port's counters, named as `stats` names it.
#[derive(Debug, Clone)]
pub struct PortSample {
    pub network: String,
    pub endpoint: String,
    pub kind: String,
    pub stats: PortStats,
}

/// One network's tables and egress counters.
#[derive(Debug, Clone)]
pub struct NetworkSample {
    pub name: String,
    pub fdb_entries: usize,
    /// Flood peers of its VXLAN tunnel; None without one.
    pub vxlan_peers: Option<usize>,
    pub egress: EgressStats,
    /// Live flows by protocol ("tcp", "udp", "icmp"; each present, 0 when none).
    pub flows: BTreeMap<&'static str, u64>,
}

/// One router interface's counters (`netyard_router::l3::Counter`, by name).
#[derive(Debug, Clone)]
pub struct RouterIfaceSample {
    pub network: String,
    pub counters: BTreeMap<Counter, u64>,
}

/// One router: its interfaces and its task's tables.
#[derive(Debug, Clone)]
pub struct RouterSample {
    pub name: String,
    pub interfaces: Vec<RouterIfaceSample>,
    pub nat_entries: u64,
    pub held: u64,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub ports: Vec<PortSample>,
    pub networks: Vec<NetworkSample>,
    pub routers: Vec<RouterSample>,
    pub dns: CountersSnapshot,
    pub dns_latency: LatencySnapshot,
    /// etcd requests that failed and that timed out.
    pub etcd_errors: (u64, u64),
}

/// Egress drop reasons that refuse a new flow (`netyard_flows_refused_total`); the others drop
/// packets of flows or malformed packets (`netyard_egress_drops_total`).
const FLOW_REFUSALS: [&str; 7] = [
    "egress_disabled",
    "endpoint_flow_cap",
    "flow_table_full",
    "host_socket_cap",
    "icmp_not_permitted",
    "refused_local_network",
    "refused_loopback",
];

/// The text a scrape returns.
pub fn render(sample: Sample) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SampleCollector(sample)));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a family below,
    // and a scrape then shows what was written before it.
    if let Err(e) = prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    out
}

/// The HTTP answer to `GET /metrics`.
pub async fn answer(d: &Daemon) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        render(d.metrics_sample().await),
    )
}

/// Parses `--metrics-addr`: ADDR:PORT (IPv6 as [ADDR]:PORT).
pub fn parse_addr(s: &str) -> Result<SocketAddr, DaemonError> {
    s.parse().map_err(|_| {
        DaemonError::invalid(
            "metrics-addr",
            format!("{s:?} is not ADDR:PORT (e.g. 127.0.0.1:9495 or [::1]:9495)"),
        )
    })
}

/// Binds `--metrics-addr`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::invalid("metrics-addr", format!("cannot listen on {addr}: {e}")))
}

/// Serves `/metrics` (and only that) on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    d: Arc<Daemon>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(d): State<Arc<Daemon>>| async move { answer(&d).await }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(d);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
}

#[derive(Debug)]
struct SampleCollector(Sample);

fn port_labels(p: &PortSample) -> Labels<'_> {
    vec![
        ("network", p.network.as_str()),
        ("endpoint", p.endpoint.as_str()),
        ("kind", p.kind.as_str()),
    ]
}

fn net(n: &NetworkSample) -> Labels<'_> {
    vec![("network", n.name.as_str())]
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one family: a descriptor, then one sample per label set.
fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        let inner = m.encode_family(&labels)?;
        match ty {
            MetricType::Counter => ConstCounter::new(v).encode(inner)?,
            _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(inner)?,
        }
    }
    Ok(())
}

impl Collector for SampleCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let (c, g) = (MetricType::Counter, MetricType::Gauge);
        family(
            &mut enc,
            "netyard_build_info",
            "The running netyard's version (always 1).",
            g,
            [(vec![("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;

        // Per port, labelled as `stats` names the rows ("(gateway)", "(vxlan)").
        let per_port =
            |f: fn(&PortStats) -> u64| s.ports.iter().map(move |p| (port_labels(p), f(&p.stats)));
        family(
            &mut enc,
            "netyard_port_receive_packets",
            "Frames the switch received from the port.",
            c,
            per_port(|s| s.rx_packets),
        )?;
        family(
            &mut enc,
            "netyard_port_receive_bytes",
            "Bytes (Ethernet frames, no vnet header) the switch received from the port.",
            c,
            per_port(|s| s.rx_bytes),
        )?;
        family(
            &mut enc,
            "netyard_port_transmit_packets",
            "Frames the switch wrote to the port.",
            c,
            per_port(|s| s.tx_packets),
        )?;
        family(
            &mut enc,
            "netyard_port_transmit_bytes",
            "Bytes the switch wrote to the port.",
            c,
            per_port(|s| s.tx_bytes),
        )?;
        family(
            &mut enc,
            "netyard_port_drops",
            "Frames dropped on the port, by reason (the switch's and the kernel's); a reason \
             appears once it has counted.",
            c,
            s.ports.iter().flat_map(|p| {
                p.stats
                    .drops
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(reason, n)| {
                        (
                            vec![
                                ("network", p.network.as_str()),
                                ("endpoint", p.endpoint.as_str()),
                                ("reason", *reason),
                            ],
                            *n,
                        )
                    })
            }),
        )?;

        // Per network.
        let port_sum = |network: &str, f: fn(&PortStats) -> u64| -> u64 {
            s.ports
                .iter()
                .filter(|p| p.network == network)
                .map(|p| f(&p.stats))
                .sum()
        };
        family(
            &mut enc,
            "netyard_fdb_entries",
            "Entries in the network's MAC table.",
            g,
            s.networks.iter().map(|n| (net(n), n.fdb_entries as u64)),
        )?;
        family(
            &mut enc,
            "netyard_fdb_learned",
            "Source MACs learned (new, or moved to another port).",
            c,
            s.networks
                .iter()
                .map(|n| (net(n), port_sum(&n.name, |s| s.learned))),
        )?;
        family(
            &mut enc,
            "netyard_flood_frames",
            "Frames flooded to every port (broadcast, multicast, unknown unicast).",
            c,
            s.networks
                .iter()
                .map(|n| (net(n), port_sum(&n.name, |s| s.flooded))),
        )?;
        family(
            &mut enc,
            "netyard_gso_frames",
            "GSO super-frames received.",
            c,
            s.networks
                .iter()
                .map(|n| (net(n), port_sum(&n.name, |s| s.rx_gso))),
        )?;
        family(
            &mut enc,
            "netyard_segmented_frames",
            "GSO super-frames segmented in software for a port without offloads.",
            c,
            s.networks
                .iter()
                .map(|n| (net(n), port_sum(&n.name, |s| s.tx_segmented))),
        )?;
        family(
            &mut enc,
            "netyard_vxlan_peers",
            "Flood peers (remote VTEPs) of the network's VXLAN tunnel.",
            g,
            s.networks
                .iter()
                .filter_map(|n| n.vxlan_peers.map(|p| (net(n), p as u64))),
        )?;

        // Egress through the gateway.
        family(
            &mut enc,
            "netyard_flows",
            "Live egress flows (NAT through host sockets, relayed TCP).",
            g,
            s.networks.iter().flat_map(|n| {
                n.flows.iter().map(move |(proto, k)| {
                    (vec![("network", n.name.as_str()), ("proto", *proto)], *k)
                })
            }),
        )?;
        family(
            &mut enc,
            "netyard_flows_created",
            "Egress flows created (published connections included).",
            c,
            s.networks.iter().map(|n| (net(n), n.egress.flows_created)),
        )?;
        let by_reason = |refusals: bool| {
            s.networks.iter().flat_map(move |n| {
                n.egress
                    .drops
                    .iter()
                    .filter(move |(r, _)| FLOW_REFUSALS.contains(r) == refusals)
                    .filter(|(_, k)| **k > 0)
                    .map(move |(r, k)| (vec![("network", n.name.as_str()), ("reason", *r)], *k))
            })
        };
        family(
            &mut enc,
            "netyard_flows_refused",
            "New egress flows refused, by reason (caps, local networks, loopback).",
            c,
            by_reason(true),
        )?;
        family(
            &mut enc,
            "netyard_egress_drops",
            "Egress packets dropped for other reasons (malformed, unreachable, full queues).",
            c,
            by_reason(false),
        )?;
        family(
            &mut enc,
            "netyard_published_connections",
            "Connections (TCP) and new clients (UDP) on published ports.",
            c,
            s.networks.iter().flat_map(|n| {
                [
                    ("tcp", n.egress.published_tcp),
                    ("udp", n.egress.published_udp),
                ]
                .into_iter()
                .map(move |(proto, k)| (vec![("network", n.name.as_str()), ("proto", proto)], k))
            }),
        )?;

        // Routers (issue 18): per router and interface (the network it is on).
        let per_iface = |c: Counter| {
            s.routers.iter().flat_map(move |r| {
                r.interfaces.iter().map(move |f| {
                    (
                        vec![("router", r.name.as_str()), ("network", f.network.as_str())],
                        f.counters.get(&c).copied().unwrap_or(0),
                    )
                })
            })
        };
        family(
            &mut enc,
            "netyard_router_forwarded_packets",
            "Packets a router sent on through the interface (a GSO super-frame counts once).",
            c,
            per_iface(Counter::Forwarded),
        )?;
        family(
            &mut enc,
            "netyard_router_icmp_errors_sent",
            "ICMP errors a router sent from the interface's address, by type and code (ttl: \
             time exceeded; net: no route; port: a UDP probe to the router itself; \
             frag_needed: too big for the next network with DF).",
            c,
            s.routers.iter().flat_map(|r| {
                r.interfaces.iter().flat_map(move |f| {
                    Counter::SENT.iter().map(move |(k, t, code)| {
                        (
                            vec![
                                ("router", r.name.as_str()),
                                ("network", f.network.as_str()),
                                ("type", *t),
                                ("code", *code),
                            ],
                            f.counters.get(k).copied().unwrap_or(0),
                        )
                    })
                })
            }),
        )?;
        family(
            &mut enc,
            "netyard_router_drops",
            "Packets a router dropped, by reason (on the interface they arrived on; \
             unresolved and nat_* on the one they were to leave through); a reason appears \
             once it has counted.",
            c,
            s.routers.iter().flat_map(|r| {
                r.interfaces.iter().flat_map(move |f| {
                    Counter::ALL
                        .iter()
                        .filter(|k| k.is_drop())
                        .filter_map(move |k| {
                            let n = f.counters.get(k).copied().unwrap_or(0);
                            (n > 0).then(|| {
                                (
                                    vec![
                                        ("router", r.name.as_str()),
                                        ("network", f.network.as_str()),
                                        ("reason", k.name()),
                                    ],
                                    n,
                                )
                            })
                        })
                })
            }),
        )?;
        family(
            &mut enc,
            "netyard_router_replies",
            "ARP requests and ICMP echo requests a router answered, on the interface asked.",
            c,
            s.routers.iter().flat_map(|r| {
                r.interfaces.iter().flat_map(move |f| {
                    [("arp", Counter::ArpReplies), ("echo", Counter::EchoReplies)]
                        .into_iter()
                        .map(move |(kind, k)| {
                            (
                                vec![
                                    ("router", r.name.as_str()),
                                    ("network", f.network.as_str()),
                                    ("kind", kind),
                                ],
                                f.counters.get(&k).copied().unwrap_or(0),
                            )
                        })
                })
            }),
        )?;
        family(
            &mut enc,
            "netyard_router_nat_packets",
            "Packets masqueraded on leaving (out) and translated back (in) on a NAT interface.",
            c,
            s.routers.iter().flat_map(|r| {
                r.interfaces.iter().flat_map(move |f| {
                    [("out", Counter::NatOut), ("in", Counter::NatIn)]
                        .into_iter()
                        .map(move |(dir, k)| {
                            (
                                vec![
                                    ("router", r.name.as_str()),
                                    ("network", f.network.as_str()),
                                    ("direction", dir),
                                ],
                                f.counters.get(&k).copied().unwrap_or(0),
                            )
                        })
                })
            }),
        )?;
        family(
            &mut enc,
            "netyard_router_nat_mappings_created",
            "NAT mappings a router created on the interface.",
            c,
            per_iface(Counter::NatNew),
        )?;
        family(
            &mut enc,
            "netyard_router_nat_entries",
            "Live NAT mappings of a router (all its interfaces).",
            g,
            s.routers
                .iter()
                .map(|r| (vec![("router", r.name.as_str())], r.nat_entries)),
        )?;
        family(
            &mut enc,
            "netyard_router_held_frames",
            "Frames a router holds while it asks for their next hop's MAC.",
            g,
            s.routers
                .iter()
                .map(|r| (vec![("router", r.name.as_str())], r.held)),
        )?;

        // The resolver.
        family(
            &mut enc,
            "netyard_dns_queries",
            "DNS queries answered, by response code and by where the answer came from \
             (local records, the cache, an upstream, or netyard itself: errors, refusals, \
             dropped messages with rcode \"none\").",
            c,
            dns_rows(&s.dns)
                .into_iter()
                .map(|(rcode, source, k)| (vec![("rcode", rcode), ("source", source)], k)),
        )?;
        family(
            &mut enc,
            "netyard_dns_drops",
            "DNS queries dropped before the resolver saw them, by reason (udp_rcvbuf_full: \
             the kernel dropped them at a listener's full UDP receive buffer).",
            c,
            [(vec![("reason", "udp_rcvbuf_full")], s.dns.udp_rcvbuf_full)],
        )?;
        let lat = &s.dns_latency;
        let mut m = enc.encode_descriptor(
            "netyard_dns_latency_seconds",
            "Time from a DNS query's arrival to its answer.",
            None,
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_US
            .iter()
            .zip(lat.buckets.iter())
            .map(|(bound, k)| (*bound as f64 / 1e6, *k))
            .collect();
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            lat.sum_us as f64 / 1e6,
            lat.count(),
            &buckets,
            None,
        )?;

        family(
            &mut enc,
            "netyard_etcd_errors",
            "etcd requests that failed or timed out.",
            c,
            [
                (vec![("kind", "request")], s.etcd_errors.0),
                (vec![("kind", "timeout")], s.etcd_errors.1),
            ],
        )?;
        Ok(())
    }
}

/// `netyard_dns_queries_total`'s rows from the resolver's outcome counters.
fn dns_rows(d: &CountersSnapshot) -> Vec<(&'static str, &'static str, u64)> {
    let nxdomain_upstream = d.nxdomain.saturating_sub(d.nxdomain_cached);
    vec![
        ("NOERROR", "local", d.local_answers + d.nodata),
        (
            "NOERROR",
            "cache",
            d.cache_hits.saturating_sub(d.nxdomain_cached),
        ),
        ("NXDOMAIN", "cache", d.nxdomain_cached),
        (
            "NOERROR",
            "upstream",
            d.forwarded.saturating_sub(nxdomain_upstream),
        ),
        ("NXDOMAIN", "upstream", nxdomain_upstream),
        ("SERVFAIL", "netyard", d.servfail),
        ("REFUSED", "netyard", d.refused),
        ("FORMERR", "netyard", d.formerr),
        ("NOTIMP", "netyard", d.notimp),
        ("none", "netyard", d.dropped_malformed),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rows_split_nxdomain_between_cache_and_upstream() {
        let d = CountersSnapshot {
            local_answers: 5,
            nodata: 1,
            cache_hits: 4,
            forwarded: 10,
            nxdomain: 3,
            nxdomain_cached: 1,
            servfail: 2,
            ..CountersSnapshot::default()
        };
        let rows = dns_rows(&d);
        let get = |rcode, source| {
            rows.iter()
                .find(|r| r.0 == rcode && r.1 == source)
                .map(|r| r.2)
        };
        assert_eq!(get("NOERROR", "local"), Some(6));
        assert_eq!(get("NOERROR", "cache"), Some(3));
        assert_eq!(get("NXDOMAIN", "cache"), Some(1));
        assert_eq!(get("NOERROR", "upstream"), Some(8));
        assert_eq!(get("NXDOMAIN", "upstream"), Some(2));
        assert_eq!(get("SERVFAIL", "netyard"), Some(2));
        let answered: u64 = rows.iter().map(|r| r.2).sum();
        assert_eq!(answered, d.outcomes(), "every outcome in exactly one row");
    }

    #[test]
    fn a_sample_renders_every_family_with_its_labels() {
        let mut stats = PortStats {
            rx_packets: 7,
            ..PortStats::default()
        };
        stats.drops.insert("packet_rcvbuf_full", 3);
        stats.drops.insert("runt", 0);
        let text = render(Sample {
            ports: vec![PortSample {
                network: "lab".into(),
                endpoint: "web \"1\"".into(),
                kind: "veth".into(),
                stats,
            }],
            networks: vec![NetworkSample {
                name: "lab".into(),
                fdb_entries: 2,
                vxlan_peers: None,
                egress: EgressStats::default(),
                flows: [("tcp", 1), ("udp", 0), ("icmp", 0)].into_iter().collect(),
            }],
            routers: vec![RouterSample {
                name: "r1".into(),
                interfaces: vec![RouterIfaceSample {
                    network: "lab".into(),
                    counters: [
                        (Counter::Forwarded, 9),
                        (Counter::SentTimeExceeded, 2),
                        (Counter::TtlExceeded, 2),
                        (Counter::NatIn, 4),
                    ]
                    .into_iter()
                    .collect(),
                }],
                nat_entries: 5,
                held: 0,
            }],
            ..Sample::default()
        });
        for line in [
            "netyard_router_forwarded_packets_total{router=\"r1\",network=\"lab\"} 9",
            "netyard_router_icmp_errors_sent_total{router=\"r1\",network=\"lab\",type=\"time_exceeded\",code=\"ttl\"} 2",
            "netyard_router_icmp_errors_sent_total{router=\"r1\",network=\"lab\",type=\"dest_unreachable\",code=\"port\"} 0",
            "netyard_router_drops_total{router=\"r1\",network=\"lab\",reason=\"ttl_exceeded\"} 2",
            "netyard_router_nat_packets_total{router=\"r1\",network=\"lab\",direction=\"in\"} 4",
            "netyard_router_nat_entries{router=\"r1\"} 5",
            "netyard_build_info{version=\"",
            "netyard_port_receive_packets_total{network=\"lab\",endpoint=\"web \\\"1\\\"\",kind=\"veth\"} 7",
            "netyard_port_drops_total{network=\"lab\",endpoint=\"web \\\"1\\\"\",reason=\"packet_rcvbuf_full\"} 3",
            "netyard_fdb_entries{network=\"lab\"} 2",
            "netyard_flows{network=\"lab\",proto=\"tcp\"} 1",
            "netyard_dns_latency_seconds_bucket{le=\"+Inf\"} 0",
            "netyard_etcd_errors_total{kind=\"timeout\"} 0",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
        assert!(
            !text.contains("reason=\"runt\""),
            "zero reasons are left out"
        );
        assert!(
            !text.contains("reason=\"no_route\""),
            "zero router drop reasons are left out"
        );
    }
}
