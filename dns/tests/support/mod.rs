//! Test helpers: a programmable upstream DNS server on 127.0.0.1 (UDP and TCP on one random
//! port, built with hickory-proto) that counts what it receives, and query/answer helpers.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netyard_dns::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use netyard_dns::proto::rr::rdata::{A, SOA};
use netyard_dns::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How the fake upstream behaves.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A 192.0.2.1 (and 192.0.2.2) for any name, with this TTL.
    Answer { ttl: u32 },
    /// Like `Answer { ttl: 300 }`, after this delay.
    Slow(Duration),
    /// Counts queries, never answers.
    Blackhole,
    /// UDP: TC set, no answer. TCP: the full answer.
    Truncate,
    /// NXDOMAIN with an SOA (TTL, MINIMUM) in the authority section.
    NxDomain { soa_ttl: u32, minimum: u32 },
    /// NOERROR, no answer, an SOA in the authority section.
    NoData { soa_ttl: u32, minimum: u32 },
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// UDP: first a reply with the wrong id, then the right one.
    WrongIdFirst,
}

/// A fake upstream server. Dropping it stops it.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// UDP and TCP bound to the same random loopback port.
pub async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair on 127.0.0.1");
}

/// A loopback address nobody listens on (UDP: ICMP port unreachable; TCP: RST).
pub async fn closed_port() -> SocketAddr {
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().expect("addr");
    drop(udp);
    drop(tcp);
    addr
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn soa_record(soa_ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name("test."),
        name("admin.test."),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(name("test."), soa_ttl, RData::SOA(soa))
}

/// The fake upstream's answer to `request` over UDP (`udp`) or TCP.
fn respond(mode: &Mode, request: &Message, udp: bool) -> Option<Message> {
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    response.add_queries(request.queries().iter().cloned());
    if let Some(edns) = request.extensions() {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload());
        response.set_edns(ours);
    }
    let qname = request.queries().first()?.name().clone();
    let add_answer = |response: &mut Message, ttl: u32| {
        if request.queries().first().map(Query::query_type) == Some(RecordType::A) {
            for last in [1, 2] {
                response.add_answer(Record::from_rdata(
                    qname.clone(),
                    ttl,
                    RData::A(A::new(192, 0, 2, last)),
                ));
            }
        }
    };
    match mode {
        Mode::Answer { ttl } => add_answer(&mut response, *ttl),
        Mode::Slow(_) | Mode::WrongIdFirst => add_answer(&mut response, 300),
        Mode::Blackhole => return None,
        Mode::Truncate => {
            if udp {
                response.set_truncated(true);
            } else {
                add_answer(&mut response, 300);
            }
        }
        Mode::NxDomain { soa_ttl, minimum } => {
            response.set_response_code(ResponseCode::NXDomain);
            response.add_name_server(soa_record(*soa_ttl, *minimum));
        }
        Mode::NoData { soa_ttl, minimum } => {
            response.add_name_server(soa_record(*soa_ttl, *minimum));
        }
        Mode::ServFail => {
            response.set_response_code(ResponseCode::ServFail);
        }
        Mode::Refused => {
            response.set_response_code(ResponseCode::Refused);
        }
    }
    Some(response)
}

impl FakeUpstream {
    pub async fn start(mode: Mode) -> FakeUpstream {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("addr");
        let udp_count = Arc::new(AtomicUsize::new(0));
        let tcp_count = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(mode));

        let udp = Arc::new(udp);
        let udp_task = {
            let count = Arc::clone(&udp_count);
            let mode = Arc::clone(&mode);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65535];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let Ok(request) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    let mode = mode.lock().expect("mode").clone();
                    let Some(response) = respond(&mode, &request, true) else {
                        continue;
                    };
                    let socket = Arc::clone(&udp);
                    tokio::spawn(async move {
                        if let Mode::Slow(delay) = mode {
                            tokio::time::sleep(delay).await;
                        }
                        if let Mode::WrongIdFirst = mode {
                            let mut wrong = response.clone();
                            wrong.set_id(response.id().wrapping_add(1));
                            wrong.answers_mut().clear();
                            wrong.set_response_code(ResponseCode::ServFail);
                            let bytes = wrong.to_vec().expect("encode");
                            let _ = socket.send_to(&bytes, peer).await;
                            let _ = socket.send_to(b"garbage", peer).await;
                        }
                        let bytes = response.to_vec().expect("encode");
                        let _ = socket.send_to(&bytes, peer).await;
                    });
                }
            })
        };
        let tcp_task = {
            let count = Arc::clone(&tcp_count);
            let mode = Arc::clone(&mode);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = tcp.accept().await else {
                        continue;
                    };
                    let count = Arc::clone(&count);
                    let mode = Arc::clone(&mode);
                    tokio::spawn(async move {
                        let _ = serve_tcp_conn(stream, count, mode).await;
                    });
                }
            })
        };
        FakeUpstream {
            addr,
            udp: udp_count,
            tcp: tcp_count,
            mode,
            tasks: vec![udp_task, tcp_task],
        }
    }

    pub fn udp_queries(&self) -> usize {
        self.udp.load(Ordering::SeqCst)
    }

    pub fn tcp_queries(&self) -> usize {
        self.tcp.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }
}

async fn serve_tcp_conn(
    mut stream: TcpStream,
    count: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
) -> std::io::Result<()> {
    loop {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut buf).await?;
        count.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = Message::from_vec(&buf) else {
            continue;
        };
        let mode = mode.lock().expect("mode").clone();
        if let Mode::Slow(delay) = mode {
            tokio::time::sleep(delay).await;
        }
        let Some(response) = respond(&mode, &request, false) else {
            continue;
        };
        let bytes = response.to_vec().expect("encode");
        let len = u16::try_from(bytes.len()).expect("fits");
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&bytes).await?;
    }
}

/// A query message: `id`, one question, RD set, EDNS (1232) if `edns`.
pub fn query_message(id: u16, qname: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(name(qname), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

pub fn query_bytes(id: u16, qname: &str, qtype: RecordType) -> Vec<u8> {
    query_message(id, qname, qtype, false)
        .to_vec()
        .expect("encode")
}

pub fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("answer parses")
}

/// The A/AAAA/PTR data of an answer as strings, sorted.
pub fn answer_data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::PTR(p) => p.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}
