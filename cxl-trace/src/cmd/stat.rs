//! `cxl-trace stat`: run, then print one summary (see [`crate::output::stat`]). Like
//! `perf stat -- CMD`, it exits with the command's status.

use std::{fs::File, io::Write as _};

use crate::{
    cli::StatOpts,
    error::{Error, Result},
    model::schema::{to_line, Start},
    session::{self, clock::own_cpu_s, Finish, Live, RunConfig, Sink, Tick},
};

/// Where the summary goes: the `-o` file (opened before tracing starts, so a bad path fails
/// at once) or stderr.
struct Summary {
    file: Option<(File, String)>,
    json: bool,
    scope: String,
    /// Own CPU time when the window opened (attaching the probes is not the run's cost).
    cpu_start: Option<f64>,
}

impl Sink for Summary {
    type Input = ();

    fn start(&mut self, _start: &Start) -> Result<bool> {
        self.cpu_start = own_cpu_s();
        Ok(true)
    }

    fn interval(&mut self, _tick: &Tick) -> Result<bool> {
        Ok(true)
    }

    fn finish(self, end: &Finish, _open: bool) -> Result<()> {
        let text = if self.json {
            to_line(end.summary)?
        } else {
            let cpu = own_cpu_s()
                .zip(self.cpu_start)
                .map(|(e, s)| (e - s).max(0.0));
            crate::output::stat::to_text(end.summary, &self.scope, cpu)
        };
        match self.file {
            Some((mut f, name)) => f
                .write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(&name, e)),
            None => {
                eprint!("{text}");
                Ok(())
            }
        }
    }
}

/// Runs `stat`; the exit code is the command's when one was given, else 0.
pub async fn run(o: StatOpts) -> Result<i32> {
    let file = match &o.output {
        Some(p) => Some((
            crate::model::recording::create_new_file(p)?,
            p.display().to_string(),
        )),
        None => None,
    };
    let live = Live::open(&o.trace, file.as_ref().map(|(f, _)| f), false, true)?;
    let cfg = RunConfig {
        interval_s: 1.0,
        duration_s: o.trace.duration,
        pid: o.trace.pid,
        top: 10,
        command: !o.trace.command.is_empty(),
        ringbuf_mib: o.trace.ringbuf_mib,
    };
    let sink = Summary {
        file,
        json: o.json,
        scope: live.scope.clone(),
        cpu_start: None,
    };
    session::run(live, sink, &cfg).await
}
