//! Adaptive busy-polling: how long a port task keeps polling its device after a burst that
//! emptied it, before it goes back to sleep on readiness.
//!
//! Why: on a small machine a sleeping port task costs every frame that wakes it a context
//! switch here and a wake-up (often an IPI to an idle vCPU, a VM exit) in the sender's
//! context, which dominated small-packet forwarding and latency. Polling a little longer
//! while traffic flows saves both; polling at idle would burn a core, so the budget is
//! learned from the traffic itself, as NAPI's busy-poll and interrupt deferral are:
//!
//! - it starts at zero: a port that never sees a frame soon after going to sleep never polls;
//! - a wake-up that came `gap` after the task went to sleep says a poll of `gap` would have
//!   caught that frame: the budget grows to twice the gap (at most [`BusyPoll::max`]);
//! - a wake-up after a longer gap, or a poll that ran its whole budget without a frame, halves
//!   it (under a microsecond it is zero again).
//!
//! So an idle port costs nothing (no wake-up, no poll), a port with sparse traffic polls for a
//! budget that decays to nothing, and a port with a steady stream (a flood, or a ping-pong
//! whose round trip is under the maximum) stays awake while it flows.
//!
//! The policy is pure (times are arguments); [`crate::driver`] does the polling, yielding to
//! the runtime's other tasks and to other processes between polls.

use std::sync::OnceLock;
use std::time::Duration;

/// The default longest poll after a burst: above a round trip through a sleeping daemon on a
/// busy 2-vCPU machine (50-90 us, which a poll must cover to learn the traffic at all; polling
/// brings it down to 12-14 us), and short enough that polling a port whose traffic stopped
/// costs little. 50 us missed that bootstrap on the loaded machine about half the time.
pub const DEFAULT_MAX: Duration = Duration::from_micros(100);

/// Below this a budget is zero (a poll is a few syscalls: shorter ones are not worth it).
const FLOOR: Duration = Duration::from_micros(1);

/// The process-wide longest poll: `NETYARD_BUSY_POLL_US` (0 turns busy-polling off), else
/// [`DEFAULT_MAX`]. Read once.
pub fn configured_max() -> Duration {
    static MAX: OnceLock<Duration> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("NETYARD_BUSY_POLL_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_MAX, Duration::from_micros)
    })
}

/// Whether a poll also yields the thread to other processes (`NETYARD_BUSY_POLL_YIELD=0` turns
/// it off; on by default). Read once.
pub fn configured_yield() -> bool {
    static YIELD: OnceLock<bool> = OnceLock::new();
    *YIELD
        .get_or_init(|| std::env::var("NETYARD_BUSY_POLL_YIELD").map_or(true, |v| v.trim() != "0"))
}

/// One port task's busy-poll budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyPoll {
    max: Duration,
    budget: Duration,
}

impl BusyPoll {
    /// A policy whose budget never exceeds `max` (zero: never poll).
    pub fn new(max: Duration) -> BusyPoll {
        BusyPoll {
            max,
            budget: Duration::ZERO,
        }
    }

    /// The longest poll this policy allows.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// How long to poll after a burst that left the device empty.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The task slept and a frame woke it `gap` after it went to sleep.
    pub fn woke_after(&mut self, gap: Duration) {
        if gap <= self.max {
            self.budget = self.budget.max(gap.saturating_mul(2)).min(self.max);
        } else {
            self.decay();
        }
    }

    /// A poll ended: `found` whether it found a frame before its budget ran out.
    pub fn polled(&mut self, found: bool) {
        if !found {
            self.decay();
        }
    }

    fn decay(&mut self) {
        self.budget /= 2;
        if self.budget < FLOOR {
            self.budget = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_port_that_never_sees_traffic_soon_after_sleeping_never_polls() {
        let mut p = BusyPoll::new(us(50));
        assert_eq!(p.budget(), Duration::ZERO);
        p.woke_after(Duration::from_secs(1));
        p.woke_after(us(51));
        assert_eq!(p.budget(), Duration::ZERO);
    }

    #[test]
    fn a_quick_wake_up_sets_the_budget_to_twice_the_gap_within_the_maximum() {
        let mut p = BusyPoll::new(us(50));
        p.woke_after(us(10));
        assert_eq!(p.budget(), us(20));
        p.woke_after(us(5)); // a shorter gap does not shrink what a longer one needed
        assert_eq!(p.budget(), us(20));
        p.woke_after(us(40));
        assert_eq!(p.budget(), us(50));
    }

    #[test]
    fn fruitless_polls_and_long_gaps_halve_the_budget_down_to_zero() {
        let mut p = BusyPoll::new(us(50));
        p.woke_after(us(30));
        assert_eq!(p.budget(), us(50));
        p.polled(true);
        assert_eq!(
            p.budget(),
            us(50),
            "a poll that found frames keeps its budget"
        );
        p.polled(false);
        assert_eq!(p.budget(), us(25));
        p.woke_after(Duration::from_millis(3));
        assert_eq!(p.budget(), Duration::from_nanos(12_500));
        for _ in 0..4 {
            p.polled(false);
        }
        assert_eq!(p.budget(), Duration::ZERO, "under a microsecond is zero");
    }

    #[test]
    fn a_zero_maximum_never_polls() {
        let mut p = BusyPoll::new(Duration::ZERO);
        p.woke_after(Duration::ZERO);
        assert_eq!(p.budget(), Duration::ZERO);
    }
}
