//! cxl-trace command line entry point: parse, run, map errors to exit codes.

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let helper = std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(cxl_trace::cli::PROC_READER_ARG));
    let result = if helper {
        cxl_trace::proc_reader()
    } else {
        cxl_trace::run(cxl_trace::cli::Cli::parse())
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cxl-trace: error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
