//! The forwarding database: MAC -> port, with ageing and a per-port cap.
//!
//! Readers never block: the table is a concurrent hash map ([`papaya`]) whose reads take no
//! lock and allocate nothing (an epoch guard and a hash probe), so a lookup on the forwarding
//! path costs the same whoever else is learning. Refreshing a known entry's timestamp is an
//! atomic store into the shared entry. Changes to the key set (a new MAC, a move, an expiry)
//! take the writer mutex, which keeps the per-port counts the cap needs, and change one entry
//! in place: learning costs the same at 100,000 MACs as at 10 (a copy-on-write map, cloned on
//! every new MAC, made filling a table quadratic in its size).
//!
//! Time is an argument (milliseconds on the switch's monotonic clock): nothing here reads a
//! clock, so tests drive ageing directly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::port::PortId;
use crate::wire::ethernet::MacAddr;

/// One learned (or static) MAC.
#[derive(Debug)]
pub struct FdbEntry {
    pub port: PortId,
    /// Milliseconds on the switch clock when a frame from this MAC was last seen.
    last_seen: AtomicU64,
    /// Static entries never age and are never moved by learning.
    pub is_static: bool,
}

impl FdbEntry {
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Relaxed)
    }
}

/// What learning a source MAC did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnOutcome {
    /// Already known on this port; timestamp refreshed.
    Refreshed,
    /// New entry.
    Learned,
    /// The MAC moved here from another port.
    Moved { from: PortId },
    /// Not learned: the port holds its maximum number of MACs.
    CapReached,
    /// A static entry owns this MAC; learning leaves it alone.
    Static,
}

/// An entry as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FdbView {
    pub mac: MacAddr,
    pub port: PortId,
    /// Milliseconds since the MAC was last seen.
    pub age_ms: u64,
    #[serde(rename = "static")]
    pub is_static: bool,
}

/// A concurrent map keyed by MAC, as the MAC table and the VXLAN remote table hold them.
/// foldhash, randomly seeded per table: source MACs are chosen by whoever sends, so the seed
/// keeps a sender from aiming at one bucket chain; SipHash (std's) cost as much as the probe.
pub(crate) type MacMap<V> = papaya::HashMap<MacAddr, V, foldhash::fast::RandomState>;

/// An empty [`MacMap`].
pub(crate) fn mac_map<V>() -> MacMap<V> {
    papaya::HashMap::builder()
        .hasher(foldhash::fast::RandomState::default())
        // A resize copies the table at once (amortised O(1) per insert): reads then never
        // look in two tables, as they do while an incremental one is under way.
        .resize_mode(papaya::ResizeMode::Blocking)
        .build()
}

type Table = MacMap<FdbEntry>;

/// The MAC table of one switch.
#[derive(Debug)]
pub struct Fdb {
    table: Table,
    /// Serialises writers; holds how many dynamic MACs each port owns.
    writer: Mutex<HashMap<PortId, usize>>,
    aging_ms: AtomicU64,
    max_per_port: usize,
}

fn dynamic(port: PortId, now: u64) -> FdbEntry {
    FdbEntry {
        port,
        last_seen: AtomicU64::new(now),
        is_static: false,
    }
}

/// [`Fdb::pinned`]: the MAC table, pinned while one frame is decided.
pub struct Pinned<'a> {
    fdb: &'a Fdb,
    table: papaya::HashMapRef<
        'a,
        MacAddr,
        FdbEntry,
        foldhash::fast::RandomState,
        papaya::LocalGuard<'a>,
    >,
}

impl Pinned<'_> {
    /// [`Fdb::lookup`].
    pub fn lookup(&self, mac: &MacAddr, now: u64) -> Option<PortId> {
        match self.table.get(mac) {
            Some(e) if !self.fdb.expired(e, now) => Some(e.port),
            _ => None,
        }
    }

    /// [`Fdb::learn`].
    pub fn learn(&self, mac: MacAddr, port: PortId, now: u64) -> LearnOutcome {
        // Fast path: known on this port. One atomic store, no lock.
        if let Some(e) = self.table.get(&mac) {
            if e.is_static {
                return LearnOutcome::Static;
            }
            if e.port == port {
                e.last_seen.store(now, Relaxed);
                return LearnOutcome::Refreshed;
            }
        }
        self.fdb.learn_slow(mac, port, now)
    }
}

