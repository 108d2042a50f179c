//! Dropping privileges once the probes are attached.
//!
//! Attaching needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN on older kernels); what follows
//! does not: the ring buffer and maps are used through file descriptors already open, the
//! recording through its open file, and /proc and sysfs files read afterwards are world
//! readable. So once attached, `top` and `record`:
//!
//! - under `sudo` (SUDO_UID/SUDO_GID set) and with no command of their own to manage, become
//!   the invoking user: the recording is handed to that user (fchown), supplementary groups
//!   are dropped, then gid and uid are set (real, effective and saved);
//! - otherwise stay uid 0 without any capability: effective, permitted, inheritable, ambient
//!   and bounding sets are emptied. A command given after `--` was started as root, as perf and
//!   bpftrace do, and this keeps the right to signal it;
//! - set `no_new_privs`, so nothing they could exec gains privileges back.
//!
//! Capabilities are per thread: this runs before the dashboard's input thread starts, and
//! [`verify`] checks every thread of the process.

use std::{fs::File, os::unix::fs::fchown};

use crate::model::status::Privileges;
use caps::CapSet;

/// The invoking user under sudo: (uid, gid), if SUDO_UID and SUDO_GID name a non-root user.
pub fn sudo_user(uid: Option<&str>, gid: Option<&str>) -> Option<(u32, u32)> {
    let uid: u32 = uid?.trim().parse().ok()?;
    let gid: u32 = gid?.trim().parse().ok()?;
    (uid != 0 && gid != 0).then_some((uid, gid))
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn drop_capabilities() -> Result<(), String> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, about to go.
    caps::clear(None, CapSet::Bounding).map_err(|e| format!("bounding set: {e}"))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("ambient set: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("inheritable set: {e}"))?;
    caps::clear(None, CapSet::Effective).map_err(|e| format!("effective set: {e}"))?;
    caps::clear(None, CapSet::Permitted).map_err(|e| format!("permitted set: {e}"))?;
    Ok(())
}

fn become_user(uid: u32, gid: u32) -> Result<(), String> {
    let gids = [gid as libc::gid_t];
    // SAFETY: setgroups reads `gids.len()` gids from a live array; no other memory involved.
    if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
        return Err(errno("setgroups"));
    }
    // SAFETY: plain syscalls on integers (glibc applies them to every thread of the process).
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(errno("setresgid"));
    }
    // SAFETY: as above. Dropping uid 0 from real, effective and saved ids also clears the
    // permitted and effective capability sets (no SECBIT_KEEP_CAPS is set).
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(errno("setresuid"));
    }
    Ok(())
}

fn set_no_new_privs() -> Result<(), String> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(errno("PR_SET_NO_NEW_PRIVS"));
    }
    Ok(())
}

/// A hexadecimal capability mask of a `/proc/.../status` line such as `CapEff:\t000001ff`.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// (uid, capabilities in the union of every thread's effective set, no_new_privs everywhere)
/// from /proc/self/task/*/status.
pub fn verify() -> std::io::Result<(u32, u32, bool)> {
    let (mut uid, mut caps, mut nnp) = (u32::MAX, 0u64, true);
    for t in std::fs::read_dir("/proc/self/task")? {
        let Ok(s) = std::fs::read_to_string(t?.path().join("status")) else {
            continue; // a thread that just ended
        };
        if let Some(u) = status_field(&s, "Uid").and_then(|v| v.split_whitespace().nth(1)) {
            uid = uid.min(u.parse().unwrap_or(u32::MAX));
        }
        caps |= status_field(&s, "CapEff")
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .unwrap_or(u64::MAX);
        nnp &= status_field(&s, "NoNewPrivs") == Some("1");
    }
    Ok((uid, caps.count_ones(), nnp))
}

/// Drops what is not needed after attaching (see the module doc). `output` is the open
/// recording, handed to the sudo user; `has_child`: a command was started as root and must
/// stay signalable. Never fails: what could not be dropped is said in the summary.
pub fn drop_after_attach(output: Option<&File>, has_child: bool) -> Privileges {
    // SAFETY: geteuid has no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let sudo = sudo_user(
        std::env::var("SUDO_UID").ok().as_deref(),
        std::env::var("SUDO_GID").ok().as_deref(),
    );
    let mut notes = Vec::new();
    let mut outcome = if euid != 0 {
        Ok("not root: kept the capabilities it was given".to_string())
    } else {
        match (sudo, has_child) {
            (Some((uid, gid)), false) => {
                if let Some(f) = output {
                    if let Err(e) = fchown(f, Some(uid), Some(gid)) {
                        notes.push(format!("the recording stays root's ({e})"));
                    }
                }
                caps::clear(None, CapSet::Bounding)
                    .map_err(|e| format!("bounding set: {e}"))
                    .and_then(|()| become_user(uid, gid))
                    .map(|()| format!("running as the sudo user (uid {uid}), no capabilities"))
            }
            (sudo, _) => drop_capabilities().map(|()| {
                if sudo.is_some() {
                    "uid 0 without capabilities (the command after -- runs as root)".into()
                } else {
                    "uid 0 without capabilities".into()
                }
            }),
        }
    };
    if euid == 0 {
        if let Err(e) = set_no_new_privs() {
            notes.push(e);
        }
    }
    let (uid, capabilities, no_new_privs) = verify().unwrap_or((euid, u32::MAX, false));
    if euid == 0 && capabilities != 0 {
        if let Ok(s) = &outcome {
            outcome = Err(format!(
                "{s} was the aim, but {capabilities} capabilities remain on some thread"
            ));
        }
    }
    let mut summary = match outcome {
        Ok(s) => s,
        Err(e) => format!("privileges kept: {e}"),
    };
    if !notes.is_empty() {
        summary = format!("{summary}; {}", notes.join("; "));
    }
    Privileges {
        uid,
        capabilities,
        no_new_privs,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_user_needs_two_numbers_and_not_root() {
        assert_eq!(sudo_user(Some("1000"), Some("1000")), Some((1000, 1000)));
        assert_eq!(sudo_user(Some(" 1000\n"), Some("100")), Some((1000, 100)));
        assert_eq!(sudo_user(Some("0"), Some("0")), None);
        assert_eq!(sudo_user(Some("1000"), None), None);
        assert_eq!(sudo_user(None, Some("1000")), None);
        assert_eq!(sudo_user(Some("bob"), Some("1000")), None);
        assert_eq!(sudo_user(Some("-1"), Some("1000")), None);
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tcxl-trace\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t1\n";
        assert_eq!(status_field(s, "CapEff"), Some("000001ffffffffff"));
        assert_eq!(status_field(s, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(s, "Cap"), None);
        assert_eq!(
            status_field(s, "Uid").and_then(|v| v.split_whitespace().nth(1)),
            Some("0")
        );
    }

    #[test]
    fn verify_reads_this_process() {
        let (uid, _, _) = verify().expect("/proc/self/task");
        // SAFETY: getuid has no arguments and cannot fail.
        assert_eq!(uid, unsafe { libc::getuid() });
    }
}
