//! The facts of a kernel that the probes depend on, written to a directory (`doctor
//! --capture`) and read back: the tracefs format of every tracepoint used, the BTF prototype
//! of every hooked function, which needed symbols kallsyms has, and the names in /proc/vmstat.
//!
//! The VM test bed captures them on every kernel of its matrix and commits them under
//! `cxl-trace/tests/fixtures/kernels/<release>/`, so that the layout and prototype decoding is
//! tested for each of those kernels without booting it. Addresses and values are left out
//! (kallsyms is randomised, counters change): a capture of the same kernel is the same bytes.
//!
//! Layout of a capture:
//! - `release`: the kernel release;
//! - `tracefs/<category>/<name>/format`, and `tracefs/absent` listing the tracepoints missing;
//! - `prototypes`: one [`Signature`] line per hooked function, or `# <func>: <why>`;
//! - `kallsyms`: `<symbol> present|absent`;
//! - `vmstat`: the counter names, one per line;
//! - `layout`: sizes and member offsets of the kernel structs read through raw pointers.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use super::{
    attach::{TpSpec, KALLSYMS},
    caps,
    faults::{ALLOC_TP, FAULT_TPS},
    migrate::{MIGRATE_TPS, MIGRATION_PTE_TPS},
    process::{FOLLOW_TPS, RING_BENCH_TP},
    signature::{self, Signature},
};
use crate::{
    error::{Error, Result},
    model::rare::RARE,
    model::tracefs::{parse_format, Format},
    probe::tracefs::Tracefs,
};

/// Every tracepoint the tool may attach, and the format-only `kmem:mm_page_alloc` offsets.
pub fn tracepoints() -> Vec<(&'static str, &'static str)> {
    let tps: Vec<&TpSpec> = FAULT_TPS
        .iter()
        .chain(&FOLLOW_TPS)
        .chain(&MIGRATE_TPS)
        .chain(&MIGRATION_PTE_TPS)
        .chain([&ALLOC_TP, &RING_BENCH_TP])
        .collect();
    let mut v: Vec<(&str, &str)> = tps.iter().map(|t| (t.category, t.name)).collect();
    v.extend(RARE.iter().map(|r| (r.category, r.name)));
    v.push(("migrate", "mm_migrate_pages_start"));
    v.sort_unstable();
    v.dedup();
    v
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::Runtime(format!("cannot create {}: {e}", parent.display())))?;
    }
    fs::write(path, text)
        .map_err(|e| Error::Runtime(format!("cannot write {}: {e}", path.display())))
}

/// Writes this kernel's facts into `dir`; the number of files written.
pub fn capture(dir: &Path) -> Result<usize> {
    let tracefs = Tracefs::locate_or_mount()?;
    let mut n = 0;
    let release = caps::read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    write(&dir.join("release"), &format!("{release}\n"))?;
    n += 1;
    let mut absent = String::new();
    for (cat, name) in tracepoints() {
        match fs::read_to_string(tracefs.event_dir(cat, name).join("format")) {
            Ok(text) => {
                write(
                    &dir.join("tracefs").join(cat).join(name).join("format"),
                    &text,
                )?;
                n += 1;
            }
            Err(e) => absent.push_str(&format!("{cat}:{name} {}\n", e.kind())),
        }
    }
    write(&dir.join("tracefs").join("absent"), &absent)?;
    let syms = caps::kallsyms(KALLSYMS);
    let mut protos = String::new();
    let btf = signature::btf::load();
    match &btf {
        Ok(btf) => {
            for spec in signature::HOOKS {
                let func = spec.name_in(|n| syms.contains_key(n));
                match signature::btf::signature(btf, func) {
                    Ok(sig) => protos.push_str(&format!("{sig}\n")),
                    Err(why) => protos.push_str(&format!("# {func}: {why}\n")),
                }
            }
        }
        Err(why) => protos.push_str(&format!("# no BTF: {why}\n")),
    }
    write(&dir.join("prototypes"), &protos)?;
    write(&dir.join("layout"), &struct_layout(btf.as_ref().ok()))?;
    let mut ks = String::new();
    for s in KALLSYMS {
        let state = if syms.contains_key(*s) {
            "present"
        } else {
            "absent"
        };
        ks.push_str(&format!("{s} {state}\n"));
    }
    write(&dir.join("kallsyms"), &ks)?;
    let vmstat = fs::read_to_string("/proc/vmstat")
        .map_err(|e| Error::Runtime(format!("cannot read /proc/vmstat: {e}")))?;
    let names: Vec<&str> = vmstat
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    write(&dir.join("vmstat"), &(names.join("\n") + "\n"))?;
    Ok(n + 4)
}

