//! cxl-trace-workload: programs that cause known kernel events, for the test suite, the VM
//! scenarios and the benchmarks. Every subcommand prints one JSON line with what it did.
//!
//! - `touch --pages N [--rounds R] [--node N]`: map N anonymous 4 KiB pages (THP off for the
//!   range), write one byte per page, unmap; R times. Reports getrusage(2) fault counts.
//! - `move --mib M --from A --to B`: place M MiB on node A, then move_pages(2) them to B.
//! - `mbind --mib M --from A --to B`: place M MiB on node A, then mbind(MPOL_BIND B, MPOL_MF_MOVE).
//! - `pingpong --mib M --a A --b B --rounds R [--thp]`: place M MiB (THPs with --thp) on node A, then move_pages(2) it
//!   to B and back, R times. Reports the pages moved and the seconds the moves took (placement
//!   excluded), with the system's pgmigrate_success delta: the migration-bound program of the
//!   benchmarks.
//! - `getpgid --rate R --seconds S [--threads N]`: call getpgid(2) R times a second, paced,
//!   for S seconds, from N threads (the ring-buffer benchmark's source under `--ring-bench`).
//!   Reports the calls made.
//! - `hold --mib M [--node N] [--unbind] [--hot] [--seconds S]`: place M MiB (on N if given),
//!   print `{"ready":..}`, then keep the pages (and with `--hot` write every page in a loop)
//!   for S seconds or until killed. `--unbind` drops the node binding after placement, so NUMA
//!   balancing may promote the pages.

use std::{
    io::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Args, Parser, Subcommand};

const PAGE: usize = 4096;
const MPOL_DEFAULT: i64 = 0;
const MPOL_BIND: i64 = 2;
const MPOL_MF_MOVE: i64 = 1 << 1;

#[derive(Parser)]
#[command(
    name = "cxl-trace-workload",
    about = "Programs that cause known memory events"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Memory placed on one node and moved to another.
#[derive(Args)]
struct Transfer {
    #[arg(long)]
    mib: u64,
    #[arg(long)]
    from: u32,
    #[arg(long)]
    to: u32,
}

#[derive(Subcommand)]
enum Cmd {
    /// Map, touch and unmap pages.
    Touch {
        #[arg(long)]
        pages: u64,
        #[arg(long, default_value_t = 1)]
        rounds: u64,
        /// Bind the pages to this NUMA node.
        #[arg(long)]
        node: Option<u32>,
    },
    /// Place memory on one node and move it to another with move_pages(2).
    Move(Transfer),
    /// Place memory on one node and move it with mbind(2) MPOL_MF_MOVE.
    Mbind(Transfer),
    /// Place memory on node A, then move it to B and back with move_pages(2), R times.
    Pingpong {
        #[arg(long)]
        mib: u64,
        #[arg(long)]
        a: u32,
        #[arg(long)]
        b: u32,
        #[arg(long, default_value_t = 1)]
        rounds: u64,
        /// Ask for transparent huge pages (2 MiB aligned, MADV_HUGEPAGE) instead of 4 KiB.
        #[arg(long)]
        thp: bool,
    },
    /// Call getpgid(2) RATE times a second for SECONDS (shared by THREADS threads).
    Getpgid {
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        threads: u32,
    },
    /// Poison pages of its own on NODE as a memory error would: one soft-offlined
    /// (MADV_SOFT_OFFLINE: the kernel migrates it away), one hard-poisoned (MADV_HWPOISON: the
    /// kernel unmaps it). Needs CAP_SYS_ADMIN.
    Poison {
        #[arg(long)]
        node: u32,
        /// Then print the result, wait this long and read the hard-poisoned page: the kernel
        /// kills the process with SIGBUS, as it kills a program that reads a failed page.
        #[arg(long)]
        touch_after_ms: Option<u64>,
    },
    /// Place memory and keep it (optionally writing it in a hot loop).
    Hold {
        #[arg(long)]
        mib: u64,
        #[arg(long)]
        node: Option<u32>,
        /// Drop the node binding once the pages are placed.
        #[arg(long)]
        unbind: bool,
        /// Write every page in a loop.
        #[arg(long)]
        hot: bool,
        /// Exit after this many seconds (default: run until killed).
        #[arg(long)]
        seconds: Option<f64>,
    },
}

/// An anonymous private mapping, THP off (or asked for, 2 MiB aligned), unmapped on drop.
struct Region {
    ptr: *mut u8,
    len: usize,
    /// The whole mapping (larger than `len` when aligned for THP).
    map: (*mut u8, usize),
}

