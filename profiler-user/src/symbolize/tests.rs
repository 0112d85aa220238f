//! Tests of the symbolizer as a whole, on programs compiled by the tests:
//! inlined frames and their lines, separate debug files, processes that
//! exit or whose binary is deleted, and our own process.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, SystemTime},
};

use object::{Object as _, ObjectSymbol as _};

use super::*;
use crate::addr::{ElfVaddr, FileOffset};
use crate::ids::Tid;
use crate::objfile::{debuginfo::DebugSearch, elf, gopclntab};
use crate::procfs::maps::{parse_maps, read_maps};
use crate::sys::file::PinnedFile;

/// A hot function with an `always_inline` helper, itself calling another.
const INLINE_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static volatile unsigned long sink;
static inline __attribute__((always_inline)) unsigned long mix(unsigned long x)
{
	return x * 6364136223846793005UL + 1442695040888963407UL; /* MIX */
}
static inline __attribute__((always_inline)) unsigned long step(unsigned long x)
{
	return mix(x) ^ (x >> 7); /* STEP */
}
__attribute__((noinline)) void hot(unsigned long n)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < n; i++)
		x = step(x); /* CALL */
	sink = x;
}
int main(int argc, char **argv)
{
	hot(argc > 1 ? strtoul(argv[1], 0, 10) : 1000);
	if (argc > 2)
		usleep(atoi(argv[2]) * 1000);
	return 0;
}
"#;

fn line_of(marker: &str) -> u32 {
    INLINE_C.lines().position(|l| l.contains(marker)).expect("marker") as u32 + 1
}

fn run(cmd: &mut Command) -> bool {
    match cmd.status() {
        Ok(s) if s.success() => true,
        other => {
            eprintln!("note: {cmd:?} did not succeed ({other:?}); skipping");
            false
        }
    }
}

/// Compiles [`INLINE_C`] at `-O2 -g` into `dir/name`.
fn compile(dir: &Path, name: &str) -> Option<PathBuf> {
    let src = dir.join("inline.c");
    std::fs::write(&src, INLINE_C).ok()?;
    let out = dir.join(name);
    run(Command::new("gcc").args(["-O2", "-g", "-fno-omit-frame-pointer", "-Wl,--build-id", "-o"]).arg(&out).arg(&src))
        .then_some(out)
}

/// File offsets of the code of function `name` (from `.symtab`).
fn function_offsets(path: &Path, name: &str) -> Vec<FileOffset> {
    let data = std::fs::read(path).expect("read binary");
    let file = object::File::parse(data.as_slice()).expect("ELF");
    let sym = file.symbols().find(|s| s.name() == Ok(name)).expect("symbol");
    let info = elf::ElfInfo::parse(&data).expect("ELF");
    let start = info.vaddr_to_file_offset(ElfVaddr::new(sym.address())).expect("in a segment");
    (start.get()..start.get() + sym.size()).map(FileOffset::new).collect()
}

/// Symbolizes file offsets of `binary` through a fresh object cache.
fn symbolize_file(binary: &Path, offsets: &[FileOffset], extra_dirs: &[PathBuf]) -> Vec<Option<Vec<Line>>> {
    let file = std::fs::File::open(binary).expect("open");
    let pin = Arc::new(PinnedFile::from_file(file).expect("stat"));
    let mut cache = ObjectCache::new(CacheBudget::default());
    let path = binary.to_str().expect("utf-8 path");
    let search = DebugSearch { process_root: None, binary_path: path, extra_dirs };
    let id = cache.insert(pin, &search);
    let blaze = Blaze(BlazeSymbolizer::builder().set_debug_dirs(Some(Vec::<PathBuf>::new())).build());
    cache.symbolize(&blaze, id, offsets)
}

/// The lines the inlined code of `hot` should get: each function with the
/// line inside it, innermost first.
fn expected_inline_chain() -> Vec<(String, u32)> {
    vec![
        ("mix".into(), line_of("/* MIX */")),
        ("step".into(), line_of("/* STEP */")),
        ("hot".into(), line_of("/* CALL */")),
    ]
}

