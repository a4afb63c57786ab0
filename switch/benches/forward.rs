//! Microbenchmark of netyard's own cost per small frame: the port driver's burst read, the
//! switch's decision (checks, port security, MAC learning and lookup), the counters and the
//! batched write, with ports that are memory (no kernel, no syscall per frame). What the
//! `switch` bench's `udp64_cpu_us_per_frame` holds beside the kernel's TAP/AF_PACKET work and
//! the wake-ups, which make that figure swing a tenth or more between runs; this one moves
//! by a few percent, so a change of a few nanoseconds per frame shows.
//!
//! One tokio current-thread runtime (as a lane) runs the driver of port A, whose device hands
//! out 64-byte IPv4 frames from A's MAC and address to B's MAC (learned beforehand), with the
//! same port security an attached endpoint has; port B takes them in batches and drops them.
//! By default A's device is never empty during a round, so the driver reads bursts of its
//! budget (64 frames) with no syscall but the runtime's `epoll_wait` between them: the
//! steadiest figure. `--burst N` empties the device every N frames instead (a flood's
//! bursts on a TAP are 10-20 frames), each burst then signalled through A's eventfd (a
//! write and an `epoll_wait` per burst). Busy-polling is off (`NETYARD_BUSY_POLL_US=0`).
//! Prints nanoseconds per frame, the median of `--rounds` rounds (default 15) of `--frames`
//! frames (default 1,000,000), each round's figure, and the frames B counted against those
//! A gave (they must be equal).
//!
//! No root, no kernel devices: `cargo bench -p netyard-switch --bench forward [-- --burst 16]`.
//! A measurement, never a test: it prints figures and asserts nothing.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netyard_switch::port::VNET_HDR_LEN;
use netyard_switch::{driver, MacAddr, Port, PortCaps, PortSecurity, Switch, SwitchConfig};

const MAC_A: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0x0b];
const IP_A: [u8; 4] = [10, 251, 0, 2];
const IP_B: [u8; 4] = [10, 251, 0, 3];

const CAPS: PortCaps = PortCaps {
    vnet_hdr: true,
    gso_tcp: true,
    gso_udp: true,
};

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1; the fd is owned by the OwnedFd from here on.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A vnet header and a 64-byte frame: IPv4/UDP from A to B.
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&IP_A);
    ip[16..20].copy_from_slice(&IP_B);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 30, 0, 0]);
    f.resize(VNET_HDR_LEN + 64, 0x55);
    f
}

/// What port A's device hands out: `left` more copies of `frame`, then nothing until the
/// bench refills it and signals the eventfd.
struct Feed {
    frame: Vec<u8>,
    left: AtomicU64,
}

/// A port whose device is memory: A's gives its [`Feed`]'s frames; B's (no feed) takes
/// batches and drops them.
struct BenchPort {
    fd: OwnedFd,
    feed: Option<Arc<Feed>>,
}

impl Port for BenchPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(feed) = self.feed.as_ref().filter(|f| f.left.load(Relaxed) > 0) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        feed.left.fetch_sub(1, Relaxed);
        let n = feed.frame.len();
        buf.get_mut(..n)
            .ok_or_else(|| io::Error::other("receive buffer too small"))?
            .copy_from_slice(&feed.frame);
        Ok(n)
    }
    fn send(&self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn send_batch(&self, frames: &[&[u8]], _: &mut dyn FnMut(usize, io::Error)) -> usize {
        frames.len()
    }
    fn batches(&self) -> bool {
        self.feed.is_none()
    }
    fn caps(&self) -> PortCaps {
        CAPS
    }
    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
    fn kind(&self) -> &'static str {
        "bench"
    }
}

struct Opts {
    burst: u64,
    frames: u64,
    rounds: usize,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        burst: 0,
        frames: 1_000_000,
        rounds: 15,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .ok_or(format!("{name} takes a positive number"))
        };
        match a.as_str() {
            "--bench" => {}
            "--burst" => o.burst = num("--burst")?,
            "--frames" => o.frames = num("--frames")?,
            "--rounds" => {
                o.rounds = usize::try_from(num("--rounds")?).map_err(|e| e.to_string())?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("forward: {e}");
            std::process::exit(2);
        }
    };
    std::env::set_var("NETYARD_BUSY_POLL_US", "0");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
}

async fn run(o: Opts) {
    let sw = Switch::new("bench", SwitchConfig::default());
    let (src_fd, sink_fd) = (eventfd().expect("eventfd"), eventfd().expect("eventfd"));
    let signal = std::fs::File::from(src_fd.try_clone().expect("dup"));
    let src = Arc::new(Feed {
        frame: frame(),
        left: AtomicU64::new(0),
    });
    let a = sw.add_port(
        "a",
        Box::new(BenchPort {
            fd: src_fd,
            feed: Some(src.clone()),
        }),
    );
    let b = sw.add_port(
        "b",
        Box::new(BenchPort {
            fd: sink_fd,
            feed: None,
        }),
    );
    a.set_security(Some(PortSecurity {
        mac: MacAddr(MAC_A),
        ipv4: vec![IP_A.into()],
        ipv6: Vec::new(),
    }));
    sw.fdb.learn(MacAddr(MAC_B), b.id, sw.now_ms());
    let task = driver::spawn_port(sw.clone(), a.clone()).expect("driver");

    // 0: the whole round as one burst of the device.
    let burst = if o.burst == 0 { o.frames } else { o.burst };
    let bursts = o.frames.div_ceil(burst);
    let mut per_frame = Vec::with_capacity(o.rounds);
    for round in 0..=o.rounds {
        let start_tx = b.counters.tx_packets.load(Relaxed);
        let t0 = Instant::now();
        for _ in 0..bursts {
            src.left.store(burst, Relaxed);
            // A write to the eventfd is an edge on its readiness: the driver wakes. (Its
            // counter overflows only after 2^64 - 2 writes; then it is read back to 0.)
            if (&signal).write_all(&1u64.to_ne_bytes()).is_err() {
                let mut v = [0u8; 8];
                let _ = (&signal).read(&mut v);
            }
            while src.left.load(Relaxed) > 0 {
                tokio::task::yield_now().await;
            }
        }
        // The last burst's batch is written when its drain ends.
        let want = start_tx + bursts * burst;
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.counters.tx_packets.load(Relaxed) < want && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let ns = t0.elapsed().as_nanos() as f64 / (bursts * burst) as f64;
        // Round 0 warms the caches and the allocator: not counted.
        if round > 0 {
            per_frame.push(ns);
        }
    }
    task.abort();
    let given = bursts * burst * (o.rounds as u64 + 1);
    let (rx, tx) = (
        a.counters.rx_packets.load(Relaxed),
        b.counters.tx_packets.load(Relaxed),
    );
    let mut sorted = per_frame.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "forward  burst {}  ns_per_frame {:.1}  (rounds: {})",
        burst.min(64),
        median,
        per_frame
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("# frames given {given}, A rx_packets {rx}, B tx_packets {tx}");
}
