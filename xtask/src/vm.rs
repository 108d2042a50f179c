//! `cargo xtask vm-test`: boots a tiered-memory QEMU guest and runs a scenario in it.
//!
//! The guest is a Debian kernel (6.12 unless `--kernel` names others; see `kernels.rs`),
//! unpacked into `target/vm/kernel/<release>` and reused, with a busybox initramfs. The
//! initramfs mounts the host's `/` read-only over
//! virtio-9p under a tmpfs overlay and chroots into it, so the guest runs the binaries built on
//! the host (cxl-trace, its workload, this xtask as the scenario driver) and the host's numactl,
//! ndctl, cxl, daxctl and bpftrace. A read-write share carries results and the exit code back.
//!
//! Two machines: `hmat` (node 1 is CPU-less and slower by HMAT, so the kernel puts it in a lower
//! memory tier) and `cxl` (an emulated CXL Type-3 device that the guest turns into a NUMA node
//! through the CXL, nvdimm and dax drivers).

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use std::collections::BTreeSet;

use crate::table::Row;
use crate::{
    ensure_apt,
    kernels::{self, Apt, Release, Selector},
    run, step, target_dir,
};

/// Debian packages the guest environment needs on the host (QEMU comes from backports, see
/// [`ensure_qemu`]).
pub const VM_PACKAGES: &[&str] = &[
    "busybox-static",
    "numactl",
    "ndctl",
    "daxctl",
    "kmod",
    "cpio",
    "xz-utils",
];

/// The guest machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// Two NUMA nodes, node 1 CPU-less and slower by HMAT: two memory tiers.
    Hmat,
    /// An emulated CXL Type-3 memory device, onlined as a NUMA node inside the guest.
    Cxl,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Hmat => "hmat",
            Machine::Cxl => "cxl",
        }
    }
}

/// Options of one guest run.
pub struct VmRun {
    pub machine: Machine,
    /// A user's script to run instead of the built-in scenario.
    pub script: Option<PathBuf>,
    /// Keep the run directory (results, console log) even on success.
    pub keep: bool,
    /// Kill the guest after this long.
    pub timeout: Duration,
}

/// A Debian kernel unpacked for the guest.
pub struct GuestKernel {
    /// `6.12.N+deb12-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// Directory holding `<release>/modules.dep` etc.
    pub modules_dir: PathBuf,
}

fn vm_dir() -> PathBuf {
    target_dir().join("vm")
}

/// Where a guest of `machine` keeps its results and console log (shared as /results).
fn run_dir(machine: Machine) -> PathBuf {
    vm_dir().join(format!("run-{}", machine.name()))
}

/// What booting a guest needs: the packages, the kernel, the initramfs, and this xtask binary
/// (the guest runs it as its driver).
fn guest_parts(sel: &Selector) -> Result<(GuestKernel, PathBuf, PathBuf)> {
    ensure_apt(VM_PACKAGES)?;
    ensure_qemu()?;
    let k = guest_kernel(sel)?;
    let initrd = initramfs(&k)?;
    let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
    Ok((k, initrd, xtask))
}

/// The QEMU the test bed needs: 10 or newer.
pub const QEMU_MAJOR: u32 = 10;

