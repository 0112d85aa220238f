//! The directory sink: one capture's profiles as files in a directory.
//!
//! For each profile kind a capture writes a gzipped pprof, an inferno
//! flamegraph and optionally the folded stacks behind it, then a JSON
//! manifest describing the capture and listing the files (the encoders are
//! `crate::profile`'s). Every file goes through [`super::files`], which
//! writes it as an unnamed file (or under a hidden temporary name), mode
//! 0640, and links it into place without ever replacing an existing file. A
//! file that cannot be written (a full disk) does not stop the others, and
//! the manifest, written last, says which files are missing and why.
//!
//! File names follow the contract: `<name>-<pid>-<kind>-<YYYYMMDDTHHMMSSZ>.pb.gz`
//! (and `.svg`, `.folded`) and `<name>-<pid>-capture-<ts>.json`, with `-<pid>`
//! left out for a whole-host capture. When any of those names is already taken
//! (two captures in the same second, or a leftover), the whole capture gets
//! the first free suffix `-1`, `-2`, … before the extension, so its files keep
//! matching names and nothing is overwritten.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::files::OutputDir;
use super::{FailedFile, Sink, Written};
use crate::profile::capture::{CaptureInfo, FinishedCapture, TargetInfo};
use crate::profile::format::{FileFormat, Formats};
use crate::profile::time::UtcTime;
use crate::profile::{flamegraph, folded, manifest, pprof, ProfileKind};

/// Files in a directory, named by the contract (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirSink {
    dir: PathBuf,
    formats: Formats,
    /// Handed each file (`fchown`), for `record` under `sudo`.
    owner: Option<(u32, u32)>,
}

impl DirSink {
    pub(crate) fn new(dir: PathBuf, formats: Formats, owner: Option<(u32, u32)>) -> Self {
        Self { dir, formats, owner }
    }
}

impl Sink for DirSink {
    fn write(&self, capture: &FinishedCapture) -> anyhow::Result<Written> {
        write_capture(&self.dir, capture, self.formats, self.owner)
    }
}

/// Fails early, before anything is loaded, when `dir` cannot take files:
/// creates it if missing.
pub(crate) fn check_output_dir(dir: &Path) -> anyhow::Result<()> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        // On a path that exists but cannot be followed (a symlink loop or a
        // dangling link) mkdir says only "File exists"; stat says why.
        let cause = match std::fs::metadata(dir) {
            Err(stat) if e.kind() == std::io::ErrorKind::AlreadyExists => stat,
            _ => e,
        };
        return Err(anyhow::Error::new(cause).context(format!("cannot create output directory `{}`", dir.display())));
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot use output directory `{}`", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("output directory `{}` is not a directory", dir.display());
    }
    // access(2) honours read-only mounts and, for non-root users, permissions.
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("output directory path contains a NUL byte")?;
    // SAFETY: `c` is a valid NUL-terminated string.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("cannot write to output directory `{}`: {e}; choose another with --output-dir", dir.display());
    }
    Ok(())
}

/// A file of the capture before it is written.
struct Planned {
    /// File name without suffix and extension.
    stem: String,
    format: FileFormat,
    content: Content,
}

/// What a planned file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    /// The capture's profile at this index.
    Profile(usize),
    /// The flight recorder's window (`…-cpu-history-….pb.gz`).
    History,
    /// Its differential flamegraph (`…-cpu-diff-….svg`).
    Diff,
    Manifest,
}

impl Planned {
    fn file_name(&self, suffix: &str) -> String {
        format!("{}{suffix}.{}", self.stem, self.format.extension())
    }
}

