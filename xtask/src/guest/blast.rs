//! Blast radius checks of the `cxl-ras` scenario: a victim reads a page it hard-poisoned and
//! is killed; a bystander on the same node is named and unaffected; the offline names the
//! bystander and moves its pages.

use std::{
    io::BufReader,
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
};

use anyhow::Result;
use cxl_trace::model::{
    sample::log_line,
    schema::{BlastRadius, Fate, LogEntry},
};

use super::*;

/// The victim's cgroup, under /sys/fs/cgroup.
const VICTIM_CGROUP: &str = "/cxltrace-victim";

/// Runs the victim in its cgroup: 1 MiB on `node`, one page soft-offlined and one
/// hard-poisoned, then, 1.5 s later, the poisoned page read. Its pid, once it was killed by
/// SIGBUS as it must be.
pub(crate) fn victim(c: &mut Checks, node: u32) -> Result<Option<u32>> {
    let cg = make_cgroup(VICTIM_CGROUP.trim_start_matches('/'))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {cg}/cgroup.procs && exec \"$0\" \"$@\""))
        .arg(bin("cxl-trace-workload"))
        .args([
            "poison",
            "--node",
            &node.to_string(),
            "--touch-after-ms",
            "1500",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the poison workload")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let status = child.wait()?;
    say(&format!("poison: {} ({status})", line.trim()));
    let pid = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("pid")?.as_u64())
        .and_then(|p| u32::try_from(p).ok());
    c.truth(
        "the victim read its hard-poisoned page and was killed by SIGBUS",
        format!("{status}"),
        status.signal() == Some(libc::SIGBUS),
    );
    Ok(pid)
}

/// What the scenario did.
pub(crate) struct Expect<'a> {
    pub(crate) node: u32,
    pub(crate) victim: Option<u32>,
    pub(crate) held: u32,
    /// The bystander's page the CXL poison was injected at.
    pub(crate) held_pfn: Option<u64>,
    pub(crate) held_cgroup: &'a str,
    pub(crate) offline: bool,
}

/// Each incident's holders and fates.
pub(crate) fn check(c: &mut Checks, s: &Window, e: &Expect) {
    let all: Vec<&BlastRadius> = s.events_log.blasts().collect();
    for b in &all {
        say(&format!(
            "blast: {} (read {:.1} ms after the event, fates {:.0} ms after)",
            log_line(&LogEntry::Blast((*b).clone())),
            b.sampled_after_ms,
            b.settled_after_ms
        ));
    }
    let of = |cause: &str| {
        all.iter()
            .filter(|b| b.cause == cause)
            .copied()
            .collect::<Vec<_>>()
    };
    let failure = of("ras:memory_failure_event");
    c.truth(
        "one blast radius for the hard-poisoned page, on the CXL node",
        format!(
            "{} incidents, nodes {:?}",
            failure.len(),
            failure.iter().map(|b| b.scope.node).collect::<Vec<_>>()
        ),
        failure.len() == 1 && failure[0].scope.node == Some(e.node),
    );
    if let Some(b) = failure.first() {
        let victim = b.holders.iter().find(|h| Some(h.pid) == e.victim);
        c.truth(
            "the victim is named with its pages on the node, in its cgroup, killed (SIGBUS)",
            victim.map_or("absent".into(), |h| {
                format!("{} pages in {} -> {:?}", h.pages, h.cgroup, h.fate)
            }),
            victim.is_some_and(|h| {
                (250..=256).contains(&h.pages)
                    && h.cgroup == VICTIM_CGROUP
                    && h.fate == Fate::Killed
            }),
        );
        // The kernel uncharges a hard-poisoned page when it isolates it, before the
        // tracepoint: its cgroup is not readable then (the kill names the owner).
        say(&format!(
            "the hard-poisoned page's cgroup: {:?}",
            b.scope.page_cgroup
        ));
        bystander(c, b, e, "memory failure", Fate::Unaffected);
    }
    let sigbus = s.events_log.ras().any(|r| {
        r.event == "signal:signal_generate"
            && r.fields.get("pid").and_then(|v| v.as_u64()) == e.victim.map(u64::from)
    });
    c.truth(
        "the kernel's SIGBUS to the victim is in the event log",
        format!("{sigbus}"),
        sigbus,
    );
    if let Some(pfn) = e.held_pfn {
        let poison: Vec<_> = of("cxl:cxl_poison")
            .into_iter()
            .filter(|b| b.scope.pfn == Some(pfn))
            .collect();
        c.truth(
            "CXL poison at the bystander's page: one blast radius, the page charged to its cgroup",
            format!(
                "{} incidents, {:?}",
                poison.len(),
                poison.first().map(|b| &b.scope.page_cgroup)
            ),
            poison.len() == 1
                && poison[0].scope.page_cgroup.as_deref() == Some(e.held_cgroup)
                && poison[0]
                    .holders
                    .iter()
                    .any(|h| h.pid == e.held && h.page_cgroup),
        );
        if let Some(b) = poison.first() {
            bystander(c, b, e, "CXL poison", Fate::Unaffected);
        }
    }
    if e.offline {
        let off = of("memory_offline");
        c.truth(
            "one blast radius for the offline, on the CXL node",
            format!("{} incidents", off.len()),
            off.len() == 1 && off[0].scope.node == Some(e.node),
        );
        if let Some(b) = off.first() {
            bystander(c, b, e, "offline", Fate::Migrated);
        }
    }
}

/// The bystander is named in `b` with its 16 MiB (4096 pages; for the offline, those not
/// moved before the reading), in its cgroup, with `fate`.
fn bystander(c: &mut Checks, b: &BlastRadius, e: &Expect, what: &str, fate: Fate) {
    let h = b.holders.iter().find(|h| h.pid == e.held);
    let pages_ok = |p: u64| match fate {
        Fate::Migrated => p > 0,
        _ => p >= 4096,
    };
    c.truth(
        &format!("{what}: the process holding pages on the node is named, {fate:?}"),
        h.map_or("absent".into(), |h| {
            format!(
                "{} pages in {} -> {:?} ({:?} after; {} moved before the reading)",
                h.pages, h.cgroup, h.fate, h.pages_after, b.moved_before_sample
            )
        }),
        h.is_some_and(|h| pages_ok(h.pages) && h.cgroup == e.held_cgroup && h.fate == fate),
    );
}

/// A page `pid` holds on `node`: (pfn, DPA), the DPA its offset from `region_start`. Found
/// from the process's numa_maps (a mapping with pages on the node) and pagemap (root).
pub(crate) fn page_of(pid: u32, node: u32, region_start: u64) -> Option<(u64, u64)> {
    use std::os::unix::fs::FileExt as _;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/numa_maps")).ok()?;
    let key = format!("N{node}=");
    let start = maps.lines().find_map(|l| {
        l.split_whitespace()
            .any(|w| w.starts_with(&key))
            .then(|| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())?
    })?;
    let pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok()?;
    // The mapping's pages in turn: the first present one on the node.
    for i in 0..4096u64 {
        let mut b = [0u8; 8];
        pagemap
            .read_exact_at(&mut b, ((start >> 12) + i) * 8)
            .ok()?;
        let e = u64::from_ne_bytes(b);
        let pfn = e & ((1 << 55) - 1);
        if e >> 63 == 1 && pfn != 0 {
            let dpa = (pfn << 12).checked_sub(region_start)?;
            return Some((pfn, dpa));
        }
    }
    None
}
