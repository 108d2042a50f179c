//! Dashboard state and its `update` (pure: no I/O, no clock, no terminal).
//!
//! The event loop turns each interval of aggregated events into a [`Sample`] and each key press
//! into a [`Msg`]; [`Dashboard::update`] folds them in and recomputes the [`WindowView`] the
//! drawing code shows. Time windows (keys `1`..`9`) cover the last N samples, or the whole run
//! (accumulated as samples arrive, so it is not limited by the history). Past samples keep
//! only the recorded buckets of their latency histograms, so ten minutes of history stay small
//! and a window is rebuilt without allocating a histogram per sample.

use std::collections::{BTreeMap, HashMap, VecDeque};

use hdrhistogram::Histogram;

use crate::{
    model::event::FaultClass,
    model::hist::new_histogram,
    model::sample::{record_into, Churn, LatKey, ProcSample, Sample},
    model::schema::RefusalCause,
};

/// Samples kept (at the default 1 s interval: ten minutes).
pub const HISTORY: usize = 600;
/// Event log entries kept.
pub const LOG_KEEP: usize = 200;
/// Windows of keys `1`..`9`, in samples; `None` is the whole run.
pub const WINDOWS: [Option<usize>; 9] = [
    Some(1),
    Some(5),
    Some(10),
    Some(30),
    Some(60),
    Some(120),
    Some(300),
    Some(600),
    None,
];

/// Static facts shown in the header.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderInfo {
    /// Kernel release.
    pub kernel: String,
    /// numa_balancing mode, described.
    pub numa_balancing: String,
    /// demotion_enabled.
    pub demotion: String,
    /// Promote rate limit, MB/s.
    pub rate_limit: String,
    /// One line per tier: `tier4: node 0 (HMAT 100 ns)`.
    pub tiers: Vec<String>,
    /// Live probe names.
    pub live: Vec<String>,
    /// Unavailable probe names with reasons.
    pub unavailable: Vec<(String, String)>,
    /// Why fault latency is unavailable, if it is.
    pub latency_unavailable: Option<String>,
    /// Whose faults are shown: `all processes`, `pid 42 and descendants`, `cgroup /x`, ...
    pub scope: String,
    /// Whether the kernel's BPF run-time statistics are on (the header's `bpf` share).
    pub bpf_stats: bool,
}

/// Panels that take focus with `tab`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    /// Fault latency histogram.
    Latency,
    /// Migration churn.
    Churn,
    /// Top processes.
    Processes,
    /// Event log.
    Log,
}

impl Panel {
    const ORDER: [Panel; 4] = [Panel::Latency, Panel::Churn, Panel::Processes, Panel::Log];

    fn next(self) -> Self {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }
}

/// Sort keys of the process table (`s` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Faults.
    Faults,
    /// Hint faults.
    HintFaults,
    /// Promoted pages.
    Promoted,
    /// Demoted pages.
    Demoted,
    /// Ping-pong.
    PingPong,
}

impl SortKey {
    const ORDER: [SortKey; 5] = [
        SortKey::Faults,
        SortKey::HintFaults,
        SortKey::Promoted,
        SortKey::Demoted,
        SortKey::PingPong,
    ];

    fn next(self) -> Self {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }

    /// Column title.
    pub fn name(self) -> &'static str {
        match self {
            Self::Faults => "faults",
            Self::HintFaults => "hint",
            Self::Promoted => "promoted",
            Self::Demoted => "demoted",
            Self::PingPong => "pingpong",
        }
    }

    fn of(self, p: &ProcSample) -> u64 {
        match self {
            Self::Faults => p.faults,
            Self::HintFaults => p.hint_faults,
            Self::Promoted => p.promoted,
            Self::Demoted => p.demoted,
            Self::PingPong => p.pingpong,
        }
    }
}

/// Keys the dashboard understands (decoupled from crossterm so tests need no terminal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character.
    Char(char),
    /// Ctrl-C.
    CtrlC,
    /// Tab.
    Tab,
    /// Arrows.
    Up,
    /// Arrows.
    Down,
    /// Arrows.
    Left,
    /// Arrows.
    Right,
    /// Escape.
    Esc,
}