/// Longest wait for another stackwatch writing into the same directory
/// (see [`OutputDir::lock`]); a write takes well under a second.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes every file of one capture into `dir`.
/// `owner`: Some((uid, gid)) → fchown each file to it (used for SUDO_UID/SUDO_GID).
///
/// Files are written one by one, most valuable first (pprof, then the
/// flamegraph), and each is attempted even when an earlier one failed (a
/// flamegraph too big for a full disk does not stop a small `.folded`). The
/// manifest comes last and is always attempted: it lists the files written
/// and those that were not, with the reason. Nothing written is removed.
/// `Err` only when nothing could be attempted (the directory cannot be
/// opened, no free name); otherwise [`Written`] says what happened.
pub(crate) fn write_capture(
    dir: &Path,
    capture: &FinishedCapture,
    formats: Formats,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<Written> {
    let (info, profiles) = (&capture.info, &capture.profiles[..]);
    let mut kinds = BTreeSet::new();
    for profile in profiles {
        if !kinds.insert(profile.kind) {
            bail!("capture has two {} profiles; their files would have the same name", profile.kind);
        }
    }
    // An empty `--output-dir` value means the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let out = OutputDir::open(dir)?;
    // Held until `out` is dropped: choosing the suffix and linking the files
    // under it is one step for other stackwatch writers of this directory.
    out.lock(LOCK_WAIT);

    let base = file_base(&info.target);
    let timestamp = UtcTime::from_system(info.start).compact();
    let mut plan = Vec::new();
    for (index, profile) in profiles.iter().enumerate() {
        let stem = format!("{base}-{}-{timestamp}", profile.kind);
        for (format, wanted) in
            [(FileFormat::Pprof, formats.pprof), (FileFormat::Svg, formats.svg), (FileFormat::Folded, formats.folded)]
        {
            if wanted {
                plan.push(Planned { stem: stem.clone(), format, content: Content::Profile(index) });
            }
        }
    }
    if capture.history.is_some() {
        // Whatever --formats says: these two are what the history is for.
        let stem = |what: &str| format!("{base}-{}-{what}-{timestamp}", ProfileKind::Cpu);
        plan.push(Planned { stem: stem("history"), format: FileFormat::Pprof, content: Content::History });
        plan.push(Planned { stem: stem("diff"), format: FileFormat::Svg, content: Content::Diff });
    }
    plan.push(Planned {
        stem: format!("{base}-capture-{timestamp}"),
        format: FileFormat::Manifest,
        content: Content::Manifest,
    });
    let suffix = free_suffix(&out, &plan)?;
    Ok(write_planned(&out, capture, &plan, &suffix, owner))
}

fn write_planned(
    out: &OutputDir,
    capture: &FinishedCapture,
    plan: &[Planned],
    suffix: &str,
    owner: Option<(u32, u32)>,
) -> Written {
    let (info, profiles) = (&capture.info, &capture.profiles[..]);
    let history = capture.history.as_ref();
    // Folded stacks feed both the flamegraph and the `.folded` file.
    let mut folded_cache: Vec<Option<Vec<String>>> = vec![None; profiles.len()];
    let mut written = Written::default();
    let mut entries = Vec::with_capacity(plan.len());
    let mut failed_entries = Vec::new();
    for planned in plan {
        let name = planned.file_name(suffix);
        let profile = match planned.content {
            Content::Profile(i) => profiles.get(i).map(|p| (i, p)),
            _ => None,
        };
        let result = (|| {
            #[cfg(test)]
            tests::injected_failure(&name)?;
            let bytes = match (planned.content, planned.format, profile) {
                (Content::Manifest, ..) => {
                    manifest::render(info, profiles, history.map(|h| &h.info), &entries, &failed_entries)?
                }
                (Content::History, ..) => match history {
                    Some(h) => pprof::encode_gzip(&h.profile, &pprof_comments(info))
                        .context("failed to encode the history pprof")?,
                    None => bail!("internal error: no history for `{name}`"),
                },
                (Content::Diff, ..) => match history {
                    Some(h) => h.diff_svg.clone(),
                    None => bail!("internal error: no history for `{name}`"),
                },
                (Content::Profile(_), FileFormat::Pprof, Some((_, profile))) => {
                    pprof::encode_gzip(profile, &pprof_comments(info))
                        .with_context(|| format!("failed to encode the {} pprof", profile.kind))?
                }
                (Content::Profile(_), FileFormat::Svg | FileFormat::Folded, Some((index, profile))) => {
                    let lines = folded_cache[index].get_or_insert_with(|| {
                        folded::folded_lines(profile, folded::flame_value_index(profile), info.target.multi_process())
                    });
                    if planned.format == FileFormat::Svg {
                        flamegraph::render(info, profile, lines)
                            .with_context(|| format!("failed to render the {} flamegraph", profile.kind))?
                    } else {
                        folded::render(lines)
                    }
                }
                _ => bail!("internal error: no profile for `{name}`"),
            };
            out.write_file(&name, &bytes, owner)
        })();
        let kind = match planned.content {
            Content::History | Content::Diff => Some(ProfileKind::Cpu),
            _ => profile.map(|(_, p)| p.kind),
        };
        match result {
            Ok(path) => {
                written.paths.push(path);
                if planned.format != FileFormat::Manifest {
                    entries.push(manifest::FileEntry { path: name, kind, format: planned.format });
                }
            }
            Err(err) => {
                let reason = format!("{err:#}");
                failed_entries.push(manifest::FailedEntry {
                    path: name.clone(),
                    kind,
                    format: planned.format,
                    error: reason.clone(),
                });
                written.failed.push(FailedFile { path: out.path().join(&name), reason });
            }
        }
    }
    if !written.paths.is_empty() {
        if let Err(err) = out.sync() {
            written.failed.push(FailedFile { path: out.path().to_owned(), reason: format!("{err:#}") });
        }
    }
    written
}

/// The first suffix (`""`, `-1`, `-2`, …) under which none of the capture's
/// names exist yet. The final rename still refuses to replace a file, so a
/// name taken after this check makes the write fail instead of clobbering.
fn free_suffix(out: &OutputDir, plan: &[Planned]) -> anyhow::Result<String> {
    const MAX_SUFFIX: u32 = 1000;
    for n in 0..MAX_SUFFIX {
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        let mut taken = false;
        for planned in plan {
            if out.exists(&planned.file_name(&suffix))? {
                taken = true;
                break;
            }
        }
        if !taken {
            return Ok(suffix);
        }
    }
    let first = plan.first().map(|p| p.file_name("")).unwrap_or_default();
    bail!(
        "`{}` and {MAX_SUFFIX} numbered variants already exist in `{}`; clean up the output directory",
        first,
        out.path().display()
    )
}

/// Freeform pprof comments (`go tool pprof -comments`) so a lone `.pb.gz`
/// still says what it is.
fn pprof_comments(info: &CaptureInfo) -> Vec<String> {
    let mut comments = vec![
        format!("stackwatch {}", info.stackwatch_version),
        format!("target: {}", info.target.description),
        format!("trigger: {}", info.trigger.summary()),
        format!("host: {} (kernel {})", info.host, info.kernel),
    ];
    if info.samples_lost > 0 {
        comments.push(format!("samples lost: {}", info.samples_lost));
    }
    comments
}

/// `<name>-<pid>`, or `<name>` when there is no pid (whole-host capture).
fn file_base(target: &TargetInfo) -> String {
    let name = sanitize_file_component(&target.file_name);
    match target.file_pid {
        Some(pid) => format!("{name}-{pid}"),
        None => name,
    }
}

/// Keeps a file-name component to a safe, shell-friendly set. The target
/// module already sanitizes process names; this guards against a `/` or a
/// leading dot ever reaching the file system.
fn sanitize_file_component(name: &str) -> String {
    const MAX_LEN: usize = 64;
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') { c } else { '_' })
        .take(MAX_LEN)
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '-']);
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// Returns the invoking user's ids when running as root under `sudo`, so
/// output files can be handed to them. `None` when not root, when the
/// variables are missing or malformed, or when the invoking user is root.
pub(crate) fn sudo_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    parse_sudo_owner(std::env::var("SUDO_UID").ok().as_deref(), std::env::var("SUDO_GID").ok().as_deref())
}

