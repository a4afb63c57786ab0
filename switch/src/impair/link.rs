//! The impairment of a running port: the hooks the driver calls, the queue of held frames and
//! the one task per impaired direction that releases them.
//!
//! Cost on a port without impairment: the driver reads [`LinkSlot::flags`] (one relaxed load)
//! per frame and direction, nothing more. An impaired direction holds a [`Model`] and a
//! binary heap of held frames ordered by send time under one mutex; a held frame is copied
//! into a buffer taken from the direction's pool (returned after the send), so a link in
//! steady state allocates nothing. One tokio task per impaired direction sleeps until the
//! earliest send time (or a new earlier frame wakes it) and sends what is due: never a task or
//! a timer per frame.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::config::{Impairment, LinkSpec};
use super::frame;
use super::model::{Dropped, Fate, Model, Offer};
use crate::bridge::{Switch, SwitchPort};
use crate::counters::DropReason;
use crate::gso;
use crate::wire::vnet::VnetHdrRepr;

/// [`LinkSlot::flags`]: carrier off.
const DOWN: u8 = 1;
/// An impairment on the frames the port sends.
const OUT: u8 = 2;
/// An impairment on the frames the switch sends to the port.
const IN: u8 = 4;

/// Buffers a direction keeps for reuse beyond those in flight: enough for a burst, bounded so
/// a link that once held 64 KiB super-frames does not keep hundreds of them.
const POOL_MAX: usize = 256;
/// Frames released per wake-up before the task yields to the runtime.
const RELEASE_BUDGET: usize = 64;

/// Which way frames cross the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The port sends into the switch (an endpoint's transmit).
    Out,
    /// The switch sends to the port.
    In,
}

/// The counters of one direction (kept across setting changes, as the port's are).
#[derive(Debug, Default)]
pub struct WayCounters {
    pub delayed: AtomicU64,
    pub loss: AtomicU64,
    pub limit: AtomicU64,
    pub down: AtomicU64,
    pub flushed: AtomicU64,
    pub duplicated: AtomicU64,
    pub corrupted: AtomicU64,
    pub reordered: AtomicU64,
    /// GSO super-frames cut into their packets (a per-packet fault is set).
    pub segmented: AtomicU64,
    /// Packets held now.
    pub held: AtomicU64,
}

/// A copy of [`WayCounters`] for the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WayStats {
    pub delayed: u64,
    pub loss: u64,
    pub limit: u64,
    pub down: u64,
    pub flushed: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    pub segmented: u64,
    pub held: u64,
}

impl WayCounters {
    fn snapshot(&self) -> WayStats {
        WayStats {
            delayed: self.delayed.load(Relaxed),
            loss: self.loss.load(Relaxed),
            limit: self.limit.load(Relaxed),
            down: self.down.load(Relaxed),
            flushed: self.flushed.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            corrupted: self.corrupted.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            segmented: self.segmented.load(Relaxed),
            held: self.held.load(Relaxed),
        }
    }
}

/// What `link show` reports of a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    pub spec: LinkSpec,
    pub out: WayStats,
    pub inbound: WayStats,
}

/// A port's link: carrier, impairments, counters. Lives in [`SwitchPort`].
#[derive(Default)]
pub struct LinkSlot {
    /// `DOWN | OUT | IN`: all an unimpaired port's frames read.
    flags: AtomicU8,
    out: ArcSwapOption<Held>,
    inbound: ArcSwapOption<Held>,
    out_counters: WayCounters,
    in_counters: WayCounters,
    /// What is applied; the mutex serialises changes.
    spec: Mutex<LinkSpec>,
}

impl std::fmt::Debug for LinkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSlot")
            .field("flags", &self.flags.load(Relaxed))
            .finish()
    }
}

impl Drop for LinkSlot {
    fn drop(&mut self) {
        for h in [self.out.load_full(), self.inbound.load_full()]
            .into_iter()
            .flatten()
        {
            h.stop();
        }
    }
}

impl LinkSlot {
    /// Does a frame the port sends need the slow path? One relaxed load.
    #[inline]
    pub(crate) fn hooks_out(&self) -> bool {
        self.flags.load(Relaxed) & (DOWN | OUT) != 0
    }

