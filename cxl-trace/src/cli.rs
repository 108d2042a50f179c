//! Command line (clap derive).

use clap::{Args, Parser, Subcommand};

/// eBPF observability for CXL and tiered memory: page faults, page migrations and NUMA
/// balancing, attributed to memory tiers.
#[derive(Debug, Parser)]
#[command(name = "cxl-trace", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this kernel and these privileges allow: one line per probe and capability.
    Doctor(DoctorCmdOpts),
    /// Live view of faults and migrations; `--no-tui` prints one JSON object per interval.
    Top(TopOpts),
    /// Memory topology: nodes, distances, tiers, HMAT/CDAT numbers, CXL devices, settings.
    Topology(DoctorOpts),
    /// Run (for --duration, until --pid exits, or a command after --), then print one summary:
    /// faults, migrations, promotions and demotions, refusals, ping-pong, each beside the
    /// kernel's /proc/vmstat count where it has one (the `perf stat` of tiering).
    Stat(StatOpts),
    /// Serve Prometheus/OpenMetrics metrics over HTTP (`/metrics`, `/healthz`), headless, for
    /// a fleet's Prometheus to scrape.
    Exporter(ExporterOpts),
    /// Record every event, plus /proc/vmstat and per-node meminfo once a second, to a file.
    Record(RecordOpts),
    /// Summarise a recording: latency per tier, churn, refusals, ping-pong, processes, vmstat.
    Report(ReportOpts),
    /// Write every event of a recording as JSON lines, CSV, a native Perfetto trace or a Chrome
    /// JSON trace.
    Export(ExportOpts),
    /// Compare two recordings: configuration, latency percentiles per tier and class, churn,
    /// refusals, ping-pong, with significance; `--fail-on` for `git bisect run`.
    Diff(DiffOpts),
    /// Write a redacted copy of a recording for sharing: names hashed (kernel threads kept),
    /// addresses hashed or dropped, every derived result unchanged.
    Redact(RedactOpts),
    /// Play a recording back in the dashboard (pause, step, seek), or with `--no-tui` as one
    /// JSON object per recorded interval, like `top --no-tui`.
    Replay(ReplayOpts),
    /// Print the JSON Schema of a command's JSON output (every command's without COMMAND).
    Schema(SchemaOpts),
    /// Print a shell completion script, e.g. `cxl-trace completions bash >
    /// /etc/bash_completion.d/cxl-trace` (`cargo xtask install` puts them in place).
    Completions(CompletionsOpts),
}

/// The first argument that makes cxl-trace the blast-radius helper that `top` and `record`
/// start (not a subcommand: no completion, help or man page offers it).
pub const PROC_READER_ARG: &str = "--internal-proc-reader";

