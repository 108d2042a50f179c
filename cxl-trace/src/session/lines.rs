//! The JSON lines sink of `top --no-tui`: one start line, one line per interval, one summary
//! line (see docs/json-output.md).

use crate::{
    error::Result,
    model::{
        schema::{to_line, LineKind, Start},
        vmstat::{self, Vmstat},
    },
    output::write_stdout,
    session::{Finish, Sink, Tick},
};

/// Writes the run to stdout as JSON lines; ends the run when stdout is closed.
pub struct JsonLines {
    /// /proc/vmstat at the previous interval (each line carries the delta).
    vm_last: Vmstat,
    /// Processes listed per line.
    top: usize,
}

impl JsonLines {
    /// Starts from the run's /proc/vmstat at the start.
    pub fn new(vm_start: Vmstat, top: usize) -> Self {
        Self {
            vm_last: vm_start,
            top,
        }
    }
}

fn emit<T: serde::Serialize>(v: &T) -> Result<bool> {
    write_stdout(to_line(v)?.as_bytes())
}

impl Sink for JsonLines {
    type Input = ();

    fn start(&mut self, start: &Start) -> Result<bool> {
        emit(start)
    }

    fn interval(&mut self, tick: &Tick) -> Result<bool> {
        let vm = vmstat::read()?;
        let line = tick.agg.window(
            LineKind::Interval,
            tick.t_s,
            tick.interval_s,
            tick.totals,
            tick.dropped,
            &vm.delta(&self.vm_last),
            self.top,
        );
        self.vm_last = vm;
        emit(&line)
    }

    fn finish(self, end: &Finish, open: bool) -> Result<()> {
        if open {
            emit(end.summary)?;
        }
        Ok(())
    }
}
