use crate::cli::{DownArgs, Filters, IdArgs, OrderArgs, ReconcileArgs, StatusArgs, UpArgs};
use crate::output::{self, Progress, status_style, table};
use anyhow::{Context, anyhow, bail};
use bfm_core::{MissingSchema, PlanRequest, Selector, Severity, TagFilter};
use bfm_engine::{Engine, ExecutionContext, Prepared, RunOptions, StatusFilter};
use console::style;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

/// The catalogue was read when the engine opened: refuse to run on a tree with errors (they
/// could hide a dependency).
fn check_catalog(engine: &Engine) -> anyhow::Result<()> {
    let diagnostics = engine.diagnostics();
    let errors: Vec<_> = diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    if !errors.is_empty() {
        for d in &errors {
            eprintln!("{d}");
        }
        bail!("the migration tree has {} error(s); fix them (see `bfm check`) before running migrations", errors.len());
    }
    Ok(())
}

/// Record the catalogue in the state store (new, changed and missing migrations).
async fn record_catalog(engine: &Engine) -> anyhow::Result<()> {
    engine.sync_catalog().await.context("recording the catalogue in the state store")?;
    Ok(())
}

fn selector(engine: &Engine, f: &Filters) -> anyhow::Result<Selector> {
    let tags = TagFilter::parse(&f.tags).map_err(|e| anyhow!("--tag: {e}"))?;
    let mut ids = Vec::new();
    for id in &f.ids {
        let (m, schema) = engine.resolve(id)?;
        ids.push((m.id.clone(), schema));
    }
    if let Some(c) = &f.connection {
        engine.ensure_connection(c)?;
    }
    Ok(Selector {
        backend: f.backend.clone(),
        connection: f.connection.clone(),
        schema: f.declared_schema.clone(),
        tables: Vec::new(),
        version: f.version.clone(),
        tags,
        ids,
    })
}

fn validate_schemas(schemas: &[String]) -> anyhow::Result<()> {
    for s in schemas {
        bfm_core::validate_schema_name(s).map_err(|e| anyhow!("--schema: {e}"))?;
    }
    Ok(())
}

