//! QEMU: installing the pinned major, the machine's arguments, booting a guest and reading its console.

use super::*;
use std::{
    fs,
    io::BufReader,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{
    kernels::{self, Apt},
    run, step,
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

/// The QEMU the test bed needs: 10 or newer.
pub const QEMU_MAJOR: u32 = 10;

/// Major version of the installed `qemu-system-x86_64`, if any.
pub(crate) fn qemu_major() -> Option<u32> {
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

/// QEMU acceleration: KVM only when the CPU has hardware virtualisation and the KVM module is
/// not the paravirtual kvm_pvm (which cannot run stock kernels), else multi-threaded TCG.
pub(crate) fn accel() -> (&'static str, &'static str) {
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

pub(crate) fn machine_args(m: Machine, cpu: &str) -> (Vec<String>, &'static str) {
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
        Machine::Cxl | Machine::CxlRas => {
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
    let name = format!("{} {}", opts.machine.name(), k.series());
    let name = name.as_str();
    let rundir = run_dir(opts.machine, k);
    let _ = fs::remove_dir_all(&rundir);
    fs::create_dir_all(&rundir)?;
    write_script(&rundir, opts, guest_cmd)?;

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
        .arg("-qmp")
        .arg(format!(
            "unix:{},server=on,wait=off",
            rundir.join("qmp.sock").display()
        ))
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
    let relay = super::qmp::relay(&rundir);
    let (console, timed_out) = read_console(&mut child, name, started, opts.timeout);
    drop(relay);
    let status = child.wait().context("waiting for qemu")?;
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

/// `/results/guest.sh` (and the user's script): what the guest runs.
fn write_script(rundir: &Path, opts: &VmRun, guest_cmd: &str) -> Result<()> {
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
    Ok(())
}

/// The guest's console (and QEMU's stderr) line by line until QEMU exits or `timeout` passes
/// (then QEMU is killed); the console text and whether it timed out.
fn read_console(
    child: &mut std::process::Child,
    name: &str,
    started: Instant,
    timeout: Duration,
) -> (String, bool) {
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
        if started.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    for r in readers {
        let _ = r.join();
    }
    (console, timed_out)
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

/// The console line without terminal escape sequences (SeaBIOS clears the screen) and
/// other control characters.
pub(crate) fn strip_escapes(line: &str) -> String {
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
