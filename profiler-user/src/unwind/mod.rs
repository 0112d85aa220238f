//! The unwinder seam: how a user stack is walked without frame pointers.
//!
//! User stacks are walked in the kernel (`profiler-ebpf/src/stack.rs`,
//! where `user_stack` is the one place that picks the walk: frame pointers,
//! or the table-driven walk of `profiler-ebpf/src/unwind.rs`). This module
//! is the user-space half of the table-driven walk: [`table`] turns an
//! object file's `.eh_frame` (and `.debug_frame`) into compact rows the
//! eBPF program looks up. It has no BPF knowledge of its own; the table
//! manager in `crate::bpf::tables` builds each executable's rows with it
//! and writes them into the kernel maps for the processes of a capture.

pub(crate) mod table;

/// The size of one file's table, for the benchmark harness
/// (`stackwatch-bench`'s `unwind_tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize {
    /// Rows after merging identical neighbours.
    pub rows: usize,
    /// Rows in the kernel's layout (a row at the start of every page).
    pub kernel_rows: usize,
    pub pages: usize,
    /// Distinct rules.
    pub rules: usize,
    /// Bytes in the kernel maps.
    pub bytes: usize,
    /// Rows this unwinder cannot evaluate (they end a stack, truncated).
    pub unsupported: u64,
}

/// Builds the table of the ELF image `data` as the table manager would.
pub fn build_table(data: &[u8]) -> Result<TableSize, String> {
    let table = table::build(data).map_err(|e| e.to_string())?;
    let compact = table::CompactTable::new(&table).map_err(|e| e.to_string())?;
    Ok(TableSize {
        rows: table.rows.len(),
        kernel_rows: compact.rows.len(),
        pages: compact.pages.len(),
        rules: compact.rules.len(),
        bytes: compact.bytes(),
        unsupported: table.stats.unsupported,
    })
}