fn find_chain(results: &[Option<Vec<Line>>]) -> Option<Vec<Line>> {
    let want = expected_inline_chain();
    results
        .iter()
        .flatten()
        .find(|lines| {
            lines.len() == want.len()
                && lines.iter().zip(&want).all(|(l, (f, n))| l.function == *f && l.line == Some(*n))
        })
        .cloned()
}

#[test]
fn inlined_frames_come_innermost_first_with_their_own_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(binary) = compile(dir.path(), "inline") else { return };
    let offsets = function_offsets(&binary, "hot");
    let results = symbolize_file(&binary, &offsets, &[]);
    let chain = find_chain(&results).unwrap_or_else(|| panic!("no mix←step←hot chain in {results:#?}"));
    assert!(chain.iter().all(|l| l.file.as_deref().is_some_and(|f| f.ends_with("inline.c"))), "{chain:?}");
    // Outside the inlined calls, `hot` alone.
    assert!(results.iter().flatten().any(|l| l.len() == 1 && l[0].function == "hot"));
}

#[test]
fn separate_debug_files_are_found_by_debuglink_and_build_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(binary) = compile(dir.path(), "app") else { return };
    let offsets = function_offsets(&binary, "hot");
    let debug = dir.path().join("app.debug");
    if !run(Command::new("objcopy").arg("--only-keep-debug").arg(&binary).arg(&debug))
        || !run(Command::new("objcopy").arg("--strip-debug").arg("--strip-unneeded").arg(&binary))
        || !run(Command::new("objcopy").arg(format!("--add-gnu-debuglink={}", debug.display())).arg(&binary))
    {
        return;
    }
    let info = elf::ElfInfo::parse(&std::fs::read(&binary).expect("read")).expect("ELF");
    assert!(!info.has_dwarf && !info.has_symtab && info.debuglink.is_some(), "stripped: {info:?}");
    // Next to the binary, by debuglink.
    assert!(find_chain(&symbolize_file(&binary, &offsets, &[])).is_some(), "debuglink next to the binary");
    // Elsewhere, by build ID, under a configured directory.
    let store = dir.path().join("store");
    let id = info.build_id_hex().expect("build id");
    let by_id = store.join(".build-id").join(&id[..2]).join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(by_id.parent().expect("parent")).expect("mkdir");
    std::fs::rename(&debug, &by_id).expect("move debug file");
    assert!(find_chain(&symbolize_file(&binary, &offsets, &[store])).is_some(), "build-id directory");
    // Without it, only what `.dynsym` knows (nothing for a static function).
    assert!(find_chain(&symbolize_file(&binary, &offsets, &[])).is_none());
}

#[test]
fn stripped_go_binaries_resolve_through_gopclntab() {
    let Some((_dir, prog)) = gopclntab::tests::build_go(gopclntab::tests::INLINE_GO, &["-ldflags=-s -w"]) else {
        return;
    };
    let data = std::fs::read(&prog).expect("read");
    let info = elf::ElfInfo::parse(&data).expect("ELF");
    let text = info.segments.iter().find(|s| s.exec).expect("text");
    let offsets: Vec<FileOffset> = (text.offset..text.offset + text.filesz).step_by(64).map(FileOffset::new).collect();
    let results = symbolize_file(&prog, &offsets, &[]);
    let names: std::collections::HashSet<String> =
        results.iter().flatten().filter_map(|l| l.last()).map(|l| l.function.clone()).collect();
    for want in ["main.hot", "main.main", "runtime.main", "runtime.mallocgc"] {
        assert!(names.contains(want), "{want} missing from {} names", names.len());
    }
}

fn spawn(binary: &Path, args: &[&str]) -> std::process::Child {
    Command::new(binary).args(args).stdout(Stdio::null()).spawn().expect("spawn")
}

