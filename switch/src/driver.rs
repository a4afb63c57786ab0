//! The I/O driver: one tokio task per port moves frames; the bridge decides.
//!
//! A task waits until its port's fd is readable, then drains it until EAGAIN or until
//! [`BURST_BUDGET`] frames, whichever comes first (then yields so one busy port cannot starve
//! the others). Each frame is decided by [`Switch::decide`] and written straight to the
//! egress port's fd from this task: no channel hop, no per-frame allocation (the receive
//! buffer and the segmentation scratch buffer belong to the task), and the only shared state
//! touched per frame is the lock-free port snapshot, the ingress port's security policy (one
//! atomic load), the lock-free MAC table and relaxed atomic counters. What every frame of a
//! burst needs is taken once per burst ([`Burst`]: the MAC table's pin, the policy's guard),
//! and the burst's received frames and each batched send's frames are counted with one
//! atomic addition per counter ([`Tally`]), not one per frame.
//!
//! A GSO super-frame is written whole to an egress port whose caps accept it; otherwise it is
//! segmented in software ([`crate::gso::segment`]) and written as plain frames.
//!
//! After a burst of plain frames that emptied the device, the task may keep polling it for a
//! few tens of microseconds before it sleeps on readiness again ([`crate::busy_poll`]: the
//! budget is learned from how soon frames came after earlier sleeps, so an idle port never
//! polls); a burst with a GSO super-frame (a bulk TCP stream) never polls.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::batch_floor::{self, BatchFloor};
use crate::bridge::{SecurityGuard, Switch, SwitchPort, Verdict};
use crate::busy_poll::{self, BusyPoll, Contention, Ingress, ThreadYield};
use crate::counters::DropReason;
use crate::fdb::{Fdb, Pinned};
use crate::gso::{self, GsoError};
use crate::impair;
use crate::mld::Delivery;
use crate::port::{PortCaps, PortId, VNET_HDR_LEN};
use crate::sys::pagebuf::PageBuf;
use crate::sys::schedstat::ThreadSchedStat;
use crate::sys::{FrameTruncated, PortDrop};
use crate::wire::vnet::{GsoType, VnetHdr, VnetHdrRepr};

/// Readable, or an error pending on the socket: an AF_PACKET socket whose interface vanished
/// signals only EPOLLERR, which a plain readable wait would never see.
const READY_INTEREST: tokio::io::Interest =
    tokio::io::Interest::READABLE.add(tokio::io::Interest::ERROR);

/// Frames handled per wake-up before the task yields.
pub const BURST_BUDGET: usize = 64;
/// Receive buffer: the largest GSO super-frame (64 KiB of IP) plus link headers and slack.
pub const RX_BUF_LEN: usize = VNET_HDR_LEN + 65_536 + 256;

/// The port's fd for `AsyncFd`. Holding the `Arc` ties the fd's lifetime to the registration:
/// the port owns the `OwnedFd`, and it cannot close while this holder lives.
struct FdRef(Arc<SwitchPort>);

impl AsRawFd for FdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0.port.raw_fd()
    }
}

/// Starts the receive task of `port`. Must be called inside a tokio runtime. Abort the
/// returned handle (after removing the port from the switch) to stop it.
pub fn spawn_port(switch: Arc<Switch>, port: Arc<SwitchPort>) -> io::Result<JoinHandle<()>> {
    // SAFETY: FdRef holds an Arc to the port that owns the fd, so the fd stays open and
    // refers to the same file for the whole life of the AsyncFd; raw_fd() of a port is fixed.
    let afd = unsafe { AsyncFd::register_with_interest(FdRef(port.clone()), READY_INTEREST) }
        .map_err(|e| e.into_parts().1)?;
    Ok(tokio::spawn(port_loop(switch, port, afd)))
}

/// Starts the task that sweeps aged-out MACs out of the table (lookups already ignore them;
/// the sweep frees their memory and their place under the per-port cap) and reads the ports'
/// kernel drop counters on the same tick.
pub fn spawn_ager(switch: Arc<Switch>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_millis((switch.fdb.aging_ms() / 4).clamp(100, 10_000));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            switch.fdb.expire(switch.now_ms());
            // The kernel's 32-bit drop counters (PACKET_STATISTICS, a socket's drop count)
            // must be read before they can wrap twice; a few syscalls per port every tick.
            for port in switch.ports().iter() {
                if let Err(e) = port.sync_kernel_drops() {
                    tracing::debug!(port = %port.name, error = %e, "reading kernel drop counters failed");
                }
            }
        }
    })
}

/// How a drain of the port ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// The device is empty (EAGAIN) after `handled` frames, `gso` of them GSO super-frames;
    /// `to_fd`: some went to a port with a device (not only to the in-process gateway).
    Empty {
        handled: usize,
        gso: usize,
        to_fd: bool,
    },
    /// The burst budget ran out: more may wait.
    Budget,
    /// The device is gone: stop the task.
    Gone,
}