impl Fdb {
    pub fn new(aging_ms: u64, max_per_port: usize) -> Fdb {
        Fdb {
            table: mac_map(),
            writer: Mutex::new(HashMap::new()),
            aging_ms: AtomicU64::new(aging_ms),
            max_per_port,
        }
    }

    /// Entries in the table (static ones and dynamic ones not swept yet).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn aging_ms(&self) -> u64 {
        self.aging_ms.load(Relaxed)
    }

    pub fn set_aging_ms(&self, ms: u64) {
        self.aging_ms.store(ms, Relaxed);
    }

    fn expired(&self, e: &FdbEntry, now: u64) -> bool {
        !e.is_static && now.saturating_sub(e.last_seen()) > self.aging_ms()
    }

    /// The port a MAC lives on, if known and not aged out.
    pub fn lookup(&self, mac: &MacAddr, now: u64) -> Option<PortId> {
        self.pinned().lookup(mac, now)
    }

    /// Records that `mac` was seen as a source on `port` at `now`.
    pub fn learn(&self, mac: MacAddr, port: PortId, now: u64) -> LearnOutcome {
        self.pinned().learn(mac, port, now)
    }

    /// The table pinned for the few lookups of one frame (its source's learning, its
    /// destination's lookup): pinning marks the thread active in the table's reclamation
    /// scheme and costs an atomic swap when it ends, so a frame pays it once, not per lookup.
    pub fn pinned(&self) -> Pinned<'_> {
        Pinned {
            fdb: self,
            table: self.table.pin(),
        }
    }

    fn learn_slow(&self, mac: MacAddr, port: PortId, now: u64) -> LearnOutcome {
        let mut counts = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let t = self.table.pin();
        let previous = t.get(&mac);
        if let Some(e) = previous {
            // Another writer may have won the race while we waited.
            if e.is_static {
                return LearnOutcome::Static;
            }
            if e.port == port {
                e.last_seen.store(now, Relaxed);
                return LearnOutcome::Refreshed;
            }
        }
        if counts.get(&port).copied().unwrap_or(0) >= self.max_per_port {
            return LearnOutcome::CapReached;
        }
        let from = previous.map(|e| e.port);
        t.insert(mac, dynamic(port, now));
        *counts.entry(port).or_insert(0) += 1;
        match from {
            Some(old) => {
                if let Some(c) = counts.get_mut(&old) {
                    *c = c.saturating_sub(1);
                }
                LearnOutcome::Moved { from: old }
            }
            None => LearnOutcome::Learned,
        }
    }

    /// Adds or replaces a static entry (never ages, never moves by learning).
    pub fn add_static(&self, mac: MacAddr, port: PortId) {
        let mut counts = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let t = self.table.pin();
        let old = t.insert(
            mac,
            FdbEntry {
                port,
                last_seen: AtomicU64::new(0),
                is_static: true,
            },
        );
        if let Some(old) = old.filter(|o| !o.is_static) {
            if let Some(c) = counts.get_mut(&old.port) {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// Removes the static entry of `mac` if it points at `port`. Returns whether it did.
    pub fn remove_static(&self, mac: &MacAddr, port: PortId) -> bool {
        let _counts = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let t = self.table.pin();
        if !t.get(mac).is_some_and(|e| e.is_static && e.port == port) {
            return false;
        }
        t.remove(mac);
        true
    }

    /// Removes entries not seen for longer than the ageing time. Returns how many.
    pub fn expire(&self, now: u64) -> usize {
        // Cheap check first so an idle sweep takes no lock.
        if !self.table.pin().values().any(|e| self.expired(e, now)) {
            return 0;
        }
        let mut removed = 0;
        let mut counts = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.table.pin().retain(|_, e| {
            let keep = !self.expired(e, now);
            if !keep {
                removed += 1;
                if let Some(c) = counts.get_mut(&e.port) {
                    *c = c.saturating_sub(1);
                }
            }
            keep
        });
        removed
    }

    /// Forgets every MAC on `port` (the port is gone).
    pub fn flush_port(&self, port: PortId) {
        let mut counts = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.table.pin().retain(|_, e| e.port != port);
        counts.remove(&port);
    }

    /// How many MACs a port owns (dynamic ones).
    pub fn count_on(&self, port: PortId) -> usize {
        let counts = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&port).copied().unwrap_or(0)
    }

    /// Every live entry, sorted by MAC.
    pub fn entries(&self, now: u64) -> Vec<FdbView> {
        let t = self.table.pin();
        let mut v: Vec<FdbView> = t
            .iter()
            .filter(|(_, e)| !self.expired(e, now))
            .map(|(mac, e)| FdbView {
                mac: *mac,
                port: e.port,
                age_ms: if e.is_static {
                    0
                } else {
                    now.saturating_sub(e.last_seen())
                },
                is_static: e.is_static,
            })
            .collect();
        v.sort_by_key(|e| e.mac);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }

    #[test]
    fn learns_refreshes_and_ages_out() {
        let f = Fdb::new(1000, 16);
        assert_eq!(f.learn(mac(1), 1, 0), LearnOutcome::Learned);
        assert_eq!(f.lookup(&mac(1), 500), Some(1));
        assert_eq!(f.learn(mac(1), 1, 900), LearnOutcome::Refreshed);
        assert_eq!(f.lookup(&mac(1), 1800), Some(1), "refresh extends life");
        assert_eq!(f.lookup(&mac(1), 1901), None, "aged out after 1000 ms idle");
        assert_eq!(f.expire(1901), 1);
        assert!(f.entries(1901).is_empty());
        assert_eq!(f.count_on(1), 0);
    }

    #[test]
    fn a_moved_mac_is_relearned() {
        let f = Fdb::new(300_000, 16);
        f.learn(mac(1), 1, 0);
        assert_eq!(f.learn(mac(1), 2, 10), LearnOutcome::Moved { from: 1 });
        assert_eq!(f.lookup(&mac(1), 10), Some(2));
        assert_eq!(f.count_on(1), 0);
        assert_eq!(f.count_on(2), 1);
    }

    #[test]
    fn per_port_cap_stops_learning_on_that_port_only() {
        let f = Fdb::new(300_000, 2);
        assert_eq!(f.learn(mac(1), 1, 0), LearnOutcome::Learned);
        assert_eq!(f.learn(mac(2), 1, 0), LearnOutcome::Learned);
        assert_eq!(f.learn(mac(3), 1, 0), LearnOutcome::CapReached);
        assert_eq!(f.lookup(&mac(3), 0), None);
        assert_eq!(f.learn(mac(3), 2, 0), LearnOutcome::Learned);
        // Known MACs still refresh at the cap.
        assert_eq!(f.learn(mac(1), 1, 5), LearnOutcome::Refreshed);
    }

    #[test]
    fn static_entries_neither_age_nor_move() {
        let f = Fdb::new(10, 16);
        f.add_static(mac(9), 3);
        assert_eq!(f.learn(mac(9), 1, 0), LearnOutcome::Static);
        assert_eq!(f.lookup(&mac(9), 1_000_000), Some(3));
        assert_eq!(f.expire(1_000_000), 0);
        assert!(!f.remove_static(&mac(9), 1), "not on that port");
        assert!(f.remove_static(&mac(9), 3));
        assert_eq!(f.lookup(&mac(9), 0), None);
        f.learn(mac(9), 1, 0);
        assert!(
            !f.remove_static(&mac(9), 1),
            "learned entries are not static"
        );
    }

    /// 100,000 MACs: every one found on its port, the per-port counts right after moves and
    /// a flush (each change touches one entry; the table is never copied).
    #[test]
    fn a_hundred_thousand_macs() {
        let f = Fdb::new(300_000, 100_000);
        let m = |i: u32| {
            let b = i.to_be_bytes();
            MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
        };
        for i in 0..100_000 {
            assert_eq!(f.learn(m(i), 1 + i % 2, 0), LearnOutcome::Learned);
        }
        assert_eq!(f.len(), 100_000);
        assert_eq!((f.count_on(1), f.count_on(2)), (50_000, 50_000));
        assert!((0..100_000).all(|i| f.lookup(&m(i), 1) == Some(1 + i % 2)));
        for i in (0..1000).filter(|i| i % 2 == 0) {
            assert_eq!(f.learn(m(i), 2, 2), LearnOutcome::Moved { from: 1 });
        }
        assert_eq!((f.count_on(1), f.count_on(2)), (49_500, 50_500));
        f.flush_port(2);
        assert_eq!((f.len(), f.count_on(1), f.count_on(2)), (49_500, 49_500, 0));
    }

    #[test]
    fn flush_port_forgets_its_macs() {
        let f = Fdb::new(300_000, 16);
        f.learn(mac(1), 1, 0);
        f.learn(mac(2), 2, 0);
        f.flush_port(1);
        assert_eq!(f.lookup(&mac(1), 0), None);
        assert_eq!(f.lookup(&mac(2), 0), Some(2));
    }
}
