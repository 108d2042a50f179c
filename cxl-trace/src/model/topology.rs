//! Memory topology from sysfs and procfs: NUMA nodes, distances, memory tiers, HMAT/CDAT
//! access coordinates, CXL devices and the dax devices onlined as nodes, tiering settings,
//! and the pfn-to-node map from memory blocks.
//!
//! Everything is read relative to a `sys` and a `proc` root, so the same code parses the live
//! system and the captured trees under `tests/fixtures/sysfs/`.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Access coordinates of a node from its initiators (HMAT or CDAT), `accessN/initiators`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Access {
    /// `accessN` class (0: any initiator, 1: CPU initiators).
    pub class: u32,
    /// Read latency, ns.
    pub read_latency_ns: Option<u64>,
    /// Write latency, ns.
    pub write_latency_ns: Option<u64>,
    /// Read bandwidth, MB/s.
    pub read_bandwidth_mbps: Option<u64>,
    /// Write bandwidth, MB/s.
    pub write_bandwidth_mbps: Option<u64>,
}

/// One NUMA node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Node {
    /// Node id.
    pub id: u32,
    /// CPUs of the node (empty for a CPU-less memory node such as CXL memory).
    pub cpus: Vec<u32>,
    /// MemTotal in KiB.
    pub mem_total_kib: u64,
    /// Distances to every node, in node order (SLIT).
    pub distances: Vec<u32>,
    /// Memory tier id (`memory_tierN`) the node belongs to.
    pub tier: Option<u32>,
    /// HMAT/CDAT access coordinates.
    pub access: Vec<Access>,
    /// Whether the node's memory comes from a CXL device (a dax device onlined as this node).
    pub cxl: bool,
    /// Memory block ids of the node: what maps a pfn to its node, so recordings carry them
    /// (as inclusive ranges, `[[0, 15], [32, 47]]`).
    #[serde(with = "block_ranges")]
    #[schemars(with = "Vec<[u64; 2]>")]
    pub memory_blocks: Vec<u64>,
}

/// Memory block ids (sorted) as inclusive ranges on the wire; reading refuses more than
/// [`block_ranges::MAX_BLOCKS`] ids, so an untrusted file cannot size an allocation.
mod block_ranges {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// 4 Mi blocks: 512 TiB of 128 MiB blocks.
    pub const MAX_BLOCKS: u64 = 1 << 22;

    pub fn serialize<S: Serializer>(blocks: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let mut sorted = blocks.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<[u64; 2]> = Vec::new();
        for b in sorted {
            match ranges.last_mut() {
                Some(r) if r[1] + 1 == b => r[1] = b,
                _ => ranges.push([b, b]),
            }
        }
        s.collect_seq(ranges)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let ranges = Vec::<[u64; 2]>::deserialize(d)?;
        let mut total = 0u64;
        for [a, b] in &ranges {
            if b < a {
                return Err(D::Error::custom(format!(
                    "memory block range {a}..{b} is reversed"
                )));
            }
            total = total.saturating_add((b - a).saturating_add(1));
        }
        if total > MAX_BLOCKS {
            return Err(D::Error::custom(format!(
                "{total} memory blocks exceed the limit of {MAX_BLOCKS}"
            )));
        }
        Ok(ranges.iter().flat_map(|[a, b]| *a..=*b).collect())
    }
}

/// A memory tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Tier {
    /// `memory_tierN` id; lower ids are faster (DRAM is 4, dax/kmem default 22).
    pub id: u32,
    /// Nodes in the tier.
    pub nodes: Vec<u32>,
}

/// A CXL memory device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct CxlMemdev {
    /// e.g. `mem0`.
    pub name: String,
    /// `numa_node` of the device (its host bridge's proximity), if any.
    pub numa_node: Option<i64>,
    /// Serial number.
    pub serial: Option<String>,
    /// `ram/size` in bytes.
    pub ram_size: Option<u64>,
    /// `pmem/size` in bytes.
    pub pmem_size: Option<u64>,
}