/// Major version of the installed `qemu-system-x86_64`, if any.
fn qemu_major() -> Option<u32> {
    let out = crate::output_ok(Command::new("qemu-system-x86_64").arg("--version"))?;
    out.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// QEMU 10 from bookworm-backports, installed through a private apt configuration under
/// `target/vm/apt-qemu` (bookworm and its backports only; the machine's sources are never
/// touched). Debian 12's own QEMU 7.2 asserts in its TCG translator when a guest runs code
/// from CXL memory (`translator_access: phys_page != -1`, seen when reclaim demoted program
/// text to the CXL node) and has no CXL error injection.
pub fn ensure_qemu() -> Result<()> {
    if let Some(v) = qemu_major().filter(|v| *v >= QEMU_MAJOR) {
        step(&format!("qemu: qemu-system-x86_64 {v} present"));
        return Ok(());
    }
    if !crate::is_root() {
        bail!("the VM test bed needs QEMU {QEMU_MAJOR} from bookworm-backports; installing it needs root");
    }
    let apt = Apt::with_sources(vm_dir().join("apt-qemu"), kernels::BOOKWORM_BACKPORTS)?;
    step("qemu: installing qemu-system-x86 from bookworm-backports (private apt configuration under target/vm/apt-qemu)");
    run(apt.cmd("apt-get").args(["update", "-q"]))?;
    run(apt
        .cmd("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    match qemu_major() {
        Some(v) if v >= QEMU_MAJOR => {
            step(&format!("qemu: qemu-system-x86_64 {v} installed"));
            Ok(())
        }
        other => bail!("after installing from bookworm-backports qemu-system-x86_64 reports {other:?}, not {QEMU_MAJOR} or newer"),
    }
}

/// Releases already unpacked under `target/vm/kernel` (complete ones only).
fn cached_releases(cache: &Path) -> Vec<Release> {
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
fn resolve(sel: &Selector, cache: &Path, apt: &Apt) -> Result<Release> {
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
const INIT: &str = r#"#!/bin/busybox sh
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

/// QEMU acceleration: KVM only when the CPU has hardware virtualisation and the KVM module is
/// not the paravirtual kvm_pvm (which cannot run stock kernels), else multi-threaded TCG.
fn accel() -> (&'static str, &'static str) {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let modules = fs::read_to_string("/proc/modules").unwrap_or_default();
    let pvm = modules.lines().any(|l| l.starts_with("kvm_pvm"));
    if hw && !pvm && Path::new("/dev/kvm").exists() {
        ("kvm", "host")
    } else {
        ("tcg,thread=multi", "max")
    }
}

fn machine_args(m: Machine, cpu: &str) -> (Vec<String>, &'static str) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match m {
        Machine::Hmat => (
            s(&[
                "-cpu", cpu, "-machine", "q35,hmat=on", "-smp", "2", "-m", "2G",
                "-object", "memory-backend-ram,id=m0,size=1G",
                "-object", "memory-backend-ram,id=m1,size=1G",
                "-numa", "node,nodeid=0,cpus=0-1,memdev=m0,initiator=0",
                "-numa", "node,nodeid=1,memdev=m1,initiator=0",
                "-numa", "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=100",
                "-numa", "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G",
                "-numa", "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=400",
                "-numa", "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=5G",
            ]),
            "",
        ),
        Machine::Cxl => {
            // The CXL machine needs the CPU's hypervisor bit off (else region commit fails to
            // synchronise CPU caches) and room above RAM for the CXL window (maxmem).
            let cpu = format!("{cpu},hypervisor=off");
            let mut v = vec!["-cpu".to_string(), cpu];
            v.extend(s(&[
                "-machine", "q35,cxl=on", "-smp", "2", "-m", "2G,maxmem=8G,slots=4",
                "-object", "memory-backend-ram,id=cxl-mem0,share=on,size=1G",
                "-object", "memory-backend-ram,id=cxl-lsa0,share=on,size=1M",
                "-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1",
                "-device", "cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2",
                // A serial number: from 6.19 a pmem region of a memdev without one is refused.
                "-device", "cxl-type3,bus=root_port13,memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0,sn=0x5c1",
                "-M", "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G",
            ]));
            // Without pci=nomsi cxl_pci cannot get its event interrupt and no mem0 appears.
            (v, " pci=nomsi memhp_default_state=offline")
        }
    }
}

/// Boots the guest, runs `guest.sh` in it, streams its console, returns its exit code.
pub fn boot(k: &GuestKernel, initrd: &Path, opts: &VmRun, guest_cmd: &str) -> Result<i32> {
    let name = opts.machine.name();
    let rundir = run_dir(opts.machine);
    let _ = fs::remove_dir_all(&rundir);
    fs::create_dir_all(&rundir)?;
    let mut script = String::from("set -u\ncd /results\n");
    if let Some(user) = &opts.script {
        let body = fs::read_to_string(user)
            .with_context(|| format!("cannot read the guest script {}", user.display()))?;
        fs::write(rundir.join("user.sh"), body)?;
        script.push_str(&format!("{guest_cmd} --script /results/user.sh\n"));
    } else {
        script.push_str(&format!("{guest_cmd}\n"));
    }
    fs::write(rundir.join("guest.sh"), script)?;

    let (accel, cpu) = accel();
    let (margs, extra_append) = machine_args(opts.machine, cpu);
    let fsdev = |id: &str, path: &Path, ro: bool| -> Vec<String> {
        vec![
            "-fsdev".into(),
            format!(
                "local,id={id},path={},security_model=none,multidevs=remap{}",
                path.display(),
                if ro { ",readonly=on" } else { "" }
            ),
            "-device".into(),
            format!("virtio-9p-pci,fsdev={id},mount_tag={id},bus=pcie.0"),
        ]
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", accel])
        .args(&margs)
        .args([
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init{extra_append}"
        ))
        .args(fsdev("hostroot", Path::new("/"), true))
        .args(fsdev("results", &rundir, false))
        .args(fsdev("modules", &k.modules_dir, true))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    step(&format!(
        "vm[{name}]: booting {} ({accel}), timeout {} s",
        k.release,
        opts.timeout.as_secs()
    ));
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line);
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                let _ = tx.send(format!("qemu: {line}"));
            }
        }));
    }
    drop(tx);
    let mut console = String::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                // The serial console ends lines with \r\n and may carry terminal escapes.
                let clean = strip_escapes(line.trim_end_matches('\r'));
                println!("[guest {name}] {clean}");
                console.push_str(&clean);
                console.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if started.elapsed() > opts.timeout {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().context("waiting for qemu")?;
    for r in readers {
        let _ = r.join();
    }
    fs::write(rundir.join("console.log"), &console)?;
    let elapsed = started.elapsed().as_secs_f64();
    if timed_out {
        bail!(
            "vm[{name}]: the guest did not finish within {} s (console in {})",
            opts.timeout.as_secs(),
            rundir.join("console.log").display()
        );
    }
    let code = fs::read_to_string(rundir.join("exit-code"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let Some(code) = code else {
        // A guest kernel that oopsed (under TCG, text patching can trap on an int3 it did not
        // place) is told apart, so the caller can say so and try once more.
        if let Some(oops) = console
            .lines()
            .find(|l| l.contains("Oops:") || l.contains("Kernel panic"))
        {
            return Err(GuestKernelCrash(format!(
                "vm[{name}]: the guest kernel crashed after {elapsed:.0} s: {} (console in {})",
                oops.trim(),
                rundir.join("console.log").display()
            ))
            .into());
        }
        bail!(
            "vm[{name}]: the guest stopped ({status}) without finishing its scenario after {elapsed:.0} s (console in {})",
            rundir.join("console.log").display()
        );
    };
    step(&format!(
        "vm[{name}]: guest finished in {elapsed:.0} s with exit code {code}"
    ));
    if code == 0 && !opts.keep {
        let _ = fs::remove_file(rundir.join("user.sh"));
    }
    Ok(code)
}

/// The guest kernel oopsed or panicked before the scenario finished.
#[derive(Debug)]
pub struct GuestKernelCrash(pub String);

impl std::fmt::Display for GuestKernelCrash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuestKernelCrash {}

/// The kernel the benchmarks boot, and the base of the cross-kernel `diff`.
pub const DEFAULT_KERNEL: Selector = Selector::Series(6, 12);

/// The kernels the suite boots: the oldest Debian stable kernel, the one the benchmarks use,
/// and the newest stable Debian has.
pub const MATRIX: [Selector; 3] = [
    Selector::Series(6, 1),
    Selector::Series(6, 12),
    Selector::Newest,
];

/// `cargo xtask vm-test`: everything from packages to the verdict, for every kernel named.
pub fn vm_test(
    kernels: &[Selector],
    machines: &[Machine],
    script: Option<PathBuf>,
    keep: bool,
) -> Result<()> {
    if !Path::new("/proc/self").exists() {
        bail!("no /proc: cannot run the VM tests here");
    }
    crate::build(true)?;
    let mut failed = Vec::new();
    let mut recorded = Vec::new();
    for sel in kernels {
        let (k, initrd, xtask) = match guest_parts(sel) {
            Ok(p) => p,
            Err(e) => {
                failed.push(format!("kernel {}: {e:#}", sel.label()));
                continue;
            }
        };
        let started = Instant::now();
        failed.extend(
            vm_test_kernel(&k, &initrd, &xtask, machines, script.as_ref(), keep)
                .into_iter()
                .map(|f| format!("{}: {f}", k.release)),
        );
        step(&format!(
            "vm-test: {} done in {:.0} s",
            k.release,
            started.elapsed().as_secs_f64()
        ));
        if let Some(r) = keep_promotion_recording(&k) {
            recorded.push((k.release.clone(), r));
        }
    }
    if script.is_none() {
        if let Err(e) = cross_kernel_diff(&recorded) {
            failed.push(format!("cross-kernel diff: {e:#}"));
        }
    }
    if !failed.is_empty() {
        bail!("vm-test failed: {}", failed.join("; "));
    }
    step("vm-test: all scenarios passed");
    Ok(())
}

/// Every machine on one kernel; the failures.
fn vm_test_kernel(
    k: &GuestKernel,
    initrd: &Path,
    xtask: &Path,
    machines: &[Machine],
    script: Option<&PathBuf>,
    keep: bool,
) -> Vec<String> {
    let mut failed = Vec::new();
    for &m in machines {
        let guest_cmd = format!(
            "CARGO_TARGET_DIR='{}' {} vm-guest --machine {}",
            target_dir().display(),
            xtask.display(),
            m.name()
        );
        let opts = VmRun {
            machine: m,
            script: script.cloned(),
            keep,
            timeout: Duration::from_secs(match m {
                Machine::Hmat => 600,
                Machine::Cxl => 480,
            }),
        };
        let mut result = boot(k, initrd, &opts, &guest_cmd);
        if let Err(e) = &result {
            if e.downcast_ref::<GuestKernelCrash>().is_some() {
                // Once, loudly: a second crash fails the run like any other error. The
                // crashed console is kept beside the run directory.
                let kept = vm_dir().join(format!("{}-crash-console.log", m.name()));
                let _ = fs::copy(run_dir(m).join("console.log"), &kept);
                step(&format!(
                    "{e:#}; kept as {}; booting the guest once more",
                    kept.display()
                ));
                result = boot(k, initrd, &opts, &guest_cmd);
            }
        }
        match result {
            Ok(0) => {}
            Ok(code) => failed.push(format!("{}: guest exit code {code}", m.name())),
            Err(e) => failed.push(format!("{e:#}")),
        }
        // Only the cxl guest captures them (with the CXL drivers loaded), into the run
        // directory its boot emptied first.
        if m == Machine::Cxl {
            if let Err(e) = absorb_facts(k) {
                failed.push(format!("{e:#}"));
            }
        }
    }
    failed
}

/// The promotion workload the `hmat` guest recorded (the base run of its `diff` scenario),
/// kept as `target/vm/recordings/<release>.cxlt` for the cross-kernel `diff`.
fn keep_promotion_recording(k: &GuestKernel) -> Option<PathBuf> {
    let src = run_dir(Machine::Hmat).join("promotion.cxlt");
    if !src.exists() {
        return None;
    }
    let dir = vm_dir().join("recordings");
    let dst = dir.join(format!("{}.cxlt", k.release));
    let ok = fs::create_dir_all(&dir).is_ok() && fs::copy(&src, &dst).is_ok();
    let _ = fs::remove_file(&src);
    ok.then_some(dst)
}

/// The regression workflow across kernels: the same promotion workload recorded on 6.12 and
/// on the newest kernel of this run, compared with `diff`. Asserted is only what is robust:
/// the kernel comes first among the configuration differences, `diff` exits 0 without
/// `--fail-on`, and with `--fail-on` it exits 1 exactly when its own verdict says crossed.
/// The text goes to `target/vm/diff-<base>-vs-<new>.txt` (docs/examples has one committed).
fn cross_kernel_diff(recorded: &[(String, PathBuf)]) -> Result<()> {
    let series = |r: &str| crate::kernels::Release::parse(r).map_or((0, 0), |r| r.series());
    let base = recorded.iter().find(|(r, _)| series(r) == (6, 12));
    let newest = recorded.iter().max_by_key(|(r, _)| series(r));
    let (Some((rb, b)), Some((rn, n))) = (base, newest) else {
        return Ok(());
    };
    if rb == rn {
        return Ok(());
    }
    step(&format!("cross-kernel diff: {rb} -> {rn}"));
    let tool = target_dir().join("release/cxl-trace");
    let diff = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.extend([b.as_os_str(), n.as_os_str()]);
        crate::run_diff(&tool, &all)
    };
    let (code, text) = diff(&[])?;
    println!("{text}");
    let out = vm_dir().join(format!("diff-{rb}-vs-{rn}.txt"));
    fs::write(&out, &text)?;
    if code != Some(0) {
        bail!("diff without --fail-on exited {code:?}");
    }
    let spec = "promotions:-20%";
    let (_, json) = diff(&["--format", "json", "--fail-on", spec])?;
    let v: serde_json::Value = serde_json::from_str(&json).context("diff --format json")?;
    let first = v["config_differences"][0]["what"].as_str().unwrap_or("-");
    if first != "kernel" {
        bail!("the first configuration difference is {first:?}, not the kernel");
    }
    let crossed = v["fail_on"][0]["crossed"] == true;
    let (code, _) = diff(&["--fail-on", spec])?;
    if code != Some(i32::from(crossed)) {
        bail!("diff --fail-on {spec} exited {code:?} while its verdict says crossed={crossed}");
    }
    step(&format!(
        "cross-kernel diff: kernel listed first; exit 0 without --fail-on, {} with --fail-on {spec} (crossed={crossed}); text in {}",
        i32::from(crossed),
        out.display()
    ));
    Ok(())
}

/// Where a kernel's captured facts are committed.
pub fn fixture_dir(release: &str) -> PathBuf {
    crate::root()
        .join("cxl-trace/tests/fixtures/kernels")
        .join(release)
}

/// Files under `dir`, relative, with their bytes.
fn tree(dir: &Path) -> Result<std::collections::BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_path_buf();
                out.insert(rel, fs::read(&p)?);
            }
        }
    }
    Ok(out)
}

