use crate::cli::{Global, ServeArgs};
use anyhow::{Context, bail};
use bfm_server::auth::Token;
use bfm_server::automigrate::AutoMigrate;
use bfm_server::{GrpcSettings, HttpSettings};
use std::process::ExitCode;

/// A random token for `--dev` (128 bits from the OS, hex).
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(global)?;
    let env = |k: &str| config.env(k).map(str::to_string);
    let mut settings = HttpSettings::from_env(env).map_err(anyhow::Error::msg).context("configuration")?;
    if let Some(p) = args.port {
        settings.addr.set_port(p);
    }
    match &args.host {
        Some(h) => settings.addr.set_ip(h.parse().with_context(|| format!("--host: not an IP address: {h:?}"))?),
        None if args.dev && config.env("BFM_HTTP_HOST").is_none() => settings.addr.set_ip([127, 0, 0, 1].into()),
        None => {}
    }
    // gRPC listens where HTTP does (--host, --dev's loopback) unless BFM_GRPC_HOST says otherwise.
    let mut grpc = GrpcSettings::from_env(env, settings.addr.ip()).map_err(anyhow::Error::msg).context("configuration")?;
    if let (Some(g), Some(p)) = (grpc.as_mut(), args.grpc_port) {
        g.addr.set_port(p);
    }
    let token = match config.env("BFM_API_TOKEN") {
        Some(t) => Token::new(t),
        None if args.dev => {
            let t = random_token()?;
            // Shown once, on the terminal that started the server; never logged.
            eprintln!("bfm serve --dev: API token (shown once): {t}");
            Token::new(&t)
        }
        None => bail!("BFM_API_TOKEN is not set: every API call needs it (or run `bfm serve --dev` to generate one)"),
    };
    if config.sfm_path.as_ref().is_none_or(|p| !p.is_dir()) && config.golang_migrate_sources().is_empty() {
        bail!("no migration tree: set BFM_SFM_PATH (or --sfm) to an existing directory");
    }
    let auto = AutoMigrate::from_env(env);
    let state = config.state.backend;
    let engine = bfm_engine::Engine::open(config).await.with_context(|| format!("opening the {} state store", state.as_str()))?;
    bfm_server::serve(engine, token, settings, grpc, auto, !args.no_watch, shutdown_signal()).await.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
