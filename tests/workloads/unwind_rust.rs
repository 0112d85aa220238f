//! unwind_rust: a Rust program built like `cargo build --release` builds
//! (opt-level 3, no frame pointers): main -> run -> outer -> {hot_a, hot_b}.
//! Usage: unwind_rust SECONDS (0: until killed)
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn hot_a(mut x: u64, n: u64) -> u64 {
    for _ in 0..n {
        x = black_box(x).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    x
}

#[inline(never)]
fn hot_b(mut x: u64, n: u64) -> u64 {
    for _ in 0..n {
        x = black_box(x).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    x ^ 1
}

#[inline(never)]
fn outer(x: u64) -> u64 {
    let v: Vec<u64> = (0..64).map(|i| hot_a(x + i, 1 << 12)).collect();
    hot_b(v.iter().sum(), 1 << 16)
}

#[inline(never)]
fn run(seconds: f64) {
    let start = Instant::now();
    let mut x = 1;
    while seconds <= 0.0 || start.elapsed() < Duration::from_secs_f64(seconds) {
        x = outer(x);
    }
    black_box(x);
}

fn main() {
    let seconds = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    run(seconds);
}