impl Drained {
    /// Empty, nothing read: what a poll that found nothing (or stopped) reports.
    const NOTHING: Drained = Drained::Empty {
        handled: 0,
        gso: 0,
        to_fd: false,
    };
}

/// The port task's receive buffer: its own mapping (pages become resident only as frames fill
/// them, sys::pagebuf says why), or the allocator's zeroed memory if the kernel refuses a
/// mapping (then a frame for an in-process port is copied, not handed over).
struct RxBuf {
    mapped: Option<PageBuf>,
    fallback: Vec<u8>,
}

impl RxBuf {
    fn new() -> RxBuf {
        let mapped = PageBuf::new(RX_BUF_LEN).ok();
        let mut fallback = Vec::new();
        if mapped.is_none() {
            fallback.resize(RX_BUF_LEN, 0u8);
        }
        RxBuf { mapped, fallback }
    }
}

/// Reads and forwards frames until the device is empty or [`BURST_BUDGET`] frames; the
/// small frames it forwards are written in batches ([`TxBatch`]), the last one before it
/// returns.
fn drain(
    switch: &Switch,
    port: &SwitchPort,
    rx: &mut RxBuf,
    scratch: &mut Vec<u8>,
    batch: &mut TxBatch,
) -> Drained {
    let ports = switch.ports();
    let drained = {
        let mut out = Out {
            scratch,
            batch: Some((&mut *batch, &ports)),
            rx: Some(Tally::default()),
            burst: Some(Burst {
                port,
                fdb: &switch.fdb,
                taken: None,
            }),
            to_fd: false,
        };
        let drained = drain_into(switch, &ports, port, rx, &mut out);
        if let Some(t) = out.rx {
            port.counters.rx_many(t.packets, t.bytes);
        }
        drained
    };
    batch.end_run(&ports);
    drained
}

fn drain_into(
    switch: &Switch,
    ports: &[Arc<SwitchPort>],
    port: &SwitchPort,
    rx: &mut RxBuf,
    out: &mut Out<'_>,
) -> Drained {
    // The MAC table's clock, read at the burst's first frame: most drains of a busy-poll find
    // the device empty and need no clock.
    let mut now = None;
    let (mut handled, mut gso) = (0, 0);
    while handled < BURST_BUDGET {
        let received = match rx.mapped.as_mut() {
            Some(m) => port.port.recv(m),
            None => port.port.recv(&mut rx.fallback),
        };
        match received {
            Ok(len) => {
                handled += 1;
                let now = *now.get_or_insert_with(|| switch.now_ms());
                let gso_type = match rx.mapped.as_ref() {
                    Some(m) => m.get(1),
                    None => rx.fallback.get(1),
                };
                if gso_type.is_some_and(|t| *t != 0) {
                    gso += 1;
                }
                match rx.mapped.as_mut() {
                    Some(m) => forward_buf(switch, ports, port, m, len, now, out),
                    None => {
                        if let Some(frame) = rx.fallback.get(..len) {
                            forward_out(switch, ports, port, frame, now, out);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Drained::Empty {
                    handled,
                    gso,
                    to_fd: out.to_fd,
                }
            }
            // The port moved data elsewhere (a shared VXLAN socket's other VNIs) and has
            // more to look at: part of the burst, nothing to count.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => handled += 1,
            Err(e) if is_fatal(&e) => {
                tracing::info!(port = %port.name, error = %e, "port device gone; port stopped");
                return Drained::Gone;
            }
            Err(e) => {
                handled += 1;
                if let Some(reason) = PortDrop::reason(&e) {
                    port.counters.drop(reason);
                } else if FrameTruncated::is(&e) || e.raw_os_error() == Some(libc::EMSGSIZE) {
                    port.counters.drop(DropReason::RxTruncated);
                } else {
                    port.counters.drop(DropReason::RxError);
                }
            }
        }
    }
    Drained::Budget
}

async fn port_loop(switch: Arc<Switch>, port: Arc<SwitchPort>, afd: AsyncFd<FdRef>) {
    let mut rx = RxBuf::new();
    let mut scratch: Vec<u8> = Vec::with_capacity(RX_BUF_LEN);
    let mut batch = TxBatch::default();
    let mut busy = BusyPoll::new(busy_poll::configured_max());
    let ingress = if port.port.is_tunnel() {
        Ingress::Tunnel
    } else {
        Ingress::Local
    };
    // When the task last went to sleep on readiness with the device empty.
    let mut slept: Option<Instant> = None;
    loop {
        // The fd's readiness, or frames the port was handed apart from it (`poll_queued`:
        // then there is no readiness to clear).
        let ready = {
            let mut fd_ready = pin!(afd.ready(READY_INTEREST));
            poll_fn(|cx| match fd_ready.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => port.port.poll_queued(cx).map(|()| None),
            })
            .await
        };
        let mut guard = match ready.transpose() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(port = %port.name, error = %e, "port readiness failed; port stopped");
                return;
            }
        };
        if let Some(at) = slept.take() {
            busy.woke_after(at.elapsed());
        }
        let drained = drain(&switch, &port, &mut rx, &mut scratch, &mut batch);
        forwarded(drained, ingress);
        if let (Drained::Empty { .. }, Some(g)) = (drained, guard.as_mut()) {
            g.clear_ready();
        }
        match drained {
            Drained::Gone => return,
            Drained::Budget => {
                tokio::task::yield_now().await;
                continue;
            }
            Drained::Empty {
                handled,
                gso,
                to_fd,
            } => {
                let burst = busy_poll::EmptiedBurst {
                    frames: handled,
                    super_frames: gso,
                    to_device: to_fd,
                };
                if busy_poll::starts_poll(burst, busy.budget()) {
                    match poll_for(
                        &switch,
                        &port,
                        ingress,
                        &mut rx,
                        &mut scratch,
                        &mut batch,
                        &mut busy,
                    )
                    .await
                    {
                        Drained::Gone => return,
                        // More is waiting: go on through readiness (it is set, or the read
                        // that found more will be retried at once).
                        Drained::Budget => continue,
                        Drained::Empty { .. } => {}
                    }
                }
            }
        }
        slept = (busy.max() > Duration::ZERO).then(Instant::now);
    }
}