/// The absolute address of `hot` in process `pid`.
fn hot_address(pid: u32, binary_offsets: &[FileOffset]) -> u64 {
    let maps = read_maps(Pid::new(pid)).expect("maps");
    let off = binary_offsets[0].get();
    let m =
        maps.iter().find(|m| m.is_file() && m.offset <= off && off < m.offset + (m.end - m.start)).expect("mapping");
    m.start + (off - m.offset)
}

fn hot_profile(symbolizer: &mut Symbolizer, pid: u32, addr: u64) -> Profile {
    let mut agg = Aggregate::default();
    agg.user_addrs.insert(Pid::new(pid), vec![addr]);
    agg.samples.push(RawSample::once(
        Pid::new(pid),
        Tid::new(pid),
        "inline",
        Frames::Addrs(vec![addr].into()),
        Frames::None,
    ));
    agg.total = 1;
    let template = Profile::new_cpu(99, SystemTime::now(), Duration::from_secs(1));
    let period = template.period;
    symbolizer.build_profile(&agg, template, |s| vec![s.count as i64, s.count as i64 * period])
}

#[test]
fn truncated_user_stacks_end_in_a_marker() {
    let mut agg = Aggregate::default();
    for truncated in [true, false] {
        agg.samples.push(RawSample {
            user_truncated: truncated,
            ..RawSample::once(Pid::new(1), Tid::new(1), "x", Frames::Lost, Frames::None)
        });
    }
    agg.total = 2;
    let template = Profile::new_cpu(99, SystemTime::now(), Duration::from_secs(1));
    let p = Symbolizer::new().build_profile(&agg, template, |s| vec![s.count as i64]);
    let outermost = |i: usize| {
        let s = &p.samples[i];
        p.locations[*s.locations.last().unwrap()].lines.last().unwrap().function.clone()
    };
    assert_eq!(outermost(0), super::TRUNCATED_FRAME);
    assert_eq!(outermost(1), "[lost user stack]");
}

fn outer_function(p: &Profile) -> &str {
    &p.locations[p.samples[0].locations[0]].lines.last().expect("lines").function
}

#[test]
fn exited_and_deleted_processes_keep_their_names() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: /proc/<pid>/map_files needs root; skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(binary) = compile(dir.path(), "shortlived") else { return };
    let offsets = function_offsets(&binary, "hot");
    let mut symbolizer = Symbolizer::new();

    // Exits before symbolization: named from the snapshot.
    let mut child = spawn(&binary, &["1", "300"]);
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(100));
    let addr = hot_address(pid, &offsets);
    symbolizer.observe_pids(&[Pid::new(pid)]);
    assert_eq!(symbolizer.stats().snapshots, 1);
    child.wait().expect("wait");
    std::fs::remove_file(&binary).expect("delete the binary as well");
    let p = hot_profile(&mut symbolizer, pid, addr);
    assert_eq!(outer_function(&p), "hot");
    symbolizer.forget_exited();
    assert_eq!(symbolizer.stats().snapshots, 0);

    // Not observed: only the address remains.
    let p = hot_profile(&mut Symbolizer::new(), pid, addr);
    assert_eq!(outer_function(&p), format!("[exited process]+{addr:#x}"));

    // Deleted while running: named through map_files.
    let Some(binary) = compile(dir.path(), "deleted") else { return };
    let offsets = function_offsets(&binary, "hot");
    let mut child = spawn(&binary, &["1", "2000"]);
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_file(&binary).expect("delete");
    let addr = hot_address(child.id(), &offsets);
    let p = hot_profile(&mut symbolizer, child.id(), addr);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(outer_function(&p), "hot");
    let mapping = &p.mappings[p.locations[p.samples[0].locations[0]].mapping.expect("mapping")];
    assert!(mapping.path.ends_with("deleted (deleted)"), "{}", mapping.path);
    assert!(mapping.build_id.is_some());
}

