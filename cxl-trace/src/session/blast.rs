//! Reading a blast radius from `/proc` when a memory error or an offline strikes (the
//! incidents and fates are [`crate::model::blast`], pure).
//!
//! `/proc/kpagecgroup` is opened while the tool still has its privileges and kept open: it
//! names the cgroup a page is charged to. Each process's `numa_maps` is read as the tool runs
//! after dropping them (uid 0 without capabilities, or the sudo user): another user's
//! processes cannot be read then, and are counted as such rather than left out silently.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::ErrorKind,
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::Path,
};

use cxl_trace_common::raw;

use crate::model::{
    blast::{cgroup_path, pages_on_node, Incidents, ProcPages, Reading, Trigger},
    event::{Event, MigrateReason},
    rare::{RareClass, RareDecoder},
    schema::BlastRadius,
    tiers::TierMap,
};

/// The cause of an offline's incident.
const OFFLINE: &str = "memory_offline";

/// The live run's blast radius: events open incidents, the holders are read once the ring is
/// drained, fates once an incident settles.
#[derive(Debug)]
pub struct Watch {
    reader: ProcReader,
    rare: RareDecoder,
    incidents: Incidents,
    /// Triggers seen in this drain, not yet read: (trigger, events folded, pages moved since).
    pending: Vec<(Trigger, u64, u64)>,
}

impl Watch {
    /// `reader` opened before privileges were dropped.
    pub fn new(reader: ProcReader, rare: RareDecoder) -> Self {
        Self {
            reader,
            rare,
            incidents: Incidents::default(),
            pending: Vec::new(),
        }
    }

    /// Looks at an event the run counted.
    pub fn event(&mut self, ev: &Event, tiers: &TierMap) {
        match ev {
            Event::Raw(r) => {
                let Some(e) = self.rare.decode(r) else { return };
                if e.spec.id == raw::SIGNAL_GENERATE {
                    let tid = e.fields.get("pid").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
                    self.incidents.sigbus(tgid_of(tid), e.ts_ns);
                    return;
                }
                if e.spec.class != RareClass::Ras {
                    return;
                }
                let Some(node) = e.node(&tiers.pfns) else {
                    return;
                };
                self.trigger(Trigger {
                    cause: format!("{}:{}", e.spec.category, e.spec.name),
                    ts_ns: e.ts_ns,
                    node,
                    tier: tiers.node_tier.get(&node).copied(),
                    pfn: e.pfn(),
                });
            }
            Event::MigrateStart(m) if m.reason == MigrateReason::MemoryHotplug => {
                // The node going offline: its memory block is in state `going-offline` while
                // the kernel migrates its pages away.
                let Some(node) = offlining_node() else { return };
                self.trigger(Trigger {
                    cause: OFFLINE.into(),
                    ts_ns: m.ts_ns,
                    node,
                    tier: tiers.node_tier.get(&node).copied(),
                    pfn: None,
                });
            }
            Event::Migrate(b) if matches!(b.reason, MigrateReason::MemoryHotplug) => {
                for p in self.pending.iter_mut().filter(|p| p.0.cause == OFFLINE) {
                    p.2 += b.succeeded;
                }
            }
            _ => {}
        }
    }

    fn trigger(&mut self, t: Trigger) {
        if self.incidents.fold(&t) {
            return;
        }
        match self
            .pending
            .iter_mut()
            .find(|p| p.0.node == t.node && p.0.cause == t.cause)
        {
            Some(p) => p.1 += 1,
            None => self.pending.push((t, 1, 0)),
        }
    }

    /// After a drain: reads the holders of the incidents it opened.
    pub fn read_pending(&mut self, now_ns: impl Fn() -> u64) {
        for (t, events, moved) in std::mem::take(&mut self.pending) {
            let mut r = self.reader.read(t.node, t.pfn);
            r.at_ns = now_ns();
            r.moved_before = moved;
            self.incidents.open(&t, r);
            for _ in 1..events {
                self.incidents.fold(&t);
            }
        }
    }

    /// Whether an incident waits for its fates.
    pub fn is_open(&self) -> bool {
        self.incidents.is_open() || !self.pending.is_empty()
    }

    /// Incidents settled at `now_ns` (all of them with `force`), with their fates.
    pub fn settle(&mut self, now_ns: u64, force: bool) -> Vec<BlastRadius> {
        if !self.incidents.is_open() {
            return Vec::new();
        }
        let due = self.incidents.due(now_ns, force);
        let after = self.reader.pages_now(&due);
        self.incidents.settle(now_ns, force, &after)
    }
}

/// The process (thread group) of a thread, from /proc; the thread itself if it is gone.
fn tgid_of(tid: u32) -> u32 {
    fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

/// The node of the first memory block in state `going-offline`.
fn offlining_node() -> Option<u32> {
    for e in fs::read_dir("/sys/devices/system/memory").ok()?.flatten() {
        let p = e.path();
        let state = fs::read_to_string(p.join("state")).unwrap_or_default();
        if state.trim() != "going-offline" {
            continue;
        }
        for l in fs::read_dir(&p).ok()?.flatten() {
            let name = l.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("node")) {
                if let Ok(n) = n.parse() {
                    return Some(n);
                }
            }
        }
    }
    None
}