fn print_plan(engine: &Engine, prepared: &Prepared, sql: bool, json_out: bool) -> anyhow::Result<ExitCode> {
    let plan = &prepared.plan;
    let env = engine.config().environment.clone().unwrap_or_default();
    if json_out {
        let steps: Vec<serde_json::Value> = plan
            .steps
            .iter()
            .map(|s| {
                let mut v = json!({
                    "id": s.display_id(),
                    "migration_id": s.migration.id,
                    "schema": s.schema,
                    "connection": s.migration.connection,
                    "backend": s.migration.backend,
                    "direction": s.direction,
                    "reason": s.reason.to_string(),
                    "transactional": s.migration.transactional,
                });
                if sql {
                    v["sql"] = match bfm_engine::render_step(s, &env) {
                        Ok((text, _)) => json!(text),
                        Err(e) => json!(format!("-- cannot render: {e}")),
                    };
                }
                v
            })
            .collect();
        let skipped: Vec<serde_json::Value> =
            plan.skipped.iter().map(|s| json!({"id": s.display_id(), "reason": s.reason.to_string()})).collect();
        let errors: Vec<String> = plan.errors.iter().map(|e| e.to_string()).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"dry_run": true, "steps": steps, "skipped": skipped, "errors": errors}))?);
    } else {
        if plan.steps.is_empty() {
            println!("Nothing to do.");
        } else {
            let rows: Vec<Vec<String>> = plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    vec![
                        format!("{}", i + 1),
                        s.display_id(),
                        s.migration.connection.clone(),
                        if s.schema.is_empty() { "-".into() } else { s.schema.clone() },
                        if s.migration.transactional { "yes".into() } else { "no".into() },
                        s.reason.to_string(),
                    ]
                })
                .collect();
            println!("{}", table(&["#", "MIGRATION", "CONNECTION", "SCHEMA", "TX", "WHY"], &rows));
        }
        if sql {
            for (i, s) in plan.steps.iter().enumerate() {
                println!("{}", style(format!("-- [{}] {} ({:?})", i + 1, s.display_id(), s.direction)).dim());
                match bfm_engine::render_step(s, &env) {
                    Ok((text, _)) => println!("{}\n", text.trim_end()),
                    Err(e) => println!("-- cannot render: {e}\n"),
                }
            }
        }
        let already = plan.skipped.iter().filter(|s| s.reason == bfm_core::SkipReason::AlreadyApplied).count();
        for s in
            plan.skipped.iter().filter(|s| s.reason != bfm_core::SkipReason::AlreadyApplied && s.reason != bfm_core::SkipReason::NotApplied)
        {
            println!("{} {}: {}", style("not run").yellow(), s.display_id(), s.reason);
        }
        println!("{} step(s) planned, {} already applied.", plan.steps.len(), already);
        for e in &plan.errors {
            eprintln!("{} {e}", style("error:").red().bold());
        }
    }
    Ok(if plan.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn execute(engine: &Arc<Engine>, prepared: Prepared, options: RunOptions, json_out: bool) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(prepared.plan.steps.len(), json_out);
    let report = engine.run(prepared, options, Some(progress.sink(json_out))).await?;
    progress.finish();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_report(&report);
    }
    Ok(if report.success { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn up(engine: &Arc<Engine>, a: UpArgs, ctx: ExecutionContext, _plan_only: bool) -> anyhow::Result<ExitCode> {
    let t = std::time::Instant::now();
    check_catalog(engine)?;
    // Recording the catalogue is not needed to plan or run: do it alongside.
    let sync = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.sync_catalog().await })
    };
    validate_schemas(&a.schemas)?;
    let mut req = PlanRequest::up(selector(engine, &a.filters)?);
    let selecting = a.schema_pattern.is_some() || a.tenants;
    req.schemas = if selecting {
        let connection = a.filters.connection.clone().ok_or_else(|| anyhow!("--schema-pattern and --tenants need --connection"))?;
        let sel = bfm_engine::SchemaSelection { names: a.schemas.clone(), pattern: a.schema_pattern.clone(), tenants: a.tenants };
        let schemas = engine.select_schemas(&connection, &sel).await?;
        if !a.json {
            eprintln!("{} schema(s) selected on {connection}", schemas.len());
        }
        schemas
    } else {
        a.schemas.clone()
    };
    req.ignore_dependencies = a.ignore_dependencies;
    req.allow_modified = a.allow_modified;
    // Over all connections, per-tenant migrations without a schema are skipped, not errors.
    req.missing_schema = if (a.filters.connection.is_some() || !a.filters.ids.is_empty()) && !(selecting && req.schemas.is_empty()) {
        MissingSchema::Error
    } else {
        MissingSchema::Skip
    };
    let prepared = engine.prepare(&req).await?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, steps = prepared.plan.steps.len(), "planned");
    let code = if a.dry_run {
        print_plan(engine, &prepared, a.sql, a.json)?
    } else {
        let mut options = RunOptions::new(ctx, "migrate up");
        options.concurrency = a.concurrency;
        options.environment = engine.config().environment.clone();
        execute(engine, prepared, options, a.json).await?
    };
    match sync.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("{} recording the catalogue in the state store failed: {e}", style("warning:").yellow().bold()),
        Err(e) => eprintln!("{} recording the catalogue ended abnormally: {e}", style("warning:").yellow().bold()),
    }
    Ok(code)
}

