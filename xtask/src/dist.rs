//! `cargo xtask dist`: the packages, under `target/dist/`:
//!
//! - `stackwatch_<version>_<arch>.deb`: `/usr/bin/stackwatch`, the systemd
//!   unit (`/lib/systemd/system/stackwatch.service`, not enabled: a
//!   profiler runs when an operator says so), the default config
//!   (`/etc/stackwatch/watch.toml`, a conffile, so local edits survive
//!   upgrades), the docs and the man pages rendered from the clap
//!   definitions;
//! - `stackwatch-<version>-<arch>-linux.tar.gz`: the same files in one
//!   directory, for hosts without dpkg.
//!
//! The binary is the `release-lto` build ([`crate::build_shipped`]: fat
//! LTO, DWARF stripped, the symbol table kept so stackwatch still names its
//! own frames). Only dpkg-deb, gzip and tar are used: nothing to install
//! beyond Debian's base.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{build_shipped, cmd, target_dir, workspace_root};

/// Where the packages go.
pub fn dist_dir() -> PathBuf {
    target_dir().join("dist")
}

/// The files both packages hold, by their path on the installed system.
struct Payload {
    binary: PathBuf,
    man_dir: PathBuf,
}

/// Builds both packages; returns their paths (.deb first).
pub fn dist() -> Result<Vec<PathBuf>> {
    let bin = build_shipped()?;
    let root = workspace_root();
    let version = env!("CARGO_PKG_VERSION");
    let arch = deb_arch()?;
    let out = dist_dir();
    let work = out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("failed to clear `{}`", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("failed to create `{}`", work.display()))?;

    let binary = work.join("stackwatch");
    fs::copy(&bin, &binary).with_context(|| format!("failed to copy `{}`", bin.display()))?;
    let man_dir = work.join("man");
    crate::man_pages_of(&bin, &man_dir)?;
    let payload = Payload { binary, man_dir };

    let deb = out.join(format!("stackwatch_{version}_{arch}.deb"));
    let stage = work.join("deb");
    stage_tree(&root, &payload, &stage, Layout::Deb)?;
    write_control(&stage, version, &arch, &payload)?;
    let _ = fs::remove_file(&deb);
    cmd::run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&stage).arg(&deb))?;

    let name = format!("stackwatch-{version}-{}-linux", std::env::consts::ARCH);
    let tar_stage = work.join("tar");
    stage_tree(&root, &payload, &tar_stage.join(&name), Layout::Tarball)?;
    let tarball = out.join(format!("{name}.tar.gz"));
    cmd::run(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-czf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&tar_stage)
            .arg(&name),
    )?;
    fs::remove_dir_all(&work).with_context(|| format!("failed to remove `{}`", work.display()))?;
    Ok(vec![deb, tarball])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Paths of the installed system.
    Deb,
    /// One directory: `bin/`, `share/man/man1/`, `share/doc/`, `etc/`, `systemd/`.
    Tarball,
}

