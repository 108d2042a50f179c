//! cxl-trace-workload: programs that cause known kernel events, for the test suite, the VM
//! scenarios and the benchmarks.
//!
//! `touch --pages N [--rounds R]`: map N anonymous 4 KiB pages (THP disabled for the range),
//! write one byte per page, unmap; R times. Prints `{"pages":N,"rounds":R,"minflt":..,"majflt":..}`
//! with the process's own fault counts from getrusage(2).

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: cxl-trace-workload touch --pages N [--rounds R]");
    ExitCode::from(2)
}

fn parse_flag(args: &[String], name: &str, default: Option<u64>) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| format!("{name} needs a value"))?
            .parse()
            .map_err(|_| format!("{name}: not a whole number")),
        None => default.ok_or_else(|| format!("{name} is required")),
    }
}

fn touch(pages: u64, rounds: u64) -> Result<(), String> {
    let page = 4096usize;
    let len = usize::try_from(pages)
        .map_err(|_| "too many pages")?
        .checked_mul(page)
        .ok_or("too many pages")?;
    for _ in 0..rounds {
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `p` is the start of a mapping of `len` bytes we own.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        let base = p.cast::<u8>();
        for i in 0..len / page {
            // SAFETY: i * page < len, inside the mapping; volatile so the store is not elided.
            unsafe { std::ptr::write_volatile(base.add(i * page), 1) };
        }
        // SAFETY: unmapping exactly what was mapped above.
        unsafe { libc::munmap(p, len) };
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("touch") => {
            let run = || -> Result<(u64, u64), String> {
                let pages = parse_flag(&args, "--pages", None)?;
                let rounds = parse_flag(&args, "--rounds", Some(1))?;
                touch(pages, rounds)?;
                Ok((pages, rounds))
            };
            match run() {
                Ok((pages, rounds)) => {
                    // SAFETY: getrusage writes into a zeroed rusage we own.
                    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
                    // SAFETY: valid pointer to `ru`.
                    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
                    println!(
                        "{{\"pages\":{pages},\"rounds\":{rounds},\"minflt\":{},\"majflt\":{}}}",
                        ru.ru_minflt, ru.ru_majflt
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cxl-trace-workload: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
