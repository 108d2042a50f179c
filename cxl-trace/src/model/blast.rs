//! The blast radius of a memory error or an offline (pure): which processes had pages on the
//! struck node, grouped into incidents, and what became of them.
//!
//! An incident opens at the first RAS event with a node (or the first migration batch of a
//! memory offline) and folds in every later event of the same node and cause until it settles
//! [`SETTLE_NS`] later: an error storm costs one read of the process table, not one per
//! event. The session layer reads `/proc`; everything here is tested
//! without it.

use std::collections::BTreeMap;

use crate::model::schema::{BlastRadius, BlastScope, Fate, Holder};

/// How long after its event an incident's fates are read: a process the kernel signals is
/// given this long to die of it.
pub const SETTLE_NS: u64 = 2_000_000_000;
/// Holders listed per incident (the cgroup totals count every one).
pub const HOLDERS_MAX: usize = 32;
/// What the holders are read from, as the output says it.
pub const METHOD: &str = "pages per node from /proc/PID/numa_maps of every process, \
    the page's cgroup from /proc/kpagecgroup; fates from SIGBUS (signal:signal_generate) \
    and a second read";

/// Pages (4 KiB) on `node` in a `/proc/PID/numa_maps` text: the `N<node>=` counts of every
/// mapping, in units of the mapping's `kernelpagesize_kB`.
pub fn pages_on_node(numa_maps: &str, node: u32) -> u64 {
    let key = format!("N{node}=");
    numa_maps
        .lines()
        .map(|l| {
            let mut count = 0u64;
            let mut page_kib = 4u64;
            for w in l.split_whitespace() {
                if let Some(n) = w.strip_prefix(&key) {
                    count = n.parse().unwrap_or(0);
                } else if let Some(k) = w.strip_prefix("kernelpagesize_kB=") {
                    page_kib = k.parse().unwrap_or(4);
                }
            }
            count * (page_kib / 4).max(1)
        })
        .sum()
}

/// The cgroup v2 path of a `/proc/PID/cgroup` text (`0::/path`), else the first hierarchy's.
pub fn cgroup_path(text: &str) -> String {
    let mut first = None;
    for l in text.lines() {
        let mut it = l.splitn(3, ':');
        let (id, _, path) = (it.next(), it.next(), it.next());
        if id == Some("0") {
            return path.unwrap_or("/").to_string();
        }
        if first.is_none() {
            first = path.map(str::to_string);
        }
    }
    first.unwrap_or_else(|| "/".to_string())
}

/// One process as read at the event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcPages {
    /// Process id.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// Its cgroup.
    pub cgroup: String,
    /// Pages on the node.
    pub pages: u64,
}

/// An event that opens or joins an incident.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    /// `category:name`, or `memory_offline`.
    pub cause: String,
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// The node struck.
    pub node: u32,
    /// Its tier.
    pub tier: Option<u32>,
    /// The page struck, if the event has an address.
    pub pfn: Option<u64>,
}

/// What the session read for a new incident.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    /// Processes with pages on the node.
    pub procs: Vec<ProcPages>,
    /// Processes whose maps could not be read.
    pub unreadable: u64,
    /// The struck page's cgroup.
    pub page_cgroup: Option<String>,
    /// When it was read, CLOCK_MONOTONIC ns.
    pub at_ns: u64,
    /// Pages migrated off the node for this cause between the event and the reading.
    pub moved_before: u64,
}

/// Open incidents, one per node at most.
#[derive(Clone, Debug, Default)]
pub struct Incidents {
    open: Vec<BlastRadius>,
    /// SIGBUS sent, by pid: the latest time.
    sigbus: BTreeMap<u32, u64>,
}

impl Incidents {
    /// Folds `t` into the open incident of its node and cause; false if none is open (the
    /// caller reads the holders and calls [`Incidents::open`]). An offline that follows a
    /// memory error on the same node is an incident of its own.
    pub fn fold(&mut self, t: &Trigger) -> bool {
        match self
            .open
            .iter_mut()
            .find(|b| b.scope.node == Some(t.node) && b.cause == t.cause)
        {
            Some(b) => {
                b.events += 1;
                true
            }
            None => false,
        }
    }

