//! The floor: the cheapest userspace frame mover we could build, measured in the same run as the
//! kernel's forwarding and netyard, so that a bench can tell how far the kernel is from ANY
//! userspace forwarder on this machine and how far netyard is from that floor (issue 16).
//!
//! It is a hidden child mode of the bench executable (`--floor-tap`, `--floor-veth`), started in
//! the host namespace as the daemon is. No switching at all: every frame read from A's port is
//! written to B's unchanged, and back, vnet header included, so 64 KB GSO super-frames cross
//! whole as they do in netyard. The ports are opened by netyard's own code
//! (`netyard_switch::sys`), so the device flags, vnet header, offloads and socket options are
//! netyard's by construction, not a copy of them; only the loop is the floor's.
//!
//! One thread per direction, and nothing but the I/O is paid: no runtime, no epoll set, no
//! hand-off between threads, no lookup. Two ways to move the frames ([`FloorIo`], the bench's
//! `--floor-io`; benches/README.md has what each measured):
//!
//! - `each`: blocking calls, one frame each: `read` then `write` (a TAP fd moves one frame per
//!   syscall; on an AF_PACKET socket `read`/`write` are `recv`/`send`). The fewest syscalls
//!   per frame at low rates, and one wake-up per frame.
//! - `batch`: netyard's I/O structure without netyard: non-blocking fds, a burst drained until
//!   the device is empty (at most [`BATCH`] frames), its writes batched as netyard batches them
//!   (TAP: the first frames of a burst written at once, from `batch_floor::FLOOR` on one
//!   io_uring submission; AF_PACKET: one `recvmmsg` and one `sendmmsg` per burst), then the
//!   same adaptive busy-poll (`netyard_switch::busy_poll`, yielding between polls) before
//!   sleeping in `poll(2)`. It pays a wake-up and a context switch per burst, not per frame.
//!
//! The frames read from A are counted in a shared mapping of a small file (one plain store per
//! frame, no syscall), which the bench reads to divide the floor's CPU time by.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use netyard_switch::batch_floor;
use netyard_switch::busy_poll::{self, BusyPoll};
use netyard_switch::sys::packet::{PacketPort, RecvMeta};
use netyard_switch::sys::tap::{open_tap, TapMode, TapPort};
use netyard_switch::sys::uring;
use netyard_switch::Port;
use nix::sched::{setns, CloneFlags};

use super::link::Lab;
use super::{interrupted, ip, ip_addr_up, last_lines, run_setup};

/// Most frames one burst moves (netyard's AF_PACKET batch and io_uring ring).
const BATCH: usize = netyard_switch::sys::packet::BATCH_MAX;
const _: () = assert!(BATCH == uring::BATCH);
/// A frame with its vnet header: a 64 KB GSO super-frame, its Ethernet header and the header.
const FRAME_BUF: usize = 65536 + 256;
/// What the child prints once both ports are open.
const READY: &str = "floor ready";

// ---------------------------------------------------------------------------------------------
// The child.

/// How the floor moves frames (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FloorIo {
    Each,
    Batch,
}

impl FloorIo {
    pub fn parse(s: &str) -> Result<FloorIo, String> {
        match s {
            "each" => Ok(FloorIo::Each),
            "batch" => Ok(FloorIo::Batch),
            other => Err(format!("unknown floor I/O {other:?} (each, batch)")),
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            FloorIo::Each => "each",
            FloorIo::Batch => "batch",
        }
    }
}

/// The floor's hidden child modes: `Some(exit code)` when `args` asks for one.
///
/// - `--floor-tap COUNTER NETNS_A NETNS_B IO`: creates TAP `eth0` inside each namespace (given
///   as paths) as netyard's `--kind tap` does (persistent, `IFF_VNET_HDR`, its offloads).
/// - `--floor-veth COUNTER IF_A IF_B IO`: serves two interfaces of its own namespace (the host
///   ends of veth pairs) with AF_PACKET sockets as netyard's `--kind veth` does.
pub fn child_mode(args: &[String]) -> Option<i32> {
    let mode = args.first()?.as_str();
    if mode != "--floor-tap" && mode != "--floor-veth" {
        return None;
    }
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let res = FloorIo::parse(arg(4)).and_then(|io| {
        let count = frame_counter(Path::new(arg(1)))?;
        let open = if mode == "--floor-tap" {
            tap_in
        } else {
            packet_on
        };
        serve(open(arg(2))?, open(arg(3))?, io, count)
    });
    match res {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("{mode}: {e}");
            Some(1)
        }
    }
}

