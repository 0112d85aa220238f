//! `stackwatch doctor --pid PID`: whether one process's stacks can be
//! walked and named, before anyone profiles it, and what to change in it.
//!
//! The facts are `crate::runtime`'s and the fixes are worded by
//! `crate::runtime::hints`, so this checklist and a capture's stack quality
//! never disagree.

use std::io::{self, Write as _};

use anyhow::Context as _;

use super::{Check, Status};
use crate::ids::Pid;
use crate::runtime::{self, hints, ObjectInfo, ProcessFacts, Runtime};

/// Prints the checklist of `pid`. `Ok(false)` (exit 1) only when the
/// process cannot be inspected; what is wrong with it are warnings.
pub(super) fn run(pid: Pid) -> anyhow::Result<bool> {
    let facts = runtime::inspect(pid)?;
    let checks = checks(&facts);
    let mut text = super::render_rows(&checks);
    text.push_str(&match hints::static_findings(&facts).len() {
        0 => format!("\npid {pid} ({}): nothing to change for whole, named stacks\n", facts.comm),
        n => format!(
            "\npid {pid} ({}): {n} thing{} to change, see `fix:` above\n",
            facts.comm,
            if n == 1 { "" } else { "s" }
        ),
    });
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("failed to print the report")?;
    Ok(true)
}

fn checks(facts: &ProcessFacts) -> Vec<Check> {
    let exe_path = facts.exe.as_ref().map_or("(unreadable executable)", |e| e.path.as_str());
    let mut out =
        vec![Check::new("process", Status::Info, format!("pid {} ({}): `{exe_path}`", facts.pid, facts.comm))];
    out.push(runtime_check(facts));
    // An interpreter's executable is a thin `main` around its library:
    // the library's code is what the stacks run through.
    if let Some(object) = facts.runtime_library.as_ref().or(facts.exe.as_ref()) {
        out.push(frame_pointer_check(object, &facts.runtime));
        out.push(unwind_table_check(object));
        out.push(symbols_check(object, facts));
        out.push(debug_file_check(object));
    }
    if let Some(check) = jit_check(facts) {
        out.push(check);
    }
    out
}

fn runtime_check(facts: &ProcessFacts) -> Check {
    const NAME: &str = "runtime";
    let label = facts.runtime.label();
    match &facts.runtime {
        // The capture's Python walk and `dump` read its frames from outside.
        Runtime::Python { readable: true, .. } => Check::new(
            NAME,
            Status::Ok,
            format!(
                "{label}: Python functions are named in profiles and by `stackwatch dump` (read from the interpreter)"
            ),
        ),
        Runtime::Python { readable: false, note, .. } => Check::new(
            NAME,
            Status::Info,
            format!(
                "{label}: its Python frames cannot be read{}",
                note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
            ),
        ),
        Runtime::Go { .. } => Check::new(
            NAME,
            Status::Ok,
            format!("{label}: Go keeps frame pointers; its function table names frames even when stripped"),
        ),
        Runtime::Node | Runtime::Java => {
            Check::new(NAME, Status::Info, format!("{label}: generated code is named only through a perf map"))
        }
        Runtime::Native { .. } => Check::new(NAME, Status::Info, format!("{label}: native code")),
    }
}

fn frame_pointer_check(object: &ObjectInfo, runtime: &Runtime) -> Check {
    const NAME: &str = "frame pointers";
    let path = &object.path;
    if let Some(finding) = hints::missing_frame_pointers(object, runtime) {
        let share = object.facts.frame_pointer_share.unwrap_or(0.0);
        return Check::new(
            NAME,
            Status::Warn,
            format!("{}; {:.0}% of its functions set one up", finding.problem, share * 100.0),
        )
        .fix(finding.fix);
    }
    match object.facts.frame_pointer_share {
        Some(_) if object.facts.is_go => Check::new(NAME, Status::Ok, format!("`{path}`: Go code (always has them)")),
        Some(share) => {
            Check::new(NAME, Status::Ok, format!("`{path}`: {:.0}% of its functions set one up", share * 100.0))
        }
        None => Check::new(NAME, Status::Info, format!("`{path}`: cannot tell (no symbols to find its functions)")),
    }
}

fn unwind_table_check(object: &ObjectInfo) -> Check {
    const NAME: &str = "unwind tables";
    let f = &object.facts;
    let which: Vec<&str> = [(f.eh_frame, ".eh_frame"), (f.debug_frame, ".debug_frame")]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
    if which.is_empty() {
        Check::new(NAME, Status::Info, format!("`{}`: none (no .eh_frame, no .debug_frame)", object.path))
    } else {
        Check::new(NAME, Status::Ok, format!("`{}`: {}", object.path, which.join(", ")))
    }
}