const HUGE: usize = 2 << 20;

impl Region {
    fn new(bytes: u64) -> Result<Self, String> {
        Self::with_thp(bytes, false)
    }

    fn with_thp(bytes: u64, thp: bool) -> Result<Self, String> {
        let len = usize::try_from(bytes).map_err(|_| "size too large")?;
        if len == 0 || len % PAGE != 0 {
            return Err("size must be a positive multiple of 4 KiB".into());
        }
        let map_len = if thp { len + HUGE } else { len };
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let map = (p.cast::<u8>(), map_len);
        if !thp {
            // SAFETY: `p` is the start of a mapping of `len` bytes we own.
            unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
            return Ok(Self {
                ptr: p.cast(),
                len,
                map,
            });
        }
        let skip = (HUGE - (p as usize) % HUGE) % HUGE;
        // SAFETY: `skip < HUGE`, so the aligned start and `len` bytes after it lie inside the
        // mapping of `len + HUGE` bytes.
        let start = unsafe { p.cast::<u8>().add(skip) };
        // SAFETY: advice on a range inside our own mapping.
        unsafe { libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE) };
        Ok(Self {
            ptr: start,
            len,
            map,
        })
    }

    fn pages(&self) -> usize {
        self.len / PAGE
    }

    fn page(&self, i: usize) -> *mut u8 {
        // SAFETY: callers pass i < pages(), so the offset stays inside the mapping.
        unsafe { self.ptr.add(i * PAGE) }
    }

    fn touch(&self, value: u8) {
        for i in 0..self.pages() {
            // SAFETY: the address is inside the mapping; volatile so the store is not elided.
            unsafe { std::ptr::write_volatile(self.page(i), value) };
        }
    }

    /// mbind(2) the whole region: `node` None means MPOL_DEFAULT.
    fn mbind(&self, node: Option<u32>, flags: i64) -> Result<(), String> {
        let (mode, mask) = match node {
            Some(n) if n < 63 => (MPOL_BIND, 1u64 << n),
            Some(n) => return Err(format!("node {n} is out of range")),
            None => (MPOL_DEFAULT, 0),
        };
        // SAFETY: mbind reads `maxnode` bits from `mask`, a u64 we own; the range is ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                self.ptr,
                self.len,
                mode,
                if node.is_some() {
                    std::ptr::from_ref(&mask)
                } else {
                    std::ptr::null()
                },
                64i64,
                flags,
            )
        };
        if r != 0 {
            return Err(format!("mbind: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// move_pages(2) on every page of the region: to `target` with `flags`, or, with no
    /// target, a query of where each page is. Returns the syscall's result (pages not moved)
    /// and the per-page status (node, or a negative errno).
    fn move_pages(&self, target: Option<u32>, flags: i64) -> Result<(i64, Vec<i32>), String> {
        let pages: Vec<*mut libc::c_void> =
            (0..self.pages()).map(|i| self.page(i).cast()).collect();
        let nodes = match target {
            Some(n) => Some(vec![i32::try_from(n).map_err(|_| "bad node")?; pages.len()]),
            None => None,
        };
        let mut status = vec![0i32; pages.len()];
        // SAFETY: `pages`, `status` and `nodes` (when given) each hold `pages.len()` entries and
        // outlive the call; a null `nodes` asks the kernel for a query.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                0,
                pages.len(),
                pages.as_ptr(),
                nodes.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
                status.as_mut_ptr(),
                flags,
            )
        };
        if r < 0 {
            return Err(format!("move_pages: {}", std::io::Error::last_os_error()));
        }
        Ok((r, status))
    }

    /// Pages on each node (negative keys: errno of pages not present).
    fn nodes(&self) -> Result<std::collections::BTreeMap<i32, u64>, String> {
        let mut by_node = std::collections::BTreeMap::new();
        for s in self.move_pages(None, 0)?.1 {
            *by_node.entry(s).or_insert(0) += 1;
        }
        Ok(by_node)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this Region owns.
        unsafe { libc::munmap(self.map.0.cast(), self.map.1) };
    }
}

fn nodes_json(m: &std::collections::BTreeMap<i32, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(n, c)| format!("\"{n}\":{c}")).collect();
    format!("{{{}}}", parts.join(","))
}