/// Input to [`Dashboard::update`].
#[derive(Clone, Debug)]
pub enum Msg {
    /// A key press.
    Key(Key),
    /// An interval ended.
    Sample(Box<Sample>),
    /// The terminal was resized (the next draw adapts; nothing to compute).
    Resize,
}

/// What the loop should do after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep going (redraw).
    Continue,
    /// Leave.
    Quit,
}

/// A row of the process table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcView {
    /// Process id.
    pub pid: u32,
    /// Counts summed over the window.
    pub row: ProcSample,
}

/// Everything shown for the selected window, computed in `update`.
#[derive(Clone, Debug)]
pub struct WindowView {
    /// Seconds covered.
    pub seconds: f64,
    /// Samples covered.
    pub samples: usize,
    /// Events aggregated.
    pub events: u64,
    /// Faults.
    pub faults: u64,
    /// Drops.
    pub drops: u64,
    /// Churn summed over the window.
    pub churn: Churn,
    /// Latency by (tier, class), merged over the window.
    pub latency: BTreeMap<LatKey, Histogram<u64>>,
    /// Batch latency.
    pub batch_latency: Histogram<u64>,
    /// Ping-pong residency.
    pub residency: Histogram<u64>,
    /// Processes, sorted (filled from `proc_rows` when the view is shown).
    pub procs: Vec<ProcView>,
    /// Per-process sums.
    proc_rows: HashMap<u32, ProcSample>,
    /// CPU time of the tool, s.
    pub tool_cpu_s: f64,
    /// BPF program run time, ns.
    pub bpf_run_ns: u64,
}

impl Default for WindowView {
    fn default() -> Self {
        Self {
            seconds: 0.0,
            samples: 0,
            events: 0,
            faults: 0,
            drops: 0,
            churn: Churn::default(),
            latency: BTreeMap::new(),
            batch_latency: new_histogram(),
            residency: new_histogram(),
            procs: Vec::new(),
            proc_rows: HashMap::new(),
            tool_cpu_s: 0.0,
            bpf_run_ns: 0,
        }
    }
}

impl WindowView {
    /// Folds one sample in.
    pub fn add(&mut self, s: &Sample) {
        self.samples += 1;
        self.seconds += s.interval_s;
        self.events += s.events;
        self.faults += s.faults.total;
        self.drops += s.drops;
        self.churn.add(&s.churn);
        self.tool_cpu_s += s.tool_cpu_s;
        self.bpf_run_ns += s.bpf_run_ns;
        for (k, b) in &s.latency {
            record_into(b, self.latency.entry(*k).or_insert_with(new_histogram));
        }
        record_into(&s.batch_latency, &mut self.batch_latency);
        record_into(&s.residency, &mut self.residency);
        for (pid, p) in &s.procs {
            let r = self.proc_rows.entry(*pid).or_default();
            r.comm.clone_from(&p.comm);
            r.faults += p.faults;
            r.hint_faults += p.hint_faults;
            r.promoted += p.promoted;
            r.demoted += p.demoted;
            r.pingpong += p.pingpong;
        }
    }

    fn per_s(&self, x: f64) -> f64 {
        if self.seconds > 0.0 {
            x / self.seconds
        } else {
            0.0
        }
    }

    /// Events per second.
    pub fn events_per_s(&self) -> f64 {
        self.per_s(self.events as f64)
    }

    /// Tool CPU share of one core (0..1).
    pub fn tool_cpu(&self) -> f64 {
        self.per_s(self.tool_cpu_s)
    }

    /// BPF run time share of one core (0..1).
    pub fn bpf_cpu(&self) -> f64 {
        self.per_s(self.bpf_run_ns as f64 / 1e9)
    }

    /// Latency tiers present (sorted, unknown last).
    pub fn tiers(&self) -> Vec<Option<u32>> {
        let mut t: Vec<Option<u32>> = self.latency.keys().map(|k| k.0).collect();
        t.dedup();
        t.sort_by_key(|t| t.unwrap_or(u32::MAX));
        t.dedup();
        t
    }

    /// The histogram of `tier` and `class` (`None` class: all classes merged).
    pub fn histogram(&self, tier: Option<u32>, class: Option<FaultClass>) -> Histogram<u64> {
        let mut h = new_histogram();
        for ((t, c), x) in &self.latency {
            if *t == tier && class.is_none_or(|k| k == *c) {
                let _ = h.add(x);
            }
        }
        h
    }
}

