//! `berth-runc`: runc's command line over the berth-runtime library.
//!
//! Parsing is the only thing done here: each verb calls one library operation, reports its
//! error chain once (stderr and `--log`), and exits 1 on failure; `run` and foreground `exec`
//! exit with the container process's code.

mod cli;
mod log;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let logger = log::Logger {
        file: args.log.clone(),
        format: args.log_format,
        debug: args.debug,
    };
    logger.debug(&format!(
        "invoked as {:?}",
        std::env::args().collect::<Vec<_>>()
    ));
    match cli::dispatch(args, &logger) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logger.error(&log::chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
