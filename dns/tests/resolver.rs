//! Resolver behaviour against fake upstream servers on 127.0.0.1 (never any public server).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netyard_dns::proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use netyard_dns::proto::rr::{Name, RecordType};
use netyard_dns::proto::serialize::binary::{BinEncodable, BinEncoder};
use netyard_dns::{
    AskerContext, CountersSnapshot, Entry, RecordStore, Records, Resolver, ResolverConfig,
    Transport,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{answer_data, closed_port, parse, query_bytes, query_message, FakeUpstream, Mode};

fn entry(network: &str, name: &str, aliases: &[&str], v4: Option<&str>, v6: Option<&str>) -> Entry {
    Entry {
        network: network.into(),
        name: name.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        ipv4: v4.map(|s| s.parse().expect("v4")),
        ipv6: v6.map(|s| s.parse().expect("v6")),
    }
}

fn records() -> Records {
    Records::new(
        vec![
            entry("net1", "web", &["www"], Some("10.1.0.2"), Some("fd01::2")),
            entry("net1", "db", &[], Some("10.1.0.3"), None),
            entry("net2", "other", &[], Some("10.2.0.2"), None),
        ],
        30,
    )
}

fn resolver_with(upstreams: Vec<SocketAddr>, tweak: impl FnOnce(&mut ResolverConfig)) -> Resolver {
    let mut config = ResolverConfig {
        upstreams,
        upstream_timeout: Duration::from_millis(500),
        forward_deadline: Duration::from_secs(3),
        ..ResolverConfig::default()
    };
    tweak(&mut config);
    Resolver::new(config, Arc::new(RecordStore::new(records())))
}

fn asker() -> AskerContext {
    AskerContext {
        networks: vec!["net1".into()],
        internal: false,
    }
}

async fn ask(r: &Resolver, id: u16, qname: &str, qtype: RecordType, t: Transport) -> Message {
    let bytes = query_bytes(id, qname, qtype);
    parse(&r.handle(&bytes, &asker(), t).await.expect("an answer"))
}

/// The answer carries the client's id and exactly the client's question (case included).
fn assert_echoes(answer: &Message, id: u16, qname: &str, qtype: RecordType) {
    assert_eq!(answer.id(), id);
    assert_eq!(answer.message_type(), MessageType::Response);
    assert_eq!(answer.queries().len(), 1, "{answer:?}");
    let q = &answer.queries()[0];
    assert!(
        q.name().eq_case(&Name::from_ascii(qname).expect("name")),
        "{q:?} vs {qname}"
    );
    assert_eq!(q.query_type(), qtype);
}

/// Every query ended in exactly one outcome counter.
fn assert_accounted(s: &CountersSnapshot) {
    assert_eq!(s.queries(), s.outcomes(), "{s:#?}");
}

#[tokio::test]
async fn local_names_nodata_ptr_and_flags() {
    let r = resolver_with(vec![], |_| {});
    let a = ask(&r, 1, "WeB.", RecordType::A, Transport::Udp).await;
    assert_echoes(&a, 1, "WeB.", RecordType::A);
    assert_eq!(a.response_code(), ResponseCode::NoError);
    assert!(a.authoritative() && a.recursion_available() && a.recursion_desired());
    assert_eq!(answer_data(&a), ["10.1.0.2"]);
    assert_eq!(a.answers()[0].ttl(), 30);

    let aaaa = ask(&r, 2, "www.net1.", RecordType::AAAA, Transport::Tcp).await;
    assert_eq!(answer_data(&aaaa), ["fd01::2"]);

    // AAAA of a v4-only name and MX of a local name: empty NOERROR.
    for (id, qtype) in [(3, RecordType::AAAA), (4, RecordType::MX)] {
        let nodata = ask(&r, id, "db.", qtype, Transport::Udp).await;
        assert_echoes(&nodata, id, "db.", qtype);
        assert_eq!(nodata.response_code(), ResponseCode::NoError);
        assert!(nodata.answers().is_empty());
    }

    let ptr = ask(
        &r,
        5,
        "2.0.1.10.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(answer_data(&ptr), ["web.net1."]);

    // Another network's name is not local; with no upstream that is SERVFAIL, not silence.
    let other = ask(&r, 6, "other.", RecordType::A, Transport::Udp).await;
    assert_eq!(other.response_code(), ResponseCode::ServFail);
    assert_echoes(&other, 6, "other.", RecordType::A);

    let s = r.counters().snapshot();
    assert_eq!((s.local_answers, s.nodata, s.servfail), (3, 2, 1));
    assert_eq!((s.queries_udp, s.queries_tcp), (5, 1));
    assert_accounted(&s);
}

#[tokio::test]
async fn edns_is_answered_with_edns_only_when_asked() {
    let r = resolver_with(vec![], |_| {});
    let plain = ask(&r, 1, "web.", RecordType::A, Transport::Udp).await;
    assert!(plain.extensions().is_none());
    let q = query_message(2, "web.", RecordType::A, true)
        .to_vec()
        .expect("encode");
    let with = parse(
        &r.handle(&q, &asker(), Transport::Udp)
            .await
            .expect("answer"),
    );
    assert_eq!(
        with.extensions().as_ref().map(|e| e.max_payload()),
        Some(1232)
    );
    assert_eq!(answer_data(&with), ["10.1.0.2"]);
}

#[tokio::test]
async fn reload_takes_effect_at_once() {
    let r = resolver_with(vec![], |_| {});
    assert_eq!(
        answer_data(&ask(&r, 1, "web.", RecordType::A, Transport::Udp).await),
        ["10.1.0.2"]
    );
    r.records().replace(Records::new(
        vec![entry("net1", "web", &[], Some("10.1.0.99"), None)],
        30,
    ));
    assert_eq!(
        answer_data(&ask(&r, 2, "web.", RecordType::A, Transport::Udp).await),
        ["10.1.0.99"]
    );
}

#[tokio::test]
async fn round_robin_alias_and_udp_size_limit() {
    // 60 endpoints sharing one alias: 60 A records do not fit in 512 bytes.
    let entries = (0..60)
        .map(|i| {
            entry(
                "net1",
                &format!("api{i}"),
                &["api"],
                Some(&format!("10.1.1.{i}")),
                None,
            )
        })
        .collect();
    let r = Resolver::new(
        ResolverConfig::default(),
        Arc::new(RecordStore::new(Records::new(entries, 30))),
    );
    let udp = ask(&r, 1, "api.", RecordType::A, Transport::Udp).await;
    assert!(udp.truncated(), "must set TC when over 512 bytes");
    assert!(udp.answers().is_empty());
    assert_echoes(&udp, 1, "api.", RecordType::A);
    let tcp = ask(&r, 2, "api.", RecordType::A, Transport::Tcp).await;
    assert!(!tcp.truncated());
    assert_eq!(tcp.answers().len(), 60);
    // Shuffled: two TCP answers in a row are (almost surely) in different orders.
    let mut orders = std::collections::HashSet::new();
    for id in 0..5 {
        let m = ask(&r, id, "api.", RecordType::A, Transport::Tcp).await;
        orders.insert(format!(
            "{:?}",
            m.answers()
                .iter()
                .map(|a| a.data().to_string())
                .collect::<Vec<_>>()
        ));
    }
    assert!(orders.len() > 1);
}

#[tokio::test]
async fn forwards_over_udp_and_tcp_with_client_id_and_question() {
    let up = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
    let r = resolver_with(vec![up.addr], |c| c.cache_capacity = 0);
    let a = ask(&r, 0x1234, "ExAmPlE.TeSt.", RecordType::A, Transport::Udp).await;
    assert_echoes(&a, 0x1234, "ExAmPlE.TeSt.", RecordType::A);
    assert_eq!(answer_data(&a), ["192.0.2.1", "192.0.2.2"]);
    assert!(!a.authoritative());
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 0));

    let t = ask(&r, 0x4321, "example.test.", RecordType::A, Transport::Tcp).await;
    assert_echoes(&t, 0x4321, "example.test.", RecordType::A);
    assert_eq!(answer_data(&t), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 1));
    let s = r.counters().snapshot();
    assert_eq!(s.forwarded, 2);
    assert_accounted(&s);
}

