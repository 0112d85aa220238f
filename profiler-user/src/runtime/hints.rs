//! The words for what is wrong with a process's stacks and what to change:
//! the one place they are written, so the capture printout, the manifest,
//! the flamegraph subtitle and `doctor --pid` say the same thing, and a
//! hint changes in one line when stackwatch learns something.

use serde::Serialize;

use super::{ObjectInfo, ProcessFacts, Runtime};

/// A problem with a process's stacks and its fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    pub problem: String,
    pub fix: String,
}

/// How to rebuild the code of `object` with frame pointers.
fn frame_pointer_rebuild(object: &ObjectInfo, runtime: &Runtime) -> String {
    let how = if object.facts.is_rust {
        "rebuild it with `RUSTFLAGS=\"-C force-frame-pointers=yes\"`".to_owned()
    } else if matches!(runtime, Runtime::Python { .. }) {
        "use a Python built with `-fno-omit-frame-pointer` (Fedora 38+ and Ubuntu 24.04+ build theirs so)".to_owned()
    } else {
        "rebuild it with `-fno-omit-frame-pointer` (C/C++; Rust: `-C force-frame-pointers=yes`)".to_owned()
    };
    if object.facts.unwind_tables() {
        // The kernel-side table unwinder walks it (the default, `auto`).
        format!("record with `--unwind auto` (the default) or `--unwind tables`, or {how}")
    } else {
        how
    }
}

/// `object`'s code has no frame pointers, so a frame-pointer walk through
/// it loses the frames above it. `None` when it has them (or cannot tell).
pub(crate) fn missing_frame_pointers(object: &ObjectInfo, runtime: &Runtime) -> Option<Finding> {
    if object.facts.frame_pointers() != Some(false) {
        return None;
    }
    let problem = if object.facts.unwind_tables() {
        format!("`{}` has no frame pointers (walked by its unwind tables unless `--unwind fp`)", object.path)
    } else {
        format!("`{}` has no frame pointers and no unwind tables", object.path)
    };
    Some(Finding { problem, fix: frame_pointer_rebuild(object, runtime) })
}

/// Code generated at run time and not named by a perf map.
pub(crate) fn jit_without_perf_map(facts: &ProcessFacts) -> Finding {
    let problem = match &facts.perf_map {
        None => "no perf map for this JIT".to_owned(),
        Some(path) => format!("the perf map `{}` does not name this code (stale, or written too late)", path.display()),
    };
    let fix = match facts.runtime {
        Runtime::Node => "node: start with --perf-basic-prof --interpreted-frames-native-stack".to_owned(),
        Runtime::Java => "java: start with -XX:+PreserveFramePointer and write a perf map \
                          (`jcmd PID Compiler.perfmap` on JDK 17+, or perf-map-agent)"
            .to_owned(),
        Runtime::Python { .. } => "python 3.12+: start with `-X perf` (or `PYTHONPERFSUPPORT=1`)".to_owned(),
        _ => format!("make the runtime write its perf map (`{}`)", facts.perf_map_path.display()),
    };
    Finding { problem, fix }
}

/// A CPython process whose profile has no Python function names.
pub(crate) fn python_unnamed(facts: &ProcessFacts) -> Option<Finding> {
    let Runtime::Python { version, readable, note } = &facts.runtime else { return None };
    let pid = facts.pid;
    let named_by_perf_map = version.as_deref().is_some_and(|v| {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next(), parts.next()) >= (Some(3), Some(12))
    });
    let problem = format!(
        "python{}: Python functions show as `_PyEval_EvalFrameDefault`, not by name",
        version.as_deref().map(|v| format!(" {v}")).unwrap_or_default()
    );
    let mut fix = if named_by_perf_map {
        "start it with `-X perf` (or `PYTHONPERFSUPPORT=1`) so its perf map names Python functions".to_owned()
    } else {
        "Python 3.12+ started with `-X perf` names Python functions in profiles".to_owned()
    };
    if *readable {
        fix.push_str(&format!("; `stackwatch dump --pid {pid}` shows its Python stacks now"));
    } else if let Some(note) = note {
        fix.push_str(&format!(" (stackwatch cannot read its frames itself: {note})"));
    }
    Some(Finding { problem, fix })
}

/// Frames without names that are not JIT code: stripped files.
pub(crate) fn unnamed_frames(facts: Option<&ProcessFacts>) -> Finding {
    let stripped = facts
        .and_then(|f| f.exe.as_ref())
        .filter(|e| !e.facts.symtab && !e.facts.debug_info && !e.debug_file && !e.facts.is_go);
    match stripped {
        Some(exe) => Finding {
            problem: format!("`{}` is stripped (no symbol table, no debug file found)", exe.path),
            fix: "install its debug symbols (a `-dbgsym`/`-debuginfo` package) or point \
                  `STACKWATCH_DEBUG_DIRS` at its debug files"
                .to_owned(),
        },
        None => Finding {
            problem: "code in files without symbols (frames shown as `file+0x…`)".to_owned(),
            fix: "install debug symbols for the files named in those frames, or point \
                  `STACKWATCH_DEBUG_DIRS` at them"
                .to_owned(),
        },
    }
}

