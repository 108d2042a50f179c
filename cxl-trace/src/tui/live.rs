//! The dashboard as the sink of a live run (`top` on a terminal).

use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    error::Result,
    model::sample::Sample,
    session::{clock::cpu_seconds, Finish, Live, Sink, Tick},
    tui::{
        header_info, spawn_input,
        state::{Action, Dashboard, Msg},
        Screen,
    },
};

/// The dashboard and its terminal.
pub struct LiveDashboard {
    dash: Dashboard,
    screen: Option<Screen>,
    input: Option<UnboundedReceiver<Msg>>,
    /// The tool's CPU time at the last interval, s.
    cpu_last: f64,
    /// BPF run time at the last interval, ns.
    bpf_last: Option<u64>,
}

impl LiveDashboard {
    /// Enters the alternate screen and draws the empty dashboard.
    pub fn enter(live: &Live) -> Result<Self> {
        let t = &live.tracer;
        let mut header = header_info(
            &live.kernel,
            &live.topology,
            &t.statuses,
            t.availability.latency.clone(),
            live.scope.clone(),
        );
        header.bpf_stats = t.bpf_run_ns().is_some();
        let mut screen = Screen::enter()?;
        let dash = Dashboard::new(header);
        screen.draw(&dash)?;
        Ok(Self {
            dash,
            screen: Some(screen),
            input: Some(spawn_input()),
            cpu_last: cpu_seconds(),
            bpf_last: t.bpf_run_ns(),
        })
    }

    fn draw(&mut self) -> Result<()> {
        match self.screen.as_mut() {
            Some(s) => s.draw(&self.dash),
            None => Ok(()),
        }
    }
}

impl Sink for LiveDashboard {
    type Input = Msg;

    fn take_input(&mut self) -> Option<UnboundedReceiver<Msg>> {
        self.input.take()
    }

    fn interval(&mut self, tick: &Tick) -> Result<bool> {
        let mut sample = Sample::from_totals(tick.totals, tick.interval_s, tick.dropped.total());
        let cpu = cpu_seconds();
        sample.tool_cpu_s = (cpu - self.cpu_last).max(0.0);
        self.cpu_last = cpu;
        if let Some(b) = tick.tracer.bpf_run_ns() {
            sample.bpf_run_ns = b.saturating_sub(self.bpf_last.unwrap_or(b));
            self.bpf_last = Some(b);
        }
        self.dash.update(Msg::Sample(Box::new(sample)));
        self.draw()?;
        Ok(true)
    }

    fn input(&mut self, msg: Msg) -> Result<bool> {
        if self.dash.update(msg) == Action::Quit {
            return Ok(false);
        }
        self.draw()?;
        Ok(true)
    }

    fn finish(mut self, end: &Finish, _open: bool) -> Result<()> {
        // Leave the alternate screen before anything else is printed.
        drop(self.screen.take());
        let run = end.agg.run();
        eprintln!(
            "cxl-trace: {:.1} s, {} events, {} faults, {} pages migrated, {} dropped",
            end.t_s,
            run.events,
            run.faults.total,
            run.migrations.total().pages_succeeded,
            end.dropped.total()
        );
        Ok(())
    }
}
