//! Resolver counters: lock-free atomics with a serde snapshot.
//!
//! Every query the resolver is handed ends in exactly one *outcome* counter:
//!
//! `queries_udp + queries_tcp == local_answers + nodata + cache_hits + forwarded + servfail +
//! refused + formerr + notimp + dropped_malformed` (once no query is in flight).
//!
//! The other counters break an outcome down (`nxdomain`, `cap_hits`) or count events that are not
//! queries (`upstream_timeouts`, `upstream_failures` are per upstream attempt; `tcp_rejected`,
//! `tcp_evicted` and `send_errors` come from the serving loops; `udp_rcvbuf_full` from the kernel,
//! read by the daemon from the listeners' sockets when the counters are asked for).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    /// Of `nxdomain`: answered from the cache.
    nxdomain_cached,
    /// Of `refused`: the cap on concurrent upstream queries was reached.
    cap_hits,
    /// Upstream attempts that timed out.
    upstream_timeouts,
    /// Upstream attempts that failed otherwise (connection refused, SERVFAIL or REFUSED answer,
    /// unreadable or mismatched reply).
    upstream_failures,
    /// TCP connections closed at once because the listener had too many, all of them busy.
    tcp_rejected,
    /// Idle TCP connections closed to make room for a new one at the cap.
    tcp_evicted,
    /// Answers that could not be sent back to the client.
    send_errors,
    /// Kernel: queries the kernel dropped because a listener's UDP receive buffer was full
    /// (the sockets' drop counts, `SO_MEMINFO`, read on a stats request or a scrape).
    udp_rcvbuf_full,
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

/// Upper bounds (inclusive, in microseconds) of the latency histogram's buckets; one more
/// bucket takes everything slower. From a local answer (tens of microseconds) to the forward
/// deadline (seconds).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// How long answers took: fixed buckets of relaxed atomics, so a query adds two increments and
/// takes no lock.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// One per bound, then the overflow bucket (not cumulative).
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A copy of a [`LatencyHistogram`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Per bucket, not cumulative: `buckets[i]` counts answers in
    /// (`LATENCY_BOUNDS_US[i-1]`, `LATENCY_BOUNDS_US[i]`], the last one those slower than
    /// every bound.
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of the observed latencies, in microseconds.
    pub sum_us: u64,
}

impl LatencySnapshot {
    /// Answers observed.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The bucket a latency of `us` microseconds falls in.
pub fn bucket_index(us: u64) -> usize {
    LATENCY_BOUNDS_US.partition_point(|&bound| bound < us)
}

impl LatencyHistogram {
    /// Counts one answer that took `took`.
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_index(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Reads every bucket (each atomically; not one atomic snapshot).
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn a_latency_falls_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(100), 0, "bounds are inclusive");
        assert_eq!(bucket_index(101), 1);
        assert_eq!(bucket_index(2_500_000), LATENCY_BOUNDS_US.len() - 1);
        assert_eq!(
            bucket_index(2_500_001),
            LATENCY_BOUNDS_US.len(),
            "overflow bucket"
        );
        assert_eq!(bucket_index(u64::MAX), LATENCY_BOUNDS_US.len());
    }

    #[test]
    fn observations_land_in_their_buckets_with_their_sum() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(9));
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[bucket_index(30_000)], 1);
        assert_eq!(s.buckets[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(s.sum_us, 80 + 30_000 + 9_000_000);
    }
}
