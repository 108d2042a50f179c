//! cxl-trace: eBPF observability for CXL and tiered memory.
//!
//! Layers, each using only those above it in this list:
//! - [`probe`]: the kernel side, the only module that touches aya (tested as root);
//! - [`model`]: pure decoding, accumulation, the recording format and the output types;
//! - [`cli`]: the options of every command;
//! - [`session`]: a live run (setup, the event loop, and its sinks);
//! - [`output`]: renderers of the model's types to text, Perfetto and SVG;
//! - [`tui`]: the terminal dashboard;
//! - [`cmd`]: one file per subcommand.

pub mod cli;
pub mod cmd;
pub mod error;
pub mod model;
pub mod output;
pub mod probe;
pub mod session;
#[cfg(test)]
mod testutil;
pub mod tui;

use cli::{Cli, Command};
use error::Result;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error::Error::Runtime(format!("cannot start the async runtime: {e}")))
}

/// The blast-radius helper (`cli::PROC_READER_ARG`): answers requests on stdin.
pub fn proc_reader() -> Result<i32> {
    session::blast::serve()
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Doctor(o) => cmd::doctor::run(&o),
        Command::Topology(o) => cmd::topology::run(&o),
        Command::Top(o) => runtime()?.block_on(cmd::top::run(o)),
        Command::Stat(o) => runtime()?.block_on(cmd::stat::run(o)),
        #[cfg(feature = "fleet")]
        Command::Exporter(o) => runtime()?.block_on(cmd::exporter::run(o)),
        #[cfg(not(feature = "fleet"))]
        Command::Exporter(_) => Err(error::Error::Runtime(
            "this cxl-trace was built without its `fleet` feature: no exporter".into(),
        )),
        Command::Record(o) => runtime()?.block_on(cmd::record::run(o)),
        Command::Report(o) => cmd::report::run(&o),
        Command::Export(o) => cmd::export::run(&o),
        Command::Replay(o) => cmd::replay::run(&o),
        Command::Diff(o) => cmd::diff::run(&o),
        Command::Redact(o) => cmd::redact::run(&o),
        Command::Schema(o) => cmd::schema::run(&o),
        Command::Completions(o) => cmd::completions::run(&o),
    }
}