fn stage_tree(root: &Path, payload: &Payload, stage: &Path, layout: Layout) -> Result<()> {
    let (bin_dir, unit_dir, etc_dir, doc_dir, man1) = match layout {
        Layout::Deb => {
            ("usr/bin", "lib/systemd/system", "etc/stackwatch", "usr/share/doc/stackwatch", "usr/share/man/man1")
        }
        Layout::Tarball => ("bin", "systemd", "etc", "share/doc/stackwatch", "share/man/man1"),
    };
    let bin = stage.join(bin_dir).join("stackwatch");
    copy(&payload.binary, &bin, 0o755)?;
    // The unit names the binary where the package puts it.
    let unit = fs::read_to_string(root.join("packaging/stackwatch.service")).context("failed to read the unit")?;
    let exec = match layout {
        Layout::Deb => "/usr/bin/stackwatch",
        Layout::Tarball => "/usr/local/bin/stackwatch",
    };
    let unit = unit.replace("/usr/local/bin/stackwatch", exec);
    write(&stage.join(unit_dir).join("stackwatch.service"), unit.as_bytes(), 0o644)?;
    copy(&root.join("packaging/watch.toml"), &stage.join(etc_dir).join("watch.toml"), 0o644)?;
    let docs = stage.join(doc_dir);
    copy(&root.join("README.md"), &docs.join("README.md"), 0o644)?;
    for doc in ["usage.md", "troubleshooting.md", "architecture.md"] {
        let source = root.join("docs").join(doc);
        if source.is_file() {
            copy(&source, &docs.join(doc), 0o644)?;
        }
    }
    let mut copyright = String::from(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: stackwatch\n\nFiles: *\nLicense: MIT or Apache-2.0\n\n",
    );
    copyright.push_str(&fs::read_to_string(root.join("LICENSE-MIT")).context("failed to read LICENSE-MIT")?);
    write(&docs.join("copyright"), copyright.as_bytes(), 0o644)?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&payload.man_dir)
        .with_context(|| format!("failed to list `{}`", payload.man_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    pages.sort();
    if pages.is_empty() {
        bail!("no man pages were rendered into `{}`", payload.man_dir.display());
    }
    for page in pages {
        let Some(name) = page.file_name().and_then(|n| n.to_str()) else { continue };
        let target = stage.join(man1).join(format!("{name}.gz"));
        fs::create_dir_all(stage.join(man1))?;
        let gz = Command::new("gzip").args(["-9n", "-c"]).arg(&page).output().context("failed to run gzip")?;
        if !gz.status.success() {
            bail!("gzip failed on `{}`", page.display());
        }
        write(&target, &gz.stdout, 0o644)?;
    }
    Ok(())
}

fn write_control(stage: &Path, version: &str, arch: &str, payload: &Payload) -> Result<()> {
    let size_kib = fs::metadata(&payload.binary).map(|m| m.len() / 1024).unwrap_or(0);
    let control = format!(
        "Package: stackwatch\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: stackwatch developers <stackwatch@example.invalid>\n\
         Section: devel\n\
         Priority: optional\n\
         Depends: libc6 (>= 2.34)\n\
         Recommends: systemd\n\
         Installed-Size: {size_kib}\n\
         Homepage: https://example.invalid/stackwatch\n\
         Description: eBPF whole-host sampling profiler (pprof and flamegraphs)\n \
         stackwatch records CPU, off-CPU and memory profiles of a process, a cgroup\n \
         or the whole host with eBPF and writes pprof files, flamegraphs and a\n \
         manifest. `stackwatch watch` runs as a service that captures on command,\n \
         on a threshold rule or on an Alertmanager/Grafana alert, serves Prometheus\n \
         metrics and can push every profile to Grafana Pyroscope.\n"
    );
    let debian = stage.join("DEBIAN");
    write(&debian.join("control"), control.as_bytes(), 0o644)?;
    write(&debian.join("conffiles"), b"/etc/stackwatch/watch.toml\n", 0o644)?;
    // Nothing is enabled or started: only systemd is told the unit exists.
    // DPKG_ROOT is set when installing into another root (`dpkg --root`):
    // the running systemd is not that root's.
    let postinst = "#!/bin/sh\nset -e\n\
        if [ \"$1\" = configure ] && [ -z \"$DPKG_ROOT\" ] && [ -d /run/systemd/system ]; then\n\
        \tsystemctl daemon-reload || true\nfi\n";
    write(&debian.join("postinst"), postinst.as_bytes(), 0o755)?;
    let postrm = "#!/bin/sh\nset -e\n\
        if [ -z \"$DPKG_ROOT\" ] && [ -d /run/systemd/system ]; then\n\
        \tsystemctl daemon-reload || true\nfi\n";
    write(&debian.join("postrm"), postrm.as_bytes(), 0o755)?;
    Ok(())
}

fn deb_arch() -> Result<String> {
    let arch = cmd::stdout(Command::new("dpkg").arg("--print-architecture"))?;
    Ok(arch.trim().to_owned())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("failed to read `{}`", from.display()))?;
    write(to, &bytes, mode)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("failed to create `{}`", parent.display()))?;
        // dpkg-deb refuses group- or world-writable control directories.
        fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
    }
    fs::write(path, bytes).with_context(|| format!("failed to write `{}`", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of `{}`", path.display()))
}
