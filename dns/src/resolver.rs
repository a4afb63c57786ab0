//! The resolver: one DNS query message in, one answer (or a deliberate silence) out.
//!
//! Decision path of [`Resolver::handle`] (each arm increments exactly one outcome counter, see
//! [`crate::counters`]):
//!
//! 1. Shorter than a header, or a *response* sent to us: dropped (`dropped_malformed`). Answering
//!    a response could start a loop between two resolvers; a fragment has no id to answer to.
//! 2. A header we can read but a body we cannot (a compression loop, a name running past the
//!    end, counts that lie): FORMERR with the client's id and no question (`formerr`).
//! 3. An opcode other than QUERY: NOTIMP (`notimp`). Not exactly one question (0, or 100):
//!    FORMERR. EDNS version above 0: BADVERS (RFC 6891 6.1.3; counted as `formerr`).
//! 4. Class IN/ANY and a name of the record store visible to the asker: the local answer
//!    (`local_answers`) or an empty NOERROR (`nodata`), authoritative, TTL from the records.
//! 5. Asker on an internal network: REFUSED (`refused`), see [`AskerContext::internal`].
//! 6. In the cache: the cached upstream answer, TTLs lowered (`cache_hits`).
//! 7. No upstream configured: SERVFAIL (`servfail`).
//! 8. Already [`ResolverConfig::max_concurrent_upstream`] queries upstream: REFUSED
//!    (`refused` and `cap_hits`), at once: a flood gets a cheap answer, not a queue.
//! 9. Forwarded: upstreams in order, same transport as the client, each within
//!    [`ResolverConfig::upstream_timeout`], all within [`ResolverConfig::forward_deadline`].
//!    SERVFAIL or REFUSED from one (or a timeout, or an error) -> the next. An answer is relayed
//!    (`forwarded`) and cached when cacheable; when none answers, SERVFAIL (`servfail`): the
//!    client is never left to time out.
//!
//! Every answer carries the client's id and question (not the upstream's), RD and CD copied from
//! the query, RA set. Over UDP an answer larger than the client's limit (512, or its EDNS size)
//! is replaced by its truncated form (TC, question only) so the client retries over TCP; an
//! upstream's truncated UDP answer is relayed as is, for the same reason, and never cached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::answer_cache::LocalKind;
use crate::cache::{Cache, Key};
use crate::counters::{Counters, LatencyHistogram};
use crate::records::{Answer, RecordStore};
use crate::resolv_conf::MAX_UPSTREAMS;
use crate::upstream::{exchange_tcp, exchange_udp, Expect};

/// The UDP payload size we advertise in our own EDNS answers (the DNS flag day 2020 value, which
/// avoids IP fragmentation on any common path).
pub const EDNS_PAYLOAD: u16 = 1232;

/// How a query reached us (and how it is forwarded: the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A datagram: answers are limited to 512 bytes or the client's EDNS size.
    Udp,
    /// A TCP stream: no size limit short of 65535.
    Tcp,
}

/// Who is asking: decided by the caller from the socket the query came in on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AskerContext {
    /// The networks the asking endpoint is attached to: only their names resolve.
    pub networks: Vec<String>,
    /// True when the asker must not reach outside (all its networks are `--internal`): local
    /// names only, and REFUSED for everything else.
    ///
    /// REFUSED rather than NXDOMAIN: NXDOMAIN is an authoritative "this name does not exist",
    /// which is false for `example.com`. Clients and caches store it (negative caching), and a
    /// user debugging the container would read "the name is wrong" instead of "this network
    /// has no way out". REFUSED says "this server will not answer that": nothing is negatively
    /// cached, glibc tries the next `nameserver` if the user configured one, and dig shows
    /// `status: REFUSED`, which points at policy rather than at the name. (getaddrinfo reports
    /// it as EAI_AGAIN, "temporary failure", where NXDOMAIN would be EAI_NONAME.)
    pub internal: bool,
}