/// Spawns `binary` with pid `pid` (free again), by setting the kernel's
/// last-allocated pid just below it; `None` if another fork on the host
/// took the pid first every time.
fn spawn_with_pid(pid: u32, binary: &Path, args: &[&str]) -> Option<std::process::Child> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("write ns_last_pid");
        let mut child = spawn(binary, args);
        if child.id() == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

#[test]
fn a_reused_pid_is_named_from_each_process_own_snapshot() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "setting ns_last_pid and map_files need root");
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = compile(dir.path(), "first").expect("gcc");
    let offsets = function_offsets(&binary, "hot");
    let mut symbolizer = Symbolizer::new();

    // The first process: observed while it runs, then gone.
    let mut first = spawn(&binary, &["1", "300"]);
    let pid = first.id();
    std::thread::sleep(Duration::from_millis(100));
    let addr = hot_address(pid, &offsets);
    let first_start = crate::procfs::stat::start_time(Pid::new(pid)).expect("start");
    symbolizer.observe_native(&[Pid::new(pid)]);
    first.wait().expect("wait");

    // A second program under the same pid, started at least a tick later.
    std::thread::sleep(Duration::from_millis(30));
    let mut second = spawn_with_pid(pid, Path::new("/bin/sleep"), &["5"]).expect("the pid was free again");
    let second_start = crate::procfs::stat::start_time(Pid::new(pid)).expect("start");
    assert_ne!(first_start, second_start);
    symbolizer.observe_native(&[Pid::new(pid)]);

    // The first process's samples: named from its own (retired) snapshot
    // under a made-up pid, not from `sleep`'s mappings.
    let alias = symbolizer.process_instance(Pid::new(pid), first_start);
    assert!(alias.get() >= 1 << 22, "{alias}");
    let p = hot_profile(&mut symbolizer, alias.get(), addr);
    assert_eq!(outer_function(&p), "hot");
    // The second process is itself.
    assert_eq!(symbolizer.process_instance(Pid::new(pid), second_start), Pid::new(pid));
    // A process that had the pid and was never observed: another alias,
    // with no mappings, so its address is not named from `sleep`'s.
    let unknown = symbolizer.process_instance(Pid::new(pid), first_start.saturating_sub(1).max(1));
    assert!(unknown.get() >= 1 << 22 && unknown != alias);
    let p = hot_profile(&mut symbolizer, unknown.get(), addr);
    assert_ne!(outer_function(&p), "hot");
    symbolizer.drop_aliases();

    let _ = second.kill();
    let _ = second.wait();
    symbolizer.forget_exited();
    assert_eq!(symbolizer.stats().snapshots, 0);
}

#[test]
fn cache_is_bounded_and_shared_by_build_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(first) = compile(dir.path(), "one") else { return };
    let second = dir.path().join("two");
    std::fs::copy(&first, &second).expect("copy");
    let offsets = function_offsets(&first, "hot");
    let mut blaze = Blaze(BlazeSymbolizer::new());
    let mut cache = ObjectCache::new(CacheBudget { max_objects: 1, max_bytes: u64::MAX });
    let insert = |cache: &mut ObjectCache, path: &Path| {
        let pin = Arc::new(PinnedFile::from_file(std::fs::File::open(path).expect("open")).expect("stat"));
        let search = DebugSearch { process_root: None, binary_path: "x", extra_dirs: &[] };
        cache.lookup(&pin.key).unwrap_or_else(|| cache.insert(pin, &search))
    };
    let a = insert(&mut cache, &first);
    let b = insert(&mut cache, &second);
    assert_eq!(a, b, "same build ID, one object");
    assert_eq!(cache.stats().objects, 1);
    assert!(cache.symbolize(&blaze, a, &offsets[..1])[0].is_some());
    // A different binary pushes the first one out.
    let Some(other) = compile(dir.path(), "three") else { return };
    if !run(Command::new("objcopy").arg("--remove-section=.note.gnu.build-id").arg(&other)) {
        return;
    }
    cache.next_generation();
    let c = insert(&mut cache, &other);
    assert_ne!(c, a);
    cache.evict_over_budget(&mut blaze);
    let stats = cache.stats();
    assert_eq!((stats.objects, stats.evictions), (1, 1));
    assert!(cache.symbolize(&blaze, a, &offsets[..1])[0].is_none(), "evicted");
}