fn symbols_check(object: &ObjectInfo, facts: &ProcessFacts) -> Check {
    const NAME: &str = "symbols";
    let f = &object.facts;
    if f.symtab || f.debug_info {
        Check::new(NAME, Status::Ok, format!("`{}`: symbol table", object.path))
    } else if f.is_go {
        Check::new(NAME, Status::Ok, format!("`{}`: stripped, named from Go's function table", object.path))
    } else if object.debug_file {
        Check::new(NAME, Status::Ok, format!("`{}`: stripped, symbols from its debug file", object.path))
    } else {
        let hint = hints::unnamed_frames(Some(facts));
        Check::new(
            NAME,
            Status::Warn,
            format!("`{}`: stripped ({} exported functions only)", object.path, f.dynsym_functions),
        )
        .fix(hint.fix)
    }
}

fn debug_file_check(object: &ObjectInfo) -> Check {
    const NAME: &str = "debug info";
    let f = &object.facts;
    if f.debug_info {
        Check::new(NAME, Status::Ok, format!("`{}`: DWARF in the file (file, line, inlined calls)", object.path))
    } else if object.debug_file {
        Check::new(NAME, Status::Ok, format!("`{}`: separate debug file found", object.path))
    } else {
        let what = match &f.debuglink {
            Some(name) => format!("`{}`: none found (it names `{name}`)", object.path),
            None => format!("`{}`: none: frames get names but no file and line", object.path),
        };
        Check::new(NAME, Status::Info, what)
            .fix("install its `-dbgsym`/`-debuginfo` package or point `STACKWATCH_DEBUG_DIRS` at its debug files")
    }
}

fn jit_check(facts: &ProcessFacts) -> Option<Check> {
    const NAME: &str = "JIT perf map";
    if !facts.runtime.jit() && facts.jit_mappings == 0 && facts.perf_map.is_none() {
        return None;
    }
    Some(match &facts.perf_map {
        Some(path) => Check::new(NAME, Status::Ok, format!("`{}`", path.display())),
        None if facts.runtime.jit() => {
            let hint = hints::jit_without_perf_map(facts);
            Check::new(
                NAME,
                Status::Warn,
                format!("{}: `{}` does not exist", hint.problem, facts.perf_map_path.display()),
            )
            .fix(hint.fix)
        }
        None => Check::new(
            NAME,
            Status::Info,
            format!(
                "{} anonymous executable mapping{}, no perf map (`{}`): generated code would show as `[anon]+0x…`",
                facts.jit_mappings,
                if facts.jit_mappings == 1 { "" } else { "s" },
                facts.perf_map_path.display()
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::objfile::facts::ObjectFacts;

    fn facts(runtime: Runtime, exe: ObjectFacts) -> ProcessFacts {
        ProcessFacts {
            pid: Pid::new(42),
            comm: "app".into(),
            runtime,
            exe: Some(ObjectInfo { path: "/srv/app".into(), facts: exe, debug_file: false }),
            runtime_library: None,
            jit_mappings: 0,
            perf_map: None,
            perf_map_path: PathBuf::from("/proc/42/root/tmp/perf-42.map"),
        }
    }

    fn find<'c>(checks: &'c [Check], name: &str) -> &'c Check {
        checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check: {checks:#?}"))
    }

    #[test]
    fn a_release_build_without_frame_pointers_or_tables() {
        let exe = ObjectFacts { frame_pointer_share: Some(0.03), symtab: true, ..Default::default() };
        let checks = checks(&facts(Runtime::Native { language: None }, exe));
        let fp = find(&checks, "frame pointers");
        assert_eq!(fp.status, Status::Warn);
        assert!(fp.detail.contains("has no frame pointers and no unwind tables; 3% of its functions"), "{fp:?}");
        assert!(fp.fix.as_deref().unwrap().contains("-fno-omit-frame-pointer"));
        assert_eq!(find(&checks, "unwind tables").status, Status::Info);
        assert_eq!(find(&checks, "symbols").status, Status::Ok);
        assert!(checks.iter().all(|c| c.name != "JIT perf map"));
    }

    #[test]
    fn node_without_a_perf_map() {
        let exe = ObjectFacts { frame_pointer_share: Some(0.9), symtab: true, eh_frame: true, ..Default::default() };
        let mut f = facts(Runtime::Node, exe);
        f.jit_mappings = 12;
        let checks = checks(&f);
        let jit = find(&checks, "JIT perf map");
        assert_eq!(jit.status, Status::Warn);
        assert_eq!(jit.fix.as_deref(), Some("node: start with --perf-basic-prof --interpreted-frames-native-stack"));
        f.perf_map = Some(f.perf_map_path.clone());
        assert_eq!(find(&super::checks(&f), "JIT perf map").status, Status::Ok);
    }

    #[test]
    fn a_live_process_is_checked() {
        // This test binary: Rust, with symbols and unwind tables.
        let facts = runtime::inspect(Pid::current()).unwrap();
        let checks = checks(&facts);
        assert!(find(&checks, "runtime").detail.starts_with("rust"), "{checks:#?}");
        assert_eq!(find(&checks, "symbols").status, Status::Ok);
        assert_eq!(find(&checks, "unwind tables").status, Status::Ok);
    }
}