/// Settings of a [`Resolver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Upstream servers, tried in order; only the first [`MAX_UPSTREAMS`] are used.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for one upstream server before trying the next. Default 2 s: a server
    /// that has not answered in 2 s is very likely down, and the next one still fits within the
    /// deadline (Docker waits 4 s per server, which leaves glibc's 5 s first try no room for a
    /// second server).
    pub upstream_timeout: Duration,
    /// Upper bound from the query to the answer (SERVFAIL if nothing better) for a forwarded
    /// query. Default 5 s, glibc's per-try timeout: the client has our SERVFAIL around the time
    /// it would retransmit, well before it gives up. With the defaults two dead servers cost
    /// 4 s and the third gets the remaining second.
    pub forward_deadline: Duration,
    /// Queries upstream at once, over all clients; beyond it, REFUSED. Default 1024 (Docker's).
    pub max_concurrent_upstream: usize,
    /// Upstream answers kept in the cache; 0 disables the cache. Default 10 000 (a few MB).
    pub cache_capacity: usize,
    /// Longest time a positive answer is cached, in seconds. Default 86 400 (unbound's).
    pub cache_max_ttl: u32,
    /// Longest time a negative answer is cached, in seconds. Default 3 600 (unbound's).
    pub cache_max_negative_ttl: u32,
    /// A TCP client connection idle this long is closed. Default 10 s (RFC 7766 asks for
    /// seconds, not minutes).
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections per listener; beyond it new ones are closed at once. Default 128.
    pub tcp_max_connections: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            forward_deadline: Duration::from_secs(5),
            max_concurrent_upstream: 1024,
            cache_capacity: 10_000,
            cache_max_ttl: 86_400,
            cache_max_negative_ttl: 3_600,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_max_connections: 128,
        }
    }
}

/// What to do with one query message, decided without I/O.
pub(crate) enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Send these bytes back: a local answer (records or NODATA). `reusable` when the same
    /// question gets the same bytes until the records change (see [`crate::answer_cache`]):
    /// at most one record (several are shuffled per query), not truncated.
    Local {
        bytes: Vec<u8>,
        kind: LocalKind,
        reusable: bool,
    },
    /// Send nothing.
    Drop,
    /// Ask upstream (see [`Resolver::forward`]).
    Forward(Box<ForwardJob>),
}

/// A query on its way upstream. Holds one of the concurrency permits until it is answered.
pub(crate) struct ForwardJob {
    pub(crate) request: Message,
    pub(crate) key: Key,
    pub(crate) limit: usize,
    transport: Transport,
    _permit: OwnedSemaphorePermit,
    /// When the query arrived (for the latency histogram).
    started: std::time::Instant,
}

/// The embedded DNS server's brain, shared (in an `Arc`) by every serving loop.
#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    records: Arc<RecordStore>,
    pub(crate) cache: Cache,
    permits: Arc<Semaphore>,
    counters: Counters,
    latency: LatencyHistogram,
}

impl Resolver {
    /// A resolver answering from `records` and forwarding per `config`.
    pub fn new(mut config: ResolverConfig, records: Arc<RecordStore>) -> Resolver {
        if config.upstreams.len() > MAX_UPSTREAMS {
            tracing::warn!(dropped = ?&config.upstreams[MAX_UPSTREAMS..],
                "at most {MAX_UPSTREAMS} upstream servers are used");
            config.upstreams.truncate(MAX_UPSTREAMS);
        }
        let cache = Cache::new(
            config.cache_capacity,
            config.cache_max_ttl,
            config.cache_max_negative_ttl,
        );
        let permits = Arc::new(Semaphore::new(
            config.max_concurrent_upstream.min(Semaphore::MAX_PERMITS),
        ));
        Resolver {
            config,
            records,
            cache,
            permits,
            counters: Counters::default(),
            latency: LatencyHistogram::default(),
        }
    }

    /// The settings in force (upstreams already cut to [`MAX_UPSTREAMS`]).
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// The record store answered from; [`RecordStore::replace`] it to update names.
    pub fn records(&self) -> &Arc<RecordStore> {
        &self.records
    }

