//! Serving loops: move bytes between client sockets and the [`Resolver`].
//!
//! The daemon creates the sockets (inside each container's namespace, 127.0.0.11:53, or on a
//! gateway address), converts them with `from_std`, and spawns [`serve_udp`] / [`serve_tcp`] on
//! its runtime. The loops run until their task is aborted (detach) and never return on a
//! per-query error: a failing receive or accept is logged, the loop pauses briefly and goes on.
//!
//! Local answers are computed inline in the receive loop (no task per query); only queries that
//! go upstream get a task, and there are at most `max_concurrent_upstream` of those.
//!
//! Who is asking comes from an [`AskerHandle`]: the daemon updates it on attach/detach, and the
//! next query sees the new networks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use tokio::sync::{mpsc, Semaphore};

use crate::answer_cache::AnswerCache;
use crate::conns::{Activity, Admission, Conns};
use crate::counters::Counters;
use crate::resolver::{AskerContext, Resolver, Step, Transport};

/// Queries of one TCP connection being answered at once (RFC 7766 pipelining); reading stops
/// while this many are in flight.
const TCP_PIPELINE: usize = 16;

/// Pause after a failing `recv_from`/`accept` (EMFILE, ENOBUFS ...) so the loop cannot spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Largest query datagram read; anything longer is cut and will not parse.
const UDP_RECV_BUFFER: usize = 4096;

/// The asker of one listener, replaceable while it serves (attach/detach of a network).
#[derive(Debug, Clone)]
pub struct AskerHandle(Arc<ArcSwap<AskerContext>>);

impl AskerHandle {
    /// A handle holding `asker`.
    pub fn new(asker: AskerContext) -> AskerHandle {
        AskerHandle(Arc::new(ArcSwap::from_pointee(asker)))
    }

    /// The current asker.
    pub fn get(&self) -> Arc<AskerContext> {
        self.0.load_full()
    }

    /// Replace the asker; queries received from now on use it.
    pub fn set(&self, asker: AskerContext) {
        self.0.store(Arc::new(asker));
    }
}

/// Answer DNS over UDP on `socket` until the task is aborted. Queries are read in batches
/// (recvmmsg) while the socket has them; local answers are made inline (a question answered
/// before from the listener's [`AnswerCache`], as bytes) and sent together at the end of the
/// batch (sendmmsg); only forwarded queries get a task.
pub async fn serve_udp(socket: UdpSocket, resolver: Arc<Resolver>, asker: AskerHandle) {
    use std::os::fd::AsRawFd;
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut batch = crate::mmsg::Batch::new(UDP_RECV_BUFFER);
    let mut replies = crate::mmsg::Replies::default();
    let mut cache = AnswerCache::default();
    loop {
        let n = match socket
            .async_io(tokio::io::Interest::READABLE, || batch.recv(fd))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let who = asker.get();
        cache.sync(&resolver.records().load(), &who);
        for i in 0..n {
            let (Some((query, peer)), Some(raw_peer)) = (batch.get(i), batch.raw_peer(i)) else {
                continue;
            };
            let started = std::time::Instant::now();
            let mut kind = None;
            replies.push(raw_peer, |buf| {
                kind = cache.answer(query, buf);
                kind.is_some()
            });
            if let Some(kind) = kind {
                resolver.count_reused(kind, started);
                continue;
            }
            match resolver.prepare(query, &who, Transport::Udp) {
                Step::Reply(answer) => replies.push(raw_peer, |buf| {
                    buf.extend_from_slice(&answer);
                    true
                }),
                Step::Local {
                    bytes,
                    kind,
                    reusable,
                } => {
                    if reusable {
                        cache.insert(query, &bytes, kind);
                    }
                    replies.push(raw_peer, |buf| {
                        buf.extend_from_slice(&bytes);
                        true
                    });
                }
                Step::Drop => {}
                Step::Forward(job) => {
                    let socket = Arc::clone(&socket);
                    let resolver = Arc::clone(&resolver);
                    tokio::spawn(async move {
                        if let Some(answer) = resolver.forward(*job).await {
                            send_udp(&socket, &answer, peer, resolver.counters()).await;
                        }
                    });
                }
            }
        }
        while !replies.is_done() {
            let sent = socket
                .async_io(tokio::io::Interest::WRITABLE, || replies.send(fd))
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "DNS UDP send failed");
                Counters::inc(&resolver.counters().send_errors);
            }
        }
        replies.clear();
    }
}

async fn send_udp(socket: &UdpSocket, answer: &[u8], peer: SocketAddr, counters: &Counters) {
    if let Err(e) = socket.send_to(answer, peer).await {
        tracing::debug!(error = %e, %peer, "DNS UDP send failed");
        Counters::inc(&counters.send_errors);
    }
}

/// Answer DNS over TCP on `listener` until the task is aborted: several queries per connection,
/// pipelined, each answer framed with its 2-byte length; idle connections are closed after
/// [`crate::ResolverConfig::tcp_idle_timeout`]. At most
/// [`crate::ResolverConfig::tcp_max_connections`] are open at once: at the cap the connection
/// idle longest is closed to make room (`tcp_evicted`), and a new one is refused
/// (`tcp_rejected`) only when every open one has a query in flight (see [`crate::conns`]).
pub async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>, asker: AskerHandle) {
    let table = Arc::new(Mutex::new(Conns::new(
        resolver.config().tcp_max_connections,
    )));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        // A poisoned lock only means a serving task panicked; the table is still whole.
        let mut conns = table.lock().unwrap_or_else(|p| p.into_inner());
        match conns.admit() {
            Admission::Admitted => {}
            Admission::Evicted(id) => {
                tracing::debug!(%peer, evicted = id, "DNS TCP connection cap: closed the one idle longest");
                Counters::inc(&resolver.counters().tcp_evicted);
            }
            Admission::Refused => {
                tracing::debug!(%peer, "too many busy DNS TCP connections; closing");
                Counters::inc(&resolver.counters().tcp_rejected);
                drop(stream);
                continue;
            }
        }
        let (id, activity) = conns.activity();
        let resolver = Arc::clone(&resolver);
        let asker = asker.clone();
        let done = Arc::clone(&table);
        let act = Arc::clone(&activity);
        // Spawned with the table locked: the task cannot remove its entry before it is in.
        let task = tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, resolver, asker, act).await {
                tracing::debug!(error = %e, %peer, "DNS TCP connection ended");
            }
            done.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        });
        conns.insert(id, activity, task.abort_handle());
    }
}

