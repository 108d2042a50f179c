//! `cxl-trace record`: the live run with a recording sink instead of a display (see
//! `crate::session::recorder`).

use std::io::Write;

use crate::{
    cli::{RecordOpts, TopOpts},
    error::Result,
    model::redact::Key,
    session::{self, recorder::RecordSpec, Live},
};

/// Runs `record`. Returns the exit code: the command's when one was given, else 0.
pub async fn run(o: RecordOpts) -> Result<i32> {
    // The key first: without randomness there is no redaction, and nothing is created.
    let redact = o.redact.then(Key::random).transpose()?;
    let file = crate::model::recording::create_output(&o.output, o.force)?;
    let spec = RecordSpec {
        file,
        path: o.output.clone(),
        redact,
        kernel_ips: o.kernel_ips,
    };
    let top = TopOpts {
        no_tui: true,
        interval: 1.0,
        top: 10,
        trace: o.trace,
    };
    let result = record(top, spec).await;
    if result.is_err() {
        // Nothing was recorded if the probes never went live: leave no empty file behind.
        if std::fs::metadata(&o.output).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&o.output);
        }
    }
    let _ = std::io::stderr().flush();
    result
}

async fn record(top: TopOpts, spec: RecordSpec) -> Result<i32> {
    let live = Live::open(&top.trace, Some(&spec.file), false, false)?;
    let mut sink = spec.start(live.header(top.interval, &top.trace.command))?;
    sink.begin(&live);
    session::run(live, sink, &crate::cmd::top::run_config(&top)).await
}
