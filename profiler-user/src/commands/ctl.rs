//! `stackwatch ctl`: sends one command to a running `watch` and reports the
//! answer (the request itself is [`crate::control::client`]'s). A daemon
//! that is not there, or does not answer within `--timeout`, is a clear
//! error (exit code 1), never a hang.

use std::io::Write as _;

use crate::cli::{CtlArgs, CtlCommand};
use crate::control::{client, Command};

/// Runs the command. `Ok(true)`: the daemon did it; `Ok(false)`: the daemon
/// refused it (already reported on stderr); `Err`: no usable answer.
pub fn run(args: &CtlArgs) -> anyhow::Result<bool> {
    let command = match args.command {
        CtlCommand::Start { duration, profiles } => Command::Start { duration, profiles },
        CtlCommand::Stop => Command::Stop,
        CtlCommand::Toggle => Command::Toggle,
        CtlCommand::Status => Command::Status,
    };
    let (raw, reply) = client::request(&args.control, command, args.timeout)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{raw}")?;
        return Ok(reply.ok);
    }
    if reply.ok {
        writeln!(stdout, "{}", reply.message)?;
    } else {
        eprintln!("error: {}", reply.message);
    }
    if !reply.files.is_empty() {
        writeln!(stdout, "wrote:")?;
        for path in &reply.files {
            writeln!(stdout, "  {}", path.display())?;
        }
    }
    Ok(reply.ok)
}
