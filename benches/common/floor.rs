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
//!   io_uring submission; AF_PACKET: the port's receive ring (or one `recvmmsg` with
//!   `NETYARD_PACKET_RING=0`) and one `sendmmsg` per burst), then the
//!   same adaptive busy-poll (`netyard_switch::busy_poll`, yielding between polls) before
//!   sleeping in `poll(2)`. It pays a wake-up and a context switch per burst, not per frame.
//!
//! The frames read from A are counted in a shared mapping of a small file (one plain store per
//! frame, no syscall), which the bench reads to divide the floor's CPU time by.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netyard_switch::batch_floor;
use netyard_switch::busy_poll::{self, BusyPoll};
use netyard_switch::overlay::RemoteTable;
use netyard_switch::port::VNET_HDR_LEN as HDR;
use netyard_switch::sys::packet::{self, PacketPort, RecvMeta};
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
    /// `batch` with each veth port received through a TPACKET_V3 ring (veth only).
    Ring3,
    /// `batch` with each veth port received through a TPACKET_V2 ring (veth only).
    Ring2,
    /// Multi-queue TAPs, [`MQ_QUEUES`] queues each, a thread per queue serving both
    /// directions (TAP only).
    Mq,
}

impl FloorIo {
    pub fn parse(s: &str) -> Result<FloorIo, String> {
        match s {
            "each" => Ok(FloorIo::Each),
            "batch" => Ok(FloorIo::Batch),
            "one" => Ok(FloorIo::One),
            "ring" | "ring3" => Ok(FloorIo::Ring3),
            "ring2" => Ok(FloorIo::Ring2),
            "mq" => Ok(FloorIo::Mq),
            other => Err(format!(
                "unknown floor I/O {other:?} (batch, one, each, ring3, ring2, mq)"
            )),
        }
    }

