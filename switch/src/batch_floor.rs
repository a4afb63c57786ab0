//! The batched writes' floor: which plain frames a port task holds back for one batched write
//! at the end of its burst ([`crate::driver`]'s `TxBatch`), and which it writes at once.
//!
//! Why: holding a frame costs a copy into the batch, and a batched write of two or three frames
//! (an io_uring submission, a `sendmmsg`) costs more than as many plain writes. A bulk TCP
//! stream's plain frames come in runs of one to three (its ACKs; a super-frame's short tail
//! between two super-frames), and batching them cost the daemon 6-7% more CPU per GB; a flood
//! of small frames comes in longer runs, where one write per run saves a syscall and a context
//! switch per frame. So only runs of at least [`FLOOR`] frames are batched:
//!
//! - a run is the plain frames for batching ports between two points where the task writes
//!   what it holds (a frame written at once, a GSO super-frame, and the end of the burst);
//! - while a run is shorter than the floor its frames go straight out, as before batching (no
//!   copy); from its [`FLOOR`]th frame on they are held;
//! - runs of one flow tend to be alike from one burst to the next, so when the last run that
//!   had any frame reached the floor, the next run is held from its first frame;
//! - a held run that turns out shorter than the floor is written frame by frame
//!   ([`worth_batching`]): only its copy was spent.
//!
//! Pure: the driver reports frames and run ends; tests drive it with made-up runs.

/// The shortest run written with one batched send (io_uring or `sendmmsg`): measured, see
/// benches/README.md ("Batched writes").
pub const FLOOR: usize = 4;

/// Whether `n` held frames for one port are worth one batched send rather than `n` writes.
pub fn worth_batching(n: usize) -> bool {
    n >= FLOOR
}

/// One port task's view of its runs of plain frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchFloor {
    /// Frames of the current run so far.
    run: usize,
    /// The length of the last run that had a frame.
    last: usize,
}

impl BatchFloor {
    /// Whether the next plain frame of the current run is held for the batch (else it is
    /// written at once); counts it in the run either way.
    pub fn next_frame(&mut self) -> bool {
        self.run += 1;
        self.last >= FLOOR || self.run >= FLOOR
    }

    /// The current run ended: what was held is being written.
    pub fn run_ended(&mut self) {
        if self.run > 0 {
            self.last = self.run;
            self.run = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a run of `n` frames and returns which were held.
    fn run(f: &mut BatchFloor, n: usize) -> Vec<bool> {
        let held = (0..n).map(|_| f.next_frame()).collect();
        f.run_ended();
        held
    }

    #[test]
    fn short_runs_go_straight_out() {
        let mut f = BatchFloor::default();
        for n in 1..FLOOR {
            assert!(run(&mut f, n).iter().all(|h| !h), "a run of {n}");
        }
    }

    #[test]
    fn a_long_run_is_held_from_the_floor_then_the_next_from_its_start() {
        let mut f = BatchFloor::default();
        assert_eq!(
            run(&mut f, 6),
            [false, false, false, true, true, true],
            "the first frames went out before the run was known to be long"
        );
        assert_eq!(run(&mut f, 5), [true; 5]);
        // A short run after a long one is held (its writes are then one by one:
        // worth_batching), and the one after it is not.
        assert_eq!(run(&mut f, 2), [true, true]);
        assert!(!worth_batching(2));
        assert_eq!(run(&mut f, 3), [false; 3]);
    }

    #[test]
    fn an_empty_run_changes_nothing() {
        let mut f = BatchFloor::default();
        run(&mut f, FLOOR);
        f.run_ended();
        f.run_ended();
        assert!(f.next_frame(), "the last run with frames still counts");
    }

    #[test]
    fn the_floor_is_where_batching_starts() {
        assert!(!worth_batching(FLOOR - 1));
        assert!(worth_batching(FLOOR));
        assert!(worth_batching(64));
    }
}