/// Busy-polls the port for up to its budget after a burst that emptied it, forwarding what
/// arrives; while frames keep coming the budget starts again after each. Between polls the
/// task yields to the runtime's other tasks (the gateway a frame was handed to runs then) and,
/// when [`ThreadYield`] says so, the thread to other processes (the receiver of what was just
/// forwarded may be waiting for this CPU). No poll starts while the thread's CPUs are
/// oversubscribed ([`busy_poll::Contention`]): the task sleeps on readiness instead.
async fn poll_for(
    switch: &Switch,
    port: &SwitchPort,
    ingress: Ingress,
    rx: &mut RxBuf,
    scratch: &mut Vec<u8>,
    batch: &mut TxBatch,
    busy: &mut BusyPoll,
) -> Drained {
    let mut since = Instant::now();
    if cpus_oversubscribed(since) {
        return Drained::NOTHING;
    }
    let mut found = false;
    while since.elapsed() < busy.budget() {
        yield_to_tasks().await;
        if busy_poll::configured_yield() && yield_thread_now() {
            let _ = nix::sched::sched_yield();
        }
        let drained = drain(switch, port, rx, scratch, batch);
        forwarded(drained, ingress);
        match drained {
            Drained::Empty { handled: 0, .. } => {}
            // A bulk stream started: it needs no polling (see port_loop).
            Drained::Empty { gso, .. } if gso > 0 => {
                busy.polled(true);
                return Drained::NOTHING;
            }
            Drained::Empty { .. } => {
                found = true;
                since = Instant::now();
            }
            other => {
                busy.polled(true);
                return other;
            }
        }
    }
    busy.polled(found);
    Drained::NOTHING
}

/// Lets the runtime's other tasks run before this one goes on: the task wakes itself, which
/// puts it at the back of the run queue. Why not `tokio::task::yield_now`: that defers the
/// task until the runtime next polls its I/O driver, so on a lane whose port tasks all poll,
/// every round of polls cost an `epoll_wait` (and the timer's and tokio's metrics' clock
/// reads), and deferred tasks are woken last in, first out: a task that had just forwarded a
/// frame polled its own empty device again before the port the answer came back to, a read
/// and a `sched_yield` for nothing. Per frame of a pinned ping-pong between two TAPs that was
/// 7 syscalls instead of 4 (benches/README.md, "netyard's own round trip"). The runtime
/// still polls its driver after every `event_interval` tasks it ran, and whenever its run
/// queue is empty.
fn yield_to_tasks() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

thread_local! {
    /// Which of this thread's polls yields the thread ([`ThreadYield`]). Per thread because a
    /// lane is a current-thread runtime: its port tasks are exactly the tasks polling on it.
    static THREAD_YIELD: Cell<ThreadYield<tokio::task::Id>> = Cell::new(ThreadYield::default());
}

/// Tells this thread's [`ThreadYield`] that a drain of a port of kind `ingress` forwarded
/// frames (or did any work).
fn forwarded(drained: Drained, ingress: Ingress) {
    if !matches!(drained, Drained::Empty { handled: 0, .. }) {
        THREAD_YIELD.with(|t| {
            let mut y = t.get();
            y.forwarded(ingress);
            t.set(y);
        });
    }
}

