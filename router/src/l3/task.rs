//! A router's task: one tokio task per router moves frames between its interfaces' switch
//! ports. Each interface is an in-process port of its network's switch
//! ([`HandoffPort`](netyard_switch::handoff::HandoffPort), as the gateway's): the switch's
//! port tasks hand it their frames' buffers, and the router task sends by running the
//! egress switch's forwarding itself ([`driver::forward`] as if the frame had been read
//! from the router's port there), so a routed frame costs no syscall of the router's and no
//! channel hop. One task per router (rather than per interface) keeps its neighbour cache,
//! NAT table and held frames owned by one task: no lock on the fast path.
//!
//! Frames for a next hop whose MAC is not known yet are held (copied into pooled buffers)
//! while an ARP request goes out, and released when the reply comes; one held longer than
//! [`HOLD_MS`] is dropped and counted `unresolved`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use netyard_switch::driver::{self, RX_BUF_LEN};
use netyard_switch::handoff::HandoffRx;
use netyard_switch::port::VNET_HDR_LEN;
use netyard_switch::sys::pagebuf::PageBuf;
use smoltcp::wire::ArpOperation;
use tokio::task::JoinHandle;

use super::decide::arp_frame;
use super::nat::Nat;
use super::neigh::Neighbours;
use super::{decide, Config, Counter, Counters, Cx, Verdict};
use crate::uplink::Direct;

/// How long a frame waits for its next hop's ARP reply.
pub const HOLD_MS: u64 = 3_000;
/// Most frames held at once (all next hops).
pub const MAX_HELD: usize = 64;
/// One ARP request per next hop per this long.
pub const ASK_EVERY_MS: u64 = 1_000;
/// Frames taken from one interface before looking at the next.
const BURST: usize = 64;

/// What the daemon shares with a running router: its configuration (swapped on a route
/// change) and its interfaces' counters.
#[derive(Debug)]
pub struct Shared {
    pub config: ArcSwap<Config>,
    pub counters: Vec<Counters>,
    /// Live NAT mappings, as the task last saw its table (a gauge for /metrics and
    /// `router inspect`: the table itself is the task's alone).
    pub nat_entries: AtomicU64,
    /// Frames held now for a next hop's ARP reply.
    pub held: AtomicU64,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let counters = config.ifaces.iter().map(|_| Counters::default()).collect();
        Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            counters,
            nat_entries: AtomicU64::new(0),
            held: AtomicU64::new(0),
        })
    }
}

/// One interface's link: frames from its switch, and its port there to send through.
pub struct Link {
    pub rx: HandoffRx,
    pub direct: Direct,
}

/// Starts the router's task (inside a tokio runtime). `links[i]` is interface `i` of the
/// configuration.
pub fn start(shared: Arc<Shared>, links: Vec<Link>) -> io::Result<JoinHandle<()>> {
    let buf = PageBuf::new(RX_BUF_LEN)?;
    Ok(tokio::spawn(run(shared, links, buf)))
}

struct Held {
    iface: usize,
    hop: Ipv4Addr,
    at: u64,
    frame: Vec<u8>,
}