/// One of the floor's two ports: how a burst reads and writes it.
enum End {
    Tap(TapPort),
    Packet(PacketPort),
}

impl End {
    fn fd(&self) -> RawFd {
        match self {
            End::Tap(p) => p.raw_fd(),
            End::Packet(p) => p.raw_fd(),
        }
    }
}

/// Says it is ready, then forwards A to B on a thread of its own and B to A on this one.
fn serve(
    a: End,
    b: End,
    io: FloorIo,
    count: &AtomicU64,
) -> Result<std::convert::Infallible, String> {
    if io == FloorIo::Each {
        // netyard's ports are non-blocking (its runtime polls them); this floor blocks.
        for fd in [a.fd(), b.fd()] {
            set_blocking(fd).map_err(|e| format!("making the ports blocking: {e}"))?;
        }
    }
    println!("{READY}");
    let pump = move |from: &End, to: &End, count: Option<&AtomicU64>| -> ! {
        match io {
            FloorIo::Each => pump_each(from.fd(), to.fd(), count),
            FloorIo::Batch => pump_bursts(from, to, count),
        }
    };
    thread::scope(|s| {
        s.spawn(|| pump(&a, &b, Some(count)));
        pump(&b, &a, None)
    })
}

/// An AF_PACKET socket on `ifname` (in the floor's namespace), as netyard's veth port.
fn packet_on(ifname: &str) -> Result<End, String> {
    let p = PacketPort::open(ifname, true).map_err(|e| format!("{ifname}: {e}"))?;
    Ok(End::Packet(p))
}

/// TAP `eth0` created inside the namespace at `netns` by a thread that joins it (the TAP's
/// namespace is its opener's), as netyard's port: persistent, offloads set, non-blocking.
fn tap_in(netns: &str) -> Result<End, String> {
    let ns = File::open(netns).map_err(|e| format!("{netns}: {e}"))?;
    let (fd, name) = thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {netns}: {e}"))?;
            open_tap("eth0", true, TapMode::Persistent)
                .map_err(|e| format!("creating TAP eth0 in {netns}: {e}"))
        })
        .join()
        .map_err(|_| "the TAP thread panicked".to_string())?
    })?;
    let p = TapPort::from_fd(fd, name, true).map_err(|e| format!("{netns}: {e}"))?;
    Ok(End::Tap(p))
}

/// Clears `O_NONBLOCK`.
fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL on an fd the caller owns reads and writes only the
    // fd's status flags; the return values are checked.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Frames from `from` to `to` one `read` and one `write` each (TAP fds and packet sockets alike),
/// counted in `count`. A failed write drops the frame, as a full queue does.
fn pump_each(from: RawFd, to: RawFd, count: Option<&AtomicU64>) -> ! {
    let mut buf = vec![0u8; FRAME_BUF];
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else {
            // EINTR, or an error the next read may not have: nothing to forward.
            continue;
        };
        bump(count, 1);
        // SAFETY: the first `n <= buf.len()` bytes of `buf` are initialised and live.
        unsafe { libc::write(to, buf.as_ptr().cast(), n) };
    }
}

/// Frames from `from` to `to` a burst at a time, as netyard's port task moves them (see the
/// module docs): drain, write, busy-poll a while if the traffic says so, then sleep.
fn pump_bursts(from: &End, to: &End, count: Option<&AtomicU64>) -> ! {
    let mut b = Bursts::new();
    let mut busy = BusyPoll::new(busy_poll::configured_max());
    loop {
        let got = b.burst(from, to, count);
        if got.frames == BATCH {
            continue;
        }
        // A bulk stream (GSO super-frames) is not polled for, as in netyard.
        if got.frames > 0 && !got.gso && busy.budget() > Duration::ZERO {
            let mut since = Instant::now();
            let mut found = false;
            let mut more = false;
            while since.elapsed() < busy.budget() {
                if busy_poll::configured_yield() {
                    let _ = nix::sched::sched_yield();
                }
                let got = b.burst(from, to, count);
                if got.frames > 0 {
                    found = true;
                    since = Instant::now();
                }
                if got.frames == BATCH || got.gso {
                    more = got.frames == BATCH;
                    break;
                }
            }
            busy.polled(found);
            if more {
                continue;
            }
        }
        let slept = Instant::now();
        wait_readable(from.fd());
        busy.woke_after(slept.elapsed());
    }
}