/// Whether the calling task's next poll yields the thread first ([`ThreadYield`]). Outside a
/// task (never, in the driver) it always yields.
fn yield_thread_now() -> bool {
    let Some(task) = tokio::task::try_id() else {
        return true;
    };
    THREAD_YIELD.with(|t| {
        let mut y = t.get();
        let yields = y.yield_thread(task);
        t.set(y);
        yields
    })
}

/// A thread's judge of its CPU contention ([`cpus_oversubscribed`]).
enum ContentionGate {
    /// No port task has polled on this thread yet: the schedstat file is opened at the first
    /// poll.
    NotYetOpened,
    /// The thread's schedstat file could not be opened or read (said once, in the log): polling
    /// is never held back on this thread.
    Unreadable,
    /// The thread's schedstat file, and the judge of what it said.
    Open(ThreadSchedStat, Contention),
}

thread_local! {
    /// This thread's contention gate, shared by the port tasks of one thread (one lane).
    static CONTENTION: RefCell<ContentionGate> = const { RefCell::new(ContentionGate::NotYetOpened) };
}

/// Whether this thread's CPUs are oversubscribed at `now`, the counters re-read at most once
/// per [`busy_poll::CONTENTION_WINDOW`]: shared by the port tasks of one thread (one lane).
fn cpus_oversubscribed(now: Instant) -> bool {
    CONTENTION.with_borrow_mut(|gate| {
        if let ContentionGate::NotYetOpened = gate {
            *gate = match ThreadSchedStat::open() {
                Ok(f) => ContentionGate::Open(f, Contention::new(busy_poll::CONTENTION_WINDOW)),
                Err(e) => {
                    tracing::warn!(error = %e, "no scheduler counters: busy-polling cannot see an oversubscribed CPU");
                    ContentionGate::Unreadable
                }
            };
        }
        let ContentionGate::Open(file, judge) = gate else {
            return false;
        };
        if judge.due(now) {
            match file.read() {
                Ok(stat) => judge.sample(now, stat),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler counters unreadable: busy-polling cannot see an oversubscribed CPU");
                    *gate = ContentionGate::Unreadable;
                    return false;
                }
            }
        }
        judge.oversubscribed()
    })
}

/// Errors after which the device will never give frames again. A TAP whose namespace was
/// destroyed answers EBADFD; an AF_PACKET socket whose interface was unregistered reports
/// ENETDOWN once and then stays silent. (netyard owns the veth host end, so nobody sets it
/// down on purpose.)
fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF)
            | Some(libc::EBADFD)
            | Some(libc::ENODEV)
            | Some(libc::ENXIO)
            | Some(libc::ENETDOWN)
    )
}

/// Most frames a port task holds back for one batched write.
const TX_BATCH: usize = BURST_BUDGET;
/// Bytes of frames a port task holds back: a full batch of 1500-byte frames.
const TX_BATCH_BYTES: usize = 128 * 1024;

/// The small frames a port task forwarded in its current burst, held back (copied: a copy of
/// a small frame costs far less than the syscall it saves) to be written with one
/// [`Port::send_batch`](crate::port::Port::send_batch) per egress port when the burst ends.
/// Why: each write to a TAP or a veth wakes the frame's receiver, which on a small machine
/// takes the CPU from the daemon at the syscall's return, so a write per frame cost a context
/// switch per frame; a batch costs one per burst. GSO super-frames are written at once (a bulk
/// stream queues far ahead), after what is held, so frames stay in order. Only runs that reach
/// [`batch_floor::FLOOR`] frames are held ([`BatchFloor`]): shorter ones cost more batched.
#[derive(Default)]
pub(crate) struct TxBatch {
    /// The held frames back to back; its capacity is taken at the first frame held, so a
    /// port that never forwards holds nothing.
    bytes: Vec<u8>,
    /// Each held frame: its egress port, and where it lies in `bytes`.
    frames: Vec<(PortId, usize, usize)>,
    /// Which frames of the current run are held.
    floor: BatchFloor,
}

impl TxBatch {
    fn fits(&self, len: usize) -> bool {
        self.frames.len() < TX_BATCH && self.bytes.len() + len <= TX_BATCH_BYTES
    }