/// What can be seen wrong with a process without sampling it (`doctor --pid`).
pub(crate) fn static_findings(facts: &ProcessFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    for object in [facts.exe.as_ref(), facts.runtime_library.as_ref()].into_iter().flatten() {
        // An interpreter's executable is a thin `main`: only its library matters.
        if facts.runtime_library.is_some() && facts.exe.as_ref() == Some(object) {
            continue;
        }
        // Code with unwind tables needs no frame pointers under the
        // default `--unwind auto`: nothing to fix.
        if !object.facts.unwind_tables() {
            out.extend(missing_frame_pointers(object, &facts.runtime));
        }
    }
    out.extend(python_unnamed(facts));
    if facts.runtime.jit() && facts.perf_map.is_none() {
        out.push(jit_without_perf_map(facts));
    }
    if let Some(exe) = &facts.exe {
        if !exe.facts.symtab && !exe.facts.debug_info && !exe.debug_file && !exe.facts.is_go {
            out.push(unnamed_frames(Some(facts)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ids::Pid;
    use crate::objfile::facts::ObjectFacts;

    fn facts(runtime: Runtime, exe: ObjectFacts) -> ProcessFacts {
        ProcessFacts {
            pid: Pid::new(42),
            comm: "app".into(),
            runtime,
            exe: Some(ObjectInfo { path: "/usr/bin/app".into(), facts: exe, debug_file: false }),
            runtime_library: None,
            jit_mappings: 0,
            perf_map: None,
            perf_map_path: PathBuf::from("/proc/42/root/tmp/perf-42.map"),
        }
    }

    fn object(fp: f64, eh_frame: bool, rust: bool) -> ObjectFacts {
        ObjectFacts { frame_pointer_share: Some(fp), eh_frame, is_rust: rust, symtab: true, ..Default::default() }
    }

    #[test]
    fn frame_pointer_hints_follow_what_is_detected() {
        let native = Runtime::Native { language: None };
        let none = static_findings(&facts(native.clone(), object(0.02, false, false)));
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].problem, "`/usr/bin/app` has no frame pointers and no unwind tables");
        assert!(none[0].fix.contains("-fno-omit-frame-pointer"), "{none:?}");
        // Unwind tables: the default walk needs no frame pointers.
        assert!(static_findings(&facts(native.clone(), object(0.0, true, true))).is_empty());
        let rust = missing_frame_pointers(
            &ObjectInfo { path: "/usr/bin/app".into(), facts: object(0.0, true, true), debug_file: false },
            &native,
        )
        .expect("a finding");
        assert!(rust.problem.contains("has no frame pointers (walked by its unwind tables"), "{rust:?}");
        assert!(rust.fix.contains("--unwind auto") && rust.fix.contains("force-frame-pointers=yes"), "{rust:?}");
        assert!(static_findings(&facts(native, object(0.97, true, false))).is_empty());
    }

    #[test]
    fn jit_hints_name_the_runtime_flag() {
        let node = static_findings(&facts(Runtime::Node, object(0.9, true, false)));
        assert_eq!(node.len(), 1, "{node:?}");
        assert_eq!(node[0].problem, "no perf map for this JIT");
        assert_eq!(node[0].fix, "node: start with --perf-basic-prof --interpreted-frames-native-stack");
        let mut with_map = facts(Runtime::Node, object(0.9, true, false));
        with_map.perf_map = Some(with_map.perf_map_path.clone());
        assert!(static_findings(&with_map).is_empty());
        assert!(jit_without_perf_map(&with_map).problem.contains("does not name this code"));
        let java = jit_without_perf_map(&facts(Runtime::Java, object(0.9, true, false)));
        assert!(java.fix.contains("PreserveFramePointer"), "{java:?}");
    }

    #[test]
    fn python_hint_depends_on_the_version() {
        let new = facts(
            Runtime::Python { version: Some("3.12.1".into()), readable: true, note: None },
            object(1.0, true, false),
        );
        let hint = python_unnamed(&new).unwrap();
        assert!(hint.fix.starts_with("start it with `-X perf`") && hint.fix.contains("dump --pid 42"), "{hint:?}");
        let old = facts(
            Runtime::Python { version: Some("3.9.2".into()), readable: true, note: None },
            object(1.0, true, false),
        );
        assert!(python_unnamed(&old).unwrap().fix.starts_with("Python 3.12+"));
        assert!(python_unnamed(&facts(Runtime::Node, object(1.0, true, false))).is_none());
    }

    #[test]
    fn stripped_executables_need_debug_symbols() {
        let mut stripped = object(0.9, true, false);
        stripped.symtab = false;
        let found = static_findings(&facts(Runtime::Native { language: None }, stripped));
        assert_eq!(found.len(), 1);
        assert!(found[0].problem.contains("is stripped") && found[0].fix.contains("STACKWATCH_DEBUG_DIRS"));
    }
}
