//! `bfm`: run migrations from the command line, check a migration tree, or serve the API.

mod cli;
mod commands;
mod logging;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Both sqlx and HTTP clients use rustls: pick the provider once, explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    // The server logs what it does (to stdout, for a log collector); a command only what goes
    // wrong (to stderr: its stdout is its output).
    let (role, default_level) =
        if matches!(cli.command, cli::Command::Serve(_)) { (logging::Role::Service, "info") } else { (logging::Role::Command, "warn") };
    if let Err(e) = logging::init(role, cli.global.log_level.as_deref(), default_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
