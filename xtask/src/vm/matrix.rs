//! The kernel matrix: every selected kernel's scenarios, the cross-kernel diff, kernel facts absorbed as fixtures, and the migration benchmark.

use super::*;
use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use std::collections::BTreeSet;

use crate::table::Row;
use crate::{kernels::Selector, step, target_dir};

/// The kernel the benchmarks boot, and the base of the cross-kernel `diff`.
pub const DEFAULT_KERNEL: Selector = Selector::Series(6, 12);

/// The kernels the suite boots: the oldest Debian stable kernel, the one the benchmarks use,
/// and the newest stable Debian has.
pub const MATRIX: [Selector; 3] = [
    Selector::Series(6, 1),
    Selector::Series(6, 12),
    Selector::Newest,
];

/// Guests that run side by side by default: one. Under TCG a guest keeps about 64% of this
/// 2-core machine busy on average, and `--jobs 2` ran the matrix in about 640 s instead of
/// about 1,330 s, green once; the next run at 2 failed one exact check on 6.1's cxl guest
/// (direct demotions 8,143 counted against 8,362 in the kernel's delta over the tool's own
/// window), which a guest alone has never shown. Until that is understood the suite runs them
/// one at a time.
pub const DEFAULT_JOBS: u16 = 1;

/// `cargo xtask vm-test`: everything from packages to the verdict, for every kernel named.
pub fn vm_test(
    kernels: &[Selector],
    machines: &[Machine],
    script: Option<PathBuf>,
    keep: bool,
    jobs: u16,
) -> Result<()> {
    if !Path::new("/proc/self").exists() {
        bail!("no /proc: cannot run the VM tests here");
    }
    crate::phases::time("guests' binaries (a no-op after the suite's build)", || {
        crate::suite::build_suite()
    })?;
    run_matrix(fetch_kernels(kernels), machines, script, keep, jobs)
}

/// Every kernel's parts (packages, kernel, initramfs), and the kernels that failed. The suite
/// fetches them while it compiles (network against CPU).
pub fn fetch_kernels(kernels: &[Selector]) -> Fetched {
    let mut fetched = Fetched::default();
    for sel in kernels {
        match crate::phases::time(
            &format!("guest kernel {} (fetch, unpack, initramfs)", sel.label()),
            || guest_parts(sel),
        ) {
            Ok(p) => fetched.parts.push(p),
            Err(e) => fetched
                .failed
                .push(format!("kernel {}: {e:#}", sel.label())),
        }
    }
    fetched
}

/// What [`fetch_kernels`] found.
#[derive(Default)]
pub struct Fetched {
    parts: Vec<(GuestKernel, PathBuf, PathBuf)>,
    failed: Vec<String>,
}

/// Every machine on every fetched kernel, `jobs` guests at a time, then the cross-kernel diff.
pub fn run_matrix(
    fetched: Fetched,
    machines: &[Machine],
    script: Option<PathBuf>,
    keep: bool,
    jobs: u16,
) -> Result<()> {
    let Fetched { parts, mut failed } = fetched;
    // Every kernel is known first, so the newest of the run is: it alone also runs the checks
    // of the tool's own userspace logic (exporter, redaction, diff statistics).
    let series = |r: &str| crate::kernels::Release::parse(r).map_or((0, 0), |r| r.series());
    let newest = parts.iter().map(|(k, _, _)| series(&k.release)).max();
    let mut queue: Vec<Guest<'_>> = parts
        .iter()
        .flat_map(|(k, initrd, xtask)| {
            machines.iter().map(move |&machine| Guest {
                k,
                initrd,
                xtask,
                machine,
                userspace_checks: Some(series(&k.release)) == newest,
            })
        })
        .collect();
    // Longest first, so the short guests fill the gaps at the end.
    queue.sort_by_key(|g| std::cmp::Reverse(g.expected_s()));
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(queue));
    let results = std::sync::Mutex::new(Vec::new());
    let jobs = usize::from(jobs.max(1));
    step(&format!(
        "vm-test: {} guests, {jobs} at a time",
        queue.lock().map_or(0, |q| q.len())
    ));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            // The queue's lock is taken and dropped inside `and_then`: never held by a guest.
            scope.spawn(|| {
                while let Some(g) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let f = g.run(script.as_ref(), keep);
                    let kept = (g.machine == Machine::Hmat)
                        .then(|| keep_promotion_recording(g.k))
                        .flatten();
                    if let Ok(mut r) = results.lock() {
                        r.push((g.k.release.clone(), f, kept));
                    }
                }
            });
        }
    });
    crate::phases::record(
        format!("guests, {jobs} at a time (wall clock of the rows above)"),
        started.elapsed(),
        "",
    );
    let mut recorded = Vec::new();
    for (release, f, kept) in results.into_inner().unwrap_or_default() {
        failed.extend(f.into_iter().map(|f| format!("{release}: {f}")));
        if let Some(r) = kept {
            recorded.push((release, r));
        }
    }
    if script.is_none() {
        if let Err(e) = crate::phases::time("cross-kernel diff", || cross_kernel_diff(&recorded)) {
            failed.push(format!("cross-kernel diff: {e:#}"));
        }
    }
    if !failed.is_empty() {
        bail!("vm-test failed: {}", failed.join("; "));
    }
    step("vm-test: all scenarios passed");
    Ok(())
}

/// One guest to boot: a machine on a kernel.
struct Guest<'a> {
    k: &'a GuestKernel,
    initrd: &'a Path,
    xtask: &'a Path,
    machine: Machine,
    userspace_checks: bool,
}