/// The whole dashboard state.
#[derive(Clone, Debug)]
pub struct Dashboard {
    /// Header facts.
    pub header: HeaderInfo,
    /// Past samples, newest last.
    pub history: VecDeque<Sample>,
    /// Recent event log lines, newest last.
    pub log: VecDeque<String>,
    /// Paused: samples are still kept, the view is frozen.
    pub paused: bool,
    /// Panel with focus.
    pub focus: Panel,
    /// Index into [`WINDOWS`].
    pub window: usize,
    /// Selected latency tier (index into the view's tiers).
    pub tier_idx: usize,
    /// Selected class (`None`: all).
    pub class: Option<FaultClass>,
    /// Process table sort.
    pub sort: SortKey,
    /// Selected process row.
    pub selected: usize,
    /// Help overlay shown.
    pub help: bool,
    /// Samples since the last `r` (reset).
    pub since_reset: usize,
    /// Seconds since start.
    pub elapsed_s: f64,
    /// The computed view.
    pub view: WindowView,
    /// Everything since the start or the last reset (the whole-run window).
    pub cumulative: WindowView,
    /// Set when a recording drives the dashboard (`replay`).
    pub replay: Option<ReplayStatus>,
}

/// Where a replay stands, shown in the header.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayStatus {
    /// The recording.
    pub file: String,
    /// End of the last interval shown, s since the start of the recording.
    pub t: f64,
    /// Multiple of real time.
    pub speed: f64,
    /// Playback paused.
    pub paused: bool,
    /// The last interval has been shown.
    pub ended: bool,
}

impl Dashboard {
    /// An empty dashboard.
    pub fn new(header: HeaderInfo) -> Self {
        Self {
            header,
            history: VecDeque::new(),
            log: VecDeque::new(),
            paused: false,
            focus: Panel::Latency,
            window: 4,
            tier_idx: 0,
            class: None,
            sort: SortKey::Faults,
            selected: 0,
            help: false,
            since_reset: 0,
            elapsed_s: 0.0,
            view: WindowView::default(),
            cumulative: WindowView::default(),
            replay: None,
        }
    }

    /// An empty dashboard with this one's header and selections (window, tier, class, sort,
    /// focus): where a replay seeking back starts again.
    pub fn fresh_like(&self) -> Self {
        let mut d = Self::new(self.header.clone());
        d.focus = self.focus;
        d.window = self.window;
        d.tier_idx = self.tier_idx;
        d.class = self.class;
        d.sort = self.sort;
        d.replay = self.replay.clone();
        d
    }

    /// Recomputes the view (after samples were folded in while paused).
    pub fn refresh(&mut self) {
        self.recompute();
    }

    /// Folds a message in.
    pub fn update(&mut self, msg: Msg) -> Action {
        match msg {
            Msg::Resize => {}
            Msg::Sample(s) => {
                self.elapsed_s += s.interval_s;
                for l in &s.log {
                    if self.log.len() >= LOG_KEEP {
                        self.log.pop_front();
                    }
                    self.log.push_back(l.clone());
                }
                if self.history.len() >= HISTORY {
                    self.history.pop_front();
                }
                self.cumulative.add(&s);
                self.history.push_back(*s);
                self.since_reset = (self.since_reset + 1).min(HISTORY);
                if !self.paused {
                    self.recompute();
                }
            }
            Msg::Key(k) => return self.key(k),
        }
        Action::Continue
    }

