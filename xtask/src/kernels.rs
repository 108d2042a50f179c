//! Guest kernels from Debian's archive: which release a `--kernel` selector names, where its
//! packages put the image and the modules, and which modules the initramfs must load.
//!
//! Every suite from bookworm to sid is reached through a private apt configuration under
//! `target/vm/apt` (its own sources list, lists and cache directories); the machine's own apt
//! sources are never touched. Each unpacked release is cached under `target/vm/kernel/<release>`
//! and reused offline.
//!
//! Debian ships two layouts: up to 6.x, `linux-image-<R>-unsigned` holds `boot/vmlinuz-<R>` and
//! `lib/modules/<R>`; later, `linux-binary-unsigned-<R>` holds
//! `usr/lib/modules/<R>/vmlinuz.unsigned` and `linux-modules-<R>` the modules.

use std::{
    cmp::Ordering,
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// What `--kernel` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The newest release of a series, e.g. `6.12`.
    Series(u32, u32),
    /// The newest stable release Debian has (experimental's release candidates left out).
    Newest,
    /// One release, e.g. `6.12.117+deb12-amd64`.
    Release(String),
}

impl Selector {
    /// Parses `6.1`, `6.12`, `7.3`, `newest` or a full release ending in `-amd64`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "newest" {
            return Ok(Self::Newest);
        }
        if s.ends_with("-amd64") {
            return match Release::parse(s) {
                Some(_) => Ok(Self::Release(s.to_string())),
                None => bail!("{s:?} is not a Debian kernel release (like 6.12.117+deb12-amd64)"),
            };
        }
        let mut parts = s.split('.');
        match (
            parts.next().and_then(|p| p.parse().ok()),
            parts.next().and_then(|p| p.parse().ok()),
            parts.next(),
        ) {
            (Some(a), Some(b), None) => Ok(Self::Series(a, b)),
            _ => bail!(
                "--kernel {s:?}: expected a series (6.1, 6.12, 7.3), `newest`, or a full release (6.12.117+deb12-amd64)"
            ),
        }
    }

    /// A name for directories and messages.
    pub fn label(&self) -> String {
        match self {
            Self::Series(a, b) => format!("{a}.{b}"),
            Self::Newest => "newest".into(),
            Self::Release(r) => r.clone(),
        }
    }

    fn matches(&self, r: &Release) -> bool {
        match self {
            Self::Series(a, b) => (r.key[0], r.key[1]) == (u64::from(*a), u64::from(*b)),
            Self::Newest => true,
            Self::Release(name) => &r.name == name,
        }
    }

    /// The release this selector picks among `available` (the newest that matches).
    pub fn pick<'a>(&self, available: &'a [Release]) -> Option<&'a Release> {
        available.iter().filter(|r| self.matches(r)).max()
    }
}

/// How a release's packages are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    /// `linux-image-<R>-unsigned`: `boot/vmlinuz-<R>`, `lib/modules/<R>`.
    Image,
    /// `linux-binary-unsigned-<R>` + `linux-modules-<R>`: `usr/lib/modules/<R>/vmlinuz`.
    Split,
}

/// A kernel release Debian offers, e.g. `6.1.0-57-amd64` or `7.3.4+deb13-amd64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The release string (`uname -r`).
    pub name: String,
    /// major, minor, patch, Debian ABI number (`6.1.0-57` has 57; `6.12.117+deb12` 0).
    pub key: [u64; 4],
    /// Its packages' layout.
    pub layout: Layout,
}

impl Ord for Release {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key).then(self.name.cmp(&o.name))
    }
}

