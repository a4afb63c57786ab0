//! The serving loops on real loopback sockets: dig (dnsutils) as the client, and raw TCP
//! framing checks. Only 127.0.0.1; the upstream is a fake server on loopback.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netyard_dns::proto::rr::RecordType;
use netyard_dns::{
    serve_tcp, serve_udp, AskerContext, AskerHandle, Entry, RecordStore, Records, Resolver,
    ResolverConfig,
};
use support::{answer_data, parse, query_bytes, FakeUpstream, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

fn records() -> Records {
    let e = |name: &str, aliases: &[&str], v4: &str, v6: Option<&str>| Entry {
        network: "net1".into(),
        name: name.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        ipv4: Some(v4.parse().expect("v4")),
        ipv6: v6.map(|s| s.parse().expect("v6")),
    };
    Records::new(
        vec![
            e("web", &["www", "lb"], "10.1.0.2", Some("fd01::2")),
            e("db", &["lb"], "10.1.0.3", None),
            e("cache", &["lb"], "10.1.0.4", None),
        ],
        60,
    )
}

fn net1() -> AskerContext {
    AskerContext {
        networks: vec!["net1".into()],
        internal: false,
    }
}

/// Serve `resolver` on one random 127.0.0.1 port, UDP and TCP, from std sockets as the daemon
/// would hand them over.
async fn start(resolver: Arc<Resolver>, asker: AskerHandle) -> (SocketAddr, Vec<JoinHandle<()>>) {
    let (udp, tcp) = support::bind_pair().await;
    let udp = udp.into_std().expect("std udp");
    let tcp = tcp.into_std().expect("std tcp");
    let addr = udp.local_addr().expect("addr");
    let udp = UdpSocket::from_std(udp).expect("from_std udp");
    let tcp = tokio::net::TcpListener::from_std(tcp).expect("from_std tcp");
    let tasks = vec![
        tokio::spawn(serve_udp(udp, Arc::clone(&resolver), asker.clone())),
        tokio::spawn(serve_tcp(tcp, resolver, asker)),
    ];
    (addr, tasks)
}

fn resolver(upstreams: Vec<SocketAddr>, tweak: impl FnOnce(&mut ResolverConfig)) -> Arc<Resolver> {
    let mut config = ResolverConfig {
        upstreams,
        upstream_timeout: Duration::from_millis(500),
        ..ResolverConfig::default()
    };
    tweak(&mut config);
    Arc::new(Resolver::new(config, Arc::new(RecordStore::new(records()))))
}

/// Run dig against `addr`; its stdout.
async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .await
        .expect("dig must be installed (Debian package dnsutils)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dig {args:?} failed: {stdout}");
    stdout
}

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn dig_udp_and_tcp() {
    let up = FakeUpstream::start(Mode::Truncate).await;
    let r = resolver(vec![up.addr], |_| {});
    let (addr, tasks) = start(Arc::clone(&r), AskerHandle::new(net1())).await;

    let transports: [&[&'static str]; 2] = [&[], &["+tcp"]];
    for transport in transports {
        let with = |extra: &[&'static str]| -> Vec<&'static str> { [transport, extra].concat() };
        assert_eq!(
            lines(&dig(addr, &with(&["+short", "web"])).await),
            ["10.1.0.2"]
        );
        assert_eq!(
            lines(&dig(addr, &with(&["+short", "WWW.net1."])).await),
            ["10.1.0.2"]
        );
        assert_eq!(
            lines(&dig(addr, &with(&["+short", "web", "AAAA"])).await),
            ["fd01::2"]
        );
        assert_eq!(
            lines(&dig(addr, &with(&["+short", "lb"])).await),
            ["10.1.0.2", "10.1.0.3", "10.1.0.4"]
        );
        assert_eq!(
            lines(&dig(addr, &with(&["+short", "-x", "10.1.0.3"])).await),
            ["db.net1."]
        );
        let nodata = dig(addr, &with(&["db", "AAAA"])).await;
        assert!(
            nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
            "{nodata}"
        );
        let mx = dig(addr, &with(&["web", "MX"])).await;
        assert!(
            mx.contains("status: NOERROR") && mx.contains("ANSWER: 0"),
            "{mx}"
        );
        assert!(mx.contains("flags: qr aa rd ra"), "{mx}");
    }

    // Forwarded: over UDP the upstream truncates, dig retries over TCP and gets the answer.
    let out = dig(addr, &["example.test", "A"]).await;
    assert!(
        out.contains("status: NOERROR") && out.contains("192.0.2.1"),
        "{out}"
    );
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 1));
    // Over TCP from the start: forwarded over TCP.
    assert_eq!(
        lines(&dig(addr, &["+tcp", "+short", "other.test"]).await),
        ["192.0.2.1", "192.0.2.2"]
    );
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 2));
    // Cached now, over UDP too: no new upstream query.
    assert_eq!(
        lines(&dig(addr, &["+short", "other.test"]).await),
        ["192.0.2.1", "192.0.2.2"]
    );
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 2));

    let s = r.counters().snapshot();
    assert_eq!(s.queries(), s.outcomes(), "{s:#?}");
    assert!(s.queries_tcp >= 9 && s.queries_udp >= 9, "{s:#?}");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn dig_servfail_when_upstream_dead() {
    let dead = FakeUpstream::start(Mode::Blackhole).await;
    let r = resolver(vec![dead.addr], |c| {
        c.upstream_timeout = Duration::from_millis(300)
    });
    let (addr, tasks) = start(r, AskerHandle::new(net1())).await;
    let out = dig(addr, &["gone.test"]).await;
    assert!(out.contains("status: SERVFAIL"), "{out}");
    for t in tasks {
        t.abort();
    }
}