    fn push(&mut self, egress: PortId, frame: &[u8]) {
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(TX_BATCH_BYTES);
            self.frames.reserve_exact(TX_BATCH);
        }
        self.frames.push((egress, self.bytes.len(), frame.len()));
        self.bytes.extend_from_slice(frame);
    }

    /// The current run of plain frames ends (the burst ended, or a frame is written at once
    /// after them): writes what is held.
    fn end_run(&mut self, ports: &[Arc<SwitchPort>]) {
        if !self.frames.is_empty() {
            self.flush(ports);
        }
        self.floor.run_ended();
    }

    /// Writes what is held, each egress port's run of frames with one batched send, in order.
    fn flush(&mut self, ports: &[Arc<SwitchPort>]) {
        let mut i = 0;
        while let Some(&(id, _, _)) = self.frames.get(i) {
            let run = self.frames[i..]
                .iter()
                .take_while(|(e, _, _)| *e == id)
                .count();
            if let Some(egress) = Switch::port_in(ports, id) {
                let mut refs: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
                for (r, &(_, at, len)) in refs.iter_mut().zip(&self.frames[i..i + run]) {
                    *r = self.bytes.get(at..at + len).unwrap_or_default();
                }
                send_run(egress, &refs[..run]);
            }
            i += run;
        }
        self.frames.clear();
        self.bytes.clear();
    }
}

/// Writes `frames` to `egress` with as few batched sends as it takes, counting each; a run
/// below the floor one write per frame (a batched send of a few costs more).
fn send_run(egress: &SwitchPort, frames: &[&[u8]]) {
    if !batch_floor::worth_batching(frames.len()) {
        for f in frames {
            send_one(egress, f);
        }
        return;
    }
    let mut k = 0;
    while k < frames.len() {
        let rest = &frames[k..];
        // Which of `rest` failed (a batch is at most TX_BATCH = 64 frames).
        let mut failed: u64 = 0;
        let done = egress
            .port
            .send_batch(rest, &mut |i, e| {
                failed |= 1u64
                    .checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
                    .unwrap_or(0);
                egress.counters.drop(tx_reason(&e));
            })
            .clamp(1, rest.len());
        let mut sent = Tally::default();
        for (i, f) in rest.iter().take(done).enumerate() {
            if failed & (1u64 << i) == 0 {
                sent.add(f.len().saturating_sub(VNET_HDR_LEN));
            }
        }
        egress.counters.tx_many(sent.packets, sent.bytes);
        k += done;
    }
}

/// Where a port task's writes go: into its burst's [`TxBatch`] when it has one (the driver's
/// own reads), else straight to the device (the impairment's held frames, tests).
pub(crate) struct Out<'a> {
    scratch: &'a mut Vec<u8>,
    batch: Option<(&'a mut TxBatch, &'a [Arc<SwitchPort>])>,
    /// The burst's received frames, counted on the ingress port when it ends (the driver's
    /// own reads; `None`: each frame is counted as it comes).
    rx: Option<Tally>,
    /// What the driver's own burst holds for all its frames (`None` elsewhere).
    burst: Option<Burst<'a>>,
    /// A frame went to a port with a device (not only to in-process ports: the gateway).
    to_fd: bool,
}

/// What a port task takes once per burst instead of once per frame: pinning the MAC table
/// (an atomic swap when the pin ends) and a guard on the ingress port's security policy (a
/// new policy applies from the next burst).
pub(crate) struct Burst<'a> {
    /// The ingress port the burst reads.
    port: &'a SwitchPort,
    fdb: &'a Fdb,
    /// Taken at the burst's first frame: an empty drain (most of a busy-poll's) takes nothing.
    taken: Option<(Pinned<'a>, SecurityGuard)>,
}

/// Frames and their bytes, counted locally and added to a port's counters at once: two
/// atomic additions per burst or batched send instead of two per frame.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    packets: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

impl<'a> Out<'a> {
    fn direct(scratch: &'a mut Vec<u8>) -> Out<'a> {
        Out {
            scratch,
            batch: None,
            rx: None,
            burst: None,
            to_fd: false,
        }
    }

    /// Writes what is held, before a frame that is written at once (order is kept): the run
    /// of plain frames ends.
    fn flush(&mut self) {
        if let Some((batch, ports)) = self.batch.as_mut() {
            batch.end_run(ports);
        }
    }

    /// Holds `frame` for `egress` if there is a batch and the port writes batches (making
    /// room first); false if the caller must write it now.
    fn hold(&mut self, egress: &SwitchPort, frame: &[u8]) -> bool {
        let Some((batch, ports)) = self.batch.as_mut() else {
            return false;
        };
        if !egress.port.batches() || !batch.floor.next_frame() {
            return false;
        }
        if !batch.fits(frame.len()) {
            batch.flush(ports);
            if !batch.fits(frame.len()) {
                return false;
            }
        }
        batch.push(egress.id, frame);
        true
    }
}

/// Where a frame given to [`forward`] enters the switch, so that it passes its ingress
/// link's impairment once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Fresh from the ingress port (read from its device, or sent by an in-process port: the
    /// gateway, a router, an uplink): counted, captured, impaired, then decided.
    Port,
    /// Released by the ingress link's impairment, which held it ([`crate::impair::link`]):
    /// counted, captured and impaired already; only decided and written.
    Impaired,
}

