//! The core's ref diff on a "lots of refs" set: 100,000 refs, all unchanged, and with 121 changed.
//! Prints milliseconds and refs/s (target: ≤ 5 ms native for 100k refs). The same bench also runs
//! as wasm (`--target wasm32-wasip1`, in Node's V8 via `scripts/lib/run-wasi.mjs`) — the engine
//! the edge runs the core in.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gix_hash::ObjectId;

use mirrorfarm_core::sync::{Ancestry, MirrorRules, Refs, plan_push};

/// Every changed ref fast-forwards (the planner asks once per changed ref).
struct AlwaysAncestor;

impl Ancestry for AlwaysAncestor {
    type Error = std::convert::Infallible;
    fn is_ancestor(&mut self, _: &ObjectId, _: &ObjectId) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn oid(n: u32, salt: u8) -> ObjectId {
    let mut bytes = [salt; 20];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_bytes_or_panic(&bytes)
}

fn refs(count: u32, changed: u32) -> (Refs, Refs) {
    let name =
        |i: u32| if i.is_multiple_of(10) { format!("refs/tags/v{i:06}") } else { format!("refs/heads/branch-{i:06}") };
    let source: Refs = (0..count).map(|i| (name(i), oid(i, 1))).collect();
    let target: Refs = (0..count).map(|i| (name(i), oid(i, if i < changed { 2 } else { 1 }))).collect();
    (source, target)
}

fn measure(label: &str, source: &Refs, target: &Refs) {
    let rules = MirrorRules::push(false, None, false, "main").expect("valid rules").checking_fast_forwards();
    // Warm up, then take the best of several runs (the least disturbed by the machine).
    let mut best = Duration::MAX;
    for _ in 0..15 {
        let start = Instant::now();
        let plan = plan_push(black_box(source), black_box(target), &rules, &mut AlwaysAncestor).expect("plans");
        best = best.min(start.elapsed());
        black_box(plan);
    }
    let ms = best.as_secs_f64() * 1000.0;
    let per_sec = source.len() as f64 / best.as_secs_f64();
    let build = if cfg!(target_arch = "wasm32") { "wasm  " } else { "native" };
    println!(
        "core ref diff ({build}), {label:<28} {:>7} refs  {ms:>8.2} ms  {per_sec:>12.0} refs/s  (target ≤ 5 ms native)",
        source.len()
    );
}

fn main() {
    let (s, t) = refs(100_000, 0);
    measure("100k refs, none changed", &s, &t);
    let (s, t) = refs(100_000, 121);
    measure("100k refs, 121 changed", &s, &t);
}
