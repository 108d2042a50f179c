//! `cxl-trace replay`: a recording played back interval by interval, either as the JSON lines
//! `top --no-tui` would have printed, or in the dashboard with pause, step and seek.
//!
//! - [`Intervals`] reads a recording one recorded interval at a time (streaming: one chunk in
//!   memory), feeding the same aggregator the live run fed;
//! - [`Controller`] is the playback state (pause, speed, position) and its keys, pure;
//! - [`run`] wires them to stdout or to the terminal.
//!
//! Seeking forward plays the intervals in between without drawing; seeking back starts again
//! from the beginning of the file (chunks carry no back links, and reading runs at tens of
//! millions of events per second), so memory stays flat whatever the file size.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    cli::ReplayOpts,
    error::{Error, Result},
    model::playback::Intervals,
    model::schema::{to_line, LineKind, Start, SCHEMA_VERSION},
    tui::{
        header_info,
        state::{Dashboard, Key, Msg, ReplayStatus},
        to_msg, Screen,
    },
};

/// Seconds skipped by `<` and `>`.
pub const SEEK_S: f64 = 10.0;
/// Playback speeds reachable with `+` and `-`.
pub const SPEEDS: (f64, f64) = (1.0 / 64.0, 1024.0);

/// What the replay loop must do after a key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cmd {
    /// Not a playback key: the dashboard takes it.
    Pass,
    /// Playback state changed; redraw.
    Redraw,
    /// Show the next interval now.
    Step,
    /// Go to this time (s since the start; infinity: the end).
    Seek(f64),
}

/// Playback state: position, speed, pause.
#[derive(Clone, Debug, PartialEq)]
pub struct Controller {
    /// Paused: no interval is shown until a step, seek or resume.
    pub paused: bool,
    /// Multiple of real time.
    pub speed: f64,
    /// End of the last interval shown, s.
    pub t: f64,
    /// The last interval has been shown.
    pub ended: bool,
}

impl Controller {
    /// Playing from the start at `speed`.
    pub fn new(speed: f64) -> Self {
        Self {
            paused: false,
            speed: speed.clamp(SPEEDS.0, SPEEDS.1),
            t: 0.0,
            ended: false,
        }
    }

    /// Folds a key in.
    pub fn key(&mut self, k: Key) -> Cmd {
        match k {
            Key::Char(' ') | Key::Char('p') => {
                self.paused = !self.paused;
                Cmd::Redraw
            }
            Key::Char('.') | Key::Char('n') => {
                self.paused = true;
                Cmd::Step
            }
            Key::Char('>') => Cmd::Seek(self.t + SEEK_S),
            Key::Char('<') => Cmd::Seek((self.t - SEEK_S).max(0.0)),
            Key::Char('g') => Cmd::Seek(0.0),
            Key::Char('G') => Cmd::Seek(f64::INFINITY),
            Key::Char('+') => {
                self.speed = (self.speed * 2.0).min(SPEEDS.1);
                Cmd::Redraw
            }
            Key::Char('-') => {
                self.speed = (self.speed / 2.0).max(SPEEDS.0);
                Cmd::Redraw
            }
            _ => Cmd::Pass,
        }
    }

    /// How long an interval of `dt` seconds stays on screen.
    pub fn pace(&self, dt: f64) -> Duration {
        Duration::from_secs_f64((dt / self.speed).clamp(0.0, 3600.0))
    }

    /// The status line the dashboard shows.
    pub fn status(&self, file: &str) -> ReplayStatus {
        ReplayStatus {
            file: file.to_string(),
            t: self.t,
            speed: self.speed,
            paused: self.paused,
            ended: self.ended,
        }
    }
}

/// A dashboard driven by a recording: the pure part of `replay` (no terminal, no clock).
pub struct Player {
    path: PathBuf,
    src: Intervals,
    /// The dashboard.
    pub dash: Dashboard,
    /// Playback state.
    pub ctl: Controller,
}

impl Player {
    /// Opens `path` at the start, paused or playing at `speed`.
    pub fn open(path: &Path, speed: f64) -> Result<Self> {
        let src = Intervals::open(path)?;
        let h = &src.header;
        let header = header_info(
            &h.kernel,
            &h.topology,
            &h.probes,
            h.availability.latency.clone(),
            h.scope.clone(),
        );
        let ctl = Controller::new(speed);
        let mut dash = Dashboard::new(header);
        dash.replay = Some(ctl.status(&path.display().to_string()));
        Ok(Self {
            path: path.to_path_buf(),
            src,
            dash,
            ctl,
        })
    }

    fn sync_status(&mut self) {
        self.dash.replay = Some(self.ctl.status(&self.path.display().to_string()));
    }

    /// Shows the next interval; returns its length, or `None` at the end.
    pub fn step(&mut self) -> Result<Option<f64>> {
        match self.src.next_interval()? {
            None => {
                self.ctl.ended = true;
                self.sync_status();
                Ok(None)
            }
            Some(iv) => {
                self.ctl.t = iv.t;
                let s =
                    crate::model::sample::Sample::from_totals(&iv.totals, iv.dt, iv.drops.total());
                self.dash.update(Msg::Sample(Box::new(s)));
                self.sync_status();
                Ok(Some(iv.dt))
            }
        }
    }