    /// The live counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// How long answers took, from the query's arrival to the answer's bytes (dropped queries
    /// are not in it).
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Answer one query message from `asker`, received over `transport`.
    ///
    /// Returns the answer to send back (without the TCP length prefix), or None when the message
    /// is dropped on purpose (see the module docs). Bounded in time by
    /// [`ResolverConfig::forward_deadline`] (plus one upstream exchange's bookkeeping).
    pub async fn handle(
        &self,
        query: &[u8],
        asker: &AskerContext,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self.prepare(query, asker, transport) {
            Step::Reply(bytes) | Step::Local { bytes, .. } => Some(bytes),
            Step::Drop => None,
            Step::Forward(job) => self.forward(*job).await,
        }
    }

    /// Everything up to the upstream exchange: no I/O, no waiting.
    pub(crate) fn prepare(&self, bytes: &[u8], asker: &AskerContext, transport: Transport) -> Step {
        let started = std::time::Instant::now();
        let step = self.decide(bytes, asker, transport, started);
        if matches!(step, Step::Reply(_) | Step::Local { .. }) {
            self.latency.observe(started.elapsed());
        }
        step
    }

    /// Counts a UDP query answered from a listener's [`crate::answer_cache::AnswerCache`]
    /// exactly as [`Resolver::prepare`] counted it when it made the answer.
    pub(crate) fn count_reused(&self, kind: LocalKind, started: std::time::Instant) {
        let c = &self.counters;
        Counters::inc(&c.queries_udp);
        Counters::inc(match kind {
            LocalKind::Answer => &c.local_answers,
            LocalKind::NoData => &c.nodata,
        });
        self.latency.observe(started.elapsed());
    }

    /// [`Resolver::prepare`] without the clock.
    fn decide(
        &self,
        bytes: &[u8],
        asker: &AskerContext,
        transport: Transport,
        started: std::time::Instant,
    ) -> Step {
        let c = &self.counters;
        Counters::inc(match transport {
            Transport::Udp => &c.queries_udp,
            Transport::Tcp => &c.queries_tcp,
        });

        let request = match Message::from_vec(bytes) {
            Ok(request) => request,
            Err(e) => return self.unparseable(bytes, &e.to_string()),
        };
        if request.message_type() != MessageType::Query {
            tracing::debug!(
                id = request.id(),
                "dropping a response sent to the resolver"
            );
            Counters::inc(&c.dropped_malformed);
            return Step::Drop;
        }
        let limit = response_limit(&request, transport);
        if request.op_code() != OpCode::Query {
            Counters::inc(&c.notimp);
            let questions = if request.queries().len() == 1 {
                request.queries()
            } else {
                &[]
            };
            return self.reply(
                response_to(&request, questions, ResponseCode::NotImp),
                limit,
            );
        }
        let [query] = request.queries() else {
            tracing::debug!(
                id = request.id(),
                questions = request.queries().len(),
                "FORMERR"
            );
            Counters::inc(&c.formerr);
            return self.reply(response_to(&request, &[], ResponseCode::FormErr), limit);
        };
        if request
            .extensions()
            .as_ref()
            .is_some_and(|e| e.version() > 0)
        {
            Counters::inc(&c.formerr);
            let response = response_to(&request, request.queries(), ResponseCode::BADVERS);
            return self.reply(response, limit);
        }

        if matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            let records = self.records.load();
            let answer = records.lookup(
                &asker.networks,
                query.name(),
                query.query_type(),
                &mut rand::thread_rng(),
            );
            match answer {
                Answer::Local { records } => {
                    Counters::inc(&c.local_answers);
                    let reusable = records.len() <= 1;
                    let response = local_response(&request, records);
                    return local(response, limit, LocalKind::Answer, reusable);
                }
                Answer::NoData => {
                    Counters::inc(&c.nodata);
                    let response = local_response(&request, Vec::new());
                    return local(response, limit, LocalKind::NoData, true);
                }
                Answer::NotLocal => {}
            }
        }

