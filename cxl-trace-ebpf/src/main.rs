//! cxl-trace kernel programs.
//!
//! One module per probe family. Each program is a thin `#[tracepoint] fn x(ctx) -> u32` that
//! calls `try_x`; all of them share the ring buffer, the per-CPU stat counters and the follow
//! filter defined in [`shared`].
//!
//! Built for `bpfel-unknown-none` by `cxl-trace/build.rs` (aya-build). On the host the crate
//! compiles to an empty binary so that `cargo clippy --workspace` can still check it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The programs are only reachable through their link sections on the BPF target.
#![cfg_attr(
    not(target_arch = "bpf"),
    allow(dead_code, reason = "host build only type-checks the programs")
)]

mod bench;
mod caps;
mod faults;
mod follow;
mod migrate;
mod ptes;
mod rare;
mod shared;
mod tiering;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is never executed.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
