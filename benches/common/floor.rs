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
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netyard_switch::batch_floor;
use netyard_switch::busy_poll::{self, BusyPoll};
use netyard_switch::overlay::RemoteTable;
use netyard_switch::sys::packet::{PacketPort, RecvMeta};
use netyard_switch::sys::tap::{open_tap, TapMode, TapPort};
use netyard_switch::sys::uring;
use netyard_switch::sys::vxlan::{VxlanConfig, VxlanPort};
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
    /// `batch` with one thread for both directions.
    One,
}

impl FloorIo {
    pub fn parse(s: &str) -> Result<FloorIo, String> {
        match s {
            "each" => Ok(FloorIo::Each),
            "batch" => Ok(FloorIo::Batch),
            "one" => Ok(FloorIo::One),
            other => Err(format!("unknown floor I/O {other:?} (batch, one, each)")),
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            FloorIo::Each => "each",
            FloorIo::Batch => "batch",
            FloorIo::One => "one",
        }
    }
}

/// The VXLAN floor's two designs (the vxlan bench's `--floor-vxlan`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VxlanFloor {
    /// A plain TAP (no offloads: the endpoint's kernel segments) and a UDP socket: each frame
    /// one datagram behind a fixed header, `sendmmsg`/`recvmmsg` a burst at a time.
    Plain,
    /// A TAP with netyard's offloads and netyard's own tunnel port (`VxlanPort`: GSO frames
    /// segmented into one `UDP_SEGMENT` send, `UDP_GRO` reads merged back into super-frames),
    /// without netyard's switch and runtime.
    Port,
}

impl VxlanFloor {
    pub fn parse(s: &str) -> Result<VxlanFloor, String> {
        match s {
            "plain" => Ok(VxlanFloor::Plain),
            "port" => Ok(VxlanFloor::Port),
            other => Err(format!("unknown VXLAN floor {other:?} (port, plain)")),
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            VxlanFloor::Plain => "plain",
            VxlanFloor::Port => "port",
        }
    }
}

/// The floor's hidden child modes: `Some(exit code)` when `args` asks for one.
///
/// - `--floor-tap COUNTER NETNS_A NETNS_B IO`: creates TAP `eth0` inside each namespace (given
///   as paths) as netyard's `--kind tap` does (persistent, `IFF_VNET_HDR`, its offloads).
/// - `--floor-veth COUNTER IF_A IF_B IO`: serves two interfaces of its own namespace (the host
///   ends of veth pairs) with AF_PACKET sockets as netyard's `--kind veth` does.
/// - `--floor-vxlan COUNTER NETNS LOCAL REMOTE KIND`: a TAP `eth0` inside NETNS and a tunnel
///   on LOCAL:4789 to REMOTE:4789, VNI 4242, as [`VxlanFloor`] KIND says. The plain kind's
///   frames leave behind a fixed VXLAN header and come back with it stripped (unchecked: the
///   floor does no more than it must). Bursts only.
pub fn child_mode(args: &[String]) -> Option<i32> {
    let mode = args.first()?.as_str();
    if !["--floor-tap", "--floor-veth", "--floor-vxlan"].contains(&mode) {
        return None;
    }
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let res = if mode == "--floor-vxlan" {
        frame_counter(Path::new(arg(1))).and_then(|count| {
            let (tap, tunnel) = match VxlanFloor::parse(arg(5))? {
                VxlanFloor::Port => (tap_in(arg(2))?, vxlan_port(arg(3), arg(4))?),
                VxlanFloor::Plain => (plain_tap_in(arg(2))?, udp_tunnel(arg(3), arg(4))?),
            };
            serve(tap, tunnel, FloorIo::Batch, count)
        })
    } else {
        FloorIo::parse(arg(4)).and_then(|io| {
            let count = frame_counter(Path::new(arg(1)))?;
            let open = if mode == "--floor-tap" {
                tap_in
            } else {
                packet_on
            };
            serve(open(arg(2))?, open(arg(3))?, io, count)
        })
    };
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
    /// A VXLAN tunnel's UDP socket, connected to the other host's floor.
    Udp(UdpSocket),
    /// netyard's own tunnel port (encapsulation, segmentation, GRO), without its switch.
    Vxlan(VxlanPort),
}

impl End {
    fn fd(&self) -> RawFd {
        match self {
            End::Tap(p) => p.raw_fd(),
            End::Packet(p) => p.raw_fd(),
            End::Udp(s) => s.as_raw_fd(),
            End::Vxlan(p) => p.raw_fd(),
        }
    }
}

/// The VXLAN header every floor datagram carries: the I flag and VNI 4242 (RFC 7348).
const VXLAN_HDR: [u8; 8] = [0x08, 0, 0, 0, 0x00, 0x10, 0x92, 0];
const VXLAN_PORT: u16 = 4789;

