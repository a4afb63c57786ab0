//! Embedded DNS for netyard: what Docker's 127.0.0.11 resolver does, plus a cache.
//!
//! The crate is a library; the daemon creates the sockets (in each container's namespace, and on
//! each network's gateway address) and spawns the serving loops of [`server`].
//!
//! - [`records`]: the record store, plain data without I/O: endpoint names, aliases,
//!   `NAME.NETWORK`, PTR, visible only to endpoints on the same network; swapped atomically
//!   ([`RecordStore`]) so a reload never blocks a query.
//! - [`resolver`]: one query in, one answer out ([`Resolver::handle`]): local answers,
//!   NODATA vs NXDOMAIN, FORMERR/NOTIMP for bad queries, REFUSED on internal networks and over
//!   the concurrency cap, forwarding to at most 3 upstreams with per-server timeouts and
//!   SERVFAIL when they all fail, a bounded cache with negative caching.
//! - [`server`]: UDP and TCP serving loops ([`serve_udp`], [`serve_tcp`]); [`conns`]: the TCP
//!   connection cap, which closes the connection idle longest rather than refuse a new one.
//! - [`resolv_conf`]: the host's upstream servers.
//! - [`counters`]: one counter per outcome; every query ends in exactly one.
//!
//! All DNS wire format goes through `hickory-proto`, but for one fast path: [`server`]'s UDP
//! loop answers a question it answered before from the encoded bytes (`answer_cache`, which
//! reads a query's header, question extent and OPT record by hand to find and patch them).
//!
//! Not supported: DNSSEC validation (answers are relayed, DO/CD passed upstream, not part of
//! the cache key), zone transfers, DNS over TLS/HTTPS, SRV records for services, EDNS client
//! subnet, in-flight deduplication of identical upstream queries (two clients asking the same
//! uncached name at once cause two upstream queries).

mod answer_cache;
mod cache;
pub mod conns;
pub mod counters;
pub mod error;
pub mod fuzzing;
mod mmsg;
pub mod records;
pub mod resolv_conf;
pub mod resolver;
pub mod server;
mod upstream;

pub use counters::{Counters, CountersSnapshot};
pub use error::DnsError;
pub use records::{Answer, Entry, RecordStore, Records, DEFAULT_LOCAL_TTL};
pub use resolv_conf::{
    parse_resolv_conf, upstreams_from_resolv_conf, upstreams_from_resolv_conf_with, MAX_UPSTREAMS,
};
pub use resolver::{AskerContext, Resolver, ResolverConfig, Transport, EDNS_PAYLOAD};
pub use server::{serve_tcp, serve_udp, AskerHandle};

/// The DNS library in use, for callers and tests that build or read messages.
pub use hickory_proto as proto;
