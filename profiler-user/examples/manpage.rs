//! Renders stackwatch's man pages from its clap definitions:
//! `stackwatch.1` and one `stackwatch-<command>.1` per subcommand, into the
//! directory given as the only argument. `cargo xtask dist` runs it for the
//! packages; an example rather than a subcommand, so the shipped binary
//! carries no man-page renderer.
#![expect(unused_crate_dependencies, reason = "an example uses few of the package's dependencies")]

use std::path::PathBuf;

use clap::CommandFactory as _;
use stackwatch::cli::Cli;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: manpage OUTPUT_DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    let command = Cli::command();
    render(&command, "stackwatch", &dir)?;
    for sub in command.get_subcommands() {
        let name = format!("stackwatch-{}", sub.get_name());
        // clap names are `&'static str` here; this process ends right after.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        let sub = sub.clone().name(static_name).version(env!("CARGO_PKG_VERSION"));
        render(&sub, &name, &dir)?;
    }
    Ok(())
}

fn render(command: &clap::Command, name: &str, dir: &std::path::Path) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)
}