/// The facts the guest captured (`doctor --capture`, the `cxl` machine) against the
/// committed fixture of that kernel: a new kernel's are added to the tree (to be committed),
/// a differing capture of a kernel already there fails the run, naming the files.
fn absorb_facts(k: &GuestKernel) -> Result<()> {
    let captured = run_dir(Machine::Cxl).join("facts");
    if !captured.join("release").exists() {
        return Ok(());
    }
    let fixture = fixture_dir(&k.release);
    let new = tree(&captured)?;
    if !fixture.exists() {
        for (rel, bytes) in &new {
            let dst = fixture.join(rel);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&dst, bytes)?;
        }
        step(&format!(
            "kernel facts of {}: new fixture written to {} ({} files); commit it",
            k.release,
            fixture.display(),
            new.len()
        ));
    } else {
        let old = tree(&fixture)?;
        let differ: Vec<String> = new
            .keys()
            .chain(old.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|rel| new.get(*rel) != old.get(*rel))
            .map(|rel| rel.display().to_string())
            .collect();
        if !differ.is_empty() {
            bail!(
                "kernel facts of {} differ from the fixture {} in: {} (the capture is in {})",
                k.release,
                fixture.display(),
                differ.join(", "),
                captured.display()
            );
        }
        step(&format!(
            "kernel facts of {}: same as the fixture",
            k.release
        ));
    }
    let _ = fs::remove_dir_all(&captured);
    Ok(())
}

