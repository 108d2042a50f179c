//! cxl-trace: eBPF observability for CXL and tiered memory.
//!
//! Layout: [`probe`] is the only module that touches aya (kernel-facing, tested as root);
//! [`tracefs`], [`event`], [`aggregate`], [`tiers`], [`rare`], [`topology`], [`vmstat`] are
//! pure and tested without root;
//! [`top`] and [`doctor`] wire them together behind the [`cli`].

pub mod aggregate;
pub mod cli;
pub mod dashboard;
pub mod diff;
pub mod doctor;
pub mod error;
pub mod event;
pub mod filter;
pub mod perfetto;
pub mod privs;
pub mod probe;
pub mod pte;
pub mod rare;
pub mod record;
pub mod recording;
pub mod redact;
pub mod replay;
pub mod report;
pub mod schema;
#[cfg(test)]
mod testutil;
pub mod tiers;
pub mod top;
pub mod topology;
pub mod tracefs;
pub mod vmstat;

use cli::{Cli, Command};
use error::Result;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error::Error::Runtime(format!("cannot start the async runtime: {e}")))
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Doctor(o) => {
            if let Some(dir) = &o.capture {
                let n = probe::facts::capture(dir)?;
                eprintln!(
                    "cxl-trace: {n} files of kernel facts written to {}",
                    dir.display()
                );
                return Ok(0);
            }
            let report = doctor::gather();
            let out = if o.base.json {
                schema::to_pretty(&doctor::to_doc(&report))?
            } else {
                doctor::to_text(&report)
            };
            top::write_stdout(out.as_bytes())?;
            Ok(0)
        }
        Command::Topology(o) => {
            let t = topology::Topology::live();
            let out = if o.json {
                schema::to_pretty(&schema::TopologyDoc {
                    schema_version: schema::SCHEMA_VERSION,
                    topology: t,
                })?
            } else {
                topology::to_text(&t)
            };
            top::write_stdout(out.as_bytes())?;
            Ok(0)
        }
        Command::Top(o) => runtime()?.block_on(top::run(o)),
        Command::Record(o) => runtime()?.block_on(record::run(o)),
        Command::Report(o) => report::run(&o),
        Command::Export(o) => report::export(&o),
        Command::Replay(o) => replay::run(&o),
        Command::Diff(o) => diff::run(&o),
        Command::Redact(o) => redact::run(&o),
        Command::Schema(o) => {
            let out = match o.command {
                Some(d) => schema::to_pretty(&d.schema())?,
                None => {
                    let all: serde_json::Map<String, serde_json::Value> = schema::Document::ALL
                        .iter()
                        .map(|d| (d.name().to_string(), d.schema().to_value()))
                        .collect();
                    schema::to_pretty(&all)?
                }
            };
            top::write_stdout(out.as_bytes())?;
            Ok(0)
        }
    }
}