impl Guest<'_> {
    /// About how long it takes (seconds, this 2-core host's last runs), to start the longest
    /// first: the full `hmat` scenario where the kernel builds tiers from HMAT (6.7+), with the
    /// userspace checks on the newest kernel; then the CXL machine; 6.1's one-tier `hmat`
    /// guest is the shortest.
    fn expected_s(&self) -> u64 {
        let tiered =
            crate::kernels::Release::parse(&self.k.release).is_some_and(|r| r.series() >= (6, 7));
        match self.machine {
            Machine::Hmat if !tiered => 40,
            Machine::Hmat if self.userspace_checks => 500,
            Machine::Hmat => 330,
            Machine::Cxl => 150,
            Machine::CxlRas => 60,
        }
    }

    /// Boots it (once more after a kernel crash); the failures.
    fn run(&self, script: Option<&PathBuf>, keep: bool) -> Vec<String> {
        let (k, m) = (self.k, self.machine);
        let mut failed = Vec::new();
        let guest_cmd = format!(
            "CARGO_TARGET_DIR='{}' CXL_TRACE_BIN_DIR='{}' {} vm-guest --machine {}{}",
            target_dir().display(),
            crate::suite::suite_bin_dir().display(),
            self.xtask.display(),
            m.name(),
            if self.userspace_checks {
                " --userspace-checks"
            } else {
                ""
            }
        );
        let opts = VmRun {
            machine: m,
            script: script.cloned(),
            keep,
            // About twice the longest guest seen: TCG's speed follows the host's CPU (on a
            // 2.0 GHz Xeon the 6.12 cxl guest took 500+ s, 250 s on the EPYC before it), and
            // a guest beside another gets a little less of it.
            timeout: Duration::from_secs(match m {
                Machine::Hmat => 1400,
                Machine::Cxl => 900,
                Machine::CxlRas => 600,
            }),
        };
        let booted = Instant::now();
        let mut result = boot(k, self.initrd, &opts, &guest_cmd);
        if let Err(e) = &result {
            if e.downcast_ref::<GuestKernelCrash>().is_some() {
                // Once, loudly: a second crash fails the run like any other error. The
                // crashed console is kept beside the run directory.
                let kept = vm_dir().join(format!("{}-{}-crash-console.log", m.name(), k.series()));
                let _ = fs::copy(run_dir(m, k).join("console.log"), &kept);
                step(&format!(
                    "{e:#}; kept as {}; booting the guest once more",
                    kept.display()
                ));
                result = boot(k, self.initrd, &opts, &guest_cmd);
            }
        }
        crate::phases::record(
            format!("guest {} on {}", m.name(), k.release),
            booted.elapsed(),
            match &result {
                Ok(0) => "ok".to_string(),
                Ok(code) => format!("FAILED (exit code {code})"),
                Err(_) => "FAILED".to_string(),
            },
        );
        match result {
            Ok(0) => {}
            Ok(code) => failed.push(format!(
                "{}: guest exit code {code}{}",
                m.name(),
                failed_lines(&run_dir(m, k).join("console.log"))
            )),
            Err(e) => failed.push(format!("{e:#}")),
        }
        // Only the cxl guest captures them (with the CXL drivers loaded), into the run
        // directory its boot emptied first.
        if m == Machine::Cxl {
            if let Err(e) = absorb_facts(k, m) {
                failed.push(format!("{e:#}"));
            }
        }
        failed
    }
}

/// The promotion workload the `hmat` guest recorded (the base run of its `diff` scenario),
/// kept as `target/vm/recordings/<release>.cxlt` for the cross-kernel `diff`.
pub(crate) fn keep_promotion_recording(k: &GuestKernel) -> Option<PathBuf> {
    let src = run_dir(Machine::Hmat, k).join("promotion.cxlt");
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
pub(crate) fn cross_kernel_diff(recorded: &[(String, PathBuf)]) -> Result<()> {
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
    let tool = crate::suite::suite_bin_dir().join("cxl-trace");
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
    let v: cxl_trace::model::schema::DiffDoc =
        serde_json::from_str(&json).context("diff --format json")?;
    let first = v
        .config_differences
        .first()
        .map_or("-", |d| d.what.as_str());
    if first != "kernel" {
        bail!("the first configuration difference is {first:?}, not the kernel");
    }
    let crossed = v.fail_on.first().is_some_and(|f| f.crossed);
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
pub(crate) fn tree(dir: &Path) -> Result<std::collections::BTreeMap<PathBuf, Vec<u8>>> {
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
pub(crate) fn absorb_facts(k: &GuestKernel, m: Machine) -> Result<()> {
    let captured = run_dir(m, k).join("facts");
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
    let path = run_dir(m, &k).join("bench.json");
    let text = fs::read_to_string(&path)
        .with_context(|| format!("the guest wrote no {}", path.display()))?;
    let list: Vec<Row> = serde_json::from_str(&text).context("bench.json")?;
    for mut r in list {
        r.name = format!("[VM {accel}] {}", r.name);
        rows.push(r);
    }
    Ok(())
}

/// The console lines that say why a guest failed (mismatched checks, errors), so that the end
/// of a long log names them: "; failed: ..." or nothing.
fn failed_lines(console: &std::path::Path) -> String {
    let text = fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("MISMATCH") || l.contains("error:") || l.contains("Error:"))
        .map(str::trim)
        .take(12)
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; failed:\n    {}", lines.join("\n    "))
    }
}
