//! The run's per-process table, bounded. A machine that starts processes all day (a CI
//! runner, a shell loop) would otherwise grow it by a row per process forever: measured
//! here, 1.8 KB of RSS per process, 2.3 MB in two minutes of a loop that starts 12 a second.
//!
//! Past [`PROCESS_ROWS`] rows, the smallest rows of processes that have exited are folded
//! into one row per name ([`Totals::exited`]) until a quarter of the table is free. Nothing
//! a window reports changes:
//! - the busiest `keep` rows are never folded, and a row that was not among them when its
//!   process had exited can never enter them (its counts are final; every other row only
//!   grows), so the top `keep` processes stay exact for every later window;
//! - per-name sums (the exporter's process-name series) include the folded rows, so they
//!   stay exact and monotonic;
//! - the totals are counted apart from the table.

use super::{Aggregator, ProcRow, Totals};

/// Rows of the per-process table before exited processes are folded by name.
pub const PROCESS_ROWS: usize = 4096;

impl ProcRow {
    /// Adds another window's row of the same process (its name is the later one).
    pub fn add(&mut self, o: &ProcRow) {
        self.comm = o.comm;
        self.faults.merge(&o.faults);
        self.pages_migrated += o.pages_migrated;
        self.hint_faults += o.hint_faults;
        self.promoted += o.promoted;
        self.demoted += o.demoted;
    }
}

impl Aggregator {
    /// Bounds the run's per-process table: [`Totals::fold_exited`] with [`PROCESS_ROWS`].
    pub fn fold_exited(&mut self, alive: impl Fn(u32) -> bool, keep: usize) -> usize {
        self.run.fold_exited(alive, keep, PROCESS_ROWS)
    }
}

impl Totals {
    /// Folds exited processes (`alive` false) outside the busiest `keep` into per-name rows
    /// while the table holds more than `limit` rows, down to three quarters of `limit`.
    /// Returns how many rows were folded.
    pub fn fold_exited(&mut self, alive: impl Fn(u32) -> bool, keep: usize, limit: usize) -> usize {
        if self.processes.len() <= limit {
            return 0;
        }
        let mut ranked: Vec<(u32, u64)> = self
            .processes
            .iter()
            .map(|(pid, r)| (*pid, r.faults.total))
            .collect();
        // The order of `top_processes`: most faults first, ties by pid.
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut excess = self.processes.len() - (limit - limit / 4);
        let mut folded = 0;
        for &(pid, _) in ranked.iter().skip(keep).rev() {
            if excess == 0 {
                break;
            }
            if alive(pid) {
                continue;
            }
            if let Some(row) = self.processes.remove(&pid) {
                self.exited.entry(row.comm).or_default().add(&row);
                excess -= 1;
                folded += 1;
            }
        }
        folded
    }

    /// Every row with its name: the per-process table and the folded exited ones.
    pub fn rows_by_name(&self) -> impl Iterator<Item = &ProcRow> {
        self.processes.values().chain(self.exited.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Comm;

    fn row(name: &str, faults: u64) -> ProcRow {
        let mut r = ProcRow {
            comm: Comm::from_bytes(name.as_bytes()),
            ..ProcRow::default()
        };
        r.faults.total = faults;
        r.faults.user = faults;
        r.promoted = faults / 2;
        r
    }

    /// Pids 1 to `n`, all named `name`, pid `p` with `p` faults.
    fn table(n: u32, name: &str) -> Totals {
        let mut t = Totals::default();
        for pid in 1..=n {
            t.processes.insert(pid, row(name, u64::from(pid)));
        }
        t
    }

    /// Per-name sums over every row.
    fn by_name(t: &Totals) -> std::collections::BTreeMap<String, (u64, u64)> {
        let mut m = std::collections::BTreeMap::new();
        for r in t.rows_by_name() {
            let e: &mut (u64, u64) = m.entry(r.comm.as_string()).or_default();
            e.0 += r.faults.total;
            e.1 += r.promoted;
        }
        m
    }

    #[test]
    fn folding_keeps_the_top_rows_and_the_per_name_sums() {
        let mut t = Totals::default();
        for pid in 1..=100u32 {
            let name = if pid % 3 == 0 { "sh" } else { "worker" };
            t.processes
                .insert(pid, row(name, u64::from(pid % 17) * 10 + 1));
        }
        let top_before = t.top_processes(10);
        let names_before = by_name(&t);
        // Odd pids are alive: only the 50 exited rows outside the top 10 can go, so the
        // table cannot reach 30 rows; it keeps the live ones and the top.
        let exited_in_top = top_before.iter().filter(|p| p.pid % 2 == 0).count();
        let folded = t.fold_exited(|pid| pid % 2 == 1, 10, 40);
        assert_eq!(folded, 50 - exited_in_top);
        assert_eq!(t.processes.len(), 50 + exited_in_top);
        assert_eq!(t.top_processes(10), top_before);
        assert_eq!(by_name(&t), names_before);
        for pid in (1..=100u32).filter(|p| p % 2 == 1) {
            assert!(t.processes.contains_key(&pid), "live pid {pid} kept");
        }
    }

    #[test]
    fn folding_stops_at_three_quarters_of_the_limit_smallest_first() {
        let mut t = table(100, "w");
        assert_eq!(t.fold_exited(|_| false, 5, 80), 40);
        // The 60 busiest remain: pids 41 to 100.
        assert!((41..=100).all(|p| t.processes.contains_key(&p)));
        assert_eq!(t.exited.len(), 1);
        assert_eq!(
            t.exited.values().map(|r| r.faults.total).sum::<u64>(),
            (1..=40u64).sum::<u64>()
        );
    }

    #[test]
    fn nothing_is_folded_under_the_limit_or_when_all_live() {
        let mut t = table(50, "a");
        assert_eq!(t.fold_exited(|_| false, 5, 50), 0);
        assert_eq!(t.fold_exited(|_| true, 5, 10), 0);
        assert_eq!(t.processes.len(), 50);
    }

    #[test]
    fn folded_rows_merge_into_later_windows() {
        let mut run = Totals::default();
        for pid in 1..=8u32 {
            run.processes.insert(pid, row("x", 1));
        }
        run.fold_exited(|_| false, 2, 4);
        let mut later = Totals::default();
        later.merge(&run);
        later.merge(&run);
        assert_eq!(by_name(&later)["x"].0, 16);
    }
}
