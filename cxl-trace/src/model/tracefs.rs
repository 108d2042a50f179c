//! Parsing tracefs event `format` files (pure, tested on captured files); finding and
//! mounting tracefs is `crate::probe::tracefs`.

use std::collections::BTreeMap;

/// One field of a tracepoint record.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Field {
    /// The C declaration before the name, e.g. `unsigned long` or `__data_loc char[]`.
    pub ctype: String,
    /// Byte offset in the record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Whether the kernel marks the field signed.
    pub signed: bool,
}

/// A parsed `format` file: the event's name, id and fields by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Format {
    /// Event name (`name:` line).
    pub name: String,
    /// Event id (`ID:` line).
    pub id: u32,
    /// Fields by name, common fields included.
    pub fields: BTreeMap<String, Field>,
    /// The value names of fields the print format shows with `__print_symbolic`, as the
    /// kernel numbers them (`reason` of `migrate:mm_migrate_pages`: 8 -> `demotion`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub symbols: BTreeMap<String, BTreeMap<i64, String>>,
    /// The bit names of fields the print format shows with `__print_flags`, as
    /// (mask, name) in the kernel's order (`hdr_flags` of `cxl:cxl_general_media`: 1 << 2 ->
    /// `PERMANENT_CONDITION`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, Vec<(u64, String)>>,
}

impl Format {
    /// Offset of field `name`, checking that its size is `size` bytes.
    pub fn offset(&self, name: &str, size: u32) -> Result<u32, String> {
        match self.fields.get(name) {
            None => Err(format!("{}: no field `{name}`", self.name)),
            Some(f) if f.size != size => Err(format!(
                "{}: field `{name}` is {} bytes, expected {size}",
                self.name, f.size
            )),
            Some(f) => Ok(f.offset),
        }
    }
}

/// Parses the text of a tracefs `format` file.
pub fn parse_format(text: &str) -> Result<Format, String> {
    let mut fmt = Format::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("name:") {
            fmt.name = name.trim().to_string();
        } else if let Some(id) = line.strip_prefix("ID:") {
            fmt.id = id
                .trim()
                .parse()
                .map_err(|_| format!("bad ID line `{line}`"))?;
        } else if let Some(rest) = line.strip_prefix("field:") {
            let (name, field) =
                parse_field(rest).ok_or_else(|| format!("bad field line `{line}`"))?;
            fmt.fields.insert(name, field);
        }
    }
    if fmt.name.is_empty() {
        return Err("no `name:` line".into());
    }
    if let Some(pf) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("print fmt:"))
    {
        fmt.symbols = parse_tables(pf, "__print_symbolic(REC->", false)
            .into_iter()
            .map(|(field, entries)| {
                let table = entries
                    .into_iter()
                    .map(|(v, name)| (v as i64, name))
                    .collect();
                (field, table)
            })
            .collect();
        fmt.flags = parse_tables(pf, "__print_flags(REC->", true);
    }
    Ok(fmt)
}

/// The value tables of a print format: for each `PREFIX field, [ "separator",] { value,
/// "name" }, ...)`, the entries in order. Values are integers, shifts such as
/// `((((1UL))) << (2))`, or the few enum constants the CXL formats name ([`constant`]).
fn parse_tables(pf: &str, prefix: &str, separator: bool) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut out = BTreeMap::new();
    let mut rest = pf;
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        let Some(comma) = rest.find(',') else { break };
        let field = rest[..comma].trim().to_string();
        rest = &rest[comma + 1..];
        if separator {
            // The separator string: skip it and its comma.
            let t = rest.trim_start();
            let Some(after) = t.strip_prefix('"').and_then(|s| s.split_once('"')) else {
                continue;
            };
            rest = after.1.trim_start().strip_prefix(',').unwrap_or(after.1);
        }
        let mut table = Vec::new();
        // Entries `{ value, "name" }` until the closing parenthesis.
        loop {
            let t = rest.trim_start();
            let Some(body) = t.strip_prefix('{') else {
                break;
            };
            let Some(close) = body.find('}') else { break };
            let entry = &body[..close];
            rest = body[close + 1..].trim_start();
            if let Some((v, name)) = entry.split_once(',') {
                if let Some(v) = constant(v) {
                    table.push((v, name.trim().trim_matches('"').to_string()));
                }
            }
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None => break,
            }
        }
        if !table.is_empty() {
            out.insert(field, table);
        }
    }
    out
}

/// The value of a constant expression of a print format: a decimal or hex integer (with
/// `U`/`L` suffixes), `A << B`, parentheses, or an enum constant the kernel leaves unexpanded
/// in the CXL formats (their values from `include/linux/cxl-event.h` and `drivers/cxl/cxlmem.h`).
fn constant(expr: &str) -> Option<u64> {
    let e: String = expr
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect();
    if let Some((a, b)) = e.split_once("<<") {
        let (a, b) = (constant(a)?, constant(b)?);
        return a.checked_shl(u32::try_from(b).ok()?);
    }
    const NAMED: &[(&str, u64)] = &[
        ("CXL_EVENT_TYPE_INFO", 0),
        ("CXL_EVENT_TYPE_WARN", 1),
        ("CXL_EVENT_TYPE_FAIL", 2),
        ("CXL_EVENT_TYPE_FATAL", 3),
        ("CXL_POISON_TRACE_LIST", 0),
        ("CXL_POISON_TRACE_INJECT", 1),
        ("CXL_POISON_TRACE_CLEAR", 2),
    ];
    if let Some((_, v)) = NAMED.iter().find(|(n, _)| *n == e) {
        return Some(*v);
    }
    // A negative value (a `__print_symbolic` of an errno) keeps its two's-complement bits, so
    // the signed field it names reads back as the same i64.
    if let Some(neg) = e.strip_prefix('-') {
        return constant(neg).map(u64::wrapping_neg);
    }
    let digits = e.trim_end_matches(['U', 'L', 'u', 'l']);
    match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => digits.parse().ok(),
    }
}