/// A CXL region's host physical address range (`regionN/resource` and `size`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct CxlRegion {
    /// e.g. `region0`.
    pub name: String,
    /// First host physical address.
    pub start: u64,
    /// Bytes.
    pub size: u64,
}

/// A dax device and the node it was onlined as (`target_node`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct DaxDevice {
    /// e.g. `dax0.0`.
    pub name: String,
    /// Node its memory becomes when onlined as system-ram.
    pub target_node: Option<i64>,
}

/// CXL objects on the bus.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Cxl {
    /// Whether /sys/bus/cxl exists.
    pub bus: bool,
    /// Memory devices.
    pub memdevs: Vec<CxlMemdev>,
    /// Regions (`regionN`).
    pub regions: Vec<String>,
    /// Their host physical address ranges, where sysfs gives them.
    pub region_ranges: Vec<CxlRegion>,
    /// Decoders (`decoderX.Y`).
    pub decoders: Vec<String>,
    /// dax devices.
    pub dax: Vec<DaxDevice>,
}

/// Tiering-relevant settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Settings {
    /// /proc/sys/kernel/numa_balancing (0 off, 1 normal, 2 tiering, 3 both).
    pub numa_balancing: Option<u32>,
    /// /proc/sys/kernel/numa_balancing_promote_rate_limit_MBps.
    pub promote_rate_limit_mbps: Option<u64>,
    /// debugfs sched/numa_balancing/hot_threshold_ms.
    pub hot_threshold_ms: Option<u64>,
    /// /sys/kernel/mm/numa/demotion_enabled.
    pub demotion_enabled: Option<bool>,
}

/// The whole topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Topology {
    /// Nodes with memory or CPUs, by id.
    pub nodes: Vec<Node>,
    /// Tiers, fastest first.
    pub tiers: Vec<Tier>,
    /// CXL devices.
    pub cxl: Cxl,
    /// Settings.
    pub settings: Settings,
    /// Memory block size in bytes (`block_size_bytes`, hex in sysfs).
    pub memory_block_bytes: u64,
    /// 5-level paging in use (the `la57` flag in /proc/cpuinfo): widens the pfn in migration
    /// entries.
    pub five_level_paging: bool,
    /// What this topology means for tiering, in plain words ([`Topology::notes`]).
    pub notes: Vec<String>,
}