#[test]
fn names_unknown_addresses_by_module_and_offset() {
    let maps = parse_maps(
        "7f0000100000-7f0000200000 r-xp 00028000 fd:01 99 /usr/lib/libc.so.6\n\
         7f0000300000-7f0000400000 r-xp 00000000 fd:01 77 /tmp/prog (deleted)\n\
         7f0000500000-7f0000600000 rwxp 00000000 00:00 0\n",
    );
    assert_eq!(unknown_name(Some(&maps[0]), 0x7f0000100010, false), "libc.so.6+0x28010");
    assert_eq!(unknown_name(Some(&maps[1]), 0x7f0000300010, false), "prog+0x10");
    assert_eq!(unknown_name(Some(&maps[2]), 0x7f0000500010, false), "[anon]+0x7f0000500010");
    assert_eq!(unknown_name(None, 0x10, true), "[exited process]+0x10");
    assert_eq!(unknown_name(None, 0x10, false), "[unknown]+0x10");
}

#[test]
fn symbolizes_own_process() {
    fn assert_send<T: Send>() {}
    assert_send::<Symbolizer>();
    // Our own code, through the same path as any target process.
    let addr = symbolizes_own_process as *const () as u64;
    let pid = std::process::id();
    let mut s = Symbolizer::new();
    let p = hot_profile(&mut s, pid, addr);
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.samples[0].values, vec![1, 10_101_010]);
    assert!(outer_function(&p).contains("symbolizes_own_process"), "got {}", outer_function(&p));
    let loc = &p.locations[p.samples[0].locations[0]];
    let mapping = &p.mappings[loc.mapping.expect("mapping")];
    assert!(mapping.build_id.is_some(), "test binary has a build id");
    // Second capture: served from the cache.
    let hits = s.stats().cache.hits;
    let _ = hot_profile(&mut s, pid, addr);
    assert!(s.stats().cache.hits > hits);
}

/// Other tests of this binary symbolize on other threads (mapping and
/// reading files): the check runs in a child process of its own.
#[test]
fn a_profile_leaves_no_pages_of_the_files_it_read_resident() {
    crate::sys::run_child_test(module_path!(), "child_profile_releases_file_views");
}

#[test]
#[ignore = "run by a_profile_leaves_no_pages_of_the_files_it_read_resident in a child process"]
fn child_profile_releases_file_views() {
    let addr = child_profile_releases_file_views as *const () as u64;
    let pid = std::process::id();
    let mut s = Symbolizer::new();
    let p = hot_profile(&mut s, pid, addr);
    // Named from this test binary's DWARF, read through a mapping …
    assert!(outer_function(&p).contains("child_profile_releases_file_views"), "got {}", outer_function(&p));
    // … whose pages were given back once the profile was built.
    let released = s.stats().released_view_bytes;
    assert!(released >= 1 << 20, "released {released} bytes");
    let resident = crate::sys::views::resident_view_bytes();
    assert!(resident < 256 << 10, "{resident} bytes of file views still resident");
    // The parsed debug info is still cached: a second profile names the
    // same frame again, reading the pages back in.
    let hits = s.stats().cache.hits;
    let p = hot_profile(&mut s, pid, addr);
    assert!(outer_function(&p).contains("child_profile_releases_file_views"), "got {}", outer_function(&p));
    assert!(s.stats().cache.hits > hits);
}

/// Bytes allocated on the heap now (glibc's count of chunks in use).
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks
}

/// The heap is measured with no other thread of the test binary
/// allocating: in a child process of its own.
#[test]
fn a_one_shot_symbolizer_keeps_no_parsed_debug_info() {
    crate::sys::run_child_test(module_path!(), "child_one_shot_symbolizer_releases_parses");
}