impl PartialOrd for Release {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Release {
    /// Parses a release string; `None` for anything but a plain `-amd64` flavour.
    pub fn parse(name: &str) -> Option<Self> {
        let base = name.strip_suffix("-amd64")?;
        if base.ends_with("-cloud") || base.ends_with("-rt") {
            return None;
        }
        // `6.1.0-57` or `6.12.117+deb12` or `7.3.4+deb13`.
        let (ver, abi) = match base.split_once('+') {
            Some((v, _)) => (v, 0),
            None => match base.split_once('-') {
                Some((v, n)) => (v, n.parse().ok()?),
                None => (base, 0),
            },
        };
        let mut n = ver.split('.').map(|p| p.parse::<u64>().ok());
        let key = [n.next()??, n.next()??, n.next().flatten().unwrap_or(0), abi];
        Some(Self {
            name: name.to_string(),
            key,
            layout: Layout::Image,
        })
    }

    /// `(major, minor)`, e.g. `(6, 12)`.
    pub fn series(&self) -> (u64, u64) {
        (self.key[0], self.key[1])
    }

    /// The releases named by package names (one per line, as `apt-cache search` prints them):
    /// `linux-image-<R>-unsigned` (image layout) and `linux-binary-unsigned-<R>` with
    /// `linux-modules-<R>` (split layout).
    pub fn from_packages(names: &str) -> Vec<Self> {
        let names: BTreeSet<&str> = names
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut out = Vec::new();
        for n in &names {
            if let Some(r) = n
                .strip_prefix("linux-image-")
                .and_then(|r| r.strip_suffix("-unsigned"))
            {
                out.extend(Self::parse(r));
            } else if let Some(r) = n.strip_prefix("linux-binary-unsigned-") {
                if names.contains(format!("linux-modules-{r}").as_str()) {
                    out.extend(Self::parse(r).map(|mut x| {
                        x.layout = Layout::Split;
                        x
                    }));
                }
            }
        }
        out
    }

    /// The packages to download.
    pub fn packages(&self) -> Vec<String> {
        match self.layout {
            Layout::Image => vec![format!("linux-image-{}-unsigned", self.name)],
            Layout::Split => vec![
                format!("linux-binary-unsigned-{}", self.name),
                format!("linux-modules-{}", self.name),
            ],
        }
    }
}

/// The kernel image of an unpacked release, in either layout.
pub fn vmlinuz(dir: &Path, release: &str) -> Option<PathBuf> {
    [
        dir.join(format!("boot/vmlinuz-{release}")),
        dir.join(format!("usr/lib/modules/{release}/vmlinuz")),
        dir.join(format!("usr/lib/modules/{release}/vmlinuz.unsigned")),
        dir.join(format!("lib/modules/{release}/vmlinuz")),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Modules the initramfs needs to mount the host's root: the virtio PCI transport (a module on
/// 6.1, built in later), 9p over virtio, and overlayfs.
pub const BOOT_TARGETS: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

fn module_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.split('.').next())
        .unwrap_or_default()
        .replace('-', "_")
}

/// The modules to load, in load order, with their paths in `modules.dep`: every target and its
/// dependencies, leaving out what `modules.builtin` says is built in. A target that is neither
/// a module nor built in is an error; without a `modules.builtin` (7.x packages do not ship
/// the text file) a target that is no module is taken as built in.
pub fn boot_modules(
    modules_dep: &str,
    modules_builtin: Option<&str>,
    targets: &[&str],
) -> Result<Vec<(String, String)>> {
    let builtin: Option<BTreeSet<String>> =
        modules_builtin.map(|b| b.lines().map(module_name).collect());
    let mut deps = std::collections::BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let list: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(path), (path.to_string(), list));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    fn add(
        name: &str,
        deps: &std::collections::BTreeMap<String, (String, Vec<String>)>,
        out: &mut Vec<(String, String)>,
        depth: u32,
    ) {
        if depth > 32 || out.iter().any(|(n, _)| n == name) {
            return;
        }
        if let Some((path, list)) = deps.get(name) {
            // modules.dep lists a module's dependencies with the ones to load last first.
            for d in list.iter().rev() {
                add(&module_name(d), deps, out, depth + 1);
            }
            out.push((name.to_string(), path.clone()));
        }
    }
    for t in targets {
        if deps.contains_key(*t) {
            add(t, &deps, &mut out, 0);
        } else if builtin.as_ref().is_some_and(|b| !b.contains(*t)) {
            bail!("module {t} is neither in modules.dep nor built in");
        }
    }
    Ok(out)
}

