//! `cxl-trace completions SHELL`: the shell's completion script for every subcommand and
//! flag, generated from the command line's definition (clap_complete), so it never drifts.

use clap::CommandFactory as _;

use crate::{
    cli::{Cli, CompletionsOpts},
    error::Result,
    output::write_stdout,
};

/// Prints the script; a closed stdout (`| head`) is not an error.
pub fn run(o: &CompletionsOpts) -> Result<i32> {
    let mut buf = Vec::new();
    clap_complete::generate(o.shell, &mut Cli::command(), "cxl-trace", &mut buf);
    write_stdout(&buf)?;
    Ok(0)
}
