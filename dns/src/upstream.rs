//! One exchange with one upstream server, over UDP or TCP. No retries, no timeout: the caller
//! ([`crate::Resolver`]) wraps each exchange in its per-server timeout and moves on.
//!
//! Sockets are ordinary tokio sockets, so they live in whatever network namespace the calling
//! thread runs in: the daemon's own, where loopback upstreams (a host dnsmasq, systemd-resolved)
//! are reachable.
//!
//! A reply is accepted only if it is a response with our (random) id and the question we asked
//! (or no question with an error RCODE, as some servers send). UDP replies that do not match are
//! ignored and the wait goes on, so a stray or spoofed datagram cannot end the exchange; the
//! connected UDP socket only receives from the server's address anyway.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Header, Message, MessageType, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::error::DnsError;

/// The largest DNS message (UDP with EDNS, or TCP).
const MAX_MESSAGE: usize = 65535;

/// What a reply must look like to be accepted.
pub(crate) struct Expect<'a> {
    pub(crate) id: u16,
    pub(crate) query: &'a Query,
}

/// Is this the reply we wait for?
pub(crate) enum Verdict {
    Accept(Message),
    /// Ours (right id) but unusable: give up on this server.
    Bad(String),
    /// Not ours: keep waiting (UDP) or give up (TCP).
    Ignore,
}

impl Expect<'_> {
    pub(crate) fn judge(&self, bytes: &[u8]) -> Verdict {
        let message = match Message::from_vec(bytes) {
            Ok(message) => message,
            Err(e) => {
                let mut decoder = BinDecoder::new(bytes);
                return match Header::read(&mut decoder) {
                    Ok(h) if h.id() == self.id && h.message_type() == MessageType::Response => {
                        Verdict::Bad(format!("unreadable reply: {e}"))
                    }
                    _ => Verdict::Ignore,
                };
            }
        };
        if message.id() != self.id || message.message_type() != MessageType::Response {
            return Verdict::Ignore;
        }
        let same_question = match message.queries() {
            [q] => {
                q.name() == self.query.name()
                    && q.query_type() == self.query.query_type()
                    && q.query_class() == self.query.query_class()
            }
            [] => !matches!(
                message.response_code(),
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            _ => false,
        };
        if same_question {
            Verdict::Accept(message)
        } else {
            Verdict::Bad("reply to another question".to_string())
        }
    }
}

fn io_error(server: SocketAddr, source: std::io::Error) -> DnsError {
    DnsError::Upstream { server, source }
}

fn bad(server: SocketAddr, reason: String) -> DnsError {
    DnsError::UpstreamReply { server, reason }
}

/// Send `query` to `server` over UDP and wait for the matching reply.
pub(crate) async fn exchange_udp(
    server: SocketAddr,
    query: &[u8],
    expect: &Expect<'_>,
) -> Result<Message, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| io_error(server, e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| io_error(server, e))?;
    socket.send(query).await.map_err(|e| io_error(server, e))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        // A closed port answers with ICMP unreachable: recv fails with ECONNREFUSED at once,
        // and the resolver moves on to the next server without waiting for the timeout.
        let len = socket
            .recv(&mut buf)
            .await
            .map_err(|e| io_error(server, e))?;
        let Some(bytes) = buf.get(..len) else {
            continue;
        };
        match expect.judge(bytes) {
            Verdict::Accept(message) => return Ok(message),
            Verdict::Bad(reason) => return Err(bad(server, reason)),
            Verdict::Ignore => {
                tracing::debug!(%server, "ignoring a datagram that is not our reply")
            }
        }
    }
}

/// Send `query` to `server` over TCP (RFC 1035 4.2.2 framing) and read the reply.
pub(crate) async fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    expect: &Expect<'_>,
) -> Result<Message, DnsError> {
    let len = u16::try_from(query.len()).map_err(|_| bad(server, "query too long".into()))?;
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| io_error(server, e))?;
    // Best effort: a failure only costs latency.
    let _ = stream.set_nodelay(true);
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| io_error(server, e))?;
    let mut prefix = [0u8; 2];
    stream
        .read_exact(&mut prefix)
        .await
        .map_err(|e| io_error(server, e))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| io_error(server, e))?;
    match expect.judge(&buf) {
        Verdict::Accept(message) => Ok(message),
        Verdict::Bad(reason) => Err(bad(server, reason)),
        Verdict::Ignore => Err(bad(server, "reply with another id".into())),
    }
}
