//! Helpers of the guest side: running commands, the workload, holding pages hot, cgroups, /proc/vmstat.

use super::*;
use std::{
    collections::BTreeMap,
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::target_dir;

/// A scenario line, stamped with the guest's uptime so a slow step shows in the log.
pub(crate) fn say(msg: &str) {
    let up = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    match up {
        Some(t) => println!("scenario: [{t:.0} s] {msg}"),
        None => println!("scenario: {msg}"),
    }
}

/// A binary the host built: from `CXL_TRACE_BIN_DIR` (the suite's `target/ci`), else the
/// release build (the migration benchmark measures what users run).
pub(crate) fn bin(name: &str) -> PathBuf {
    std::env::var_os("CXL_TRACE_BIN_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| target_dir().join("release"), PathBuf::from)
        .join(name)
}

pub(crate) fn write(path: &str, value: &str) -> Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value:?} to {path}"))
}

pub(crate) fn sh(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{shown} failed with {}: {}", out.status, text.trim());
    }
    Ok(text)
}

pub(crate) fn workload(args: &[&str]) -> Result<()> {
    let out = sh(Command::new(bin("cxl-trace-workload")).args(args))?;
    let line = out.lines().last().unwrap_or_default();
    say(&format!("workload {}: {line}", args.join(" ")));
    Ok(())
}

pub(crate) fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Waits until `path` has a line containing `needle`.
pub(crate) fn wait_for_line(
    path: &Path,
    needle: &str,
    child: &mut Child,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!(
                "{} exited ({st}) before printing {needle:?}",
                path.display()
            );
        }
        sleep(Duration::from_millis(100));
    }
    bail!("no {needle:?} in {} after {timeout:?}", path.display())
}

/// A background program whose stdout goes to a file in /results.
pub(crate) struct Background {
    child: Child,
    out: PathBuf,
}

impl Background {
    pub(crate) fn start(name: &str, cmd: &mut Command, ready: &str) -> Result<Self> {
        let out = PathBuf::from(format!("/results/{name}.out"));
        let file = fs::File::create(&out)?;
        let mut child = cmd
            .stdout(file)
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        wait_for_line(&out, ready, &mut child, Duration::from_secs(120))?;
        Ok(Self { child, out })
    }

    pub(crate) fn stop(mut self) -> Result<String> {
        signal(&self.child, libc::SIGINT);
        let start = Instant::now();
        let mut again = false;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            // Under TCG a detach can take long (16-20 s seen), and bpftrace sometimes lets the
            // first SIGINT pass (on 6.12 it then ran until a second one, sent after 60 s,
            // stopped it at once): a second SIGINT after 20 s, then up to three minutes in
            // all before it counts as hung.
            if !again && start.elapsed() > Duration::from_secs(20) {
                say(&format!(
                    "{} still running 20 s after SIGINT: sending it again",
                    self.out.display()
                ));
                signal(&self.child, libc::SIGINT);
                again = true;
            }
            if start.elapsed() > Duration::from_secs(180) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not stop within 180 s of SIGINT", self.out.display());
            }
            sleep(Duration::from_millis(100));
        }
        if start.elapsed() > Duration::from_secs(10) {
            say(&format!(
                "{} took {:.0} s to stop",
                self.out.display(),
                start.elapsed().as_secs_f64()
            ));
        }
        Ok(fs::read_to_string(&self.out)?)
    }
}

/// A workload `hold` running in the background, past its `ready` line.
pub(crate) struct Held {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Held {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to exit by itself; returns its last line.
    pub(crate) fn finish(mut self) -> Result<String> {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest)?;
        let st = self.child.wait()?;
        if !st.success() {
            bail!("workload hold failed with {st}");
        }
        Ok(rest.lines().last().unwrap_or_default().to_string())
    }

    /// Ends it with SIGTERM.
    pub(crate) fn end(mut self) -> Result<()> {
        signal(&self.child, libc::SIGTERM);
        self.child.wait()?;
        Ok(())
    }
}

/// A workload `hold` in the background, after its `ready` line.
/// `mib` MiB first placed on `node`, unbound (so NUMA balancing may move it) and written in a
/// loop for `seconds`, in `cgroup` when given.
pub(crate) fn hold_hot(mib: &str, node: &str, seconds: &str, cgroup: Option<&str>) -> Result<Held> {
    hold(
        &[
            "--mib",
            mib,
            "--node",
            node,
            "--unbind",
            "--hot",
            "--seconds",
            seconds,
        ],
        cgroup,
    )
}