#[tokio::test]
async fn truncated_udp_answer_passes_through_and_is_not_cached() {
    let up = FakeUpstream::start(Mode::Truncate).await;
    let r = resolver_with(vec![up.addr], |_| {});
    for id in [1, 2] {
        let udp = ask(&r, id, "big.test.", RecordType::A, Transport::Udp).await;
        assert!(udp.truncated());
        assert_echoes(&udp, id, "big.test.", RecordType::A);
    }
    assert_eq!(up.udp_queries(), 2, "a truncated answer is never cached");
    // The client's TCP retry goes upstream over TCP and gets the whole answer.
    let tcp = ask(&r, 3, "big.test.", RecordType::A, Transport::Tcp).await;
    assert!(!tcp.truncated());
    assert_eq!(answer_data(&tcp), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(up.tcp_queries(), 1);
    // ... and that complete answer is cached for both transports.
    let again = ask(&r, 4, "big.test.", RecordType::A, Transport::Udp).await;
    assert!(!again.truncated());
    assert_eq!((up.udp_queries(), up.tcp_queries()), (2, 1));
}

#[tokio::test]
async fn cache_hit_within_ttl() {
    let up = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
    let r = resolver_with(vec![up.addr], |_| {});
    let first = ask(&r, 1, "cached.test.", RecordType::A, Transport::Udp).await;
    let second = ask(&r, 2, "CACHED.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        up.udp_queries(),
        1,
        "the upstream sees one query for two client queries"
    );
    assert_echoes(&second, 2, "CACHED.test.", RecordType::A);
    assert_eq!(answer_data(&first), answer_data(&second));
    assert!(second
        .answers()
        .iter()
        .all(|a| a.ttl() <= 300 && a.ttl() > 290));
    // Another type of the same name is another key.
    let _ = ask(&r, 3, "cached.test.", RecordType::AAAA, Transport::Udp).await;
    assert_eq!(up.udp_queries(), 2);
    let s = r.counters().snapshot();
    assert_eq!((s.cache_hits, s.forwarded), (1, 2));
    assert_accounted(&s);
}

#[tokio::test]
async fn ttl_zero_is_not_cached() {
    let up = FakeUpstream::start(Mode::Answer { ttl: 0 }).await;
    let r = resolver_with(vec![up.addr], |_| {});
    ask(&r, 1, "zero.test.", RecordType::A, Transport::Udp).await;
    ask(&r, 2, "zero.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(up.udp_queries(), 2);
}

#[tokio::test]
async fn negative_cache_nxdomain_and_nodata() {
    let up = FakeUpstream::start(Mode::NxDomain {
        soa_ttl: 900,
        minimum: 60,
    })
    .await;
    let r = resolver_with(vec![up.addr], |_| {});
    for id in [1, 2, 3] {
        let m = ask(&r, id, "missing.test.", RecordType::A, Transport::Udp).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_echoes(&m, id, "missing.test.", RecordType::A);
        assert_eq!(m.name_servers().len(), 1, "the SOA is relayed");
        assert!(m.name_servers()[0].ttl() <= 900);
    }
    assert_eq!(up.udp_queries(), 1);

    up.set_mode(Mode::NoData {
        soa_ttl: 900,
        minimum: 60,
    });
    for id in [4, 5] {
        let m = ask(&r, id, "empty.test.", RecordType::AAAA, Transport::Udp).await;
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
    }
    assert_eq!(up.udp_queries(), 2);
    let s = r.counters().snapshot();
    assert_eq!((s.nxdomain, s.cache_hits, s.forwarded), (3, 3, 2));
    assert_accounted(&s);
}

#[tokio::test]
async fn servfail_is_not_cached_and_all_failing_gives_servfail() {
    let up = FakeUpstream::start(Mode::ServFail).await;
    let r = resolver_with(vec![up.addr], |_| {});
    for id in [1, 2] {
        let m = ask(&r, id, "broken.test.", RecordType::A, Transport::Udp).await;
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        assert_echoes(&m, id, "broken.test.", RecordType::A);
    }
    assert_eq!(up.udp_queries(), 2);
    let s = r.counters().snapshot();
    assert_eq!((s.servfail, s.upstream_failures), (2, 2));
    assert_accounted(&s);
}

#[tokio::test]
async fn upstream_down_servfail_within_bounded_time() {
    // A silent server: the per-server timeout bounds the wait.
    let dead = FakeUpstream::start(Mode::Blackhole).await;
    let r = resolver_with(vec![dead.addr], |c| {
        c.upstream_timeout = Duration::from_millis(300)
    });
    let t0 = Instant::now();
    let m = ask(&r, 7, "down.test.", RecordType::A, Transport::Udp).await;
    let took = t0.elapsed();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_echoes(&m, 7, "down.test.", RecordType::A);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_eq!(dead.udp_queries(), 1);
    assert_eq!(r.counters().snapshot().upstream_timeouts, 1);

    // A closed port: ICMP unreachable, SERVFAIL at once (UDP and TCP).
    let closed = closed_port().await;
    let r = resolver_with(vec![closed], |c| {
        c.upstream_timeout = Duration::from_secs(2)
    });
    for t in [Transport::Udp, Transport::Tcp] {
        let t0 = Instant::now();
        let m = ask(&r, 8, "down.test.", RecordType::A, t).await;
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        assert!(
            t0.elapsed() < Duration::from_millis(1000),
            "{t:?} {:?}",
            t0.elapsed()
        );
    }
    let s = r.counters().snapshot();
    assert_eq!(
        (s.servfail, s.upstream_failures, s.upstream_timeouts),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn forward_deadline_bounds_three_dead_servers() {
    let dead: Vec<FakeUpstream> = vec![
        FakeUpstream::start(Mode::Blackhole).await,
        FakeUpstream::start(Mode::Blackhole).await,
        FakeUpstream::start(Mode::Blackhole).await,
    ];
    let r = resolver_with(dead.iter().map(|d| d.addr).collect(), |c| {
        c.upstream_timeout = Duration::from_millis(400);
        c.forward_deadline = Duration::from_millis(600);
    });
    let t0 = Instant::now();
    let m = ask(&r, 1, "slow.test.", RecordType::A, Transport::Udp).await;
    let took = t0.elapsed();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(590) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_eq!(
        dead.iter()
            .map(FakeUpstream::udp_queries)
            .collect::<Vec<_>>(),
        [1, 1, 0],
        "the deadline stops before the third"
    );
}

#[tokio::test]
async fn first_of_three_dead_answer_from_second() {
    for first_dead_kind in ["blackhole", "closed"] {
        let blackhole = FakeUpstream::start(Mode::Blackhole).await;
        let first = if first_dead_kind == "closed" {
            closed_port().await
        } else {
            blackhole.addr
        };
        let second = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
        let third = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
        let r = resolver_with(vec![first, second.addr, third.addr], |c| {
            c.upstream_timeout = Duration::from_millis(300)
        });
        for t in [Transport::Udp, Transport::Tcp] {
            let m = ask(
                &r,
                9,
                &format!("{first_dead_kind}-{t:?}.test."),
                RecordType::A,
                t,
            )
            .await;
            assert_eq!(
                m.response_code(),
                ResponseCode::NoError,
                "{first_dead_kind} {t:?}"
            );
            assert_eq!(answer_data(&m), ["192.0.2.1", "192.0.2.2"]);
        }
        assert_eq!(
            (second.udp_queries(), second.tcp_queries()),
            (1, 1),
            "{first_dead_kind}"
        );
        assert_eq!((third.udp_queries(), third.tcp_queries()), (0, 0));
    }
}

#[tokio::test]
async fn servfail_or_refused_upstream_tries_the_next() {
    for mode in [Mode::ServFail, Mode::Refused] {
        let bad = FakeUpstream::start(mode.clone()).await;
        let good = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
        let r = resolver_with(vec![bad.addr, good.addr], |_| {});
        let m = ask(&r, 1, "next.test.", RecordType::A, Transport::Udp).await;
        assert_eq!(m.response_code(), ResponseCode::NoError, "{mode:?}");
        assert_eq!((bad.udp_queries(), good.udp_queries()), (1, 1), "{mode:?}");
        assert_eq!(r.counters().snapshot().upstream_failures, 1);
    }
}

#[tokio::test]
async fn slow_upstream() {
    // Slower than the timeout: skipped for the next one.
    let slow = FakeUpstream::start(Mode::Slow(Duration::from_millis(800))).await;
    let fast = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
    let r = resolver_with(vec![slow.addr, fast.addr], |c| {
        c.upstream_timeout = Duration::from_millis(300)
    });
    let m = ask(&r, 1, "slow1.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(answer_data(&m), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(fast.udp_queries(), 1);

    // Slow but within the timeout: waited for.
    let r = resolver_with(vec![slow.addr], |c| {
        c.upstream_timeout = Duration::from_secs(2)
    });
    for (t, qname) in [
        (Transport::Udp, "slow2.test."),
        (Transport::Tcp, "slow3.test."),
    ] {
        let t0 = Instant::now();
        let m = ask(&r, 2, qname, RecordType::A, t).await;
        assert!(t0.elapsed() >= Duration::from_millis(790), "{t:?}");
        assert_eq!(answer_data(&m), ["192.0.2.1", "192.0.2.2"], "{t:?}");
    }
    assert_eq!((slow.udp_queries(), slow.tcp_queries()), (2, 1));
}

#[tokio::test]
async fn stray_replies_are_ignored() {
    let up = FakeUpstream::start(Mode::WrongIdFirst).await;
    let r = resolver_with(vec![up.addr], |_| {});
    let m = ask(&r, 3, "spoof.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(answer_data(&m), ["192.0.2.1", "192.0.2.2"]);
}

#[tokio::test]
async fn cap_on_concurrent_upstream_queries() {
    let slow = FakeUpstream::start(Mode::Slow(Duration::from_millis(600))).await;
    let r = Arc::new(resolver_with(vec![slow.addr], |c| {
        c.max_concurrent_upstream = 2;
        c.upstream_timeout = Duration::from_secs(2);
    }));
    let mut pending = Vec::new();
    for i in 0..2u16 {
        let r = Arc::clone(&r);
        pending.push(tokio::spawn(async move {
            let q = query_bytes(i, &format!("p{i}.test."), RecordType::A);
            r.handle(&q, &asker(), Transport::Udp).await
        }));
    }
    // Let both reach the upstream.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t0 = Instant::now();
    let m = ask(&r, 99, "p99.test.", RecordType::A, Transport::Udp).await;
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "REFUSED at once, not queued"
    );
    assert_eq!(m.response_code(), ResponseCode::Refused);
    assert_echoes(&m, 99, "p99.test.", RecordType::A);
    // Local names are never capped.
    let local = ask(&r, 100, "web.", RecordType::A, Transport::Udp).await;
    assert_eq!(answer_data(&local), ["10.1.0.2"]);
    for p in pending {
        let answer = parse(&p.await.expect("task").expect("answer"));
        assert_eq!(answer.response_code(), ResponseCode::NoError);
    }
    // Permits are back: forwarding works again.
    let m = ask(&r, 101, "p101.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    let s = r.counters().snapshot();
    assert_eq!(
        (s.cap_hits, s.refused, s.forwarded, s.local_answers),
        (1, 1, 3, 1)
    );
    assert_accounted(&s);
}

#[tokio::test]
async fn internal_network_local_only_refused_otherwise() {
    let up = FakeUpstream::start(Mode::Answer { ttl: 300 }).await;
    let r = resolver_with(vec![up.addr], |_| {});
    let internal = AskerContext {
        networks: vec!["net1".into()],
        internal: true,
    };
    let local = parse(
        &r.handle(
            &query_bytes(1, "web.", RecordType::A),
            &internal,
            Transport::Udp,
        )
        .await
        .expect("a"),
    );
    assert_eq!(answer_data(&local), ["10.1.0.2"]);
    let nodata = parse(
        &r.handle(
            &query_bytes(2, "db.", RecordType::AAAA),
            &internal,
            Transport::Udp,
        )
        .await
        .expect("a"),
    );
    assert_eq!(nodata.response_code(), ResponseCode::NoError);
    let ext = parse(
        &r.handle(
            &query_bytes(3, "example.test.", RecordType::A),
            &internal,
            Transport::Tcp,
        )
        .await
        .expect("a"),
    );
    assert_eq!(ext.response_code(), ResponseCode::Refused);
    assert_echoes(&ext, 3, "example.test.", RecordType::A);
    assert_eq!(
        up.udp_queries() + up.tcp_queries(),
        0,
        "nothing leaves an internal network"
    );
    assert_eq!(r.counters().snapshot().refused, 1);
}

/// A header (QR=0, RD, the given counts) followed by `body`.
fn raw(id: u16, qdcount: u16, body: &[u8]) -> Vec<u8> {
    let mut header = Header::new();
    header
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_query_count(qdcount);
    let mut bytes = Vec::new();
    header
        .emit(&mut BinEncoder::new(&mut bytes))
        .expect("header");
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test]
async fn bad_input_formerr_or_drop_and_keeps_serving() {
    let r = resolver_with(vec![], |_| {});
    let a = asker();

    // A query with 100 questions: FORMERR, no question echoed.
    let mut hundred = Message::new();
    hundred.set_id(0xabcd).set_recursion_desired(true);
    for i in 0..100 {
        hundred.add_query(Query::query(
            Name::from_ascii(format!("q{i}.test.")).expect("name"),
            RecordType::A,
        ));
    }
    let bytes = hundred.to_vec().expect("encode");
    let m = parse(&r.handle(&bytes, &a, Transport::Udp).await.expect("FORMERR"));
    assert_eq!((m.id(), m.response_code()), (0xabcd, ResponseCode::FormErr));
    assert!(m.queries().is_empty());

    // Zero questions: FORMERR.
    let m = parse(
        &r.handle(&raw(5, 0, &[]), &a, Transport::Udp)
            .await
            .expect("FORMERR"),
    );
    assert_eq!((m.id(), m.response_code()), (5, ResponseCode::FormErr));

    // A compression loop in the question name: a pointer to itself at offset 12.
    let looped = raw(6, 1, &[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
    let m = parse(
        &r.handle(&looped, &a, Transport::Udp)
            .await
            .expect("FORMERR"),
    );
    assert_eq!((m.id(), m.response_code()), (6, ResponseCode::FormErr));
    // A two-pointer loop (12 -> 14 -> 12).
    let looped2 = raw(7, 1, &[0xc0, 0x0e, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]);
    let m = parse(
        &r.handle(&looped2, &a, Transport::Tcp)
            .await
            .expect("FORMERR"),
    );
    assert_eq!((m.id(), m.response_code()), (7, ResponseCode::FormErr));

    // A question count that lies (says 3, holds 1): FORMERR.
    let mut short = query_bytes(8, "web.", RecordType::A);
    short[5] = 3;
    let m = parse(&r.handle(&short, &a, Transport::Udp).await.expect("FORMERR"));
    assert_eq!(m.response_code(), ResponseCode::FormErr);

    // Truncated headers: dropped. Truncated bodies: FORMERR.
    let good = query_bytes(9, "web.", RecordType::A);
    for cut in 0..good.len() {
        let answer = r.handle(&good[..cut], &a, Transport::Udp).await;
        if cut < 12 {
            assert!(answer.is_none(), "cut {cut}");
        } else {
            let m = parse(&answer.expect("FORMERR"));
            assert_eq!(
                (m.id(), m.response_code()),
                (9, ResponseCode::FormErr),
                "cut {cut}"
            );
        }
    }

    // A response sent to us: dropped.
    let mut response = query_message(10, "web.", RecordType::A, false);
    response.set_message_type(MessageType::Response);
    assert!(r
        .handle(&response.to_vec().expect("enc"), &a, Transport::Udp)
        .await
        .is_none());

    // An opcode other than QUERY: NOTIMP.
    let mut status = query_message(11, "web.", RecordType::A, false);
    status.set_op_code(OpCode::Status);
    let m = parse(
        &r.handle(&status.to_vec().expect("enc"), &a, Transport::Udp)
            .await
            .expect("NOTIMP"),
    );
    assert_eq!(m.response_code(), ResponseCode::NotImp);

    // Random bytes (seeded): an answer, if any, is a well-formed response to that id.
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..3000 {
        let len = rng.gen_range(0..600);
        let mut junk = vec![0u8; len];
        rng.fill(&mut junk[..]);
        if rng.gen_bool(0.5) && len > 3 {
            junk[2] &= 0x7f; // QR=0 half the time, so most reach the FORMERR path
        }
        let t0 = Instant::now();
        if let Some(answer) = r.handle(&junk, &a, Transport::Udp).await {
            let m = parse(&answer);
            assert_eq!(m.id(), u16::from_be_bytes([junk[0], junk[1]]));
            assert_eq!(m.message_type(), MessageType::Response);
        }
        assert!(t0.elapsed() < Duration::from_millis(500));
    }

    // Still answering normal queries.
    let ok = ask(&r, 12, "web.", RecordType::A, Transport::Udp).await;
    assert_eq!(answer_data(&ok), ["10.1.0.2"]);
    let s = r.counters().snapshot();
    assert!(s.formerr > 1000 && s.dropped_malformed > 500, "{s:#?}");
    assert_accounted(&s);
}

#[tokio::test]
async fn edns_version_one_gets_badvers() {
    let r = resolver_with(vec![], |_| {});
    let mut m = query_message(1, "web.", RecordType::A, true);
    if let Some(e) = m.extensions_mut().as_mut() {
        e.set_version(1);
    }
    let answer = parse(
        &r.handle(&m.to_vec().expect("enc"), &asker(), Transport::Udp)
            .await
            .expect("a"),
    );
    // 16 is BADVERS with EDNS (hickory names the shared value BADSIG).
    assert_eq!(u16::from(answer.response_code()), 16);
    assert!(answer.extensions().is_some());
}
