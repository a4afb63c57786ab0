//! The impairment decision of one link direction, as a pure state machine: fed a packet's
//! size and the time, it returns the packet's fate. It reads no clock and touches no frame;
//! its randomness is a seeded generator, so a test replays it exactly.
//!
//! The order of decisions is netem's (`sch_netem.c`, `netem_enqueue`):
//! 1. duplicate: the packet will be offered again, as a copy that cannot itself be duplicated
//!    (netem enqueues the copy at the root again with duplication off);
//! 2. loss (random, or the Gilbert model): a lost packet that was to be duplicated is not lost
//!    (one copy goes on), else it is dropped;
//! 3. corrupt: a random bit of the packet is flipped (the caller picks it from the value);
//! 4. limit: with `limit` packets already held, it is dropped;
//! 5. reorder: a share of packets is sent at once (in front of those waiting) while the others
//!    get the delay (netem with `gap 1`, what tc sets when `reorder` is given alone);
//! 6. delay: the mean plus jitter drawn from the distribution (a delay below zero is zero);
//! 7. rate: the link sends one packet at a time at `rate_bps`: a packet leaves once the one
//!    before it has left plus its own time on the wire, and whatever delay is still left after
//!    waiting for the link. That is netem's rate (a token bucket one packet deep), not a
//!    bucket with a burst.
//!
//! Delayed packets are released in the order of their send times (netem's time-ordered
//! queue), so jitter reorders packets, as netem does.
//!
//! Where it differs from netem: no correlation parameters (netem's are documented as broken),
//! no 4-state loss model, no slot, no packet overhead or cell size for the rate, and `corrupt`
//! flips a bit after the Ethernet header (netem's may hit the MAC header, which turns
//! corruption into a loss).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::{Distribution, Impairment, PPB_ONE};

/// Why the model dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The loss model (random or bursty).
    Loss,
    /// The queue held `limit` packets already.
    Limit,
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Drop(Dropped),
    /// Send it at `at` (ns on the caller's clock; `at <= now` is "now").
    Send {
        at: u64,
        /// It jumped the queue (reorder).
        reordered: bool,
        /// Flip one bit: the caller picks the byte and bit from this value.
        corrupt: Option<u64>,
        /// Offer a copy of it again, with [`Offer::copy`] set.
        duplicate: bool,
    },
}

/// One packet offered to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Now, ns.
    pub now: u64,
    /// Bytes the packet takes on the wire (an Ethernet frame; a GSO super-frame the sum of its
    /// segments).
    pub wire_bytes: u64,
    /// Wire packets it counts as against `limit` (a super-frame's segments).
    pub packets: u32,
    /// Packets held by the link now.
    pub held: u32,
    /// A duplicate being offered: not duplicated again.
    pub copy: bool,
}

/// The state of one link direction.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Impairment,
    rng: SmallRng,
    /// The Gilbert model's state.
    bad: bool,
    /// When the link is done sending what it was given (rate), ns.
    busy_until: u64,
}

impl Model {
    pub fn new(cfg: Impairment, seed: u64) -> Model {
        Model {
            rng: SmallRng::seed_from_u64(cfg.seed.unwrap_or(seed)),
            cfg,
            bad: false,
            busy_until: 0,
        }
    }

    pub fn config(&self) -> &Impairment {
        &self.cfg
    }

    fn chance(&mut self, ppb: u32) -> bool {
        ppb > 0 && (ppb >= PPB_ONE || self.rng.gen_range(0..PPB_ONE) < ppb)
    }

    fn lost(&mut self) -> bool {
        match self.cfg.loss_burst {
            Some(b) => {
                let flip = if self.bad { b.p_good } else { b.p_bad };
                if self.chance(flip) {
                    self.bad = !self.bad;
                }
                self.bad
            }
            None => self.chance(self.cfg.loss),
        }
    }

    /// The delay of one packet, ns.
    fn draw_delay(&mut self) -> u64 {
        let mean = self.cfg.delay_us as f64 * 1e3;
        let jitter = self.cfg.jitter_us as f64 * 1e3;
        if jitter == 0.0 {
            return mean as u64;
        }
        let d = match self.cfg.distribution {
            Distribution::Uniform => mean + jitter * (self.rng.gen::<f64>() * 2.0 - 1.0),
            Distribution::Normal => {
                // Box-Muller: one normal draw from two uniform ones (rand_distr for one
                // formula is not worth a dependency).
                let u1: f64 = 1.0 - self.rng.gen::<f64>();
                let u2: f64 = self.rng.gen();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                mean + jitter * z.clamp(-4.0, 4.0)
            }
        };
        d.max(0.0) as u64
    }