/// Decides one frame and writes it to its egress port(s). Inlined so that a caller's
/// constant `entry` costs no branch per frame.
#[inline]
pub fn forward(
    switch: &Switch,
    ports: &[Arc<SwitchPort>],
    ingress: &SwitchPort,
    frame: &[u8],
    now: u64,
    entry: Entry,
    scratch: &mut Vec<u8>,
) {
    let out = &mut Out::direct(scratch);
    match entry {
        Entry::Port => forward_out(switch, ports, ingress, frame, now, out),
        Entry::Impaired => decide_and_act(switch, ports, ingress, frame, now, out),
    }
}

fn forward_out(
    switch: &Switch,
    ports: &[Arc<SwitchPort>],
    ingress: &SwitchPort,
    frame: &[u8],
    now: u64,
    out: &mut Out<'_>,
) {
    received(ingress, frame, out);
    // The link's impairment of what the port sends acts before the switch sees the frame, as
    // netem on the sender's own interface would; a held frame is decided when it leaves.
    if ingress.link.hooks_out()
        && impair::link::on_out(ingress, frame, &mut |f| {
            decide_and_act(switch, ports, ingress, f, now, out)
        })
    {
        return;
    }
    decide_and_act(switch, ports, ingress, frame, now, out);
}

fn decide_and_act(
    switch: &Switch,
    ports: &[Arc<SwitchPort>],
    ingress: &SwitchPort,
    frame: &[u8],
    now: u64,
    out: &mut Out<'_>,
) {
    let verdict = decide(switch, ingress, frame, now, out);
    act(switch, ports, ingress, frame, verdict, out);
}

/// [`forward`] for a frame in a buffer the caller owns (`buf[..len]`, the port task's
/// receive buffer): a single egress port that takes buffers ([`Port::hand_off`], the
/// gateway's in-process port) gets the buffer itself, and `buf` is replaced by an empty one.
fn forward_buf(
    switch: &Switch,
    ports: &[Arc<SwitchPort>],
    ingress: &SwitchPort,
    buf: &mut PageBuf,
    len: usize,
    now: u64,
    out: &mut Out<'_>,
) {
    let Some(frame) = buf.get(..len) else {
        return;
    };
    if ingress.link.hooks_out() {
        // An impaired or cut link: the borrowed path, which holds a copy if it must.
        forward_out(switch, ports, ingress, frame, now, out);
        return;
    }
    received(ingress, frame, out);
    match decide(switch, ingress, frame, now, out) {
        Verdict::Forward(id) => {
            count_gso(ingress, frame);
            if let Some(egress) = Switch::port_in(ports, id) {
                transmit_buf(egress, buf, len, out);
            }
        }
        verdict => act(switch, ports, ingress, frame, verdict, out),
    }
}

/// Counts (into the burst's tally, if `out` keeps one) and captures a frame the port gave.
fn received(ingress: &SwitchPort, frame: &[u8], out: &mut Out<'_>) {
    let bytes = frame.len().saturating_sub(VNET_HDR_LEN);
    match out.rx.as_mut() {
        Some(tally) => tally.add(bytes),
        None => ingress.counters.rx(bytes),
    }
    ingress
        .capture
        .rx(frame.get(VNET_HDR_LEN..).unwrap_or_default());
}

/// The bridge's verdict on one frame, with the ingress port's learning counters.
fn decide(
    switch: &Switch,
    ingress: &SwitchPort,
    frame: &[u8],
    now: u64,
    out: &mut Out<'_>,
) -> Verdict {
    let (verdict, learned) = match out.burst.as_mut().filter(|b| b.port.id == ingress.id) {
        Some(b) => {
            let (fdb, security) = b
                .taken
                .get_or_insert_with(|| (b.fdb.pinned(), b.port.security_guard()));
            switch.decide_in(fdb, ingress.id, security.as_deref(), frame, now)
        }
        None => {
            // Held for the decision only: a guard is cheap, but one per thread at a time is
            // the fast path.
            let security = ingress.security_guard();
            switch.decide(ingress.id, security.as_deref(), frame, now)
        }
    };
    if let Some(outcome) = learned {
        ingress.counters.learn(outcome);
    }
    verdict
}

