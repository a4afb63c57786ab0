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
//!
//! # When a poll yields the thread
//!
//! Every poll yields to the lane's other tasks; a poll yields the thread to other processes
//! ([`ThreadYield`]) once per round of the lane's polling tasks, and also right after a poll
//! that forwarded frames read from an endpoint's port. Why not before every poll, as at
//! first: with two daemons on one CPU (a pinned VXLAN ping-pong between two hosts) each
//! daemon's polling tasks handed the CPU to the other daemon once per task, out of step
//! with the frame's path: 26 syscalls and 11.5 context switches per round trip per daemon
//! (the floor: 4 and 1-2), 17 us against the floor's 12. Once per round brought it to 12
//! us, but cost a single daemon's TAP and veth ping-pong 0.6-0.9 us: there the yield right
//! after forwarding is what lets the woken receiver (on the same CPU) answer before the
//! other port is polled, and without it one poll in three found nothing. An endpoint is a
//! process on this machine that was just written to or is about to be answered, so after
//! forwarding its frames the thread yields at once; a frame that came through a tunnel
//! was written by another host's daemon, which keeps polling on its own, and yielding at
//! once after handing it to the endpoint behind it gave the CPU to that daemon ahead of
//! the endpoint (17-18 us, no better than a yield per poll).
//!
//! # Not while the CPUs are oversubscribed
//!
//! A poll yields the thread between polls (`sched_yield`). On a machine whose CPUs are all
//! busy that yield gives the CPU away for a time slice: the kernel's EEVDF scheduler moves a
//! yielding task's deadline a slice later, and only a sleep resets it. The poller then comes
//! back to a frame already waiting, counts the poll as fruitful and yields again, so every
//! step of a chain of hand-offs through the polling thread (a published connection's) waits
//! behind every other runnable task: the egress bench's connect loop fell from about 5,000 to
//! a few hundred connections/s at load 8-11, its thread runnable but waiting 85-95% of the
//! time. A thread asleep on readiness is instead woken ahead of work that used its CPU share.
//! Ending one poll when its yield lost the CPU did not help (the next burst starts the next
//! poll at once, which loses the CPU again). So [`Contention`] judges, once per
//! [`CONTENTION_WINDOW`], from the polling thread's own scheduler counters
//! (`/proc/thread-self/schedstat`), whether it waited for a CPU longer than it ran on one;
//! while it did, no poll starts (the budget is still learned). On a machine with a free CPU
//! the thread hardly waits and polling is as before.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// Most polls on a thread between two thread yields, whoever polls: bounds how long the
/// lane keeps the CPU from other processes if the round's head stops polling (its poll ended
/// and it sleeps) while other tasks go on.
pub const MAX_POLLS_PER_THREAD_YIELD: u32 = 8;

/// Where the frames a drain forwarded came from, for [`ThreadYield::forwarded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// An endpoint's port (TAP, veth) or an in-process one (the gateway): its sender, or the
    /// receiver of what it sent, runs on this machine.
    Local,
    /// A tunnel port: the frames came from another host's daemon.
    Tunnel,
}

/// Which poll of a thread's polling tasks yields the thread to other processes (the module
/// docs say why): the first task to poll after a thread yield heads a round; the others'
/// polls in that round yield only to the lane's tasks; the head's next poll (a round has
/// passed) yields the thread, and so does any poll after [`MAX_POLLS_PER_THREAD_YIELD`]
/// without one, and the first poll after frames from a [`Ingress::Local`] port were
/// forwarded. `T` names a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadYield<T> {
    /// The task whose poll last yielded the thread (`None`: none yet).
    head: Option<T>,
    /// Polls since that yield.
    polls: u32,
    /// Frames from a local port were forwarded since that yield.
    local_forwarded: bool,
}

impl<T> Default for ThreadYield<T> {
    fn default() -> Self {
        ThreadYield {
            head: None,
            polls: 0,
            local_forwarded: false,
        }
    }
}

impl<T: PartialEq + Copy> ThreadYield<T> {
    /// A task on the thread forwarded frames it read from its port, `from` that kind of port.
    pub fn forwarded(&mut self, from: Ingress) {
        if from == Ingress::Local {
            self.local_forwarded = true;
        }
    }

    /// `task` is about to poll: whether it yields the thread first (it then heads the next
    /// round).
    pub fn yield_thread(&mut self, task: T) -> bool {
        let yields = self.local_forwarded
            || self.polls >= MAX_POLLS_PER_THREAD_YIELD
            || self.head.is_none_or(|head| head == task);
        if yields {
            *self = ThreadYield {
                head: Some(task),
                polls: 0,
                local_forwarded: false,
            };
        } else {
            self.polls += 1;
        }
        yields
    }
}

