//! Forwarding lanes: each network's port tasks and gateway run on one thread of their own, a
//! current-thread tokio runtime, instead of on the daemon's work-stealing runtime.
//!
//! Why: a forwarded datagram or a published connection is a chain of hand-offs between tasks
//! of one network (the TAP's port task hands the frame to the gateway, the relay's accept
//! answers through the TAP). On the multi-threaded runtime every hand-off that found another
//! task runnable woke an idle worker (an eventfd write, a futex, a context switch on each
//! side), which cost more than the forwarding itself (benches/README.md, `egress`). On one
//! thread a hand-off is a local schedule. Different networks still forward in parallel: they
//! are spread over up to one lane per CPU (`--threads`), each new network on the least loaded.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;

/// How many lanes may exist: set once from `--threads`, else one per CPU.
static THREADS: OnceLock<usize> = OnceLock::new();
/// The lanes started so far; a lane lives as long as the process (an idle one only sleeps).
static POOL: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

struct Slot {
    handle: Handle,
    networks: Arc<AtomicUsize>,
}

/// Caps the number of lanes (`netyard daemon --threads N`). Only the first call counts, and
/// only before the first network is built.
pub fn set_threads(n: usize) {
    let _ = THREADS.set(n.max(1));
}

fn threads() -> usize {
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// A network's place on a lane. Dropping it (with the network) frees the place.
pub struct Lane {
    handle: Handle,
    networks: Arc<AtomicUsize>,
}

impl Lane {
    /// Takes the least loaded lane, starting a new one while fewer than `--threads` exist and
    /// every existing one carries a network.
    pub fn assign() -> io::Result<Lane> {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        let loads: Vec<usize> = pool
            .iter()
            .map(|s| s.networks.load(Ordering::Relaxed))
            .collect();
        let i = match pick(&loads, threads()) {
            Pick::Existing(i) => i,
            Pick::New => {
                let slot = start(pool.len())?;
                pool.push(slot);
                pool.len() - 1
            }
        };
        let slot = &pool[i];
        slot.networks.fetch_add(1, Ordering::Relaxed);
        Ok(Lane {
            handle: slot.handle.clone(),
            networks: slot.networks.clone(),
        })
    }

    /// Runs `f` with the lane as the current runtime: what it spawns runs on the lane, and
    /// the I/O it registers (`AsyncFd`) and the timers it makes are the lane's.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.handle.enter();
        f()
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.networks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a new network goes.
#[derive(Debug, PartialEq, Eq)]
enum Pick {
    Existing(usize),
    New,
}

/// The decision of [`Lane::assign`], given each existing lane's number of networks: an idle
/// lane first, then a new lane up to `cap`, then the least loaded (the first of equals).
fn pick(loads: &[usize], cap: usize) -> Pick {
    let least = loads.iter().enumerate().min_by_key(|&(_, l)| *l);
    match least {
        Some((i, 0)) => Pick::Existing(i),
        Some((i, _)) if loads.len() >= cap => Pick::Existing(i),
        _ => Pick::New,
    }
}

/// Tasks a lane runs between two polls of its I/O driver while its run queue never empties
/// (tokio's default is 61). Busy-polling port tasks yield by waking themselves
/// (`netyard_switch::driver`), which keeps the queue full while they poll: each of their
/// polls is a tick, about a microsecond, so with tokio's 61 another task's readiness (a
/// sleeping port, the gateway's host sockets) could wait that many polls, far longer on a
/// loaded machine where each poll's `sched_yield` lets other processes run. 16 bounds that
/// to a few rounds of polls; the extra `epoll_wait` per 16 ticks did not show in the pinned
/// round trip (benches/README.md, "netyard's own round trip").
const EVENT_INTERVAL: u32 = 16;

/// Starts lane `index`: a thread that drives a current-thread runtime until the process ends.
/// It is made from a thread in the daemon's own network namespace (a runtime worker), which
/// it inherits: egress sockets are opened there.
fn start(index: usize) -> io::Result<Slot> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        // As the main runtime's (src/main.rs): an idle blocking thread hands its allocator
        // pages back soon.
        .thread_keep_alive(Duration::from_millis(500))
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name(format!("netyard-fwd{index}"))
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(Slot {
        handle,
        networks: Arc::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_network_starts_a_lane() {
        assert_eq!(pick(&[], 2), Pick::New);
        assert_eq!(pick(&[], 1), Pick::New);
    }

    #[test]
    fn networks_spread_before_they_share() {
        assert_eq!(pick(&[1], 2), Pick::New);
        assert_eq!(pick(&[1, 1], 2), Pick::Existing(0));
        assert_eq!(pick(&[2, 1], 2), Pick::Existing(1));
        assert_eq!(pick(&[1], 1), Pick::Existing(0));
    }

    #[test]
    fn an_idle_lane_is_reused_before_a_new_one() {
        assert_eq!(pick(&[1, 0], 4), Pick::Existing(1));
        assert_eq!(pick(&[0, 0], 4), Pick::Existing(0));
    }

    #[test]
    fn more_lanes_than_the_cap_never_start() {
        assert_eq!(pick(&[3, 3, 3], 2), Pick::Existing(0));
    }

    #[test]
    fn a_lane_runs_what_is_spawned_on_it() {
        let lane = Lane::assign().expect("starting a lane");
        let name = lane.enter(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            tokio::spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
            rx
        });
        let name = name.recv().expect("the task ran").expect("a named thread");
        assert!(name.starts_with("netyard-fwd"), "{name}");
    }
}