#[test]
#[ignore = "run by a_one_shot_symbolizer_keeps_no_parsed_debug_info in a child process"]
fn child_one_shot_symbolizer_releases_parses() {
    // This test binary (its DWARF is tens of MB) names one of its own
    // functions: what blazesym keeps of it is measured once the profile is
    // built and dropped.
    let addr = child_one_shot_symbolizer_releases_parses as *const () as u64;
    let pid = std::process::id();
    let held_after_a_profile = |s: &mut Symbolizer| {
        let before = heap_in_use();
        let p = hot_profile(s, pid, addr);
        assert!(outer_function(&p).contains("child_one_shot_symbolizer_releases_parses"), "got {}", outer_function(&p));
        drop(p);
        heap_in_use().saturating_sub(before)
    };
    let one_shot = || Symbolizer::with_config(SymbolizerConfig { release_parsed: true, ..Default::default() });
    // The first profile of the process starts what lives as long as it
    // (the view pager's thread, lazily built statics).
    let _ = held_after_a_profile(&mut one_shot());
    let mut one_shot = one_shot();
    let released = held_after_a_profile(&mut one_shot);
    // A second profile parses the object again and names the same frame.
    let released_again = held_after_a_profile(&mut one_shot);
    let mut daemon = Symbolizer::new();
    let kept = held_after_a_profile(&mut daemon);
    eprintln!("heap held after a profile: one-shot {released} then {released_again} bytes, daemon {kept} bytes");
    assert!(kept >= 512 << 10, "a daemon's symbolizer keeps the parse: {kept} bytes");
    assert!(
        released.max(released_again) < kept / 8,
        "one-shot: {released} and {released_again} bytes held, daemon {kept}"
    );
}

