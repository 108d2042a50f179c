//! `cargo xtask install [--prefix P]`: the cxl-trace binary, its shell completions and a man
//! page per subcommand, all generated from the command line's definition (clap_complete,
//! clap_mangen), so they never drift from `--help`.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;
use cxl_trace::cli::Cli;

/// Where each shell looks for completions, under the prefix.
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "share/bash-completion/completions/cxl-trace"),
    (Shell::Zsh, "share/zsh/site-functions/_cxl-trace"),
    (
        Shell::Fish,
        "share/fish/vendor_completions.d/cxl-trace.fish",
    ),
];

/// Installs `from/cxl-trace` (a release build) under `prefix`; returns the files written.
pub fn install(from: &Path, prefix: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let src = from.join("cxl-trace");
    let dst = prefix.join("bin/cxl-trace");
    create_parent(&dst)?;
    // Copied to a temporary name and renamed: a running cxl-trace keeps its old binary.
    let tmp = dst.with_extension("new");
    fs::copy(&src, &tmp).with_context(|| format!("cannot copy {}", src.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &dst).with_context(|| format!("cannot install {}", dst.display()))?;
    written.push(dst);
    for (shell, rel) in COMPLETIONS {
        let path = prefix.join(rel);
        create_parent(&path)?;
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "cxl-trace", &mut buf);
        fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    written.extend(man_pages(&prefix.join("share/man/man1"))?);
    Ok(written)
}

/// `cxl-trace.1` and `cxl-trace-SUBCOMMAND.1` for every visible subcommand, in `dir`.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let top = Cli::command();
    let mut pages = vec![("cxl-trace".to_string(), top.clone())];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("cxl-trace-{}", sub.get_name());
        // The page's title and synopsis name the command as it is typed.
        let cmd = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("cxl-trace {}", sub.get_name()))
            .version(top.get_version().unwrap_or_default().to_string());
        pages.push((name, cmd));
    }
    let mut out = Vec::new();
    for (name, cmd) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

fn create_parent(p: &Path) -> Result<()> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Into a fresh prefix: the binary (executable), three completion scripts that name every
    /// subcommand (bash's loads in bash), and a man page per visible subcommand that man
    /// renders without a warning, with its options.
    #[test]
    fn installs_binary_completions_and_man_pages() {
        let tmp = std::env::temp_dir().join(format!("cxlt-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let from = tmp.join("release");
        fs::create_dir_all(&from).expect("dir");
        fs::write(from.join("cxl-trace"), "#!/bin/sh\necho cxl-trace 0\n").expect("binary");
        let prefix = tmp.join("prefix");
        let files = install(&from, &prefix).expect("install");

        let bin = prefix.join("bin/cxl-trace");
        let mode = fs::metadata(&bin).expect("installed").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let subs: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(subs.len() >= 10, "{subs:?}");
        for (_, rel) in COMPLETIONS {
            let text = fs::read_to_string(prefix.join(rel)).expect("completion");
            for s in &subs {
                assert!(text.contains(s.as_str()), "{rel} lacks {s}");
            }
            assert!(
                !text.contains("proc-reader"),
                "{rel}: the internal helper offered"
            );
        }
        let bash = prefix.join(COMPLETIONS[0].1);
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && complete -p cxl-trace",
                bash.display()
            ))
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let man1 = prefix.join("share/man/man1");
        assert_eq!(
            files.iter().filter(|f| f.starts_with(&man1)).count(),
            subs.len() + 1
        );
        for name in [
            "cxl-trace",
            "cxl-trace-top",
            "cxl-trace-record",
            "cxl-trace-diff",
        ] {
            let page = man1.join(format!("{name}.1"));
            let out = Command::new("man")
                .args(["--warnings", "-l", "-Tutf8"])
                .arg(&page)
                .env("MANWIDTH", "100")
                .output()
                .expect("man");
            // Without a terminal, grotty still marks bold by overstriking: `X\bX`.
            let mut text = String::new();
            for ch in String::from_utf8_lossy(&out.stdout).chars() {
                if ch == '\u{8}' {
                    text.pop();
                } else {
                    text.push(ch);
                }
            }
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stderr.is_empty(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("SYNOPSIS") && text.contains("OPTIONS"),
                "{name}:\n{text}"
            );
        }
        let top = fs::read_to_string(man1.join("cxl-trace-top.1")).expect("page");
        assert!(top.contains("no\\-tui"), "top's flags are documented");
        let _ = fs::remove_dir_all(&tmp);
    }
}