/// What one burst moved.
struct Burst {
    frames: usize,
    /// Whether a GSO super-frame was among them.
    gso: bool,
}

/// A direction's buffers: [`BATCH`] frames and their lengths.
struct Bursts {
    bufs: Vec<Vec<u8>>,
    lens: [usize; BATCH],
}

impl Bursts {
    fn new() -> Bursts {
        Bursts {
            bufs: (0..BATCH).map(|_| vec![0u8; FRAME_BUF]).collect(),
            lens: [0; BATCH],
        }
    }

    fn frame(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// The frames in `range`, for one batched write.
    fn frames(&self, range: std::ops::Range<usize>) -> [&[u8]; BATCH] {
        let mut out: [&[u8]; BATCH] = [&[]; BATCH];
        for (o, i) in out.iter_mut().zip(range) {
            *o = self.frame(i);
        }
        out
    }

    /// Reads what `from` holds (at most [`BATCH`] frames) and writes it to `to`.
    fn burst(&mut self, from: &End, to: &End, count: Option<&AtomicU64>) -> Burst {
        let frames = match (from, to) {
            (End::Packet(f), End::Packet(t)) => self.packet_burst(f, t),
            _ => self.tap_burst(from.fd(), to.fd()),
        };
        bump(count, frames as u64);
        // The vnet header's second byte is its GSO type (0: none).
        let gso = (0..frames).any(|i| self.frame(i).get(1).is_some_and(|&t| t != 0));
        Burst { frames, gso }
    }

    /// TAP: a `read` per frame; the burst's first frames written at once, the rest (from
    /// netyard's batch floor on) with one io_uring submission, as netyard does.
    fn tap_burst(&mut self, from: RawFd, to: RawFd) -> usize {
        let first = batch_floor::FLOOR - 1;
        let mut n = 0;
        while n < BATCH {
            let buf = &mut self.bufs[n];
            // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
            let r = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(len) = usize::try_from(r) else {
                break; // EAGAIN: the device is empty
            };
            self.lens[n] = len;
            if n < first {
                write_frame(to, self.frame(n));
            }
            n += 1;
        }
        let held = first..n.max(first);
        if batch_floor::worth_batching(held.len()) {
            let mut results = [0i32; BATCH];
            let frames = self.frames(held.clone());
            if uring::write_batch(to, &frames[..held.len()], &mut results).is_some() {
                return n;
            }
        }
        for i in held {
            write_frame(to, self.frame(i));
        }
        n
    }

    /// AF_PACKET: one `recvmmsg` and one `sendmmsg` of what it got (netyard's own batch calls).
    fn packet_burst(&mut self, from: &PacketPort, to: &PacketPort) -> usize {
        let mut meta = [RecvMeta::default(); BATCH];
        let got = from.recv_batch(&mut self.bufs, &mut meta).unwrap_or(0);
        for (len, m) in self.lens.iter_mut().zip(&meta).take(got) {
            *len = m.len.min(FRAME_BUF);
        }
        let frames = self.frames(0..got);
        let mut sent = 0;
        while sent < got {
            // A frame the peer refused (ENOBUFS: its backlog is full) is dropped, as in netyard.
            sent += to.send_batch(&frames[sent..got]).unwrap_or(1).max(1);
        }
        got
    }
}

/// One `write`; a frame the device refuses is dropped.
fn write_frame(to: RawFd, frame: &[u8]) {
    // SAFETY: `frame` is live and initialised for its length; the kernel only reads it.
    unsafe { libc::write(to, frame.as_ptr().cast(), frame.len()) };
}

/// Sleeps in `poll(2)` until `fd` is readable (or has an error pending).
fn wait_readable(fd: RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is a live `pollfd` and the count is 1; an interrupted poll just returns.
    unsafe { libc::poll(&mut p, 1, -1) };
}

/// Adds `n` to the frame counter: one writer, so a plain load and store (no locked add).
fn bump(count: Option<&AtomicU64>, n: u64) {
    if let Some(c) = count {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// A counter in a shared mapping of the file `path` (created), which the bench reads.
fn frame_counter(path: &Path) -> Result<&'static AtomicU64, String> {
    let err = |e: io::Error| format!("counter {}: {e}", path.display());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    f.set_len(4096).map_err(err)?;
    // SAFETY: a fresh shared mapping of 4096 bytes of a file that is that long; the kernel
    // chooses the address. The return value is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: the mapping is page-aligned, zero-filled (a new file), at least 8 bytes long and
    // never unmapped, so it is a valid `AtomicU64` for the rest of the process.
    Ok(unsafe { &*p.cast::<AtomicU64>() })
}

// ---------------------------------------------------------------------------------------------
// The bench's side.

/// The kinds of port the floor serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FloorKind {
    Tap,
    Veth,
}

/// A running floor in a lab: its index among the lab's servers (which stop it on drop, as the
/// lab's daemons are) and its frame counter.
pub struct FloorProc {
    pub idx: usize,
    pub pid: u32,
    counter: PathBuf,
}

impl FloorProc {
    /// Frames the floor has read from A so far.
    pub fn a_rx_frames(&self) -> Option<u64> {
        let bytes = fs::read(&self.counter).ok()?;
        Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
    }
}

/// Sets up a floor scenario in `lab`: A and B joined through the floor child `exe` in the host
/// namespace, their `eth0` configured as netyard configures an endpoint's (IPv6 off, address,
/// up; MTU and queue length the devices' defaults, as netyard leaves them).
pub fn setup(lab: &mut Lab, exe: &Path, kind: FloorKind, io: FloorIo) -> Result<(), String> {
    let h = lab.hosts[0].clone();
    let counter = lab.dir.join("floor.count");
    let counter_s = counter.to_string_lossy().into_owned();
    let eps = [
        (lab.a.clone(), lab.ip_a.clone()),
        (lab.b.clone(), lab.ip_b.clone()),
    ];
    let args: Vec<String> = match kind {
        FloorKind::Tap => {
            let path = |ns: &str| format!("/run/netns/{ns}");
            vec![
                "--floor-tap".into(),
                counter_s,
                path(&eps[0].0),
                path(&eps[1].0),
                io.arg().into(),
            ]
        }
        FloorKind::Veth => {
            for ((ns, _), port) in eps.iter().zip(["fa", "fb"]) {
                ip(&[
                    "-n", &h, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                    ns,
                ])?;
                ipv6_off(&h, port)?;
                ip(&["-n", &h, "link", "set", port, "up"])?;
            }
            let io = io.arg().into();
            vec![
                "--floor-veth".into(),
                counter_s,
                "fa".into(),
                "fb".into(),
                io,
            ]
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let idx = lab.servers.spawn(&h, None, exe, &args, "floor.log")?;
    let pid = lab.servers.pid(idx).unwrap_or(0);
    lab.floor = Some(FloorProc { idx, pid, counter });
    wait_ready(lab)?;
    for (ns, addr) in &eps {
        ipv6_off(ns, "eth0")?;
        ip_addr_up(ns, "eth0", addr)?;
    }
    Ok(())
}

/// `net.ipv6.conf.DEV.disable_ipv6=1` in `ns`, as netyard sets it on its endpoints and host ends.
fn ipv6_off(ns: &str, dev: &str) -> Result<(), String> {
    let key = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
    run_setup(
        std::process::Command::new("ip").args(["netns", "exec", ns, "sysctl", "-q", "-w", &key]),
        Duration::from_secs(20),
        || format!("`sysctl -w {key}` in {ns}"),
    )
}

/// Waits until the floor says its ports are open (or has exited: its log says why).
fn wait_ready(lab: &mut Lab) -> Result<(), String> {
    let log = lab.servers.log_path("floor.log");
    let idx = lab.floor.as_ref().map_or(0, |f| f.idx);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains(READY) {
            return Ok(());
        }
        if let Some(Ok(Some(st))) = lab.servers.child(idx).map(|c| c.try_wait()) {
            return Err(format!("the floor exited ({st}): {}", last_lines(&text, 3)));
        }
        if interrupted() {
            return Err("interrupted".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the floor not ready after 10 s: {}",
                last_lines(&text, 3)
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}
