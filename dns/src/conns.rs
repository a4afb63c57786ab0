//! The open DNS-over-TCP connections of one listener, and which one gives way at the cap.
//!
//! A listener serves at most `tcp_max_connections` connections at once. Refusing a new one at
//! the cap let a client that opened that many idle connections lock every other client of the
//! namespace out until the idle timeout: instead, the connection idle longest (no query of it
//! being answered) is closed to make room, as a server under connection pressure should
//! (RFC 7766, 6.2.3: "servers MAY close idle connections"). A new connection is refused only
//! when every open one has a query in flight.
//!
//! [`evict_choice`] is the decision, pure: the table hands it what it knows of each connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::AbortHandle;

/// What the choice needs to know of one open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    /// Order of opening: smaller is older.
    pub id: u64,
    /// When a message was last read from it or an answer written to it (ms on the table's
    /// clock).
    pub last_active_ms: u64,
    /// Queries read and not yet answered (or dropped).
    pub pending: usize,
}

/// The connection to close so that a new one can be served: among the idle ones (no query
/// pending), the one whose last activity is oldest; on a tie, the one opened first. None when
/// every connection has a query pending (the new connection is refused then).
pub fn evict_choice(conns: impl IntoIterator<Item = ConnView>) -> Option<u64> {
    conns
        .into_iter()
        .filter(|c| c.pending == 0)
        .min_by_key(|c| (c.last_active_ms, c.id))
        .map(|c| c.id)
}

/// One connection's activity, updated by its serving task without taking the table's lock.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_active_ms: AtomicU64,
    pending: AtomicUsize,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let a = Activity {
            epoch,
            last_active_ms: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
        };
        a.touch();
        a
    }

    /// Something was read from or written to the connection.
    pub fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Relaxed);
    }

    /// A query was read that will be answered.
    pub fn query_started(&self) {
        self.pending.fetch_add(1, Relaxed);
        self.touch();
    }

    /// A query was answered (or will not be).
    pub fn query_done(&self) {
        // Never below zero, whatever the order of events.
        let _ = self
            .pending
            .fetch_update(Relaxed, Relaxed, |p| Some(p.saturating_sub(1)));
        self.touch();
    }

    fn view(&self, id: u64) -> ConnView {
        ConnView {
            id,
            last_active_ms: self.last_active_ms.load(Relaxed),
            pending: self.pending.load(Relaxed),
        }
    }
}

struct Open {
    activity: Arc<Activity>,
    abort: AbortHandle,
}

/// What [`Conns::admit`] decided for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Below the cap.
    Admitted,
    /// At the cap: this connection was closed to make room.
    Evicted(u64),
    /// At the cap with every connection busy.
    Refused,
}

/// The open connections of one listener.
pub struct Conns {
    epoch: Instant,
    max: usize,
    next_id: u64,
    open: HashMap<u64, Open>,
}

impl Conns {
    pub fn new(max: usize) -> Conns {
        Conns {
            epoch: Instant::now(),
            max: max.max(1),
            next_id: 0,
            open: HashMap::new(),
        }
    }

    /// Makes room for one more connection if it can: at the cap, the choice of
    /// [`evict_choice`] is closed (its task aborted, which closes its socket).
    pub fn admit(&mut self) -> Admission {
        if self.open.len() < self.max {
            return Admission::Admitted;
        }
        let choice = evict_choice(self.open.iter().map(|(id, o)| o.activity.view(*id)));
        match choice.and_then(|id| self.open.remove(&id).map(|o| (id, o))) {
            Some((id, o)) => {
                o.abort.abort();
                Admission::Evicted(id)
            }
            None => Admission::Refused,
        }
    }

    /// A fresh id and activity record for a connection about to be served.
    pub fn activity(&mut self) -> (u64, Arc<Activity>) {
        let id = self.next_id;
        self.next_id += 1;
        (id, Arc::new(Activity::new(self.epoch)))
    }

    /// Records the task serving connection `id` (after [`Conns::admit`] and
    /// [`Conns::activity`], with the lock held since, so the task cannot have ended yet).
    pub fn insert(&mut self, id: u64, activity: Arc<Activity>, abort: AbortHandle) {
        self.open.insert(id, Open { activity, abort });
    }

    /// The connection ended (a no-op if it was evicted).
    pub fn remove(&mut self, id: u64) {
        self.open.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, last_active_ms: u64, pending: usize) -> ConnView {
        ConnView {
            id,
            last_active_ms,
            pending,
        }
    }

    #[test]
    fn the_connection_idle_longest_gives_way() {
        let conns = [c(0, 500, 0), c(1, 100, 0), c(2, 300, 0)];
        assert_eq!(evict_choice(conns), Some(1));
    }

    #[test]
    fn a_connection_with_a_query_pending_is_never_chosen() {
        // The oldest activity belongs to a connection still waiting for its answer (a slow
        // upstream): the idle one goes instead.
        let conns = [c(0, 10, 1), c(1, 900, 0), c(2, 20, 3)];
        assert_eq!(evict_choice(conns), Some(1));
    }

    #[test]
    fn every_connection_busy_means_refusal() {
        assert_eq!(evict_choice([c(0, 10, 1), c(1, 20, 2)]), None);
        assert_eq!(evict_choice([]), None);
    }

    #[test]
    fn ties_go_to_the_first_opened() {
        let conns = [c(7, 100, 0), c(3, 100, 0), c(5, 100, 0)];
        assert_eq!(evict_choice(conns), Some(3));
    }

    #[tokio::test]
    async fn admit_evicts_at_the_cap_and_refuses_when_all_are_busy() {
        let mut t = Conns::new(2);
        let mut tasks = Vec::new();
        let mut acts = Vec::new();
        for _ in 0..2 {
            assert_eq!(t.admit(), Admission::Admitted);
            let (id, a) = t.activity();
            let task = tokio::spawn(std::future::pending::<()>());
            t.insert(id, a.clone(), task.abort_handle());
            tasks.push(task);
            acts.push(a);
        }
        // Connection 1 answered something more recently than 0 ever did.
        acts[0].last_active_ms.store(5, Relaxed);
        acts[1].last_active_ms.store(50, Relaxed);
        assert_eq!(t.admit(), Admission::Evicted(0));
        assert_eq!(t.len(), 1);
        let e = tasks.remove(0).await.expect_err("aborted");
        assert!(e.is_cancelled());
        // Room again (the evicted one is gone): the new one is admitted, then both are busy.
        let (id, a) = t.activity();
        let task = tokio::spawn(std::future::pending::<()>());
        t.insert(id, a.clone(), task.abort_handle());
        a.query_started();
        acts[1].query_started();
        assert_eq!(t.admit(), Admission::Refused);
        assert_eq!(t.len(), 2);
        // Answered: idle again, and chosen.
        acts[1].query_done();
        acts[1].last_active_ms.store(0, Relaxed);
        assert_eq!(t.admit(), Admission::Evicted(1));
        task.abort();
        for t in tasks {
            t.abort();
        }
    }
}