/// What a burst that emptied its port did, for [`starts_poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptiedBurst {
    /// Frames read.
    pub frames: usize,
    /// Of them, GSO super-frames.
    pub super_frames: usize,
    /// Some were written to a port with a device (an endpoint's TAP or veth, a tunnel), not
    /// only handed to an in-process port (the gateway).
    pub to_device: bool,
}

/// Whether the port task polls its port after `burst` emptied it, with `budget` learned so
/// far ([`BusyPoll::budget`]). Not after an empty wake-up, nor after a burst with a GSO
/// super-frame (a bulk TCP sender queues far ahead: polling for it cost a fifth more CPU per
/// GB), nor after a burst whose frames all went to the gateway: their answers come from host
/// sockets through the router, not soon from this port's peer, and on two vCPUs the poll's
/// CPU was the relay's and the client's (published connections/s 1.2x without it,
/// benches/README.md "Busy-polling and the gateway").
pub fn starts_poll(burst: EmptiedBurst, budget: Duration) -> bool {
    burst.frames > 0 && burst.super_frames == 0 && burst.to_device && budget > Duration::ZERO
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

/// How often [`Contention`] judges the thread's counters: long enough to hold tens of the
/// thread's turns on a CPU, short enough to follow a machine whose load comes and goes (a
/// compile job lasts seconds).
pub const CONTENTION_WINDOW: Duration = Duration::from_millis(50);

/// A thread's scheduler counters at one moment (`/proc/thread-self/schedstat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Time on a CPU.
    pub on_cpu: Duration,
    /// Time runnable but waiting for a CPU.
    pub waiting: Duration,
}

/// Whether the polling thread's CPUs are oversubscribed: over the last window it waited for a
/// CPU longer than it ran on one. Measured at load 8-11 on 2 vCPUs the egress bench's lane
/// thread waited 60-80% of the time it wanted a CPU without polling (and 85-95% with it); at
/// load 4-5, 15-40% either way, where polling did no harm. Thresholds of 30%, 50% and 70% all
/// ended the connect loop's collapse in alternated runs; half is the middle, and a thread
/// that waits as long as it runs has already lost what a poll saves (a wake-up of tens of
/// microseconds).
#[derive(Debug, Clone)]
pub struct Contention {
    window: Duration,
    last: Option<(Instant, SchedStat)>,
    oversubscribed: bool,
}

impl Contention {
    /// A judge that takes a new sample every `window`; until its second sample it says the
    /// CPUs are free (polling as before).
    pub fn new(window: Duration) -> Contention {
        Contention {
            window,
            last: None,
            oversubscribed: false,
        }
    }