/// The private apt configuration under `dir`: Debian's suites from bookworm to sid.
pub struct Apt {
    dir: PathBuf,
}

const SOURCES: &str = "\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian-security trixie-security main
deb http://deb.debian.org/debian trixie-backports main
deb http://deb.debian.org/debian sid main
";

/// bookworm and its backports only: what may be installed on this (bookworm) machine.
pub const BOOKWORM_BACKPORTS: &str = "\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
";

impl Apt {
    /// The configuration in `dir` (created when missing): the suites from bookworm to sid,
    /// to download kernels from (never to install from).
    pub fn new(dir: PathBuf) -> Result<Self> {
        Self::with_sources(dir, SOURCES)
    }

    /// The configuration in `dir` with these sources.
    pub fn with_sources(dir: PathBuf, sources: &str) -> Result<Self> {
        fs::create_dir_all(dir.join("lists/partial"))?;
        fs::create_dir_all(dir.join("cache/archives/partial"))?;
        fs::create_dir_all(dir.join("sources.list.d"))?;
        fs::write(dir.join("sources.list"), sources)?;
        Ok(Self { dir })
    }

    fn options(&self) -> Vec<String> {
        vec![
            format!(
                "-oDir::Etc::SourceList={}",
                self.dir.join("sources.list").display()
            ),
            format!(
                "-oDir::Etc::SourceParts={}",
                self.dir.join("sources.list.d").display()
            ),
            format!("-oDir::State::Lists={}", self.dir.join("lists").display()),
            format!("-oDir::Cache={}", self.dir.join("cache").display()),
        ]
    }