/// Reads holders and page cgroups: through the helper process when it could be started,
/// else in this process (with what its privileges allow).
#[derive(Debug)]
pub struct ProcReader {
    helper: Option<Helper>,
    local: LocalReader,
}

/// The helper (`cxl-trace --internal-proc-reader`): a child process that keeps CAP_SYS_PTRACE (and nothing else) to
/// read other processes' `numa_maps`, one JSON request and answer per line.
#[derive(Debug)]
struct Helper {
    child: std::process::Child,
    /// Closed on drop: the helper ends at end of input (a kill may be refused once this
    /// process became the sudo user and the helper stayed root).
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

/// A request to the helper.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Request {
    /// Holders of a node (the pid left out: cxl-trace itself) and the cgroup of a page.
    Read {
        node: u32,
        pfn: Option<u64>,
        me: u32,
    },
    /// Pages on the node now per (pid, node).
    PagesNow(Vec<(u32, u32)>),
}

/// The helper's answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Answer {
    Read(Reading),
    PagesNow(Vec<((u32, u32), u64)>),
}

impl Helper {
    fn start() -> std::io::Result<Self> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe()?)
            .arg(crate::cli::PROC_READER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(std::io::Error::other("no pipes to the helper"));
        };
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout: std::io::BufReader::new(stdout),
        })
    }

    fn ask(&mut self, r: &Request) -> std::io::Result<Answer> {
        use std::io::{BufRead as _, Write as _};
        let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
        line.push('\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the helper's input is closed"))?;
        stdin.write_all(line.as_bytes())?;
        stdin.flush()?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer)? == 0 {
            return Err(std::io::Error::other("the helper ended"));
        }
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProcReader {
    /// Starts the helper and opens what needs privileges; call before dropping them. The
    /// second member says how blast radii will be read, for the privileges line.
    pub fn open() -> (Self, String) {
        let local = LocalReader::open();
        match Helper::start() {
            Ok(h) => (
                Self {
                    helper: Some(h),
                    local,
                },
                "a helper process keeps CAP_SYS_PTRACE only, to read memory maps for blast radii"
                    .into(),
            ),
            Err(e) => (
                Self {
                    helper: None,
                    local,
                },
                format!("no blast-radius helper ({e}): other users' memory maps will not be read"),
            ),
        }
    }

    /// Every process with pages on `node` (cxl-trace itself left out), the processes that
    /// could not be read, and the cgroup of `pfn`.
    pub fn read(&mut self, node: u32, pfn: Option<u64>) -> Reading {
        let me = std::process::id();
        if let Some(h) = &mut self.helper {
            match h.ask(&Request::Read { node, pfn, me }) {
                Ok(Answer::Read(r)) => return r,
                _ => self.helper = None,
            }
        }
        self.local.read(node, pfn, me)
    }

    /// Pages on the node now for each (pid, node); a process that is gone is absent.
    pub fn pages_now(&mut self, wanted: &[(u32, u32)]) -> BTreeMap<(u32, u32), u64> {
        if let Some(h) = &mut self.helper {
            match h.ask(&Request::PagesNow(wanted.to_vec())) {
                Ok(Answer::PagesNow(v)) => return v.into_iter().collect(),
                _ => self.helper = None,
            }
        }
        self.local.pages_now(wanted)
    }
}

/// `cxl-trace --internal-proc-reader`: keeps CAP_SYS_PTRACE only (when it has it), then answers requests
/// on stdin until it closes. Dies with its parent.
pub fn serve() -> crate::error::Result<i32> {
    use std::io::{BufRead as _, Write as _};
    keep_only_ptrace();
    let local = LocalReader::open();
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Read { node, pfn, me }) => Answer::Read(local.read(node, pfn, me)),
            Ok(Request::PagesNow(w)) => Answer::PagesNow(local.pages_now(&w).into_iter().collect()),
            Err(_) => break,
        };
        let Ok(text) = serde_json::to_string(&answer) else {
            break;
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(0)
}

/// Drops every capability but CAP_SYS_PTRACE (bounding set included), sets no_new_privs and
/// asks for SIGKILL when the parent dies.
fn keep_only_ptrace() {
    use caps::{CapSet, Capability};
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    let keep: caps::CapsHashSet = [Capability::CAP_SYS_PTRACE].into_iter().collect();
    for c in caps::all() {
        if c != Capability::CAP_SYS_PTRACE {
            let _ = caps::drop(None, CapSet::Bounding, c);
        }
    }
    let _ = caps::clear(None, CapSet::Ambient);
    let _ = caps::clear(None, CapSet::Inheritable);
    let had = caps::has_cap(None, CapSet::Permitted, Capability::CAP_SYS_PTRACE).unwrap_or(false);
    let kept = if had { keep } else { caps::CapsHashSet::new() };
    let _ = caps::set(None, CapSet::Effective, &kept);
    let _ = caps::set(None, CapSet::Permitted, &kept);
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
}