/// One page soft-offlined, one hard-poisoned; both on `node` first.
fn poison(node: u32, touch_after_ms: Option<u64>) -> Result<String, String> {
    let r = placed(1, Some(node))?;
    let before = r.nodes()?;
    let advise = |i: usize, advice: libc::c_int, what: &str| {
        // SAFETY: page `i` lies inside the live mapping `r` (1 MiB holds 256 pages); madvise
        // reads no memory through the pointer.
        let rc = unsafe { libc::madvise(r.page(i).cast(), PAGE, advice) };
        if rc != 0 {
            return Err(format!("{what}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    };
    advise(0, libc::MADV_SOFT_OFFLINE, "madvise(MADV_SOFT_OFFLINE)")?;
    advise(1, libc::MADV_HWPOISON, "madvise(MADV_HWPOISON)")?;
    let result = format!(
        "{{\"soft_offlined\":1,\"hwpoisoned\":1,\"pid\":{},\"before\":{}}}",
        std::process::id(),
        nodes_json(&before)
    );
    let Some(ms) = touch_after_ms else {
        return Ok(result);
    };
    println!("{result}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_millis(ms));
    // SAFETY: page 1 is inside the live mapping; reading it is what raises the SIGBUS.
    let v = unsafe { std::ptr::read_volatile(r.page(1)) };
    Err(format!(
        "read the hard-poisoned page and got {v}, not SIGBUS"
    ))
}

fn placed(mib: u64, node: Option<u32>) -> Result<Region, String> {
    placed_thp(mib, node, false)
}

fn placed_thp(mib: u64, node: Option<u32>, thp: bool) -> Result<Region, String> {
    let r = Region::with_thp(mib.checked_mul(1 << 20).ok_or("size too large")?, thp)?;
    if node.is_some() {
        r.mbind(node, 0)?;
    }
    r.touch(1);
    Ok(r)
}

/// getpgid(2) `rate` times a second from `start` until `seconds` later; returns the calls.
fn paced_getpgid(start: Instant, rate: f64, seconds: f64) -> u64 {
    let mut calls = 0u64;
    loop {
        let t = start.elapsed().as_secs_f64();
        if t >= seconds {
            return calls;
        }
        let due = (t * rate) as u64;
        if calls >= due {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        // Behind: catch up in bursts short enough to notice the end.
        for _ in 0..(due - calls).min(1024) {
            // SAFETY: getpgid(0) takes no pointers.
            unsafe { libc::getpgid(0) };
            calls += 1;
        }
    }
}

/// `pgmigrate_success` of /proc/vmstat (system-wide).
fn pgmigrate_success() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/vmstat").map_err(|e| format!("/proc/vmstat: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("pgmigrate_success "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no pgmigrate_success in /proc/vmstat".into())
}

fn rusage() -> (i64, i64) {
    // SAFETY: getrusage writes into a zeroed rusage we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to `ru`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_minflt, ru.ru_majflt)
}

fn run(cmd: Cmd) -> Result<String, String> {
    match cmd {
        Cmd::Touch {
            pages,
            rounds,
            node,
        } => touch(pages, rounds, node),
        Cmd::Move(t) => move_pages(t),
        Cmd::Mbind(t) => mbind_pages(t),
        Cmd::Pingpong {
            mib,
            a,
            b,
            rounds,
            thp,
        } => pingpong(mib, a, b, rounds, thp),
        Cmd::Getpgid {
            rate,
            seconds,
            threads,
        } => getpgid(rate, seconds, threads),
        Cmd::Poison {
            node,
            touch_after_ms,
        } => poison(node, touch_after_ms),
        Cmd::Hold {
            mib,
            node,
            unbind,
            hot,
            seconds,
        } => hold(mib, node, unbind, hot, seconds),
    }
}

/// Page faults: PAGES pages touched ROUNDS times, optionally bound to a node.
fn touch(pages: u64, rounds: u64, node: Option<u32>) -> Result<String, String> {
    let bytes = pages.checked_mul(PAGE as u64).ok_or("too many pages")?;
    for _ in 0..rounds {
        let r = Region::new(bytes)?;
        if node.is_some() {
            r.mbind(node, 0)?;
        }
        r.touch(1);
    }
    let (minflt, majflt) = rusage();
    Ok(format!(
        "{{\"pages\":{pages},\"rounds\":{rounds},\"minflt\":{minflt},\"majflt\":{majflt}}}"
    ))
}

/// move_pages(2) of MIB MiB from one node to another.
fn move_pages(Transfer { mib, from, to }: Transfer) -> Result<String, String> {
    let r = placed(mib, Some(from))?;
    // The binding would pin the pages to `from`; move_pages ignores it, but drop it
    // anyway so the result does not depend on that.
    r.mbind(None, 0)?;
    let before = r.nodes()?;
    let (rc, _) = r.move_pages(Some(to), MPOL_MF_MOVE)?;
    let after = r.nodes()?;
    Ok(format!(
        "{{\"pages\":{},\"not_moved\":{rc},\"before\":{},\"after\":{}}}",
        r.pages(),
        nodes_json(&before),
        nodes_json(&after)
    ))
}

/// mbind(2) with MPOL_MF_MOVE of MIB MiB from one node to another.
fn mbind_pages(Transfer { mib, from, to }: Transfer) -> Result<String, String> {
    let r = placed(mib, Some(from))?;
    let before = r.nodes()?;
    r.mbind(Some(to), MPOL_MF_MOVE)?;
    let after = r.nodes()?;
    Ok(format!(
        "{{\"pages\":{},\"before\":{},\"after\":{}}}",
        r.pages(),
        nodes_json(&before),
        nodes_json(&after)
    ))
}

/// MIB MiB moved between two nodes ROUNDS times, timed.
fn pingpong(mib: u64, a: u32, b: u32, rounds: u64, thp: bool) -> Result<String, String> {
    if a == b {
        return Err("--a and --b must be different nodes".into());
    }
    let r = placed_thp(mib, Some(a), thp)?;
    r.mbind(None, 0)?;
    let before = pgmigrate_success()?;
    let start = Instant::now();
    let mut moved = 0u64;
    for _ in 0..rounds {
        for to in [b, a] {
            let (_, status) = r.move_pages(Some(to), MPOL_MF_MOVE)?;
            moved += status.iter().filter(|&&s| s == to as i32).count() as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let migrated = pgmigrate_success()?.saturating_sub(before);
    Ok(format!(
        "{{\"pages\":{},\"rounds\":{rounds},\"moved\":{moved},\"pgmigrate_success\":{migrated},\"seconds\":{seconds:.6},\"nodes\":{}}}",
        r.pages(),
        nodes_json(&r.nodes()?)
    ))
}

/// getpgid(2) at a steady rate (the ring benchmark's source).
fn getpgid(rate: f64, seconds: f64, threads: u32) -> Result<String, String> {
    if !(rate.is_finite() && rate > 0.0 && seconds.is_finite() && seconds > 0.0) {
        return Err("--rate and --seconds must be positive".into());
    }
    if !(1..=64).contains(&threads) {
        return Err("--threads must be between 1 and 64".into());
    }
    let start = Instant::now();
    let per_thread = rate / f64::from(threads);
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || paced_getpgid(start, per_thread, seconds)))
        .collect();
    let mut calls = 0u64;
    for w in workers {
        calls += w.join().map_err(|_| "a getpgid thread panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let (minflt, majflt) = rusage();
    Ok(format!(
        "{{\"calls\":{calls},\"seconds\":{secs:.6},\"rate\":{:.1},\"threads\":{threads},\"minflt\":{minflt},\"majflt\":{majflt}}}",
        calls as f64 / secs
    ))
}

/// MIB MiB held (and kept hot) until SECONDS or a signal.
fn hold(
    mib: u64,
    node: Option<u32>,
    unbind: bool,
    hot: bool,
    seconds: Option<f64>,
) -> Result<String, String> {
    let r = placed(mib, node)?;
    if unbind {
        r.mbind(None, 0)?;
    }
    // A reader that went away is no reason to stop holding the memory.
    let _ = writeln!(
        std::io::stdout(),
        "{{\"ready\":true,\"pid\":{},\"pages\":{},\"nodes\":{}}}",
        std::process::id(),
        r.pages(),
        nodes_json(&r.nodes()?)
    );
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    let until = seconds.map(Duration::from_secs_f64);
    let mut rounds = 0u64;
    while until.is_none_or(|u| start.elapsed() < u) {
        if hot {
            r.touch((rounds & 0xff) as u8);
            rounds += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(format!(
        "{{\"pages\":{},\"rounds\":{rounds},\"nodes\":{}}}",
        r.pages(),
        nodes_json(&r.nodes()?)
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(line) => {
            // Broken pipe: the reader left; the work itself succeeded.
            let _ = writeln!(std::io::stdout(), "{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cxl-trace-workload: {e}");
            ExitCode::FAILURE
        }
    }
}