    /// Moves to the first interval ending at or after `target` (the end for infinity),
    /// without drawing what lies in between; backwards starts again from the file's start.
    /// The dashboard's selections (window, tier, class, sort, focus) are kept.
    pub fn seek(&mut self, target: f64) -> Result<()> {
        if target < self.ctl.t {
            self.src = Intervals::open(&self.path)?;
            self.dash = self.dash.fresh_like();
            self.ctl.t = 0.0;
            self.ctl.ended = false;
        }
        // Fold samples in without recomputing the view for each.
        let frozen = self.dash.paused;
        self.dash.paused = true;
        let mut r = Ok(());
        while self.ctl.t < target && !self.ctl.ended {
            if let Err(e) = self.step() {
                r = Err(e);
                break;
            }
        }
        self.dash.paused = frozen;
        self.dash.refresh();
        self.sync_status();
        r
    }

    /// Applies a key: playback keys to the controller, the rest to the dashboard. Returns
    /// false when the user quits.
    pub fn key(&mut self, k: Key) -> Result<bool> {
        match self.ctl.key(k) {
            Cmd::Pass => {
                return Ok(self.dash.update(Msg::Key(k)) == crate::tui::state::Action::Continue)
            }
            Cmd::Redraw => {}
            Cmd::Step => {
                self.step()?;
            }
            Cmd::Seek(t) => self.seek(t)?,
        }
        self.sync_status();
        Ok(true)
    }
}

/// `cxl-trace replay`: the dashboard on a terminal, JSON lines otherwise or with `--no-tui`.
pub fn run(o: &ReplayOpts) -> Result<i32> {
    use std::io::IsTerminal;
    if o.no_tui || !std::io::stdout().is_terminal() {
        json_lines(o)
    } else {
        dashboard(o)
    }
}

fn warn_truncated(path: &Path) {
    eprintln!(
        "cxl-trace: warning: {} ends inside a chunk (cut off by a crash or kill): replayed up to the last complete chunk",
        path.display()
    );
}

