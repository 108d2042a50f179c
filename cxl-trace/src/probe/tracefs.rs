//! Finding tracefs, mounting it where it is missing, and reading its event formats.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    error::Error,
    model::tracefs::{parse_format, Format},
};

/// A located tracefs mount.
#[derive(Clone, Debug)]
pub struct Tracefs {
    /// Root of tracefs, e.g. `/sys/kernel/tracing`.
    pub root: PathBuf,
    /// Whether this process mounted it.
    pub mounted_by_us: bool,
}

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

impl Tracefs {
    /// Finds tracefs; mounts it at `/sys/kernel/tracing` when it is not mounted and we may.
    pub fn locate_or_mount() -> Result<Self, Error> {
        for c in CANDIDATES {
            if Path::new(c).join("events").is_dir() {
                return Ok(Self {
                    root: PathBuf::from(c),
                    mounted_by_us: false,
                });
            }
        }
        let target = CANDIDATES[0];
        match mount_tracefs(target) {
            Ok(()) if Path::new(target).join("events").is_dir() => Ok(Self {
                root: PathBuf::from(target),
                mounted_by_us: true,
            }),
            Ok(()) => Err(Error::Tracefs(format!(
                "mounted tracefs at {target} but it has no events/ directory"
            ))),
            Err(e) => Err(Error::Tracefs(format!(
                "tracefs is not mounted and `mount -t tracefs nodev {target}` failed: {e}"
            ))),
        }
    }

    /// Path of an event's directory.
    pub fn event_dir(&self, category: &str, name: &str) -> PathBuf {
        self.root.join("events").join(category).join(name)
    }

    /// Whether the tracepoint exists.
    pub fn has_event(&self, category: &str, name: &str) -> bool {
        self.event_dir(category, name).join("format").is_file()
    }

    /// Reads and parses an event's format.
    pub fn format(&self, category: &str, name: &str) -> Result<Format, String> {
        let path = self.event_dir(category, name).join("format");
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        parse_format(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Names of the events of a category (empty when the category does not exist).
    pub fn events_of(&self, category: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("events").join(category))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("format").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn mount_tracefs(target: &str) -> std::io::Result<()> {
    let src = c"nodev";
    let fstype = c"tracefs";
    let target_c = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data is NULL.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
