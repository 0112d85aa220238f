//! The target filter: which tasks a program keeps, decided before any
//! stack is walked.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use profiler_common::FilterMode;

use crate::maps::{config, gate_holds, TARGET_PIDS};

/// Whether process `tgid` (the current task's) is part of the target.
#[inline(always)]
pub(crate) fn wanted(tgid: u32) -> bool {
    let config = config();
    if config.filter_mode == FilterMode::Pids as u32 {
        match gate_holds(tgid) {
            Some(found) => found,
            None => TARGET_PIDS.get_ptr(&tgid).is_some(),
        }
    } else if config.filter_mode == FilterMode::Cgroup as u32 {
        // SAFETY: plain helper call with a scalar argument.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(config.cgroup_level as i32) };
        id == config.cgroup_id
    } else {
        true
    }
}