        if asker.internal {
            Counters::inc(&c.refused);
            let response = response_to(&request, request.queries(), ResponseCode::Refused);
            return self.reply(response, limit);
        }

        let key = Key::of(query);
        if let Some(cached) = self.cache.get(&key, std::time::Instant::now()) {
            Counters::inc(&c.cache_hits);
            if cached.response_code() == ResponseCode::NXDomain {
                Counters::inc(&c.nxdomain);
                Counters::inc(&c.nxdomain_cached);
            }
            return self.reply(relayed_response(&request, cached), limit);
        }

        if self.config.upstreams.is_empty() {
            Counters::inc(&c.servfail);
            let response = response_to(&request, request.queries(), ResponseCode::ServFail);
            return self.reply(response, limit);
        }

        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            tracing::debug!(id = request.id(), "too many upstream queries; REFUSED");
            Counters::inc(&c.cap_hits);
            Counters::inc(&c.refused);
            let response = response_to(&request, request.queries(), ResponseCode::Refused);
            return self.reply(response, limit);
        };
        Step::Forward(Box::new(ForwardJob {
            request,
            key,
            limit,
            transport,
            _permit: permit,
            started,
        }))
    }

    /// Ask the upstream servers in order; relay the first usable answer, or SERVFAIL.
    pub(crate) async fn forward(&self, job: ForwardJob) -> Option<Vec<u8>> {
        let started = job.started;
        let answer = self.ask_upstreams(job).await;
        if answer.is_some() {
            self.latency.observe(started.elapsed());
        }
        answer
    }

    async fn ask_upstreams(&self, job: ForwardJob) -> Option<Vec<u8>> {
        let c = &self.counters;
        let start = tokio::time::Instant::now();
        let deadline = start + self.config.forward_deadline;
        let [query] = job.request.queries() else {
            // prepare() only forwards single-question queries.
            return None;
        };
        for &server in &self.config.upstreams {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let budget = self.config.upstream_timeout.min(deadline - now);
            let id: u16 = rand::random();
            let bytes = match upstream_query(&job.request, id).to_vec() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode the upstream query");
                    break;
                }
            };
            let expect = Expect { id, query };
            let exchange = async {
                match job.transport {
                    Transport::Udp => exchange_udp(server, &bytes, &expect).await,
                    Transport::Tcp => exchange_tcp(server, &bytes, &expect).await,
                }
            };
            let reply = match tokio::time::timeout(budget, exchange).await {
                Err(_) => {
                    tracing::debug!(%server, name = %query.name(), "upstream timed out");
                    Counters::inc(&c.upstream_timeouts);
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, name = %query.name(), "upstream failed");
                    Counters::inc(&c.upstream_failures);
                    continue;
                }
                Ok(Ok(reply)) => reply,
            };
            match reply.response_code() {
                ResponseCode::ServFail | ResponseCode::Refused => {
                    tracing::debug!(%server, rcode = %reply.response_code(), "trying the next upstream");
                    Counters::inc(&c.upstream_failures);
                    continue;
                }
                ResponseCode::NXDomain => Counters::inc(&c.nxdomain),
                _ => {}
            }
            self.cache
                .insert(job.key.clone(), &reply, std::time::Instant::now());
            Counters::inc(&c.forwarded);
            return encode(&relayed_response(&job.request, reply), job.limit);
        }
        Counters::inc(&c.servfail);
        let response = response_to(&job.request, job.request.queries(), ResponseCode::ServFail);
        encode(&response, job.limit)
    }

    /// A message whose body does not parse: FORMERR if the header does, else silence.
    fn unparseable(&self, bytes: &[u8], error: &str) -> Step {
        let c = &self.counters;
        let mut decoder = BinDecoder::new(bytes);
        match Header::read(&mut decoder) {
            Ok(header) if header.message_type() == MessageType::Query => {
                tracing::debug!(id = header.id(), %error, "malformed query; FORMERR");
                Counters::inc(&c.formerr);
                let mut response = Message::new();
                let mut h = Header::response_from_request(&header);
                h.set_recursion_available(true)
                    .set_response_code(ResponseCode::FormErr);
                response.set_header(h);
                // No question: we could not read it. Not over 512 bytes, whatever the transport.
                self.reply(response, 512)
            }
            _ => {
                tracing::debug!(len = bytes.len(), %error, "dropping an unreadable message");
                Counters::inc(&c.dropped_malformed);
                Step::Drop
            }
        }
    }

    fn reply(&self, response: Message, limit: usize) -> Step {
        match encode(&response, limit) {
            Some(bytes) => Step::Reply(bytes),
            None => Step::Drop,
        }
    }
}