/// The dashboard replay. Keys: space pause, `.` step, `<`/`>` seek, `g`/`G` start/end,
/// `+`/`-` speed, and the dashboard's own.
fn dashboard(o: &ReplayOpts) -> Result<i32> {
    let mut p = Player::open(&o.file, o.speed.unwrap_or(1.0))?;
    let mut screen = Screen::enter()?;
    let mut due = Instant::now();
    let mut failed = None;
    screen.draw(&p.dash)?;
    loop {
        let now = Instant::now();
        let playing = !p.ctl.paused && !p.ctl.ended && failed.is_none();
        if playing && now >= due {
            match p.step() {
                Ok(Some(dt)) => due = now + p.ctl.pace(dt),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
            screen.draw(&p.dash)?;
            continue;
        }
        let wait = if playing {
            due.saturating_duration_since(now)
        } else {
            Duration::from_millis(500)
        };
        let ready = crossterm::event::poll(wait)
            .map_err(|e| Error::Runtime(format!("terminal input: {e}")))?;
        if !ready {
            continue;
        }
        let ev =
            crossterm::event::read().map_err(|e| Error::Runtime(format!("terminal input: {e}")))?;
        let keep = match to_msg(&ev) {
            Some(Msg::Key(k)) => {
                let was_paused = p.ctl.paused;
                let r = p.key(k);
                if was_paused && !p.ctl.paused {
                    due = Instant::now();
                }
                match r {
                    Ok(keep) => keep,
                    Err(e) => {
                        failed = Some(e);
                        true
                    }
                }
            }
            Some(m) => {
                p.dash.update(m);
                true
            }
            None => true,
        };
        if !keep {
            break;
        }
        if let Some(e) = &failed {
            p.dash.log.push_back(format!("replay stopped: {e}"));
        }
        screen.draw(&p.dash)?;
    }
    drop(screen);
    if let Some(e) = failed {
        return Err(e);
    }
    if p.src.truncated() {
        warn_truncated(&o.file);
    }
    Ok(0)
}

/// `replay --no-tui`: a start line, one line per recorded interval, the summary.
fn json_lines(o: &ReplayOpts) -> Result<i32> {
    let mut src = Intervals::open(&o.file)?;
    let h = &src.header;
    let start = Start {
        schema_version: SCHEMA_VERSION,
        kind: LineKind::Start,
        version: h.tool_version.clone(),
        kernel: h.kernel.clone(),
        interval_s: h.interval_s,
        probes: h.probes.clone(),
        warnings: Vec::new(),
        tiers: h.topology.tiers.clone(),
        settings: h.topology.settings.clone(),
        pid: None,
        scope: h.scope.clone(),
        privileges: h.privileges.clone(),
        replay_of: Some(o.file.display().to_string()),
    };
    if !crate::output::write_stdout(to_line(&start)?.as_bytes())? {
        return Ok(0);
    }
    while let Some(iv) = src.next_interval()? {
        if let Some(x) = o.speed {
            std::thread::sleep(Duration::from_secs_f64((iv.dt / x).clamp(0.0, 3600.0)));
        }
        let line = src.agg().window(
            LineKind::Interval,
            iv.t,
            iv.dt,
            &iv.totals,
            &iv.drops,
            &iv.vmstat,
            o.top,
        );
        if !crate::output::write_stdout(to_line(&line)?.as_bytes())? {
            return Ok(0);
        }
    }
    let truncated = src.truncated();
    let v = src.summary(o.top);
    crate::output::write_stdout(to_line(&v)?.as_bytes())?;
    if truncated {
        warn_truncated(&o.file);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings/v1-timed.cxlt")
    }

    #[test]
    fn intervals_add_up_to_the_report() {
        let mut src = Intervals::open(&fixture()).expect("fixture opens");
        let (mut faults, mut n, mut last_t) = (0, 0, 0.0);
        while let Some(iv) = src.next_interval().expect("fixture reads") {
            assert!(iv.t > last_t, "intervals go forward");
            last_t = iv.t;
            faults += iv.totals.faults.total;
            n += 1;
        }
        assert!(n >= 5, "the fixture covers 6 s: {n} intervals");
        let report = crate::model::playback::summarize(&fixture(), 10).expect("report");
        let total = report.faults.total;
        // Faults after the last snapshot are in the report only.
        assert!(
            faults <= total && faults + 200 >= total,
            "{faults} vs {total}"
        );
        assert_eq!(src.summary(10).faults.total, report.faults.total);
    }

    #[test]
    fn controller_keys() {
        let mut c = Controller::new(1.0);
        assert_eq!(c.key(Key::Char(' ')), Cmd::Redraw);
        assert!(c.paused);
        assert_eq!(c.key(Key::Char('p')), Cmd::Redraw);
        assert!(!c.paused);
        assert_eq!(c.key(Key::Char('.')), Cmd::Step);
        assert!(c.paused, "a step pauses");
        c.t = 25.0;
        assert_eq!(c.key(Key::Char('>')), Cmd::Seek(35.0));
        assert_eq!(c.key(Key::Char('<')), Cmd::Seek(15.0));
        c.t = 3.0;
        assert_eq!(c.key(Key::Char('<')), Cmd::Seek(0.0));
        assert_eq!(c.key(Key::Char('g')), Cmd::Seek(0.0));
        assert_eq!(c.key(Key::Char('G')), Cmd::Seek(f64::INFINITY));
        assert_eq!(c.key(Key::Char('+')), Cmd::Redraw);
        assert_eq!(c.speed, 2.0);
        assert_eq!(c.pace(1.0), Duration::from_millis(500));
        for _ in 0..20 {
            c.key(Key::Char('+'));
        }
        assert_eq!(c.speed, SPEEDS.1);
        for _ in 0..40 {
            c.key(Key::Char('-'));
        }
        assert_eq!(c.speed, SPEEDS.0);
        assert_eq!(c.key(Key::Char('q')), Cmd::Pass);
        assert_eq!(c.key(Key::Tab), Cmd::Pass);
    }

    /// The view after a seek equals the view after playing there step by step, forwards and
    /// backwards, and the user's selections survive a seek back.
    #[test]
    fn seeking_equals_playing() {
        let mut straight = Player::open(&fixture(), 1.0).expect("fixture opens");
        let mut ts = Vec::new();
        while straight.step().expect("step").is_some() {
            ts.push((
                straight.ctl.t,
                straight.dash.cumulative.faults,
                straight.dash.view.faults,
                straight.dash.history.len(),
            ));
        }
        assert!(straight.ctl.ended);
        assert!(ts.len() >= 5);

        let mut p = Player::open(&fixture(), 1.0).expect("fixture opens");
        p.key(Key::Char('9')).expect("replay"); // whole-run window
        p.key(Key::Char('s')).expect("replay"); // sort by the next column
        let sort = p.dash.sort;
        let (t3, faults3, _, len3) = ts[2];
        p.seek(t3).expect("replay");
        assert_eq!((p.ctl.t, p.dash.cumulative.faults), (t3, faults3));
        assert_eq!(p.dash.history.len(), len3);
        assert_eq!(
            p.dash.view.faults, faults3,
            "whole-run window shows all so far"
        );
        p.key(Key::Char('G')).expect("replay");
        assert!(p.ctl.ended);
        let last = ts[ts.len() - 1];
        assert_eq!((p.ctl.t, p.dash.cumulative.faults), (last.0, last.1));
        p.key(Key::Char('g')).expect("replay");
        assert_eq!(p.ctl.t, 0.0);
        assert_eq!(p.dash.cumulative.faults, 0);
        assert!(!p.ctl.ended);
        assert_eq!((p.dash.window, p.dash.sort), (8, sort), "selections kept");
        p.key(Key::Char('.')).expect("replay");
        assert!(p.ctl.paused);
        assert_eq!((p.ctl.t, p.dash.cumulative.faults), (ts[0].0, ts[0].1));
        let status = p.dash.replay.clone().expect("replay status");
        assert!(status.paused && !status.ended && status.t == ts[0].0);
    }
}
