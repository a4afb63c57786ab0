//! The process-wide cap on host sockets that egress and the TCP relay open.
//!
//! Every egress flow holds a host socket (a UDP or ICMP datagram socket, or a TCP connection),
//! and the flow caps are per network: enough networks together can run the daemon out of file
//! descriptors, and then the API socket and the resolver refuse connections too ("Too many
//! open files", issue 11). So every host socket egress and the relay open first takes a
//! [`HostSocketPermit`] from one process-wide count, and gives it back when the socket closes
//! (the permit is dropped with the socket). No permit: the flow is refused as
//! [`crate::egress::EgressDrop::HostSocketCap`], which the container sees as it sees a full
//! flow table.
//!
//! The cap is set once, at start, by the daemon ([`set_host_socket_cap`]), after it raised its
//! soft `RLIMIT_NOFILE`. Unset, it is derived from the soft limit the first time a socket is
//! opened ([`default_host_socket_cap`]): the limit minus a reserve of [`FD_RESERVE`]
//! descriptors (at most half the limit) for the API, the resolver's listeners, devices and
//! everything else the daemon opens.
//!
//! Counting is one relaxed atomic compare-and-swap per socket opened and one decrement per
//! socket closed: no lock on the forwarding path. The count bounds what this crate opens; it
//! is not the process's fd count.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use serde::Serialize;

/// File descriptors kept out of the cap for everything else the daemon opens.
pub const FD_RESERVE: u64 = 1024;

/// The cap was already set (or already derived, because a socket was opened first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host socket cap is already {current}; it can only be set once, before any egress")]
pub struct CapAlreadySet {
    /// The cap in force.
    pub current: usize,
}

/// One budget of host sockets: the cap and how many are open. The process has one
/// ([`host_sockets`]); tests make their own.
#[derive(Debug)]
pub struct HostSockets {
    cap: OnceLock<usize>,
    open: AtomicUsize,
    refused: AtomicU64,
}

/// What the budget looks like now (for the daemon's stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostSocketStats {
    pub cap: usize,
    pub open: usize,
    /// Sockets refused because the cap was reached, since start.
    pub refused: u64,
}

impl HostSockets {
    /// A budget whose cap is set later (or derived from the fd limit at first use).
    pub const fn new() -> HostSockets {
        HostSockets {
            cap: OnceLock::new(),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A budget with its cap set.
    pub fn with_cap(cap: usize) -> HostSockets {
        let b = HostSockets::new();
        let _ = b.cap.set(cap);
        b
    }

    /// Sets the cap, once.
    pub fn set_cap(&self, cap: usize) -> Result<(), CapAlreadySet> {
        self.cap.set(cap).map_err(|_| CapAlreadySet {
            current: self.cap(),
        })
    }

    /// The cap in force (derived from `RLIMIT_NOFILE` on first use if never set).
    pub fn cap(&self) -> usize {
        *self
            .cap
            .get_or_init(|| default_host_socket_cap(soft_nofile_limit()))
    }

    /// Host sockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn stats(&self) -> HostSocketStats {
        HostSocketStats {
            cap: self.cap(),
            open: self.open(),
            refused: self.refused.load(Relaxed),
        }
    }

    /// A permit for one more host socket, or `None` (counted) at the cap. Take it before
    /// `socket`/`connect`/`accept`'s result is kept, and keep it as long as the socket.
    pub fn try_acquire(&'static self) -> Option<HostSocketPermit> {
        let cap = self.cap();
        match self
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1))
        {
            Ok(_) => Some(HostSocketPermit { budget: self }),
            Err(_) => {
                self.refused.fetch_add(1, Relaxed);
                None
            }
        }
    }
}

impl Default for HostSockets {
    fn default() -> Self {
        HostSockets::new()
    }
}

/// One host socket's place under the cap, given back when dropped. Keep it next to the socket
/// (declared after it, so the socket closes first).
#[derive(Debug)]
pub struct HostSocketPermit {
    budget: &'static HostSockets,
}

impl Drop for HostSocketPermit {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Relaxed);
    }
}

static HOST_SOCKETS: HostSockets = HostSockets::new();

/// The process's budget, which every gateway's egress and relay draw from.
pub fn host_sockets() -> &'static HostSockets {
    &HOST_SOCKETS
}

/// Sets the process-wide cap on host sockets, once, at start (after raising `RLIMIT_NOFILE`).
pub fn set_host_socket_cap(cap: usize) -> Result<(), CapAlreadySet> {
    HOST_SOCKETS.set_cap(cap)
}

/// The process-wide budget's cap, open count and refusals.
pub fn host_socket_stats() -> HostSocketStats {
    HOST_SOCKETS.stats()
}

/// The cap for a soft `RLIMIT_NOFILE` of `soft`: the limit minus [`FD_RESERVE`], and never
/// more than half the limit reserved (a default soft limit of 1024 still leaves egress 512).
pub fn default_host_socket_cap(soft: u64) -> usize {
    let reserve = FD_RESERVE.min(soft / 2);
    usize::try_from(soft - reserve).unwrap_or(usize::MAX)
}

/// The soft `RLIMIT_NOFILE` (the common default, 1024, if it cannot be read).
fn soft_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(cap: usize) -> &'static HostSockets {
        Box::leak(Box::new(HostSockets::with_cap(cap)))
    }

    #[test]
    fn permits_stop_at_the_cap_and_come_back_when_dropped() {
        let b = budget(2);
        let one = b.try_acquire().expect("first");
        let two = b.try_acquire().expect("second");
        assert!(b.try_acquire().is_none(), "the cap is reached");
        assert_eq!(
            b.stats(),
            HostSocketStats {
                cap: 2,
                open: 2,
                refused: 1
            }
        );
        drop(one);
        assert_eq!(b.open(), 1);
        let three = b.try_acquire().expect("a closed socket frees its place");
        drop((two, three));
        assert_eq!(
            b.stats(),
            HostSocketStats {
                cap: 2,
                open: 0,
                refused: 1
            }
        );
    }

    #[test]
    fn a_zero_cap_refuses_everything() {
        let b = budget(0);
        assert!(b.try_acquire().is_none());
        assert_eq!(b.stats().refused, 1);
    }

    #[test]
    fn the_cap_is_set_once() {
        let b: &'static HostSockets = Box::leak(Box::new(HostSockets::new()));
        assert_eq!(b.set_cap(10), Ok(()));
        assert_eq!(b.set_cap(20), Err(CapAlreadySet { current: 10 }));
        assert_eq!(b.cap(), 10);
    }

    #[test]
    fn the_default_keeps_a_reserve_for_the_api_and_dns() {
        assert_eq!(default_host_socket_cap(1_048_576), 1_048_576 - 1024);
        assert_eq!(default_host_socket_cap(20_000), 18_976);
        assert_eq!(default_host_socket_cap(2048), 1024);
        assert_eq!(default_host_socket_cap(1024), 512, "at most half reserved");
        assert_eq!(default_host_socket_cap(0), 0);
        assert!(default_host_socket_cap(u64::MAX) > 0, "RLIM_INFINITY");
    }

    #[test]
    fn many_threads_never_overshoot_the_cap() {
        let b = budget(100);
        let held: Vec<Vec<HostSocketPermit>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..100).filter_map(|_| b.try_acquire()).collect()))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 100);
        assert_eq!(b.stats().refused, 300);
        drop(held);
        assert_eq!(b.open(), 0);
    }
}
