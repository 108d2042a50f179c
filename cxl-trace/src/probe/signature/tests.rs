//! Tests of the parent module.

use super::*;

fn sig(s: &str) -> Signature {
    Signature::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn prototypes_round_trip() {
    for s in [
        "unsigned int demote_folio_list(struct list_head *demote_folios, struct pglist_data *pgdat)",
        "vm_fault_t handle_mm_fault(struct vm_area_struct *vma, long unsigned int address, unsigned int flags, struct pt_regs *regs)",
        "bool folio_isolate_lru(struct folio *folio)",
        "void mod_node_page_state(struct pglist_data *pgdat, enum node_stat_item item, long int delta)",
    ] {
        assert_eq!(sig(s).to_string(), s);
    }
    assert_eq!(
        sig("bool f(struct folio *folio)").params[0].ty,
        "struct folio *"
    );
    assert!(Signature::parse("nonsense").is_err());
}

#[test]
fn a_new_parameter_moves_the_return_slot() {
    let spec = spec("demote_folio_list").expect("spec");
    let mut a = HookArgs::DEFAULT;
    resolve(spec, &sig("unsigned int demote_folio_list(struct list_head *demote_folios, struct pglist_data *pgdat, struct mem_cgroup *memcg)"), &mut a).expect("resolves");
    assert_eq!((a.demote_pgdat, a.demote_ret), (1, 3));
    let mut a = HookArgs::DEFAULT;
    resolve(
        spec,
        &sig("unsigned int demote_folio_list(struct pglist_data *pgdat, struct list_head *l)"),
        &mut a,
    )
    .expect("resolves");
    assert_eq!((a.demote_pgdat, a.demote_ret), (0, 2));
}

#[test]
fn drift_is_reported_not_read() {
    let spec = spec("demote_folio_list").expect("spec");
    let mut a = HookArgs::DEFAULT;
    let e = resolve(
        spec,
        &sig("unsigned int demote_folio_list(struct list_head *l, int nid)"),
        &mut a,
    )
    .expect_err("drift");
    assert!(e.contains("no parameter `pgdat`"), "{e}");
    let e = resolve(
        spec,
        &sig("struct folio *demote_folio_list(struct list_head *l, struct pglist_data *pgdat)"),
        &mut a,
    )
    .expect_err("drift");
    assert!(e.contains("returns `struct folio *`"), "{e}");
    assert_eq!(a, HookArgs::DEFAULT, "nothing written on drift");
    // A renamed pointer parameter is found by its type.
    let mut a = HookArgs::DEFAULT;
    resolve(
        spec,
        &sig("unsigned int demote_folio_list(struct list_head *l, struct pglist_data *node)"),
        &mut a,
    )
    .expect("by type");
    assert_eq!(a.demote_pgdat, 1);
}

#[test]
fn an_errno_return_is_not_a_bool() {
    // 6.1: folio_isolate_lru returned 0 on success; since 6.4 true.
    let s = sig("int folio_isolate_lru(struct folio *folio)");
    let e = resolve(
        spec(&s.func).expect("spec"),
        &s,
        &mut HookArgs::DEFAULT.clone(),
    )
    .expect_err("drift");
    assert!(e.contains("returns `int`, the hook reads a bool"), "{e}");
}

#[test]
fn defaults_are_the_6_12_prototypes() {
    let protos = [
        "vm_fault_t handle_mm_fault(struct vm_area_struct *vma, long unsigned int address, unsigned int flags, struct pt_regs *regs)",
        "void task_numa_fault(int last_cpupid, int mem_node, int pages, int flags)",
        "int move_to_new_folio(struct folio *dst, struct folio *src, enum migrate_mode mode)",
        "bool should_numa_migrate_memory(struct task_struct *p, struct folio *folio, int src_nid, int dst_cpu)",
        "void mod_node_page_state(struct pglist_data *pgdat, enum node_stat_item item, long int delta)",
        "int migrate_misplaced_folio_prepare(struct folio *folio, struct vm_area_struct *vma, int node)",
        "bool folio_isolate_lru(struct folio *folio)",
        "unsigned int demote_folio_list(struct list_head *demote_folios, struct pglist_data *pgdat)",
    ];
    let mut a = HookArgs::DEFAULT;
    for p in protos {
        let s = sig(p);
        resolve(spec(&s.func).expect("hooked"), &s, &mut a).expect("resolves");
    }
    assert_eq!(a, HookArgs::DEFAULT);
    assert_eq!(HOOKS.len(), protos.len());
}
