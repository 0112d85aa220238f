//! The unwinder seam: how a user stack is walked.
//!
//! Today every stack is walked by frame pointers, in the kernel
//! (`profiler-ebpf/src/stack.rs`, where `user_stack` is the one place that
//! picks the walk). A table-driven unwinder lives here: it turns an object
//! file's unwind information (`.eh_frame`, read through `crate::objfile`)
//! into compact rows the eBPF program looks up, with no BPF knowledge of its
//! own, and the loader hands those rows to the kernel side for the
//! processes of a capture.