    /// Opens an incident for `t` with what was read.
    pub fn open(&mut self, t: &Trigger, r: Reading) {
        let mut cgroups = BTreeMap::new();
        for p in &r.procs {
            *cgroups.entry(p.cgroup.clone()).or_insert(0) += p.pages;
        }
        let mut procs = r.procs;
        procs.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.pid.cmp(&b.pid)));
        let left_out = procs.len().saturating_sub(HOLDERS_MAX) as u64;
        let holders = procs
            .into_iter()
            .take(HOLDERS_MAX)
            .map(|p| Holder {
                page_cgroup: r.page_cgroup.as_deref() == Some(p.cgroup.as_str()),
                pid: p.pid,
                comm: p.comm,
                cgroup: p.cgroup,
                pages: p.pages,
                fate: Fate::Unaffected,
                pages_after: None,
            })
            .collect();
        self.open.push(BlastRadius {
            event: "blast_radius".into(),
            cause: t.cause.clone(),
            ts_ns: t.ts_ns,
            events: 1,
            scope: BlastScope {
                node: Some(t.node),
                tier: t.tier,
                pfn: t.pfn,
                page_cgroup: r.page_cgroup,
            },
            sampled_after_ms: ms(r.at_ns.saturating_sub(t.ts_ns)),
            settled_after_ms: 0.0,
            moved_before_sample: r.moved_before,
            holders,
            holders_left_out: left_out,
            cgroups,
            unreadable: r.unreadable,
            method: METHOD.into(),
        });
    }

    /// A SIGBUS was sent to `pid` at `ts_ns`.
    pub fn sigbus(&mut self, pid: u32, ts_ns: u64) {
        let e = self.sigbus.entry(pid).or_insert(ts_ns);
        *e = (*e).max(ts_ns);
    }

    /// Whether any incident is open.
    pub fn is_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// The pids and nodes whose fates the incidents due at `now_ns` need (all with `force`).
    pub fn due(&self, now_ns: u64, force: bool) -> Vec<(u32, u32)> {
        self.open
            .iter()
            .filter(|b| force || now_ns >= b.ts_ns.saturating_add(SETTLE_NS))
            .flat_map(|b| {
                let node = b.scope.node.unwrap_or(u32::MAX);
                b.holders.iter().map(move |h| (h.pid, node))
            })
            .collect()
    }

    /// Closes the incidents due at `now_ns` (all with `force`), their fates from `after`
    /// (pages on the node now by (pid, node); absent: the process is gone) and the SIGBUS seen.
    pub fn settle(
        &mut self,
        now_ns: u64,
        force: bool,
        after: &BTreeMap<(u32, u32), u64>,
    ) -> Vec<BlastRadius> {
        let (due, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|b| force || now_ns >= b.ts_ns.saturating_add(SETTLE_NS));
        self.open = open;
        let mut out = Vec::new();
        for mut b in due {
            let node = b.scope.node.unwrap_or(u32::MAX);
            for h in &mut b.holders {
                let signalled = self.sigbus.get(&h.pid).is_some_and(|t| *t >= b.ts_ns);
                h.pages_after = after.get(&(h.pid, node)).copied();
                h.fate = fate(h.pages, h.pages_after, signalled);
            }
            b.settled_after_ms = ms(now_ns.saturating_sub(b.ts_ns));
            out.push(b);
        }
        if self.open.is_empty() {
            self.sigbus.clear();
        }
        out
    }
}