    /// Does a frame to the port need the slow path? One relaxed load.
    #[inline]
    pub(crate) fn hooks_in(&self) -> bool {
        self.flags.load(Relaxed) & (DOWN | IN) != 0
    }

    fn held(&self, way: Way) -> &ArcSwapOption<Held> {
        match way {
            Way::Out => &self.out,
            Way::In => &self.inbound,
        }
    }

    fn counters(&self, way: Way) -> &WayCounters {
        match way {
            Way::Out => &self.out_counters,
            Way::In => &self.in_counters,
        }
    }

    pub fn is_down(&self) -> bool {
        self.flags.load(Relaxed) & DOWN != 0
    }

    /// The applied settings and the counters.
    pub fn state(&self) -> LinkState {
        LinkState {
            spec: self
                .spec
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            out: self.out_counters.snapshot(),
            inbound: self.in_counters.snapshot(),
        }
    }
}

/// Why settings could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Invalid(#[from] super::config::FieldError),
    #[error("impairing a link needs a tokio runtime")]
    NoRuntime,
}

/// Applies `spec` to `port` of `switch` at once, while the port forwards. A direction whose
/// settings did not change keeps its state (queue, random sequence); one that changed starts
/// afresh, and the frames its old settings held are dropped (counted `impair_flushed`).
pub fn apply(
    switch: &Arc<Switch>,
    port: &Arc<SwitchPort>,
    spec: &LinkSpec,
) -> Result<(), LinkError> {
    spec.validate()?;
    let rt = tokio::runtime::Handle::try_current().map_err(|_| LinkError::NoRuntime)?;
    let slot = &port.link;
    let mut cur = slot.spec.lock().unwrap_or_else(PoisonError::into_inner);
    for (way, want, have, bit) in [
        (Way::Out, &spec.out, &cur.out, OUT),
        (Way::In, &spec.inbound, &cur.inbound, IN),
    ] {
        let want = want.as_ref().filter(|i| !i.is_noop());
        let have = have.as_ref().filter(|i| !i.is_noop());
        if want == have {
            continue;
        }
        // Off first, so no frame reads the flag and finds no queue; on last, for the same
        // reason the other way round.
        slot.flags.fetch_and(!bit, Relaxed);
        let new = want.map(|cfg| Held::start(&rt, switch, port, way, cfg.clone()));
        if let Some(old) = slot.held(way).swap(new.clone()) {
            let n = old.stop();
            slot.counters(way).flushed.fetch_add(n, Relaxed);
            slot.counters(way).held.fetch_sub(n, Relaxed);
            port.counters.drop_n(DropReason::ImpairFlushed, n);
        }
        if new.is_some() {
            slot.flags.fetch_or(bit, Relaxed);
        }
    }
    if spec.down {
        slot.flags.fetch_or(DOWN, Relaxed);
    } else {
        slot.flags.fetch_and(!DOWN, Relaxed);
    }
    *cur = spec.clone();
    Ok(())
}

/// The driver's hook for a frame `port` sent (its "out" direction). Returns true when the
/// frame was taken (dropped, held, or sent on through `sink`); false: go on as usual.
pub(crate) fn on_out(port: &SwitchPort, frame: &[u8], sink: &mut dyn FnMut(&[u8])) -> bool {
    hook(port, Way::Out, frame, sink)
}

/// The driver's hook for a frame the switch sends to `port` (its "in" direction).
pub(crate) fn on_in(port: &SwitchPort, frame: &[u8], sink: &mut dyn FnMut(&[u8])) -> bool {
    hook(port, Way::In, frame, sink)
}

fn hook(port: &SwitchPort, way: Way, frame: &[u8], sink: &mut dyn FnMut(&[u8])) -> bool {
    let slot = &port.link;
    if slot.is_down() {
        slot.counters(way).down.fetch_add(1, Relaxed);
        port.counters.drop(DropReason::LinkDown);
        return true;
    }
    let guard = slot.held(way).load();
    let Some(held) = guard.as_ref() else {
        return false;
    };
    held.admit(port, slot.counters(way), frame, sink);
    true
}

