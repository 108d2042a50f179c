//! Tests of the parent module.

use super::*;
use crate::output::topology::to_text;

fn fixture(name: &str) -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name);
    Topology::read(&root.join("sys"), &root.join("proc"))
}

#[test]
fn lists() {
    assert_eq!(parse_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
    assert_eq!(parse_list("\n"), Vec::<u32>::new());
    assert_eq!(parse_list("1,x,3-2,5"), vec![1, 5]);
    assert_eq!(parse_list("0-4000000000"), Vec::<u32>::new());
}

#[test]
fn list_format_round_trips() {
    for s in ["0-3,8,10-11", "0", "1", "", "0,2,4"] {
        assert_eq!(format_list(&parse_list(s)), s);
    }
}

#[test]
fn tiers_from_a_tree_sorted_fastest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiering = dir.path().join("sys/devices/virtual/memory_tiering");
    for (t, nodes) in [("memory_tier22", "1\n"), ("memory_tier4", "0\n")] {
        fs::create_dir_all(tiering.join(t)).expect("mkdir");
        fs::write(tiering.join(t).join("nodelist"), nodes).expect("write");
    }
    fs::create_dir(tiering.join("power")).expect("mkdir");
    let t = Topology::read(&dir.path().join("sys"), &dir.path().join("proc"));
    assert_eq!(
        t.tiers,
        vec![
            Tier {
                id: 4,
                nodes: vec![0]
            },
            Tier {
                id: 22,
                nodes: vec![1]
            }
        ]
    );
    let absent = Topology::read(&dir.path().join("absent"), &dir.path().join("proc"));
    assert!(absent.tiers.is_empty());
}

#[test]
fn a_memory_only_node_in_the_top_tier_is_said_plainly() {
    let mut t = fixture("two-tier");
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    // As 6.1 lays out the same machine: one tier holds both nodes.
    t.tiers = vec![Tier {
        id: 4,
        nodes: vec![0, 1],
    }];
    for n in &mut t.nodes {
        n.tier = Some(4);
    }
    let notes = t.tiering_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("node 1 is in the top tier: no demotion target"),
        "{}",
        notes[0]
    );
    t.notes = notes;
    assert!(to_text(&t).contains("notes:\n  node 1 is in the top tier"));
    // Two tiers with demotion off.
    let mut t = fixture("two-tier");
    t.settings.demotion_enabled = Some(false);
    assert_eq!(t.tiering_notes().len(), 1);
    assert!(t.tiering_notes()[0].starts_with("demotion_enabled is false"));
}

#[test]
fn two_tier_hmat_layout() {
    let t = fixture("two-tier");
    assert_eq!(t.nodes.len(), 2);
    assert_eq!(t.nodes[0].cpus, vec![0, 1]);
    assert!(t.nodes[1].cpus.is_empty());
    assert_eq!(t.nodes[1].mem_total_kib, 1_048_576);
    assert_eq!(t.nodes[0].distances, vec![10, 20]);
    assert_eq!(
        t.tiers,
        vec![
            Tier {
                id: 4,
                nodes: vec![0]
            },
            Tier {
                id: 72,
                nodes: vec![1]
            }
        ]
    );
    assert_eq!(t.tier_of(1), Some(72));
    assert_eq!(t.nodes[1].access[0].read_latency_ns, Some(400));
    assert_eq!(t.nodes[1].access[0].read_bandwidth_mbps, Some(5120));
    assert!(!t.cxl.bus);
    assert_eq!(t.settings.numa_balancing, Some(2));
    assert_eq!(t.settings.demotion_enabled, Some(true));
    assert_eq!(t.memory_block_bytes, 128 << 20);
    let map = t.pfn_map();
    // 128 MiB blocks = 32768 pages; node1 holds blocks 8..=15.
    assert_eq!(map.node_of(0), Some(0));
    assert_eq!(map.node_of(8 * 32768), Some(1));
    assert_eq!(map.node_of(16 * 32768 - 1), Some(1));
    assert_eq!(map.node_of(16 * 32768), None);
    let text = to_text(&t);
    assert!(text.contains("memory_tier72   nodes 1"), "{text}");
}