/// A local answer's step; reusable only when `reusable` and not truncated.
fn local(response: Message, limit: usize, kind: LocalKind, reusable: bool) -> Step {
    match encode(&response, limit) {
        Some(bytes) => {
            // encode() replaced an answer over the limit by its truncated form (TC set).
            let truncated = bytes.get(2).is_some_and(|f| f & 0x02 != 0);
            Step::Local {
                reusable: reusable && !truncated,
                bytes,
                kind,
            }
        }
        None => Step::Drop,
    }
}

/// The largest answer the client accepts: 512 bytes over UDP unless its EDNS says more.
pub(crate) fn response_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        // Message::max_payload is the EDNS size, never below 512.
        Transport::Udp => usize::from(request.max_payload()),
        Transport::Tcp => usize::from(u16::MAX),
    }
}

/// Our EDNS record, for answers to clients that sent one.
fn our_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns
}

/// A response skeleton: the client's id, opcode, RD and CD; RA set; `questions`; our EDNS if the
/// client used EDNS.
fn response_to(request: &Message, questions: &[Query], rcode: ResponseCode) -> Message {
    let mut header = Header::response_from_request(request.header());
    header
        .set_recursion_available(true)
        .set_response_code(rcode);
    let mut response = Message::new();
    response.set_header(header);
    response.add_queries(questions.iter().cloned());
    if request.extensions().is_some() {
        response.set_edns(our_edns());
    }
    response
}

/// An authoritative NOERROR with `answers` (empty for NODATA).
fn local_response(request: &Message, answers: Vec<Record>) -> Message {
    let mut response = response_to(request, request.queries(), ResponseCode::NoError);
    response.set_authoritative(true);
    response.insert_answers(answers);
    response
}

/// An upstream (or cached) answer dressed for the client: its id, its question, its RD/CD.
pub(crate) fn relayed_response(request: &Message, mut upstream: Message) -> Message {
    upstream
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_checking_disabled(request.checking_disabled());
    *upstream.queries_mut() = request.queries().to_vec();
    match request.extensions() {
        // The client cannot read an OPT record it did not ask for.
        None => *upstream.extensions_mut() = None,
        Some(_) => {
            if upstream.extensions().is_none() {
                upstream.set_edns(our_edns());
            }
        }
    }
    upstream
}

/// The query sent upstream: the client's question, RD, CD and EDNS (so the upstream honours
/// the client's UDP size and options), our own random id.
pub(crate) fn upstream_query(request: &Message, id: u16) -> Message {
    let mut query = Message::new();
    query
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(request.recursion_desired())
        .set_checking_disabled(request.checking_disabled());
    query.add_queries(request.queries().iter().cloned());
    if let Some(edns) = request.extensions() {
        query.set_edns(edns.clone());
    }
    query
}

/// Encode `response`; if it exceeds `limit`, its truncated form (TC, question and EDNS only).
pub(crate) fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let encoded = response.to_vec().and_then(|bytes| {
        if bytes.len() <= limit {
            Ok(bytes)
        } else {
            response.truncate().to_vec()
        }
    });
    match encoded {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            // Our own messages always encode; this would be a bug, not an attack.
            tracing::error!(error = %e, id = response.id(), "cannot encode an answer; dropped");
            None
        }
    }
}
