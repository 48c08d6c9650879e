use crate::cli::{CheckArgs, Global};
use anyhow::bail;
use bfm_core::{LoadOptions, Severity};
use serde_json::json;
use std::process::ExitCode;

/// `bfm check [path]`: every problem as `file:line: message`; non-zero exit on errors.
pub fn run(global: &Global, args: CheckArgs) -> anyhow::Result<ExitCode> {
    // The configuration is optional here: a tree can be checked on a machine with none.
    let config = super::load_config(global).ok();
    let root = args.path.clone().or_else(|| config.as_ref().and_then(|c| c.sfm_path.clone()));
    let options = LoadOptions {
        sfm_root: root.clone(),
        connection_schemas: config.as_ref().map(|c| c.connection_schemas()).unwrap_or_default(),
        golang_migrate: if args.path.is_some() {
            Vec::new()
        } else {
            config.as_ref().map(|c| c.golang_migrate_sources()).unwrap_or_default()
        },
    };
    if options.sfm_root.is_none() && options.golang_migrate.is_empty() {
        bail!("no migration tree: pass a path, set BFM_SFM_PATH, or create ./sfm");
    }
    let (catalog, diagnostics) = bfm_core::catalog::load(&options);
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    if args.json {
        let items: Vec<_> = diagnostics
            .iter()
            .map(|d| json!({"file": d.path, "line": d.line, "severity": if d.severity == Severity::Error { "error" } else { "warning" }, "message": d.message}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"migrations": catalog.len(), "errors": errors, "warnings": warnings, "diagnostics": items})
            )?
        );
    } else {
        for d in diagnostics.iter() {
            println!("{d}");
        }
        let where_ = root.map(|r| r.display().to_string()).unwrap_or_else(|| "configured folders".into());
        println!("{where_}: {} migration(s), {errors} error(s), {warnings} warning(s)", catalog.len());
    }
    Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
