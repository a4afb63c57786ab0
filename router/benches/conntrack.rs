//! Microbenchmark of the connection tracker's table (`FlowTable`), without host sockets: a
//! million UDP flows (`--flows N` to choose), the heap it holds per flow, and the rates of
//! opening (`outbound` of a new key), finding (`outbound` of a known key, as each further
//! packet does; `lookup`), replies (`inbound`) and removing every flow.
//! `cargo bench -p netyard-router --bench conntrack [-- --flows N] [--json FILE]`. No root. A
//! measurement, never a test: it prints figures and asserts nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Instant;

use netyard_router::conntrack::{FlowKey, FlowLimits, FlowTable, Verdict};
use netyard_switch::MacAddr;

/// The system allocator, counting live heap bytes: memory per flow is what the table
/// allocates, not the process's RSS (which the allocator's caching blurs).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to System with the caller's arguments unchanged; the counter is
// only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        // SAFETY: the caller's contract for alloc, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        // SAFETY: the caller's contract for dealloc, passed on.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        // SAFETY: the caller's contract for realloc, passed on.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Flow `i`: one of 1000 endpoints (10.0.x.y), a source port and one of 64 destinations.
fn key(i: u32) -> (FlowKey, MacAddr) {
    let ep = i % 1000;
    let e = ep.to_be_bytes();
    let endpoint = SocketAddrV4::new(Ipv4Addr::new(10, 0, e[2], e[3]), 1024 + (i / 1000) as u16);
    let dest = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, (i % 64) as u8), 53);
    (
        FlowKey::udp(endpoint, dest),
        MacAddr([0x02, 0x42, 0, 0, e[2], e[3]]),
    )
}

fn rate(ops: u32, secs: f64) -> f64 {
    f64::from(ops) / secs.max(1e-9)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "conntrack microbenchmark: run with cargo bench -p netyard-router --bench conntrack"
        );
        return;
    }
    let mut n = 1_000_000u32;
    let mut json = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--flows" => n = it.next().and_then(|s| s.parse().ok()).unwrap_or(n),
            "--json" => json = it.next().cloned(),
            _ => {}
        }
    }
    let keys: Vec<(FlowKey, MacAddr)> = (0..n).map(key).collect();
    let limits = FlowLimits {
        max_per_endpoint: n,
        max_total: n,
        ..FlowLimits::default()
    };
    let now = Instant::now();
    let before = LIVE.load(Relaxed);
    let mut t = FlowTable::new(limits);
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n as usize);
    for (k, mac) in &keys {
        match t.outbound(*k, *mac, 64, now) {
            Verdict::New(id) => ids.push(id),
            v => {
                eprintln!("# error: flow {k:?} not opened: {v:?}");
                std::process::exit(1);
            }
        }
    }
    let insert = rate(n, t0.elapsed().as_secs_f64());
    let bytes = (LIVE.load(Relaxed) - before) as f64;
    let ids_bytes = (ids.capacity() * std::mem::size_of_val(&ids[0])) as f64;
    let per_flow = (bytes - ids_bytes) / f64::from(n);
    // A scrambled order, so that lookups do not walk memory in insertion order.
    let step = 2_654_435_761u32;
    let t0 = Instant::now();
    for i in 0..n {
        let (k, mac) = &keys[(i.wrapping_mul(step) % n) as usize];
        black_box(t.outbound(*k, *mac, 64, now));
    }
    let outbound_existing = rate(n, t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    for i in 0..n {
        black_box(t.lookup(&keys[(i.wrapping_mul(step) % n) as usize].0));
    }
    let lookup = rate(n, t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    for i in 0..n {
        black_box(t.inbound(ids[(i.wrapping_mul(step) % n) as usize], 64, now));
    }
    let inbound = rate(n, t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    black_box(t.next_deadline());
    let next_deadline_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let t0 = Instant::now();
    for id in &ids {
        black_box(t.remove(*id));
    }
    let remove = rate(n, t0.elapsed().as_secs_f64());
    let figures = [
        ("flows", f64::from(n), ""),
        ("bytes_per_flow", per_flow, "B"),
        ("table_mib", (bytes - ids_bytes) / 1048576.0, "MiB"),
        ("insert_per_s", insert, "/s"),
        ("outbound_existing_per_s", outbound_existing, "/s"),
        ("lookup_per_s", lookup, "/s"),
        ("inbound_per_s", inbound, "/s"),
        ("remove_per_s", remove, "/s"),
        ("next_deadline_scan_ms", next_deadline_ms, "ms"),
    ];
    let mut rows = Vec::new();
    for (metric, v, unit) in figures {
        println!("conntrack  {metric:<26} {v:>14.1} {unit}");
        rows.push(format!(
            "{{\"metric\":\"{metric}\",\"value\":{v:.3},\"unit\":\"{unit}\"}}"
        ));
    }
    if let Some(path) = json {
        let doc = format!(
            "{{\"bench\":\"conntrack\",\"results\":[{}]}}\n",
            rows.join(",")
        );
        if let Err(e) = std::fs::write(&path, doc) {
            eprintln!("# error: writing {path}: {e}");
            std::process::exit(1);
        }
    }
}
