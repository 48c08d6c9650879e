use crate::cli::{BaselineArgs, SchemaCmd};
use anyhow::{Context, bail};
use bfm_engine::service::{ReviewedPlan, SchemaApply, SchemaRequest};
use bfm_engine::{ExecutionContext, RunLabel, Service, Surface};
use console::style;
use std::process::ExitCode;

fn print<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(service: &Service, cmd: SchemaCmd, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    // Plans of unchanged files are served from this cache by later commands.
    bfm_schema::set_desired_cache_dir(Some(std::path::PathBuf::from(".bfm").join("schema-cache")));
    let color = console::Term::stdout().is_term();
    match cmd {
        SchemaCmd::Plan { args, out } => {
            let plan = service.schema_plan(&SchemaRequest { connection: args.connection.clone(), dir: args.dir.clone() }).await?;
            if let Some(path) = &out {
                std::fs::write(path, serde_json::to_string_pretty(&plan)?).with_context(|| format!("writing {}", path.display()))?;
            }
            if args.json {
                print(&plan)?;
            } else {
                print!("{}", bfm_schema::render_plan_text(&plan, color));
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemaCmd::Apply { args, approvals, plan_file, non_destructive_only } => {
            let reviewed = match &plan_file {
                Some(p) => ReviewedPlan::Plan(Box::new(
                    serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                        .with_context(|| format!("{} is not a plan", p.display()))?,
                )),
                None => ReviewedPlan::Fresh,
            };
            let req = SchemaApply {
                target: SchemaRequest { connection: args.connection.clone(), dir: args.dir.clone() },
                reviewed,
                approvals,
                non_destructive_only,
            };
            let report = service.schema_apply(req, RunLabel::new(Surface::Cli, "schema apply", ctx)).await?;
            if args.json {
                print(&report)?;
            } else {
                println!("scope: {}", report.scope);
                for s in &report.applied {
                    println!("{} {} ({:.0} ms)", style("applied").green(), s.object, s.duration_ms);
                }
                for s in &report.skipped {
                    println!("{} {}: {}", style("skipped").yellow(), s.object, s.reason);
                }
                println!(
                    "{} step(s) applied, {} skipped; the live schema {} the desired one",
                    report.applied.len(),
                    report.skipped.len(),
                    if report.converged { "matches" } else { "does not yet match" }
                );
            }
            Ok(if report.converged { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        SchemaCmd::Validate { args } => {
            let drift = service.schema_validate(&args.connection).await?;
            if !args.json {
                println!("scope: {}", drift.scope);
            }
            if args.json {
                print(&drift)?;
            } else if drift.in_sync {
                println!(
                    "No drift: the live schema matches the snapshot of the last apply ({}).",
                    &drift.live_fingerprint[..drift.live_fingerprint.len().min(12)]
                );
            } else {
                for d in &drift.drifts {
                    println!(
                        "{} {:?} {}: {} → {}",
                        style(format!("{:?}", d.change).to_lowercase()).red(),
                        d.kind,
                        d.object,
                        d.before.as_deref().unwrap_or("-"),
                        d.after.as_deref().unwrap_or("-")
                    );
                }
                println!("{} object(s) drifted since the last apply", drift.drifts.len());
            }
            Ok(if drift.in_sync { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        SchemaCmd::Snapshot { args } => {
            let snap = service.schema_snapshot(&args.connection).await?;
            if args.json {
                print(&serde_json::json!({
                    "fingerprint": snap.fingerprint,
                    "taken_at": snap.taken_at,
                    "managed_schemas": snap.managed_schemas,
                    "scope": snap.scope,
                }))?;
            } else {
                println!("snapshot stored: {} (scope: {})", snap.fingerprint, snap.scope);
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemaCmd::Dump { args, out } => {
            let (scope, files) = service.schema_dump_to(&args.connection, &out).await?;
            if args.json {
                print(&serde_json::json!({"scope": scope, "files": files}))?;
            } else {
                println!("scope: {scope}");
                for f in &files {
                    println!("{}", f.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemaCmd::Status { args } => {
            let st = service.schema_status(&SchemaRequest { connection: args.connection.clone(), dir: args.dir.clone() }).await?;
            if args.json {
                print(&st)?;
            } else {
                println!(
                    "live {}  desired {}",
                    &st.live_fingerprint[..st.live_fingerprint.len().min(12)],
                    &st.desired_fingerprint[..st.desired_fingerprint.len().min(12)]
                );
                println!("scope: {}", st.scope);
                if st.in_sync {
                    println!("{}", style("in sync").green());
                } else {
                    println!("{} step(s) pending, {} destructive", st.pending_steps, st.destructive_steps);
                    for a in &st.approvals_required {
                        println!("  needs --approve {a}");
                    }
                }
                if let Some(d) = &st.drift {
                    println!(
                        "drift since the last apply: {}",
                        if d.in_sync { "none".to_string() } else { format!("{} object(s)", d.drifts.len()) }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn baseline(service: &Service, args: BaselineArgs, ctx: ExecutionContext) -> anyhow::Result<ExitCode> {
    if service.engine().config().sfm_path.is_none() {
        bail!("no sfm path: set BFM_SFM_PATH or --sfm");
    }
    let r = service.baseline(&args.connection, RunLabel::new(Surface::Cli, "baseline", ctx)).await?;
    if args.json {
        print(&r)?;
    } else {
        println!("{}: {} statement(s) written to {}, recorded as applied", r.migration_id, r.statements, r.file.display());
    }
    Ok(ExitCode::SUCCESS)
}