/// Parses a kernel cpulist/nodelist such as `0-3,8,10-11`. Invalid parts are skipped.
pub fn parse_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    // Bound the range so a corrupt file cannot allocate without limit.
                    if b >= a && b - a < 65_536 {
                        out.extend(a..=b);
                    }
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Number of possible node ids (highest id in /sys/devices/system/node/possible plus one; 1 if
/// it cannot be read).
pub fn possible_nodes() -> u32 {
    std::fs::read_to_string("/sys/devices/system/node/possible")
        .ok()
        .and_then(|s| parse_list(s.trim()).into_iter().max())
        .map_or(1, |m| m + 1)
}

/// Formats a sorted list the way the kernel prints nodelists: `0-3,8,10-11`.
pub fn format_list(v: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The CXL bus: memory devices, regions and their address ranges, decoders, dax devices.
fn read_cxl(sys: &Path) -> Cxl {
    let bus = sys.join("bus/cxl/devices");
    let dax_root = sys.join("bus/dax/devices");
    let dax: Vec<DaxDevice> = names_with_prefix(&dax_root, "dax")
        .into_iter()
        .map(|name| DaxDevice {
            target_node: read(&dax_root.join(&name).join("target_node"))
                .and_then(|v| v.parse().ok()),
            name,
        })
        .collect();
    Cxl {
        bus: sys.join("bus/cxl").is_dir(),
        memdevs: names_with_prefix(&bus, "mem")
            .into_iter()
            .map(|name| {
                let d = bus.join(&name);
                CxlMemdev {
                    numa_node: read(&d.join("numa_node")).and_then(|v| v.parse().ok()),
                    serial: read(&d.join("serial")),
                    ram_size: read(&d.join("ram/size")).and_then(|v| parse_size(&v)),
                    pmem_size: read(&d.join("pmem/size")).and_then(|v| parse_size(&v)),
                    name,
                }
            })
            .collect(),
        region_ranges: names_with_prefix(&bus, "region")
            .into_iter()
            .filter_map(|name| {
                let d = bus.join(&name);
                let hex = |f: &str| {
                    read(&d.join(f))
                        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
                };
                Some(CxlRegion {
                    start: hex("resource")?,
                    size: hex("size")?,
                    name,
                })
            })
            .collect(),
        regions: names_with_prefix(&bus, "region"),
        decoders: names_with_prefix(&bus, "decoder"),
        dax,
    }
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> Option<u64> {
    read(p)?.parse().ok()
}

/// Names in a directory with a prefix followed by an id, as (id, path), sorted by id.
fn numbered(dir: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let id = name.strip_prefix(prefix)?.parse::<u64>().ok()?;
                    Some((id, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn names_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `Node N MemTotal:  123 kB` from a node meminfo.
fn mem_total_kib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find(|l| l.contains("MemTotal:"))
        .and_then(|l| l.split_whitespace().rev().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn read_access(node_dir: &Path) -> Vec<Access> {
    (0..2)
        .filter_map(|class| {
            let d = node_dir.join(format!("access{class}")).join("initiators");
            if !d.is_dir() {
                return None;
            }
            Some(Access {
                class,
                read_latency_ns: read_u64(&d.join("read_latency")),
                write_latency_ns: read_u64(&d.join("write_latency")),
                read_bandwidth_mbps: read_u64(&d.join("read_bandwidth")),
                write_bandwidth_mbps: read_u64(&d.join("write_bandwidth")),
            })
        })
        .collect()
}

impl Topology {
    /// Reads the topology under `sys` (normally `/sys`) and `proc` (normally `/proc`).
    pub fn read(sys: &Path, proc_: &Path) -> Self {
        let node_root = sys.join("devices/system/node");
        let tiers: Vec<Tier> = numbered(&sys.join("devices/virtual/memory_tiering"), "memory_tier")
            .into_iter()
            .filter_map(|(id, p)| {
                Some(Tier {
                    id: u32::try_from(id).ok()?,
                    nodes: parse_list(&read(&p.join("nodelist"))?),
                })
            })
            .collect();

        let cxl = read_cxl(sys);

        let nodes = numbered(&node_root, "node")
            .into_iter()
            .filter_map(|(id, dir)| {
                let id = u32::try_from(id).ok()?;
                let tier = tiers.iter().find(|t| t.nodes.contains(&id)).map(|t| t.id);
                Some(Node {
                    id,
                    cpus: parse_list(&read(&dir.join("cpulist")).unwrap_or_default()),
                    mem_total_kib: mem_total_kib(&read(&dir.join("meminfo")).unwrap_or_default()),
                    distances: read(&dir.join("distance"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|d| d.parse().ok())
                        .collect(),
                    tier,
                    access: read_access(&dir),
                    cxl: cxl.dax.iter().any(|d| d.target_node == Some(i64::from(id))),
                    memory_blocks: numbered(&dir, "memory")
                        .into_iter()
                        .map(|(m, _)| m)
                        .collect(),
                })
            })
            .collect();

        let settings = Settings {
            numa_balancing: read(&proc_.join("sys/kernel/numa_balancing"))
                .and_then(|v| v.parse().ok()),
            promote_rate_limit_mbps: read_u64(
                &proc_.join("sys/kernel/numa_balancing_promote_rate_limit_MBps"),
            ),
            hot_threshold_ms: read_u64(
                &sys.join("kernel/debug/sched/numa_balancing/hot_threshold_ms"),
            ),
            demotion_enabled: read(&sys.join("kernel/mm/numa/demotion_enabled"))
                .map(|v| v == "true" || v == "1"),
        };
        let memory_block_bytes = read(&sys.join("devices/system/memory/block_size_bytes"))
            .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let mut t = Self {
            nodes,
            tiers,
            cxl,
            settings,
            memory_block_bytes,
            five_level_paging: crate::model::pte::cpuinfo_la57(
                &read(&proc_.join("cpuinfo")).unwrap_or_default(),
            ),
            notes: Vec::new(),
        };
        t.notes = t.tiering_notes();
        t
    }

    /// Situations that make tiering do nothing, said plainly: a memory-only node in the top
    /// tier (no demotion target: nothing is demoted to it or promoted from it), and demotion
    /// turned off while there is a lower tier.
    pub fn tiering_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let with_memory: Vec<&Node> = self.nodes.iter().filter(|n| n.mem_total_kib > 0).collect();
        let top = self.tiers.first().map(|t| t.id);
        if let Some(top) = top {
            for n in &with_memory {
                if n.cpus.is_empty() && n.tier == Some(top) {
                    notes.push(format!(
                        "node {} is in the top tier: no demotion target (it has no CPUs, yet memory_tier{top} holds it{}); kernels before 6.7 put only dax/kmem memory in lower tiers, not HMAT-described nodes",
                        n.id,
                        if self.tiers.len() == 1 {
                            " with every other node"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        if self.tiers.len() > 1 && self.settings.demotion_enabled == Some(false) {
            notes.push(
                "demotion_enabled is false: reclaim frees or swaps pages instead of demoting them"
                    .into(),
            );
        }
        notes
    }

    /// The live system's topology.
    pub fn live() -> Self {
        Self::read(Path::new("/sys"), Path::new("/proc"))
    }

    /// A pfn-to-node map built from the memory blocks.
    pub fn pfn_map(&self) -> PfnMap {
        let pages_per_block = self.memory_block_bytes / 4096;
        let mut blocks = BTreeMap::new();
        for n in &self.nodes {
            for &b in &n.memory_blocks {
                blocks.insert(b, n.id);
            }
        }
        PfnMap {
            pages_per_block,
            blocks,
        }
    }

    /// Tier of a node.
    pub fn tier_of(&self, node: u32) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.id == node)
            .and_then(|n| n.tier)
    }
}

/// Parses a sysfs size: decimal, or hex with 0x.
fn parse_size(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Maps page frame numbers to nodes: memory block M covers pfns
/// `[M * pages_per_block, (M + 1) * pages_per_block)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PfnMap {
    /// Pages per memory block.
    pub pages_per_block: u64,
    /// Memory block id to node.
    pub blocks: BTreeMap<u64, u32>,
}

impl PfnMap {
    /// The node holding `pfn`, if its block is online.
    pub fn node_of(&self, pfn: u64) -> Option<u32> {
        if self.pages_per_block == 0 {
            return None;
        }
        self.blocks.get(&(pfn / self.pages_per_block)).copied()
    }
}

/// What changed between two topologies (nodes, tiers, memory blocks), as a log entry.
pub fn topology_change(
    old: &Topology,
    new: &Topology,
) -> Option<crate::model::schema::TopologyChange> {
    let ids = |t: &Topology| t.nodes.iter().map(|n| n.id).collect::<Vec<_>>();
    let blocks = |t: &Topology| t.nodes.iter().map(|n| n.memory_blocks.len()).sum::<usize>();
    if ids(old) == ids(new) && old.tiers == new.tiers && blocks(old) == blocks(new) {
        return None;
    }
    let nodes_added = new
        .nodes
        .iter()
        .filter(|n| !old.nodes.iter().any(|o| o.id == n.id))
        .map(|n| crate::model::schema::NodeAdded {
            node: n.id,
            tier: n.tier,
            cxl: n.cxl,
            mem_total_kib: n.mem_total_kib,
        })
        .collect();
    let nodes_removed = old
        .nodes
        .iter()
        .filter(|o| !new.nodes.iter().any(|n| n.id == o.id))
        .map(|o| o.id)
        .collect();
    Some(crate::model::schema::TopologyChange {
        event: "topology_changed".into(),
        class: "hotplug".into(),
        nodes_added,
        nodes_removed,
        memory_blocks: crate::model::schema::BlockCount {
            before: blocks(old),
            after: blocks(new),
        },
        tiers: new.tiers.clone(),
    })
}

#[cfg(test)]
mod tests;
