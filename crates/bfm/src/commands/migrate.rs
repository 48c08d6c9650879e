//! `bfm migrate …`: clap arguments into the service's requests, its results into text or JSON.

use crate::cli::{DownArgs, Filters, IdArgs, OrderArgs, ReconcileArgs, StatusArgs, UpArgs};
use crate::output::{self, Progress, status_style, table};
use anyhow::{Context, bail};
use bfm_core::{Severity, SkipReason};
use bfm_engine::service::{
    DownRequest, DownTarget, Field, MigrationFilter, MigrationSchemaRequest, PlanView, PlannedRun, ReconcileRequest, RenderedSql,
    SchemaChoice, StatusRequest, UpRequest,
};
use bfm_engine::{Engine, ExecutionContext, RunHooks, RunLabel, Service, ServiceError, Surface};
use console::style;
use serde_json::json;
use std::process::ExitCode;

/// A service error in the CLI's terms: request fields are named as the flags that set them.
fn cli_error(e: ServiceError) -> anyhow::Error {
    match &e {
        ServiceError::Invalid { field, message } => match field.field {
            Field::Schema | Field::Schemas => anyhow::anyhow!("--schema: {message}"),
            Field::TargetTags | Field::Tag => anyhow::anyhow!("--tag: {message}"),
            // The message names the connection or the pattern itself.
            _ => anyhow::anyhow!("{message}"),
        },
        _ => anyhow::Error::new(e),
    }
}

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
async fn record_catalog(service: &Service) -> anyhow::Result<()> {
    service.record_catalog().await.context("recording the catalogue in the state store")?;
    Ok(())
}

fn filter(f: &Filters) -> MigrationFilter {
    MigrationFilter {
        connection: f.connection.clone(),
        backend: f.backend.clone(),
        declared_schema: f.declared_schema.clone(),
        tables: Vec::new(),
        version: f.version.clone(),
        tags: f.tags.clone(),
        ids: f.ids.clone(),
    }
}

