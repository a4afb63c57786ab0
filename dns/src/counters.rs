//! Resolver counters: lock-free atomics with a serde snapshot.
//!
//! Every query the resolver is handed ends in exactly one *outcome* counter:
//!
//! `queries_udp + queries_tcp == local_answers + nodata + cache_hits + forwarded + servfail +
//! refused + formerr + notimp + dropped_malformed` (once no query is in flight).
//!
//! The other counters break an outcome down (`nxdomain`, `cap_hits`) or count events that are not
//! queries (`upstream_timeouts`, `upstream_failures` are per upstream attempt; `tcp_rejected` and
//! `send_errors` come from the serving loops).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters of one resolver (shared by all its serving loops).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time copy of [`Counters`], for the API.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
        pub struct CountersSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Read every counter (each one atomically; the set is not one atomic snapshot).
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot {
                    $($name: self.$name.load(Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Queries received over UDP.
    queries_udp,
    /// Queries received over TCP.
    queries_tcp,
    /// Outcome: answered from the local records with at least one record.
    local_answers,
    /// Outcome: local name without a record of the asked type; empty NOERROR.
    nodata,
    /// Outcome: answered from the cache of upstream answers.
    cache_hits,
    /// Outcome: answered with an upstream's reply.
    forwarded,
    /// Outcome: every upstream failed (or none is configured); SERVFAIL sent.
    servfail,
    /// Outcome: REFUSED sent (a non-local name asked from an internal network, or the cap on
    /// concurrent upstream queries was reached).
    refused,
    /// Outcome: FORMERR sent (a header we could read but a message we could not, or not exactly
    /// one question), or BADVERS for an EDNS version other than 0.
    formerr,
    /// Outcome: NOTIMP sent (an opcode other than QUERY).
    notimp,
    /// Outcome: dropped without an answer (shorter than a header, or a response sent to us).
    dropped_malformed,
    /// Of `cache_hits + forwarded`: the answer was NXDOMAIN.
    nxdomain,
    /// Of `refused`: the cap on concurrent upstream queries was reached.
    cap_hits,
    /// Upstream attempts that timed out.
    upstream_timeouts,
    /// Upstream attempts that failed otherwise (connection refused, SERVFAIL or REFUSED answer,
    /// unreadable or mismatched reply).
    upstream_failures,
    /// TCP connections closed at once because the listener had too many.
    tcp_rejected,
    /// Answers that could not be sent back to the client.
    send_errors,
}

impl Counters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

impl CountersSnapshot {
    /// Queries received over both transports.
    pub fn queries(&self) -> u64 {
        self.queries_udp + self.queries_tcp
    }

    /// The sum of the outcome counters; equals [`CountersSnapshot::queries`] when no query is in
    /// flight.
    pub fn outcomes(&self) -> u64 {
        self.local_answers
            + self.nodata
            + self.cache_hits
            + self.forwarded
            + self.servfail
            + self.refused
            + self.formerr
            + self.notimp
            + self.dropped_malformed
    }
}