/// A holder's fate: `after` is its pages on the node now, `None` once it is gone.
pub fn fate(before: u64, after: Option<u64>, signalled: bool) -> Fate {
    match (after, signalled) {
        (None, true) => Fate::Killed,
        (Some(_), true) => Fate::Signalled,
        (None, false) => Fate::Exited,
        (Some(a), false) if a < before => Fate::Migrated,
        (Some(_), false) => Fate::Unaffected,
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const NUMA_MAPS: &str = "\
55d0c0a00000 default file=/usr/bin/cat mapped=2 N0=2 kernelpagesize_kB=4
7f1c00000000 bind:1 anon=4096 dirty=4096 active=0 N1=4096 kernelpagesize_kB=4
7f1e00000000 default anon=1536 dirty=1536 N0=512 N1=1024 kernelpagesize_kB=4
7f2000000000 default file=/anon_hugepage\\040(deleted) huge dirty=2 N1=2 kernelpagesize_kB=2048
7ffd00000000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4
";

    /// Pages per node add every mapping's count, huge pages in 4 KiB pages.
    #[test]
    fn numa_maps_pages_per_node() {
        assert_eq!(pages_on_node(NUMA_MAPS, 1), 4096 + 1024 + 2 * 512);
        assert_eq!(pages_on_node(NUMA_MAPS, 0), 2 + 512 + 3);
        assert_eq!(pages_on_node(NUMA_MAPS, 2), 0);
        assert_eq!(pages_on_node("", 0), 0);
        // N10= is not N1=.
        assert_eq!(
            pages_on_node("7f00 default N10=5 kernelpagesize_kB=4", 1),
            0
        );
    }

    #[test]
    fn cgroup_v2_path_first() {
        assert_eq!(
            cgroup_path("0::/system.slice/a.service\n"),
            "/system.slice/a.service"
        );
        assert_eq!(
            cgroup_path("12:memory:/v1/x\n0::/unified\n"),
            "/unified",
            "the v2 line wins"
        );
        assert_eq!(cgroup_path("12:memory:/v1/x\n"), "/v1/x");
        assert_eq!(cgroup_path(""), "/");
    }

    #[test]
    fn fates() {
        assert_eq!(fate(10, None, true), Fate::Killed);
        assert_eq!(fate(10, Some(9), true), Fate::Signalled);
        assert_eq!(fate(10, None, false), Fate::Exited);
        assert_eq!(fate(10, Some(0), false), Fate::Migrated);
        assert_eq!(fate(10, Some(10), false), Fate::Unaffected);
        assert_eq!(fate(10, Some(12), false), Fate::Unaffected);
    }

    fn proc(pid: u32, cg: &str, pages: u64) -> ProcPages {
        ProcPages {
            pid,
            comm: format!("p{pid}"),
            cgroup: cg.into(),
            pages,
        }
    }

    fn trigger(ts_ns: u64, node: u32) -> Trigger {
        Trigger {
            cause: "ras:memory_failure_event".into(),
            ts_ns,
            node,
            tier: Some(22),
            pfn: Some(0x399000),
        }
    }

    /// An incident: holders most pages first, the page's cgroup marked, later events of the
    /// node folded in, fates read once it settled: the signalled holder that is gone was
    /// killed, the one that lost pages migrated, the other unaffected.
    #[test]
    fn an_incident_from_event_to_fates() {
        let mut inc = Incidents::default();
        let t = trigger(1_000, 1);
        assert!(!inc.fold(&t));
        inc.open(
            &t,
            Reading {
                procs: vec![
                    proc(10, "/a", 5),
                    proc(11, "/victim", 4096),
                    proc(12, "/a", 100),
                ],
                unreadable: 1,
                page_cgroup: Some("/victim".into()),
                at_ns: 3_001_000,
                moved_before: 0,
            },
        );
        assert!(inc.fold(&trigger(2_000, 1)), "same node: folded");
        assert!(
            !inc.fold(&trigger(2_000, 0)),
            "another node: a new incident"
        );
        inc.sigbus(11, 500_000);
        assert!(
            inc.due(1_000 + SETTLE_NS - 1, false).is_empty(),
            "not settled yet"
        );
        let due = inc.due(1_000 + SETTLE_NS, false);
        let pids: BTreeSet<u32> = due.iter().map(|(p, _)| *p).collect();
        assert_eq!(pids, [10, 11, 12].into());
        let after: BTreeMap<(u32, u32), u64> = [((10, 1), 5), ((12, 1), 40)].into();
        let out = inc.settle(1_000 + SETTLE_NS, false, &after);
        assert!(!inc.is_open());
        let [b] = out.as_slice() else {
            panic!("one incident: {out:?}")
        };
        assert_eq!(b.events, 2);
        assert_eq!(b.sampled_after_ms, 3.0);
        assert_eq!(b.unreadable, 1);
        assert_eq!(
            b.cgroups,
            [("/a".to_string(), 105), ("/victim".to_string(), 4096)].into()
        );
        let got: Vec<(u32, u64, bool, Fate)> = b
            .holders
            .iter()
            .map(|h| (h.pid, h.pages, h.page_cgroup, h.fate))
            .collect();
        assert_eq!(
            got,
            vec![
                (11, 4096, true, Fate::Killed),
                (12, 100, false, Fate::Migrated),
                (10, 5, false, Fate::Unaffected),
            ]
        );
    }

    /// A SIGBUS from before the incident is not its kill; holders beyond the list are counted
    /// and still in the cgroup totals; `force` settles at once.
    #[test]
    fn old_signals_bounded_lists_and_forced_settling() {
        let mut inc = Incidents::default();
        let t = trigger(10_000, 1);
        let procs: Vec<ProcPages> = (0..40).map(|i| proc(100 + i, "/c", 1)).collect();
        inc.sigbus(100, 5_000);
        inc.open(
            &t,
            Reading {
                procs,
                ..Reading::default()
            },
        );
        let out = inc.settle(10_001, true, &BTreeMap::new());
        let b = &out[0];
        assert_eq!(b.holders.len(), HOLDERS_MAX);
        assert_eq!(b.holders_left_out, 8);
        assert_eq!(b.cgroups["/c"], 40);
        assert!(b.holders.iter().all(|h| h.fate == Fate::Exited), "{b:?}");
    }
}
