mod check;
mod migrate;
mod new;
mod schema;
mod serve;

use crate::cli::{Cli, Command, Global, Migrate};
use anyhow::Context;
use bfm_engine::{Config, Engine, ExecutionContext, Overrides, Service};
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("bfm {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => check::run(&cli.global, args),
        Command::New(args) => new::run(&cli.global, args),
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Schema(cmd) => {
            let engine = open_engine(&cli.global).await?;
            let ctx = cli_context("schema", &engine);
            let result = schema::run(&Service::new(engine.clone()), cmd, ctx).await;
            engine.close().await;
            result
        }
        Command::Baseline(args) => {
            let engine = open_engine(&cli.global).await?;
            let ctx = cli_context("baseline", &engine);
            let result = schema::baseline(&Service::new(engine.clone()), args, ctx).await;
            engine.close().await;
            result
        }
        Command::Migrate(m) => {
            let command = match &m {
                Migrate::Up(_) => "migrate up",
                Migrate::Plan(_) => "migrate plan",
                Migrate::Down(_) => "migrate down",
                Migrate::Status(_) => "migrate status",
                Migrate::Retry(_) => "migrate retry",
                Migrate::AcceptChecksum(_) => "migrate accept-checksum",
                Migrate::Reconcile(_) => "migrate reconcile",
                Migrate::Order(_) => "migrate order",
            };
            let engine = open_engine(&cli.global).await?;
            let ctx = cli_context(command, &engine);
            let service = Service::new(engine.clone());
            let result = match m {
                Migrate::Up(a) => migrate::up(&service, a, ctx).await,
                Migrate::Plan(mut a) => {
                    a.dry_run = true;
                    a.sql = true;
                    migrate::up(&service, a, ctx).await
                }
                Migrate::Down(a) => migrate::down(&service, a, ctx).await,
                Migrate::Status(a) => migrate::status(&service, a).await,
                Migrate::Retry(a) => migrate::retry(&service, a, ctx).await,
                Migrate::AcceptChecksum(a) => migrate::accept_checksum(&service, a, ctx).await,
                Migrate::Reconcile(a) => migrate::reconcile(&service, a).await,
                Migrate::Order(a) => migrate::order(&service, a),
            };
            engine.close().await;
            result
        }
    }
}

pub fn load_config(global: &Global) -> anyhow::Result<Config> {
    let overrides = Overrides {
        config_file: global.config.clone(),
        sfm_path: global.sfm.clone(),
        state_url: global.state.clone(),
        environment: global.environment.clone(),
    };
    Config::load(&overrides).context("configuration")
}

pub(crate) async fn open_engine(global: &Global) -> anyhow::Result<Arc<Engine>> {
    let config = load_config(global)?;
    let state = config.state.backend;
    Engine::open(config).await.with_context(|| format!("opening the {} state store", state.as_str()))
}

fn cli_context(command: &str, engine: &Engine) -> ExecutionContext {
    // URLs may carry passwords: never store them.
    let args: Vec<String> = std::env::args().skip(1).map(|a| bfm_targets::redact_url(&a)).collect();
    ExecutionContext {
        executed_by: bfm_engine::executing_user(),
        execution_method: "cli".into(),
        execution_context: serde_json::json!({
            "command": command,
            "args": args,
            "host": bfm_engine::host_name(),
            "environment": engine.config().environment,
            "connection_type": "cli",
        })
        .to_string(),
    }
}