/// The VXLAN floor's tunnel: a non-blocking UDP socket on `local`:4789 connected to
/// `remote`:4789.
fn udp_tunnel(local: &str, remote: &str) -> Result<End, String> {
    let err = |e: io::Error| format!("UDP {local}:{VXLAN_PORT} -> {remote}: {e}");
    let sock = UdpSocket::bind((local, VXLAN_PORT))
        .and_then(|s| s.connect((remote, VXLAN_PORT)).map(|()| s))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(err)?;
    // netyard's socket buffers (4 MB each way): the default 208 KB drops bursts.
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        set_int(sock.as_raw_fd(), force)
            .or_else(|_| set_int(sock.as_raw_fd(), plain))
            .map_err(err)?;
    }
    Ok(End::Udp(sock))
}

/// setsockopt(SOL_SOCKET, `opt`, 4 MB).
fn set_int(fd: RawFd, opt: libc::c_int) -> io::Result<()> {
    let v: libc::c_int = 4 << 20;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a live `c_int` and `len` its size; the return value is checked.
    let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const v).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The VXLAN floor's tunnel as netyard's own port: `local`:4789, the other host the one peer,
/// VNI 4242, MTU 1450.
fn vxlan_port(local: &str, remote: &str) -> Result<End, String> {
    let err = |e: String| format!("tunnel {local} -> {remote}: {e}");
    let parse = |a: &str| a.parse::<Ipv4Addr>().map_err(|e| err(e.to_string()));
    let (local, remote) = (parse(local)?, parse(remote)?);
    let cfg = VxlanConfig {
        vni: 4242,
        local,
        port: VXLAN_PORT,
        mtu: 1450,
        epoch: Instant::now(),
    };
    let table = Arc::new(RemoteTable::new(300_000, 1024, vec![remote]));
    let port = VxlanPort::open(cfg, table).map_err(|e| err(e.to_string()))?;
    Ok(End::Vxlan(port))
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
    if io == FloorIo::One {
        pump_bursts(&[(&a, &b, Some(count)), (&b, &a, None)]);
    }
    let pump = move |from: &End, to: &End, count: Option<&AtomicU64>| -> ! {
        match io {
            FloorIo::Each => pump_each(from.fd(), to.fd(), count),
            _ => pump_bursts(&[(from, to, count)]),
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
    tap_with(netns, true)
}

/// A TAP without vnet header or offloads: the VXLAN floor's, whose frames go whole into one
/// datagram each (the endpoint's kernel segments and checksums before the TAP).
fn plain_tap_in(netns: &str) -> Result<End, String> {
    tap_with(netns, false)
}

fn tap_with(netns: &str, offloads: bool) -> Result<End, String> {
    let ns = File::open(netns).map_err(|e| format!("{netns}: {e}"))?;
    let (fd, name) = thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {netns}: {e}"))?;
            open_tap("eth0", offloads, TapMode::Persistent)
                .map_err(|e| format!("creating TAP eth0 in {netns}: {e}"))
        })
        .join()
        .map_err(|_| "the TAP thread panicked".to_string())?
    })?;
    let p = TapPort::from_fd(fd, name, offloads).map_err(|e| format!("{netns}: {e}"))?;
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
fn pump_bursts(dirs: &[Dir]) -> ! {
    let mut b = Bursts::new();
    let mut busy = BusyPoll::new(busy_poll::configured_max());
    let mut fds = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 2];
    for (p, (from, _, _)) in fds.iter_mut().zip(dirs) {
        p.fd = from.fd();
    }
    let fds = &mut fds[..dirs.len().min(2)];
    loop {
        let got = b.burst_all(dirs);
        if got.full {
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
                let got = b.burst_all(dirs);
                if got.frames > 0 {
                    found = true;
                    since = Instant::now();
                }
                if got.full || got.gso {
                    more = got.full;
                    break;
                }
            }
            busy.polled(found);
            if more {
                continue;
            }
        }
        let slept = Instant::now();
        wait_readable(fds);
        busy.woke_after(slept.elapsed());
    }
}

/// One direction a pump serves: from, to, and the counter of frames read from `from`.
type Dir<'a> = (&'a End, &'a End, Option<&'a AtomicU64>);

/// What one burst (of each direction) moved.
struct Burst {
    frames: usize,
    /// Whether a GSO super-frame was among them.
    gso: bool,
    /// Whether a direction's burst stopped at [`BATCH`] frames (more may be waiting).
    full: bool,
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