    pub fn arg(self) -> &'static str {
        match self {
            FloorIo::Each => "each",
            FloorIo::Batch => "batch",
            FloorIo::One => "one",
            FloorIo::Ring3 => "ring3",
            FloorIo::Ring2 => "ring2",
            FloorIo::Mq => "mq",
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
        frame_counter(Path::new(arg(1))).and_then(|counts| {
            let count = &counts[0];
            let (tap, tunnel) = match VxlanFloor::parse(arg(5))? {
                VxlanFloor::Port => (tap_in(arg(2))?, vxlan_port(arg(3), arg(4))?),
                VxlanFloor::Plain => (plain_tap_in(arg(2))?, udp_tunnel(arg(3), arg(4))?),
            };
            serve(tap, tunnel, FloorIo::Batch, count)
        })
    } else {
        FloorIo::parse(arg(4)).and_then(|io| {
            let count = frame_counter(Path::new(arg(1)))?;
            let tap = mode == "--floor-tap";
            match io {
                FloorIo::Mq if tap => serve_mq(mq_tap_in(arg(2))?, mq_tap_in(arg(3))?, count),
                FloorIo::Ring3 | FloorIo::Ring2 if !tap => {
                    let v3 = io == FloorIo::Ring3;
                    let (a, b) = (ring_on(arg(2), v3)?, ring_on(arg(3), v3)?);
                    serve(a, b, FloorIo::Batch, &count[0])
                }
                FloorIo::Mq | FloorIo::Ring3 | FloorIo::Ring2 => {
                    Err(format!("--floor-io {} is not for {mode}", io.arg()))
                }
                _ if tap => serve(tap_in(arg(2))?, tap_in(arg(3))?, io, &count[0]),
                _ => {
                    // A blocking `read` of a ringed socket would wait for big frames only.
                    let ring = io != FloorIo::Each && packet::ring_configured();
                    let (a, b) = (packet_on(arg(2), ring)?, packet_on(arg(3), ring)?);
                    serve(a, b, io, &count[0])
                }
            }
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
    /// netyard's AF_PACKET port, received through a ring mapped on its socket (sends are the
    /// port's own `sendmmsg`).
    Ring(PacketPort, RxRing),
}

impl End {
    fn fd(&self) -> RawFd {
        match self {
            End::Tap(p) => p.raw_fd(),
            End::Packet(p) => p.raw_fd(),
            End::Udp(s) => s.as_raw_fd(),
            End::Vxlan(p) => p.raw_fd(),
            End::Ring(p, _) => p.raw_fd(),
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

/// An AF_PACKET socket on `ifname` (in the floor's namespace), as netyard's veth port, with
/// its receive ring or without.
fn packet_on(ifname: &str, ring: bool) -> Result<End, String> {
    let p = PacketPort::open_with(ifname, true, ring).map_err(|e| format!("{ifname}: {e}"))?;
    Ok(End::Packet(p))
}

/// Serves multi-queue TAPs: queue `i` of A and queue `i` of B on thread `i`, both directions
/// (the kernel steers a flow's frames to the queue that last wrote that flow's, so a flow and
/// its replies stay on one thread), counted in `count[i]`.
fn serve_mq(
    a: Vec<End>,
    b: Vec<End>,
    count: &[AtomicU64; COUNTERS],
) -> Result<std::convert::Infallible, String> {
    println!("{READY}");
    let queue =
        |i: usize| -> ! { pump_bursts(&[(&a[i], &b[i], Some(&count[i])), (&b[i], &a[i], None)]) };
    thread::scope(|s| {
        for i in 1..a.len().min(b.len()) {
            s.spawn(move || queue(i));
        }
        queue(0)
    })
}

/// An AF_PACKET port on `ifname`, as netyard's veth port, received through a TPACKET ring
/// (V3 or V2) mapped on its socket.
fn ring_on(ifname: &str, v3: bool) -> Result<End, String> {
    // Without the port's own ring, which would hold the socket's one ring.
    let p = PacketPort::open_with(ifname, true, false).map_err(|e| format!("{ifname}: {e}"))?;
    let ring = RxRing::new(p.raw_fd(), v3).map_err(|e| format!("{ifname}: RX ring: {e}"))?;
    Ok(End::Ring(p, ring))
}

/// Queues the multi-queue floor opens on each TAP: one per thread, one thread per CPU here.
pub const MQ_QUEUES: usize = 2;
/// `IFF_MULTI_QUEUE` from linux/if_tun.h, in the 16-bit `ifr_flags`.
const IFF_MULTI_QUEUE: u16 = 0x0100;
/// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, as netyard's TAP with offloads.
const IFF_TAP_VNET: u16 = 0x0002 | 0x1000 | 0x4000;

/// TAP `eth0` created inside the namespace at `netns` with `IFF_MULTI_QUEUE` and
/// [`MQ_QUEUES`] queues (one fd each), each with netyard's header size and offloads. The
/// device goes with its last queue's fd (the floor's exit) or its namespace.
fn mq_tap_in(netns: &str) -> Result<Vec<End>, String> {
    let ns = File::open(netns).map_err(|e| format!("{netns}: {e}"))?;
    let fds = thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {netns}: {e}"))?;
            (0..MQ_QUEUES)
                .map(|q| {
                    open_mq_queue("eth0").map_err(|e| format!("TAP eth0 queue {q} in {netns}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .join()
        .map_err(|_| "the TAP thread panicked".to_string())?
    })?;
    fds.into_iter()
        .map(|fd| {
            let p =
                TapPort::from_fd(fd, "eth0".into(), true).map_err(|e| format!("{netns}: {e}"))?;
            Ok(End::Tap(p))
        })
        .collect()
}

/// One queue of the multi-queue TAP `name` (created by the first), non-blocking.
fn open_mq_queue(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated static path; the return value is checked.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &c) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = c as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (IFF_TAP_VNET | IFF_MULTI_QUEUE) as libc::c_short;
    // SAFETY: `fd` is open and `req` a live, initialised `ifreq` that TUNSETIFF reads and
    // writes within its size; the return value is checked.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

// ---------------------------------------------------------------------------------------------
// The TPACKET receive ring.

/// `TPACKET_V2` and `TPACKET_V3` (enum tpacket_versions in linux/if_packet.h).
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
/// The ring's blocks: 16 of 1 MiB (V3 packs frames of any size into a block; V2 cuts each
/// block into [`V2_FRAME`] slots).
const RING_BLOCK: usize = 1 << 20;
const RING_BLOCKS: usize = 16;
/// A V2 slot: a 64 KB GSO super-frame with its vnet header behind the ring's own header
/// (its frame starts 76 bytes in), 15 to a block, 240 in all.
const V2_FRAME: usize = (RING_BLOCK / 15) & !15;
/// The V3 frame size the kernel checks the request with (frames are packed, not slotted).
const V3_FRAME: usize = 2048;
/// How long a V3 block that is not full waits before the kernel hands it over, in ms (the
/// least it takes); `NETYARD_FLOOR_RING_TOV_MS` overrides it.
const V3_TOV_MS: u32 = 1;

/// An AF_PACKET receive ring (`PACKET_RX_RING`) mapped into the floor: the kernel copies each
/// frame (vnet header before it) into a slot (V2) or packs it into a block (V3), which the
/// floor hands back by writing the slot's or block's status word. No receive syscall: the
/// floor reads the status words, and `poll(2)`s the socket when there is nothing. V2 wakes
/// the reader per frame; V3 per block, when it is full or its timer expires.
pub struct RxRing {
    /// The mapping's address (as an integer: the ring is shared with the kernel, not Rust).
    base: usize,
    size: usize,
    v3: bool,
    /// The next V2 slot or V3 block to look at (one reader: plain loads and stores).
    next: AtomicUsize,
}

impl RxRing {
    fn new(fd: RawFd, v3: bool) -> io::Result<RxRing> {
        let set = |name: libc::c_int, val: *const libc::c_void, len: usize| -> io::Result<()> {
            // SAFETY: `val` points to a live value of `len` bytes; the return value is checked.
            let r = unsafe {
                libc::setsockopt(fd, libc::SOL_PACKET, name, val, len as libc::socklen_t)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        let version = if v3 { TPACKET_V3 } else { TPACKET_V2 };
        set(
            libc::PACKET_VERSION,
            (&raw const version).cast(),
            std::mem::size_of::<libc::c_int>(),
        )?;
        let blocks = RING_BLOCKS as u32;
        if v3 {
            let tov = std::env::var("NETYARD_FLOOR_RING_TOV_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(V3_TOV_MS);
            let req = libc::tpacket_req3 {
                tp_block_size: RING_BLOCK as u32,
                tp_block_nr: blocks,
                tp_frame_size: V3_FRAME as u32,
                tp_frame_nr: (RING_BLOCK / V3_FRAME) as u32 * blocks,
                tp_retire_blk_tov: tov,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            set(
                libc::PACKET_RX_RING,
                (&raw const req).cast(),
                std::mem::size_of_val(&req),
            )?;
        } else {
            let req = libc::tpacket_req {
                tp_block_size: RING_BLOCK as u32,
                tp_block_nr: blocks,
                tp_frame_size: V2_FRAME as u32,
                tp_frame_nr: (RING_BLOCK / V2_FRAME) as u32 * blocks,
            };
            set(
                libc::PACKET_RX_RING,
                (&raw const req).cast(),
                std::mem::size_of_val(&req),
            )?;
        }
        let size = RING_BLOCK * RING_BLOCKS;
        // SAFETY: a fresh shared mapping of the socket's ring, whose size is what was asked;
        // the kernel chooses the address; the return value is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing {
            base: p as usize,
            size,
            v3,
            next: AtomicUsize::new(0),
        })
    }

    /// The status word at `off` in the ring, shared with the kernel.
    fn status(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.size && off % 4 == 0);
        // SAFETY: `off` is within the mapping (slot and block headers are 16-byte aligned),
        // which lives as long as `self`; the kernel and this one reader only ever access the
        // word atomically or under the status protocol.
        unsafe { &*((self.base + off) as *const AtomicU32) }
    }

    /// `len` bytes at `off` in the ring, bounds-checked against the mapping.
    fn bytes(&self, off: usize, len: usize) -> Option<&[u8]> {
        if off.checked_add(len)? > self.size {
            return None;
        }
        // SAFETY: within the mapping, which lives as long as `self`; the slot or block holding
        // it is the floor's (status USER) until handed back, after the borrow ends.
        Some(unsafe { std::slice::from_raw_parts((self.base + off) as *const u8, len) })
    }

    /// The little-endian-native u32 / u16 at `off`.
    fn u32_at(&self, off: usize) -> usize {
        self.bytes(off, 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u16_at(&self, off: usize) -> usize {
        self.bytes(off, 2)
            .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]) as usize)
    }

    /// A received frame, vnet header first, from the frame header at `hdr` whose snap
    /// length, full length and MAC offset are at `snap`, `len` and `mac`: None when the ring
    /// cut it short (never forwarded, as netyard drops a truncated frame).
    fn frame(&self, hdr: usize, snap: usize, len: usize, mac: usize) -> Option<&[u8]> {
        let (snap, mac) = (self.u32_at(hdr + snap), self.u16_at(hdr + mac));
        if snap != self.u32_at(hdr + len) || mac < HDR {
            return None;
        }
        self.bytes(hdr + mac - HDR, snap + HDR)
    }

    /// Moves what the ring holds to `to`, at most [`BATCH`] V2 slots or one V3 block, a
    /// `sendmmsg` per [`BATCH`] frames, then hands the slots or the block back. How many
    /// frames, and whether a GSO super-frame was among them.
    fn relay(&self, to: &PacketPort) -> (usize, bool) {
        let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
        let mut held = 0;
        let mut gso = false;
        let flush = |frames: &[&[u8]], gso: &mut bool| {
            *gso |= frames.iter().any(|f| f.get(1).is_some_and(|&t| t != 0));
            send_all(to, frames);
        };
        let next = self.next.load(Ordering::Relaxed);
        if self.v3 {
            // struct tpacket_block_desc: the block header's status, packet count and first
            // packet's offset at 8, 12 and 16.
            let blk = next * RING_BLOCK;
            if self.status(blk + 8).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                return (0, false);
            }
            let count = self.u32_at(blk + 12);
            let mut pkt = blk + self.u32_at(blk + 16);
            for _ in 0..count {
                // struct tpacket3_hdr: next offset at 0, snaplen 12, len 16, mac 24.
                if let Some(f) = self.frame(pkt, 12, 16, 24) {
                    frames[held] = f;
                    held += 1;
                    if held == BATCH {
                        flush(&frames, &mut gso);
                        held = 0;
                    }
                }
                let step = self.u32_at(pkt);
                if step == 0 || pkt + step >= blk + RING_BLOCK {
                    break;
                }
                pkt += step;
            }
            flush(&frames[..held], &mut gso);
            self.status(blk + 8)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next.store((next + 1) % RING_BLOCKS, Ordering::Relaxed);
            return (count, gso);
        }
        let per_block = RING_BLOCK / V2_FRAME;
        let slots = per_block * RING_BLOCKS;
        let at = |i: usize| (i / per_block) * RING_BLOCK + (i % per_block) * V2_FRAME;
        let mut n = 0;
        while n < BATCH {
            let hdr = at((next + n) % slots);
            if self.status(hdr).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            // struct tpacket2_hdr: status at 0, len 4, snaplen 8, mac 12.
            if let Some(f) = self.frame(hdr, 8, 4, 12) {
                frames[held] = f;
                held += 1;
            }
            n += 1;
        }
        flush(&frames[..held], &mut gso);
        for i in 0..n {
            self.status(at((next + i) % slots))
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.next.store((next + n) % slots, Ordering::Relaxed);
        (n, gso)
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of `size` bytes, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

/// Sends `frames` with the port's `sendmmsg`; a frame the peer refuses (ENOBUFS: its backlog
/// is full) is dropped, as in netyard.
fn send_all(to: &PacketPort, frames: &[&[u8]]) {
    let mut sent = 0;
    while sent < frames.len() {
        sent += to.send_batch(&frames[sent..]).unwrap_or(1).max(1);
    }
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
        if let (End::Ring(_, ring), End::Ring(to, _)) = (from, to) {
            let (frames, gso) = ring.relay(to);
            bump(count, frames as u64);
            return Burst {
                frames,
                gso,
                full: frames >= BATCH,
            };
        }
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

    /// AF_PACKET: one `recv_batch` (ring slots, or a `recvmmsg`) and one `sendmmsg` of what it
    /// got (netyard's own batch calls).
    fn packet_burst(&mut self, from: &PacketPort, to: &PacketPort) -> usize {
        let mut meta = [RecvMeta::default(); BATCH];
        let got = from.recv_batch(&mut self.bufs, &mut meta).unwrap_or(0);
        for (len, m) in self.lens.iter_mut().zip(&meta).take(got) {
            *len = m.len.min(FRAME_BUF);
        }
        let frames = self.frames(0..got);
        send_all(to, &frames[..got]);
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

/// One `read`; None when the device is empty (EAGAIN) or failed. A raw syscall, as netyard's
/// TAP port reads (glibc's `read` adds a cancellation point's two atomic updates).
fn read_frame(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
    let r = unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
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

/// One `write`; a frame the device refuses is dropped. A raw syscall, as netyard's TAP port
/// writes.
fn write_frame(to: RawFd, frame: &[u8]) {
    // SAFETY: `frame` is live and initialised for its length; the kernel only reads it.
    unsafe { libc::syscall(libc::SYS_write, to, frame.as_ptr(), frame.len()) };
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

/// Frame counters in the shared mapping: one per thread that reads from A (one writer each).
const COUNTERS: usize = 8;
const _: () = assert!(MQ_QUEUES <= COUNTERS);

/// Counters in a shared mapping of the file `path` (created), which the bench reads and sums.
fn frame_counter(path: &Path) -> Result<&'static [AtomicU64; COUNTERS], String> {
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
    // SAFETY: the mapping is page-aligned, zero-filled (a new file), 4096 bytes long and
    // never unmapped, so it holds valid `AtomicU64`s for the rest of the process.
    Ok(unsafe { &*p.cast::<[AtomicU64; COUNTERS]>() })
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
    /// Frames the floor has read from A so far (all its threads' counters).
    pub fn a_rx_frames(&self) -> Option<u64> {
        let bytes = fs::read(&self.counter).ok()?;
        let slots = bytes.get(..8 * COUNTERS)?.chunks_exact(8);
        slots
            .map(|c| c.try_into().ok().map(u64::from_ne_bytes))
            .sum()
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

/// Sets up the VXLAN floor in `lab`: in each host namespace of `which` (0: host 1 with A,
/// 1: host 2 with B) a floor between a TAP `eth0` in its endpoint's namespace and a tunnel on
/// the underlay (`local[i]`:4789) to the other host (a floor, or the kernel VTEP of the mixed
/// floor), as `kind` says; then those endpoints' `eth0` as netyard configures them, MTU `mtu`.
pub fn setup_vxlan(
    lab: &mut Lab,
    exe: &Path,
    kind: VxlanFloor,
    local: [&str; 2],
    mtu: &str,
    which: &[usize],
) -> Result<(), String> {
    let eps: Vec<_> = [
        (lab.a.clone(), lab.ip_a.clone()),
        (lab.b.clone(), lab.ip_b.clone()),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| which.contains(i))
    .collect();
    for (i, (ns, _)) in &eps {
        let i = *i;
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
    for (_, (ns, addr)) in &eps {
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