async fn send_framed(stream: &mut TcpStream, messages: &[Vec<u8>]) {
    let mut buf = Vec::new();
    for m in messages {
        buf.extend_from_slice(&u16::try_from(m.len()).expect("len").to_be_bytes());
        buf.extend_from_slice(m);
    }
    stream.write_all(&buf).await.expect("write");
}

async fn read_framed(stream: &mut TcpStream) -> Vec<u8> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await.expect("prefix");
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut m).await.expect("body");
    m
}

#[tokio::test]
async fn tcp_pipelines_several_queries_per_connection() {
    let slow = FakeUpstream::start(Mode::Slow(Duration::from_millis(300))).await;
    let r = resolver(vec![slow.addr], |_| {});
    let (addr, tasks) = start(r, AskerHandle::new(net1())).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    send_framed(
        &mut stream,
        &[
            query_bytes(1, "far.test.", RecordType::A),
            vec![0xde, 0xad], // garbage: dropped, the connection goes on
            Vec::new(),       // empty message: dropped too
            query_bytes(2, "web.", RecordType::A),
            query_bytes(3, "db.", RecordType::A),
        ],
    )
    .await;
    // Local answers do not wait behind the slow forwarded one.
    let ids: Vec<u16> = [
        read_framed(&mut stream).await,
        read_framed(&mut stream).await,
        read_framed(&mut stream).await,
    ]
    .iter()
    .map(|m| parse(m).id())
    .collect();
    assert_eq!(ids, [2, 3, 1]);
    // The same connection keeps working.
    send_framed(&mut stream, &[query_bytes(4, "www.", RecordType::A)]).await;
    assert_eq!(
        answer_data(&parse(&read_framed(&mut stream).await)),
        ["10.1.0.2"]
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn tcp_idle_timeout_and_connection_cap() {
    let r = resolver(vec![], |c| {
        c.tcp_idle_timeout = Duration::from_millis(300);
        c.tcp_max_connections = 1;
    });
    let (addr, tasks) = start(Arc::clone(&r), AskerHandle::new(net1())).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    send_framed(&mut first, &[query_bytes(1, "web.", RecordType::A)]).await;
    assert_eq!(parse(&read_framed(&mut first).await).id(), 1);

    // A second connection while the first is open and idle (its query answered): the first
    // gives way, the second is served.
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(1), first.read(&mut byte))
        .await
        .expect("the idle connection is closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
    send_framed(&mut second, &[query_bytes(2, "web.", RecordType::A)]).await;
    assert_eq!(parse(&read_framed(&mut second).await).id(), 2);
    let snap = r.counters().snapshot();
    assert_eq!((snap.tcp_evicted, snap.tcp_rejected), (1, 0));

    // The second goes idle and is closed by the server.
    let n = tokio::time::timeout(Duration::from_secs(2), second.read(&mut byte))
        .await
        .expect("idle close")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // Its slot is free again, with nobody evicted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(addr).await.expect("connect");
    send_framed(&mut third, &[query_bytes(3, "db.", RecordType::A)]).await;
    assert_eq!(
        answer_data(&parse(&read_framed(&mut third).await)),
        ["10.1.0.3"]
    );
    assert_eq!(r.counters().snapshot().tcp_evicted, 1);
    for t in tasks {
        t.abort();
    }
}

async fn udp_ask(client: &UdpSocket, id: u16, name: &str) -> netyard_dns::proto::op::Message {
    client
        .send(&query_bytes(id, name, RecordType::A))
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
        .await
        .expect("answer in time")
        .expect("recv");
    parse(&buf[..n])
}

#[tokio::test]
async fn udp_garbage_then_answers_and_asker_updates() {
    let r = resolver(vec![], |_| {});
    let asker = AskerHandle::new(AskerContext {
        networks: vec!["net2".into()],
        internal: false,
    });
    let (addr, tasks) = start(Arc::clone(&r), asker.clone()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    client.connect(addr).await.expect("connect");
    // Not on net1 yet: "web" is not local, and with no upstream that is SERVFAIL.
    let m = udp_ask(&client, 1, "web.").await;
    assert_eq!(
        m.response_code(),
        netyard_dns::proto::op::ResponseCode::ServFail
    );

    client.send(b"\x00").await.expect("send");
    client.send(&[0xff; 40]).await.expect("send");
    asker.set(net1());
    let m = udp_ask(&client, 2, "web.").await;
    assert_eq!(
        m.id(),
        2,
        "garbage got no answer (or a FORMERR that came first)"
    );
    assert_eq!(answer_data(&m), ["10.1.0.2"]);
    let s = r.counters().snapshot();
    assert_eq!(s.dropped_malformed, 2, "{s:#?}");
    for t in tasks {
        t.abort();
    }
}