thread_local! {
    /// Buffers for cutting super-frames and corrupting copies on the caller's thread: a stack,
    /// so a hook reached again from inside a sink (an "out" frame forwarded to an impaired
    /// "in") takes its own.
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with_borrow_mut(|s| s.pop()).unwrap_or_default();
    let r = f(&mut buf);
    SCRATCH.with_borrow_mut(|s| {
        if s.len() < 8 {
            s.push(buf);
        }
    });
    r
}

/// A held frame.
struct Entry {
    at: u64,
    seq: u64,
    packets: u32,
    buf: Vec<u8>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Entry) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Inner {
    model: Model,
    queue: BinaryHeap<Reverse<Entry>>,
    pool: Vec<Vec<u8>>,
    /// Packets in `queue` (a super-frame counts its segments).
    held: u32,
    seq: u64,
    stopped: bool,
}

impl Inner {
    fn take_buf(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(frame);
        b
    }

    fn give_back(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            self.pool.push(buf);
        }
    }
}

/// One impaired direction of a port.
struct Held {
    way: Way,
    /// The settings decide per packet (see [`Impairment::per_packet_faults`]).
    per_packet: bool,
    epoch: Instant,
    inner: Mutex<Inner>,
    wake: Notify,
    task: Mutex<Option<AbortHandle>>,
}

