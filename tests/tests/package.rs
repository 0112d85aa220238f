//! The packages `cargo xtask dist` builds (`cargo xtask test` builds them
//! before the tests): the .deb installs on this host with dpkg, its unit
//! passes `systemd-analyze verify`, its binary runs, and it is removed
//! again; the tarball holds the same files.
#![expect(unused_crate_dependencies, reason = "each test file uses some of the package's dependencies")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stackwatch_tests::{exclusive, require_root, scratch_dir, target_dir};

fn package(suffix: &str) -> PathBuf {
    let dist = target_dir().join("dist");
    let found = std::fs::read_dir(&dist)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(suffix)).collect::<Vec<_>>())
        .unwrap_or_default();
    match found.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "expected one `*{suffix}` in `{}`, found {found:?}: run `cargo xtask dist` (`cargo xtask test` does)",
            dist.display()
        ),
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "stackwatch"]).output();
    }
}

#[test]
fn deb_installs_and_its_unit_verifies() {
    if !require_root() {
        return;
    }
    // dpkg's database is the machine's: one installing test at a time.
    let _lock = exclusive();
    let deb = package(".deb");
    let contents =
        String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)).stdout).into_owned();
    for path in [
        "./usr/bin/stackwatch",
        "./lib/systemd/system/stackwatch.service",
        "./etc/stackwatch/watch.toml",
        "./usr/share/man/man1/stackwatch.1.gz",
        "./usr/share/man/man1/stackwatch-watch.1.gz",
        "./usr/share/doc/stackwatch/usage.md",
        "./usr/share/doc/stackwatch/copyright",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "`{path}` missing from the .deb:\n{contents}");
    }
    let info = String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("--info").arg(&deb).arg("conffiles")).stdout)
        .into_owned();
    assert!(info.contains("/etc/stackwatch/watch.toml"), "the config is a conffile: {info}");

    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let status =
        String::from_utf8_lossy(&run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "stackwatch"])).stdout)
            .into_owned();
    assert_eq!(status, "install ok installed");
    let unit = Path::new("/lib/systemd/system/stackwatch.service");
    let text = std::fs::read_to_string(unit).unwrap_or_default();
    assert!(text.contains("ExecStart=/usr/bin/stackwatch watch --config /etc/stackwatch/watch.toml"), "{text}");
    // verify loads the unit as systemd would, checks ExecStart's binary exists, and
    // reports every warning on stderr.
    let verify = run(Command::new("systemd-analyze").arg("verify").arg(unit));
    let warnings = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(
        !warnings.lines().any(|l| l.contains("stackwatch.service")),
        "systemd-analyze verify complained about the unit:\n{warnings}"
    );
    let version = run(Command::new("/usr/bin/stackwatch").arg("--version"));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("stackwatch "));
    // The packaged config is what the unit starts with: it must parse.
    let check = Command::new("/usr/bin/stackwatch")
        .args(["watch", "--config", "/etc/stackwatch/watch.toml", "--listen", "not-an-address"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`not-an-address` is not an address") && !err.contains("invalid config file"),
        "the file parsed; the bad flag was refused: {err}"
    );
    let man = run(Command::new("zcat").arg("/usr/share/man/man1/stackwatch-watch.1.gz"));
    assert!(String::from_utf8_lossy(&man.stdout).contains("listen"), "the man page documents --listen");
    run(Command::new("dpkg").args(["--purge", "stackwatch"]));
    assert!(!Path::new("/usr/bin/stackwatch").exists());
}

#[test]
fn tarball_holds_the_same_files() {
    let tarball = package("-linux.tar.gz");
    let dir = scratch_dir("package-tarball");
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&dir));
    let root = std::fs::read_dir(&dir).ok().and_then(|mut d| d.next()).and_then(Result::ok).map(|e| e.path());
    let root = root.unwrap_or_else(|| panic!("empty tarball `{}`", tarball.display()));
    for path in ["bin/stackwatch", "systemd/stackwatch.service", "etc/watch.toml", "share/man/man1/stackwatch.1.gz"] {
        assert!(root.join(path).is_file(), "`{path}` missing from `{}`", tarball.display());
    }
    let version = run(Command::new(root.join("bin/stackwatch")).arg("--version"));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("stackwatch "));
}
