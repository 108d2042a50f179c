//! The emulated CXL device: its region onlined as a node, and what cxl-trace sees of it.

use super::*;
use std::{
    fs,
    path::Path,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

pub(crate) fn cxl_prepare() -> Result<()> {
    say("loading the CXL, nvdimm and dax drivers");
    // One at a time: kernels differ in which are modules (7.x builds cxl_port into cxl_core).
    let mut missing = Vec::new();
    for m in [
        "cxl_acpi",
        "cxl_pci",
        "cxl_port",
        "cxl_mem",
        "cxl_pmem",
        "libnvdimm",
        "nd_pmem",
        "dax_pmem",
        "kmem",
        "device_dax",
    ] {
        if let Err(e) = sh(Command::new("modprobe").arg(m)) {
            missing.push(format!("{m} ({})", first_line(&format!("{e:#}"))));
        }
    }
    if !missing.is_empty() {
        say(&format!(
            "not loadable as modules here (built in, merged or absent): {}",
            missing.join(", ")
        ));
    }
    capture_facts();
    let start = Instant::now();
    while !Path::new("/sys/bus/cxl/devices/mem0").exists() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no /sys/bus/cxl/devices/mem0 after 60 s");
        }
        sleep(Duration::from_millis(250));
    }
    say("creating region, devdax namespace");
    sh(Command::new("cxl").args([
        "create-region",
        "-m",
        "-d",
        "decoder0.0",
        "-w",
        "1",
        "-t",
        "pmem",
        "mem0",
    ]))?;
    sh(Command::new("ndctl").args(["create-namespace", "-m", "devdax", "-r", "region0"]))?;
    Ok(())
}

/// The kernel's facts for the fixtures (`doctor --capture`), with the CXL drivers loaded so
/// their tracepoints are there; the host compares them with the committed ones.
pub(crate) fn capture_facts() {
    let dir = "/results/facts";
    match sh(Command::new(bin("cxl-trace")).args(["doctor", "--capture", dir])) {
        Ok(_) => say(&format!("kernel facts captured in {dir}")),
        Err(e) => say(&format!("cannot capture the kernel facts: {e:#}")),
    }
}

pub(crate) fn cxl_online() -> Result<()> {
    say("onlining dax0.0 as system RAM");
    sh(Command::new("daxctl").args(["reconfigure-device", "--mode=system-ram", "dax0.0"]))?;
    Ok(())
}

pub(crate) fn scenario_cxl(c: &mut Checks) -> Result<()> {
    cxl_prepare()?;
    write("/proc/sys/kernel/numa_balancing", "0")?;
    let session = start_session()?;
    cxl_online()?;
    sleep(Duration::from_secs(2));
    let topo = topology()?;
    let cxl_node = topo.nodes.iter().find(|n| n.cxl).map(|n| u64::from(n.id));
    c.truth(
        "CXL node onlined",
        format!("{cxl_node:?}"),
        cxl_node.is_some(),
    );
    let memdevs = serde_json::to_string(&topo.cxl.memdevs).unwrap_or_default();
    let regions = serde_json::to_string(&topo.cxl.regions).unwrap_or_default();
    c.truth(
        "topology lists mem0",
        memdevs.clone(),
        memdevs.contains("mem0"),
    );
    c.truth(
        "topology lists region0",
        regions.clone(),
        regions.contains("region0"),
    );
    let node = cxl_node.unwrap_or(1).to_string();
    say("move_pages(2): 32 MiB to the CXL node and 16 MiB back");
    workload(&["move", "--mib", "32", "--from", "0", "--to", &node])?;
    workload(&["move", "--mib", "16", "--from", &node, "--to", "0"])?;
    let (fast, slow) = (
        node_tier(&topo, 0),
        cxl_node.and_then(|n| node_tier(&topo, n)),
    );
    let tiered = matches!((fast, slow), (Some(a), Some(b)) if b > a);
    c.truth(
        "CXL node in a lower tier than node 0 (dax/kmem)",
        format!("{fast:?} / {slow:?}"),
        tiered,
    );
    if tiered {
        // Small sizes: QEMU emulates CXL memory as MMIO, about 2 MB/s under TCG.
        say("demotion to the CXL node by cgroup v2 memory.reclaim (8M of a 16 MiB process)");
        cgroup_reclaim("cxltrace-cxl-reclaim", "16", "8M")?;
        say("demotion to the CXL node by memory pressure: node 0's free memory plus 24 MiB, bound to node 0");
        let free_mib = node_free_kib(0)? / 1024;
        let pages = ((free_mib + 24) << 20) / 4096;
        sh(Command::new("numactl")
            .args(["--membind=0", "--"])
            .arg(bin("cxl-trace-workload"))
            .args(["touch", "--pages", &pages.to_string()]))?;
        say(
            "promotion from the CXL node by NUMA balancing (tiering mode): 8 MiB written in a loop",
        );
        // One pass over 8 MiB of MMIO-speed memory takes seconds: a page is hot when touched
        // within 5 s of being scanned.
        tiering_mode("5000")?;
        let h = hold_hot("8", &node, "16", None)?;
        say(&format!("hot loop: {}", h.finish()?));
        write("/proc/sys/kernel/numa_balancing", "0")?;
    }
    let (s, start, bt) = stop_session_full(session)?;
    let mut want = vec!["syscall"];
    if tiered {
        want.extend(["demotion", "numa_misplaced"]);
    }
    check_migrations(c, &s, &bt, &want);
    scenario_tier_checks(
        c,
        &s,
        &start,
        fast,
        slow,
        Ran {
            promotion: tiered,
            throttled: false,
            pingpong: false,
        },
    );
    let tool_out = fs::read_to_string("/results/cxl-trace.out").unwrap_or_default();
    let appeared = tool_out.lines().any(|l| {
        l.contains("\"topology_changed\"")
            && cxl_node.is_some_and(|n| l.contains(&format!("\"node\":{n}")))
    });
    c.truth(
        "hotplug: the running tool saw the CXL node appear",
        appeared.to_string(),
        appeared,
    );
    Ok(())
}