/// The struct members the programs read through raw pointers, one `<what> <bytes>` line each
/// (absent members left out), and the `node_stat_item` values the decision hook filters on: the size of `struct page`, where a large folio keeps its order
/// (`folio._flags_1` from 6.6, `folio._folio_order` before) and the word that marks a tail
/// page (`page.compound_head`, renamed `page.compound_info` when it learned to hold a mask).
pub fn struct_layout(btf: Option<&btf_rs::Btf>) -> String {
    let Some(btf) = btf else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(n) = signature::btf::struct_size(btf, "page") {
        out.push_str(&format!("sizeof.page {n}\n"));
    }
    for (st, m) in LAYOUT_MEMBERS {
        if let Some(off) = signature::btf::member_offset(btf, st, m) {
            out.push_str(&format!("{st}.{m} {off}\n"));
        }
    }
    for m in ["PGPROMOTE_CANDIDATE", "PGPROMOTE_CANDIDATE_NRL"] {
        if let Some(v) = signature::btf::enum_value(btf, "node_stat_item", m) {
            out.push_str(&format!("node_stat_item.{m} {v}\n"));
        }
    }
    out
}

/// A `<what> <number>` line of a [`struct_layout`] text.
pub fn layout_value(layout: &str, key: &str) -> Option<u32> {
    layout.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The members [`struct_layout`] looks up.
pub const LAYOUT_MEMBERS: [(&str, &str); 4] = [
    ("folio", "_flags_1"),
    ("folio", "_folio_order"),
    ("page", "compound_head"),
    ("page", "compound_info"),
];

/// Where a large folio's order byte is, counted from its first tail `struct page`, from a
/// [`struct_layout`] text: `u32::MAX` when it cannot be told (then no folio size is recorded).
pub fn folio_order_offset(layout: &str) -> u32 {
    let get = |key: &str| layout_value(layout, key);
    let Some(page) = get("sizeof.page") else {
        return u32::MAX;
    };
    let tail_word = get("page.compound_head").or_else(|| get("page.compound_info"));
    if tail_word != Some(8) {
        // The tail check reads the second word of the next struct page.
        return u32::MAX;
    }
    // The `_folio_order` byte where it exists (before 6.6, when `_flags_1` was still a plain
    // flags word), else the low byte of `_flags_1` (little-endian).
    match get("folio._folio_order").or_else(|| get("folio._flags_1")) {
        Some(f) if f >= page && f - page < page => f - page,
        _ => u32::MAX,
    }
}

/// A capture read back.
#[derive(Debug, Default)]
pub struct Facts {
    pub release: String,
    /// Parsed formats by `(category, name)`.
    pub formats: BTreeMap<(String, String), Format>,
    /// Prototypes by function; a function absent from BTF is missing.
    pub prototypes: BTreeMap<String, Signature>,
    /// Symbols kallsyms has.
    pub kallsyms: BTreeSet<String>,
    /// /proc/vmstat names.
    pub vmstat: BTreeSet<String>,
    /// The [`struct_layout`] text.
    pub layout: String,
}

fn read(path: PathBuf) -> std::result::Result<String, String> {
    fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Facts {
    /// Reads a capture written by [`capture`].
    pub fn load(dir: &Path) -> std::result::Result<Self, String> {
        let mut f = Facts {
            release: read(dir.join("release"))?.trim().to_string(),
            ..Facts::default()
        };
        for (cat, name) in tracepoints() {
            let path = dir.join("tracefs").join(cat).join(name).join("format");
            if path.exists() {
                let fmt = parse_format(&read(path.clone())?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                f.formats.insert((cat.to_string(), name.to_string()), fmt);
            }
        }
        for line in read(dir.join("prototypes"))?.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let sig = Signature::parse(line)?;
            f.prototypes.insert(sig.func.clone(), sig);
        }
        for line in read(dir.join("kallsyms"))?.lines() {
            if let Some(sym) = line.strip_suffix(" present") {
                f.kallsyms.insert(sym.to_string());
            }
        }
        f.layout = read(dir.join("layout"))?;
        f.vmstat = read(dir.join("vmstat"))?
            .lines()
            .map(str::to_string)
            .collect();
        Ok(f)
    }

    /// The format of `category:name`, or why there is none.
    pub fn format(&self, category: &str, name: &str) -> std::result::Result<Format, String> {
        self.formats
            .get(&(category.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| format!("no tracepoint {category}:{name} on {}", self.release))
    }
}