/// NUMA balancing in tiering mode with a hot threshold (best effort: the threshold is in
/// debugfs, which may be absent).
pub(crate) fn tiering_mode(hot_threshold_ms: &str) -> Result<()> {
    write("/proc/sys/kernel/numa_balancing", "2")?;
    let _ = write(
        "/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms",
        hot_threshold_ms,
    );
    Ok(())
}

pub(crate) fn hold(args: &[&str], cgroup: Option<&str>) -> Result<Held> {
    let wl = bin("cxl-trace-workload");
    let mut cmd = match cgroup {
        // Join the cgroup before exec, so every page is charged to it.
        Some(cg) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("echo $$ > {cg}/cgroup.procs && exec \"$0\" \"$@\""))
                .arg(&wl);
            c
        }
        None => Command::new(&wl),
    };
    let mut child = cmd
        .arg("hold")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the workload")?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if !line.contains("\"ready\"") {
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        bail!(
            "workload hold {} did not get ready: {line:?} ({status}; node free: {} KiB)",
            args.join(" "),
            args.iter()
                .position(|a| *a == "--node")
                .and_then(|i| args.get(i + 1))
                .and_then(|n| n.parse().ok())
                .map_or("?".into(), |n| node_free_kib(n)
                    .map_or("?".into(), |v| v.to_string()))
        );
    }
    say(&format!("hold {}: {}", args.join(" "), line.trim()));
    Ok(Held { child, stdout })
}

pub(crate) fn vmstat() -> Result<BTreeMap<String, u64>> {
    Ok(fs::read_to_string("/proc/vmstat")?
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

/// The guest kernel's (major, minor).
pub(crate) fn kernel_version() -> (u64, u64) {
    let r = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    crate::kernels::Release::parse(r.trim()).map_or((0, 0), |r| r.series())
}

pub(crate) fn topology() -> Result<Topology> {
    let out = sh(Command::new(bin("cxl-trace")).args(["topology", "--json"]))?;
    serde_json::from_str::<TopologyDoc>(&out)
        .map(|d| d.topology)
        .context("topology --json printed no topology")
}

pub(crate) fn node_tier(topo: &Topology, node: u64) -> Option<u64> {
    topo.nodes
        .iter()
        .find(|n| u64::from(n.id) == node)?
        .tier
        .map(u64::from)
}

/// Demotion turned on, a process of `mib` MiB on node 0 in cgroup `name`, and `amount`
/// written to its `memory.reclaim`. EAGAIN (less reclaimed than asked, or before 6.3 nothing
/// at all: cgroup reclaim did not demote yet) is said, not an error.
pub(crate) fn cgroup_reclaim(name: &str, mib: &str, amount: &str) -> Result<()> {
    write("/sys/kernel/mm/numa/demotion_enabled", "true")?;
    let cg = make_cgroup(name)?;
    let h = hold(&["--mib", mib, "--node", "0", "--unbind"], Some(&cg))?;
    if let Err(e) = write(&format!("{cg}/memory.reclaim"), amount) {
        say(&format!("memory.reclaim: {e:#}"));
    }
    h.end()
}

pub(crate) fn make_cgroup(name: &str) -> Result<String> {
    let _ = fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
    let path = format!("/sys/fs/cgroup/{name}");
    let _ = fs::create_dir(&path);
    Ok(path)
}

/// 800 MiB touched bound to node 0 beside a 300 MiB process there: kswapd demotes.
pub(crate) fn pressure_on_node0() -> Result<()> {
    let h = hold(&["--mib", "300", "--node", "0", "--unbind"], None)?;
    let pages = (800u64 << 20) / 4096;
    sh(Command::new("numactl")
        .args(["--membind=0", "--"])
        .arg(bin("cxl-trace-workload"))
        .args(["touch", "--pages", &pages.to_string()]))?;
    h.end()
}

/// `MemFree` of a node, in KiB.
pub(crate) fn node_free_kib(node: u32) -> Result<u64> {
    let path = format!("/sys/devices/system/node/node{node}/meminfo");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find(|l| l.contains("MemFree:"))
        .and_then(|l| l.split_whitespace().rev().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no MemFree in {path}"))
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
