//! Builds the unwind table of each file given and prints its size and the
//! time it took: `cargo run --release -p stackwatch-bench --bin unwind_tables -- [--json] FILE...`
//! (`--json`: one JSON object a line, for `cargo xtask bench`).
//!
//! `unwind_tables --busy SECS FILE` builds the table of `FILE` over and
//! over for `SECS` seconds and prints nothing: the bench's busy Rust
//! binary (this one, ~90 MB with its DWARF) in a whole-host capture.
#![expect(unused_crate_dependencies, reason = "the harness's dependencies are the main binary's")]

use std::time::Instant;

use stackwatch::build_table;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, secs, path] = args.as_slice() {
        if flag == "--busy" {
            busy(secs, path);
            return;
        }
    }
    let json = args.iter().any(|a| a == "--json");
    for path in args.iter().filter(|a| *a != "--json") {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        let start = Instant::now();
        let table = build_table(&data);
        let elapsed = start.elapsed();
        match table {
            Ok(t) if json => println!(
                "{{\"path\":{path:?},\"file_bytes\":{},\"rows\":{},\"kernel_rows\":{},\"rules\":{},\"bytes\":{},\"ms\":{:.3}}}",
                data.len(),
                t.rows,
                t.kernel_rows,
                t.rules,
                t.bytes,
                elapsed.as_secs_f64() * 1e3
            ),
            Ok(t) => println!(
                "{path}: {} rows, {} kernel rows, {} pages, {} rules, {} KiB, {:.1} ms ({} unsupported rows)",
                t.rows,
                t.kernel_rows,
                t.pages,
                t.rules,
                t.bytes / 1024,
                elapsed.as_secs_f64() * 1e3,
                t.unsupported,
            ),
            Err(e) => println!("{path}: {e}"),
        }
    }
}

/// Builds `path`'s table again and again for `secs` seconds.
fn busy(secs: &str, path: &str) {
    let secs: f64 = secs.parse().expect("--busy SECS: a number of seconds");
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        std::hint::black_box(build_table(&data).map(|t| t.rows).ok());
    }
}
