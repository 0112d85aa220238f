//! The errno values the programs branch on, as helpers return them
//! (negated).

/// `-EFAULT`: `bpf_get_stack` found no stack of the kind asked for.
pub(crate) const EFAULT: i64 = -14;
/// `-EEXIST`: a `BPF_NOEXIST` insert lost a race with another CPU.
pub(crate) const EEXIST: i32 = -17;
