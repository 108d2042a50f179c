//! The source tree's layering, checked: each folder of `src/` uses only the layers below it,
//! and the pure layers (`model/`, `output/`) use none of aya, tokio, ratatui or crossterm, so
//! they build and test without root, a kernel or a terminal.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Layers from the bottom up; each may use only those before it.
const LAYERS: &[&str] = &[
    "error", "model", "probe", "cli", "output", "session", "tui", "cmd", "lib",
];

/// Layers that must stay free of the kernel, the runtime and the terminal.
const PURE: &[&str] = &["model", "output"];
const NOT_IN_PURE: &[&str] = &[
    "aya",
    "aya_obj",
    "tokio",
    "ratatui",
    "crossterm",
    "hyper",
    "hyper_util",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("src is readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file names after `root::`, in paths and in `use root::{a, b::c}`.
fn used(code: &str, root: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pat = format!("{root}::");
    let mut rest = code;
    while let Some(i) = rest.find(&pat) {
        let before = rest[..i].chars().last();
        rest = &rest[i + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: after `{` or a comma at depth 0.
            let (mut depth, mut start) = (0usize, true);
            let mut word = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    _ => {}
                }
                if start && depth == 0 && (c.is_alphanumeric() || c == '_') {
                    word.push(c);
                } else if !word.is_empty() {
                    out.insert(std::mem::take(&mut word));
                    start = false;
                }
            }
        } else {
            let w: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(w);
        }
    }
    out
}

fn layer_of(src: &Path, file: &Path) -> Option<&'static str> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    LAYERS.iter().copied().find(|l| *l == name)
}

#[test]
fn layers_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut breaks = Vec::new();
    let mut checked = 0;
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name == "testutil.rs" {
            continue;
        }
        let Some(layer) = layer_of(&src, f) else {
            continue;
        };
        checked += 1;
        let rank = LAYERS.iter().position(|l| *l == layer).unwrap_or(0);
        let text = code(&fs::read_to_string(f).expect("readable"));
        for m in used(&text, "crate") {
            if let Some(r) = LAYERS.iter().position(|l| *l == m) {
                if r > rank {
                    breaks.push(format!("{}: {layer} uses {m}", f.display()));
                }
            }
        }
        if PURE.contains(&layer) {
            for c in NOT_IN_PURE {
                let named = names_crate(&text, c);
                if named {
                    breaks.push(format!("{}: the pure layer {layer} uses {c}", f.display()));
                }
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} files checked: is the tree where it was?"
    );
    assert!(breaks.is_empty(), "layering broken:\n{}", breaks.join("\n"));
}

/// The check itself sees a break (so a passing run means something).
#[test]
fn the_check_sees_a_break() {
    let text = "use crate::{model::event::Event, tui::state::Msg};\nfn f() { aya::maps::Map::x(); crate::cmd::top::run(); }";
    let used = used(text, "crate");
    assert!(used.contains("tui") && used.contains("cmd") && used.contains("model"));
    assert!(names_crate(text, "aya"));
    assert!(!names_crate("let x = my_aya::f();", "aya"));
}

/// Whether `text` names the crate `c` in a path (`c::...`).
fn names_crate(text: &str, c: &str) -> bool {
    text.match_indices(&format!("{c}::")).any(|(i, _)| {
        !text[..i]
            .chars()
            .last()
            .is_some_and(|p| p.is_alphanumeric() || p == '_')
    })
}

/// Most lines a source file may have, and a function.
const FILE_MAX: usize = 600;
const FN_MAX: usize = 110;

/// Lengths of the functions in `text`: (name, lines), by brace matching from each `fn`.
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let code = l.split("//").next().unwrap_or("");
            let mut in_str = false;
            let mut prev = ' ';
            for c in code.chars() {
                match c {
                    '"' if prev != '\\' => in_str = !in_str,
                    '{' if !in_str => {
                        depth += 1;
                        opened = true;
                    }
                    '}' if !in_str => depth -= 1,
                    _ => {}
                }
                prev = c;
            }
            if opened && depth <= 0 {
                out.push((name.clone(), j - i + 1));
                break;
            }
            if !opened && code.trim_end().ends_with(';') {
                break;
            }
        }
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        "cxl-trace/src",
        "cxl-trace-common/src",
        "cxl-trace-ebpf/src",
        "xtask/src",
    ] {
        sources(&root.join(dir), &mut files);
    }
    let mut big = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).expect("readable");
        let n = text.lines().count();
        if n > FILE_MAX {
            big.push(format!("{}: {n} lines (at most {FILE_MAX})", f.display()));
        }
        for (name, len) in function_lengths(&text) {
            if len > FN_MAX {
                big.push(format!(
                    "{}: fn {name} is {len} lines (at most {FN_MAX})",
                    f.display()
                ));
            }
        }
    }
    assert!(files.len() > 60, "only {} files found", files.len());
    assert!(big.is_empty(), "too large:\n{}", big.join("\n"));
}

/// The function measure counts what it should.
#[test]
fn function_lengths_are_measured() {
    let text = "fn a() {\n    let s = \"}\";\n}\n\npub(crate) fn b(x: u32) -> u32 {\n    if x > 1 {\n        x\n    } else {\n        0\n    }\n}\nfn decl();\n";
    assert_eq!(
        function_lengths(text),
        vec![("a".to_string(), 3), ("b".to_string(), 7)]
    );
}
