//! `bfm`: run migrations from the command line, check a migration tree, or serve the API.

mod cli;
mod commands;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn init_logging(level: Option<&str>, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let level = level.map(str::to_string).or_else(|| std::env::var("BFM_LOG_LEVEL").ok()).unwrap_or_else(|| default_level.into());
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "fatal" => "error".to_string(),
        other => other.to_string(),
    };
    let filter = EnvFilter::try_new(format!("{level},sqlx=warn")).unwrap_or_else(|_| EnvFilter::new("warn"));
    // BfM: JSON unless plaintext/plain/text; for a terminal tool, text unless json is asked for.
    let json = std::env::var("BFM_LOG_FORMAT").map(|f| f.eq_ignore_ascii_case("json")).unwrap_or(false);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.with_target(false).try_init();
    }
}

fn main() -> ExitCode {
    // Both sqlx and HTTP clients use rustls: pick the provider once, explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    // The server logs what it does; the CLI only what goes wrong.
    let default_level = if matches!(cli.command, cli::Command::Serve(_)) { "info" } else { "warn" };
    init_logging(cli.global.log_level.as_deref(), default_level);
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