    /// Whether a new sample is wanted at `now` (a window has passed since the last one).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(at, _)| now.saturating_duration_since(at) >= self.window)
    }

    /// The thread's counters read at `now`: judges the time since the previous sample.
    pub fn sample(&mut self, now: Instant, stat: SchedStat) {
        if let Some((_, prev)) = self.last {
            let waited = stat.waiting.saturating_sub(prev.waiting);
            let ran = stat.on_cpu.saturating_sub(prev.on_cpu);
            self.oversubscribed = waited > ran;
        }
        self.last = Some((now, stat));
    }

    /// Whether the last window said the CPUs are oversubscribed: then no poll starts.
    pub fn oversubscribed(&self) -> bool {
        self.oversubscribed
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

    fn burst(frames: usize, super_frames: usize, to_device: bool) -> EmptiedBurst {
        EmptiedBurst {
            frames,
            super_frames,
            to_device,
        }
    }

    #[test]
    fn a_burst_of_small_frames_to_another_endpoint_starts_a_poll() {
        assert!(starts_poll(burst(3, 0, true), us(40)));
    }

    #[test]
    fn no_poll_without_a_budget_or_after_an_empty_wake_up() {
        assert!(!starts_poll(burst(3, 0, true), Duration::ZERO));
        assert!(!starts_poll(burst(0, 0, false), us(40)));
    }

    #[test]
    fn no_poll_after_a_burst_with_a_super_frame() {
        assert!(!starts_poll(burst(3, 1, true), us(40)));
    }

    #[test]
    fn no_poll_after_a_burst_that_only_went_to_the_gateway() {
        assert!(!starts_poll(burst(3, 0, false), us(40)));
    }

    #[test]
    fn the_thread_yields_once_per_round_of_the_polling_tasks() {
        let mut r = ThreadYield::default();
        assert!(r.yield_thread(1), "the first poll heads a round");
        assert!(!r.yield_thread(2));
        assert!(!r.yield_thread(3));
        assert!(r.yield_thread(1), "the head polls again: a round passed");
        assert!(!r.yield_thread(3));
        assert!(!r.yield_thread(2));
    }

    #[test]
    fn a_lone_polling_task_yields_the_thread_before_every_poll() {
        let mut r = ThreadYield::default();
        for _ in 0..4 {
            assert!(r.yield_thread(7));
        }
    }

    #[test]
    fn the_poll_after_frames_from_a_local_port_were_forwarded_yields_the_thread() {
        let mut r = ThreadYield::default();
        assert!(r.yield_thread(1));
        r.forwarded(Ingress::Local);
        assert!(r.yield_thread(2), "at once, not at the end of the round");
        assert!(!r.yield_thread(1), "2 heads the round now");
        assert!(r.yield_thread(2));
        r.forwarded(Ingress::Local);
        r.forwarded(Ingress::Local);
        assert!(
            r.yield_thread(1),
            "once for all that was forwarded before it"
        );
        assert!(!r.yield_thread(2));
    }

    #[test]
    fn frames_from_a_tunnel_wait_for_the_end_of_the_round() {
        let mut r = ThreadYield::default();
        assert!(r.yield_thread(1));
        r.forwarded(Ingress::Tunnel);
        assert!(!r.yield_thread(2));
        assert!(r.yield_thread(1));
    }

    #[test]
    fn polls_without_a_thread_yield_are_bounded_when_the_head_stops_polling() {
        let mut r = ThreadYield::default();
        assert!(r.yield_thread(0), "head 0, which then sleeps");
        for i in 0..MAX_POLLS_PER_THREAD_YIELD {
            assert!(!r.yield_thread(1 + i % 2), "poll {i} of tasks 1 and 2");
        }
        assert!(
            r.yield_thread(1),
            "the bound is reached: yield, and 1 heads"
        );
        assert!(!r.yield_thread(2));
        assert!(r.yield_thread(1));
    }

    fn stat(on_cpu_us: u64, waiting_us: u64) -> SchedStat {
        SchedStat {
            on_cpu: us(on_cpu_us),
            waiting: us(waiting_us),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A judge of 50 ms windows that took its first sample, `first`, at the returned instant.
    fn judge_from(first: SchedStat) -> (Instant, Contention) {
        let t0 = Instant::now();
        let mut c = Contention::new(ms(50));
        assert!(c.due(t0), "nothing sampled yet");
        c.sample(t0, first);
        (t0, c)
    }

    #[test]
    fn a_first_sample_alone_says_the_cpus_are_free() {
        let (_, c) = judge_from(stat(1_000, 900_000));
        assert!(!c.oversubscribed(), "no window to judge yet");
    }

    #[test]
    fn a_thread_that_waited_longer_than_it_ran_is_oversubscribed_until_a_window_says_otherwise() {
        let (t0, mut c) = judge_from(stat(1_000, 1_000));
        assert!(!c.due(t0 + ms(49)), "judged once per window");
        assert!(c.due(t0 + ms(50)));
        // 10 ms on a CPU, 30 ms waiting for one: a full machine.
        c.sample(t0 + ms(50), stat(11_000, 31_000));
        assert!(c.oversubscribed());
        // The whole next window it stays so, however often asked.
        assert!(!c.due(t0 + ms(60)));
        assert!(c.oversubscribed());
        // 20 ms on a CPU, 5 ms waiting: a free CPU again.
        c.sample(t0 + ms(100), stat(31_000, 36_000));
        assert!(!c.oversubscribed());
    }

    #[test]
    fn a_window_that_waited_no_longer_than_it_ran_or_slept_throughout_polls() {
        let (t0, mut c) = judge_from(stat(0, 0));
        c.sample(t0 + ms(50), stat(5_000, 5_000));
        assert!(!c.oversubscribed(), "waited exactly as long as it ran");
        c.sample(t0 + ms(100), stat(6_000, 14_000));
        assert!(c.oversubscribed());
        // Asleep the whole window: no time wanted, none waited.
        c.sample(t0 + ms(5_000), stat(6_000, 14_000));
        assert!(!c.oversubscribed(), "idle");
    }
}
