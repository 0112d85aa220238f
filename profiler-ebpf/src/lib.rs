//! Host-side stub so `profiler-user` can declare a build-dependency on this
//! crate (cargo then rebuilds the eBPF object when it changes); the programs
//! themselves live in `main.rs`.
#![no_std]
#![expect(unused_crate_dependencies, reason = "the dependencies are the programs', in main.rs")]
