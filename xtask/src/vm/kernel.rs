//! Guest kernels: resolved from the selectors, fetched through the private apt, cached, and an initramfs built for each.

use super::*;
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};

use std::collections::BTreeSet;

use crate::{
    ensure_apt,
    kernels::{self, Apt, Release, Selector},
    run, step,
};

/// What booting a guest needs: the packages, the kernel, the initramfs, and this xtask binary
/// (the guest runs it as its driver).
pub(crate) fn guest_parts(sel: &Selector) -> Result<(GuestKernel, PathBuf, PathBuf)> {
    ensure_apt(VM_PACKAGES)?;
    ensure_qemu()?;
    let k = guest_kernel(sel)?;
    let initrd = initramfs(&k)?;
    let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
    Ok((k, initrd, xtask))
}

/// Releases already unpacked under `target/vm/kernel` (complete ones only).
pub(crate) fn cached_releases(cache: &Path) -> Vec<Release> {
    fs::read_dir(cache)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("ready").exists())
                .filter_map(|e| Release::parse(&e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// The release `sel` names: from the cache when it has one (works offline), except for
/// `newest`, which asks Debian first and falls back to the newest cached release offline.
pub(crate) fn resolve(sel: &Selector, cache: &Path, apt: &Apt) -> Result<Release> {
    let cached = cached_releases(cache);
    if !matches!(sel, Selector::Newest) {
        if let Some(r) = sel.pick(&cached) {
            return Ok(r.clone());
        }
    }
    let offered = match apt.kernel_packages(false) {
        Ok(names) => Release::from_packages(&names),
        Err(e) => match sel.pick(&cached) {
            Some(r) => {
                step(&format!(
                    "vm: cannot ask Debian ({e:#}); using the cached {}",
                    r.name
                ));
                return Ok(r.clone());
            }
            None => return Err(e),
        },
    };
    if let Some(r) = sel.pick(&offered) {
        return Ok(r.clone());
    }
    // Perhaps the lists are old: refresh once.
    step(&format!(
        "vm: the apt lists offer no kernel for {} among {} releases",
        sel.label(),
        offered.len()
    ));
    let offered = Release::from_packages(&apt.kernel_packages(true)?);
    if let Some(r) = sel.pick(&offered) {
        return Ok(r.clone());
    }
    let series: BTreeSet<String> = offered
        .iter()
        .map(|r| format!("{}.{}", r.key[0], r.key[1]))
        .collect();
    bail!(
        "no Debian kernel for --kernel {}; Debian offers: {}",
        sel.label(),
        series.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// Downloads and unpacks the kernel `sel` names into `target/vm/kernel/<release>`, reusing it.
pub fn guest_kernel(sel: &Selector) -> Result<GuestKernel> {
    let cache = vm_dir().join("kernel");
    let apt = Apt::new(vm_dir().join("apt"))?;
    let rel = resolve(sel, &cache, &apt)?;
    let release = rel.name.clone();
    let dest = cache.join(&release);
    if dest.join("ready").exists() {
        step(&format!("vm: guest kernel {release} (cached)"));
    } else {
        let pkgs = rel.packages();
        step(&format!("vm: fetching guest kernel {}", pkgs.join(" ")));
        let dl = vm_dir().join("download");
        let _ = fs::remove_dir_all(&dl);
        fs::create_dir_all(&dl)?;
        run(apt
            .cmd("apt-get")
            .args(["download", "-q"])
            .args(&pkgs)
            .current_dir(&dl))?;
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest)?;
        for deb in fs::read_dir(&dl)?.flatten().map(|e| e.path()) {
            if deb.extension().is_some_and(|x| x == "deb") {
                run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dest))?;
            }
        }
        // depmod -b looks under lib/modules; the split layout ships usr/lib/modules only.
        if !dest.join("lib/modules").exists() && dest.join("usr/lib/modules").exists() {
            fs::create_dir_all(dest.join("lib"))?;
            std::os::unix::fs::symlink("../usr/lib/modules", dest.join("lib/modules"))?;
        }
        run(Command::new("depmod").arg("-b").arg(&dest).arg(&release))?;
        fs::write(dest.join("ready"), pkgs.join(" "))?;
        let _ = fs::remove_dir_all(&dl);
    }
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| dest.join(p))
        .find(|p| p.join(&release).join("modules.dep").exists())
        .with_context(|| format!("no modules.dep under {}", dest.display()))?;
    let vmlinuz = kernels::vmlinuz(&dest, &release)
        .with_context(|| format!("no kernel image for {release} under {}", dest.display()))?;
    Ok(GuestKernel {
        vmlinuz,
        modules_dir,
        release,
    })
}

