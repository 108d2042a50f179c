//! Which tasks' faults are reported: `--pid`, `--cgroup`, `--comm`. Resolved here into what the
//! kernel programs compare against (a cgroup id and depth, a NUL-padded thread name).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use cxl_trace_common::COMM_LEN;

use crate::error::{Error, Result};

/// A cgroup v2 subtree: tasks whose cgroup is `id` or below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupFilter {
    /// Kernfs inode number of the directory (what `bpf_get_current_ancestor_cgroup_id` returns).
    pub id: u64,
    /// Depth below the cgroup v2 root (the root is 0).
    pub level: u32,
}

/// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        // "... mountpoint options [optional fields] - fstype source superopts"
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// Depth of `dir` below `root` (both canonical); `None` when `dir` is not under `root`.
pub fn depth_below(root: &Path, dir: &Path) -> Option<u32> {
    let rest = dir.strip_prefix(root).ok()?;
    u32::try_from(rest.components().count()).ok()
}

/// Resolves `--cgroup PATH`: a directory of the cgroup v2 hierarchy, given as a filesystem path
/// (`/sys/fs/cgroup/system.slice/x.service`) or relative to the hierarchy's root
/// (`system.slice/x.service`, as /proc/PID/cgroup prints it).
pub fn resolve_cgroup(path: &str) -> Result<CgroupFilter> {
    let bad = |why: String| Error::Usage(format!("--cgroup {path}: {why}"));
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| bad(format!("cannot read /proc/self/mountinfo: {e}")))?;
    let mount = cgroup2_mount(&info).ok_or_else(|| {
        bad("no cgroup v2 hierarchy is mounted (cgroup v1 is not supported)".into())
    })?;
    // A path under the mount point is a filesystem path; anything else (`/`, `/system.slice`,
    // `user.slice/x`) is relative to the hierarchy's root, as /proc/PID/cgroup prints it.
    let given = Path::new(path);
    let candidate = if given.starts_with(&mount) {
        given.to_path_buf()
    } else {
        mount.join(path.trim_start_matches('/'))
    };
    let dir = candidate
        .canonicalize()
        .map_err(|e| bad(format!("{}: {e}", candidate.display())))?;
    let root = mount
        .canonicalize()
        .map_err(|e| bad(format!("{}: {e}", mount.display())))?;
    let level = depth_below(&root, &dir).ok_or_else(|| {
        bad(format!(
            "{} is not in the cgroup v2 hierarchy mounted at {}",
            dir.display(),
            root.display()
        ))
    })?;
    let meta = std::fs::metadata(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(bad(format!("{} is not a cgroup directory", dir.display())));
    }
    Ok(CgroupFilter {
        id: meta.ino(),
        level,
    })
}

/// `--comm NAME` as the kernel stores a thread name: at most 15 bytes and a NUL. Returns the
/// bytes and whether the name had to be cut.
pub fn comm_bytes(name: &str) -> Result<([u8; COMM_LEN], bool)> {
    if name.is_empty() {
        return Err(Error::Usage("--comm: the name is empty".into()));
    }
    if name.as_bytes().contains(&0) {
        return Err(Error::Usage("--comm: the name contains a NUL byte".into()));
    }
    let b = name.as_bytes();
    let n = b.len().min(COMM_LEN - 1);
    let mut out = [0u8; COMM_LEN];
    out[..n].copy_from_slice(&b[..n]);
    Ok((out, b.len() > n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
25 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
26 23 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:10 - bpf bpf rw,mode=700
";

    #[test]
    fn finds_the_cgroup2_mount() {
        assert_eq!(
            cgroup2_mount(MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_mount("22 1 0:21 / /proc rw - proc proc rw\n"), None);
        assert_eq!(cgroup2_mount("garbage\n\n"), None);
    }

    #[test]
    fn depth_counts_components_below_the_root() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(depth_below(root, root), Some(0));
        assert_eq!(depth_below(root, Path::new("/sys/fs/cgroup/a/b")), Some(2));
        assert_eq!(depth_below(root, Path::new("/tmp/a")), None);
    }

    #[test]
    fn comm_is_cut_like_the_kernel_does() {
        let (b, cut) = comm_bytes("cxl-trace-workload").expect("valid");
        assert!(cut);
        assert_eq!(&b[..15], b"cxl-trace-workl");
        assert_eq!(b[15], 0);
        let (b, cut) = comm_bytes("sh").expect("valid");
        assert!(!cut);
        assert_eq!(&b[..3], b"sh\0");
        assert!(comm_bytes("").is_err());
        assert!(comm_bytes("a\0b").is_err());
    }

    #[test]
    fn a_path_outside_the_hierarchy_is_refused() {
        if cgroup2_mount(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
            .is_none()
        {
            return;
        }
        // Outside the mount point, a path is read as relative to the hierarchy's root.
        let e = resolve_cgroup("/tmp").expect_err("not a cgroup");
        assert!(e.to_string().starts_with("--cgroup /tmp: "), "{e}");
        let e = resolve_cgroup("no-such-group-xyz").expect_err("missing");
        assert!(e.to_string().contains("--cgroup no-such-group-xyz"), "{e}");
        let root = resolve_cgroup("/").expect("the root");
        assert_eq!(root.level, 0);
    }
}
