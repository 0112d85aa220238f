//! The kernel side as user space sees it: the embedded eBPF object, loaded
//! with a target filter ([`loader`]), its programs attached to their events
//! and detached again ([`links`]), typed access to its maps ([`maps`]), and
//! what a capture left in them, drained as plain data ([`drain`]).
//!
//! It knows which programs and maps the object has, not what profile kinds
//! make of them: that is `crate::kinds`.

mod btf;
pub(crate) mod drain;
pub(crate) mod links;
pub(crate) mod loader;
pub(crate) mod maps;

pub(crate) use drain::{Counted, RawCapture};
pub(crate) use links::{Detaching, UprobeSite};
pub(crate) use loader::{Loader, Programs};
pub(crate) use maps::Stats;
