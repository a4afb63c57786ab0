//! Microbenchmark of the MAC table (`Fdb`): nanoseconds per insert (a new MAC), lookup (a hit
//! and a miss), refresh (learning a known MAC on its port), move (a known MAC on another port)
//! and ageing (a sweep that removes every entry), at 1k, 10k and 100k MACs (`--sizes` to
//! choose). No root, no kernel: `cargo bench -p netyard-switch --bench fdb [-- --json FILE]`.
//! A measurement, never a test: it prints figures and asserts nothing.

use std::hint::black_box;
use std::time::Instant;

use netyard_switch::fdb::Fdb;
use netyard_switch::wire::ethernet::MacAddr;

/// A locally administered unicast MAC numbered `i`.
fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

/// Nanoseconds per call of `f` over `ops` calls.
fn per_op(ops: u32, mut f: impl FnMut(u32)) -> f64 {
    let t0 = Instant::now();
    for i in 0..ops {
        f(i);
    }
    t0.elapsed().as_nanos() as f64 / f64::from(ops.max(1))
}

fn one_size(n: u32) -> Vec<(&'static str, f64)> {
    // Two ports, the cap above the table size.
    let f = Fdb::new(300_000, n as usize * 2);
    let insert = per_op(n, |i| {
        black_box(f.learn(mac(i), 1, 0));
    });
    // Lookups in a scrambled order (a multiplicative step coprime to n), so that the probe is
    // not a walk through memory in insertion order.
    let lookups = 1_000_000u32;
    let step = 2_654_435_761u32;
    // One pass to warm the caches the inserts left cold (as a forwarding path's are).
    per_op(lookups, |i| {
        black_box(f.lookup(&mac(i.wrapping_mul(step) % n), 1));
    });
    let hit = per_op(lookups, |i| {
        black_box(f.lookup(&mac(i.wrapping_mul(step) % n), 1));
    });
    let miss = per_op(lookups, |i| {
        black_box(f.lookup(&mac(n + i), 1));
    });
    let refresh = per_op(lookups, |i| {
        black_box(f.learn(mac(i.wrapping_mul(step) % n), 1, 2));
    });
    // Moves: up to 10k MACs go from port 1 to port 2 (each a change to the table).
    let moves = n.min(10_000);
    let mv = per_op(moves, |i| {
        black_box(f.learn(mac(i), 2, 3));
    });
    // Ageing: one sweep that finds nothing, then one that removes every entry.
    let idle = per_op(1, |_| {
        black_box(f.expire(4));
    });
    let t0 = Instant::now();
    let removed = f.expire(10_000_000);
    let sweep = t0.elapsed().as_nanos() as f64 / f64::from(removed.max(1) as u32);
    vec![
        ("insert_ns", insert),
        ("lookup_hit_ns", hit),
        ("lookup_miss_ns", miss),
        ("refresh_ns", refresh),
        ("move_ns", mv),
        ("idle_sweep_ns_per_mac", idle / f64::from(n)),
        ("expire_ns_per_mac", sweep),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("fdb microbenchmark: run with cargo bench -p netyard-switch --bench fdb");
        return;
    }
    let mut sizes = vec![1_000u32, 10_000, 100_000];
    let mut json = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default()
            }
            "--json" => json = it.next().cloned(),
            _ => {}
        }
    }
    let mut rows = Vec::new();
    for &n in &sizes {
        for (metric, v) in one_size(n) {
            println!("fdb {n:>7} MACs  {metric:<24} {v:>10.1}");
            rows.push(format!(
                "{{\"macs\":{n},\"metric\":\"{metric}\",\"value\":{v:.3}}}"
            ));
        }
    }
    if let Some(path) = json {
        let doc = format!("{{\"bench\":\"fdb\",\"results\":[{}]}}\n", rows.join(","));
        if let Err(e) = std::fs::write(&path, doc) {
            eprintln!("# error: writing {path}: {e}");
            std::process::exit(1);
        }
    }
}
