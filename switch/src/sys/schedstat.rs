//! The calling thread's scheduler counters (`/proc/thread-self/schedstat`: nanoseconds on a
//! CPU, nanoseconds runnable but waiting for one, turns on a CPU), for busy-polling's
//! [`Contention`](crate::busy_poll::Contention).
//!
//! The file is opened once per thread and re-read in place (`pread` at offset 0: one syscall,
//! no allocation); the kernel writes fresh figures on each read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::busy_poll::SchedStat;

/// The calling thread's schedstat file, open. Only the thread that opened it may read it
/// (`thread-self` is resolved at open).
pub struct ThreadSchedStat(File);

impl ThreadSchedStat {
    /// Opens the calling thread's file.
    pub fn open() -> io::Result<ThreadSchedStat> {
        File::open("/proc/thread-self/schedstat").map(ThreadSchedStat)
    }

    /// The counters now.
    pub fn read(&self) -> io::Result<SchedStat> {
        let mut buf = [0u8; 96];
        let n = self.0.read_at(&mut buf, 0)?;
        parse(buf.get(..n).unwrap_or_default()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/thread-self/schedstat: not `<ns on cpu> <ns waiting> <turns>`",
            )
        })
    }
}

/// `"<ns on cpu> <ns waiting> <turns>\n"`.
fn parse(text: &[u8]) -> Option<SchedStat> {
    let text = std::str::from_utf8(text).ok()?;
    let mut it = text.split_ascii_whitespace().map(|w| w.parse::<u64>().ok());
    let on_cpu = Duration::from_nanos(it.next()??);
    let waiting = Duration::from_nanos(it.next()??);
    it.next()??;
    Some(SchedStat { on_cpu, waiting })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_line_is_read_as_time_on_a_cpu_and_time_waiting() {
        assert_eq!(
            parse(b"6098 15811299 2\n"),
            Some(SchedStat {
                on_cpu: Duration::from_nanos(6098),
                waiting: Duration::from_nanos(15_811_299),
            })
        );
        assert_eq!(parse(b"6098 15811299\n"), None, "a field missing");
        assert_eq!(parse(b"x 1 2\n"), None, "not a number");
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn this_threads_counters_grow_between_reads() {
        let f = ThreadSchedStat::open().expect("/proc/thread-self/schedstat must be readable");
        let a = f.read().expect("first read");
        // The kernel adds a running thread's time at a tick or a switch: spin until it has
        // (a tick is 10 ms at most; the limit only ends a broken run).
        let spin = std::time::Instant::now();
        let mut b = a;
        while b.on_cpu == a.on_cpu && spin.elapsed() < Duration::from_secs(5) {
            b = f.read().expect("later read");
        }
        assert!(b.on_cpu > a.on_cpu, "{a:?} then {b:?}");
        assert!(b.waiting >= a.waiting, "{a:?} then {b:?}");
    }
}
