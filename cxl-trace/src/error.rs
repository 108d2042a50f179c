//! Errors a user can act on. Each variant's message says what went wrong and what to do.

use std::path::PathBuf;

/// Top-level error of cxl-trace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process lacks the privileges to load BPF programs.
    #[error("insufficient privileges: {detail}; run as root, or grant CAP_BPF and CAP_PERFMON (and CAP_SYS_ADMIN on kernels before 5.8)")]
    Privileges {
        /// What was found.
        detail: String,
    },
    /// The binary was built without its eBPF programs.
    #[error("this cxl-trace binary was built without its eBPF programs (bpf-linker was missing at build time); rebuild with `cargo xtask build` (it installs the toolchain)")]
    NoEbpfObject,
    /// tracefs could not be found or mounted.
    #[error("tracefs unavailable: {0}")]
    Tracefs(String),
    /// Loading the BPF object failed as a whole.
    #[error("loading the BPF object failed: {0}")]
    Load(String),
    /// None of the probes a command needs could be attached.
    #[error("no probe could be attached: {0}")]
    NoProbes(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The command to trace could not be started.
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        /// The command.
        cmd: String,
        /// Why.
        source: std::io::Error,
    },
    /// A process to follow does not exist.
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    /// Bad command-line input that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// Anything else from the runtime.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