impl Held {
    fn start(
        rt: &tokio::runtime::Handle,
        switch: &Arc<Switch>,
        port: &Arc<SwitchPort>,
        way: Way,
        cfg: Impairment,
    ) -> Arc<Held> {
        let limit = cfg.limit as usize;
        let held = Arc::new(Held {
            way,
            per_packet: cfg.per_packet_faults(),
            epoch: switch.epoch(),
            inner: Mutex::new(Inner {
                model: Model::new(cfg, rand::random()),
                queue: BinaryHeap::with_capacity(limit.min(4096)),
                pool: Vec::new(),
                held: 0,
                seq: 0,
                stopped: false,
            }),
            wake: Notify::new(),
            task: Mutex::new(None),
        });
        let task = rt.spawn(release(
            held.clone(),
            Arc::downgrade(switch),
            Arc::downgrade(port),
        ));
        *held.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the release task and empties the queue; returns the packets it held.
    fn stop(&self) -> u64 {
        if let Some(t) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
        let mut g = self.lock();
        g.stopped = true;
        let n = u64::from(g.held);
        g.queue.clear();
        g.held = 0;
        n
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs one frame through the model: cut into its packets first when the settings decide
    /// per packet and the frame is a GSO frame (so loss, duplication and corruption hit single
    /// wire packets, as on a real link; the cost is paid only on such links), else whole (a
    /// super-frame then counts its segments against the limit and the rate).
    fn admit(&self, port: &SwitchPort, c: &WayCounters, frame: &[u8], sink: &mut dyn FnMut(&[u8])) {
        if self.per_packet && frame::is_gso(frame) {
            if let Ok(hdr) = VnetHdrRepr::from_bytes(frame) {
                let eth = &frame[crate::port::VNET_HDR_LEN..];
                let done = with_scratch(|scratch| {
                    gso::segment_with_vnet_hdr(&hdr, eth, None, scratch, &mut |seg| {
                        self.admit_one(port, c, seg, frame::shape(seg), false, sink);
                        Ok(())
                    })
                });
                if done.is_ok() {
                    c.segmented.fetch_add(1, Relaxed);
                    return;
                }
            }
            // Not segmentable: the egress would drop it as bad_gso anyway; pass it whole.
        }
        self.admit_one(port, c, frame, frame::shape(frame), false, sink);
    }

    fn admit_one(
        &self,
        port: &SwitchPort,
        c: &WayCounters,
        frame: &[u8],
        shape: frame::Shape,
        copy: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        let now = self.now_ns();
        let mut g = self.lock();
        if g.stopped {
            return;
        }
        let held = g.held;
        let fate = g.model.offer(Offer {
            now,
            wire_bytes: shape.wire_bytes,
            packets: shape.packets,
            held,
            copy,
        });
        let (at, reordered, corrupt, duplicate) = match fate {
            Fate::Drop(Dropped::Loss) => {
                drop(g);
                c.loss.fetch_add(1, Relaxed);
                port.counters.drop(DropReason::ImpairLoss);
                return;
            }
            Fate::Drop(Dropped::Limit) => {
                drop(g);
                c.limit.fetch_add(1, Relaxed);
                port.counters.drop(DropReason::ImpairLimit);
                return;
            }
            Fate::Send {
                at,
                reordered,
                corrupt,
                duplicate,
            } => (at, reordered, corrupt, duplicate),
        };
        if reordered {
            c.reordered.fetch_add(1, Relaxed);
        }
        if at > now {
            let mut buf = g.take_buf(frame);
            if let Some(r) = corrupt {
                if frame::corrupt(&mut buf, r) {
                    c.corrupted.fetch_add(1, Relaxed);
                }
            }
            let seq = g.seq;
            g.seq += 1;
            let first = g.queue.peek().is_none_or(|Reverse(e)| at < e.at);
            g.queue.push(Reverse(Entry {
                at,
                seq,
                packets: shape.packets,
                buf,
            }));
            g.held = g.held.saturating_add(shape.packets);
            drop(g);
            c.delayed.fetch_add(1, Relaxed);
            c.held.fetch_add(u64::from(shape.packets), Relaxed);
            if first {
                self.wake.notify_one();
            }
        } else {
            drop(g);
            match corrupt {
                None => sink(frame),
                Some(r) => with_scratch(|b| {
                    b.clear();
                    b.extend_from_slice(frame);
                    if frame::corrupt(b, r) {
                        c.corrupted.fetch_add(1, Relaxed);
                    }
                    sink(b);
                }),
            }
        }
        if duplicate {
            c.duplicated.fetch_add(1, Relaxed);
            self.admit_one(port, c, frame, shape, true, sink);
        }
    }

    /// The earliest send time held.
    fn next_at(&self) -> Option<u64> {
        self.lock().queue.peek().map(|Reverse(e)| e.at)
    }

    /// Takes the earliest frame if it is due.
    fn pop_due(&self, now: u64) -> Option<Entry> {
        let mut g = self.lock();
        if g.queue.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Reverse(e) = g.queue.pop()?;
            g.held = g.held.saturating_sub(e.packets);
            Some(e)
        } else {
            None
        }
    }
}

/// The release task of one direction: sends held frames when due, in send-time order.
async fn release(held: Arc<Held>, switch: Weak<Switch>, port: Weak<SwitchPort>) {
    let mut scratch = Vec::new();
    loop {
        let now = held.now_ns();
        match held.next_at() {
            None => held.wake.notified().await,
            Some(at) if at > now => {
                let when = held.epoch + Duration::from_nanos(at);
                tokio::select! {
                    () = tokio::time::sleep_until(when.into()) => {}
                    () = held.wake.notified() => {}
                }
            }
            Some(_) => {
                let (Some(sw), Some(p)) = (switch.upgrade(), port.upgrade()) else {
                    return;
                };
                let c = p.link.counters(held.way);
                let mut sent = 0;
                while let Some(e) = held.pop_due(held.now_ns()) {
                    c.held.fetch_sub(u64::from(e.packets), Relaxed);
                    if p.link.is_down() {
                        c.down.fetch_add(1, Relaxed);
                        p.counters.drop(DropReason::LinkDown);
                    } else {
                        match held.way {
                            Way::Out => {
                                let ports = sw.ports();
                                crate::driver::forward(
                                    &sw,
                                    &ports,
                                    &p,
                                    &e.buf,
                                    sw.now_ms(),
                                    crate::driver::Entry::Impaired,
                                    &mut scratch,
                                );
                            }
                            Way::In => crate::driver::transmit_now(&p, &e.buf, &mut scratch),
                        }
                    }
                    held.lock().give_back(e.buf);
                    sent += 1;
                    if sent >= RELEASE_BUDGET {
                        break;
                    }
                }
                drop((sw, p));
                if sent >= RELEASE_BUDGET {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}