/// Two processes of one binary and a third of another: named object by
/// object across processes, the same as process by process, whether the
/// parses are kept or released.
#[test]
fn processes_sharing_an_object_are_named_alike_in_both_modes() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "/proc/<pid>/map_files needs root");
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = compile(dir.path(), "shared").expect("gcc");
    let other = compile(dir.path(), "other").expect("gcc");
    let mut children: Vec<_> = [&binary, &binary, &other].iter().map(|b| spawn(b, &["1", "3000"])).collect();
    std::thread::sleep(Duration::from_millis(100));
    let offsets = function_offsets(&binary, "hot");
    let mut agg = Aggregate::default();
    for child in &children {
        let pid = child.id();
        // `hot` and `main`'s call of it, and an address in no mapping.
        let addr = hot_address(pid, &offsets);
        let main = hot_address(pid, &function_offsets(&binary, "main"));
        agg.user_addrs.insert(Pid::new(pid), vec![8, main, addr]);
        agg.samples.push(RawSample::once(
            Pid::new(pid),
            Tid::new(pid),
            "inline",
            Frames::Addrs(vec![addr, main, 8].into()),
            Frames::None,
        ));
        agg.total += 1;
    }
    let stacks = |s: &mut Symbolizer| {
        let template = Profile::new_cpu(99, SystemTime::now(), Duration::from_secs(1));
        let p = s.build_profile(&agg, template, |s| vec![s.count as i64]);
        p.samples
            .iter()
            .map(|s| {
                s.locations
                    .iter()
                    .map(|&i| {
                        let l = &p.locations[i];
                        let build_id = l.mapping.and_then(|m| p.mappings[m].build_id.clone());
                        (l.lines.iter().map(|l| (l.function.clone(), l.line)).collect::<Vec<_>>(), build_id)
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let mut one_shot = Symbolizer::with_config(SymbolizerConfig { release_parsed: true, ..Default::default() });
    let released = stacks(&mut one_shot);
    let kept = stacks(&mut Symbolizer::new());
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(released, kept);
    assert_eq!(released.len(), 3);
    for stack in &released {
        let names: Vec<&str> = stack.iter().map(|(lines, _)| lines.last().unwrap().0.as_str()).collect();
        assert_eq!(names[0], "hot", "{stack:?}");
        assert_eq!(names[1], "main", "{stack:?}");
        assert_eq!(names[2], "[unknown]+0x8", "{stack:?}");
        assert!(stack[0].1.is_some() && stack[1].1.is_some(), "build ids: {stack:?}");
    }
}

/// Kernel frames named from the index a capture reads ahead are the ones
/// a pass of kallsyms at the end gives (where the kernel cannot name them
/// itself), and the kernel names them alike.
#[test]
fn prefetched_kernel_symbols_name_frames_as_a_pass_of_kallsyms_does() {
    let text = std::fs::read_to_string(KALLSYMS).expect("kallsyms");
    let mut addrs: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            let addr = u64::from_str_radix(w.next()?, 16).ok()?;
            matches!(w.next()?, "t" | "T").then_some(addr + 5)
        })
        .filter(|&a| a > 5)
        .step_by(1009)
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert!(addrs.len() > 50, "kallsyms shows addresses to root: {} found", addrs.len());
    let mut agg = Aggregate { kernel_addrs: addrs.clone(), ..Default::default() };
    agg.samples.push(RawSample::once(Pid::new(1), Tid::new(1), "k", Frames::None, Frames::Addrs(addrs.clone().into())));
    agg.total = 1;
    let names = |s: &mut Symbolizer| {
        let template = Profile::new_cpu(99, SystemTime::now(), Duration::from_secs(1));
        let p = s.build_profile(&agg, template, |s| vec![s.count as i64]);
        p.locations.iter().filter(|l| l.kernel).map(|l| l.lines[0].function.clone()).collect::<Vec<_>>()
    };
    let from_kallsyms = || {
        let mut s = Symbolizer::new();
        s.kernel_names = InKernel::Unavailable;
        s
    };
    let streamed = names(&mut from_kallsyms());
    let mut s = from_kallsyms();
    // Other tests load BPF programs: the index is not used when one came
    // or went since it was read (then read again here).
    let mut indexed = Vec::new();
    for _ in 0..5 {
        s.prefetch_kernel_symbols();
        indexed = names(&mut s);
        if matches!(s.kernel_symbols, KernelSymbols::Ready(..)) {
            break;
        }
    }
    assert!(matches!(s.kernel_symbols, KernelSymbols::Ready(..)), "the index was read and used");
    // Kept for the capture's other profiles, then dropped.
    assert_eq!(names(&mut s), indexed);
    s.release_kernel_symbols();
    assert!(matches!(s.kernel_symbols, KernelSymbols::None));
    assert_eq!(indexed, streamed);
    assert!(indexed.iter().all(|n| !n.starts_with("[kernel]")), "{indexed:?}");

    // The kernel's own names: the same functions (an alias at the same
    // address may be chosen: the kernel prefers global names, the pass the
    // shortest), and no index read.
    let mut s = Symbolizer::new();
    s.prefetch_kernel_symbols();
    assert!(matches!(s.kernel_names, InKernel::Loaded(_)), "the kernel names its addresses (root, kernel >= 5.14)");
    assert!(matches!(s.kernel_symbols, KernelSymbols::None), "nothing read ahead");
    let by_kernel = names(&mut s);
    let mut starts: HashMap<&str, Vec<u64>> = HashMap::new();
    for l in text.lines() {
        let mut w = l.split_ascii_whitespace();
        let (Some(addr), Some(_), Some(name)) = (w.next(), w.next(), w.next()) else { continue };
        starts.entry(name).or_default().push(u64::from_str_radix(addr, 16).unwrap_or(0));
    }
    let mut same = 0;
    for (k, p) in by_kernel.iter().zip(&streamed) {
        let (ks, ps) = (&starts[k.as_str()], &starts[p.as_str()]);
        assert!(ks.iter().any(|a| ps.contains(a)), "kernel: {k} {ks:x?}, kallsyms: {p} {ps:x?}");
        same += usize::from(k == p);
    }
    assert!(same * 10 >= by_kernel.len() * 9, "{same} of {} alike", by_kernel.len());
}