/// Options of `stat`.
#[derive(Debug, Args, Clone)]
pub struct StatOpts {
    /// Write the summary to FILE (created; an existing file is not replaced) instead of
    /// stderr.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// The summary as one JSON object, the schema's summary line, instead of text.
    #[arg(long)]
    pub json: bool,
    /// What to trace.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Options of `exporter`.
#[derive(Debug, Args, Clone)]
pub struct ExporterOpts {
    /// Address to serve on. Only loopback by default: any other address must be asked for.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Give the N process names with the most faults their own series (`comm` label). Names
    /// are chosen once and keep their series; 0: no process labels.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub process_labels: u16,
    /// Seconds between rebuilds of the metrics (a scrape reads the latest).
    #[arg(long, default_value = "1", value_parser = parse_seconds, value_name = "SECS")]
    pub interval: f64,
    /// Turn on the kernel's BPF run-time statistics for `cxl_trace_bpf_run_seconds_total`
    /// (two clock reads per program run).
    #[arg(long)]
    pub bpf_stats: bool,
    /// What to trace.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsOpts {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `schema`.
#[derive(Debug, Args)]
pub struct SchemaOpts {
    /// The command whose output to describe.
    #[arg(value_enum)]
    pub command: Option<crate::model::schema::Document>,
}

/// Output format of `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// Aligned columns, one line per metric (like mmtests' compare tables).
    Text,
    /// The same content as one JSON object.
    Json,
    /// Latency CDFs per tier and churn over time, both runs.
    Svg,
}

/// Options of `diff`.
#[derive(Debug, Args, Clone)]
pub struct DiffOpts {
    /// The baseline recording.
    pub base: std::path::PathBuf,
    /// The recording to judge.
    pub new: std::path::PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
    /// Write here instead of stdout (an existing file is kept).
    #[arg(short = 'o', long, value_name = "OUT")]
    pub output: Option<std::path::PathBuf>,
    /// Exit 1 when a measurement crosses this change significantly: METRIC[:KEY=VALUE]...:±N%,
    /// e.g. `p99:tier=slow:+10%`, `promotions:-20%`, `pingpong:+50%`,
    /// `migrated:reason=compaction:+30%`. Repeat or separate with commas.
    #[arg(long, value_name = "SPEC")]
    pub fail_on: Vec<String>,
    /// Smallest change (percent) called significant, however sure the statistics are.
    #[arg(long, default_value_t = 5.0, value_name = "PCT", value_parser = parse_min_change)]
    pub min_change: f64,
}

fn parse_min_change(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of percent"))?;
    if !(0.0..=1000.0).contains(&v) {
        return Err(format!("`{s}`: between 0 and 1000"));
    }
    Ok(v)
}

/// Options of `replay`.
#[derive(Debug, Args, Clone)]
pub struct ReplayOpts {
    /// The recording.
    pub file: std::path::PathBuf,
    /// Print JSON lines instead of the dashboard (also when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Pace the intervals at this multiple of real time (default: 1 in the dashboard, as fast
    /// as possible with --no-tui).
    #[arg(long, value_parser = parse_seconds, value_name = "X")]
    pub speed: Option<f64>,
    /// Processes listed per interval.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
}

/// Options of `record`.
#[derive(Debug, Args, Clone)]
pub struct RecordOpts {
    /// The recording to create (mode 0600; an existing file is kept unless --force).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// For sharing: hash process names (kernel threads keep theirs), command lines and the
    /// host name with a key that is never written, hash the page identities ping-pong needs,
    /// zero fault addresses and instruction pointers. Every derived result stays the same.
    #[arg(long)]
    pub redact: bool,
    /// Keep the kernel instruction pointers of kernel-mode faults (zeroed otherwise).
    #[arg(long, conflicts_with = "redact")]
    pub kernel_ips: bool,
    /// What to trace, as for `top`.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Options of `redact`.
#[derive(Debug, Args, Clone)]
pub struct RedactOpts {
    /// The recording to redact.
    pub input: std::path::PathBuf,
    /// The redacted copy to create (mode 0600; an existing file is kept).
    #[arg(short = 'o', long, value_name = "OUT")]
    pub output: std::path::PathBuf,
}

/// Output format of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned text for an email.
    Text,
    /// One JSON object.
    Json,
}

/// Options of `report`.
#[derive(Debug, Args, Clone)]
pub struct ReportOpts {
    /// The recording.
    pub file: std::path::PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Processes listed.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per event.
    Jsonl,
    /// One CSV row per event.
    Csv,
    /// A native Perfetto trace (protobuf): tracks per CPU and per process, slices for timed
    /// faults and migration batches, counter tracks for churn; opens in ui.perfetto.dev.
    Perfetto,
    /// A Chrome trace (JSON trace event format): per-CPU tracks, counter tracks for churn;
    /// opens in ui.perfetto.dev and chrome://tracing.
    ChromeJson,
    /// Parquet for DuckDB, Spark or Trino: `-o DIR` (created) gets `events.parquet` and
    /// `intervals.parquet`, typed columns with `host` and `kernel` on every row.
    Parquet,
}

/// Options of `export`.
#[derive(Debug, Args, Clone)]
pub struct ExportOpts {
    /// The recording.
    pub file: std::path::PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of stdout (an existing file is kept); for parquet, the directory
    /// to create.
    #[arg(short = 'o', long, value_name = "OUT")]
    pub output: Option<std::path::PathBuf>,
}

/// Options of `doctor` and `topology`.
#[derive(Debug, Args)]
pub struct DoctorOpts {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorCmdOpts {
    #[command(flatten)]
    pub base: DoctorOpts,
    /// One line per probe and tracepoint with its full reason, instead of what is lost,
    /// grouped by cause.
    #[arg(long, short)]
    pub verbose: bool,
    /// Write this kernel's facts that the probes depend on (tracefs formats of every
    /// tracepoint used, BTF prototypes of every hooked function, which symbols kallsyms has,
    /// the /proc/vmstat names) into DIR, for a bug report or as a test fixture.
    #[arg(long, value_name = "DIR")]
    pub capture: Option<std::path::PathBuf>,
}

/// Options of `top`.
#[derive(Debug, Args, Clone)]
pub struct TopOpts {
    /// Print one JSON object per interval on stdout instead of the terminal dashboard.
    #[arg(long)]
    pub no_tui: bool,
    /// Seconds between updates.
    #[arg(long, default_value = "1", value_parser = parse_seconds, value_name = "SECS")]
    pub interval: f64,
    /// Processes listed per interval.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// What to trace.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// When to attach the promotion-decision hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionHooks {
    /// When NUMA balancing is in tiering mode at the start (kernel.numa_balancing & 2): the
    /// only time the kernel makes promotion decisions, while two of the hooks
    /// (`mod_node_page_state`, `folio_isolate_lru`) run on every page-state change and every
    /// page isolated for reclaim, compaction or migration.
    Auto,
    /// Always (tiering mode may be turned on during the run).
    Always,
    /// Never.
    Never,
}

/// What `top` and `record` trace: for how long, whose faults, with which hooks.
#[derive(Debug, Args, Clone)]
pub struct TraceArgs {
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Follow this process and the children it forks from now on (faults only; migrations
    /// are system-wide because kswapd, kcompactd and NUMA balancing act for others).
    #[arg(long, value_name = "PID", conflicts_with_all = ["command", "cgroup", "comm"])]
    pub pid: Option<u32>,
    /// Only faults of tasks in this cgroup v2 directory or below it (a path under
    /// /sys/fs/cgroup, or relative to it as /proc/PID/cgroup prints it).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["command", "comm"])]
    pub cgroup: Option<String>,
    /// Only faults of threads with this name (the kernel's `comm`: at most 15 bytes, longer
    /// names are cut).
    #[arg(long, value_name = "NAME", conflicts_with = "command")]
    pub comm: Option<String>,
    /// Ring buffer size in MiB (power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ringbuf_mib, value_name = "MIB")]
    pub ringbuf_mib: u32,
    /// Attach the function hooks as kprobe/kretprobe even where fentry/fexit would work (the
    /// fallback taken anyway when the kernel refuses fentry).
    #[arg(long)]
    pub kprobes: bool,
    /// Use tracepoints only, no function hooks: what a kernel that refuses both fentry and
    /// kprobes gives (per-folio moves then come from the migration-entry tracepoints).
    #[arg(long, conflicts_with = "kprobes")]
    pub tracepoints_only: bool,
    /// Benchmark only: every getpgid(2) of the command writes a batch of synthetic fault
    /// records into the ring buffer (`cargo xtask bench` measures the drain rate with it).
    #[arg(long, hide = true, requires = "command")]
    pub ring_bench: bool,
    /// Dashboard: do not turn on the kernel's BPF run-time statistics for the header's `bpf`
    /// share: they cost two clock reads per run of every program (every fault, every folio
    /// moved). Without the dashboard they are never turned on.
    #[arg(long)]
    pub no_bpf_stats: bool,
    /// Promotion decisions (why NUMA balancing promoted a page or refused to): `auto` attaches
    /// their hooks only when NUMA balancing is in tiering mode at the start, so they cost
    /// nothing otherwise; `always` when tiering mode will be turned on during the run.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub promotion_decisions: DecisionHooks,
    /// `top`, `stat`, `exporter`: send a record per fault to userspace, as `record` does,
    /// instead of counting faults in the kernel (per CPU, per process). Same counts, at about
    /// three times the cost per fault; for comparing the two paths.
    #[arg(long)]
    pub fault_events: bool,
    /// Run this command, follow it and its children, stop when it exits and exit with its status.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A positive, finite number of seconds, at most a day.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}`: must be a positive number of seconds"));
    }
    if v > 86_400.0 {
        return Err(format!("`{s}`: at most 86400 seconds"));
    }
    if v < 0.01 {
        return Err(format!("`{s}`: at least 0.01 seconds"));
    }
    Ok(v)
}

/// A power of two between 1 and 1024 MiB.
pub fn parse_ringbuf_mib(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number of MiB"))?;
    if !(1..=1024).contains(&v) || !v.is_power_of_two() {
        return Err(format!("`{s}`: must be a power of two from 1 to 1024"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("1.5"), Ok(1.5));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("abc").is_err());
        assert!(parse_seconds("1e9").is_err());
    }

    #[test]
    fn ringbuf() {
        assert_eq!(parse_ringbuf_mib("16"), Ok(16));
        assert!(parse_ringbuf_mib("3").is_err());
        assert!(parse_ringbuf_mib("0").is_err());
        assert!(parse_ringbuf_mib("2048").is_err());
    }

    #[test]
    fn top_with_command() {
        let cli = Cli::try_parse_from([
            "cxl-trace",
            "top",
            "--no-tui",
            "--interval",
            "0.5",
            "--",
            "sleep",
            "1",
        ])
        .expect("parse");
        let Command::Top(t) = cli.command else {
            panic!("not top")
        };
        assert!(t.no_tui);
        assert_eq!(t.interval, 0.5);
        assert_eq!(t.trace.command, vec!["sleep", "1"]);
    }

    #[test]
    fn pid_and_command_conflict() {
        assert!(Cli::try_parse_from(["cxl-trace", "top", "--pid", "1", "--", "true"]).is_err());
    }
}
