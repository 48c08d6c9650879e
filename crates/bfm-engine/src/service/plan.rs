//! Plans as the service returns them: a typed value that the CLI's `--dry-run`, HTTP's
//! `dry_run` and gRPC's streamed dry run are all made from, and the planned run that a surface
//! may inspect (step count, skips) before it starts.

use super::label::{RunHooks, RunLabel};
use crate::engine::Prepared;
use crate::execute::{ProgressEvent, RunOptions, RunReport};
use bfm_core::{Direction, SkipReason};
use bfm_state::Operation;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    /// Display id (`{schema}_{id}` for a per-tenant step).
    pub id: String,
    pub migration_id: String,
    pub schema: String,
    pub connection: String,
    pub backend: String,
    pub direction: Direction,
    /// Why the step is in the plan (selected, a dependency, a dependent).
    pub reason: String,
    pub transactional: bool,
    /// The script as it would run, when asked for.
    pub sql: Option<RenderedSql>,
}

/// A step's script rendered with the run's environment, or why it cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedSql {
    Sql(String),
    CannotRender(String),
}

impl RenderedSql {
    /// The text shown for the step: the script, or a SQL comment saying why there is none.
    pub fn text(&self) -> String {
        match self {
            RenderedSql::Sql(s) => s.clone(),
            RenderedSql::CannotRender(e) => format!("-- cannot render: {e}"),
        }
    }
}

/// A selected step that will not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSkip {
    pub id: String,
    pub reason: SkipReason,
}

/// What a request would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanView {
    pub steps: Vec<PlannedStep>,
    pub skipped: Vec<PlannedSkip>,
    /// Problems of the plan as a whole (a missing dependency, a cycle, …).
    pub errors: Vec<String>,
}

impl PlanView {
    pub(crate) fn of(plan: &bfm_core::Plan, sql_environment: Option<&str>) -> PlanView {
        PlanView {
            steps: plan
                .steps
                .iter()
                .map(|s| PlannedStep {
                    id: s.display_id(),
                    migration_id: s.migration.id.clone(),
                    schema: s.schema.clone(),
                    connection: s.migration.connection.clone(),
                    backend: s.migration.backend.clone(),
                    direction: s.direction,
                    reason: s.reason.to_string(),
                    transactional: s.migration.transactional,
                    sql: sql_environment.map(|env| match crate::execute::render_step(s, env) {
                        Ok((text, _)) => RenderedSql::Sql(text),
                        Err(e) => RenderedSql::CannotRender(e.to_string()),
                    }),
                })
                .collect(),
            skipped: plan.skipped.iter().map(|s| PlannedSkip { id: s.display_id(), reason: s.reason.clone() }).collect(),
            errors: plan.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Skipped steps that are not merely "already applied" / "not applied" (blocked, needing a
    /// schema, …).
    pub fn notable_skips(&self) -> impl Iterator<Item = &PlannedSkip> {
        self.skipped.iter().filter(|s| s.reason != SkipReason::AlreadyApplied && s.reason != SkipReason::NotApplied)
    }

    /// The progress a dry run reports instead of running: every skip and plan error, then a
    /// `pending` and a `success` ("would run") event per step.
    pub fn dry_run_events(&self) -> Vec<ProgressEvent> {
        let mut out = self.plan_events();
        for s in &self.steps {
            out.push(event(&s.id, "pending", "planned (dry run)".into(), 0, Some(s)));
        }
        let total = self.steps.len();
        for (i, s) in self.steps.iter().enumerate() {
            let pct = u8::try_from((i + 1) * 100 / total).unwrap_or(100);
            out.push(event(&s.id, "success", "dry run: would run".into(), pct, Some(s)));
        }
        out
    }

    /// What a progress stream reports before the run starts: skips and plan errors.
    pub fn plan_events(&self) -> Vec<ProgressEvent> {
        let mut out: Vec<ProgressEvent> = self.skipped.iter().map(|s| event(&s.id, "skipped", s.reason.to_string(), 0, None)).collect();
        out.extend(self.errors.iter().map(|e| event("", "failed", e.clone(), 0, None)));
        out
    }
}

fn event(id: &str, status: &'static str, message: String, progress: u8, step: Option<&PlannedStep>) -> ProgressEvent {
    ProgressEvent {
        run_id: String::new(),
        step: 0,
        total: 0,
        id: id.to_string(),
        migration_id: step.map(|s| s.migration_id.clone()).unwrap_or_default(),
        schema: step.map(|s| s.schema.clone()).unwrap_or_default(),
        connection: step.map(|s| s.connection.clone()).unwrap_or_default(),
        backend: String::new(),
        status,
        message,
        progress,
        done: 0,
        failed: 0,
        skipped: 0,
        duration_ms: None,
    }
}

/// What kind of run a plan is for; decides how its result is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    Up,
    /// BfM's down of one migration (its `not applied` skips reported, no run when empty).
    DownOne(Operation),
    /// Down over a selection (the CLI): always run, reported as the executor reports.
    Down,
}

/// A validated, planned request, not yet run: surfaces may look at its plan (a progress bar's
/// length, a stream's buffer) before [`super::Service::run`] starts it.
pub struct PlannedRun {
    pub(crate) prepared: Prepared,
    pub(crate) view: PlanView,
    pub(crate) dry_run: bool,
    pub(crate) kind: RunKind,
    pub(crate) label: RunLabel,
    pub(crate) environment: Option<String>,
    pub(crate) concurrency: Option<usize>,
    /// The connection and how many schemas a pattern or the tenant query selected.
    pub(crate) selected: Option<(String, usize)>,
}

impl PlannedRun {
    /// When the request selected schemas by pattern or tenant query: on which connection, and
    /// how many.
    pub fn selected_schemas(&self) -> Option<(&str, usize)> {
        self.selected.as_ref().map(|(c, n)| (c.as_str(), *n))
    }

    pub fn plan(&self) -> &PlanView {
        &self.view
    }

    /// Whether the request was a dry run (nothing will be executed).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub(crate) fn options(&self, hooks: &RunHooks) -> RunOptions {
        let mut o = RunOptions::new(self.label.context.clone(), &self.label.command);
        o.environment = self.environment.clone();
        o.concurrency = self.concurrency;
        o.cancel = hooks.cancel.clone();
        if let RunKind::DownOne(op) = self.kind {
            o.down_operation = op;
        }
        o
    }
}

/// The result of a run (or of a dry run, which has no report).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub plan: PlanView,
    /// The executor's report; `None` for a dry run and when nothing was run.
    pub report: Option<RunReport>,
    pub(crate) kind: RunKind,
    pub(crate) dry_run: bool,
}