    /// Frame `i` without the VXLAN header it came with.
    fn inner(&self, i: usize) -> &[u8] {
        self.frame(i).get(VXLAN_HDR.len()..).unwrap_or(&[])
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
            (End::Tap(_), End::Udp(_)) => self.encap_burst(from.fd(), to.fd()),
            (End::Udp(_), End::Tap(_)) => self.decap_burst(from.fd(), to.fd()),
            (End::Tap(_), End::Vxlan(vx)) => self.relay(
                |b| read_frame(from.fd(), b),
                |f| {
                    // A frame the tunnel refuses is dropped, as netyard counts and drops it.
                    let _ = vx.send(f);
                },
                None,
            ),
            (End::Vxlan(vx), End::Tap(_)) => {
                let tap = to.fd();
                self.relay(|b| recv_tunnel(vx, b), |f| write_frame(tap, f), Some(tap))
            }
            _ => {
                let tap = to.fd();
                self.relay(
                    |b| read_frame(from.fd(), b),
                    |f| write_frame(tap, f),
                    Some(tap),
                )
            }
        };
        bump(count, frames as u64);
        // The vnet header's second byte is its GSO type (0: none).
        let gso = (0..frames).any(|i| self.frame(i).get(1).is_some_and(|&t| t != 0));
        Burst {
            frames,
            gso,
            full: frames == BATCH,
        }
    }

    /// A burst of each direction in turn.
    fn burst_all(&mut self, dirs: &[Dir]) -> Burst {
        let mut all = Burst {
            frames: 0,
            gso: false,
            full: false,
        };
        for &(from, to, count) in dirs {
            let b = self.burst(from, to, count);
            all.frames += b.frames;
            all.gso |= b.gso;
            all.full |= b.full;
        }
        all
    }

    /// A frame per `read` until there is none (at most [`BATCH`]), each passed to `write`;
    /// with `batch_to` (a TAP), the burst's first frames written at once and the rest (from
    /// netyard's batch floor on) with one io_uring submission, as netyard does.
    fn relay(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> Option<usize>,
        write: impl Fn(&[u8]),
        batch_to: Option<RawFd>,
    ) -> usize {
        let first = if batch_to.is_some() {
            batch_floor::FLOOR - 1
        } else {
            BATCH
        };
        let mut n = 0;
        while n < BATCH {
            let Some(len) = read(&mut self.bufs[n]) else {
                break; // the device is empty
            };
            self.lens[n] = len;
            if n < first {
                write(self.frame(n));
            }
            n += 1;
        }
        let held = first..n.max(first);
        if let (Some(to), true) = (batch_to, batch_floor::worth_batching(held.len())) {
            let mut results = [0i32; BATCH];
            let frames = self.frames(held.clone());
            if uring::write_batch(to, &frames[..held.len()], &mut results).is_some() {
                return n;
            }
        }
        for i in held {
            write(self.frame(i));
        }
        n
    }

    /// TAP to tunnel: a `read` per frame behind the VXLAN header, one `sendmmsg` of them all.
    fn encap_burst(&mut self, tap: RawFd, udp: RawFd) -> usize {
        let mut n = 0;
        while n < BATCH {
            let buf = &mut self.bufs[n];
            buf[..VXLAN_HDR.len()].copy_from_slice(&VXLAN_HDR);
            let body = &mut buf[VXLAN_HDR.len()..];
            // SAFETY: `body` is a live, exclusively borrowed buffer of `body.len()` bytes.
            let r = unsafe { libc::read(tap, body.as_mut_ptr().cast(), body.len()) };
            let Ok(len) = usize::try_from(r) else {
                break;
            };
            self.lens[n] = VXLAN_HDR.len() + len;
            n += 1;
        }
        let mut sent = 0;
        while sent < n {
            // A datagram the socket refused is dropped and the rest go on.
            sent += mmsg(udp, &mut self.bufs[sent..n], &mut self.lens[sent..n], false).max(1);
        }
        n
    }

    /// Tunnel to TAP: one `recvmmsg`, then each frame written without its VXLAN header (the
    /// TAP's writes batched as [`Bursts::tap_burst`] batches them).
    fn decap_burst(&mut self, udp: RawFd, tap: RawFd) -> usize {
        let n = mmsg(udp, &mut self.bufs, &mut self.lens, true);
        if batch_floor::worth_batching(n) {
            let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
            for (i, f) in frames.iter_mut().enumerate().take(n) {
                *f = self.inner(i);
            }
            let mut results = [0i32; BATCH];
            if uring::write_batch(tap, &frames[..n], &mut results).is_some() {
                return n;
            }
        }
        for i in 0..n {
            write_frame(tap, self.inner(i));
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

/// One `recvmmsg` into `bufs` (`recv`: lengths out in `lens`) or one `sendmmsg` of
/// `bufs[i][..lens[i]]`, on a connected socket, at most [`BATCH`] and `lens.len()`; how many
/// moved (0 after an error: EAGAIN, or a refused datagram).
fn mmsg(fd: RawFd, bufs: &mut [Vec<u8>], lens: &mut [usize], recv: bool) -> usize {
    let n = bufs.len().min(lens.len()).min(BATCH);
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: `mmsghdr` is plain old data (integers and raw pointers); all-zero is valid.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for ((h, iov), (b, len)) in hdrs
        .iter_mut()
        .zip(&mut iovs)
        .zip(bufs.iter_mut().zip(&*lens))
    {
        iov.iov_base = b.as_mut_ptr().cast();
        iov.iov_len = if recv { b.len() } else { *len };
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let (p, vlen) = (hdrs.as_mut_ptr(), n as libc::c_uint);
    // SAFETY: the first `n` headers each point to one iovec over a live buffer of `bufs`
    // (exclusively borrowed; the kernel writes within it on receive, reads on send); no names
    // or control buffers (the socket is connected); a null timeout is allowed.
    let r = unsafe {
        if recv {
            libc::recvmmsg(fd, p, vlen, libc::MSG_DONTWAIT, std::ptr::null_mut())
        } else {
            libc::sendmmsg(fd, p, vlen, 0)
        }
    };
    let moved = usize::try_from(r).unwrap_or(0);
    if recv {
        for (len, h) in lens.iter_mut().zip(&hdrs).take(moved) {
            *len = h.msg_len as usize;
        }
    }
    moved
}

/// One `read`; None when the device is empty (EAGAIN) or failed.
fn read_frame(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(r).ok()
}

/// The tunnel's next frame (vnet header first); None once nothing is waiting. A datagram
/// the port drops (not VXLAN, another VNI, a bad checksum) is skipped, a bounded number of
/// times, as netyard's driver skips it.
fn recv_tunnel(vx: &VxlanPort, buf: &mut [u8]) -> Option<usize> {
    for _ in 0..BATCH {
        match vx.recv(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(_) => {}
        }
    }
    None
}

/// One `write`; a frame the device refuses is dropped.
fn write_frame(to: RawFd, frame: &[u8]) {
    // SAFETY: `frame` is live and initialised for its length; the kernel only reads it.
    unsafe { libc::write(to, frame.as_ptr().cast(), frame.len()) };
}

/// Sleeps in `poll(2)` until one of `fds` is readable (or has an error pending).
fn wait_readable(fds: &mut [libc::pollfd]) {
    // SAFETY: `fds` are live `pollfd`s and the count is theirs; an interrupted poll returns.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
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
    start(lab, &h, exe, &args, counter)?;
    for (ns, addr) in &eps {
        ipv6_off(ns, "eth0")?;
        ip_addr_up(ns, "eth0", addr)?;
    }
    Ok(())
}

/// Sets up the VXLAN floor in `lab`: in each host namespace a floor between a TAP `eth0` in
/// its endpoint's namespace and a tunnel on the underlay (`local[i]`:4789) to the other
/// host's, as `kind` says; then the endpoints' `eth0` as netyard configures them, MTU `mtu`.
pub fn setup_vxlan(
    lab: &mut Lab,
    exe: &Path,
    kind: VxlanFloor,
    local: [&str; 2],
    mtu: &str,
) -> Result<(), String> {
    let eps = [
        (lab.a.clone(), lab.ip_a.clone()),
        (lab.b.clone(), lab.ip_b.clone()),
    ];
    for (i, (ns, _)) in eps.iter().enumerate() {
        let h = lab.hosts[i].clone();
        let counter = lab.dir.join(format!("floor{i}.count"));
        let args = [
            "--floor-vxlan".to_string(),
            counter.to_string_lossy().into_owned(),
            format!("/run/netns/{ns}"),
            local[i].to_string(),
            local[1 - i].to_string(),
            kind.arg().to_string(),
        ];
        start(lab, &h, exe, &args, counter)?;
    }
    for (ns, addr) in &eps {
        ipv6_off(ns, "eth0")?;
        ip(&["-n", ns, "link", "set", "eth0", "mtu", mtu])?;
        ip_addr_up(ns, "eth0", addr)?;
    }
    Ok(())
}

/// Starts a floor in `host` with `args` and waits until it is ready.
fn start(
    lab: &mut Lab,
    host: &str,
    exe: &Path,
    args: &[String],
    counter: PathBuf,
) -> Result<(), String> {
    let log = format!("floor{}.log", lab.floors.len());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let idx = lab.servers.spawn(host, None, exe, &args, &log)?;
    let pid = lab.servers.pid(idx).unwrap_or(0);
    lab.floors.push(FloorProc { idx, pid, counter });
    wait_ready(lab, idx, &log)
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

/// Waits until the floor (server `idx`, logging to `log`) says its ports are open, or has
/// exited (its log says why).
fn wait_ready(lab: &mut Lab, idx: usize, log: &str) -> Result<(), String> {
    let log = lab.servers.log_path(log);
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
