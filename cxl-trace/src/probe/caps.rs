//! Privilege and kernel capability checks that need no BPF program.

use std::{fs, path::Path};

use crate::error::{Error, Result};

/// CAP_SYS_ADMIN.
pub const CAP_SYS_ADMIN: u32 = 21;
/// CAP_PERFMON (5.8+).
pub const CAP_PERFMON: u32 = 38;
/// CAP_BPF (5.8+).
pub const CAP_BPF: u32 = 39;

/// Effective capability mask from the text of /proc/self/status.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Whether a capability mask allows loading tracing programs and reading the ring buffer.
pub fn mask_allows_bpf(mask: u64) -> bool {
    let has = |c: u32| mask & (1u64 << c) != 0;
    (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN)
}

/// Names of the BPF-relevant capabilities in a mask.
pub fn describe_mask(mask: u64) -> String {
    let names: Vec<&str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .iter()
    .filter(|(c, _)| mask & (1u64 << c) != 0)
    .map(|(_, n)| *n)
    .collect();
    if names.is_empty() {
        "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN".into()
    } else {
        names.join(", ")
    }
}

/// This process's effective capabilities.
pub fn effective_caps() -> Option<u64> {
    parse_cap_eff(&fs::read_to_string("/proc/self/status").ok()?)
}

/// Fails with an actionable message when tracing is not allowed.
pub fn require_bpf_privileges() -> Result<()> {
    match effective_caps() {
        Some(mask) if mask_allows_bpf(mask) => Ok(()),
        Some(mask) => Err(Error::Privileges {
            detail: format!("effective capabilities have {}", describe_mask(mask)),
        }),
        None => Err(Error::Privileges {
            detail: "cannot read CapEff from /proc/self/status".into(),
        }),
    }
}

/// Kernel BTF: Ok(size in bytes) or why not.
pub fn btf_status() -> std::result::Result<u64, String> {
    let p = Path::new("/sys/kernel/btf/vmlinux");
    match fs::metadata(p) {
        Ok(m) => Ok(m.len()),
        Err(e) => Err(format!(
            "{}: {e} (kernel built without CONFIG_DEBUG_INFO_BTF; tp_btf and fentry need it)",
            p.display()
        )),
    }
}

/// Reads a small sysfs/procfs value, trimmed.
pub fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Meaning of /proc/sys/kernel/numa_balancing.
pub fn numa_balancing_mode(v: &str) -> &'static str {
    match v {
        "0" => "disabled",
        "1" => "normal",
        "2" => "memory tiering",
        "3" => "normal + memory tiering",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_masks() {
        let root = parse_cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n").expect("mask");
        assert!(mask_allows_bpf(root));
        let bpf_perfmon = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        assert!(mask_allows_bpf(bpf_perfmon));
        assert!(!mask_allows_bpf(1u64 << CAP_BPF));
        assert!(!mask_allows_bpf(0));
        assert_eq!(
            describe_mask(0),
            "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
        );
        assert_eq!(describe_mask(1u64 << CAP_BPF), "CAP_BPF");
        assert_eq!(parse_cap_eff("nothing"), None);
    }

    #[test]
    fn numa_modes() {
        assert_eq!(numa_balancing_mode("2"), "memory tiering");
        assert_eq!(numa_balancing_mode("x"), "unknown");
    }
}

/// Addresses of the wanted symbols from /proc/kallsyms (exact names; module symbols
/// included). Missing names are absent; an address of 0 (kptr_restrict) counts as present
/// for hooking but is useless as an address, so callers check it.
pub fn kallsyms(wanted: &[&str]) -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string("/proc/kallsyms")
        .map(|text| parse_kallsyms(&text, wanted))
        .unwrap_or_default()
}

/// The pure part of [`kallsyms`].
pub fn parse_kallsyms(text: &str, wanted: &[&str]) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(_ty), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if wanted.contains(&name) {
            if let Ok(a) = u64::from_str_radix(addr, 16) {
                out.entry(name.to_string()).or_insert(a);
            }
        }
    }
    out
}

#[cfg(test)]
mod kallsyms_tests {
    use super::*;

    #[test]
    fn finds_exact_names_only() {
        let text = "ffffffff8166a2b0 t move_to_new_folio\nffffffff8166a300 t move_to_new_folio.isra.0\nffffffff82e1c0a8 D vmemmap_base\nbad line\n";
        let m = parse_kallsyms(
            text,
            &["move_to_new_folio", "vmemmap_base", "handle_mm_fault"],
        );
        assert_eq!(m.get("move_to_new_folio"), Some(&0xffff_ffff_8166_a2b0));
        assert_eq!(m.get("vmemmap_base"), Some(&0xffff_ffff_82e1_c0a8));
        assert!(!m.contains_key("handle_mm_fault"));
    }
}