impl RunOutcome {
    /// Whether every step ran (or, for a dry run, the plan has no errors).
    pub fn success(&self) -> bool {
        match &self.report {
            Some(r) => r.success,
            None => self.plan.errors.is_empty(),
        }
    }

    /// The run in BfM's response shape.
    pub fn response(&self) -> super::dto::MigrateResponse {
        use super::dto::MigrateResponse;
        let dry_applied = || self.plan.steps.iter().map(|s| format!("{} (dry-run)", s.id)).collect::<Vec<_>>();
        match self.kind {
            RunKind::Up | RunKind::Down => match &self.report {
                Some(r) => {
                    MigrateResponse { success: r.success, applied: r.applied.clone(), skipped: r.skipped.clone(), errors: r.errors.clone() }
                }
                None => MigrateResponse {
                    success: self.plan.errors.is_empty(),
                    applied: if self.dry_run { dry_applied() } else { Vec::new() },
                    skipped: self.plan.skipped.iter().map(|s| s.id.clone()).collect(),
                    errors: self.plan.errors.clone(),
                },
            },
            RunKind::DownOne(_) => {
                let mut skipped: Vec<String> = self
                    .plan
                    .skipped
                    .iter()
                    .filter(|s| s.reason == SkipReason::NotApplied)
                    .map(|s| format!("{} (not applied)", s.id))
                    .collect();
                match &self.report {
                    Some(r) => {
                        skipped.extend(r.steps.iter().filter(|s| s.outcome == crate::StepOutcomeKind::Skipped).map(|s| s.id.clone()));
                        MigrateResponse { success: r.success, applied: r.applied.clone(), skipped, errors: r.errors.clone() }
                    }
                    None => MigrateResponse {
                        success: self.plan.errors.is_empty(),
                        applied: if self.dry_run { dry_applied() } else { Vec::new() },
                        skipped,
                        errors: self.plan.errors.clone(),
                    },
                }
            }
        }
    }
}
