//! What the egress engine and the TCP relay share and the daemon reads: the counters
//! ([`EgressCounters`], by [`EgressDrop`] reason), the flow table, and [`EgressHandle`], the
//! daemon's view of both. Below the engines: it imports the flow table and the drop reasons
//! only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;

use crate::conntrack::{FlowEntry, FlowLimits, FlowTable};
use crate::drops::EgressDrop;

/// Live egress counters of one gateway (relaxed atomics).
#[derive(Debug, Default)]
pub struct EgressCounters {
    /// Packets (and payload bytes) sent on host sockets.
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Replies (datagrams, and payload bytes) delivered to endpoints.
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub flows_created: AtomicU64,
    pub flows_expired: AtomicU64,
    /// ICMP errors (unreachable, time exceeded) sent to endpoints.
    pub icmp_errors_sent: AtomicU64,
    /// Connections accepted on published TCP ports and handed to an endpoint.
    pub published_tcp: AtomicU64,
    /// New clients on published UDP ports (a client's first datagram; later ones reuse it).
    pub published_udp: AtomicU64,
    drops: [AtomicU64; EgressDrop::ALL.len()],
}

impl EgressCounters {
    pub fn drop(&self, reason: EgressDrop) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    /// Counts `n` drops of `reason` at once (a kernel count's growth).
    pub fn drop_n(&self, reason: EgressDrop, n: u64) {
        self.drops[reason.index()].fetch_add(n, Relaxed);
    }

    pub fn drops(&self, reason: EgressDrop) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }
}

/// A serialisable copy of one gateway's egress state: what `netyard flows` shows next to the
/// flows.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EgressStats {
    /// False on internal networks.
    pub enabled: bool,
    /// Live flows.
    pub flows: u64,
    pub max_flows: u32,
    pub max_flows_per_endpoint: u32,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub icmp_errors_sent: u64,
    /// Published TCP connections handed to endpoints.
    pub published_tcp: u64,
    /// New clients of published UDP ports.
    pub published_udp: u64,
    pub drops_total: u64,
    /// Every [`EgressDrop`] by name, zeros included.
    pub drops: BTreeMap<&'static str, u64>,
}

pub(crate) struct Shared {
    pub(crate) enabled: bool,
    table: Mutex<FlowTable>,
    pub(crate) counters: EgressCounters,
}

impl Shared {
    pub(crate) fn new(enabled: bool, limits: FlowLimits) -> Shared {
        Shared {
            enabled,
            table: Mutex::new(FlowTable::new(limits)),
            counters: EgressCounters::default(),
        }
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, FlowTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The daemon's view of a gateway's egress: its flows and counters. Cheap to clone.
#[derive(Clone)]
pub struct EgressHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EgressHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressHandle")
            .field("enabled", &self.shared.enabled)
            .finish_non_exhaustive()
    }
}

impl EgressHandle {
    /// Whether egress is on (false for internal networks).
    pub fn enabled(&self) -> bool {
        self.shared.enabled
    }

    /// Every live flow, ordered by endpoint, destination, protocol.
    pub fn flows(&self) -> Vec<FlowEntry> {
        self.shared.table().snapshot(Instant::now())
    }

    /// The counters and the table's size and caps.
    pub fn stats(&self) -> EgressStats {
        let (flows, limits) = {
            let t = self.shared.table();
            (t.len() as u64, t.limits())
        };
        let c = &self.shared.counters;
        let drops: BTreeMap<&'static str, u64> = EgressDrop::ALL
            .iter()
            .map(|r| (r.as_str(), c.drops(*r)))
            .collect();
        EgressStats {
            enabled: self.shared.enabled,
            flows,
            max_flows: limits.max_total,
            max_flows_per_endpoint: limits.max_per_endpoint,
            packets_out: c.packets_out.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            packets_in: c.packets_in.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            flows_created: c.flows_created.load(Relaxed),
            flows_expired: c.flows_expired.load(Relaxed),
            icmp_errors_sent: c.icmp_errors_sent.load(Relaxed),
            published_tcp: c.published_tcp.load(Relaxed),
            published_udp: c.published_udp.load(Relaxed),
            drops_total: drops.values().sum(),
            drops,
        }
    }
}