/// Read one length-prefixed message; None on a clean end of stream or idle timeout.
async fn read_message(reader: &mut OwnedReadHalf, idle: Duration) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 2];
    match tokio::time::timeout(idle, reader.read_exact(&mut prefix)).await {
        Err(_) => return Ok(None),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => {}
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    // The body follows the prefix at once; a client that stalls mid-message is idle too.
    match tokio::time::timeout(idle, reader.read_exact(&mut message)).await {
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) => Ok(Some(message)),
    }
}

async fn serve_connection(
    stream: TcpStream,
    resolver: Arc<Resolver>,
    asker: AskerHandle,
    activity: Arc<Activity>,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let idle = resolver.config().tcp_idle_timeout;
    let (mut reader, mut writer) = stream.into_split();
    let (answers, mut to_send) = mpsc::channel::<Vec<u8>>(TCP_PIPELINE);
    let counters_resolver = Arc::clone(&resolver);
    let written = Arc::clone(&activity);
    let write_task = tokio::spawn(async move {
        while let Some(answer) = to_send.recv().await {
            let Ok(len) = u16::try_from(answer.len()) else {
                // encode() keeps TCP answers within 65535 bytes; never send a corrupt frame.
                written.query_done();
                continue;
            };
            let mut framed = Vec::with_capacity(answer.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&answer);
            if let Err(e) = writer.write_all(&framed).await {
                Counters::inc(&counters_resolver.counters().send_errors);
                return Err(e);
            }
            written.query_done();
        }
        writer.shutdown().await
    });
    let in_flight = Arc::new(Semaphore::new(TCP_PIPELINE));

    let read_result = loop {
        let message = match read_message(&mut reader, idle).await {
            Ok(Some(message)) => message,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let who = asker.get();
        activity.touch();
        match resolver.prepare(&message, &who, Transport::Tcp) {
            Step::Reply(answer) | Step::Local { bytes: answer, .. } => {
                activity.query_started();
                if answers.send(answer).await.is_err() {
                    break Ok(()); // the writer is gone: the client closed.
                }
            }
            Step::Drop => {}
            Step::Forward(job) => {
                activity.query_started();
                let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
                    break Ok(());
                };
                let resolver = Arc::clone(&resolver);
                let answers = answers.clone();
                let activity = Arc::clone(&activity);
                tokio::spawn(async move {
                    match resolver.forward(*job).await {
                        // A send error means the client is gone; nothing to do.
                        Some(answer) => {
                            let _ = answers.send(answer).await;
                        }
                        None => activity.query_done(),
                    }
                    drop(slot);
                });
            }
        }
    };
    // Answers still being forwarded keep their sender; the writer ends after the last one.
    drop(answers);
    let write_result = write_task
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
    read_result.and(write_result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Entry, RecordStore, Records};
    use crate::ResolverConfig;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};

    fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    fn records(ip: &str) -> Records {
        Records::new(
            vec![Entry {
                network: "lab".into(),
                name: "web".into(),
                aliases: Vec::new(),
                ipv4: Some(ip.parse().unwrap()),
                ipv6: None,
            }],
            60,
        )
    }

    async fn ask(client: &UdpSocket, id: u16, name: &str, qtype: RecordType) -> Message {
        client.send(&query(id, name, qtype)).await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.id(), id);
        m
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn repeated_questions_are_answered_counted_and_see_new_records_at_once() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let store = Arc::new(RecordStore::new(records("10.89.0.2")));
        let resolver = Arc::new(Resolver::new(ResolverConfig::default(), Arc::clone(&store)));
        let asker = AskerHandle::new(AskerContext {
            networks: vec!["lab".into()],
            internal: false,
        });
        let task = tokio::spawn(serve_udp(server, Arc::clone(&resolver), asker.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(addr).await.unwrap();

        for id in 1..=3 {
            assert_eq!(
                addrs(&ask(&client, id, "web", RecordType::A).await),
                ["10.89.0.2"]
            );
            let nodata = ask(&client, 100 + id, "WEB.lab.", RecordType::AAAA).await;
            assert!(nodata.answers().is_empty());
        }
        let c = resolver.counters().snapshot();
        assert_eq!((c.queries_udp, c.local_answers, c.nodata), (6, 3, 3));

        // New records: the next question sees them, not the answer made before.
        store.replace(records("10.89.0.9"));
        assert_eq!(
            addrs(&ask(&client, 7, "web", RecordType::A).await),
            ["10.89.0.9"]
        );
        // Another asker (its network detached): the name is no longer local (no upstream:
        // SERVFAIL), not the stored answer.
        asker.set(AskerContext {
            networks: vec!["other".into()],
            internal: false,
        });
        let m = ask(&client, 8, "web", RecordType::A).await;
        assert!(m.answers().is_empty());
        task.abort();
    }
}