    /// How long `bytes` take on the wire at the rate, ns.
    fn wire_time(&self, bytes: u64) -> u64 {
        if self.cfg.rate_bps == 0 {
            return 0;
        }
        let ns = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(self.cfg.rate_bps);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Decides one packet's fate.
    pub fn offer(&mut self, o: Offer) -> Fate {
        let mut duplicate = !o.copy && self.chance(self.cfg.duplicate);
        if self.lost() {
            if !duplicate {
                return Fate::Drop(Dropped::Loss);
            }
            duplicate = false;
        }
        let corrupt = self.chance(self.cfg.corrupt).then(|| self.rng.gen());
        if o.held.saturating_add(o.packets) > self.cfg.limit {
            return Fate::Drop(Dropped::Limit);
        }
        if self.chance(self.cfg.reorder) {
            return Fate::Send {
                at: o.now,
                reordered: true,
                corrupt,
                duplicate,
            };
        }
        let mut delay = self.draw_delay();
        let mut start = o.now;
        if self.cfg.rate_bps > 0 {
            // The link is still sending what it held: this packet starts after it, and
            // whatever of its delay elapsed meanwhile is spent.
            if self.busy_until > o.now {
                delay = delay.saturating_sub(self.busy_until - o.now);
                start = self.busy_until;
            }
            delay = delay.saturating_add(self.wire_time(o.wire_bytes));
        }
        let at = start.saturating_add(delay);
        if self.cfg.rate_bps > 0 {
            self.busy_until = at;
        }
        Fate::Send {
            at,
            reordered: false,
            corrupt,
            duplicate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::LossBurst;
    use super::*;

    const MS: u64 = 1_000_000;

    fn offer(now: u64) -> Offer {
        Offer {
            now,
            wire_bytes: 1500,
            packets: 1,
            held: 0,
            copy: false,
        }
    }

    fn sent_at(f: Fate) -> u64 {
        match f {
            Fate::Send { at, .. } => at,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    fn pct(p: f64) -> u32 {
        (p * 1e7) as u32
    }

    #[test]
    fn no_impairment_sends_everything_now() {
        let mut m = Model::new(Impairment::default(), 1);
        for t in 0..1000 {
            assert_eq!(
                m.offer(offer(t)),
                Fate::Send {
                    at: t,
                    reordered: false,
                    corrupt: None,
                    duplicate: false
                }
            );
        }
    }

    #[test]
    fn a_fixed_delay_delays_every_packet_by_it() {
        let cfg = Impairment {
            delay_us: 20_000,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        assert_eq!(sent_at(m.offer(offer(5 * MS))), 25 * MS);
    }

    #[test]
    fn uniform_jitter_stays_within_its_bounds_and_centres_on_the_delay() {
        let cfg = Impairment {
            delay_us: 50_000,
            jitter_us: 10_000,
            distribution: Distribution::Uniform,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 7);
        let d: Vec<u64> = (0..10_000).map(|_| sent_at(m.offer(offer(0)))).collect();
        assert!(d.iter().all(|x| (40 * MS..=60 * MS).contains(x)));
        let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
        assert!((mean - 50e6).abs() < 0.5e6, "mean {mean}");
    }

    #[test]
    fn normal_jitter_has_the_jitter_as_deviation_and_is_cut_at_four() {
        let cfg = Impairment {
            delay_us: 50_000,
            jitter_us: 10_000,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 7);
        let d: Vec<f64> = (0..20_000)
            .map(|_| sent_at(m.offer(offer(0))) as f64)
            .collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        assert!((mean - 50e6).abs() < 0.5e6, "mean {mean}");
        assert!((sd - 10e6).abs() < 0.5e6, "sd {sd}");
        assert!(d.iter().all(|x| (10e6..=90e6).contains(x)));
    }

    #[test]
    fn jitter_never_sends_before_now() {
        let cfg = Impairment {
            delay_us: 1_000,
            jitter_us: 10_000,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 3);
        assert!((0..5000).all(|_| sent_at(m.offer(offer(100 * MS))) >= 100 * MS));
    }

    #[test]
    fn random_loss_loses_its_share() {
        let cfg = Impairment {
            loss: pct(10.0),
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 11);
        let lost = (0..100_000)
            .filter(|_| m.offer(offer(0)) == Fate::Drop(Dropped::Loss))
            .count();
        assert!((9_000..11_000).contains(&lost), "{lost}");
    }

    #[test]
    fn bursty_loss_has_the_gilbert_mean_and_long_bursts() {
        // p = 1%, r = 25%: mean loss 0.01 / 0.26 = 3.8%, mean burst 4 packets.
        let cfg = Impairment {
            loss_burst: Some(LossBurst {
                p_bad: pct(1.0),
                p_good: pct(25.0),
            }),
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 5);
        let lost: Vec<bool> = (0..200_000)
            .map(|_| m.offer(offer(0)) == Fate::Drop(Dropped::Loss))
            .collect();
        let n = lost.iter().filter(|l| **l).count() as f64;
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let share = n / lost.len() as f64;
        assert!((share - 0.0385).abs() < 0.006, "share {share}");
        let mean_burst = n / bursts;
        assert!((3.5..4.5).contains(&mean_burst), "mean burst {mean_burst}");
    }

    #[test]
    fn a_duplicate_is_offered_again_and_never_duplicated_twice() {
        let cfg = Impairment {
            duplicate: PPB_ONE,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        assert!(matches!(
            m.offer(offer(0)),
            Fate::Send {
                duplicate: true,
                ..
            }
        ));
        let copy = Offer {
            copy: true,
            ..offer(0)
        };
        assert!(matches!(
            m.offer(copy),
            Fate::Send {
                duplicate: false,
                ..
            }
        ));
    }

    #[test]
    fn a_lost_packet_that_was_duplicated_goes_on_once() {
        let cfg = Impairment {
            duplicate: PPB_ONE,
            loss: PPB_ONE,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        assert!(matches!(
            m.offer(offer(0)),
            Fate::Send {
                duplicate: false,
                ..
            }
        ));
        let copy = Offer {
            copy: true,
            ..offer(0)
        };
        assert_eq!(m.offer(copy), Fate::Drop(Dropped::Loss));
    }

    #[test]
    fn corruption_hands_out_a_bit_to_flip() {
        let cfg = Impairment {
            corrupt: PPB_ONE,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        assert!(matches!(
            m.offer(offer(0)),
            Fate::Send {
                corrupt: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_full_queue_drops_and_a_super_frame_counts_its_segments() {
        let cfg = Impairment {
            delay_us: 1000,
            limit: 10,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        let at = |held, packets| Offer {
            held,
            packets,
            ..offer(0)
        };
        assert!(matches!(m.offer(at(9, 1)), Fate::Send { .. }));
        assert_eq!(m.offer(at(10, 1)), Fate::Drop(Dropped::Limit));
        assert_eq!(m.offer(at(5, 6)), Fate::Drop(Dropped::Limit));
        assert!(matches!(m.offer(at(5, 5)), Fate::Send { .. }));
    }

    #[test]
    fn reordered_packets_go_at_once_and_the_rest_wait() {
        let cfg = Impairment {
            delay_us: 10_000,
            reorder: pct(25.0),
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 9);
        let mut now_sent = 0;
        for _ in 0..10_000 {
            match m.offer(offer(MS)) {
                Fate::Send {
                    at,
                    reordered: true,
                    ..
                } => {
                    assert_eq!(at, MS);
                    now_sent += 1;
                }
                Fate::Send { at, .. } => assert_eq!(at, 11 * MS),
                other => panic!("{other:?}"),
            }
        }
        assert!((2_200..2_800).contains(&now_sent), "{now_sent}");
    }

    #[test]
    fn the_rate_spaces_packets_by_their_time_on_the_wire() {
        // 1500 bytes at 12 Mbit/s: 1 ms each.
        let cfg = Impairment {
            rate_bps: 12_000_000,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        assert_eq!(sent_at(m.offer(offer(0))), MS);
        assert_eq!(sent_at(m.offer(offer(0))), 2 * MS);
        assert_eq!(sent_at(m.offer(offer(0))), 3 * MS);
        // An idle link starts from now again.
        assert_eq!(sent_at(m.offer(offer(10 * MS))), 11 * MS);
        // A super-frame of 10 segments takes 10 packets' time.
        let big = Offer {
            wire_bytes: 15_000,
            packets: 10,
            ..offer(20 * MS)
        };
        assert_eq!(sent_at(m.offer(big)), 30 * MS);
    }

    #[test]
    fn the_rate_after_a_delay_spends_the_delay_waiting_for_the_link() {
        // netem: a packet behind a busy link waits for it, and its delay runs meanwhile.
        let cfg = Impairment {
            delay_us: 5_000,
            rate_bps: 12_000_000,
            ..Impairment::default()
        };
        let mut m = Model::new(cfg, 1);
        assert_eq!(sent_at(m.offer(offer(0))), 6 * MS);
        // Link busy until 6 ms; 2 ms later the delay left is 5 - 4 = 1 ms, then 1 ms on the wire.
        assert_eq!(sent_at(m.offer(offer(2 * MS))), 8 * MS);
        // Long after, a fresh start.
        assert_eq!(sent_at(m.offer(offer(100 * MS))), 106 * MS);
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let cfg = Impairment {
            delay_us: 10_000,
            jitter_us: 5_000,
            loss: pct(20.0),
            duplicate: pct(5.0),
            ..Impairment::default()
        };
        let run = |seed| {
            let mut m = Model::new(cfg.clone(), seed);
            (0..1000).map(|t| m.offer(offer(t))).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let fixed = Impairment {
            seed: Some(1),
            ..cfg.clone()
        };
        let a: Vec<_> = {
            let mut m = Model::new(fixed.clone(), 100);
            (0..100).map(|t| m.offer(offer(t))).collect()
        };
        let b: Vec<_> = {
            let mut m = Model::new(fixed, 200);
            (0..100).map(|t| m.offer(offer(t))).collect()
        };
        assert_eq!(a, b, "a configured seed wins over the caller's");
    }
}
