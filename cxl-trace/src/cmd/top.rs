//! `cxl-trace top`: the live view. On a terminal it drives the dashboard (`crate::tui`);
//! with `--no-tui`, or when stdout is not a terminal, it prints one JSON object per interval.
//!
//! Lines: one `{"type":"start"}` with the live probes, one `{"type":"interval"}` per interval,
//! one `{"type":"summary"}` with the whole run at the end. See docs/json-output.md.

use std::io::IsTerminal;

use crate::{
    cli::TopOpts,
    error::Result,
    session::{self, lines::JsonLines, Live, RunConfig},
    tui::live::LiveDashboard,
};

/// Runs `top`. Returns the exit code: the command's when one was given, else 0.
pub async fn run(opts: TopOpts) -> Result<i32> {
    let tui = !opts.no_tui && std::io::stdout().is_terminal();
    // Only the dashboard shows the programs' run time; the statistics cost two clock reads
    // per program run, so nothing else pays for them.
    let live = Live::open(&opts.trace, None, tui, true)?;
    let cfg = run_config(&opts);
    if tui {
        let sink = LiveDashboard::enter(&live)?;
        session::run(live, sink, &cfg).await
    } else {
        let sink = JsonLines::new(live.vm_start.clone(), opts.top);
        session::run(live, sink, &cfg).await
    }
}

/// The event loop's settings from `top`'s options.
pub fn run_config(o: &TopOpts) -> RunConfig {
    RunConfig {
        interval_s: o.interval,
        duration_s: o.trace.duration,
        pid: o.trace.pid,
        top: o.top,
        command: !o.trace.command.is_empty(),
        ringbuf_mib: o.trace.ringbuf_mib,
    }
}