fn print_plan(plan: &PlanView, sql: bool, json_out: bool) -> anyhow::Result<ExitCode> {
    if json_out {
        let steps: Vec<serde_json::Value> = plan
            .steps
            .iter()
            .map(|s| {
                let mut v = json!({
                    "id": s.id,
                    "migration_id": s.migration_id,
                    "schema": s.schema,
                    "connection": s.connection,
                    "backend": s.backend,
                    "direction": s.direction,
                    "reason": s.reason,
                    "transactional": s.transactional,
                });
                if let Some(text) = s.sql.as_ref().filter(|_| sql) {
                    v["sql"] = json!(text.text());
                }
                v
            })
            .collect();
        let skipped: Vec<serde_json::Value> = plan.skipped.iter().map(|s| json!({"id": s.id, "reason": s.reason.to_string()})).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"dry_run": true, "steps": steps, "skipped": skipped, "errors": plan.errors}))?);
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
                        s.id.clone(),
                        s.connection.clone(),
                        if s.schema.is_empty() { "-".into() } else { s.schema.clone() },
                        if s.transactional { "yes".into() } else { "no".into() },
                        s.reason.clone(),
                    ]
                })
                .collect();
            println!("{}", table(&["#", "MIGRATION", "CONNECTION", "SCHEMA", "TX", "WHY"], &rows));
        }
        if sql {
            for (i, s) in plan.steps.iter().enumerate() {
                println!("{}", style(format!("-- [{}] {} ({:?})", i + 1, s.id, s.direction)).dim());
                match &s.sql {
                    Some(RenderedSql::Sql(text)) => println!("{}\n", text.trim_end()),
                    Some(RenderedSql::CannotRender(e)) => println!("-- cannot render: {e}\n"),
                    None => {}
                }
            }
        }
        let already = plan.skipped.iter().filter(|s| s.reason == SkipReason::AlreadyApplied).count();
        for s in plan.notable_skips() {
            println!("{} {}: {}", style("not run").yellow(), s.id, s.reason);
        }
        println!("{} step(s) planned, {} already applied.", plan.steps.len(), already);
        for e in &plan.errors {
            eprintln!("{} {e}", style("error:").red().bold());
        }
    }
    Ok(if plan.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn execute(service: &Service, planned: PlannedRun, json_out: bool) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(planned.plan().steps.len(), json_out);
    let outcome = service.run(planned, RunHooks::progress(progress.sink(json_out))).await.map_err(cli_error)?;
    progress.finish();
    let Some(report) = outcome.report else {
        // Only dry runs come back without a report, and those are printed as plans.
        return Ok(ExitCode::SUCCESS);
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_report(&report);
    }
    Ok(if report.success { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn up(service: &Service, a: UpArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    let t = std::time::Instant::now();
    let engine = service.engine();
    check_catalog(engine)?;
    // Recording the catalogue is not needed to plan or run: do it alongside.
    let sync = {
        let service = Service::new(service.engine().clone());
        tokio::spawn(async move { service.record_catalog().await })
    };
    if (a.schema_pattern.is_some() || a.tenants) && a.filters.connection.is_none() {
        bail!("--schema-pattern and --tenants need --connection");
    }
    let req = UpRequest {
        connection: None,
        require_connection: false,
        migrations: filter(&a.filters),
        schemas: SchemaChoice { named: vec![(Field::Schemas, a.schemas.clone())], pattern: a.schema_pattern.clone(), tenants: a.tenants },
        ignore_dependencies: a.ignore_dependencies,
        allow_modified: a.allow_modified,
        environment: engine.config().environment.clone(),
        concurrency: a.concurrency,
        dry_run: a.dry_run,
        sql: a.sql,
        skip_per_tenant: false,
    };
    let planned = service.plan_up(req, RunLabel::new(Surface::Cli, "migrate up", ctx)).await.map_err(cli_error)?;
    if let Some((connection, n)) = planned.selected_schemas()
        && !a.json
    {
        eprintln!("{n} schema(s) selected on {connection}");
    }
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, steps = planned.plan().steps.len(), "planned");
    let code = if planned.dry_run() { print_plan(planned.plan(), a.sql, a.json)? } else { execute(service, planned, a.json).await? };
    match sync.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("{} recording the catalogue in the state store failed: {e}", style("warning:").yellow().bold()),
        Err(e) => eprintln!("{} recording the catalogue ended abnormally: {e}", style("warning:").yellow().bold()),
    }
    Ok(code)
}

pub async fn down(service: &Service, a: DownArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    let engine = service.engine();
    check_catalog(engine)?;
    record_catalog(service).await?;
    let mut filters = a.filters.clone();
    filters.ids.extend(a.migrations.iter().cloned());
    if filters.ids.is_empty() && filters.connection.is_none() && filters.version.is_none() && filters.tags.is_empty() {
        bail!("name what to roll back: migration ids, or --connection/--version/--tag");
    }
    let req = DownRequest {
        target: DownTarget::Filter(filter(&filters)),
        schemas: a.schemas.clone(),
        cascade: a.cascade,
        dry_run: a.dry_run,
        sql: a.sql,
        environment: engine.config().environment.clone(),
    };
    let planned = service.plan_down(req, RunLabel::new(Surface::Cli, "migrate down", ctx)).await.map_err(cli_error)?;
    if planned.dry_run() {
        return print_plan(planned.plan(), a.sql, a.json);
    }
    if !planned.plan().errors.is_empty() && planned.plan().steps.is_empty() {
        for e in &planned.plan().errors {
            eprintln!("{} {e}", style("error:").red().bold());
        }
        return Ok(ExitCode::from(1));
    }
    execute(service, planned, a.json).await
}

pub async fn status(service: &Service, a: StatusArgs) -> anyhow::Result<ExitCode> {
    record_catalog(service).await?;
    let req = StatusRequest { connection: a.connection.clone(), schema: a.schema.clone(), status: a.status.clone() };
    let summary = service.status_table(req).await.map_err(cli_error)?;
    let rows = &summary.rows;
    if a.json {
        println!("{}", serde_json::to_string_pretty(rows)?);
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
    println!(
        "{} applied, {} pending, {} failed, {} rolled back, {} modified, {} missing",
        summary.count("applied"),
        summary.count("pending"),
        summary.count("failed"),
        summary.count("rolled_back"),
        summary.count("modified"),
        summary.count("missing")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(service: &Service, a: IdArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    record_catalog(service).await?;
    let req = MigrationSchemaRequest { migration_id: a.id, schema: a.schema };
    let ids = service.retry(req, RunLabel::new(Surface::Cli, "migrate retry", ctx)).await.map_err(cli_error)?;
    for id in ids {
        println!("{id}: marked pending; the next `bfm migrate up` runs it");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn accept_checksum(service: &Service, a: IdArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    record_catalog(service).await?;
    let req = MigrationSchemaRequest { migration_id: a.id, schema: a.schema };
    let ids = service.accept_checksum(req, RunLabel::new(Surface::Cli, "migrate accept-checksum", ctx)).await.map_err(cli_error)?;
    for id in ids {
        println!("{id}: current script accepted");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn order(service: &Service, a: OrderArgs) -> anyhow::Result<ExitCode> {
    let ordered = service.order(&a.migrations).map_err(cli_error)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"ordered_migration_ids": ordered}))?);
    } else {
        for id in ordered {
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile(service: &Service, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    record_catalog(service).await?;
    let report = service.reconcile(ReconcileRequest { connection: a.connection.clone() }).await.map_err(cli_error)?;
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
