//! cxl-trace command line entry point: parse, run, map errors to exit codes.

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = cxl_trace::cli::Cli::parse();
    match cxl_trace::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cxl-trace: error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