/// Carries out a verdict on a borrowed frame.
fn act(
    switch: &Switch,
    ports: &[Arc<SwitchPort>],
    ingress: &SwitchPort,
    frame: &[u8],
    verdict: Verdict,
    out: &mut Out<'_>,
) {
    match verdict {
        Verdict::Drop(reason) => ingress.counters.drop(reason),
        Verdict::Forward(id) => {
            count_gso(ingress, frame);
            if let Some(egress) = Switch::port_in(ports, id) {
                transmit_out(egress, frame, out);
            }
        }
        Verdict::Flood => {
            count_gso(ingress, frame);
            ingress
                .counters
                .flooded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for egress in ports.iter().filter(|p| p.id != ingress.id) {
                transmit_out(egress, frame, out);
            }
        }
        Verdict::FloodOpen => {
            count_gso(ingress, frame);
            ingress
                .counters
                .flooded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for egress in ports
                .iter()
                .filter(|p| p.id != ingress.id && !p.is_isolated())
            {
                transmit_out(egress, frame, out);
            }
        }
        Verdict::MldReport => snooped(ports, ingress, switch.mld_report_delivery(), frame, out),
        Verdict::Ipv6Group(group) => {
            snooped(ports, ingress, switch.mld_delivery(group), frame, out);
        }
    }
}

/// Sends an IPv6 multicast frame where MLD snooping says ([`crate::mld`]): everywhere, or to
/// the multicast router ports and the listed ones; an isolated ingress port's frames reach
/// only ports that are not isolated, as its floods do.
fn snooped(
    ports: &[Arc<SwitchPort>],
    ingress: &SwitchPort,
    delivery: Delivery,
    frame: &[u8],
    out: &mut Out<'_>,
) {
    count_gso(ingress, frame);
    let isolated = ingress.is_isolated();
    let open = |p: &&Arc<SwitchPort>| p.id != ingress.id && !(isolated && p.is_isolated());
    match delivery {
        Delivery::Flood => {
            ingress
                .counters
                .flooded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for egress in ports.iter().filter(open) {
                transmit_out(egress, frame, out);
            }
        }
        Delivery::RoutersAnd { .. } => {
            for egress in ports
                .iter()
                .filter(open)
                .filter(|p| p.is_mld_router() || delivery.reaches(p.id))
            {
                transmit_out(egress, frame, out);
            }
        }
    }
}