/// Parses `unsigned long address;\toffset:8;\tsize:8;\tsigned:0;` (after `field:`).
fn parse_field(rest: &str) -> Option<(String, Field)> {
    let mut parts = rest.split(';').map(str::trim);
    let decl = parts.next()?;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for p in parts {
        if let Some(v) = p.strip_prefix("offset:") {
            offset = v.parse().ok();
        } else if let Some(v) = p.strip_prefix("size:") {
            size = v.parse().ok();
        } else if let Some(v) = p.strip_prefix("signed:") {
            signed = v == "1";
        }
    }
    // The name is the last identifier of the declaration, before any array suffix:
    // `char comm[16]` -> comm, `__data_loc char[] parent_comm` -> parent_comm.
    let decl_no_array = match decl.rfind('[') {
        Some(i)
            if decl.ends_with(']') && !decl[..i].ends_with(' ') && !decl[..i].ends_with("char") =>
        {
            &decl[..i]
        }
        _ => decl,
    };
    let name_start = decl_no_array
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let name = &decl_no_array[name_start..];
    if name.is_empty() {
        return None;
    }
    let ctype = decl_no_array[..name_start].trim().to_string();
    Some((
        name.to_string(),
        Field {
            ctype,
            offset: offset?,
            size: size?,
            signed,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATE_6_18: &str =
        include_str!("../../tests/fixtures/tracefs/6.18/mm_migrate_pages.format");
    const MIGRATE_6_6: &str =
        include_str!("../../tests/fixtures/tracefs/6.6/mm_migrate_pages.format");
    const FORK_6_18: &str =
        include_str!("../../tests/fixtures/tracefs/6.18/sched_process_fork.format");
    const FORK_6_6: &str =
        include_str!("../../tests/fixtures/tracefs/6.6/sched_process_fork.format");
    const FAULT: &str = include_str!("../../tests/fixtures/tracefs/6.18/page_fault_user.format");

    #[test]
    fn parses_fault_format() {
        let f = parse_format(FAULT).expect("parse");
        assert_eq!(f.name, "page_fault_user");
        assert_eq!(f.id, 190);
        assert_eq!(f.offset("address", 8), Ok(8));
        assert_eq!(f.offset("ip", 8), Ok(16));
        assert_eq!(f.offset("error_code", 8), Ok(24));
        assert_eq!(f.fields["common_pid"].offset, 4);
        assert!(f.fields["common_pid"].signed);
        assert_eq!(f.fields["error_code"].ctype, "unsigned long");
    }

    /// Print-format constants: integers, hex, suffixes, shifts, the CXL enum names, and
    /// negative values (as the old `__print_symbolic` parser read them).
    #[test]
    fn print_format_constants_evaluate() {
        assert_eq!(constant(" 13"), Some(13));
        assert_eq!(constant("0x05"), Some(5));
        assert_eq!(constant("((((1UL))) << (3))"), Some(8));
        assert_eq!(constant("CXL_EVENT_TYPE_FATAL"), Some(3));
        assert_eq!(constant("-11").map(|v| v as i64), Some(-11));
        assert_eq!(constant("SOMETHING_ELSE"), None);
        let pf = r#""%s", __print_symbolic(REC->ret, { -11, "EAGAIN" }, { 0, "ok" })"#;
        let t = parse_tables(pf, "__print_symbolic(REC->", false);
        assert_eq!(
            t["ret"],
            vec![((-11i64) as u64, "EAGAIN".into()), (0, "ok".into())]
        );
    }

    #[test]
    fn migrate_reason_moves_between_6_6_and_6_7() {
        let new = parse_format(MIGRATE_6_18).expect("6.18");
        let old = parse_format(MIGRATE_6_6).expect("6.6");
        assert_eq!(new.offset("reason", 4), Ok(60));
        assert_eq!(old.offset("reason", 4), Ok(52));
        assert_eq!(new.offset("large_folio_split", 8), Ok(48));
        assert!(old.offset("large_folio_split", 8).is_err());
    }

    #[test]
    fn fork_child_pid_moves_in_6_18() {
        let new = parse_format(FORK_6_18).expect("6.18");
        let old = parse_format(FORK_6_6).expect("6.6");
        assert_eq!(new.offset("child_pid", 4), Ok(20));
        assert_eq!(old.offset("child_pid", 4), Ok(44));
        assert_eq!(old.fields["parent_comm"].size, 16);
        assert_eq!(new.fields["parent_comm"].ctype, "__data_loc char[]");
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let f = parse_format(FAULT).expect("parse");
        let err = f.offset("address", 4).expect_err("size");
        assert!(err.contains("8 bytes"), "{err}");
        assert!(f.offset("nope", 8).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_format("").is_err());
        assert!(parse_format("name: x\nID: zz\n").is_err());
        assert!(parse_format("name: x\n\tfield:int;\toffset:zz;\tsize:4;\tsigned:1;\n").is_err());
    }
}