pub async fn down(engine: &Arc<Engine>, a: DownArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    check_catalog(engine)?;
    record_catalog(engine).await?;
    validate_schemas(&a.schemas)?;
    let mut filters = a.filters.clone();
    filters.ids.extend(a.migrations.iter().cloned());
    if filters.ids.is_empty() && filters.connection.is_none() && filters.version.is_none() && filters.tags.is_empty() {
        bail!("name what to roll back: migration ids, or --connection/--version/--tag");
    }
    let mut req = PlanRequest::down(selector(engine, &filters)?);
    req.schemas = a.schemas.clone();
    req.cascade = a.cascade;
    let prepared = engine.prepare(&req).await?;
    if a.dry_run {
        return print_plan(engine, &prepared, a.sql, a.json);
    }
    if !prepared.plan.errors.is_empty() && prepared.plan.steps.is_empty() {
        for e in &prepared.plan.errors {
            eprintln!("{} {e}", style("error:").red().bold());
        }
        return Ok(ExitCode::from(1));
    }
    execute(engine, prepared, RunOptions::new(ctx, "migrate down"), a.json).await
}

pub async fn status(engine: &Arc<Engine>, a: StatusArgs) -> anyhow::Result<ExitCode> {
    record_catalog(engine).await?;
    if let Some(c) = &a.connection
        && !engine.catalog().iter().any(|m| &m.connection == c)
    {
        engine.ensure_connection(c)?;
    }
    let mut rows = engine.status(&StatusFilter { connection: a.connection.clone(), schema: a.schema.clone(), migration_id: None }).await?;
    if let Some(s) = &a.status {
        rows.retain(|r| &r.status == s);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No migrations.");
        return Ok(ExitCode::SUCCESS);
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.version.clone(),
                r.name.clone(),
                r.connection.clone(),
                if r.schema.is_empty() { if r.dynamic { "(per tenant)".into() } else { "-".into() } } else { r.schema.clone() },
                status_style(&r.status),
                r.applied_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
                r.error.clone().unwrap_or_default().lines().next().unwrap_or_default().chars().take(80).collect(),
            ]
        })
        .collect();
    println!("{}", table(&["VERSION", "NAME", "CONNECTION", "SCHEMA", "STATUS", "APPLIED AT", "ERROR"], &table_rows));
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    println!(
        "{} applied, {} pending, {} failed, {} rolled back, {} modified, {} missing",
        count("applied"),
        count("pending"),
        count("failed"),
        count("rolled_back"),
        count("modified"),
        count("missing")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(engine: &Arc<Engine>, a: IdArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    record_catalog(engine).await?;
    if let Some(s) = &a.schema {
        bfm_core::validate_schema_name(s).map_err(|e| anyhow!("--schema: {e}"))?;
    }
    let ids = engine.retry(&a.id, a.schema.as_deref(), ctx).await?;
    for id in ids {
        println!("{id}: marked pending; the next `bfm migrate up` runs it");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn accept_checksum(engine: &Arc<Engine>, a: IdArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    record_catalog(engine).await?;
    let ids = engine.accept_checksum(&a.id, a.schema.as_deref(), ctx).await?;
    for id in ids {
        println!("{id}: current script accepted");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn order(engine: &Arc<Engine>, a: OrderArgs) -> anyhow::Result<ExitCode> {
    let mut bases = Vec::new();
    for id in &a.migrations {
        let (m, _) = engine.resolve(id)?;
        bases.push(m.id.clone());
    }
    let ordered = bfm_core::plan::order(&engine.catalog(), &bases).map_err(|e| anyhow!("{e}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"ordered_migration_ids": ordered}))?);
    } else {
        for id in ordered {
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile(engine: &Arc<Engine>, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    record_catalog(engine).await?;
    let connections = a.connection.clone().map(|c| vec![c]);
    if let Some(c) = &a.connection {
        engine.ensure_connection(c)?;
    }
    let report = engine.reconcile(connections.as_deref()).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_empty() {
        println!("State and targets agree.");
    } else {
        for id in &report.applied {
            println!("{id}: recorded as applied (found in the target's ledger)");
        }
        for id in &report.rolled_back {
            println!("{id}: recorded as rolled back (absent from the target's ledger)");
        }
        for id in &report.interrupted {
            println!("{id}: interrupted while running without a transaction; marked failed — check it, then `bfm migrate retry`");
        }
        for r in &report.runs {
            println!("run {r}: interrupted; closed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