/// The migration-bound overhead benchmark, in the `hmat` guest (two nodes; the host has one):
/// the rows the guest wrote, marked as measured there.
pub fn bench_migration(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let (k, initrd, xtask) = guest_parts(&DEFAULT_KERNEL)?;
    let m = Machine::Hmat;
    let guest_cmd = format!(
        "CARGO_TARGET_DIR='{}' {} vm-guest --machine {} --bench{}",
        target_dir().display(),
        xtask.display(),
        m.name(),
        if quick { " --quick" } else { "" }
    );
    let opts = VmRun {
        machine: m,
        script: None,
        keep: true,
        timeout: Duration::from_secs(if quick { 900 } else { 1800 }),
    };
    let (accel, _) = accel();
    let code = boot(&k, &initrd, &opts, &guest_cmd)?;
    if code != 0 {
        bail!("the migration benchmark failed in the guest (exit code {code})");
    }
    let path = run_dir(m).join("bench.json");
    let text = fs::read_to_string(&path)
        .with_context(|| format!("the guest wrote no {}", path.display()))?;
    let list: Vec<Row> = serde_json::from_str(&text).context("bench.json")?;
    for mut r in list {
        r.name = format!("[VM {accel}] {}", r.name);
        rows.push(r);
    }
    Ok(())
}

/// The console line without terminal escape sequences (SeaBIOS clears the screen) and
/// other control characters.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ params final-byte, or ESC and one character.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