#[test]
fn cxl_layout() {
    let t = fixture("cxl");
    assert!(t.cxl.bus);
    assert_eq!(t.cxl.memdevs.len(), 1);
    assert_eq!(t.cxl.memdevs[0].name, "mem0");
    assert_eq!(t.cxl.memdevs[0].pmem_size, Some(1 << 30));
    assert_eq!(t.cxl.regions, vec!["region0"]);
    assert_eq!(t.cxl.decoders, vec!["decoder0.0", "decoder1.0"]);
    assert_eq!(t.cxl.dax[0].target_node, Some(1));
    assert!(t.nodes[1].cxl);
    assert!(!t.nodes[0].cxl);
    assert_eq!(t.tier_of(1), Some(22));
    let text = to_text(&t);
    assert!(text.contains("CXL"), "{text}");
    assert!(text.contains("dax0.0 -> node 1"), "{text}");
}

#[test]
fn missing_tree_is_empty_not_an_error() {
    let t = Topology::read(
        Path::new("/nonexistent/sys"),
        Path::new("/nonexistent/proc"),
    );
    assert!(t.nodes.is_empty());
    assert!(t.pfn_map().node_of(0).is_none());
    assert!(to_text(&t).contains("no CXL bus"));
}

/// Recordings carry the memory blocks (as ranges), so a report attributes pfns to tiers
/// as the live run did; hostile ranges are refused.
#[test]
fn memory_blocks_round_trip_as_ranges() {
    let n = Node {
        id: 1,
        memory_blocks: vec![9, 0, 1, 2, 3, 8, 40],
        ..Node::default()
    };
    let v = serde_json::to_value(&n).expect("serialize");
    assert_eq!(
        v["memory_blocks"],
        serde_json::json!([[0, 3], [8, 9], [40, 40]])
    );
    let back: Node = serde_json::from_value(v).expect("deserialize");
    assert_eq!(back.memory_blocks, vec![0, 1, 2, 3, 8, 9, 40]);
    let huge = serde_json::json!({"id": 1, "memory_blocks": [[0, u64::MAX]]});
    let e = serde_json::from_value::<Node>(huge).expect_err("refused");
    assert!(e.to_string().contains("exceed the limit"), "{e}");
    let rev = serde_json::json!({"id": 1, "memory_blocks": [[5, 1]]});
    assert!(serde_json::from_value::<Node>(rev).is_err());
    // Recordings written before the field existed still read (no blocks: tiers unknown).
    let old: Node = serde_json::from_value(serde_json::json!({"id": 3})).expect("old");
    assert!(old.memory_blocks.is_empty());
}

fn topo_of(nodes: &[(u32, u32, usize)]) -> Topology {
    let mut t = Topology::default();
    for &(id, tier, blocks) in nodes {
        t.nodes.push(Node {
            id,
            tier: Some(tier),
            memory_blocks: (0..blocks as u64).collect(),
            ..Node::default()
        });
    }
    let mut tiers: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(id, tier, _) in nodes {
        tiers.entry(tier).or_default().push(id);
    }
    t.tiers = tiers
        .into_iter()
        .map(|(id, nodes)| Tier { id, nodes })
        .collect();
    t
}

#[test]
fn topology_changes_are_reported_once() {
    let before = topo_of(&[(0, 4, 8)]);
    assert_eq!(topology_change(&before, &before.clone()), None);
    let after = topo_of(&[(0, 4, 8), (1, 22, 4)]);
    let change = topology_change(&before, &after).expect("a node appeared");
    assert_eq!(change.event, "topology_changed");
    assert_eq!(change.nodes_added[0].node, 1);
    assert_eq!(change.nodes_added[0].tier, Some(22));
    assert_eq!(change.memory_blocks.after, 12);
    let offlined = topo_of(&[(0, 4, 6)]);
    let change = topology_change(&before, &offlined).expect("blocks went away");
    assert_eq!(change.memory_blocks.before, 8);
    assert!(change.nodes_removed.is_empty());
}