    fn key(&mut self, k: Key) -> Action {
        if self.help && !matches!(k, Key::Char('q') | Key::CtrlC) {
            self.help = false;
            return Action::Continue;
        }
        match k {
            Key::Char('q') | Key::CtrlC => return Action::Quit,
            Key::Esc => self.help = false,
            Key::Char('?') | Key::Char('h') => self.help = true,
            Key::Char('p') | Key::Char(' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.recompute();
                }
            }
            Key::Char('r') => {
                // Histograms and counts start again from the next sample; the sparklines keep
                // their history.
                self.since_reset = 0;
                self.cumulative = WindowView::default();
                self.recompute();
            }
            Key::Char('s') => {
                self.sort = self.sort.next();
                self.selected = 0;
                self.sort_procs();
            }
            Key::Char(c @ '1'..='9') => {
                self.window = (c as usize) - ('1' as usize);
                self.recompute();
            }
            Key::Char('c') => self.cycle_class(),
            Key::Char('t') => self.cycle_tier(1),
            Key::Tab => self.focus = self.focus.next(),
            Key::Left | Key::Right if self.focus == Panel::Latency => {
                if k == Key::Right {
                    self.cycle_tier(1)
                } else {
                    self.cycle_tier(-1)
                }
            }
            Key::Up | Key::Down if self.focus == Panel::Latency => self.cycle_class(),
            Key::Up => self.selected = self.selected.saturating_sub(1),
            Key::Down if self.selected + 1 < self.view.procs.len() => self.selected += 1,
            _ => {}
        }
        Action::Continue
    }

    fn cycle_tier(&mut self, step: i64) {
        let n = self.view.tiers().len().max(1) as i64;
        self.tier_idx = ((self.tier_idx as i64 + step).rem_euclid(n)) as usize;
    }

    fn cycle_class(&mut self) {
        self.class = match self.class {
            None => Some(FaultClass::ALL[0]),
            Some(c) => {
                let i = FaultClass::ALL.iter().position(|x| *x == c).unwrap_or(0);
                FaultClass::ALL.get(i + 1).copied()
            }
        };
    }

    /// The tier selected in the latency panel.
    pub fn selected_tier(&self) -> Option<Option<u32>> {
        let tiers = self.view.tiers();
        tiers
            .get(self.tier_idx.min(tiers.len().saturating_sub(1)))
            .copied()
    }

    /// Samples the selected window covers (bounded by the last reset).
    pub fn window_len(&self) -> usize {
        match WINDOWS.get(self.window).copied().flatten() {
            Some(n) => n.min(self.since_reset).min(self.history.len()),
            None => self.cumulative.samples,
        }
    }

    /// Label of the selected window.
    pub fn window_label(&self) -> String {
        match WINDOWS.get(self.window).copied().flatten() {
            Some(n) => format!("last {n} intervals"),
            None => "whole run".into(),
        }
    }

    fn recompute(&mut self) {
        let mut v = match WINDOWS.get(self.window).copied().flatten() {
            None => self.cumulative.clone(),
            Some(_) => {
                let mut v = WindowView::default();
                for s in self.history.iter().rev().take(self.window_len()) {
                    v.add(s);
                }
                v
            }
        };
        v.procs = v
            .proc_rows
            .iter()
            .map(|(pid, row)| ProcView {
                pid: *pid,
                row: row.clone(),
            })
            .collect();
        self.view = v;
        self.sort_procs();
        let tiers = self.view.tiers().len();
        if self.tier_idx >= tiers {
            self.tier_idx = tiers.saturating_sub(1);
        }
    }

    fn sort_procs(&mut self) {
        let key = self.sort;
        self.view
            .procs
            .sort_by(|a, b| key.of(&b.row).cmp(&key.of(&a.row)).then(a.pid.cmp(&b.pid)));
        if self.selected >= self.view.procs.len() {
            self.selected = self.view.procs.len().saturating_sub(1);
        }
    }

    /// Promotions and demotions per sample over the last `n` samples (for sparklines).
    pub fn churn_series(&self, n: usize) -> (Vec<u64>, Vec<u64>) {
        let start = self.history.len().saturating_sub(n);
        let per_s = |pages: u64, s: &Sample| {
            if s.interval_s > 0.0 {
                (pages as f64 / s.interval_s).round() as u64
            } else {
                pages
            }
        };
        self.history
            .iter()
            .skip(start)
            .map(|s| (per_s(s.churn.promoted(), s), per_s(s.churn.demoted(), s)))
            .unzip()
    }

    /// Ping-pong bounces per sample over the last `n` samples.
    pub fn bounce_series(&self, n: usize) -> Vec<u64> {
        let start = self.history.len().saturating_sub(n);
        self.history
            .iter()
            .skip(start)
            .map(|s| s.churn.bounces)
            .collect()
    }
}

/// Every refusal cause in display order (re-exported for the view).
pub const CAUSES: [RefusalCause; 6] = RefusalCause::ALL;