    /// `apt-get` or `apt-cache` with the private configuration.
    pub fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options());
        c
    }

    /// Package names of every amd64 kernel release the suites offer (updating the lists the
    /// first time, or when `refresh`).
    pub fn kernel_packages(&self, refresh: bool) -> Result<String> {
        let has_lists = fs::read_dir(self.dir.join("lists"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false);
        if refresh || !has_lists {
            crate::step(&format!(
                "vm: updating the private apt lists (bookworm to sid) under {} ({})",
                self.dir.display(),
                if has_lists { "asked for" } else { "none yet" }
            ));
            crate::run(self.cmd("apt-get").args(["update", "-q"]))?;
        }
        crate::output_ok(self.cmd("apt-cache").args([
            "search",
            "--names-only",
            r"^linux-(image|binary-unsigned|modules)-[0-9]",
        ]))
        .context("apt-cache search failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
linux-image-6.1.0-56-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-57-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-57-cloud-amd64-unsigned - cloud
linux-image-6.12.115+deb12-amd64-unsigned - Linux 6.12
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12
linux-image-6.12.117+deb12-amd64-dbg - debug symbols
linux-binary-unsigned-7.2.13+deb14-amd64 - Linux 7.2
linux-modules-7.2.13+deb14-amd64 - modules
linux-binary-unsigned-7.3.4+deb13-amd64 - Linux 7.3
linux-modules-7.3.4+deb13-amd64 - modules
linux-binary-unsigned-7.3.4+deb13-rt-amd64 - rt
linux-binary-unsigned-7.9.1+deb14-amd64 - no modules package: not usable
";

    #[test]
    fn selectors_pick_the_newest_matching_release_in_either_layout() {
        let all = Release::from_packages(PACKAGES);
        let pick = |s: &str| {
            Selector::parse(s)
                .ok()
                .and_then(|sel| sel.pick(&all).cloned())
                .map(|r| (r.name, r.layout))
        };
        assert_eq!(pick("6.1"), Some(("6.1.0-57-amd64".into(), Layout::Image)));
        assert_eq!(
            pick("6.12"),
            Some(("6.12.117+deb12-amd64".into(), Layout::Image))
        );
        assert_eq!(
            pick("7.3"),
            Some(("7.3.4+deb13-amd64".into(), Layout::Split))
        );
        assert_eq!(
            pick("newest"),
            Some(("7.3.4+deb13-amd64".into(), Layout::Split))
        );
        assert_eq!(
            pick("6.12.115+deb12-amd64"),
            Some(("6.12.115+deb12-amd64".into(), Layout::Image))
        );
        assert_eq!(pick("7.0"), None, "no such series offered");
        for bad in ["6", "six", "6.12.1.2", "6.12.117+deb12-arm64x", ""] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} accepted");
        }
        let r = all.iter().find(|r| r.name.starts_with("7.3")).cloned();
        assert_eq!(
            r.map(|r| r.packages()),
            Some(vec![
                "linux-binary-unsigned-7.3.4+deb13-amd64".to_string(),
                "linux-modules-7.3.4+deb13-amd64".to_string()
            ])
        );
    }

    #[test]
    fn boot_modules_follow_dependencies_and_skip_built_ins() {
        // 6.1: virtio and its PCI transport are modules.
        let dep = "\
kernel/drivers/virtio/virtio.ko: 
kernel/drivers/virtio/virtio_ring.ko: 
kernel/drivers/virtio/virtio_pci_modern_dev.ko: 
kernel/drivers/virtio/virtio_pci_legacy_dev.ko: 
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko: 
kernel/net/9p/9pnet.ko: 
kernel/net/9p/9pnet_virtio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/net/9p/9pnet.ko
kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko
kernel/fs/overlayfs/overlay.ko: 
";
        let Ok(m) = boot_modules(dep, Some(""), BOOT_TARGETS) else {
            panic!("resolves")
        };
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
        for (before, after) in [
            ("virtio", "virtio_pci"),
            ("virtio_ring", "9pnet_virtio"),
            ("9pnet", "9pnet_virtio"),
            ("netfs", "fscache"),
            ("fscache", "9p"),
        ] {
            assert!(at(before) < at(after), "{before} before {after}: {names:?}");
        }
        assert_eq!(names.len(), 11, "each module once: {names:?}");
        // 6.12: virtio is built in; only 9p, its deps and overlay are modules.
        let dep = "\
kernel/fs/netfs/netfs.ko.xz: 
kernel/net/9p/9pnet.ko.xz: 
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz
kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz
kernel/fs/overlayfs/overlay.ko.xz: 
";
        let builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n";
        let Ok(m) = boot_modules(dep, Some(builtin), BOOT_TARGETS) else {
            panic!("resolves")
        };
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["9pnet", "9pnet_virtio", "netfs", "9p", "overlay"]);
        assert!(
            boot_modules(dep, Some(""), BOOT_TARGETS).is_err(),
            "virtio_pci nowhere"
        );
    }

    #[test]
    fn both_layouts_find_their_image() {
        let Ok(d) = tempfile_dir() else {
            panic!("tempdir")
        };
        let r = "7.3.4+deb13-amd64";
        fs::create_dir_all(d.join(format!("usr/lib/modules/{r}"))).ok();
        fs::write(d.join(format!("usr/lib/modules/{r}/vmlinuz")), b"x").ok();
        assert_eq!(
            vmlinuz(&d, r),
            Some(d.join(format!("usr/lib/modules/{r}/vmlinuz")))
        );
        let r = "6.1.0-57-amd64";
        fs::create_dir_all(d.join("boot")).ok();
        fs::write(d.join(format!("boot/vmlinuz-{r}")), b"x").ok();
        assert_eq!(vmlinuz(&d, r), Some(d.join(format!("boot/vmlinuz-{r}"))));
        assert_eq!(vmlinuz(&d, "6.12.1+deb12-amd64"), None);
        let _ = fs::remove_dir_all(&d);
    }

    fn tempfile_dir() -> std::io::Result<PathBuf> {
        let d = std::env::temp_dir().join(format!("xtask-kernels-{}", std::process::id()));
        fs::create_dir_all(&d)?;
        Ok(d)
    }
}