/// Reads `/proc` in this process.
#[derive(Debug)]
struct LocalReader {
    kpagecgroup: Option<File>,
}

impl LocalReader {
    fn open() -> Self {
        Self {
            kpagecgroup: File::open("/proc/kpagecgroup").ok(),
        }
    }

    fn read(&self, node: u32, pfn: Option<u64>, me: u32) -> Reading {
        let mut r = Reading {
            page_cgroup: pfn.and_then(|p| self.page_cgroup(p)),
            ..Reading::default()
        };
        for pid in pids() {
            if pid == me {
                continue;
            }
            match fs::read_to_string(format!("/proc/{pid}/numa_maps")) {
                Ok(maps) => {
                    let pages = pages_on_node(&maps, node);
                    if pages > 0 {
                        r.procs.push(describe(pid, pages));
                    }
                }
                // Gone meanwhile, or a kernel thread.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(_) => r.unreadable += 1,
            }
        }
        r
    }

    fn pages_now(&self, wanted: &[(u32, u32)]) -> BTreeMap<(u32, u32), u64> {
        let mut out = BTreeMap::new();
        for &(pid, node) in wanted {
            if let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/numa_maps")) {
                // A zombie has an empty map but a /proc entry: it is gone as far as its
                // memory goes, and its fate is read from whether it was signalled.
                if maps.is_empty() && !alive(pid) {
                    continue;
                }
                out.insert((pid, node), pages_on_node(&maps, node));
            }
        }
        out
    }

    /// The cgroup (v2 path) `/proc/kpagecgroup` gives for `pfn`, if the page is charged.
    fn page_cgroup(&self, pfn: u64) -> Option<String> {
        let f = self.kpagecgroup.as_ref()?;
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, pfn.checked_mul(8)?).ok()?;
        let ino = u64::from_ne_bytes(b);
        (ino != 0).then(|| cgroup_of_inode(Path::new("/sys/fs/cgroup"), ino, 8))?
    }
}

/// Numeric entries of /proc.
fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn describe(pid: u32, pages: u64) -> ProcPages {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    ProcPages {
        pid,
        comm: comm.trim_end().to_string(),
        cgroup: cgroup_path(&cgroup),
        pages,
    }
}

/// Not a zombie (state `Z` in /proc/PID/stat) and still there.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The cgroup directory under `root` whose inode is `ino`, as a path from the root.
fn cgroup_of_inode(root: &Path, ino: u64, depth: u32) -> Option<String> {
    if fs::metadata(root).ok()?.ino() == ino {
        return Some("/".into());
    }
    find_inode(root, root, ino, depth)
}

fn find_inode(root: &Path, dir: &Path, ino: u64, depth: u32) -> Option<String> {
    if depth == 0 {
        return None;
    }
    for e in fs::read_dir(dir).ok()?.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let p = e.path();
        if e.metadata().ok().map(|m| m.ino()) == Some(ino) {
            let rel = p.strip_prefix(root).ok()?;
            return Some(format!("/{}", rel.display()));
        }
        if let Some(found) = find_inode(root, &p, ino, depth - 1) {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process is found among the holders of a node it has pages on, with its name and
    /// cgroup, and its pages read again; the directory walk finds a cgroup by inode.
    #[test]
    fn reads_this_machine() {
        let r = LocalReader { kpagecgroup: None };
        let me = std::process::id();
        let maps = fs::read_to_string("/proc/self/numa_maps").unwrap_or_default();
        if maps.is_empty() {
            return; // a kernel without NUMA: nothing to read
        }
        let reading = r.read(0, None, 0);
        let mine = reading.procs.iter().find(|p| p.pid == me);
        let mine = mine.expect("this test process has pages on node 0");
        assert!(mine.pages > 0);
        assert!(!mine.comm.is_empty());
        assert!(mine.cgroup.starts_with('/'));
        let now = r.pages_now(&[(me, 0), (u32::MAX - 1, 0)]);
        assert!(now.get(&(me, 0)).is_some_and(|p| *p > 0));
        assert!(!now.contains_key(&(u32::MAX - 1, 0)), "no such process");

        let dir = std::env::temp_dir().join(format!("cxlt-ino-{me}"));
        let deep = dir.join("a/b");
        fs::create_dir_all(&deep).expect("temp dirs");
        let ino = fs::metadata(&deep).expect("meta").ino();
        assert_eq!(cgroup_of_inode(&dir, ino, 4).as_deref(), Some("/a/b"));
        assert_eq!(cgroup_of_inode(&dir, ino, 1), None, "depth bounded");
        let _ = fs::remove_dir_all(&dir);
    }
}
