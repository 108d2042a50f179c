//! The text of `topology`.

use crate::model::topology::*;

/// Human-readable form for `cxl-trace topology`.
pub fn to_text(t: &Topology) -> String {
    let mut o = String::new();
    o.push_str("nodes:\n");
    for n in &t.nodes {
        let cpus = if n.cpus.is_empty() {
            "no CPUs".to_string()
        } else {
            format!("{} CPUs", n.cpus.len())
        };
        let tier = n
            .tier
            .map_or("-".to_string(), |t| format!("memory_tier{t}"));
        o.push_str(&format!(
            "  node{:<3} {:>10} MiB  {:<9} {:<14}{}\n",
            n.id,
            n.mem_total_kib / 1024,
            cpus,
            tier,
            if n.cxl { "  CXL" } else { "" }
        ));
        for a in &n.access {
            o.push_str(&format!(
                "           access{}: read {} ns / {} MB/s, write {} ns / {} MB/s\n",
                a.class,
                opt(a.read_latency_ns),
                opt(a.read_bandwidth_mbps),
                opt(a.write_latency_ns),
                opt(a.write_bandwidth_mbps)
            ));
        }
    }
    o.push_str("distances:\n");
    for n in &t.nodes {
        let d: Vec<String> = n.distances.iter().map(|d| format!("{d:>4}")).collect();
        o.push_str(&format!("  node{:<3}{}\n", n.id, d.join("")));
    }
    o.push_str("tiers (fastest first):\n");
    if t.tiers.is_empty() {
        o.push_str("  none (no memory_tiering in sysfs)\n");
    }
    for tier in &t.tiers {
        let nodes: Vec<String> = tier.nodes.iter().map(u32::to_string).collect();
        o.push_str(&format!(
            "  memory_tier{:<4} nodes {}\n",
            tier.id,
            nodes.join(",")
        ));
    }
    o.push_str("cxl:\n");
    if !t.cxl.bus {
        o.push_str("  no CXL bus\n");
    } else {
        for m in &t.cxl.memdevs {
            o.push_str(&format!(
                "  {} numa_node {} serial {} ram {} pmem {}\n",
                m.name,
                m.numa_node.map_or("-".into(), |v| v.to_string()),
                m.serial.as_deref().unwrap_or("-"),
                opt(m.ram_size),
                opt(m.pmem_size)
            ));
        }
        o.push_str(&format!("  regions: {}\n", join_or_none(&t.cxl.regions)));
        o.push_str(&format!("  decoders: {}\n", join_or_none(&t.cxl.decoders)));
    }
    for d in &t.cxl.dax {
        o.push_str(&format!(
            "  {} -> node {}\n",
            d.name,
            d.target_node.map_or("-".into(), |v| v.to_string())
        ));
    }
    let s = &t.settings;
    o.push_str("settings:\n");
    o.push_str(&format!(
        "  numa_balancing {}  promote_rate_limit_MBps {}  hot_threshold_ms {}  demotion_enabled {}\n",
        s.numa_balancing.map_or("-".into(), |v| v.to_string()),
        opt(s.promote_rate_limit_mbps),
        opt(s.hot_threshold_ms),
        s.demotion_enabled.map_or("-".into(), |v| v.to_string())
    ));
    o.push_str(&format!(
        "  memory block size {} MiB\n",
        t.memory_block_bytes >> 20
    ));
    if !t.notes.is_empty() {
        o.push_str("notes:\n");
        for n in &t.notes {
            o.push_str(&format!("  {n}\n"));
        }
    }
    o
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