struct State {
    neigh: Neighbours,
    nat: Nat,
    held: Vec<Held>,
    pool: Vec<Vec<u8>>,
    asked: HashMap<(usize, Ipv4Addr), u64>,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

async fn run(shared: Arc<Shared>, links: Vec<Link>, mut buf: PageBuf) {
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut st = State {
        neigh: Neighbours::new(links.len()),
        nat: Nat::default(),
        held: Vec::new(),
        pool: Vec::new(),
        asked: HashMap::new(),
        scratch: Vec::with_capacity(RX_BUF_LEN),
        // An echo reply is at most the ingress network's MTU; ICMP errors are 590 bytes.
        out: vec![0u8; RX_BUF_LEN],
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = 0u64;
    loop {
        let cfg = shared.config.load();
        let now = now_ms();
        let mut did = 0;
        for i in 0..links.len() {
            for _ in 0..BURST {
                let n = match links[i].rx.try_recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                };
                did += 1;
                let Some(frame) = buf.get_mut(..n) else {
                    continue;
                };
                let cx = Cx {
                    cfg: &cfg,
                    neigh: &mut st.neigh,
                    nat: &mut st.nat,
                    counters: &shared.counters,
                    now,
                    out: &mut st.out,
                };
                let v = decide(cx, i, frame);
                act(&cfg, &links, &shared, &mut st, v, frame, now);
            }
        }
        if now.saturating_sub(last_sweep) >= 500 {
            last_sweep = now;
            sweep(&shared, &mut st, now);
        }
        drop(cfg);
        // Two relaxed stores per burst, so a scrape sees the table as of the last frame.
        let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        shared
            .nat_entries
            .store(len(st.nat.len()), Ordering::Relaxed);
        shared.held.store(len(st.held.len()), Ordering::Relaxed);
        if did > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        poll_fn(|cx| {
            if links.iter().any(|l| l.rx.poll_ready(cx).is_ready()) || tick.poll_tick(cx).is_ready()
            {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

fn send(links: &[Link], iface: usize, frame: &[u8], scratch: &mut Vec<u8>) {
    if let Some(l) = links.get(iface) {
        let d = &l.direct;
        let ports = d.switch.ports();
        driver::forward(
            &d.switch,
            &ports,
            &d.port,
            frame,
            d.switch.now_ms(),
            driver::Entry::Port,
            scratch,
        );
    }
}

fn act(
    cfg: &Config,
    links: &[Link],
    shared: &Shared,
    st: &mut State,
    v: Verdict,
    frame: &[u8],
    now: u64,
) {
    match v {
        Verdict::Forward { iface, ask } => {
            send(links, iface, frame, &mut st.scratch);
            if let Some(hop) = ask {
                ask_for(cfg, links, st, iface, hop, now);
            }
        }
        Verdict::Resolve { iface, hop } => {
            if st.held.len() >= MAX_HELD {
                if let Some(c) = shared.counters.get(iface) {
                    c.add(Counter::Unresolved);
                }
            } else {
                let mut b = st.pool.pop().unwrap_or_default();
                b.clear();
                b.extend_from_slice(frame);
                st.held.push(Held {
                    iface,
                    hop,
                    at: now,
                    frame: b,
                });
            }
            ask_for(cfg, links, st, iface, hop, now);
        }
        Verdict::Reply { iface, len } => {
            if let Some(f) = st.out.get(..len) {
                send(links, iface, f, &mut st.scratch);
            }
        }
        Verdict::Learned { iface, ip, reply } => {
            if let Some(f) = reply.and_then(|len| st.out.get(..len)) {
                send(links, iface, f, &mut st.scratch);
            }
            release(links, st, iface, ip, now);
        }
        Verdict::Drop(_) => {}
    }
}

/// Sends an ARP request for `hop` on `iface`, at most one per [`ASK_EVERY_MS`].
fn ask_for(cfg: &Config, links: &[Link], st: &mut State, iface: usize, hop: Ipv4Addr, now: u64) {
    if st
        .asked
        .get(&(iface, hop))
        .is_some_and(|at| now.saturating_sub(*at) < ASK_EVERY_MS)
    {
        return;
    }
    let Some(inf) = cfg.ifaces.get(iface) else {
        return;
    };
    st.asked.insert((iface, hop), now);
    let mut req = [0u8; 64];
    if let Some(len) = arp_frame(
        inf,
        ArpOperation::Request,
        netyard_switch::MacAddr::BROADCAST,
        hop,
        &mut req,
    ) {
        send(links, iface, &req[..len], &mut st.scratch);
    }
}

/// Sends the frames held for `ip` on `iface`, now that its MAC is known.
fn release(links: &[Link], st: &mut State, iface: usize, ip: Ipv4Addr, now: u64) {
    let mac = match st.neigh.lookup(iface, ip, now) {
        super::neigh::Lookup::Fresh(m) | super::neigh::Lookup::Stale(m) => m,
        super::neigh::Lookup::Missing => return,
    };
    let mut i = 0;
    while i < st.held.len() {
        if st.held[i].iface == iface && st.held[i].hop == ip {
            let mut h = st.held.remove(i);
            if let Some(dst) = h.frame.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + 6) {
                dst.copy_from_slice(&mac.0);
                send(links, iface, &h.frame, &mut st.scratch);
            }
            h.frame.clear();
            st.pool.push(h.frame);
        } else {
            i += 1;
        }
    }
}

/// Drops frames held too long, forgets old ARP requests and idle NAT mappings.
fn sweep(shared: &Shared, st: &mut State, now: u64) {
    let mut i = 0;
    while i < st.held.len() {
        if now.saturating_sub(st.held[i].at) >= HOLD_MS {
            let mut h = st.held.remove(i);
            if let Some(c) = shared.counters.get(h.iface) {
                c.add(Counter::Unresolved);
            }
            h.frame.clear();
            st.pool.push(h.frame);
        } else {
            i += 1;
        }
    }
    st.asked
        .retain(|_, at| now.saturating_sub(*at) < 10 * ASK_EVERY_MS);
    st.nat.expire(now);
}