/// The `/init` of the initramfs (busybox sh). It prepares the guest and chroots into the
/// host's root to run `/results/guest.sh`, then records its exit code and powers off.
pub(crate) const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in MODULES; do insmod /lib/boot/$m.ko || echo "init: insmod $m failed"; done
mkdir -p /host /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro hostroot /host || { echo "init: cannot mount the host root"; poweroff -f; }
mount -t tmpfs -o size=256m tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/host,upperdir=/upper/u,workdir=/upper/w /newroot || { echo "init: overlay failed"; poweroff -f; }
# /tmp stays the host's (read-only below, writable through the overlay): the checkout may
# live there.
mkdir -p /newroot/results /newroot/usr/lib/modules
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro modules /newroot/usr/lib/modules
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mount -t tmpfs tmpfs /newroot/run
mount -t debugfs debugfs /newroot/sys/kernel/debug
mount -t tracefs tracefs /newroot/sys/kernel/tracing
mount -t bpf bpf /newroot/sys/fs/bpf
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
echo "init: guest ready, kernel $(uname -r)"
chroot /newroot /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb /bin/sh /results/guest.sh
echo $? > /newroot/results/exit-code
sync
echo "init: scenario finished with $(cat /newroot/results/exit-code)"
poweroff -f
"#;

/// Builds `target/vm/initramfs-<release>.cpio` (busybox, the boot modules, `/init`).
pub fn initramfs(k: &GuestKernel) -> Result<PathBuf> {
    let out = vm_dir().join(format!("initramfs-{}.cpio", k.release));
    let tree = vm_dir().join("initramfs");
    let _ = fs::remove_dir_all(&tree);
    for d in ["bin", "lib/boot", "proc", "sys", "dev"] {
        fs::create_dir_all(tree.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .context("busybox not found (package busybox-static)")?;
    fs::copy(busybox, tree.join("bin/busybox"))?;
    let dir = k.modules_dir.join(&k.release);
    let dep = fs::read_to_string(dir.join("modules.dep"))?;
    let builtin = fs::read_to_string(dir.join("modules.builtin")).ok();
    let modules = kernels::boot_modules(&dep, builtin.as_deref(), kernels::BOOT_TARGETS)
        .with_context(|| format!("boot modules of {}", k.release))?;
    for (m, rel) in &modules {
        let src = dir.join(rel);
        let dst = tree.join("lib/boot").join(format!("{m}.ko"));
        if rel.ends_with(".xz") {
            let ko = Command::new("xz")
                .args(["-dc"])
                .arg(&src)
                .output()
                .context("cannot run xz")?;
            if !ko.status.success() {
                bail!("xz -dc {} failed", src.display());
            }
            fs::write(&dst, ko.stdout)?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    let names: Vec<&str> = modules.iter().map(|(m, _)| m.as_str()).collect();
    let init = INIT.replace("MODULES", &names.join(" "));
    let init_path = tree.join("init");
    fs::write(&init_path, init)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&init_path, fs::Permissions::from_mode(0o755))?;
    }
    run(Command::new("sh")
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet > \"$0\"")
        .arg(&out)
        .current_dir(&tree))?;
    Ok(out)
}