fn parse_sudo_owner(uid: Option<&str>, gid: Option<&str>) -> Option<(u32, u32)> {
    let uid: u32 = uid?.trim().parse().ok()?;
    let gid: u32 = gid?.trim().parse().ok()?;
    (uid != 0).then_some((uid, gid))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;
    use crate::profile::testdata::{empty_profile, host_info, offcpu_profile, pid_info, sample_profile};
    use crate::profile::Profile;

    fn write_parts(
        dir: &Path,
        info: &CaptureInfo,
        profiles: &[Profile],
        formats: Formats,
        owner: Option<(u32, u32)>,
    ) -> anyhow::Result<Written> {
        let capture = FinishedCapture { info: info.clone(), profiles: profiles.to_vec(), history: None };
        write_capture(dir, &capture, formats, owner)
    }

    thread_local! {
        /// Makes `write_planned` fail before writing a file whose name ends so.
        static FAIL_ON: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    pub(super) fn injected_failure(name: &str) -> anyhow::Result<()> {
        match FAIL_ON.with(Cell::get) {
            Some(ending) if name.ends_with(ending) => bail!("injected failure writing `{name}`"),
            _ => Ok(()),
        }
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn writes_a_host_capture() {
        let tmp = tempfile::tempdir().unwrap();
        let formats = Formats { folded: true, ..Formats::default() };
        let paths =
            write_parts(tmp.path(), &host_info(), &[sample_profile()], formats, None).unwrap().into_result().unwrap();
        assert_eq!(
            names(&paths),
            [
                "host-cpu-20261126T123000Z.pb.gz",
                "host-cpu-20261126T123000Z.svg",
                "host-cpu-20261126T123000Z.folded",
                "host-capture-20261126T123000Z.json",
            ]
        );
        assert!(paths.iter().all(|p| p.parent() == Some(tmp.path())));
        for path in &paths {
            assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o7777, 0o640, "{}", path.display());
        }
        assert_eq!(dir_entries(tmp.path()).len(), 4, "no temporary files left");

        let profile = pprof::decode(&std::fs::read(&paths[0]).unwrap()).unwrap();
        assert_eq!(profile.sample.len(), 6);
        assert!(profile.string_table.iter().any(|s| s == "trigger: manual (record)"));
        assert!(std::fs::read_to_string(&paths[1]).unwrap().starts_with("<?xml"));
        let folded = std::fs::read_to_string(&paths[2]).unwrap();
        assert!(folded.starts_with("myservice (pid 100);"), "host captures get a root per process: {folded}");

        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths[3]).unwrap()).unwrap();
        assert_eq!(manifest["schema"], 1);
        let listed: Vec<&str> =
            manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(listed, names(&paths[..3]));
        assert_eq!(manifest["files"][0]["format"], "pprof");
        assert_eq!(manifest["files"][1]["kind"], "cpu");
    }

    #[test]
    fn pid_capture_names_and_several_kinds() {
        let tmp = tempfile::tempdir().unwrap();
        let profiles = [sample_profile(), offcpu_profile()];
        let paths =
            write_parts(tmp.path(), &pid_info(), &profiles, Formats::default(), None).unwrap().into_result().unwrap();
        assert_eq!(
            names(&paths),
            [
                "myservice-100-cpu-20261126T123000Z.pb.gz",
                "myservice-100-cpu-20261126T123000Z.svg",
                "myservice-100-offcpu-20261126T123000Z.pb.gz",
                "myservice-100-offcpu-20261126T123000Z.svg",
                "myservice-100-capture-20261126T123000Z.json",
            ]
        );
        let svg = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(!svg.contains("(pid 100)"), "a single pid gets no process root");
    }

    #[test]
    fn second_capture_in_the_same_second_gets_a_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let first = write_parts(tmp.path(), &host_info(), &[sample_profile()], Formats::default(), None)
            .unwrap()
            .into_result()
            .unwrap();
        let before: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let mut other = host_info();
        other.samples_collected = 1;
        let second = write_parts(tmp.path(), &other, &[empty_profile()], Formats::default(), None)
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(
            names(&second),
            [
                "host-cpu-20261126T123000Z-1.pb.gz",
                "host-cpu-20261126T123000Z-1.svg",
                "host-capture-20261126T123000Z-1.json"
            ]
        );
        let after: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert_eq!(before, after, "the first capture is untouched");

        // A stray file taking just one of the names moves the whole capture.
        std::fs::write(tmp.path().join("host-capture-20261126T123000Z-2.json"), b"stray").unwrap();
        let third = write_parts(tmp.path(), &host_info(), &[empty_profile()], Formats::default(), None)
            .unwrap()
            .into_result()
            .unwrap();
        assert!(names(&third).iter().all(|n| n.contains("T123000Z-3.")), "{third:?}");
    }

    #[test]
    fn captures_written_at_once_into_one_directory_all_get_their_names() {
        // Processes or threads writing captures of the same name and second
        // at the same moment: each must end with a whole capture under its
        // own suffix, none may lose a file to another's race.
        for _ in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let writers: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, barrier) = (tmp.path().to_owned(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        write_parts(&dir, &host_info(), &[sample_profile()], Formats::default(), None)
                            .unwrap()
                            .into_result()
                            .unwrap()
                    })
                })
                .collect();
            let mut suffixes: Vec<String> = writers
                .into_iter()
                .map(|w| {
                    let paths = w.join().unwrap();
                    assert_eq!(paths.len(), 3, "{paths:?}");
                    let manifest = names(&paths)[2].clone();
                    manifest.trim_start_matches("host-capture-20261126T123000Z").to_owned()
                })
                .collect();
            suffixes.sort();
            assert_eq!(suffixes, ["-1.json", "-2.json", "-3.json", ".json"]);
        }
    }

    #[test]
    fn a_symlink_loop_as_output_dir_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let looped = tmp.path().join("loop");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        let err = format!("{:#}", check_output_dir(&looped).unwrap_err());
        assert!(err.contains("symbolic links") && !err.contains("exists"), "{err}");
    }

    #[test]
    fn empty_capture_still_writes_valid_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut info = host_info();
        info.samples_collected = 0;
        let formats = Formats { folded: true, ..Formats::default() };
        let paths = write_parts(tmp.path(), &info, &[empty_profile()], formats, None).unwrap().into_result().unwrap();
        assert_eq!(paths.len(), 4);
        assert!(pprof::decode(&std::fs::read(&paths[0]).unwrap()).unwrap().sample.is_empty());
        assert!(std::fs::read_to_string(&paths[1]).unwrap().contains("no samples were collected"));
        assert!(std::fs::read(&paths[2]).unwrap().is_empty());
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths[3]).unwrap()).unwrap();
        assert_eq!(manifest["samples_collected"], 0);
        assert_eq!(manifest["profiles"][0]["samples"], 0);
    }

    #[test]
    fn files_are_handed_to_the_owner() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: geteuid/getuid/getgid have no preconditions.
        let owner =
            if unsafe { libc::geteuid() } == 0 { (65534, 65534) } else { unsafe { (libc::getuid(), libc::getgid()) } };
        let paths = write_parts(tmp.path(), &host_info(), &[sample_profile()], Formats::default(), Some(owner))
            .unwrap()
            .into_result()
            .unwrap();
        for path in &paths {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), owner, "{}", path.display());
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        }
    }

    #[test]
    fn a_failing_file_keeps_the_others_and_the_manifest_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        FAIL_ON.with(|f| f.set(Some(".svg")));
        let formats = Formats { folded: true, ..Formats::default() };
        let result = write_parts(tmp.path(), &host_info(), &[sample_profile()], formats, None);
        FAIL_ON.with(|f| f.set(None));
        let written = result.unwrap();
        assert_eq!(
            names(&written.paths),
            [
                "host-cpu-20261126T123000Z.pb.gz",
                "host-cpu-20261126T123000Z.folded",
                "host-capture-20261126T123000Z.json"
            ]
        );
        assert_eq!(
            written.failed,
            [FailedFile {
                path: tmp.path().join("host-cpu-20261126T123000Z.svg"),
                reason: "injected failure writing `host-cpu-20261126T123000Z.svg`".into(),
            }]
        );
        let msg = format!("{:#}", written.error().unwrap());
        assert!(msg.starts_with("injected failure writing `host-cpu-20261126T123000Z.svg`; kept `"), "{msg}");
        assert!(msg.contains("; kept `") && msg.contains("host-cpu-20261126T123000Z.pb.gz`"), "{msg}");
        let mut on_disk = names(&written.paths);
        on_disk.sort();
        assert_eq!(dir_entries(tmp.path()), on_disk, "nothing else, no temporary file");

        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&written.paths[2]).unwrap()).unwrap();
        let listed: Vec<&str> =
            manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(listed, ["host-cpu-20261126T123000Z.pb.gz", "host-cpu-20261126T123000Z.folded"]);
        assert_eq!(manifest["failed"][0]["path"], "host-cpu-20261126T123000Z.svg");
        assert_eq!(manifest["failed"][0]["format"], "svg");
        assert_eq!(manifest["failed"][0]["error"], "injected failure writing `host-cpu-20261126T123000Z.svg`");
    }

    #[test]
    fn a_failing_manifest_is_reported_and_the_profiles_kept() {
        let tmp = tempfile::tempdir().unwrap();
        FAIL_ON.with(|f| f.set(Some(".json")));
        let result = write_parts(tmp.path(), &host_info(), &[sample_profile()], Formats::default(), None);
        FAIL_ON.with(|f| f.set(None));
        let written = result.unwrap();
        assert_eq!(names(&written.paths), ["host-cpu-20261126T123000Z.pb.gz", "host-cpu-20261126T123000Z.svg"]);
        assert_eq!(written.failed.len(), 1);
        assert!(written.failed[0].path.ends_with("host-capture-20261126T123000Z.json"));
        assert!(written.into_result().is_err());
    }

    #[test]
    fn nothing_written_gives_the_cause() {
        let tmp = tempfile::tempdir().unwrap();
        FAIL_ON.with(|f| f.set(Some("")));
        let result = write_parts(tmp.path(), &host_info(), &[empty_profile()], Formats::default(), None);
        FAIL_ON.with(|f| f.set(None));
        let written = result.unwrap();
        assert!(written.paths.is_empty() && written.failed.len() == 3);
        assert_eq!(
            format!("{:#}", written.error().unwrap()),
            "injected failure writing `host-cpu-20261126T123000Z.pb.gz`"
        );
        assert!(dir_entries(tmp.path()).is_empty());
    }

    #[test]
    fn rejects_two_profiles_of_one_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let err = write_parts(tmp.path(), &host_info(), &[empty_profile(), empty_profile()], Formats::default(), None)
            .unwrap_err();
        assert!(err.to_string().contains("two cpu profiles"), "{err}");
        assert!(dir_entries(tmp.path()).is_empty());
    }

    #[test]
    fn missing_output_dir_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("missing");
        let err = write_parts(&dir, &host_info(), &[empty_profile()], Formats::default(), None).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("cannot write to output directory `{}`: No such file or directory (os error 2)", dir.display())
        );
    }

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(sanitize_file_component("redis-server"), "redis-server");
        assert_eq!(sanitize_file_component("../etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_file_component("..."), "unknown");
        assert_eq!(sanitize_file_component("nginx: worker"), "nginx__worker");
    }

    #[test]
    fn sudo_owner_parsing() {
        assert_eq!(parse_sudo_owner(Some("1000"), Some("1001")), Some((1000, 1001)));
        assert_eq!(parse_sudo_owner(Some("0"), Some("0")), None);
        assert_eq!(parse_sudo_owner(Some("1000"), None), None);
        assert_eq!(parse_sudo_owner(Some("x"), Some("1")), None);
        assert_eq!(parse_sudo_owner(None, None), None);
    }
}