/// Counts a received GSO super-frame (the vnet header's gso_type byte is non-zero).
fn count_gso(ingress: &SwitchPort, frame: &[u8]) {
    if frame.get(1).is_some_and(|t| *t != 0) {
        ingress
            .counters
            .rx_gso
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether `egress` cannot take the offload `hdr` asks for (the switch segments in software).
fn needs_software(caps: PortCaps, hdr: &VnetHdrRepr) -> bool {
    match hdr.gso_type {
        GsoType::None => hdr.needs_csum && !caps.vnet_hdr,
        GsoType::TcpV4 | GsoType::TcpV6 => !caps.gso_tcp,
        GsoType::UdpL4 => !caps.gso_udp,
        GsoType::Unknown(_) => true,
    }
}

/// [`transmit`] of `buf[..len]`, handing the buffer itself to a port that takes buffers
/// when the frame needs no software segmentation.
fn transmit_buf(egress: &SwitchPort, buf: &mut PageBuf, len: usize, out: &mut Out<'_>) {
    let Some(frame) = buf.get(..len) else {
        return;
    };
    out.to_fd |= egress.has_device;
    if egress.link.hooks_in() {
        transmit_out(egress, frame, out);
        return;
    }
    let whole = VnetHdr::new_checked(frame)
        .ok()
        .and_then(|v| VnetHdrRepr::parse(&v).ok())
        .is_some_and(|hdr| !needs_software(egress.port.caps(), &hdr));
    if whole {
        // (Nothing is held for a port that takes buffers: it does not batch.)
        egress
            .capture
            .tx(frame.get(VNET_HDR_LEN..).unwrap_or_default());
        match egress.port.hand_off(buf, len) {
            Ok(true) => {
                egress.counters.tx(len.saturating_sub(VNET_HDR_LEN));
                return;
            }
            Ok(false) => {}
            Err(e) => {
                egress.counters.drop(tx_reason(&e));
                return;
            }
        }
        // Not taken: the ordinary write (held with the others), without counting the capture
        // twice.
        if let Some(frame) = buf.get(..len) {
            send_now_or_hold(egress, frame, out);
        }
        return;
    }
    transmit_out(egress, frame, out);
}

/// Writes `frame` (vnet header + Ethernet) to `egress`, segmenting in software when the
/// egress cannot take the offload the frame carries; the egress link's impairment of what it
/// receives first.
pub fn transmit(egress: &SwitchPort, frame: &[u8], scratch: &mut Vec<u8>) {
    transmit_out(egress, frame, &mut Out::direct(scratch));
}

fn transmit_out(egress: &SwitchPort, frame: &[u8], out: &mut Out<'_>) {
    if egress.link.hooks_in()
        && impair::link::on_in(egress, frame, &mut |f| transmit_now_out(egress, f, out))
    {
        return;
    }
    transmit_now_out(egress, frame, out);
}

/// [`transmit`] after the egress link's impairment.
pub(crate) fn transmit_now(egress: &SwitchPort, frame: &[u8], scratch: &mut Vec<u8>) {
    transmit_now_out(egress, frame, &mut Out::direct(scratch));
}

fn transmit_now_out(egress: &SwitchPort, frame: &[u8], out: &mut Out<'_>) {
    let caps = egress.port.caps();
    let Ok(view) = VnetHdr::new_checked(frame) else {
        egress.counters.drop(DropReason::BadGso);
        return;
    };
    let Ok(hdr) = VnetHdrRepr::parse(&view) else {
        egress.counters.drop(DropReason::BadGso);
        return;
    };
    let software = needs_software(caps, &hdr);
    out.to_fd |= egress.has_device;
    egress.capture.tx(&frame[VNET_HDR_LEN..]);
    if !software {
        if hdr.gso_type == GsoType::None {
            send_now_or_hold(egress, frame, out);
            return;
        }
        out.flush();
        send_one(egress, frame);
        return;
    }
    out.flush();
    egress
        .counters
        .tx_segmented
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let eth = &frame[VNET_HDR_LEN..];
    // Segments come out with a zero vnet header in front, the form every port's send takes.
    let mut emit = |seg: &[u8]| -> io::Result<()> {
        egress.port.send(seg)?;
        egress.counters.tx(seg.len() - VNET_HDR_LEN);
        Ok(())
    };
    match gso::segment_with_vnet_hdr(&hdr, eth, None, out.scratch, &mut emit) {
        Ok(_) => {}
        Err(GsoError::Emit(e)) => egress.counters.drop(tx_reason(&e)),
        Err(_) => egress.counters.drop(DropReason::BadGso),
    }
}

/// Holds a plain frame for the burst's batched write, or writes it now when there is no batch.
fn send_now_or_hold(egress: &SwitchPort, frame: &[u8], out: &mut Out<'_>) {
    if !out.hold(egress, frame) {
        send_one(egress, frame);
    }
}

/// Writes one frame to `egress` now, counting it.
fn send_one(egress: &SwitchPort, frame: &[u8]) {
    match egress.port.send(frame) {
        Ok(()) => egress.counters.tx(frame.len().saturating_sub(VNET_HDR_LEN)),
        Err(e) => egress.counters.drop(tx_reason(&e)),
    }
}

fn tx_reason(e: &io::Error) -> DropReason {
    if let Some(reason) = PortDrop::reason(e) {
        return reason;
    }
    // A datagram that would need fragmenting on a path that must not fragment (a tunnel).
    if e.raw_os_error() == Some(libc::EMSGSIZE) {
        return DropReason::OverMtu;
    }
    if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) {
        DropReason::TxQueueFull
    } else {
        DropReason::TxError
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn current_thread(event_interval: u32) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .event_interval(event_interval)
            .build()
            .expect("a current-thread runtime")
    }

    async fn take_turns(order: Arc<Mutex<Vec<u8>>>, me: u8, turns: usize) {
        for _ in 0..turns {
            order.lock().expect("not poisoned").push(me);
            yield_to_tasks().await;
        }
    }

    #[test]
    fn polling_tasks_take_turns_in_the_order_they_yielded() {
        // tokio's yield_now wakes deferred tasks last in, first out (1 2 2 1 1 2): a task that
        // just forwarded would poll its own empty device again before the other's.
        let order = Arc::new(Mutex::new(Vec::new()));
        current_thread(61).block_on(async {
            let a = tokio::spawn(take_turns(order.clone(), 1, 3));
            let b = tokio::spawn(take_turns(order.clone(), 2, 3));
            let _ = (a.await, b.await);
        });
        assert_eq!(*order.lock().expect("not poisoned"), [1, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn a_task_yielding_to_others_does_not_keep_the_runtime_from_its_io() {
        // The run queue never empties while the poller yields: the datagram is seen only
        // because the runtime polls its I/O driver every `event_interval` ticks.
        let rt = current_thread(16);
        let got = rt.block_on(async {
            let rx = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind on loopback");
            let to = rx.local_addr().expect("its address");
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = done.clone();
            let poller = tokio::spawn(async move {
                for _ in 0..1_000_000 {
                    if flag.load(std::sync::atomic::Ordering::Relaxed) {
                        return true;
                    }
                    yield_to_tasks().await;
                }
                false
            });
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 16];
                let n = rx.recv(&mut buf).await.expect("recv");
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                n
            });
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|tx| tx.send_to(b"ping", to))
                .expect("send on loopback");
            (poller.await.expect("poller"), reader.await.expect("reader"))
        });
        assert_eq!(
            got,
            (true, 4),
            "the reader got the datagram while the poller polled"
        );
    }
}
